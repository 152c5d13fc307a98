//! The man pages: each renders with `man -l` without a warning (groff's warnings all
//! on), `openser.cfg.5` has a section for every module `openser -V` lists, and
//! `openserctl.8` names every command the script dispatches.

use std::process::Command;

use crate::harness::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn pages() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(format!("{ROOT}/man"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.len() == 1 && e.as_bytes()[0].is_ascii_digit())
        })
        .collect();
    v.sort();
    v
}

/// `man -l` of `page`: (plain text, stderr).
fn render(page: &std::path::Path, warnings: bool) -> (String, String) {
    let mut c = Command::new("man");
    if warnings {
        c.arg("--warnings=w");
    }
    let out = c
        .args(["-l", "-Tutf8"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man");
    assert!(out.status.success(), "man -l {}", page.display());
    // Overstrike (bold: c\bc, underline: _\bc) off, for the word checks.
    let raw = String::from_utf8_lossy(&out.stdout);
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        text.push(c);
    }
    (text, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn man_pages_render_without_warnings() {
    if !require("man") {
        return;
    }
    let pages = pages();
    assert!(pages.len() >= 4, "{pages:?}");
    for p in &pages {
        let (text, err) = render(p, true);
        assert!(err.trim().is_empty(), "{}:\n{err}", p.display());
        assert!(text.contains("NAME"), "{}: {text}", p.display());
    }
}

#[test]
fn every_module_and_openserctl_command_has_its_man_entry() {
    // The modules the binary has (its -V line), each a `.SS` of openser.cfg.5.
    let (code, out, err) = run(&["-V"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("modules ("))
        .expect("a modules line in -V");
    let mods: Vec<&str> = line
        .split_once(':')
        .unwrap()
        .1
        .split(',')
        .map(str::trim)
        .collect();
    assert!(mods.len() > 30, "{mods:?}");
    let cfg5 = std::fs::read_to_string(format!("{ROOT}/man/openser.cfg.5")).unwrap();
    let sections: Vec<&str> = cfg5
        .lines()
        .filter_map(|l| l.strip_prefix(".SS "))
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    let missing: Vec<_> = mods.iter().filter(|m| !sections.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "modules without a .SS in openser.cfg.5: {missing:?}"
    );

    // openserctl's commands: the labels of the script's top-level `case "$1" in`.
    let script = std::fs::read_to_string(format!("{ROOT}/scripts/openserctl")).unwrap();
    let mut cmds = Vec::new();
    let mut on = false;
    for l in script.lines() {
        if l == "case \"$1\" in" {
            on = true;
            cmds.clear();
            continue;
        }
        if on && l == "esac" {
            on = false;
            continue;
        }
        if on
            && l.starts_with('\t')
            && !l.starts_with("\t\t")
            && let Some((labels, _)) = l.trim().split_once(')')
        {
            for c in labels.split('|') {
                let c = c.trim_matches('"');
                if !c.is_empty() && !c.starts_with('-') && c != "*" && c != "help" {
                    cmds.push(c.to_string());
                }
            }
        }
    }
    assert!(cmds.len() > 25, "{cmds:?}");
    if !require("man") {
        return;
    }
    let (text, _) = render(
        std::path::Path::new(&format!("{ROOT}/man/openserctl.8")),
        false,
    );
    let words: std::collections::HashSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let missing: Vec<_> = cmds
        .iter()
        .filter(|c| !words.contains(c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "openserctl commands not in openserctl.8: {missing:?}"
    );
}

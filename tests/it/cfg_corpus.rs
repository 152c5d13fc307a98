//! Data-driven tests for the configuration front end.
//!
//! `tests/data/cfg/good/*.cfg` must parse. Each `tests/data/cfg/bad/*.cfg` starts with
//! `# expect: LINE:COL text` and must fail with its first error at LINE:COL and a
//! message containing `text`.

use crate::harness::{cfg_corpus, cfg_expectation};
use openser_core::cfg::{parse_file, parse_str};

#[test]
fn good_configs_parse() {
    let list = cfg_corpus("good");
    assert!(list.len() >= 10);
    let mut failed = Vec::new();
    for p in &list {
        if let Err(e) = parse_file(p) {
            failed.push(format!("{}:\n{}", p.display(), e));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn bad_configs_fail_where_expected() {
    let list = cfg_corpus("bad");
    assert!(list.len() >= 10);
    let mut failed = Vec::new();
    for p in &list {
        let Some((pos, want, _)) = cfg_expectation(p) else {
            failed.push(format!("{}: no `# expect:` line", p.display()));
            continue;
        };
        let (line, col) = pos.split_once(':').unwrap();
        let (line, col): (u32, u32) = (line.parse().unwrap(), col.parse().unwrap());
        match parse_file(p) {
            Ok(_) => failed.push(format!("{}: parsed without error", p.display())),
            Err(e) => {
                let first = &e.errors[0];
                let shown = e.to_string();
                if first.span.line != line || first.span.col != col || !first.msg.contains(&want) {
                    failed.push(format!(
                        "{}: expected {}:{} `{}`, got:\n{}",
                        p.display(),
                        line,
                        col,
                        want,
                        shown
                    ));
                } else if !shown.contains('^')
                    || !shown.ends_with("error") && !shown.ends_with("errors")
                {
                    failed.push(format!("{}: bad rendering:\n{}", p.display(), shown));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn several_errors_are_reported() {
    let src = "debug=\nroute {\n  foo(;\n}\nroute[1] {\n  if x \n}\nchildren=4\nport=\n";
    let e = parse_str("multi.cfg", src).unwrap_err();
    assert!(e.len() >= 3, "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("multi.cfg:2:1: expected a value for `debug`, found `route`"),
        "{text}"
    );
    assert!(text.ends_with(&format!("{} errors", e.len())), "{text}");
}

#[test]
fn error_rendering_has_caret() {
    let e = parse_str("x.cfg", "route {\n\tfoo(\"a\" \"b\");\n}\n").unwrap_err();
    let s = e.to_string();
    assert_eq!(
        s,
        "x.cfg:2:10: expected `,` or `)` in the argument list, found string \"b\"\n  \tfoo(\"a\" \"b\");\n  \t        ^\n1 error"
    );
}

#[test]
fn errors_inside_one_route_are_all_reported() {
    let src = "route {\n  foo(;\n  if (a() { x(); }\n  $fu = 1;\n  switch ($var(x)) {\n    case 1: bar(,);\n    default: exit\n  }\n  ok();\n}\nroute[1] { baz( }\n";
    let e = parse_str("r.cfg", src).unwrap_err();
    let lines: Vec<u32> = e.errors.iter().map(|e| e.span.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 6, 8, 11], "{e}");
}

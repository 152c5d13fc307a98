//! SIPVicious (Debian `sipvicious`: svwar, svcrack) against etc/examples/hardened.cfg
//! on loopback, users provisioned with openserctl on SQLite (issue 18, item 7). The
//! layers are tested separately, since SIPVicious 0.3 always sends `User-Agent:
//! friendly-scanner` and the first layer alone would make the others pass trivially:
//! * the config as shipped: the scanner gets no answer at all;
//! * the config without its User-Agent block: svwar cannot tell the existing
//!   extensions from the missing ones (and, as a control, it does tell them apart on a
//!   config that answers 404 for unknown users), and svcrack with a 1,000-word list
//!   (the right password last) is stopped by pike long before the list ends.
//!
//! Also: every sample config (etc/*.cfg, etc/examples/*.cfg) passes `openser -c`.

use std::process::{Command, Output};

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;

const HARDENED: &str = include_str!("../../etc/examples/hardened.cfg");
const DEFAULT_URL: &str = "mysql://openser:openserrw@localhost/openser";
const UA_BLOCK_START: &str = "\t# Scanners: drop";
const UA_BLOCK_END: &str = "\t\tdrop;\n\t};\n";

/// The hardened example on this test's port and database; `ua_drop` false removes its
/// User-Agent block.
fn hardened(e: &Engine, ua_drop: bool) -> String {
    let mut cfg = HARDENED
        .replace(DEFAULT_URL, &e.url())
        .replace(
            "loadmodule \"mysql.so\"",
            &format!("loadmodule \"{}.so\"", e.module()),
        )
        .replace("listen=udp:127.0.0.1:5060", "listen=udp:127.0.0.1:{PORT}")
        .replace("children=4", "children=2");
    assert!(
        !cfg.contains(DEFAULT_URL) && cfg.contains("{PORT}"),
        "the example changed: adapt this test"
    );
    if !ua_drop {
        let a = cfg.find(UA_BLOCK_START).expect("the User-Agent block");
        let b = a + cfg[a..].find(UA_BLOCK_END).expect("its end") + UA_BLOCK_END.len();
        cfg.replace_range(a..b, "");
        assert!(!cfg.contains("friendly-scanner"));
    }
    cfg
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// svwar over extensions 100-109 of example.com; its output.
fn svwar(port: u16) -> String {
    let out = Command::new("svwar")
        .args(["--force", "--domain", "example.com", "-e100-109"])
        .args(["-p", &port.to_string()])
        .args(["-P", &free_udp_port().to_string()])
        .args(["--maximumtime", "2", "127.0.0.1"])
        .output()
        .expect("run svwar");
    text(&out)
}

/// The extensions svwar reports as existing.
fn found(war: &str) -> Vec<String> {
    war.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() >= 3 && cells[1].chars().all(|c| c.is_ascii_digit()))
                .then(|| cells[1].to_string())
        })
        .filter(|c| !c.is_empty())
        .collect()
}

fn provision() -> Option<Engine> {
    if !require("svwar") || !require("svcrack") {
        return None;
    }
    let e = Engine::start(Kind::Sqlite)?;
    for u in ["101", "105"] {
        e.ok(&e.ctl("SIP_DOMAIN=example.com\n", &["add", u, &format!("pw{u}")]));
    }
    Some(e)
}

#[test]
fn scanner_user_agents_get_no_answer() {
    let Some(e) = provision() else { return };
    let mut s = Server::start(&hardened(&e, true), &[]);
    let war = svwar(s.addr().port());
    assert!(found(&war).is_empty(), "{war}");
    // svwar waits for an answer to its first probe, and gives up.
    assert!(
        war.contains("timed out") || war.contains("No server response"),
        "{war}"
    );
    // Nothing reached pike or the authentication.
    let log = s.log();
    assert!(!log.contains("pike:") && !log.contains("auth:"), "{log}");
    assert!(s.stop().success());
}

#[test]
fn svwar_cannot_enumerate_and_pike_stops_svcrack() {
    let Some(e) = provision() else { return };
    // Control: a config that answers 404 for unknown users gives them away.
    let leaky = "listen=udp:127.0.0.1:{PORT}\nchildren=1\n\
                 loadmodule \"sl.so\"\nloadmodule \"auth.so\"\n\
                 route {\n\
                   if ($tU == \"101\" || $tU == \"105\") { www_challenge(\"\", \"0\"); exit; };\n\
                   sl_send_reply(\"404\", \"Not Found\");\n\
                 }\n";
    let mut l = Server::start(leaky, &[]);
    let war = svwar(l.addr().port());
    assert_eq!(found(&war), ["101", "105"], "control: {war}");
    assert!(l.stop().success());

    let mut s = Server::start(&hardened(&e, false), &[]);
    // The hardened answers: the same 401 for every extension, svwar finds none.
    let war = svwar(s.addr().port());
    assert!(found(&war).is_empty(), "{war}\n{}", s.log());
    assert!(war.contains("found nothing"), "{war}");
    assert!(!s.log().contains("pike:"), "svwar alone must not trip pike");

    // svcrack: 999 wrong passwords, then the right one.
    let dir = TempDir::new("svcrack");
    let words = dir.file("words.txt");
    let mut list: Vec<String> = (1..1000).map(|i| format!("guess{i}")).collect();
    list.push("pw101".into());
    std::fs::write(&words, list.join("\n") + "\n").unwrap();
    let out = Command::new("svcrack")
        .args(["-u101", "--domain", "example.com"])
        .arg("-d")
        .arg(&words)
        .args(["-p", &s.addr().port().to_string()])
        .args(["-P", &free_udp_port().to_string()])
        .args(["--maximumtime", "2", "127.0.0.1"])
        .output()
        .expect("run svcrack");
    let crack = text(&out);
    let log = s.log();
    // Attempts that reached the script's authentication (one log line each).
    let tried = log.matches("auth: refused credentials for 101").count();
    assert!(
        tried > 0,
        "svcrack never reached the server\n{crack}\n{log}"
    );
    assert!(
        tried < 100,
        "{tried} passwords tried before pike stopped svcrack\n{log}"
    );
    assert!(log.contains("pike: flood from 127.0.0.1 blocked"), "{log}");
    assert!(!crack.contains("pw101"), "password found: {crack}");
    assert!(crack.contains("found nothing"), "{crack}");
    assert!(s.stop().success());
}

/// Every sample config passes `openser -c`.
#[test]
fn sample_configs_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for d in ["etc", "etc/examples"] {
        for f in std::fs::read_dir(format!("{root}/{d}")).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|x| x == "cfg") {
                files.push(p);
            }
        }
    }
    assert!(
        files.iter().any(|p| p.ends_with("examples/hardened.cfg")),
        "{files:?}"
    );
    for p in files {
        let (rc, out, err) = run(&["-c", "-f", &p.display().to_string()]);
        assert_eq!(rc, 0, "{}: {out}{err}", p.display());
    }
}

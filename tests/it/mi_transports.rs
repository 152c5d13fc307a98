//! One MI command registry, three framings: every core and module command answers the
//! same over the FIFO, mi_datagram (UDP and Unix datagram sockets) and mi_xmlrpc, asked
//! by real clients (python3's socket and xmlrpc.client, socat).

use crate::harness::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// A port free over TCP (and UDP) below the ephemeral range (the harness's choice).
fn free_tcp_port() -> u16 {
    free_udp_port()
}

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=1
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "usrloc.so"
loadmodule "mi_fifo.so"
loadmodule "mi_datagram.so"
loadmodule "mi_xmlrpc.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("mi_datagram", "socket_name", "{DGRAM}")
modparam("mi_datagram", "children_count", 2)
modparam("mi_xmlrpc", "address", "127.0.0.1")
modparam("mi_xmlrpc", "port", {XPORT})
modparam("mi_xmlrpc", "log_file", "{DIR}/xmlrpc.log")
route {
    sl_send_reply("200", "OK");
}
"#;

/// Arguments for a command (its errors are compared as well as its answers).
fn args_for(cmd: &str) -> Vec<&'static str> {
    match cmd {
        "get_statistics" => vec!["core:", "tm:", "usrloc:"],
        "reset_statistics" => vec!["received_replies"],
        "t_uac_cancel" => vec!["nobody@nowhere", "1"],
        "t_reply" => vec!["486", "Busy", "1:1", "x", "."],
        "ul_show_contact" => vec!["location", "alice@example.com"],
        "ul_rm" => vec!["location", "nobody@example.com"],
        "ul_dump" => vec![],
        _ => vec![],
    }
}

/// Answers over the datagram socket and XML-RPC, from the python client.
fn ask_others(
    dgram: &str,
    url: &str,
    reqs: &[(String, Vec<&str>)],
) -> Vec<(String, String, String)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mi/mi_clients.py");
    let mut input = String::new();
    for (c, a) in reqs {
        input.push_str(c);
        for x in a {
            input.push('\x1f');
            input.push_str(x);
        }
        input.push('\n');
    }
    let mut p = Command::new("python3")
        .args([script, dgram, url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    p.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mi_clients.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let mut f = r.split('\x1f');
            (
                f.next().unwrap_or("").to_string(),
                f.next().unwrap_or("").to_string(),
                f.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// What the XML-RPC answer must be for a FIFO answer: the tree's lines without
/// indentation, or a fault with the code and reason.
fn xmlrpc_expected(fifo: &str) -> (String, String) {
    let mut lines = fifo.lines();
    let status = lines.next().unwrap_or("");
    let (code, reason) = status.split_once(' ').unwrap_or((status, ""));
    if code.starts_with('2') {
        let mut t = String::new();
        for l in lines.filter(|l| !l.is_empty()) {
            t.push_str(l.trim_start_matches('\t'));
            t.push('\n');
        }
        ("ok".into(), t)
    } else {
        (format!("fault {code}"), reason.to_string())
    }
}

/// `uptime`'s values move with the clock: compare the node names.
fn mask_uptime(s: &str) -> String {
    s.lines()
        .map(|l| l.split("::").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_command_answers_the_same_over_fifo_datagram_and_xmlrpc() {
    if !require("python3") {
        return;
    }
    let dport = free_udp_port();
    let xport = free_tcp_port();
    let cfg = CFG
        .replace("{DGRAM}", &format!("udp:127.0.0.1:{dport}"))
        .replace("{XPORT}", &xport.to_string());
    let s = Server::start(&cfg, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let which = mi(&dir, "which", &[]);
    let cmds: Vec<String> = which
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty() && *l != "kill")
        .map(str::to_string)
        .collect();
    for c in ["t_uac_dlg", "t_hash", "ul_dump", "get_statistics", "ps"] {
        assert!(cmds.iter().any(|x| x == c), "{c} in which: {which}");
    }
    // ps lists the transports' processes
    let ps = mi(&dir, "ps", &[]);
    assert_eq!(ps.matches("Type=MI Datagram").count(), 2, "{ps}");
    assert_eq!(ps.matches("Type=MI XMLRPC").count(), 1, "{ps}");
    let reqs: Vec<(String, Vec<&str>)> = cmds
        .iter()
        .map(|c| (c.clone(), args_for(c)))
        .chain([("no_such_command".to_string(), vec![])])
        .collect();
    let fifo: Vec<String> = reqs.iter().map(|(c, a)| mi(&dir, c, a)).collect();
    // t_hash answers 65538 lines (1.5 MB): more datagrams than a client's socket
    // buffer holds while it reads, so it is compared over XML-RPC only.
    let asked: Vec<(String, Vec<&str>)> = reqs
        .iter()
        .map(|(c, a)| {
            let c = if c == "t_hash" {
                format!("!{c}")
            } else {
                c.clone()
            };
            (c, a.clone())
        })
        .collect();
    let others = ask_others(
        &format!("udp:127.0.0.1:{dport}"),
        &format!("http://127.0.0.1:{xport}/RPC2"),
        &asked,
    );
    assert_eq!(others.len(), reqs.len());
    for (((cmd, _), f), (d, xk, xt)) in reqs.iter().zip(&fifo).zip(&others) {
        let (ek, et) = xmlrpc_expected(f);
        if cmd == "uptime" {
            assert_eq!(mask_uptime(d), mask_uptime(f), "{cmd} over datagram");
            assert_eq!(mask_uptime(xt), mask_uptime(&et), "{cmd} over XML-RPC");
            continue;
        }
        if cmd == "no_such_command" {
            assert!(
                f.starts_with("500 command 'no_such_command' not available"),
                "{f}"
            );
            assert_eq!(d, f);
            assert_eq!(xk, "fault -506", "{xt}");
            continue;
        }
        if cmd != "t_hash" {
            assert_eq!(d, f, "{cmd}: datagram and FIFO differ");
        }
        assert_eq!((xk, xt), (&ek, &et), "{cmd}: XML-RPC and FIFO differ");
    }
    let th = &others[reqs.iter().position(|(c, _)| c == "t_hash").unwrap()].2;
    assert_eq!(th.lines().count(), 65536, "one line per entry");
    let log = std::fs::read_to_string(dir.join("xmlrpc.log")).unwrap_or_default();
    assert!(log.contains("POST /RPC2 200"), "{log}");
}

#[test]
fn unix_datagram_socket_with_socat_and_python() {
    if !require("python3") || !require("socat") {
        return;
    }
    let tmp = TempDir::new("midg");
    let sock = tmp.file("openser.sock");
    let cfg = CFG
        .replace("{DGRAM}", sock.to_str().unwrap())
        .replace("{XPORT}", &free_tcp_port().to_string())
        .replace(
            "modparam(\"mi_datagram\", \"children_count\", 2)",
            "modparam(\"mi_datagram\", \"unix_socket_mode\", \"0600\")",
        );
    let s = Server::start(&cfg, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // socat: a datagram from a bound client socket, the reply read back
    let client = tmp.file("client.sock");
    let out = Command::new("socat")
        .args([
            "-t",
            "2",
            "-",
            &format!("UNIX-SENDTO:{},bind={}", sock.display(), client.display()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b":version:\n")?;
            c.wait_with_output()
        })
        .expect("socat");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, mi(&dir, "version", &[]), "socat over the Unix socket");
    let r = ask_others(
        &format!("unix:{}:{}", sock.display(), tmp.file("py.sock").display()),
        "-",
        &[("get_statistics".into(), vec!["tm:"])],
    );
    assert_eq!(r[0].0, mi(&dir, "get_statistics", &["tm:"]));

    // openserctl with CTLENGINE=UNIXSOCK, as with the FIFO
    let ctl = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openserctl");
    let run_ctl = |engine: &str, args: &[&str]| {
        Command::new("sh")
            .arg(ctl)
            .args(args)
            .env("CTLENGINE", engine)
            .env("OSER_UNIXSOCK", &sock)
            .env("OSER_FIFO", dir.join("openser_fifo"))
            // the FIFO's replies go to the server's reply_dir; UNIXSOCK binds there
            .env(
                "REPLY_DIR",
                if engine == "FIFO" {
                    dir.as_path()
                } else {
                    tmp.path()
                },
            )
            .env("HOME", tmp.path())
            .output()
            .unwrap()
    };
    for args in [
        &["ps"][..],
        &["fifo", "get_statistics", "tm:"],
        &["fifo", "version"],
    ] {
        let u = run_ctl("UNIXSOCK", args);
        let f = run_ctl("FIFO", args);
        assert!(
            u.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&u.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&u.stdout),
            String::from_utf8_lossy(&f.stdout),
            "{args:?} over UNIXSOCK and FIFO"
        );
    }
    let bad = run_ctl("UNIXSOCK", &["fifo", "no_such_command"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).starts_with("500 "));
}

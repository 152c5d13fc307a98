//! tm's MI commands (`t_uac_dlg`, `t_reply`, `t_hash`, `t_uac_cancel`) over the FIFO,
//! and `openserctl ping`, against SIPp and the harness client.

use crate::harness::*;
use std::process::Command;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("tm", "fr_timer", 5)
route {
    if (!t_relay()) { sl_reply_error(); }
}
"#;

/// A SIPp UAS running one call of `scenario_file` on a free port, with its exit awaited.
fn sipp_one_call(dir: &std::path::Path, scenario_file: &str) -> (std::process::Child, u16) {
    let port = free_udp_port();
    let child = owned("sipp")
        .args([
            "-sf",
            &scenario(scenario_file),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sipp");
    assert!(
        wait_udp_bound(port, Duration::from_secs(20)),
        "SIPp did not bind 127.0.0.1:{port}"
    );
    (child, port)
}

fn wait_child(c: &mut std::process::Child, t: Duration) -> Option<std::process::ExitStatus> {
    let end = std::time::Instant::now() + t;
    while std::time::Instant::now() < end {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

#[test]
fn openserctl_ping_gets_200_from_sipp() {
    if !require("sipp") {
        return;
    }
    let s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let (mut uas, port) = sipp_one_call(&dir, "uas_options.xml");
    let ctl = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openserctl");
    let out = Command::new("sh")
        .arg(ctl)
        .args(["ping", &format!("sip:127.0.0.1:{port}")])
        .env("OSER_FIFO", dir.join("openser_fifo"))
        .env("REPLY_DIR", &dir)
        .env("HOME", &dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {} {}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"200 OK"), "{text}");
    assert_eq!(
        lines.get(1),
        Some(&"200 OK"),
        "the SIP reply's status: {text}"
    );
    assert!(
        text.contains("SIPpOpt"),
        "the reply's headers (To tag): {text}"
    );
    assert!(
        text.contains("CSeq: 1 OPTIONS"),
        "the reply's headers: {text}"
    );
    let st = wait_child(&mut uas, Duration::from_secs(10)).expect("SIPp UAS did not finish");
    assert!(st.success(), "SIPp UAS: {st:?}");
}

#[test]
fn t_uac_dlg_invite_with_body_is_acked_and_byed() {
    if !require("sipp") {
        return;
    }
    let s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let (mut uas, port) = sipp_one_call(&dir, "uas.xml");
    let ruri = format!("sip:callee@127.0.0.1:{port}");
    let sdp = "v=0\r\no=mi 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
    let hdrs = format!(
        "\"From: <sip:mi@localhost>;tag=mi1\nTo: <{ruri}>\nCall-ID: mi-invite-1@localhost\nCSeq: 7 INVITE\nContact: <sip:mi@127.0.0.1:{}>\nContent-Type: application/sdp\"",
        s.addr().port()
    );
    let body = format!("\"{sdp}\"");
    let r = mi(
        &dir,
        "t_uac_dlg",
        &["INVITE", &ruri, ".", ".", &hdrs, &body],
    );
    let lines: Vec<&str> = r.lines().collect();
    assert_eq!(lines.first(), Some(&"200 OK"), "{r}\n{}", s.log());
    assert_eq!(lines.get(1), Some(&"200 OK"), "{r}");
    // The 2xx gives the dialog: remote target (Contact), next hop, no route set.
    assert!(lines.get(2).is_some_and(|l| l.starts_with("sip:")), "{r}");
    assert_eq!(lines.get(3).copied(), Some(ruri.as_str()), "{r}");
    assert_eq!(lines.get(4), Some(&"."), "{r}");
    assert!(r.contains("Content-Type: application/sdp"), "{r}");
    let to = r
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("To in the reply")
        .to_string();
    assert!(to.contains(";tag="), "{to}");
    // BYE within the dialog: SIPp accepts it only after our ACK of its 200.
    let bye_hdrs = format!(
        "\"From: <sip:mi@localhost>;tag=mi1\n{to}\nCall-ID: mi-invite-1@localhost\nCSeq: 8 BYE\""
    );
    let r = mi(&dir, "t_uac_dlg", &["BYE", &ruri, ".", ".", &bye_hdrs]);
    assert!(r.starts_with("200 OK\n200 OK\n"), "{r}");
    let st = wait_child(&mut uas, Duration::from_secs(15)).expect("SIPp UAS did not finish");
    assert!(
        st.success(),
        "SIPp UAS (INVITE, ACK, BYE): {st:?}\n{}",
        s.log()
    );
}

#[test]
fn t_reply_answers_a_pending_transaction_and_t_hash_counts_it() {
    let s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    // The callee: a plain socket that never answers.
    let callee = Client::new();
    let caller = Client::new();
    let ruri = format!("sip:bob@127.0.0.1:{}", callee.port());
    caller.send(
        s.addr(),
        &request("INVITE", &ruri, caller.port(), "mi-t-reply", 1, ""),
    );
    let fwd = callee.recv_matching("INVITE").expect("forwarded INVITE");
    let via = header(&fwd, "Via").expect("Via");
    let branch = via
        .split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .expect("branch");
    // z9hG4bK<hash>.<label>.<branch>, numbers in reverse hex
    let parts: Vec<&str> = branch.trim_start_matches("z9hG4bK").split('.').collect();
    let rev = |s: &str| {
        s.chars()
            .rev()
            .fold(0u32, |v, c| v * 16 + c.to_digit(16).unwrap())
    };
    let (hash, label) = (rev(parts[0]), rev(parts[1]));
    let th = mi(&dir, "t_hash", &[]);
    assert!(
        th.starts_with("200 OK\n0 Current="),
        "{}",
        &th[..80.min(th.len())]
    );
    let line = th
        .lines()
        .find(|l| l.starts_with(&format!("{hash} ")))
        .expect("the entry's line");
    assert!(line.contains("Current=1"), "{line}");
    assert!(
        mi(&dir, "t_reply", &["486", "Busy Here", "1:1", "x", "."]).starts_with("404"),
        "an unknown transaction"
    );
    let r = mi(
        &dir,
        "t_reply",
        &[
            "486",
            "Busy Here",
            &format!("{hash}:{label}"),
            "mitag",
            "X-From-MI: yes",
        ],
    );
    assert!(r.starts_with("200 OK"), "{r}\n{}", s.log());
    let rep = caller.recv_matching("486").expect("486 to the caller");
    assert!(rep.starts_with("SIP/2.0 486 Busy Here"), "{rep}");
    assert!(rep.contains("X-From-MI: yes"), "{rep}");
    assert!(
        header(&rep, "To").is_some_and(|t| t.contains("tag=mitag")),
        "{rep}"
    );
    assert!(
        mi(&dir, "t_uac_cancel", &["nope@x", "1"]).starts_with("481"),
        "cancel of an unknown transaction"
    );
}

/// A 200 to `req` (Via, From, To with a tag, Call-ID, CSeq copied).
fn ok_to(req: &str) -> String {
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for h in headers(req, "Via") {
        s.push_str(&format!("Via: {h}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        s.push_str(&format!("{n}: {}\r\n", header(req, n).unwrap_or("")));
    }
    s.push_str(&format!(
        "To: {};tag=lr1\r\n",
        header(req, "To").unwrap_or("")
    ));
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

#[test]
fn local_route_adds_a_header_and_drops() {
    let cfg = CFG.replace(
        "route {",
        r#"loadmodule "textops.so"
local_route {
    if (uri =~ "^sip:drop@") { drop; }
    append_hf("X-Local: $rm\r\n");
}
event_route[tm:local-request] {
    append_hf("X-Event: $ru\r\n");
}
route {"#,
    );
    let s = Server::start(&cfg, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let peer = Client::new();
    let hdrs = "\"From: <sip:mi@localhost>\nTo: <sip:peer@localhost>\"";
    // dropped: the MI caller learns it at once, nothing is sent
    let r = mi(
        &dir,
        "t_uac_dlg",
        &[
            "OPTIONS",
            &format!("sip:drop@127.0.0.1:{}", peer.port()),
            ".",
            ".",
            hdrs,
        ],
    );
    assert!(r.starts_with("200 OK\n500 MI/UAC failed"), "{r}");
    let d2 = dir.clone();
    let ruri = format!("sip:keep@127.0.0.1:{}", peer.port());
    let t = std::thread::spawn(move || mi(&d2, "t_uac_dlg", &["OPTIONS", &ruri, ".", ".", hdrs]));
    let (req, from) = peer.recv().expect("the local OPTIONS");
    assert!(
        req.starts_with("OPTIONS sip:keep@"),
        "the dropped one was not sent: {req}"
    );
    assert_eq!(header(&req, "X-Local"), Some("OPTIONS"), "{req}");
    assert!(
        header(&req, "X-Event").is_some_and(|v| v.starts_with("sip:keep@")),
        "event_route[tm:local-request] too: {req}"
    );
    assert!(
        header(&req, "Via").is_some_and(|v| v.contains("branch=z9hG4bK")),
        "{req}"
    );
    peer.send(from, &ok_to(&req));
    let r = t.join().unwrap();
    assert!(r.starts_with("200 OK\n200 OK\n"), "{r}\n{}", s.log());
}

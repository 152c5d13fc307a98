//! tm and rr (issue 5): stateful forwarding through the real binary, with test UASes
//! on UDP sockets answering per scenario.

use crate::harness::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn cfg(extra_params: &str, uas2: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=4
loadmodule "tm.so"
loadmodule "rr.so"
modparam("tm", "fr_timer", 2)
modparam("tm", "fr_inv_timer", 4)
modparam("tm", "wt_timer", 1)
{extra_params}
route {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
    }}
    if ($rU == "fork") {{
        append_branch("sip:fork2@127.0.0.1:{uas2}");
    }}
    if ($rU == "reroute") {{
        t_on_failure("1");
    }}
    t_relay();
}}
failure_route[1] {{
    if (t_check_status("408")) {{
        rewritehostport("127.0.0.1:{uas2}");
        t_relay();
    }}
}}
"#
    )
}

/// A reply to `req` (all Vias, From, To + tag, Call-ID, CSeq).
fn reply_to(req: &str, code: u16, reason: &str, totag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for v in headers(req, "Record-Route") {
        s.push_str(&format!("Record-Route: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, n) {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    let to = header(req, "To").unwrap_or("");
    if to.contains("tag=") || totag.is_empty() {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!("To: {to};tag={totag}\r\n"));
    }
    if (200..300).contains(&code) {
        s.push_str("Contact: <sip:uas@127.0.0.1>\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

fn first_line(m: &str) -> &str {
    m.lines().next().unwrap_or("")
}

/// Receive the next request/reply whose first line contains `needle`, within `t`.
fn expect(c: &Client, needle: &str, t: Duration) -> Option<(String, SocketAddr)> {
    let end = Instant::now() + t;
    while Instant::now() < end {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (m, from) = c.recv_timeout(left)?;
        if first_line(&m).contains(needle) {
            return Some((m, from));
        }
    }
    None
}

fn invite(ruri: &str, port: u16, callid: &str) -> String {
    request(
        "INVITE",
        ruri,
        port,
        callid,
        1,
        "Contact: <sip:alice@127.0.0.1>\r\n",
    )
}

fn check_log(s: &Server) {
    let log = s.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("ALERT") || l.contains("CRIT")),
        "{log}"
    );
}

#[test]
fn busy_486_is_relayed_and_acked() {
    let uas = Client::new();
    let mut s = Server::start(&cfg("", 9), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "c486"));
    let (t, _) = expect(&caller, "100", Duration::from_secs(2)).expect("100 Trying");
    assert!(header(&t, "To").is_some());
    let (inv, from) = expect(&uas, "INVITE", Duration::from_secs(2)).expect("INVITE at UAS");
    let via = header(&inv, "Via").unwrap();
    assert!(via.contains("branch=z9hG4bK"), "{via}");
    assert!(
        header(&inv, "Record-Route").is_some_and(|r| r.contains(";lr")),
        "{inv}"
    );
    uas.send(from, &reply_to(&inv, 486, "Busy Here", "uas1"));
    let (busy, _) = expect(&caller, "486", Duration::from_secs(2)).expect("486 relayed");
    assert_eq!(headers(&busy, "Via").len(), 1, "{busy}");
    // The proxy ACKs the 486 downstream itself.
    let (ack, _) = expect(&uas, "ACK", Duration::from_secs(2)).expect("local ACK");
    assert!(header(&ack, "To").unwrap().contains("tag=uas1"), "{ack}");
    // The caller's ACK is absorbed (hop-by-hop).
    let ack_up = format!(
        "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKc4861\r\nFrom: <sip:alice@127.0.0.1>;tag=ac486\r\nTo: {}\r\nCall-ID: c486\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        caller.port(),
        header(&busy, "To").unwrap()
    );
    caller.send(s.addr(), &ack_up);
    assert!(
        expect(&uas, "ACK", Duration::from_millis(700)).is_none(),
        "ACK leaked downstream"
    );
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn timeout_408_and_failure_route_reroutes() {
    let silent = Client::new();
    let uas2 = Client::new();
    let mut s = Server::start(&cfg("", uas2.port()), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:reroute@127.0.0.1:{}", silent.port());
    let t0 = Instant::now();
    caller.send(s.addr(), &invite(&ruri, caller.port(), "cfr"));
    expect(&silent, "INVITE", Duration::from_secs(2)).expect("INVITE at the silent UAS");
    let (inv2, from) = expect(&uas2, "INVITE", Duration::from_secs(5)).expect("rerouted INVITE");
    let el = t0.elapsed();
    assert!(
        el >= Duration::from_millis(1800) && el < Duration::from_millis(3500),
        "{el:?}"
    );
    assert!(
        inv2.starts_with(&format!("INVITE sip:reroute@127.0.0.1:{} ", uas2.port())),
        "{inv2}"
    );
    uas2.send(from, &reply_to(&inv2, 200, "OK", "u2"));
    expect(&caller, "200", Duration::from_secs(2)).expect("200 from the second UAS");
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn timeout_without_failure_route_gives_408() {
    let silent = Client::new();
    let mut s = Server::start(&cfg("", 9), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:x@127.0.0.1:{}", silent.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "c408"));
    // fr_timer is 2 s; the wait is generous so that a loaded machine cannot fail it
    // (this checks that the 408 comes, not how fast).
    let (r, _) = expect(&caller, "408", Duration::from_secs(15)).expect("408");
    assert!(header(&r, "To").unwrap().contains("tag="), "{r}");
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn cancel_of_ringing_call() {
    let uas = Client::new();
    let mut s = Server::start(&cfg("", 9), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    let inv = invite(&ruri, caller.port(), "ccan");
    caller.send(s.addr(), &inv);
    let (dinv, from) = expect(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    uas.send(from, &reply_to(&dinv, 180, "Ringing", "u1"));
    expect(&caller, "180", Duration::from_secs(2)).expect("180 relayed");
    let cancel = request("CANCEL", &ruri, caller.port(), "ccan", 1, "");
    caller.send(s.addr(), &cancel);
    let (ok, _) = expect(&caller, "200", Duration::from_secs(2)).expect("200 for CANCEL");
    assert!(header(&ok, "CSeq").unwrap().contains("CANCEL"), "{ok}");
    let (dcan, from) = expect(&uas, "CANCEL", Duration::from_secs(2)).expect("CANCEL downstream");
    assert_eq!(
        header(&dcan, "Via"),
        header(&dinv, "Via"),
        "CANCEL must carry the INVITE's branch"
    );
    uas.send(from, &reply_to(&dcan, 200, "OK", "u1"));
    uas.send(from, &reply_to(&dinv, 487, "Request Terminated", "u1"));
    let (r, _) = expect(&caller, "487", Duration::from_secs(2)).expect("487 for INVITE");
    assert!(header(&r, "CSeq").unwrap().contains("INVITE"));
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn retransmitted_invite_reaches_uas_once() {
    let uas = Client::new();
    let mut s = Server::start(&cfg("", 9), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    let inv = invite(&ruri, caller.port(), "crtx");
    caller.send(s.addr(), &inv);
    let (dinv, from) = expect(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    uas.send(from, &reply_to(&dinv, 180, "Ringing", "u1"));
    expect(&caller, "180", Duration::from_secs(2)).unwrap();
    caller.send(s.addr(), &inv);
    caller.send(s.addr(), &inv);
    // The retransmissions get the last provisional again and never reach the UAS.
    expect(&caller, "180", Duration::from_secs(2)).expect("180 re-sent");
    assert!(
        expect(&uas, "INVITE", Duration::from_millis(800)).is_none(),
        "INVITE retransmission leaked"
    );
    uas.send(from, &reply_to(&dinv, 486, "Busy Here", "u1"));
    expect(&caller, "486", Duration::from_secs(2)).unwrap();
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn parallel_forking_first_200_wins_other_cancelled() {
    let uas1 = Client::new();
    let uas2 = Client::new();
    let mut s = Server::start(&cfg("", uas2.port()), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:fork@127.0.0.1:{}", uas1.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "cfork"));
    let (i1, f1) = expect(&uas1, "INVITE", Duration::from_secs(2)).expect("branch 1");
    let (i2, f2) = expect(&uas2, "INVITE", Duration::from_secs(2)).expect("branch 2");
    assert_ne!(header(&i1, "Via"), header(&i2, "Via"));
    uas2.send(f2, &reply_to(&i2, 180, "Ringing", "b2"));
    uas1.send(f1, &reply_to(&i1, 200, "OK", "b1"));
    let (ok, _) = expect(&caller, "200", Duration::from_secs(2)).expect("200 relayed");
    assert!(header(&ok, "To").unwrap().contains("tag=b1"));
    let (c2, _) =
        expect(&uas2, "CANCEL", Duration::from_secs(2)).expect("CANCEL to the other branch");
    assert_eq!(header(&c2, "Via"), header(&i2, "Via"));
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn retransmissions_follow_t1_doubling() {
    let silent = Client::new();
    let mut s = Server::start(&cfg("modparam(\"tm\", \"fr_timer\", 6)", 9), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:x@127.0.0.1:{}", silent.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "ct1"));
    let mut times = Vec::new();
    let end = Instant::now() + Duration::from_millis(4200);
    while Instant::now() < end && times.len() < 4 {
        if expect(
            &silent,
            "INVITE",
            end.saturating_duration_since(Instant::now()),
        )
        .is_some()
        {
            times.push(Instant::now());
        }
    }
    assert_eq!(times.len(), 4, "first send + 3 retransmissions");
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    for (g, want) in gaps.iter().zip([500u128, 1000, 2000]) {
        assert!(g + 150 >= want && *g <= want + 250, "gaps {gaps:?}");
    }
    check_log(&s);
    assert!(s.stop().success());
}

const SIPP_CFG: &str = r#"listen=udp:127.0.0.1:{PORT}
children=4
debug=3
memlog=1
loadmodule "tm.so"
loadmodule "rr.so"
modparam("tm", "wt_timer", 1)
route {
    if ($tt != null) {
        if (loose_route()) {
            t_relay();
        }
        exit;
    }
    record_route();
    rewritehostport("127.0.0.1:{UAS}");
    t_relay();
}
"#;

/// `used=` of the last SIGUSR1 shm dump in the log.
fn shm_used(s: &Server) -> Option<u64> {
    let log = s.log();
    let line = log.lines().rev().find(|l| l.contains(" used= "))?;
    let v = line.split("used= ").nth(1)?.split(',').next()?;
    v.trim().parse().ok()
}

fn dump_shm(s: &Server) -> u64 {
    let n = s.log().matches(" used= ").count();
    s.signal(libc::SIGUSR1);
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && s.log().matches(" used= ").count() == n {
        std::thread::sleep(Duration::from_millis(50));
    }
    shm_used(s).expect("shm dump in the log")
}

fn inuse_at_exit(s: &Server) -> Option<u64> {
    let log = s.log();
    let l = log
        .lines()
        .rev()
        .find(|l| l.contains("inuse_transactions="))?;
    l.split("inuse_transactions=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn shm_bytes_per_transaction() {
    let silent = Client::new();
    let mut s = Server::start(
        &SIPP_CFG
            .replace("{UAS}", &silent.port().to_string())
            .replace("wt_timer\", 1", "fr_inv_timer\", 60"),
        &["-DD", "-E"],
    );
    let caller = Client::new();
    let idle = dump_shm(&s);
    const N: usize = 500;
    for i in 0..N {
        let body = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let m = format!(
            "INVITE sip:service@127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bK-{i}-1\r\nFrom: sipp <sip:sipp@127.0.0.1:{cp}>;tag={i}SIPpTag001\r\nTo: service <sip:service@127.0.0.1:{p}>\r\nCall-ID: {i}-12345@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:{cp}\r\nMax-Forwards: 70\r\nSubject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            p = s.port,
            cp = caller.port()
        );
        caller.send(s.addr(), &m);
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    let loaded = dump_shm(&s);
    let per = (loaded.saturating_sub(idle)) / N as u64;
    eprintln!("tm: shm bytes per INVITE transaction (1 branch, 100 Trying stored): {per}");
    assert!(per <= 4096, "{per} bytes per transaction");
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn sipp_calls_through_record_route_and_no_leak() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("sipp");
    let (mut uas, uas_port) = sipp_uas(dir.path());
    let mut s = Server::start(
        &SIPP_CFG.replace("{UAS}", &uas_port.to_string()),
        &["-DD", "-E"],
    );
    let idle = dump_shm(&s);
    let calls = std::env::var("TM_SIPP_CALLS").unwrap_or_else(|_| "10000".into());
    let out = owned("sipp")
        .args([
            "-sf",
            &scenario("uac.xml"),
            &format!("127.0.0.1:{}", s.port),
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
            "-r",
            "500",
            "-m",
            &calls,
            "-nostdin",
            "-timeout",
            "120",
            "-timeout_error",
            "-trace_stat",
            "-stf",
            &dir.file("uac.csv").display().to_string(),
        ])
        .current_dir(dir.path())
        .output()
        .expect("sipp uac");
    uas.kill();
    let stat = std::fs::read_to_string(dir.file("uac.csv")).unwrap_or_default();
    assert!(
        out.status.success(),
        "sipp uac failed: {}\n{stat}\n{}",
        String::from_utf8_lossy(&out.stdout),
        s.log()
    );
    // After the wait timer everything is gone.
    std::thread::sleep(Duration::from_millis(2500));
    let after = dump_shm(&s);
    eprintln!("tm: shm used idle {idle}, after {calls} calls + wait timer {after}");
    assert!(
        after <= idle + 1024,
        "shm not returned: idle {idle}, after {after}"
    );
    check_log(&s);
    assert!(s.stop().success());
    assert_eq!(inuse_at_exit(&s), Some(0), "{}", s.log());
}

fn cfg2(uas2: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=4
loadmodule "tm.so"
loadmodule "rr.so"
modparam("rr", "enable_full_lr", 1)
route {{
    if (loose_route()) {{
        if (check_route_param("foo=bar") && is_direction("downstream")) {{
            rewriteuser("down");
        }}
        t_relay();
        exit;
    }}
    if ($rU == "reply") {{
        if (!t_newtran()) {{
            exit;
        }}
        t_reply("404", "Not Here");
        exit;
    }}
    if ($rU == "nobranch") {{
        append_branch("sip:fork2@127.0.0.1:{uas2}");
        t_on_branch("1");
    }}
    if ($rU == "auth") {{
        append_branch("sip:auth2@127.0.0.1:{uas2}");
    }}
    if ($rU == "rearm") {{
        t_on_failure("3");
    }}
    if ($rU == "serial") {{
        append_branch("sip:s2@127.0.0.1:{uas2}", "0.5");
        serialize_branches(1);
        next_branches();
        t_on_failure("2");
    }}
    add_rr_param(";p1=v1");
    record_route(";foo=bar");
    t_relay();
}}
failure_route[2] {{
    if (next_branches()) {{
        t_relay();
    }}
}}
failure_route[3] {{
    t_on_failure("3");
}}
branch_route[1] {{
    if ($rU == "fork2") {{
        drop;
    }}
}}
"#
    )
}

#[test]
fn t_newtran_t_reply_and_retransmission() {
    let mut s = Server::start(&cfg2(9), &["-DD", "-E"]);
    let caller = Client::new();
    let m = request(
        "OPTIONS",
        "sip:reply@127.0.0.1",
        caller.port(),
        "cnt",
        1,
        "",
    );
    caller.send(s.addr(), &m);
    let (r, _) = expect(&caller, "404", Duration::from_secs(2)).expect("404");
    let tag = header(&r, "To").unwrap().to_string();
    assert!(tag.contains("tag="), "{r}");
    caller.send(s.addr(), &m);
    let (r2, _) = expect(&caller, "404", Duration::from_secs(2)).expect("404 re-sent");
    assert_eq!(header(&r2, "To").unwrap(), tag);
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn record_route_params_and_loose_route() {
    let uas = Client::new();
    let mut s = Server::start(&cfg2(9), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "crr"));
    let (inv, from) = expect(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    let rr = header(&inv, "Record-Route").unwrap().to_string();
    assert_eq!(
        rr,
        format!("<sip:127.0.0.1:{};lr=on;ftag=acrr;foo=bar;p1=v1>", s.port),
        "{inv}"
    );
    uas.send(from, &reply_to(&inv, 200, "OK", "b"));
    let (ok, _) = expect(&caller, "200", Duration::from_secs(2)).unwrap();
    assert_eq!(header(&ok, "Record-Route").unwrap(), rr);
    // In-dialog BYE, loose-routed through our Route to the UAS contact.
    let bye = format!(
        "BYE sip:uas@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKbye1\r\nRoute: {rr}\r\nFrom: <sip:alice@127.0.0.1>;tag=acrr\r\nTo: <{ruri}>;tag=b\r\nCall-ID: crr\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        uas.port(),
        caller.port()
    );
    caller.send(s.addr(), &bye);
    let (dbye, from) = expect(&uas, "BYE", Duration::from_secs(2)).expect("BYE at the UAS");
    assert!(
        header(&dbye, "Route").is_none(),
        "our Route must be removed: {dbye}"
    );
    assert!(
        dbye.starts_with("BYE sip:down@"),
        "route params / direction: {dbye}"
    );
    uas.send(from, &reply_to(&dbye, 200, "OK", ""));
    expect(&caller, "200", Duration::from_secs(2)).expect("200 for BYE");
    // Strict-router style: the R-URI is our RR URI, the target is the last Route.
    let bye2 = format!(
        "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKbye2\r\nRoute: <sip:uas@127.0.0.1:{}>\r\nFrom: <sip:alice@127.0.0.1>;tag=acrr\r\nTo: <{ruri}>;tag=b\r\nCall-ID: crr\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        rr.trim_matches(['<', '>']),
        caller.port(),
        uas.port()
    );
    caller.send(s.addr(), &bye2);
    let (dbye2, _) = expect(&uas, "BYE", Duration::from_secs(2)).expect("strict-routed BYE");
    // (the route params of our RR URI were seen, so the script rewrote the user again)
    assert!(
        dbye2.starts_with(&format!("BYE sip:down@127.0.0.1:{} ", uas.port())),
        "{dbye2}"
    );
    assert!(header(&dbye2, "Route").is_none(), "{dbye2}");
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn branch_route_drop_removes_branch() {
    let uas1 = Client::new();
    let uas2 = Client::new();
    let mut s = Server::start(&cfg2(uas2.port()), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:nobranch@127.0.0.1:{}", uas1.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "cbr"));
    let (i1, f1) = expect(&uas1, "INVITE", Duration::from_secs(2)).expect("branch 1");
    assert!(
        expect(&uas2, "INVITE", Duration::from_millis(700)).is_none(),
        "dropped branch was sent"
    );
    uas1.send(f1, &reply_to(&i1, 486, "Busy Here", "x"));
    expect(&caller, "486", Duration::from_secs(2)).expect("486");
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn forked_407s_are_aggregated() {
    let uas1 = Client::new();
    let uas2 = Client::new();
    let mut s = Server::start(&cfg2(uas2.port()), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:auth@127.0.0.1:{}", uas1.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "cauth"));
    let (i1, f1) = expect(&uas1, "INVITE", Duration::from_secs(2)).unwrap();
    let (i2, f2) = expect(&uas2, "INVITE", Duration::from_secs(2)).unwrap();
    let ch = |req: &str, realm: &str| {
        reply_to(req, 407, "Proxy Authentication Required", realm).replace(
            "Content-Length: 0\r\n",
            &format!("Proxy-Authenticate: Digest realm=\"{realm}\", nonce=\"n{realm}\"\r\nContent-Length: 0\r\n"),
        )
    };
    uas1.send(f1, &ch(&i1, "r1"));
    uas2.send(f2, &ch(&i2, "r2"));
    let (r, _) = expect(&caller, "407", Duration::from_secs(2)).expect("407");
    let pa = headers(&r, "Proxy-Authenticate");
    assert_eq!(pa.len(), 2, "{r}");
    assert!(
        pa.iter().any(|h| h.contains("r1")) && pa.iter().any(|h| h.contains("r2")),
        "{r}"
    );
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn serial_forking_through_failure_route() {
    let uas1 = Client::new();
    let uas2 = Client::new();
    let mut s = Server::start(&cfg2(uas2.port()), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:serial@127.0.0.1:{}", uas1.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "cser"));
    let (i1, f1) = expect(&uas1, "INVITE", Duration::from_secs(2)).expect("first target");
    assert!(
        expect(&uas2, "INVITE", Duration::from_millis(300)).is_none(),
        "serial, not parallel"
    );
    uas1.send(f1, &reply_to(&i1, 486, "Busy Here", "x1"));
    let (i2, f2) = expect(&uas2, "INVITE", Duration::from_secs(2)).expect("next target");
    assert!(
        i2.starts_with(&format!("INVITE sip:s2@127.0.0.1:{} ", uas2.port())),
        "{i2}"
    );
    uas2.send(f2, &reply_to(&i2, 200, "OK", "x2"));
    let (ok, _) =
        expect(&caller, "200", Duration::from_secs(2)).expect("200 from the second target");
    assert!(header(&ok, "To").unwrap().contains("tag=x2"));
    assert!(expect(&caller, "486", Duration::from_millis(300)).is_none());
    check_log(&s);
    assert!(s.stop().success());
}

#[test]
fn failure_route_without_new_branch_relays_the_reply() {
    let uas = Client::new();
    let mut s = Server::start(&cfg2(9), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:rearm@127.0.0.1:{}", uas.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "crearm"));
    let (i, f) = expect(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    uas.send(f, &reply_to(&i, 486, "Busy Here", "r"));
    expect(&caller, "486", Duration::from_secs(2)).expect("486 after failure_route");
    check_log(&s);
    assert!(s.stop().success());
}

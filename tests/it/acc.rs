//! acc (reference §8.13): accounting to the log through the real binary, with tm
//! transactions between two UDP clients (caller and UAS).

use crate::harness::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn cfg(uas2: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "tm.so"
loadmodule "acc.so"
modparam("tm", "fr_timer", 2)
modparam("tm", "fr_inv_timer", 4)
modparam("tm", "wt_timer", 1)
modparam("acc", "log_flag", 1)
modparam("acc", "log_missed_flag", 2)
modparam("acc", "failed_transaction_flag", 3)
modparam("acc", "log_extra", "x=$avp(s:x);ua=$hdr(User-Agent)")
route {{
    $avp(s:x) = "xv";
    if ($rU == "req") {{
        acc_log_request("555 Test Comment");
        exit;
    }}
    if ($rU == "acc") {{
        setflag(1);
    }}
    if ($rU == "missed") {{
        setflag(2);
    }}
    if ($rU == "failed") {{
        setflag(1);
        setflag(2);
        setflag(3);
    }}
    if ($rU == "fr") {{
        setflag(2);
        t_on_failure("1");
    }}
    t_relay();
}}
failure_route[1] {{
    rewritehostport("127.0.0.1:{uas2}");
    t_relay();
}}
"#
    )
}

/// A reply to `req` (Vias, From, To + tag, Call-ID, CSeq).
fn reply_to(req: &str, code: u16, reason: &str, totag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, n) {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    let to = header(req, "To").unwrap_or("");
    s.push_str(&format!("To: {to};tag={totag}\r\n"));
    if (200..300).contains(&code) {
        s.push_str("Contact: <sip:uas@127.0.0.1>\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// The next message whose first line contains `needle`, within `t`.
fn expect(c: &Client, needle: &str, t: Duration) -> Option<(String, SocketAddr)> {
    let end = Instant::now() + t;
    while Instant::now() < end {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (m, from) = c.recv_timeout(left)?;
        if m.lines().next().unwrap_or("").contains(needle) {
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
        "Contact: <sip:alice@127.0.0.1>\r\nUser-Agent: acc-test\r\n",
    )
}

/// Send an INVITE for `user` through `s` to `uas`, answer it with `code`, wait for the
/// reply at the caller.
fn call(s: &Server, uas: &Client, user: &str, callid: &str, code: u16, reason: &str) {
    let caller = Client::new();
    let ruri = format!("sip:{user}@127.0.0.1:{}", uas.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), callid));
    let (inv, from) = expect(uas, "INVITE", Duration::from_secs(3)).expect("INVITE at UAS");
    uas.send(from, &reply_to(&inv, code, reason, "uas1"));
    expect(&caller, &code.to_string(), Duration::from_secs(3)).expect("final reply relayed");
}

/// Log lines containing both `prefix` and `call_id=<callid>;`.
fn acc_lines(s: &Server, prefix: &str, callid: &str) -> Vec<String> {
    let needle = format!("call_id={callid};");
    s.log()
        .lines()
        .filter(|l| l.contains(prefix) && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Wait for the first `prefix` line of `callid`, then a little longer for duplicates.
fn settle(s: &Server, prefix: &str, callid: &str) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && acc_lines(s, prefix, callid).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    acc_lines(s, prefix, callid)
}

#[test]
fn answered_flagged_invite_is_logged_once() {
    let uas = Client::new();
    let mut s = Server::start(&cfg(9), &["-DD", "-E"]);
    call(&s, &uas, "acc", "cacc1", 200, "OK");
    let l = settle(&s, "ACC: transaction answered: ", "cacc1");
    assert_eq!(l.len(), 1, "{}", s.log());
    let line = &l[0];
    assert!(
        line.contains("ACC: transaction answered: timestamp="),
        "{line}"
    );
    assert!(line.contains(";method=INVITE;"), "{line}");
    assert!(line.contains(";from_tag=acacc1;"), "{line}");
    assert!(line.contains(";to_tag=uas1;"), "{line}");
    assert!(line.contains(";code=200;reason=OK;"), "{line}");
    assert!(line.ends_with(";x=xv;ua=acc-test"), "{line}");
    assert!(acc_lines(&s, "ACC: call missed: ", "cacc1").is_empty());
    assert!(s.stop().success());
}

#[test]
fn unflagged_invite_is_not_accounted() {
    let uas = Client::new();
    let mut s = Server::start(&cfg(9), &["-DD", "-E"]);
    call(&s, &uas, "plain", "cplain", 200, "OK");
    // A flagged call afterwards proves accounting is working in this server.
    call(&s, &uas, "acc", "cafter", 200, "OK");
    assert_eq!(settle(&s, "ACC: transaction answered: ", "cafter").len(), 1);
    assert!(!s.log().contains("call_id=cplain;"), "{}", s.log());
    assert!(s.stop().success());
}

#[test]
fn busy_with_missed_flag_is_a_missed_call() {
    let uas = Client::new();
    let mut s = Server::start(&cfg(9), &["-DD", "-E"]);
    call(&s, &uas, "missed", "cmiss", 486, "Busy Here");
    let l = settle(&s, "ACC: call missed: ", "cmiss");
    assert_eq!(l.len(), 1, "{}", s.log());
    assert!(l[0].contains(";method=INVITE;"), "{}", l[0]);
    assert!(l[0].contains(";to_tag=uas1;"), "{}", l[0]);
    assert!(l[0].contains(";code=486;reason=Busy Here;"), "{}", l[0]);
    assert!(acc_lines(&s, "ACC: transaction answered: ", "cmiss").is_empty());

    // With log_flag + failed_transaction_flag the failed transaction is logged too.
    call(&s, &uas, "failed", "cfail", 486, "Busy Here");
    let l = settle(&s, "ACC: transaction answered: ", "cfail");
    assert_eq!(l.len(), 1, "{}", s.log());
    assert!(l[0].contains(";code=486;reason=Busy Here;"), "{}", l[0]);
    assert_eq!(acc_lines(&s, "ACC: call missed: ", "cfail").len(), 1);
    assert!(s.stop().success());
}

#[test]
fn missed_flag_is_reset_before_failure_route() {
    let uas = Client::new();
    let uas2 = Client::new();
    let mut s = Server::start(&cfg(uas2.port()), &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:fr@127.0.0.1:{}", uas.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "cfr"));
    let (inv, from) = expect(&uas, "INVITE", Duration::from_secs(3)).expect("INVITE at UAS");
    uas.send(from, &reply_to(&inv, 404, "Not Found", "u1"));
    let (inv2, from2) =
        expect(&uas2, "INVITE", Duration::from_secs(3)).expect("INVITE rerouted by failure_route");
    uas2.send(from2, &reply_to(&inv2, 486, "Busy Here", "u2"));
    // tm relays the best of both branches' replies (the 404).
    expect(&caller, "SIP/2.0 4", Duration::from_secs(3)).expect("negative reply relayed");
    // One missed call (the first negative outcome); the flag is not set again.
    let l = settle(&s, "ACC: call missed: ", "cfr");
    assert_eq!(l.len(), 1, "{}", s.log());
    assert!(l[0].contains(";code=404;reason=Not Found;"), "{}", l[0]);
    assert!(l[0].contains(";to_tag=u1;"), "{}", l[0]);
    assert!(s.stop().success());
}

#[test]
fn acc_log_request_accounts_the_request() {
    let mut s = Server::start(&cfg(9), &["-DD", "-E"]);
    let caller = Client::new();
    let m = request(
        "OPTIONS",
        "sip:req@127.0.0.1",
        caller.port(),
        "creq",
        7,
        "User-Agent: ua-req\r\n",
    );
    caller.send(s.addr(), &m);
    let l = settle(&s, "ACC: request accounted: ", "creq");
    assert_eq!(l.len(), 1, "{}", s.log());
    assert!(l[0].contains(";method=OPTIONS;"), "{}", l[0]);
    assert!(l[0].contains(";from_tag=acreq;to_tag=;"), "{}", l[0]);
    assert!(
        l[0].contains(";code=555;reason=Test Comment;x=xv;ua=ua-req"),
        "{}",
        l[0]
    );
    assert!(s.stop().success());
}

/// SQL accounting against a private MariaDB with the openser schema (skipped when no
/// MariaDB is installed, fatal under CI).
#[test]
fn db_accounting_rows_in_acc_and_missed_calls() {
    let Some(db) = crate::harness::mariadb::MariaDb::start() else {
        return;
    };
    db.create_openser_db();
    let conf = format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "mysql.so"
loadmodule "tm.so"
loadmodule "acc.so"
modparam("acc", "db_url", "{url}")
modparam("acc", "db_flag", 1)
modparam("acc", "db_missed_flag", 2)
route {{
    if ($rU == "req") {{
        acc_db_request("202 Noted", "acc");
        exit;
    }}
    setflag(1);
    setflag(2);
    t_relay();
}}
"#,
        url = db.url("openser", "openserrw", "openser")
    );
    let uas = Client::new();
    let mut s = Server::start(&conf, &["-DD", "-E"]);
    call(&s, &uas, "dbok", "cdb1", 200, "OK");
    call(&s, &uas, "dbbusy", "cdb2", 486, "Busy Here");
    let caller = Client::new();
    caller.send(
        s.addr(),
        &request("OPTIONS", "sip:req@127.0.0.1", caller.port(), "cdb3", 1, ""),
    );
    let q = "SELECT method, from_tag, to_tag, callid, sip_code, sip_reason, \
             time > NOW() - INTERVAL 1 HOUR FROM acc";
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && db.sql(Some("openser"), q).lines().count() < 2 {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rows = db.sql(Some("openser"), q);
    // The INVITE's row is written after its 200 went out, so it may land after the
    // OPTIONS row: compare without order.
    let mut lines: Vec<&str> = rows.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "INVITE\tacdb1\tuas1\tcdb1\t200\tOK\t1",
            "OPTIONS\tacdb3\t\tcdb3\t202\tNoted\t1"
        ],
        "{}",
        s.log()
    );
    let missed = db.sql(
        Some("openser"),
        "SELECT method, to_tag, callid, sip_code, sip_reason FROM missed_calls",
    );
    assert_eq!(missed.trim_end(), "INVITE\tuas1\tcdb2\t486\tBusy Here");
    assert!(s.stop().success());
}

const DIALOG_CFG: &str = r#"listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "acc.so"
modparam("acc", "log_flag", 1)
modparam("acc", "early_media", 1)
modparam("acc", "report_ack", 1)
modparam("acc", "detect_direction", 1)
modparam("acc", "log_extra", "fu=$fu;tu=$tu")
modparam("acc", "multi_leg_info", "src=$avp(i:901);dst=$avp(i:902)")
route {
    setflag(1);
    if (loose_route()) {
        t_relay();
        exit;
    }
    record_route();
    $avp(i:901) = $fu;
    $avp(i:902) = $ru;
    t_relay();
}
"#;

/// early_media, report_ack, detect_direction and multi_leg_info over a whole dialog:
/// a 183 and the 200 are accounted, so is the caller's ACK, and the callee's BYE is
/// accounted with From and To swapped.
#[test]
fn early_media_ack_and_upstream_bye_records() {
    let uas = Client::new();
    let caller = Client::new();
    let s = Server::start(DIALOG_CFG, &["-DD", "-E"]);
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    caller.send(s.addr(), &invite(&ruri, caller.port(), "cdlg"));
    let (inv, from) = expect(&uas, "INVITE", Duration::from_secs(3)).expect("INVITE");
    let with_rr = |mut r: String| {
        let rr = header(&inv, "Record-Route").expect("RR").to_string();
        r.insert_str(
            r.find("\r\n").unwrap() + 2,
            &format!("Record-Route: {rr}\r\n"),
        );
        r
    };
    uas.send(
        from,
        &with_rr(reply_to(&inv, 183, "Session Progress", "uas1")),
    );
    uas.send(from, &with_rr(reply_to(&inv, 200, "OK", "uas1")));
    let (ok, _) = expect(&caller, "200", Duration::from_secs(3)).expect("200");
    let early = settle(&s, "ACC: transaction answered: ", "cdlg");
    assert_eq!(early.len(), 2, "183 and 200: {}", s.log());
    assert!(
        early[0].contains(";code=183;reason=Session Progress;"),
        "{}",
        early[0]
    );
    assert!(early[1].contains(";code=200;reason=OK;"), "{}", early[1]);
    // one leg, appended after the extras
    let leg = format!(";src=sip:alice@127.0.0.1;dst={ruri}");
    assert!(early[1].ends_with(&leg), "{}", early[1]);
    // the caller's ACK for the 200, along the Route
    let rr = header(&ok, "Record-Route").unwrap().to_string();
    let to = header(&ok, "To").unwrap().to_string();
    let p = caller.port();
    caller.send(
        s.addr(),
        &format!(
            "ACK sip:uas@127.0.0.1:{u} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKack1\r\n\
             Route: {rr}\r\nFrom: <sip:alice@127.0.0.1>;tag=acdlg\r\nTo: {to}\r\nCall-ID: cdlg\r\n\
             CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            u = uas.port()
        ),
    );
    assert!(expect(&uas, "ACK", Duration::from_secs(3)).is_some());
    let acked = settle(&s, "ACC: request acknowledged: ", "cdlg");
    assert_eq!(acked.len(), 1, "{}", s.log());
    assert!(
        acked[0].contains(";method=ACK;from_tag=acdlg;to_tag=uas1;call_id=cdlg;code=200;reason=OK"),
        "{}",
        acked[0]
    );
    // the callee hangs up: From/To swapped in the record
    uas.send(
        s.addr(),
        &format!(
            "BYE sip:alice@127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{u};branch=z9hG4bKbye1\r\n\
             Route: {rr}\r\nFrom: {to}\r\nTo: <sip:alice@127.0.0.1>;tag=acdlg\r\nCall-ID: cdlg\r\n\
             CSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            u = uas.port()
        ),
    );
    let (bye, bfrom) = expect(&caller, "BYE", Duration::from_secs(3)).expect("BYE");
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for v in headers(&bye, "Via") {
        ok.push_str(&format!("Via: {v}\r\n"));
    }
    for n in ["From", "To", "Call-ID", "CSeq"] {
        ok.push_str(&format!("{n}: {}\r\n", header(&bye, n).unwrap()));
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    caller.send(bfrom, &ok);
    assert!(expect(&uas, "200", Duration::from_secs(3)).is_some());
    let end = Instant::now() + Duration::from_secs(3);
    let bye_line = loop {
        let l = acc_lines(&s, "ACC: transaction answered: ", "cdlg");
        if let Some(b) = l.iter().find(|l| l.contains("method=BYE")) {
            break b.clone();
        }
        assert!(Instant::now() < end, "no BYE record: {}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        bye_line.contains(";from_tag=acdlg;to_tag=uas1;")
            && bye_line.contains(";fu=sip:alice@127.0.0.1;tu=sip:bob@127.0.0.1"),
        "{bye_line}"
    );
}

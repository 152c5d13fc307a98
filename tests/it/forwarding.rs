//! etc/examples/call-forwarding.cfg end to end (issue 15), against a private MariaDB:
//! unconditional forwarding to another user, forwarding on busy and on no answer to
//! a voicemail UAS, and the acc rows of every leg (multi_leg_info) and missed call.
//! Phones, caller and voicemail are UDP sockets of this test.

use super::uac::{expect, reply_to};
use crate::harness::mariadb::MariaDb;
use crate::harness::*;
use std::net::SocketAddr;
use std::time::Duration;

const EXAMPLE: &str = include_str!("../../etc/examples/call-forwarding.cfg");
const DEFAULT_URL: &str = "mysql://openser:openserrw@localhost/openser";

fn config(url: &str) -> String {
    let cfg = EXAMPLE
        .replace(DEFAULT_URL, url)
        .replace("listen=udp:127.0.0.1:5060", "listen=udp:127.0.0.1:{PORT}")
        .replace("children=4", "children=2")
        .replace("\"fr_inv_timer\", 20", "\"fr_inv_timer\", 2")
        .replace("log_stderror=no", "log_stderror=yes");
    assert!(
        !cfg.contains(DEFAULT_URL) && cfg.contains("\"fr_inv_timer\", 2)"),
        "the example changed: adapt this test"
    );
    cfg
}

fn register(s: &Server, phone: &Client, user: &str) {
    let p = phone.port();
    let reg = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKr{user}\r\n\
         From: <sip:{user}@example.com>;tag=r{user}\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{p}>\r\n\
         Expires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    phone.send(s.addr(), &reg);
    let (ok, _) = expect(phone, "200", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("REGISTER {user}: {}", s.log()));
    assert!(ok.contains("CSeq: 1 REGISTER"));
}

/// A call from alice to `callee` (sip:callee@example.com), Call-ID `callid`.
fn invite(s: &Server, caller: &Client, callee: &str, callid: &str) {
    let p = caller.port();
    caller.send(
        s.addr(),
        &format!(
            "INVITE sip:{callee}@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{callid}\r\n\
             From: <sip:alice@example.com>;tag=a{callid}\r\nTo: <sip:{callee}@example.com>\r\n\
             Call-ID: {callid}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{p}>\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ),
    );
}

fn ruri_of(req: &str) -> String {
    req.split(' ').nth(1).unwrap_or("").to_string()
}

/// The INVITE of `callid` at `c`.
fn invite_at(c: &Client, callid: &str) -> (String, SocketAddr) {
    loop {
        let (m, from) = expect(c, "INVITE", Duration::from_secs(6))
            .unwrap_or_else(|| panic!("no INVITE for {callid}"));
        if header(&m, "Call-ID") == Some(callid) {
            return (m, from);
        }
    }
}

/// The caller gets the 200 OK of `callid` and ACKs it along the Route set.
fn answered(s: &Server, caller: &Client, callid: &str) {
    let (ok, _) = loop {
        let r = expect(caller, "SIP/2.0 200", Duration::from_secs(6))
            .unwrap_or_else(|| panic!("no 200 for {callid}; log:\n{}", s.log()));
        if header(&r.0, "Call-ID") == Some(callid) {
            break r;
        }
    };
    let route = header(&ok, "Record-Route")
        .expect("Record-Route")
        .to_string();
    let to = header(&ok, "To").unwrap().to_string();
    let contact = header(&ok, "Contact")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_string();
    let p = caller.port();
    caller.send(
        s.addr(),
        &format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKack{callid}\r\n\
             Route: {route}\r\nFrom: <sip:alice@example.com>;tag=a{callid}\r\nTo: {to}\r\n\
             Call-ID: {callid}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ),
    );
}

/// Rows of `table` for `callid`: (sip_code, leg_src, leg_dst), in insertion order.
fn rows(db: &MariaDb, table: &str, callid: &str) -> Vec<(String, String, String)> {
    db.sql(
        Some("openser"),
        &format!(
            "SELECT sip_code, leg_src, leg_dst FROM {table} WHERE callid='{callid}' ORDER BY id"
        ),
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (f[0].into(), f[1].into(), f[2].into())
    })
    .collect()
}

fn row(code: &str, src: &str, dst: &str) -> (String, String, String) {
    (code.into(), src.into(), dst.into())
}

/// Wait until `table` has `n` rows for `callid` (acc writes after the reply went out).
fn wait_rows(db: &MariaDb, table: &str, callid: &str, n: usize) -> Vec<(String, String, String)> {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = rows(db, table, callid);
        if r.len() >= n || std::time::Instant::now() > end {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn call_forwarding_example_end_to_end() {
    let Some(db) = MariaDb::start() else { return };
    db.create_openser_db();
    let vm = Client::new();
    let vm_uri = format!("sip:voicemail@127.0.0.1:{}", vm.port());
    db.sql(
        Some("openser"),
        &format!(
            "ALTER TABLE acc ADD leg_src VARCHAR(128), ADD leg_dst VARCHAR(128);\
             ALTER TABLE missed_calls ADD leg_src VARCHAR(128), ADD leg_dst VARCHAR(128);\
             INSERT INTO usr_preferences (uuid, username, domain, attribute, type, value) VALUES \
               ('', 'bob', 'example.com', 'callfwd', 0, 'sip:carol@example.com'),\
               ('', 'dave', 'example.com', 'fwdbusy', 0, '{vm_uri}'),\
               ('', 'erin', 'example.com', 'fwdnoanswer', 0, '{vm_uri}');"
        ),
    );
    let url = db.url("openser", "openserrw", "openser");
    let s = Server::start(&config(&url), &[]);
    let (carol, dave, erin, caller) = (Client::new(), Client::new(), Client::new(), Client::new());
    for (phone, user) in [(&carol, "carol"), (&dave, "dave"), (&erin, "erin")] {
        register(&s, phone, user);
    }

    // 1. unconditional: bob's calls ring carol
    invite(&s, &caller, "bob", "cf-always");
    let (inv, from) = invite_at(&carol, "cf-always");
    assert_eq!(
        ruri_of(&inv),
        format!("sip:carol@127.0.0.1:{}", carol.port())
    );
    carol.send(
        from,
        &reply_to(
            &inv,
            200,
            "OK",
            "c1",
            &format!("sip:carol@127.0.0.1:{}", carol.port()),
        ),
    );
    answered(&s, &caller, "cf-always");
    assert!(
        expect(&carol, "ACK", Duration::from_secs(3)).is_some(),
        "ACK at carol"
    );
    assert_eq!(
        wait_rows(&db, "acc", "cf-always", 2),
        [
            row("200", "sip:bob@example.com", "sip:carol@example.com"),
            row("200", "sip:alice@example.com", "sip:bob@example.com"),
        ]
    );

    // 2. busy: dave answers 486, the call goes to voicemail
    invite(&s, &caller, "dave", "cf-busy");
    let (inv, from) = invite_at(&dave, "cf-busy");
    dave.send(from, &reply_to(&inv, 486, "Busy Here", "d1", ""));
    assert!(
        expect(&dave, "ACK", Duration::from_secs(3)).is_some(),
        "486 ACKed"
    );
    let (vinv, vfrom) = invite_at(&vm, "cf-busy");
    assert_eq!(ruri_of(&vinv), vm_uri);
    vm.send(vfrom, &reply_to(&vinv, 200, "OK", "v1", &vm_uri));
    answered(&s, &caller, "cf-busy");
    assert_eq!(
        wait_rows(&db, "missed_calls", "cf-busy", 1),
        [row("486", "sip:alice@example.com", "sip:dave@example.com")]
    );
    assert_eq!(
        wait_rows(&db, "acc", "cf-busy", 2),
        [
            row("200", "sip:dave@example.com", &vm_uri),
            row("200", "sip:alice@example.com", "sip:dave@example.com"),
        ]
    );

    // 3. no answer: erin rings past fr_inv_timer, the call goes to voicemail
    invite(&s, &caller, "erin", "cf-noanswer");
    let (inv, from) = invite_at(&erin, "cf-noanswer");
    erin.send(from, &reply_to(&inv, 180, "Ringing", "e1", ""));
    let (cancel, cfrom) = expect(&erin, "CANCEL", Duration::from_secs(6)).expect("CANCEL at erin");
    erin.send(cfrom, &reply_to(&cancel, 200, "OK", "e1", ""));
    erin.send(from, &reply_to(&inv, 487, "Request Terminated", "e1", ""));
    let (vinv, vfrom) = invite_at(&vm, "cf-noanswer");
    vm.send(vfrom, &reply_to(&vinv, 200, "OK", "v2", &vm_uri));
    answered(&s, &caller, "cf-noanswer");
    assert_eq!(
        wait_rows(&db, "missed_calls", "cf-noanswer", 1),
        [row("408", "sip:alice@example.com", "sip:erin@example.com")]
    );
    assert_eq!(
        wait_rows(&db, "acc", "cf-noanswer", 2),
        [
            row("200", "sip:erin@example.com", &vm_uri),
            row("200", "sip:alice@example.com", "sip:erin@example.com"),
        ]
    );
    // the syslog form: both legs on one line
    assert!(
        s.wait_log(
            "leg_src=sip:erin@example.com;leg_dst=sip:voicemail",
            Duration::from_secs(3)
        ),
        "{}",
        s.log()
    );
}

/// OpenSER 1.2 forks only the destination set from failure_route, so 1.2 configs
/// forward there with `rewriteuri(…); append_branch(); t_relay();`: the target gets
/// one INVITE, not two.
#[test]
fn failure_route_append_branch_idiom_forks_once() {
    let callee = Client::new();
    let vm = Client::new();
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "tm.so"
route {{
    t_on_failure("busy");
    t_relay();
}}
failure_route[busy] {{
    if (t_check_status("486")) {{
        rewriteuri("sip:voicemail@127.0.0.1:{}");
        append_branch();
        t_relay();
    }}
}}
"#,
        vm.port()
    );
    let s = Server::start(&cfg, &[]);
    let caller = Client::new();
    let ruri = format!("sip:dave@127.0.0.1:{}", callee.port());
    caller.send(
        s.addr(),
        &request("INVITE", &ruri, caller.port(), "cf-once", 1, ""),
    );
    let inv = invite_at(&callee, "cf-once");
    callee.send(inv.1, &reply_to(&inv.0, 486, "Busy Here", "d1", ""));
    let v = invite_at(&vm, "cf-once");
    // retransmissions of the same branch only
    let via = header(&v.0, "Via").unwrap().to_string();
    while let Some((again, _)) = expect(&vm, "INVITE", Duration::from_millis(700)) {
        assert_eq!(header(&again, "Via"), Some(via.as_str()), "a second branch");
    }
    vm.send(v.1, &reply_to(&v.0, 200, "OK", "v1", "sip:vm@127.0.0.1"));
    let (ok, _) = expect(&caller, "SIP/2.0 200", Duration::from_secs(3)).expect("200");
    assert!(ok.contains("tag=v1"), "{ok}");
}

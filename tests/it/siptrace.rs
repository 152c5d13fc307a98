//! siptrace against a private MariaDB: a call through tm with `trace_flag` and
//! `sip_trace()` stores the request and the replies in both directions, a traced
//! user gets its own rows and copies at the capture host (`duplicate_uri`), and MI
//! `sip_trace off` stops the general trace.

use super::permissions::{req_from, sock_on};
use crate::harness::mariadb::MariaDb;
use crate::harness::*;
use std::net::UdpSocket;
use std::time::Duration;

fn cfg(url: &str, capture: u16) -> String {
    format!(
        r#"
listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "mysql.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "mi_fifo.so"
loadmodule "siptrace.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("siptrace", "db_url", "{url}")
modparam("siptrace", "trace_flag", 22)
modparam("siptrace", "trace_on", 1)
modparam("siptrace", "traced_user_avp", "$avp(s:traced)")
modparam("siptrace", "duplicate_uri", "sip:127.0.0.1:{capture}")
route {{
    if ($fU == "alice") {{ $avp(s:traced) = "alice@example.com"; }};
    setflag(22);
    sip_trace();
    t_relay();
}}
"#
    )
}

fn recv(s: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    crate::harness::recv_from(s, &mut buf)
        .ok()
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A reply to `req` with `code`.
fn answer(req: &str, code: &str) -> String {
    let mut s = format!("SIP/2.0 {code}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        s.push_str(&format!("{n}: {}\r\n", header(req, n).unwrap_or("")));
    }
    s.push_str(&format!(
        "To: {};tag=uas\r\nContent-Length: 0\r\n\r\n",
        header(req, "To").unwrap_or("")
    ));
    s
}

/// One call: caller → proxy → UAS, answered 486.
fn call(s: &Server, from_user: &str, callid: &str) {
    let caller = sock_on("127.0.0.1");
    let uas = sock_on("127.0.0.1");
    let ruri = format!("sip:bob@{}", uas.local_addr().unwrap());
    let inv = req_from(
        &caller,
        "INVITE",
        &ruri,
        &format!("sip:{from_user}@example.com"),
        callid,
        "Contact: <sip:c@127.0.0.1>\r\n",
    );
    caller.send_to(inv.as_bytes(), s.addr()).unwrap();
    let (got, from) = loop {
        let mut buf = vec![0u8; 65536];
        let (n, from) = crate::harness::recv_from(&uas, &mut buf).expect("INVITE at the UAS");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("INVITE") {
            break (m, from);
        }
    };
    uas.send_to(answer(&got, "486 Busy Here").as_bytes(), from)
        .unwrap();
    loop {
        let r = recv(&caller).expect("486 relayed to the caller");
        if r.starts_with("SIP/2.0 486") {
            break;
        }
    }
}

fn rows(db: &MariaDb, callid: &str, user: &str) -> Vec<String> {
    let mut v = db
        .sql(
            Some("openser"),
            &format!(
                "SELECT direction, method, status, LEFT(toip, 4) FROM sip_trace \
             WHERE callid='{callid}' AND traced_user='{user}' AND status <> '100' ORDER BY id"
            ),
        )
        .lines()
        .map(|l| l.replace('\t', " "))
        .collect::<Vec<_>>();
    // processes write concurrently: compare as sets
    v.sort();
    v
}

#[test]
fn both_directions_stored_and_duplicated() {
    let Some(db) = MariaDb::start() else { return };
    db.create_openser_db();
    let capture = UdpSocket::bind("127.0.0.1:0").unwrap();
    capture
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let url = db.url("openser", "openserrw", "openser");
    let s = Server::start(&cfg(&url, capture.local_addr().unwrap().port()), &[]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());

    call(&s, "bob", "st1");
    // the rows are written before the reply goes out or right after: wait for them
    let mut want = vec![
        "in INVITE  udp:".to_string(),
        "out INVITE  udp:".to_string(),
        "in INVITE 486 udp:".to_string(),
        "out INVITE 486 udp:".to_string(),
    ];
    want.sort();
    let ok = crate::harness::wait_until(Duration::from_secs(5), || rows(&db, "st1", "").len() >= 4);
    assert!(ok, "{:?}\n{}", rows(&db, "st1", ""), s.log());
    assert_eq!(rows(&db, "st1", ""), want);
    // the addresses of each direction
    let ips = db.sql(
        Some("openser"),
        "SELECT direction, fromip, toip, fromtag FROM sip_trace WHERE callid='st1' AND status='486' ORDER BY direction",
    );
    let port = s.port;
    let lines: Vec<&str> = ips.lines().collect();
    assert!(
        lines[0].contains(&format!("\tudp:127.0.0.1:{port}\tfst1")),
        "reply in, to us: {ips}"
    );
    assert!(
        lines[1].starts_with(&format!("out\t127.0.0.1:{port}\t")),
        "reply out, from us: {ips}"
    );
    // nothing for a traced user yet, no copies
    assert!(rows(&db, "st1", "alice@example.com").is_empty());
    assert!(recv(&capture).is_none());

    // alice is a traced user: her rows and a copy of each message
    call(&s, "alice", "st2");
    assert!(crate::harness::wait_until(Duration::from_secs(5), || rows(
        &db,
        "st2",
        "alice@example.com"
    )
    .len()
        >= 4));
    assert_eq!(rows(&db, "st2", "alice@example.com"), want);
    let mut copies = 0;
    while let Some(m) = recv(&capture) {
        assert!(m.contains("Call-ID: st2"), "{m}");
        copies += 1;
        if copies == 4 {
            break;
        }
    }
    assert_eq!(copies, 4);

    // tracing off: alice is still traced, the general trace stops
    let r = mi(&dir, "sip_trace", &["off"]);
    assert!(r.starts_with("200"), "{r}");
    call(&s, "alice", "st3");
    call(&s, "bob", "st4");
    assert!(crate::harness::wait_until(Duration::from_secs(5), || rows(
        &db,
        "st3",
        "alice@example.com"
    )
    .len()
        >= 4));
    assert!(rows(&db, "st3", "").is_empty());
    assert!(rows(&db, "st4", "").is_empty());
    assert!(mi(&dir, "sip_trace", &["maybe"]).starts_with("400"));
}

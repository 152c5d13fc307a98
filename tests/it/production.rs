//! etc/examples/production.cfg end to end, against a private MariaDB and with SIPp:
//! a local user registers and calls, a foreign domain is refused, a user outside
//! group "pstn" gets 403 for a number, a preference in usr_preferences forwards a
//! call, a trusted gateway calls without authentication, the PSTN route goes through
//! the exec'd portability program, and the calls leave sip_trace rows in both
//! directions.

use super::permissions::{ask, req_from, sock_on};
use crate::harness::digest::*;
use crate::harness::mariadb::MariaDb;
use crate::harness::*;
use std::net::UdpSocket;

const EXAMPLE: &str = include_str!("../../etc/examples/production.cfg");
const DEFAULT_URL: &str = "mysql://openser:openserrw@localhost/openser";

/// The example with this test's database, port, FIFO, gateway and LNP program.
fn config(url: &str, gw_port: u16, lnp: &str) -> String {
    let cfg = EXAMPLE
        .replace(DEFAULT_URL, url)
        .replace("listen=udp:127.0.0.1:5060", "listen=udp:127.0.0.1:{PORT}")
        .replace("children=4", "children=2")
        // every client of this test is on 127.0.0.1 (pike itself: tests/it/pike.rs)
        .replace(
            "\"reqs_density_per_unit\", 30",
            "\"reqs_density_per_unit\", 1000",
        )
        .replace(
            "modparam(\"mi_fifo\", \"fifo_name\", \"/tmp/openser_fifo\")",
            "modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
             modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")",
        )
        .replace("10.0.0.10:5060", &format!("127.0.0.1:{gw_port}"))
        .replace("/usr/local/lib/openser/lnp", lnp);
    assert!(
        !cfg.contains(DEFAULT_URL) && cfg.contains("{PORT}"),
        "the example changed: adapt this test"
    );
    cfg
}

fn setup_db(db: &MariaDb, vm_port: u16) {
    db.create_openser_db();
    let d = "127.0.0.1";
    db.sql(
        Some("openser"),
        &format!(
            "INSERT INTO subscriber (username, domain, password) VALUES \
               ('alice', '{d}', 'alicepw'), ('bob', '{d}', 'bobpw'), ('carol', '{d}', 'carolpw');\
             INSERT INTO domain (domain) VALUES ('{d}');\
             INSERT INTO grp (username, domain, grp) VALUES ('alice', '{d}', 'pstn');\
             INSERT INTO trusted (src_ip, proto, from_pattern, tag) VALUES ('127.0.0.2', 'udp', NULL, 'gw');\
             INSERT INTO usr_preferences (uuid, username, domain, attribute, type, value) VALUES \
               ('', 'carol', '{d}', 'fwd', 0, 'sip:voicemail@127.0.0.1:{vm_port}');"
        ),
    );
}

/// An INVITE from `c` as `user` (digest answered, no qop): the final status line
/// (or the first one that is not 100/407).
fn invite_auth(s: &Server, c: &UdpSocket, user: &str, pw: &str, ruri: &str, id: &str) -> String {
    let from = format!("sip:{user}@127.0.0.1");
    let first = req_from(c, "INVITE", ruri, &from, id, "");
    c.send_to(first.as_bytes(), s.addr()).unwrap();
    let mut buf = vec![0u8; 65536];
    let chal = loop {
        let (n, _) = crate::harness::recv_from(c, &mut buf).expect("challenge");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !m.starts_with("SIP/2.0 100") {
            break m;
        }
    };
    assert!(chal.starts_with("SIP/2.0 407"), "{chal}");
    let h = header(&chal, "Proxy-Authenticate").unwrap_or("");
    let field = |k: &str| {
        h.split(&format!("{k}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    let (realm, nonce) = (field("realm"), field("nonce"));
    let ha1 = md5_hex(&format!("{user}:{realm}:{pw}"));
    let ha2 = md5_hex(&format!("INVITE:{ruri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
    let auth = format!(
        "Proxy-Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{ruri}\", response=\"{resp}\"\r\n"
    );
    let second = req_from(c, "INVITE", ruri, &from, &format!("{id}b"), &auth);
    c.send_to(second.as_bytes(), s.addr()).unwrap();
    loop {
        let Ok((n, _)) = crate::harness::recv_from(c, &mut buf) else {
            return String::new();
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let line = m.lines().next().unwrap_or("").to_string();
        if !line.starts_with("SIP/2.0 100") {
            return line;
        }
    }
}

/// The INVITE of call `callid` at `c` (retransmissions of earlier calls, which
/// nobody answers here, are skipped).
fn recv_invite(c: &UdpSocket, callid: &str) -> String {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = crate::harness::recv_from(c, &mut buf).expect("an INVITE");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("INVITE") && header(&m, "Call-ID") == Some(callid) {
            return m;
        }
    }
}

#[test]
fn production_config_end_to_end() {
    if !require("sipp") {
        return;
    }
    let Some(db) = MariaDb::start() else { return };
    let vm = sock_on("127.0.0.1");
    let gw = sock_on("127.0.0.1");
    setup_db(&db, vm.local_addr().unwrap().port());
    let files = TempDir::new("prod");
    let lnp = files.file("lnp");
    std::fs::write(
        &lnp,
        format!(
            "#!/bin/sh\n# portability: +1555... ported to routing number 9999\n\
             case \"$SIP_USER\" in +1555*) echo \"sip:$SIP_USER@127.0.0.1:{};rn=9999\" ;; *) exit 1 ;; esac\n",
            gw.local_addr().unwrap().port()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&lnp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url = db.url("openser", "openserrw", "openser");
    let s = Server::start(
        &config(
            &url,
            gw.local_addr().unwrap().port(),
            &lnp.display().to_string(),
        ),
        &[],
    );
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    assert!(mi(&dir, "sip_trace", &["on"]).starts_with("200"));

    // bob registers (SIPp, digest) with his phone, a SIPp UAS
    let (_uas, uas_port) = sipp_uas(&dir);
    let out = sipp_once(
        &dir,
        "reg_auth.xml",
        s.port,
        &[
            "-s",
            "bob",
            "-au",
            "bob",
            "-ap",
            "bobpw",
            "-key",
            "contact_port",
            &uas_port.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "REGISTER failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        s.log()
    );
    // alice calls bob (SIPp, 407 answered, through the location table)
    let stf = dir.join("uac_auth.csv");
    let out = sipp_run(
        &dir,
        &[
            "-sf".into(),
            scenario("uac_auth.xml"),
            format!("127.0.0.1:{}", s.port),
            "-s".into(),
            "bob".into(),
            "-key".into(),
            "caller".into(),
            "alice".into(),
            "-au".into(),
            "alice".into(),
            "-ap".into(),
            "alicepw".into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            "3".into(),
            "-trace_stat".into(),
            "-stf".into(),
            stf.display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "calls failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        s.log()
    );

    let c = sock_on("127.0.0.1");
    // a foreign domain: not served, no relaying for it
    let r = req_from(
        &c,
        "REGISTER",
        "sip:foreign.example",
        "sip:x@foreign.example",
        "f1",
        "Contact: <sip:x@127.0.0.1:9>\r\n",
    )
    .replace("To: <sip:foreign.example>", "To: <sip:x@foreign.example>");
    assert_eq!(ask(&c, s.addr(), &r), "SIP/2.0 403 Domain Not Served");
    let r = req_from(
        &c,
        "INVITE",
        "sip:y@foreign.example",
        "sip:x@foreign.example",
        "f2",
        "",
    );
    assert_eq!(ask(&c, s.addr(), &r), "SIP/2.0 403 Relaying Forbidden");

    // bob is not in group "pstn"
    assert_eq!(
        invite_auth(&s, &c, "bob", "bobpw", "sip:+15551234@127.0.0.1", "g1"),
        "SIP/2.0 403 No PSTN Permission"
    );
    // alice is: the portability program routes her call to the gateway
    let _ = invite_auth(&s, &c, "alice", "alicepw", "sip:+15551234@127.0.0.1", "g2");
    let at_gw = recv_invite(&gw, "g2b");
    assert!(
        at_gw.starts_with("INVITE sip:+15551234@127.0.0.1:"),
        "{at_gw}"
    );
    assert!(
        at_gw.lines().next().unwrap().contains(";rn=9999"),
        "{at_gw}"
    );

    // carol's preference forwards her calls to the voicemail
    let _ = invite_auth(&s, &c, "alice", "alicepw", "sip:carol@127.0.0.1", "p1");
    let at_vm = recv_invite(&vm, "p1b");
    assert!(
        at_vm.starts_with("INVITE sip:voicemail@127.0.0.1:"),
        "{at_vm}"
    );

    // the trusted gateway calls carol without credentials
    let g = sock_on("127.0.0.2");
    g.send_to(
        req_from(
            &g,
            "INVITE",
            "sip:carol@127.0.0.1",
            "sip:+4930123@gw.example",
            "t1",
            "",
        )
        .as_bytes(),
        s.addr(),
    )
    .unwrap();
    let at_vm = recv_invite(&vm, "t1");
    assert!(
        at_vm.starts_with("INVITE sip:voicemail@127.0.0.1:"),
        "{at_vm}"
    );
    // and an untrusted address is challenged for the same call
    let u = sock_on("127.0.0.3");
    let r = req_from(
        &u,
        "INVITE",
        "sip:carol@127.0.0.1",
        "sip:mallory@127.0.0.1",
        "t2",
        "",
    );
    assert_eq!(
        ask(&u, s.addr(), &r),
        "SIP/2.0 407 Proxy Authentication Required"
    );

    // the trace: the INVITEs and their replies, in and out
    let rows = db.sql(
        Some("openser"),
        "SELECT DISTINCT direction, method, status FROM sip_trace WHERE callid='p1b' ORDER BY 1, 2, 3",
    );
    assert!(
        rows.contains("in\tINVITE\t\n") && rows.contains("out\tINVITE\t\n"),
        "{rows}"
    );
    let calls = db.sql(
        Some("openser"),
        "SELECT COUNT(DISTINCT direction) FROM sip_trace WHERE method='INVITE' AND status='200'",
    );
    assert_eq!(calls.trim(), "2", "200s of the SIPp calls, in and out");
}

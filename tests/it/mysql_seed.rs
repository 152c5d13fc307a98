//! The guide's "MySQL and Authentication" configuration end to end against a private
//! MariaDB: tests/data/cfg/good/seed-mysql-auth.cfg (the guide's text, verbatim) with
//! only the port, the FIFO path and the database host changed for the test. Phones
//! register with digest authentication checked against `subscriber` (plaintext
//! passwords, `calculate_ha1`), bindings are written through to `location`
//! (`db_mode` 1), calls go through `lookup` + `t_relay`, and a restarted server finds
//! the bindings again in the database.

use crate::harness::digest::md5_hex;
use std::time::Duration;

use crate::harness::mariadb::MariaDb;
use crate::harness::*;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/cfg/good/seed-mysql-auth.cfg"
);

/// The seed config on the test's port, FIFO in the server's dir, DB on the private server.
fn seed_cfg(db: &MariaDb) -> String {
    let text = std::fs::read_to_string(SEED).unwrap();
    for needle in ["port=5060", "/tmp/openser_fifo", "@localhost/openser"] {
        assert!(text.contains(needle), "seed config changed: {needle}");
    }
    text.replace("port=5060", "listen=udp:127.0.0.1:{PORT}")
        .replace("/tmp/openser_fifo", "{DIR}/openser_fifo")
        .replace(
            "@localhost/openser",
            &format!("@127.0.0.1:{}/openser", db.port()),
        )
}

/// A private MariaDB with the openser database and two subscribers in realm 127.0.0.1.
fn database() -> Option<MariaDb> {
    let db = MariaDb::start()?;
    db.create_openser_db();
    for (user, pw) in [("alice", "alicepw"), ("bob", "bobpw")] {
        db.sql(
            Some("openser"),
            &format!(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES \
                 ('{user}', '127.0.0.1', '{pw}', '{}', '{}')",
                md5_hex(&format!("{user}:127.0.0.1:{pw}")),
                md5_hex(&format!("{user}@127.0.0.1:127.0.0.1:{pw}"))
            ),
        );
    }
    Some(db)
}

/// A quoted parameter of a WWW-Authenticate value.
pub(super) fn auth_param(h: &str, name: &str) -> Option<String> {
    let i = h.find(&format!("{name}=\""))? + name.len() + 2;
    let j = h[i..].find('"')? + i;
    Some(h[i..j].to_string())
}

/// A REGISTER for alice from client `c` to server port `sp`, with `extra` headers.
pub(super) fn alice_register(c: &Client, sp: u16, cseq: u32, expires: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:{sp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKauth{cseq}\r\n\
         From: <sip:alice@127.0.0.1:{sp}>;tag=at1\r\n\
         To: <sip:alice@127.0.0.1:{sp}>\r\n\
         Call-ID: auth-seed-1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:alice@127.0.0.1:{p}>\r\n\
         Expires: {expires}\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        p = c.port()
    )
}

/// The Authorization header answering `nonce` for alice with password `pw`.
pub(super) fn alice_authz(sp: u16, nonce: &str, pw: &str) -> String {
    let ruri = format!("sip:127.0.0.1:{sp}");
    let ha1 = md5_hex(&format!("alice:127.0.0.1:{pw}"));
    let ha2 = md5_hex(&format!("REGISTER:{ruri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
    format!(
        "Authorization: Digest username=\"alice\", realm=\"127.0.0.1\", \
         nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{resp}\", algorithm=MD5\r\n"
    )
}

/// Send `msg` and return the final reply.
pub(super) fn final_reply(s: &Server, c: &Client, msg: &str) -> String {
    c.send(s.addr(), msg);
    c.recv_matching("SIP/2.0 ")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()))
}

/// alice's challenge nonce from a first REGISTER without credentials.
pub(super) fn alice_nonce(s: &Server, c: &Client) -> String {
    let r = final_reply(s, c, &alice_register(c, s.port, 1, 600, ""));
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let chal = header(&r, "WWW-Authenticate").expect("no WWW-Authenticate");
    auth_param(chal, "nonce").expect("nonce")
}

fn location_rows(db: &MariaDb) -> String {
    db.sql(
        Some("openser"),
        "SELECT username, contact, cseq FROM location ORDER BY id",
    )
}

#[test]
fn mysql_seed_register_challenge_and_digest() {
    let Some(db) = database() else { return };
    let mut s = Server::start(&seed_cfg(&db), &["-DD", "-E"]);
    let c = Client::new();
    let sp = s.port;
    // No credentials: 401 with a challenge for realm 127.0.0.1 (the To host).
    let r = final_reply(&s, &c, &alice_register(&c, sp, 1, 600, ""));
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let chal = header(&r, "WWW-Authenticate").expect("no WWW-Authenticate");
    assert!(chal.starts_with("Digest "), "{chal}");
    assert_eq!(auth_param(chal, "realm").as_deref(), Some("127.0.0.1"));
    let nonce = auth_param(chal, "nonce").expect("nonce");
    assert_eq!(nonce.len(), 48, "{nonce}");
    assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()), "{nonce}");
    assert!(!chal.contains("qop"), "qop 0 asked: {chal}");

    // A wrong password is challenged again, and nothing is stored.
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, sp, 2, 600, &alice_authz(sp, &nonce, "wrong")),
    );
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    assert_eq!(location_rows(&db), "");
    // The right one registers, and the binding is written through to `location`.
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, sp, 3, 600, &alice_authz(sp, &nonce, "alicepw")),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());
    assert!(
        header(&r, "Contact").is_some_and(|h| h.contains(&format!("127.0.0.1:{}", c.port()))),
        "{r}"
    );
    let row = db.sql(
        Some("openser"),
        "SELECT username, contact, callid, cseq, \
         TIMESTAMPDIFF(SECOND, NOW(), expires) FROM location",
    );
    let f: Vec<&str> = row.trim().split('\t').collect();
    assert_eq!(
        &f[..4],
        [
            "alice",
            &format!("sip:alice@127.0.0.1:{}", c.port()),
            "auth-seed-1",
            "3"
        ],
        "{row}"
    );
    let left: i64 = f[4].parse().unwrap();
    assert!((590..=600).contains(&left), "expires in {left} s");
    // Unregister: the row goes as well.
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, sp, 4, 0, &alice_authz(sp, &nonce, "alicepw")),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(location_rows(&db), "");
    assert!(s.stop().success());
}

/// The same config with `db_mode` 2 (write-back) and a long timer: a registration
/// reaches the database at shutdown, is loaded again at start-up (as written, not
/// re-inserted), and its removal goes out at once.
#[test]
fn mysql_seed_write_back() {
    let Some(db) = database() else { return };
    let cfg = seed_cfg(&db).replace(
        "modparam(\"usrloc\", \"db_mode\", 1)",
        "modparam(\"usrloc\", \"db_mode\", 2)\nmodparam(\"usrloc\", \"timer_interval\", 3600)",
    );
    assert!(cfg.contains("\"db_mode\", 2"), "seed config changed");
    let port = free_udp_port();
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    let c = Client::new();
    let nonce = alice_nonce(&s, &c);
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, port, 2, 600, &alice_authz(port, &nonce, "alicepw")),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());
    let contact = format!("sip:alice@127.0.0.1:{}", c.port());
    // Shutdown writes it back.
    assert!(s.stop().success());
    assert_eq!(location_rows(&db), format!("alice\t{contact}\t2\n"));
    // Loaded at start-up; a refresh keeps one row; an unregister deletes it at once.
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    assert!(
        s.wait_log(
            "loaded 1 contact(s) of table location",
            Duration::from_secs(5)
        ),
        "{}",
        s.log()
    );
    let nonce = alice_nonce(&s, &c);
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, port, 3, 600, &alice_authz(port, &nonce, "alicepw")),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(
        header(&r, "Contact").is_some_and(|h| h.contains(&contact)),
        "{r}"
    );
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, port, 4, 0, &alice_authz(port, &nonce, "alicepw")),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(location_rows(&db), "");
    assert!(s.stop().success());
    assert_eq!(location_rows(&db), "");
}

#[test]
fn mysql_seed_sipp_register_call_and_restart() {
    if !require("sipp") {
        return;
    }
    let Some(db) = database() else { return };
    let cfg = seed_cfg(&db);
    let port = free_udp_port();
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    let dir = TempDir::new("mysqlseed");
    let (mut uas, uas_port) = sipp_uas(dir.path());
    // bob registers with SIPp, answering the digest challenge.
    let uas_port = uas_port.to_string();
    let reg = sipp_once(
        dir.path(),
        "reg_auth.xml",
        port,
        &[
            "-s",
            "bob",
            "-au",
            "bob",
            "-ap",
            "bobpw",
            "-key",
            "contact_port",
            &uas_port,
        ],
    );
    assert!(
        reg.status.success(),
        "REGISTER failed: {}\n{}",
        String::from_utf8_lossy(&reg.stdout),
        s.log()
    );
    // Calls to bob through the proxy.
    sipp_calls(dir.path(), port, "bob", 10);
    // Restart: the binding comes back from the database (db_mode 1 load).
    assert!(s.stop().success());
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    assert!(
        s.wait_log(
            "loaded 1 contact(s) of table location",
            Duration::from_secs(5)
        ),
        "{}",
        s.log()
    );
    sipp_calls(dir.path(), port, "bob", 10);
    uas.kill();
    assert!(s.stop().success());
}

/// `db_mode` 3 (DB only) on two servers sharing one database: alice registers at the
/// first, a call for her through the second finds her binding in the database; after she
/// unregisters at the first, the second answers 404.
#[test]
fn mysql_seed_db_only_two_servers() {
    let Some(db) = database() else { return };
    let cfg = seed_cfg(&db).replace(
        "modparam(\"usrloc\", \"db_mode\", 1)",
        "modparam(\"usrloc\", \"db_mode\", 3)",
    );
    assert!(cfg.contains("\"db_mode\", 3"), "seed config changed");
    let mut a = Server::start(&cfg, &["-DD", "-E"]);
    let mut b = Server::start(&cfg, &["-DD", "-E"]);
    let phone = Client::new();
    let nonce = alice_nonce(&a, &phone);
    let r = final_reply(
        &a,
        &phone,
        &alice_register(
            &phone,
            a.port,
            2,
            600,
            &alice_authz(a.port, &nonce, "alicepw"),
        ),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", a.log());
    let contact = format!("sip:alice@127.0.0.1:{}", phone.port());
    assert_eq!(location_rows(&db), format!("alice\t{contact}\t2\n"));

    // A call for alice through the second server reaches her contact.
    let caller = Client::new();
    let invite = request(
        "INVITE",
        &format!("sip:alice@127.0.0.1:{}", b.port),
        caller.port(),
        "dbonly-call",
        1,
        "",
    );
    caller.send(b.addr(), &invite);
    let got = phone
        .recv_matching("INVITE ")
        .unwrap_or_else(|| panic!("no INVITE at alice's phone\n{}", b.log()));
    assert!(
        got.starts_with(&format!("INVITE {contact} SIP/2.0")),
        "{got}"
    );
    phone.send(
        b.addr(),
        &format!(
            "SIP/2.0 486 Busy Here\r\n{}",
            got.split_once("\r\n").unwrap().1
        ),
    );
    let r = caller.recv_matching("SIP/2.0 486").expect("486 relayed");
    assert!(r.contains("CSeq: 1 INVITE"), "{r}");

    // She unregisters at the first server; the second no longer finds her.
    let r = final_reply(
        &a,
        &phone,
        &alice_register(
            &phone,
            a.port,
            3,
            0,
            &alice_authz(a.port, &nonce, "alicepw"),
        ),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(location_rows(&db), "");
    caller.send(
        b.addr(),
        &request(
            "INVITE",
            &format!("sip:alice@127.0.0.1:{}", b.port),
            caller.port(),
            "dbonly-call2",
            1,
            "",
        ),
    );
    let r = caller
        .recv_matching("SIP/2.0 404")
        .expect("404 after unregister");
    assert!(r.contains("dbonly-call2"), "{r}");
    assert!(a.stop().success());
    assert!(b.stop().success());
}

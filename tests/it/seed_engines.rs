//! The guide's authentication configuration (tests/data/cfg/good/seed-mysql-auth.cfg)
//! on every engine, with only `loadmodule "mysql.so"` and the `db_url` changed:
//! SQLite (the zero-setup way), PostgreSQL and dbtext (MySQL: mysql_seed.rs). Users
//! are added with openserctl. Challenge, wrong and right password, a call through
//! `lookup`, bindings kept over a restart with `db_mode` 1 and 2. Then, for MySQL and
//! PostgreSQL, the database server restarted under REGISTER load; and the no-threads
//! invariant with every driver loaded and connected.

use std::time::Duration;

use crate::harness::digest::md5_hex;
use crate::harness::engines::{Engine, Kind};
use crate::harness::*;
use crate::it::mysql_seed::auth_param;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/cfg/good/seed-mysql-auth.cfg"
);

/// The seed config for engine `e`: its driver module and db_url, the test's port and
/// FIFO path.
fn seed_cfg(e: &Engine) -> String {
    let text = std::fs::read_to_string(SEED).unwrap();
    let url = "mysql://openser:openserrw@localhost/openser";
    for needle in [
        "port=5060",
        "/tmp/openser_fifo",
        url,
        "loadmodule \"mysql.so\"",
    ] {
        assert!(text.contains(needle), "seed config changed: {needle}");
    }
    text.replace("port=5060", "listen=udp:127.0.0.1:{PORT}")
        .replace("/tmp/openser_fifo", "{DIR}/openser_fifo")
        .replace(
            "loadmodule \"mysql.so\"",
            &format!("loadmodule \"{}.so\"", e.module()),
        )
        .replace(url, &e.url())
}

/// A database of `kind` with subscribers alice/alicepw and bob/bobpw in realm
/// 127.0.0.1, added with openserctl.
fn database(kind: Kind) -> Option<Engine> {
    let e = Engine::start(kind)?;
    for (user, pw) in [("alice", "alicepw"), ("bob", "bobpw")] {
        e.ok(&e.ctl("", &["add", &format!("{user}@127.0.0.1"), pw]));
    }
    Some(e)
}

fn register(c: &Client, sp: u16, user: &str, cseq: u32, expires: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:{sp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKeng{user}{cseq}\r\n\
         From: <sip:{user}@127.0.0.1:{sp}>;tag=t{user}\r\n\
         To: <sip:{user}@127.0.0.1:{sp}>\r\n\
         Call-ID: eng-{user}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{p}>\r\n\
         Expires: {expires}\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        p = c.port()
    )
}

fn authz(sp: u16, user: &str, pw: &str, nonce: &str) -> String {
    let ruri = format!("sip:127.0.0.1:{sp}");
    let ha1 = md5_hex(&format!("{user}:127.0.0.1:{pw}"));
    let ha2 = md5_hex(&format!("REGISTER:{ruri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"127.0.0.1\", \
         nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{resp}\", algorithm=MD5\r\n"
    )
}

fn reply(s: &Server, c: &Client, msg: &str) -> String {
    c.send(s.addr(), msg);
    c.recv_matching("SIP/2.0 ")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()))
}

/// A fresh challenge nonce for `user`.
fn nonce(s: &Server, c: &Client, user: &str) -> String {
    let r = reply(s, c, &register(c, s.port, user, 1, 600, ""));
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let chal = header(&r, "WWW-Authenticate").expect("no WWW-Authenticate");
    auth_param(chal, "nonce").expect("nonce")
}

fn location(e: &Engine) -> Vec<Vec<String>> {
    e.rows("location", &["username", "contact", "cseq"], "id")
}

/// A call for alice through server `s` reaches her phone; she answers 486.
fn call_alice(s: &Server, phone: &Client, tag: &str) {
    let caller = Client::new();
    caller.send(
        s.addr(),
        &request(
            "INVITE",
            &format!("sip:alice@127.0.0.1:{}", s.port),
            caller.port(),
            tag,
            1,
            "",
        ),
    );
    let got = phone
        .recv_matching("INVITE ")
        .unwrap_or_else(|| panic!("no INVITE at alice's phone\n{}", s.log()));
    let contact = format!("sip:alice@127.0.0.1:{}", phone.port());
    assert!(
        got.starts_with(&format!("INVITE {contact} SIP/2.0")),
        "{got}"
    );
    phone.send(
        s.addr(),
        &format!(
            "SIP/2.0 486 Busy Here\r\n{}",
            got.split_once("\r\n").unwrap().1
        ),
    );
    let r = caller.recv_matching("SIP/2.0 486").expect("486 relayed");
    assert!(r.contains(tag), "{r}");
}

fn seed_on(kind: Kind) {
    let Some(e) = database(kind) else { return };
    let cfg = seed_cfg(&e);
    let port = free_udp_port();
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    let phone = Client::new();
    let contact = format!("sip:alice@127.0.0.1:{}", phone.port());

    // Challenge; a wrong password is challenged again and stores nothing.
    let n = nonce(&s, &phone, "alice");
    assert_eq!(n.len(), 48, "{n}");
    let r = reply(
        &s,
        &phone,
        &register(
            &phone,
            port,
            "alice",
            2,
            600,
            &authz(port, "alice", "wrong", &n),
        ),
    );
    assert!(r.starts_with("SIP/2.0 401"), "{kind:?}: {r}");
    assert!(location(&e).is_empty(), "{kind:?}");
    // The right one registers, written through to `location` (db_mode 1).
    let r = reply(
        &s,
        &phone,
        &register(
            &phone,
            port,
            "alice",
            3,
            600,
            &authz(port, "alice", "alicepw", &n),
        ),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{kind:?}: {r}\n{}", s.log());
    assert!(
        header(&r, "Contact").is_some_and(|h| h.contains(&contact)),
        "{r}"
    );
    assert_eq!(
        location(&e),
        vec![vec!["alice".to_string(), contact.clone(), "3".into()]],
        "{kind:?}"
    );
    // A call through lookup.
    call_alice(&s, &phone, &format!("eng-call1-{kind:?}"));

    // Restart: the binding is loaded from the database and calls still reach her.
    assert!(s.stop().success());
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    assert!(
        s.wait_log(
            "loaded 1 contact(s) of table location",
            Duration::from_secs(5)
        ),
        "{kind:?}: {}",
        s.log()
    );
    call_alice(&s, &phone, &format!("eng-call2-{kind:?}"));
    // Unregister: the row goes.
    let n = nonce(&s, &phone, "alice");
    let r = reply(
        &s,
        &phone,
        &register(
            &phone,
            port,
            "alice",
            4,
            0,
            &authz(port, "alice", "alicepw", &n),
        ),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(location(&e).is_empty(), "{kind:?}");
    // A user whose name and password would break pasted SQL (and dbtext's escapes)
    // registers like any other; a name that only differs by the quote does not.
    let (ob, obpw) = ("o'brien", "q'pw\\:%");
    e.ok(&e.ctl("", &["add", &format!("{ob}@127.0.0.1"), obpw]));
    let phone2 = Client::new();
    let n = nonce(&s, &phone2, ob);
    let r = reply(
        &s,
        &phone2,
        &register(
            &phone2,
            port,
            "obrien",
            2,
            600,
            &authz(port, "obrien", obpw, &n),
        ),
    );
    assert!(r.starts_with("SIP/2.0 401"), "{kind:?}: {r}");
    let r = reply(
        &s,
        &phone2,
        &register(&phone2, port, ob, 3, 600, &authz(port, ob, obpw, &n)),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{kind:?}: {r}\n{}", s.log());
    let contact2 = format!("sip:{ob}@127.0.0.1:{}", phone2.port());
    assert_eq!(
        location(&e),
        vec![vec![ob.to_string(), contact2, "3".into()]],
        "{kind:?}"
    );
    let r = reply(
        &s,
        &phone2,
        &register(&phone2, port, ob, 4, 0, &authz(port, ob, obpw, &n)),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(location(&e).is_empty(), "{kind:?}");
    assert!(s.stop().success());

    // db_mode 2 (write-back, long timer): written at shutdown, loaded at start-up.
    let cfg2 = cfg.replace(
        "modparam(\"usrloc\", \"db_mode\", 1)",
        "modparam(\"usrloc\", \"db_mode\", 2)\nmodparam(\"usrloc\", \"timer_interval\", 3600)",
    );
    assert!(cfg2.contains("\"db_mode\", 2"), "seed config changed");
    let mut s = Server::start_on(port, &cfg2, &["-DD", "-E"]);
    let n = nonce(&s, &phone, "alice");
    let r = reply(
        &s,
        &phone,
        &register(
            &phone,
            port,
            "alice",
            5,
            600,
            &authz(port, "alice", "alicepw", &n),
        ),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());
    assert!(location(&e).is_empty(), "{kind:?}: db_mode 2 writes later");
    assert!(s.stop().success());
    assert_eq!(
        location(&e),
        vec![vec!["alice".to_string(), contact.clone(), "5".into()]],
        "{kind:?}"
    );
    let mut s = Server::start_on(port, &cfg2, &["-DD", "-E"]);
    assert!(
        s.wait_log(
            "loaded 1 contact(s) of table location",
            Duration::from_secs(5)
        ),
        "{kind:?}: {}",
        s.log()
    );
    call_alice(&s, &phone, &format!("eng-call3-{kind:?}"));
    assert!(s.stop().success());
    assert_eq!(location(&e).len(), 1, "{kind:?}");
}

#[test]
fn seed_auth_on_sqlite() {
    seed_on(Kind::Sqlite);
}

#[test]
fn seed_auth_on_postgres() {
    seed_on(Kind::Postgres);
}

#[test]
fn seed_auth_on_dbtext() {
    seed_on(Kind::DbText);
}

/// The database server stops while phones keep registering (`db_mode` 2): every
/// authenticated REGISTER is answered 500 while it is down, service resumes when it is
/// back without restarting openser, and every binding reaches the database at shutdown.
fn db_restart(kind: Kind) {
    let Some(mut e) = database(kind) else { return };
    const PHONES: usize = 12;
    let users: Vec<String> = (0..PHONES).map(|i| format!("u{i}")).collect();
    for u in &users {
        e.ok(&e.ctl("", &["add", &format!("{u}@127.0.0.1"), &format!("{u}pw")]));
    }
    let cfg = seed_cfg(&e).replace(
        "modparam(\"usrloc\", \"db_mode\", 1)",
        "modparam(\"usrloc\", \"db_mode\", 2)\nmodparam(\"usrloc\", \"timer_interval\", 3600)",
    );
    let port = free_udp_port();
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    let phones: Vec<Client> = (0..PHONES).map(|_| Client::new()).collect();
    let nonces: Vec<String> = users
        .iter()
        .zip(&phones)
        .map(|(u, c)| nonce(&s, c, u))
        .collect();
    let mut cseq = 10;
    let round = |s: &Server, want: &str, cseq: u32| {
        for ((u, c), n) in users.iter().zip(&phones).zip(&nonces) {
            let r = reply(
                s,
                c,
                &register(c, port, u, cseq, 600, &authz(port, u, &format!("{u}pw"), n)),
            );
            assert!(
                r.starts_with(want),
                "{kind:?} {u}: want {want}: {r}\n{}",
                s.log()
            );
        }
    };
    round(&s, "SIP/2.0 200", cseq);
    match kind {
        Kind::Mysql => e.my.as_mut().unwrap().stop(),
        _ => e.pg.as_mut().unwrap().stop(),
    }
    for _ in 0..3 {
        cseq += 1;
        round(&s, "SIP/2.0 500", cseq);
    }
    match kind {
        Kind::Mysql => e.my.as_mut().unwrap().start_again(),
        _ => e.pg.as_mut().unwrap().restart(),
    }
    // Back: the first attempt of a worker may still wait out its retry pause (1 s).
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..2 {
        cseq += 1;
        round(&s, "SIP/2.0 200", cseq);
    }
    assert!(s.stop().success());
    let rows = location(&e);
    assert_eq!(rows.len(), PHONES, "{kind:?}: {rows:?}");
    for (u, c) in users.iter().zip(&phones) {
        let contact = format!("sip:{u}@127.0.0.1:{}", c.port());
        assert!(
            rows.iter()
                .any(|r| r[0] == *u && r[1] == contact && r[2] == cseq.to_string()),
            "{kind:?}: {u} lost: {rows:?}"
        );
    }
}

#[test]
fn db_restart_under_register_load_mysql() {
    db_restart(Kind::Mysql);
}

#[test]
fn db_restart_under_register_load_postgres() {
    db_restart(Kind::Postgres);
}

/// Tasks (threads) of process `pid`.
fn tasks(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Every driver loaded, each process connected to PostgreSQL (usrloc, db_mode 3) and
/// SQLite (auth_db) and having served requests: one task per process.
#[test]
fn no_threads_with_every_driver() {
    let Some(pg) = database(Kind::Postgres) else {
        return;
    };
    let Some(lite) = database(Kind::Sqlite) else {
        return;
    };
    let Some(my) = Engine::start(Kind::Mysql) else {
        return;
    };
    let Some(txt) = Engine::start(Kind::DbText) else {
        return;
    };
    let cfg = seed_cfg(&pg)
        .replace(
            "loadmodule \"postgres.so\"",
            "loadmodule \"postgres.so\"\nloadmodule \"mysql.so\"\nloadmodule \"db_sqlite.so\"\nloadmodule \"dbtext.so\"\nloadmodule \"acc.so\"",
        )
        .replace("modparam(\"usrloc\", \"db_mode\", 1)", "modparam(\"usrloc\", \"db_mode\", 3)")
        .replace(
            "modparam(\"usrloc|auth_db\",\"db_url\"",
            &format!(
                "modparam(\"auth_db\", \"db_url\", \"{}\")\nmodparam(\"acc\", \"db_url\", \"{}\")\nmodparam(\"usrloc\",\"db_url\"",
                lite.url(),
                my.url()
            ),
        );
    assert!(
        cfg.contains("db_sqlite.so") && cfg.contains("\"db_mode\", 3"),
        "{cfg}"
    );
    let _ = txt;
    let port = free_udp_port();
    let mut s = Server::start_on(port, &cfg, &["-DD", "-E"]);
    // Requests through several workers: every one opens its connections.
    let phones: Vec<Client> = (0..6).map(|_| Client::new()).collect();
    for c in &phones {
        let n = nonce(&s, c, "alice");
        let r = reply(
            &s,
            c,
            &register(
                c,
                port,
                "alice",
                2,
                600,
                &authz(port, "alice", "alicepw", &n),
            ),
        );
        assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());
    }
    assert_eq!(
        location(&pg).len(),
        6,
        "db_mode 3 wrote through to PostgreSQL"
    );
    let pids: Vec<i32> = std::iter::once(s.pid())
        .chain(children_of(s.pid()))
        .collect();
    assert!(pids.len() > 3, "{pids:?}");
    for p in &pids {
        assert_eq!(tasks(*p), 1, "process {p} has {} tasks", tasks(*p));
    }
    // The workers hold PostgreSQL connections (one per process that served a request).
    let conns = pg.pg.as_ref().unwrap().sql(
        None,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = 'openser'",
    );
    assert!(conns.trim().parse::<usize>().unwrap() >= 1, "{conns}");
    assert!(s.stop().success());
}

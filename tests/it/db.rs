//! The mysql driver, openser_mysql.sh and openserctl's subscriber commands against a
//! private MariaDB.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::digest::md5_hex;
use db_mysql::{self as mysql, Settings};
use openser_core::db::{self, DbConn, DbUrl, DbVal, Key, Op};

use crate::harness::TempDir;
use crate::harness::mariadb::MariaDb;

const CTL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openserctl");

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn dbsh(m: &MariaDb, home: &Path, args: &[&str]) -> Output {
    m.dbsh(home, args)
}

/// The driver modules count as loaded; the same set in every test of this binary (the
/// loaded list is frozen once per process).
fn mark_mysql_loaded() {
    openser_core::module::freeze(vec![
        &mysql::EXPORTS,
        &db_postgres::EXPORTS,
        &db_sqlite::EXPORTS,
        &db_text::EXPORTS,
    ]);
}

fn settings(auto_reconnect: bool) -> Settings {
    Settings {
        ping_interval: Duration::from_secs(300),
        auto_reconnect,
        ..Settings::default()
    }
}

fn kill_connection(m: &MariaDb, c: &mut dyn DbConn) -> i64 {
    let rows = c.raw_query("SELECT CONNECTION_ID()").unwrap();
    let id = rows[0][0].as_int().unwrap();
    m.sql(None, &format!("KILL {id}"));
    // The server closes the socket asynchronously.
    std::thread::sleep(Duration::from_millis(200));
    id
}

fn contact(
    user: &str,
    contact: &str,
    q: f64,
    expires: i64,
    ua: &str,
) -> Vec<(&'static str, DbVal)> {
    vec![
        ("username", user.into()),
        ("domain", "example.com".into()),
        ("contact", contact.into()),
        ("received", DbVal::Null),
        ("expires", DbVal::DateTime(expires)),
        ("q", DbVal::Double(q)),
        ("callid", format!("cid-{contact}").into()),
        ("cseq", DbVal::Int(7)),
        ("last_modified", DbVal::DateTime(expires - 3600)),
        ("flags", DbVal::Int(0)),
        ("cflags", DbVal::Int(2)),
        ("user_agent", ua.into()),
        ("socket", DbVal::Null),
        ("methods", DbVal::Int(-1)),
    ]
}

#[test]
fn mysql_driver_against_mariadb() {
    let Some(m) = MariaDb::start() else { return };
    let home = TempDir::new("dbhome");
    ok(&dbsh(&m, home.path(), &["create"]));
    mark_mysql_loaded();

    let url = m.url("openser", "openserrw", "openser");
    let mut c = db::connect(&url).expect("connect through core::db");

    // Inserts, including values that would break a pasted statement.
    let t = 1_700_000_000;
    let evil = "x'); DROP TABLE location; -- \\' \" `";
    c.insert(
        "location",
        &contact("alice", "sip:alice@10.0.0.1", 0.8, t, "UA/1.0"),
    )
    .unwrap();
    c.insert(
        "location",
        &contact("alice", "sip:alice@10.0.0.2", 0.5, t + 60, evil),
    )
    .unwrap();
    c.insert(
        "location",
        &contact("bob", "sip:bob@10.0.0.3", 1.0, t + 120, "b"),
    )
    .unwrap();

    // Query with keys, columns and order; typed values back.
    let rows = c
        .query(
            "location",
            &[
                Key::eq("username", "alice"),
                Key::eq("domain", "example.com"),
            ],
            &[
                "contact",
                "q",
                "expires",
                "received",
                "user_agent",
                "cseq",
                "methods",
            ],
            Some("q DESC"),
        )
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], DbVal::Str("sip:alice@10.0.0.1".into()));
    assert_eq!(rows[0][1], DbVal::Double(0.8));
    assert_eq!(rows[0][2], DbVal::DateTime(t), "DATETIME round trip");
    assert_eq!(rows[0][3], DbVal::Null);
    assert_eq!(rows[0][5], DbVal::Int(7));
    assert_eq!(rows[0][6], DbVal::Int(-1));
    assert_eq!(rows[1][2], DbVal::DateTime(t + 60));
    assert_eq!(
        rows[1][4],
        DbVal::Str(evil.into()),
        "quoted value stored verbatim"
    );
    // The server agrees on the instant (same time zone: local time both ways).
    let ts = m.sql(
        Some("openser"),
        "SELECT UNIX_TIMESTAMP(expires) FROM location WHERE contact='sip:alice@10.0.0.1'",
    );
    assert_eq!(ts.trim(), t.to_string());
    assert_eq!(
        m.sql(Some("openser"), "SELECT COUNT(*) FROM location")
            .trim(),
        "3"
    );

    // Operators, NULL keys, all columns.
    let rows = c
        .query(
            "location",
            &[Key::op("expires", Op::Ge, DbVal::DateTime(t + 60))],
            &["username"],
            Some("username"),
        )
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![DbVal::Str("alice".into())],
            vec![DbVal::Str("bob".into())]
        ]
    );
    let rows = c
        .query(
            "location",
            &[Key::op("username", Op::Ne, "alice")],
            &[],
            None,
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].len(), 16, "SELECT * gives every column");
    let n = c
        .query(
            "location",
            &[Key::eq("received", DbVal::Null)],
            &["id"],
            None,
        )
        .unwrap()
        .len();
    assert_eq!(n, 3);
    let n = c
        .query(
            "location",
            &[Key::op("received", Op::Ne, DbVal::Null)],
            &["id"],
            None,
        )
        .unwrap()
        .len();
    assert_eq!(n, 0);
    let rows = c
        .query(
            "location",
            &[Key::eq("user_agent", evil)],
            &["username"],
            None,
        )
        .unwrap();
    assert_eq!(rows, vec![vec![DbVal::Str("alice".into())]]);

    // Update (rows changed), NULL written, then read back.
    let changed = c
        .update(
            "location",
            &[Key::eq("contact", "sip:alice@10.0.0.2")],
            &[
                ("q", DbVal::Double(0.9)),
                ("received", "sip:1.2.3.4:5060".into()),
                ("path", DbVal::Null),
            ],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let rows = c
        .query(
            "location",
            &[Key::eq("username", "alice")],
            &["contact", "received"],
            Some("q DESC"),
        )
        .unwrap();
    assert_eq!(rows[0][0], DbVal::Str("sip:alice@10.0.0.2".into()));
    assert_eq!(rows[0][1], DbVal::Str("sip:1.2.3.4:5060".into()));
    let n = c
        .update(
            "location",
            &[Key::eq("username", "nobody")],
            &[("cseq", DbVal::Int(1))],
        )
        .unwrap();
    assert_eq!(n, 0);

    // Replace on the primary key.
    let mut r = contact("carol", "sip:carol@a", 1.0, t, "r1");
    r.push(("id", DbVal::Int(100)));
    c.replace("location", &r).unwrap();
    let mut r = contact("carol", "sip:carol@b", 1.0, t, "r2");
    r.push(("id", DbVal::Int(100)));
    c.replace("location", &r).unwrap();
    let rows = c
        .query(
            "location",
            &[Key::eq("id", 100)],
            &["contact", "user_agent"],
            None,
        )
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![
            DbVal::Str("sip:carol@b".into()),
            DbVal::Str("r2".into())
        ]]
    );

    // Delete with keys, then everything.
    assert_eq!(
        c.delete("location", &[Key::eq("username", "bob")]).unwrap(),
        1
    );
    assert_eq!(c.delete("location", &[]).unwrap(), 3);
    assert_eq!(
        m.sql(Some("openser"), "SELECT COUNT(*) FROM location")
            .trim(),
        "0"
    );

    // Bad identifiers and statements are errors, the connection stays usable.
    assert!(
        c.query("location`; DROP TABLE version; --", &[], &[], None)
            .is_err()
    );
    assert!(c.query("location", &[], &["no_such_column"], None).is_err());
    assert!(c.insert("location", &[("bad`col", DbVal::Int(1))]).is_err());
    assert_eq!(
        c.raw_query("SELECT table_version FROM version WHERE table_name='location'")
            .unwrap(),
        vec![vec![DbVal::Str("1004".into())]]
    );

    // Reconnect after the server closes the connection (auto_reconnect = 1, default).
    let old = kill_connection(&m, c.as_mut());
    let rows = c
        .query(
            "version",
            &[Key::eq("table_name", "subscriber")],
            &["table_version"],
            None,
        )
        .expect("operation after KILL succeeds by reconnecting");
    assert_eq!(rows, vec![vec![DbVal::Int(6)]]);
    let new = c.raw_query("SELECT CONNECTION_ID()").unwrap()[0][0]
        .as_int()
        .unwrap();
    assert_ne!(old, new, "a new connection was opened");
    // Also for a write.
    kill_connection(&m, c.as_mut());
    c.insert("location", &contact("dave", "sip:dave@x", 1.0, t, "d"))
        .expect("insert after KILL");
    assert_eq!(
        m.sql(
            Some("openser"),
            "SELECT COUNT(*) FROM location WHERE username='dave'"
        )
        .trim(),
        "1"
    );

    // Without auto_reconnect the error is reported, not retried (and nothing panics).
    let u = DbUrl::parse(&url).unwrap();
    let mut c2 = mysql::connect_with(&u, settings(false)).unwrap();
    kill_connection(&m, &mut c2);
    assert!(c2.query("version", &[], &[], None).is_err());
    assert!(c2.query("version", &[], &[], None).is_err(), "stays lost");

    // Ping after idling longer than ping_interval finds the dead connection.
    let mut c3 = mysql::connect_with(
        &u,
        Settings {
            ping_interval: Duration::from_millis(100),
            auto_reconnect: true,
            ..Settings::default()
        },
    )
    .unwrap();
    kill_connection(&m, &mut c3);
    assert_eq!(
        c3.query("version", &[], &["table_name"], None)
            .unwrap()
            .len(),
        20
    );

    // Host `localhost` is the Unix socket ($MYSQL_UNIX_PORT, here given explicitly).
    let local = DbUrl::parse("mysql://openser:openserrw@localhost/openser").unwrap();
    let sock = m.socket().display().to_string();
    let mut c4 = mysql::connect_at(&local, Some(&sock), settings(true)).expect("socket connect");
    let via = c4.raw_query("SELECT @@socket, USER()").unwrap();
    assert_eq!(via[0][0], DbVal::Str(sock.clone()));
    assert!(
        via[0][1].as_str().unwrap().ends_with("@localhost"),
        "{via:?}"
    );
    let missing = home.file("no.sock").display().to_string();
    assert!(mysql::connect_at(&local, Some(&missing), settings(true)).is_err());

    // The read-only account can read but not write.
    let mut ro = db::connect(&m.url("openserro", "openserro", "openser")).unwrap();
    assert_eq!(ro.query("version", &[], &[], None).unwrap().len(), 20);
    assert!(ro.delete("version", &[]).is_err());

    // Connection failures are errors, never panics.
    assert!(db::connect("mysql:/nohost").is_err());
    assert!(db::connect("mysql://u:p@127.0.0.1:notaport/openser").is_err());
    let e = db::connect(&m.url("openser", "wrong", "openser"))
        .err()
        .unwrap();
    assert!(e.0.contains("cannot connect"), "{e}");
    assert!(!e.0.contains("wrong"), "password not in messages: {e}");
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        p
    };
    let e = db::connect(&format!(
        "mysql://openser:openserrw@127.0.0.1:{refused}/openser"
    ))
    .err()
    .unwrap();
    assert!(e.0.contains("cannot connect"), "{e}");
    assert!(db::connect(&m.url("openser", "openserrw", "no_such_db")).is_err());

    // The server goes away: the first operation tries one reconnect and fails, the
    // next ones fail at once without a connect attempt (bounded delay, no storm); once
    // the server is back and the delay has passed, the connection is reopened.
    let mut m = m;
    let u = DbUrl::parse(&url).unwrap();
    let mut c5 = mysql::connect_with(
        &u,
        Settings {
            reconnect_max_delay: Duration::from_secs(2),
            ..Settings::default()
        },
    )
    .unwrap();
    m.stop();
    let e = c5.query("version", &[], &[], None).unwrap_err();
    assert!(!e.0.contains("next reconnect"), "a first attempt: {e}");
    let e = c5.query("version", &[], &[], None).unwrap_err();
    assert!(
        e.0.contains("next reconnect in"),
        "no second attempt yet: {e}"
    );
    m.start_again();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match c5.query("version", &[], &["table_name"], None) {
            Ok(rows) => {
                assert!(!rows.is_empty());
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < end, "not reconnected: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn mysql_scripts_against_mariadb() {
    let Some(m) = MariaDb::start() else { return };
    let home = TempDir::new("dbscripts");

    // create: database, users, tables, version rows.
    let out = ok(&dbsh(&m, home.path(), &["create"]));
    assert!(out.contains("created"), "{out}");
    let tables = m.sql(Some("openser"), "SHOW TABLES");
    for t in [
        "version",
        "subscriber",
        "location",
        "aliases",
        "acc",
        "missed_calls",
        "grp",
        "re_grp",
        "domain",
        "dbaliases",
        "uri",
        "usr_preferences",
        "silo",
        "trusted",
        "speed_dial",
        "gw",
        "gw_grp",
        "lcr",
        "address",
        "pdt",
        "dispatcher",
        "sip_trace",
    ] {
        assert!(
            tables.lines().any(|l| l == t),
            "table {t} missing: {tables}"
        );
    }
    let versions = m.sql(
        Some("openser"),
        "SELECT table_name, table_version FROM version ORDER BY table_name",
    );
    assert_eq!(versions.lines().count(), 20, "{versions}");
    for row in [
        "subscriber\t6",
        "location\t1004",
        "acc\t4",
        "address\t3",
        "lcr\t2",
    ] {
        assert!(
            versions.lines().any(|l| l == row),
            "{row} not in {versions}"
        );
    }
    let cols = m.sql(
        Some("openser"),
        "SELECT column_name FROM information_schema.columns WHERE table_schema='openser' \
         AND table_name='location' ORDER BY ordinal_position",
    );
    assert_eq!(
        cols.split_whitespace().collect::<Vec<_>>(),
        [
            "id",
            "username",
            "domain",
            "contact",
            "received",
            "path",
            "expires",
            "q",
            "callid",
            "cseq",
            "last_modified",
            "flags",
            "cflags",
            "user_agent",
            "socket",
            "methods"
        ]
    );
    // Creating it again fails (the database exists).
    assert!(!dbsh(&m, home.path(), &["create"]).status.success());

    // openserctl add / passwd / rm on the subscriber table.
    let rc = home.file("openserctlrc");
    std::fs::write(
        &rc,
        format!(
            "DBENGINE=MYSQL\nDBSOCKET={}\nDBNAME=openser\nDBRWUSER=openser\nDBRWPW=openserrw\n\
             OSER_FIFO={}\n",
            m.socket().display(),
            home.file("no_fifo").display()
        ),
    )
    .unwrap();
    let ctl = |args: &[&str]| {
        Command::new("sh")
            .arg(CTL)
            .args(args)
            .env("OPENSERCTLRC", &rc)
            .env("HOME", home.path())
            .output()
            .expect("run openserctl")
    };
    let sub = |user: &str| {
        m.sql(
            Some("openser"),
            &format!(
                "SELECT username, domain, password, email_address, ha1, ha1b, \
                 datetime_created > NOW() - INTERVAL 1 HOUR FROM subscriber WHERE username='{user}'"
            ),
        )
    };
    ok(&ctl(&[
        "add",
        "alice@example.com",
        "secret",
        "alice@mail.example.com",
    ]));
    assert_eq!(
        sub("alice").trim_end(),
        format!(
            "alice\texample.com\tsecret\talice@mail.example.com\t{}\t{}\t1",
            md5_hex("alice:example.com:secret"),
            md5_hex("alice@example.com:example.com:secret")
        )
    );
    let dup = ctl(&["add", "alice@example.com", "other"]);
    assert!(!dup.status.success(), "adding an existing user fails");
    ok(&ctl(&["passwd", "alice@example.com", "n3w"]));
    assert_eq!(
        sub("alice").trim_end(),
        format!(
            "alice\texample.com\tn3w\talice@mail.example.com\t{}\t{}\t1",
            md5_hex("alice:example.com:n3w"),
            md5_hex("alice@example.com:example.com:n3w")
        )
    );
    // Quotes and backslashes in a password are data, not SQL.
    let pw = "p'a\\s\"s";
    ok(&ctl(&["add", "bob@example.org", pw]));
    assert_eq!(
        sub("bob").trim_end(),
        format!(
            "bob\texample.org\tp'a\\\\s\"s\t\t{}\t{}\t1",
            md5_hex(&format!("bob:example.org:{pw}")),
            md5_hex(&format!("bob@example.org:example.org:{pw}"))
        )
    );
    assert!(!ctl(&["passwd", "nobody@example.com", "x"]).status.success());
    assert!(
        !ctl(&["add", "nodomain", "x"]).status.success(),
        "no SIP_DOMAIN"
    );
    ok(&ctl(&["rm", "alice@example.com"]));
    assert_eq!(sub("alice"), "");
    assert!(!ctl(&["rm", "alice@example.com"]).status.success());

    // backup, drop, restore.
    let dump = ok(&dbsh(&m, home.path(), &["backup"]));
    assert!(dump.contains("CREATE TABLE `subscriber`"), "{dump}");
    let file = home.file("dump.sql");
    std::fs::write(&file, &dump).unwrap();
    ok(&dbsh(&m, home.path(), &["drop"]));
    assert!(
        !m.sql(None, "SHOW DATABASES")
            .lines()
            .any(|l| l == "openser")
    );
    m.sql(None, "CREATE DATABASE openser");
    ok(&dbsh(&m, home.path(), &["restore", file.to_str().unwrap()]));
    assert_eq!(sub("bob").lines().count(), 1, "restored");

    // reinit: empty tables again.
    ok(&dbsh(&m, home.path(), &["reinit"]));
    assert_eq!(sub("bob"), "");
    assert_eq!(
        m.sql(Some("openser"), "SELECT COUNT(*) FROM version")
            .trim(),
        "20"
    );
    assert!(!dbsh(&m, home.path(), &["nonsense"]).status.success());
}

#[test]
fn mysql_module_in_a_config() {
    let dir = TempDir::new("mysqlcfg");
    let write = |name: &str, params: &str| {
        let p = dir.file(name);
        std::fs::write(
            &p,
            format!(
                "listen=udp:127.0.0.1:5999\nloadmodule \"mysql.so\"\n{params}route {{ exit; }}\n"
            ),
        )
        .unwrap();
        p
    };
    let good = write(
        "good.cfg",
        "modparam(\"mysql\", \"ping_interval\", 60)\nmodparam(\"mysql\", \"auto_reconnect\", 0)\n",
    );
    let (code, _o, err) = crate::harness::run(&["-c", "-f", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bad = write("bad.cfg", "modparam(\"mysql\", \"ping_interval\", -5)\n");
    let (code, _o, err) = crate::harness::run(&["-c", "-f", bad.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("ping_interval"), "{err}");
    let unknown = write("unknown.cfg", "modparam(\"mysql\", \"no_such_param\", 1)\n");
    let (code, _o, err) = crate::harness::run(&["-c", "-f", unknown.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
}

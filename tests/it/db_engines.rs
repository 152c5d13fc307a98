//! Every database driver against its real engine, with the same test bodies: the
//! driver conformance suite (typed values, NULLs, DATETIME in local time, operators,
//! affected-row counts, replace, hostile values bound not pasted, bad identifiers) once
//! per engine; the 1.2 scripts and openserctl's subscriber commands per engine.

use std::time::Duration;

use crate::harness::digest::md5_hex;
use openser_core::db::{self, DbConn, DbVal, Key, Op};

use crate::harness::engines::{Engine, Kind};

/// Every driver module counts as loaded (as if the config loaded them all).
fn load_all_drivers() {
    openser_core::module::freeze(vec![
        &db_mysql::EXPORTS,
        &db_postgres::EXPORTS,
        &db_sqlite::EXPORTS,
        &db_text::EXPORTS,
    ]);
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

/// Values that break a statement built by pasting: quotes, backslashes, SQL comments,
/// LIKE wildcards, a 4-byte UTF-8 character, dbtext's separators and escapes.
const HOSTILE: &[&str] = &[
    "o'brien",
    "x'); DROP TABLE subscriber; --",
    "back\\slash\\",
    "\\'",
    "dq\"`bt`",
    "100%_wild",
    "emoji😀𝄞",
    "colon:sep\\:x",
    "tab\tnl\ncr\r",
];

/// The conformance suite on one engine.
fn conformance(e: &Engine) {
    load_all_drivers();
    let url = e.url();
    let mut c =
        db::connect(&url).unwrap_or_else(|err| panic!("{:?}: connect {url}: {err}", e.kind));
    let c = c.as_mut();
    let k = e.kind;

    // Inserts, including a value that would break a pasted statement.
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
    assert_eq!(rows.len(), 2, "{k:?}: {rows:?}");
    assert_eq!(rows[0][0], DbVal::Str("sip:alice@10.0.0.1".into()), "{k:?}");
    assert_eq!(rows[0][1], DbVal::Double(0.8), "{k:?}");
    assert_eq!(rows[0][2], DbVal::DateTime(t), "{k:?}: DATETIME round trip");
    assert_eq!(rows[0][3], DbVal::Null, "{k:?}");
    assert_eq!(rows[0][5], DbVal::Int(7), "{k:?}");
    assert_eq!(rows[0][6], DbVal::Int(-1), "{k:?}");
    assert_eq!(rows[1][2], DbVal::DateTime(t + 60), "{k:?}");
    assert_eq!(
        rows[1][4],
        DbVal::Str(evil.into()),
        "{k:?}: stored verbatim"
    );

    // The engine itself agrees: three rows, the evil value as written.
    let raw = e.rows("location", &["username", "user_agent"], "id");
    assert_eq!(raw.len(), 3, "{k:?}: {raw:?}");
    assert_eq!(raw[1][1], evil, "{k:?}");
    // DATETIME is local time in the database too: the engine's text of `expires` is the
    // local wall-clock time of t.
    let local = openser_core::db::sql::local_datetime(t).unwrap();
    let stored = e.rows("location", &["expires"], "id");
    if k == Kind::DbText {
        assert_eq!(stored[0][0], t.to_string(), "dbtext keeps seconds");
    } else {
        assert_eq!(stored[0][0], local, "{k:?}: stored as local time");
    }

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
        ],
        "{k:?}"
    );
    let rows = c
        .query(
            "location",
            &[Key::op("expires", Op::Lt, DbVal::DateTime(t + 60))],
            &["contact"],
            None,
        )
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![DbVal::Str("sip:alice@10.0.0.1".into())]],
        "{k:?}"
    );
    let rows = c
        .query(
            "location",
            &[Key::op("username", Op::Ne, "alice")],
            &[],
            None,
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "{k:?}");
    assert_eq!(rows[0].len(), 16, "{k:?}: SELECT * gives every column");
    let n =
        |c: &mut dyn DbConn, keys: &[Key]| c.query("location", keys, &["id"], None).unwrap().len();
    assert_eq!(n(c, &[Key::eq("received", DbVal::Null)]), 3, "{k:?}");
    assert_eq!(
        n(c, &[Key::op("received", Op::Ne, DbVal::Null)]),
        0,
        "{k:?}"
    );
    assert_eq!(
        n(c, &[Key::op("q", Op::Le, DbVal::Double(0.85))]),
        2,
        "{k:?}"
    );
    assert_eq!(
        n(
            c,
            &[
                Key::op("cseq", Op::Gt, DbVal::Int(6)),
                Key::eq("username", "bob")
            ]
        ),
        1,
        "{k:?}"
    );
    let rows = c
        .query(
            "location",
            &[Key::eq("user_agent", evil)],
            &["username"],
            None,
        )
        .unwrap();
    assert_eq!(rows, vec![vec![DbVal::Str("alice".into())]], "{k:?}");
    assert!(
        c.query("location", &[Key::eq("user_agent", "x'")], &["id"], None)
            .unwrap()
            .is_empty()
    );

    // LIMIT (usrloc's paged start-up load): at most n rows, in order.
    let page = c
        .query_limit(
            "location",
            &[Key::op("id", Op::Gt, DbVal::Int(0))],
            &["contact"],
            Some("id"),
            2,
        )
        .unwrap();
    assert_eq!(
        page,
        vec![
            vec![DbVal::from("sip:alice@10.0.0.1")],
            vec![DbVal::from("sip:alice@10.0.0.2")]
        ],
        "{k:?}"
    );
    assert_eq!(
        c.query_limit("location", &[], &["id"], None, 0)
            .unwrap()
            .len(),
        0,
        "{k:?}"
    );
    assert_eq!(
        c.query_limit("location", &[], &["id"], None, 10)
            .unwrap()
            .len(),
        3,
        "{k:?}"
    );

    // Update: rows matched (also when nothing changes), NULL written, read back.
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
    assert_eq!(changed, 1, "{k:?}");
    let same = c
        .update(
            "location",
            &[Key::eq("contact", "sip:alice@10.0.0.2")],
            &[("q", DbVal::Double(0.9))],
        )
        .unwrap();
    assert_eq!(
        same, 1,
        "{k:?}: an update that changes nothing still counts the row"
    );
    let rows = c
        .query(
            "location",
            &[Key::eq("username", "alice")],
            &["contact", "received", "path"],
            Some("q DESC"),
        )
        .unwrap();
    assert_eq!(rows[0][0], DbVal::Str("sip:alice@10.0.0.2".into()), "{k:?}");
    assert_eq!(rows[0][1], DbVal::Str("sip:1.2.3.4:5060".into()), "{k:?}");
    assert_eq!(rows[0][2], DbVal::Null, "{k:?}");
    let all = c
        .update(
            "location",
            &[Key::eq("domain", "example.com")],
            &[("flags", DbVal::Int(3))],
        )
        .unwrap();
    assert_eq!(all, 3, "{k:?}");
    assert_eq!(
        c.update(
            "location",
            &[Key::eq("username", "nobody")],
            &[("cseq", DbVal::Int(1))]
        )
        .unwrap(),
        0
    );
    // A DATETIME written by update reads back.
    c.update(
        "location",
        &[Key::eq("username", "bob")],
        &[("expires", DbVal::DateTime(t + 7))],
    )
    .unwrap();
    let rows = c
        .query(
            "location",
            &[Key::eq("username", "bob")],
            &["expires"],
            None,
        )
        .unwrap();
    assert_eq!(rows, vec![vec![DbVal::DateTime(t + 7)]], "{k:?}");

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
        ]],
        "{k:?}"
    );
    assert_eq!(n(c, &[Key::eq("username", "carol")]), 1, "{k:?}");

    // Delete with keys (rows deleted), then everything.
    assert_eq!(
        c.delete("location", &[Key::eq("username", "bob")]).unwrap(),
        1,
        "{k:?}"
    );
    assert_eq!(
        c.delete("location", &[Key::eq("username", "bob")]).unwrap(),
        0,
        "{k:?}"
    );
    assert_eq!(c.delete("location", &[]).unwrap(), 3, "{k:?}");
    assert!(e.rows("location", &["id"], "id").is_empty(), "{k:?}");

    // Hostile user names and domains: stored and matched exactly, one row each.
    for (i, h) in HOSTILE.iter().enumerate() {
        c.insert(
            "subscriber",
            &[
                ("username", DbVal::from(*h)),
                ("domain", DbVal::from(format!("{h}.example"))),
                ("password", DbVal::from(format!("pw{i}"))),
                ("ha1", DbVal::from(md5_hex(h))),
                ("datetime_created", DbVal::DateTime(t)),
            ],
        )
        .unwrap_or_else(|err| panic!("{k:?}: insert {h:?}: {err}"));
    }
    for (i, h) in HOSTILE.iter().enumerate() {
        let rows = c
            .query(
                "subscriber",
                &[
                    Key::eq("username", *h),
                    Key::eq("domain", format!("{h}.example")),
                ],
                &["username", "password", "ha1"],
                None,
            )
            .unwrap();
        assert_eq!(
            rows,
            vec![vec![
                DbVal::from(*h),
                DbVal::from(format!("pw{i}")),
                DbVal::from(md5_hex(h))
            ]],
            "{k:?}: {h:?}"
        );
    }
    // A wildcard or a prefix matches nothing.
    for probe in ["%", "o'", "100%", "back\\slash", "emoji😀", "o''brien"] {
        let rows = c
            .query("subscriber", &[Key::eq("username", probe)], &["id"], None)
            .unwrap();
        assert!(rows.is_empty(), "{k:?}: {probe:?} matched {rows:?}");
    }
    let raw = e.rows("subscriber", &["username"], "id");
    let got: Vec<&str> = raw.iter().map(|r| r[0].as_str()).collect();
    // (The last one holds a newline, which the line-based readers split.)
    assert_eq!(
        &got[..8],
        &HOSTILE[..8],
        "{k:?}: the engine holds the names verbatim"
    );
    // NUL cannot be stored in a text column by every engine: refused or kept, never
    // silently cut short to match another name.
    match c.insert(
        "subscriber",
        &[
            ("username", DbVal::from("nul\0x")),
            ("domain", DbVal::from("d")),
        ],
    ) {
        Ok(()) => {
            let rows = c
                .query("subscriber", &[Key::eq("username", "nul")], &["id"], None)
                .unwrap();
            assert!(rows.is_empty(), "{k:?}: NUL truncated the value");
            let rows = c
                .query(
                    "subscriber",
                    &[Key::eq("username", "nul\0x")],
                    &["username"],
                    None,
                )
                .unwrap();
            assert_eq!(rows, vec![vec![DbVal::from("nul\0x")]], "{k:?}");
        }
        Err(err) => assert!(!err.0.is_empty()),
    }

    // Bad identifiers and statements are errors; the connection stays usable.
    assert!(
        c.query("location\"; DROP TABLE version; --", &[], &[], None)
            .is_err(),
        "{k:?}"
    );
    assert!(
        c.query("location`; DROP TABLE version; --", &[], &[], None)
            .is_err(),
        "{k:?}"
    );
    assert!(
        c.query("location", &[], &["no_such_column"], None).is_err(),
        "{k:?}"
    );
    assert!(c.query("no_such_table", &[], &[], None).is_err(), "{k:?}");
    assert!(
        c.insert("location", &[("bad\"col", DbVal::Int(1))])
            .is_err(),
        "{k:?}"
    );
    assert!(
        c.query("location", &[], &[], Some("id; DROP")).is_err(),
        "{k:?}"
    );
    let rows = c
        .query(
            "version",
            &[Key::eq("table_name", "subscriber")],
            &["table_version"],
            None,
        )
        .unwrap();
    assert_eq!(rows, vec![vec![DbVal::Int(6)]], "{k:?}");
    assert_eq!(
        c.query("version", &[], &["table_name"], None)
            .unwrap()
            .len(),
        20,
        "{k:?}"
    );
}

/// Reconnect after the server closed the connection: the next operation succeeds on a
/// new one.
fn reconnect(e: &mut Engine) {
    load_all_drivers();
    let mut c = db::connect(&e.url()).unwrap();
    let k = e.kind;
    match k {
        Kind::Mysql => {
            let m = e.my.as_ref().unwrap();
            let id = c.raw_query("SELECT CONNECTION_ID()").unwrap()[0][0]
                .as_int()
                .unwrap();
            m.sql(None, &format!("KILL {id}"));
        }
        Kind::Postgres => {
            let p = e.pg.as_ref().unwrap();
            p.sql(
                None,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'openser'",
            );
        }
        _ => return,
    }
    std::thread::sleep(Duration::from_millis(200));
    let rows = c
        .query(
            "version",
            &[Key::eq("table_name", "location")],
            &["table_version"],
            None,
        )
        .unwrap_or_else(|err| panic!("{k:?}: after the server closed the connection: {err}"));
    assert_eq!(rows, vec![vec![DbVal::Int(1004)]], "{k:?}");
    // Server restart (PostgreSQL: stopped and started on the same port).
    if k == Kind::Postgres {
        e.pg.as_mut().unwrap().restart();
        c.insert(
            "location",
            &contact("z", "sip:z@x", 1.0, 1_700_000_000, "z"),
        )
        .unwrap_or_else(|err| panic!("insert after restart: {err}"));
        assert_eq!(
            e.rows("location", &["username"], "id"),
            vec![vec!["z".to_string()]]
        );
        // While it is down, an operation fails (within the timeout) instead of hanging.
        e.pg.as_mut().unwrap().stop();
        assert!(c.query("version", &[], &[], None).is_err());
        assert!(c.query("version", &[], &[], None).is_err(), "still down");
    }
}

/// openser_<engine>.sh and openserctl on one engine.
fn scripts(e: &Engine) {
    let k = e.kind;
    // Creating it again fails.
    assert!(
        !e.dbsh(&["create"]).status.success(),
        "{k:?}: create over an existing database"
    );
    let sub = |user: &str| -> Vec<Vec<String>> {
        e.rows(
            "subscriber",
            &[
                "username",
                "domain",
                "password",
                "email_address",
                "ha1",
                "ha1b",
            ],
            "id",
        )
        .into_iter()
        .filter(|r| r[0] == user)
        .collect()
    };
    e.ok(&e.ctl(
        "",
        &[
            "add",
            "alice@example.com",
            "secret",
            "alice@mail.example.com",
        ],
    ));
    assert_eq!(
        sub("alice"),
        vec![vec![
            "alice".to_string(),
            "example.com".into(),
            "secret".into(),
            "alice@mail.example.com".into(),
            md5_hex("alice:example.com:secret"),
            md5_hex("alice@example.com:example.com:secret"),
        ]],
        "{k:?}"
    );
    // datetime_created is now (local time).
    let created = e.rows("subscriber", &["datetime_created"], "id");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = if k == Kind::DbText {
        created[0][0].parse::<i64>().unwrap()
    } else {
        openser_core::db::sql::parse_local_datetime(&created[0][0]).unwrap()
    };
    assert!(
        (now - 3600..=now + 5).contains(&t),
        "{k:?}: created {t}, now {now}"
    );
    assert!(
        !e.ctl("", &["add", "alice@example.com", "other"])
            .status
            .success(),
        "{k:?}: duplicate"
    );
    e.ok(&e.ctl("", &["passwd", "alice@example.com", "n3w"]));
    assert_eq!(
        sub("alice")[0][4],
        md5_hex("alice:example.com:n3w"),
        "{k:?}"
    );
    assert_eq!(sub("alice")[0][2], "n3w", "{k:?}");
    // Without the plaintext password; quotes, backslashes and a colon are data.
    let pw = "p'a\\s\"s:x";
    let name = "o'bri\\en";
    e.ok(&e.ctl(
        "STORE_PLAINTEXT_PW=0\n",
        &["add", &format!("{name}@example.org"), pw],
    ));
    let r = sub(name);
    assert_eq!(r.len(), 1, "{k:?}: {r:?}");
    assert_eq!(r[0][2], "", "{k:?}: no plaintext");
    assert_eq!(
        r[0][4],
        md5_hex(&format!("{name}:example.org:{pw}")),
        "{k:?}"
    );
    assert_eq!(
        r[0][5],
        md5_hex(&format!("{name}@example.org:example.org:{pw}")),
        "{k:?}"
    );
    // SIP_DOMAIN for names without a domain.
    assert!(
        !e.ctl("", &["add", "nodomain", "x"]).status.success(),
        "{k:?}: no SIP_DOMAIN"
    );
    e.ok(&e.ctl("SIP_DOMAIN=sip.example.net\n", &["add", "carol", "c"]));
    assert_eq!(sub("carol")[0][1], "sip.example.net", "{k:?}");
    assert!(
        !e.ctl("", &["passwd", "nobody@example.com", "x"])
            .status
            .success()
    );
    // db show lists them.
    let shown = e.ok(&e.ctl("", &["db", "show", "subscriber"]));
    for u in ["alice", name, "carol"] {
        assert!(shown.contains(u), "{k:?}: {u} not in {shown}");
    }
    // rm takes the user's group memberships along.
    e.ok(&e.ctl("", &["rm", "alice@example.com"]));
    assert!(sub("alice").is_empty(), "{k:?}");
    assert!(
        !e.ctl("", &["rm", "alice@example.com"]).status.success(),
        "{k:?}"
    );
    e.ok(&e.ctl("", &["rm", &format!("{name}@example.org")]));
    assert!(sub(name).is_empty(), "{k:?}");

    // backup, drop, restore.
    let dump = e.dbsh(&["backup"]);
    assert!(
        dump.status.success(),
        "{k:?}: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let file = e.dir.file("dump");
    std::fs::write(&file, &dump.stdout).unwrap();
    e.ok(&e.dbsh(&["drop"]));
    if k == Kind::Postgres {
        e.pg.as_ref().unwrap().sql(None, "CREATE DATABASE openser");
    }
    e.ok(&e.dbsh(&["restore", file.to_str().unwrap()]));
    assert_eq!(sub("carol").len(), 1, "{k:?}: restored");
    // The extra table sets.
    for set in ["presence", "extra", "serweb"] {
        e.ok(&e.dbsh(&[set]));
    }
    assert!(!e.dbsh(&["nonsense"]).status.success());
    // HAS_SERWEB: add fills phplib_id, rm clears the pending request.
    e.ok(&e.ctl("HAS_SERWEB=yes\n", &["add", "dave@example.com", "d"]));
    let ids = e.rows("subscriber", &["username", "phplib_id"], "id");
    let dave = ids.iter().find(|r| r[0] == "dave").expect("dave");
    assert_eq!(dave[1].len(), 32, "{k:?}: {dave:?}");
    e.ok(&e.ctl("HAS_SERWEB=yes\n", &["rm", "dave@example.com"]));
}

fn engine(kind: Kind) -> Option<Engine> {
    Engine::start(kind)
}

#[test]
fn conformance_mysql() {
    let Some(mut e) = engine(Kind::Mysql) else {
        return;
    };
    conformance(&e);
    reconnect(&mut e);
}

#[test]
fn conformance_postgres() {
    let Some(mut e) = engine(Kind::Postgres) else {
        return;
    };
    conformance(&e);
    reconnect(&mut e);
}

#[test]
fn conformance_sqlite() {
    let Some(e) = engine(Kind::Sqlite) else {
        return;
    };
    conformance(&e);
}

#[test]
fn conformance_dbtext() {
    let Some(e) = engine(Kind::DbText) else {
        return;
    };
    conformance(&e);
}

#[test]
fn scripts_postgres() {
    let Some(e) = engine(Kind::Postgres) else {
        return;
    };
    scripts(&e);
}

#[test]
fn scripts_sqlite() {
    let Some(e) = engine(Kind::Sqlite) else {
        return;
    };
    scripts(&e);
}

#[test]
fn scripts_dbtext() {
    let Some(e) = engine(Kind::DbText) else {
        return;
    };
    scripts(&e);
}

#[test]
fn scripts_mysql_serweb_and_copy() {
    let Some(e) = engine(Kind::Mysql) else { return };
    e.ok(&e.dbsh(&["serweb"]));
    e.ok(&e.ctl("HAS_SERWEB=yes\n", &["add", "dave@example.com", "d"]));
    let ids = e.rows("subscriber", &["username", "phplib_id"], "id");
    assert_eq!(ids[0][1].len(), 32, "{ids:?}");
    e.ok(&e.dbsh(&["copy", "openser2"]));
    let m = e.my.as_ref().unwrap();
    assert_eq!(
        m.sql(Some("openser2"), "SELECT username FROM subscriber")
            .trim(),
        "dave"
    );
    assert_eq!(
        m.sql(Some("openser2"), "SELECT COUNT(*) FROM version")
            .trim(),
        "27"
    );
}

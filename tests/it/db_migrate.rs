//! `openser_mysql.sh migrate <old> <new>`: an OpenSER 1.1-shaped MySQL database
//! (1.1's tables and rows: subscriber, location, aliases, grp, acc; no `id` columns,
//! composite primary keys, acc's sip_* column names) becomes a 1.2 database; the
//! server then authenticates the migrated users, finds the migrated binding, and
//! openserctl lists the users.

use std::process::Command;
use std::time::Duration;

use crate::harness::digest::md5_hex;
use crate::harness::mariadb::MariaDb;
use crate::harness::*;
use crate::it::mysql_seed::{alice_authz, alice_nonce, alice_register, final_reply};

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/cfg/good/seed-mysql-auth.cfg"
);
const CTL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openserctl");

/// 1.1's layouts of the five tables (scripts/mysqldb.sh of OpenSER 1.1).
const SCHEMA_1_1: &str = "
CREATE TABLE subscriber (
  phplib_id varchar(32) NOT NULL default '',
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  password varchar(25) NOT NULL default '',
  first_name varchar(25) NOT NULL default '',
  last_name varchar(45) NOT NULL default '',
  phone varchar(15) NOT NULL default '',
  email_address varchar(50) NOT NULL default '',
  datetime_created datetime NOT NULL default '0000-00-00 00:00:00',
  datetime_modified datetime NOT NULL default '0000-00-00 00:00:00',
  confirmation varchar(64) NOT NULL default '',
  flag char(1) NOT NULL default 'o',
  sendnotification varchar(50) NOT NULL default '',
  greeting varchar(50) NOT NULL default '',
  ha1 varchar(128) NOT NULL default '',
  ha1b varchar(128) NOT NULL default '',
  allow_find char(1) NOT NULL default '0',
  timezone varchar(128) default NULL,
  rpid varchar(128) default NULL,
  PRIMARY KEY (username, domain),
  UNIQUE KEY phplib_id (phplib_id),
  KEY username_id (username)
);
CREATE TABLE location (
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  contact varchar(255) NOT NULL default '',
  received varchar(255) default NULL,
  expires datetime NOT NULL default '2020-05-28 21:32:15',
  q float(10,2) NOT NULL default '1.0',
  callid varchar(255) NOT NULL default 'Default-Call-ID',
  cseq int(11) NOT NULL default '42',
  last_modified timestamp NOT NULL default CURRENT_TIMESTAMP,
  flags int(11) NOT NULL default '0',
  user_agent varchar(100) NOT NULL default '',
  socket varchar(128) default NULL,
  methods int(11) default NULL,
  PRIMARY KEY (username, domain, contact)
);
CREATE TABLE aliases LIKE location;
CREATE TABLE grp (
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  grp varchar(50) NOT NULL default '',
  last_modified datetime NOT NULL default '0000-00-00 00:00:00',
  PRIMARY KEY (username, domain, grp)
);
CREATE TABLE acc (
  sip_from varchar(128) NOT NULL default '',
  sip_to varchar(128) NOT NULL default '',
  sip_status varchar(128) NOT NULL default '',
  sip_method varchar(16) NOT NULL default '',
  i_uri varchar(128) NOT NULL default '',
  o_uri varchar(128) NOT NULL default '',
  from_uri varchar(128) NOT NULL default '',
  to_uri varchar(128) NOT NULL default '',
  sip_callid varchar(128) NOT NULL default '',
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  fromtag varchar(128) NOT NULL default '',
  totag varchar(128) NOT NULL default '',
  time datetime NOT NULL default '0000-00-00 00:00:00',
  timestamp timestamp NOT NULL default CURRENT_TIMESTAMP,
  KEY acc_callid (sip_callid)
);
";

#[test]
fn mysql_migrate_1_1_to_1_2() {
    let Some(db) = MariaDb::start() else { return };
    let home = TempDir::new("migrate");
    db.sql(None, "CREATE DATABASE openser11");
    db.sql(Some("openser11"), SCHEMA_1_1);
    let ha1 = |u: &str, pw: &str| md5_hex(&format!("{u}:127.0.0.1:{pw}"));
    let ha1b = |u: &str, pw: &str| md5_hex(&format!("{u}@127.0.0.1:127.0.0.1:{pw}"));
    db.sql(
        Some("openser11"),
        &format!(
            "INSERT INTO subscriber (phplib_id, username, domain, password, email_address, ha1, ha1b, datetime_created) VALUES \
             ('p1', 'alice', '127.0.0.1', '', 'alice@example.com', '{}', '{}', '2006-11-05 10:00:00'), \
             ('p2', 'bob', '127.0.0.1', 'bobpw', 'bob@example.com', '{}', '{}', '2006-11-06 10:00:00'); \
             INSERT INTO location (username, domain, contact, expires, q, callid, cseq, flags, user_agent) VALUES \
             ('alice', '127.0.0.1', 'sip:alice@127.0.0.1:5999', NOW() + INTERVAL 1 HOUR, 0.5, 'cid-a', 7, 0, 'UA 1.1'); \
             INSERT INTO aliases (username, domain, contact, expires, callid, cseq, user_agent) VALUES \
             ('al', '127.0.0.1', 'sip:alice@127.0.0.1', '2030-01-01 00:00:00', 'x', 1, ''); \
             INSERT INTO grp (username, domain, grp, last_modified) VALUES ('alice', '127.0.0.1', 'ld', NOW()); \
             INSERT INTO acc (sip_method, fromtag, totag, sip_callid, sip_status, time) VALUES \
             ('INVITE', 'ft1', 'tt1', 'call-1', '200', '2006-11-07 12:00:00')",
            ha1("alice", "alicepw"),
            ha1b("alice", "alicepw"),
            ha1("bob", "bobpw"),
            ha1b("bob", "bobpw"),
        ),
    );

    let out = db.dbsh(home.path(), &["migrate", "openser11", "openser"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in ["subscriber", "location", "aliases", "grp", "acc"] {
        assert!(
            text.contains(&format!("Migrating {t} ..... OK")),
            "{t}: {text}"
        );
    }
    assert!(text.contains("Migrating silo ..... SKIPPED"), "{text}");
    // 1.2 shape: an auto-increment id on every table, the old key now unique.
    assert_eq!(
        db.sql(
            Some("openser"),
            "SELECT id, username, email_address, ha1b FROM subscriber ORDER BY id"
        ),
        format!(
            "1\talice\talice@example.com\t{}\n2\tbob\tbob@example.com\t{}\n",
            ha1b("alice", "alicepw"),
            ha1b("bob", "bobpw")
        )
    );
    let dup = db.sql(
        Some("openser"),
        "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema='openser' \
         AND table_name='subscriber' AND index_name='user_id' AND non_unique=0",
    );
    assert_eq!(dup.trim(), "2", "unique (username, domain)");
    assert_eq!(
        db.sql(
            Some("openser"),
            "SELECT id, username, contact, q, cseq, user_agent FROM location"
        ),
        "1\talice\tsip:alice@127.0.0.1:5999\t0.50\t7\tUA 1.1\n"
    );
    assert_eq!(
        db.sql(Some("openser"), "SELECT username, contact FROM aliases"),
        "al\tsip:alice@127.0.0.1\n"
    );
    assert_eq!(
        db.sql(Some("openser"), "SELECT id, username, grp FROM grp"),
        "1\talice\tld\n"
    );
    assert_eq!(
        db.sql(
            Some("openser"),
            "SELECT method, from_tag, to_tag, callid, sip_code, time FROM acc"
        ),
        "INVITE\tft1\ttt1\tcall-1\t200\t2006-11-07 12:00:00\n"
    );
    assert_eq!(
        db.sql(Some("openser"), "SELECT COUNT(*) FROM version")
            .trim(),
        "20"
    );
    // The old database is untouched; migrating onto an existing database fails.
    assert_eq!(
        db.sql(Some("openser11"), "SELECT COUNT(*) FROM subscriber")
            .trim(),
        "2"
    );
    assert!(
        !db.dbsh(home.path(), &["migrate", "openser11", "openser"])
            .status
            .success()
    );
    assert!(
        !db.dbsh(home.path(), &["migrate", "no_such_db", "openser3"])
            .status
            .success()
    );

    // The server authenticates the migrated users (ha1 from the database: the 1.1 row
    // of alice has no plaintext password) and loads the migrated binding.
    let text = std::fs::read_to_string(SEED).unwrap();
    let cfg = text
        .replace("port=5060", "listen=udp:127.0.0.1:{PORT}")
        .replace("/tmp/openser_fifo", "{DIR}/openser_fifo")
        .replace(
            "@localhost/openser",
            &format!("@127.0.0.1:{}/openser", db.port()),
        )
        .replace(
            "modparam(\"auth_db\", \"calculate_ha1\", yes)",
            "modparam(\"auth_db\", \"calculate_ha1\", no)",
        )
        .replace(
            "modparam(\"auth_db\", \"password_column\", \"password\")",
            "modparam(\"auth_db\", \"password_column\", \"ha1\")",
        );
    assert!(
        cfg.contains("\"calculate_ha1\", no") && cfg.contains("\"ha1\")"),
        "seed config changed"
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    assert!(
        s.wait_log(
            "loaded 1 contact(s) of table location",
            Duration::from_secs(5)
        ),
        "{}",
        s.log()
    );
    let c = Client::new();
    let nonce = alice_nonce(&s, &c);
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, s.port, 2, 600, &alice_authz(s.port, &nonce, "wrong")),
    );
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let r = final_reply(
        &s,
        &c,
        &alice_register(&c, s.port, 3, 600, &alice_authz(s.port, &nonce, "alicepw")),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());
    // Both contacts: the migrated one and the new one.
    let contacts = crate::harness::headers(&r, "Contact").join(",");
    assert!(contacts.contains("sip:alice@127.0.0.1:5999"), "{r}");
    assert!(
        contacts.contains(&format!("sip:alice@127.0.0.1:{}", c.port())),
        "{r}"
    );
    assert!(s.stop().success());

    // openserctl lists them.
    let rc = home.file("openserctlrc");
    std::fs::write(
        &rc,
        format!(
            "DBENGINE=MYSQL\nDBSOCKET={}\nDBNAME=openser\nDBRWUSER=openser\nDBRWPW=openserrw\nOSER_FIFO={}\n",
            db.socket().display(),
            home.file("no_fifo").display()
        ),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg(CTL)
        .args(["db", "show", "subscriber"])
        .env("OPENSERCTLRC", &rc)
        .env("HOME", home.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{list}");
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.lines().any(|l| l.starts_with("1\talice\t127.0.0.1\t")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("2\tbob\t127.0.0.1\tbobpw\t")),
        "{list}"
    );
}

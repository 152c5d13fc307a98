//! The database modules of a production config — avpops, domain, group, uri_db,
//! alias_db, speeddial — through the real binary against a real database (a private
//! MariaDB, and the same bodies on SQLite), provisioned with openserctl's commands
//! (`avp`, `domain`, `acl`, `alias_db`, `speeddial`, `add`).

use std::path::Path;
use std::time::Duration;

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;

/// A request from `from` (a URI) to `ruri`, with `extra` header lines.
fn req(method: &str, ruri: &str, from: &str, c: &Client, callid: &str, extra: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{callid}\r\n\
         From: <{from}>;tag=t{callid}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {callid}\r\n\
         CSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        p = c.port()
    )
}

/// Send and return the final reply.
fn ask(s: &Server, c: &Client, msg: &str) -> String {
    c.send(s.addr(), msg);
    loop {
        let r = c
            .recv_matching("SIP/2.0 ")
            .unwrap_or_else(|| panic!("no reply to\n{msg}\nlog:\n{}", s.log()));
        if !r.starts_with("SIP/2.0 1") {
            return r;
        }
    }
}

fn status(r: &str) -> &str {
    r.lines().next().unwrap_or("")
}

/// openserctl with this engine's database (and the server's FIFO when given).
fn ctl(e: &Engine, fifo: Option<&Path>, args: &[&str]) -> String {
    let extra = fifo
        .map(|f| {
            format!(
                "OSER_FIFO={}\nREPLY_DIR={}\n",
                f.display(),
                f.parent().unwrap().display()
            )
        })
        .unwrap_or_default();
    let out = e.ctl(&extra, args);
    e.ok(&out)
}

const AVP_CFG: &str = r#"listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "{DBMOD}.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "avpops.so"
modparam("avpops", "db_url", "{URL}")
modparam("avpops", "avp_table", "usr_preferences")
modparam("avpops", "use_domain", 1)
route {
    if (method == "OPTIONS") {
        route(2);
        exit;
    }
    if (loose_route()) {
        t_relay();
        exit;
    }
    if (method == "INVITE") {
        # the callee's forwarding preference decides where the call goes
        if (!avp_db_load("$ru", "$avp(s:fwd)")) {
            sl_send_reply("404", "No forwarding preference");
            exit;
        }
        avp_pushto("$ru", "$avp(s:fwd)");
        record_route();
    }
    t_relay();
}
route[2] {
    if ($rU == "store") {
        $avp(s:lang) = $hdr(X-Lang);
        avp_db_store("$fu", "$avp(s:lang)");
        sl_send_reply("200", "stored");
        exit;
    }
    if ($rU == "load") {
        if (avp_db_load("$fu", "$avp(s:lang)")) {
            append_to_reply("X-Lang: $avp(s:lang)\r\n");
            sl_send_reply("200", "loaded");
        } else {
            sl_send_reply("404", "none");
        }
        exit;
    }
    if ($rU == "query") {
        if (avp_db_query("SELECT value FROM usr_preferences WHERE username='$fU' AND attribute='lang'", "$avp(s:q)")) {
            append_to_reply("X-Q: $avp(s:q)\r\n");
            sl_send_reply("200", "queried");
        } else {
            sl_send_reply("500", "query failed");
        }
        exit;
    }
    if ($rU == "delete") {
        avp_db_delete("$fu", "$avp(s:lang)");
        sl_send_reply("200", "deleted");
        exit;
    }
    if ($rU == "re") {
        $avp(s:u) = $fu;
        $avp(s:re) = $hdr(X-Re);
        if (avp_check("$avp(s:u)", "re/$avp(s:re)")) {
            sl_send_reply("200", "match");
        } else {
            sl_send_reply("403", "no match");
        }
        exit;
    }
    if ($rU == "subst") {
        $avp(s:e) = $hdr(X-E);
        avp_subst("$avp(s:e)", "/^([^@]+)@(.*)$/\2 at \1/");
        append_to_reply("X-E: $avp(s:e)\r\n");
        sl_send_reply("200", "subst");
        exit;
    }
    sl_send_reply("404", "Not here");
}
"#;

fn avp_cfg(e: &Engine) -> String {
    AVP_CFG
        .replace("{DBMOD}", e.module())
        .replace("{URL}", &e.url())
}

/// A preference loaded from usr_preferences routes the call (SIPp UAC → proxy →
/// SIPp UAS), store/load/query/delete keep the table in step, and a bad regular
/// expression given at run time is a logged -1, the worker going on.
fn avpops_body(kind: Kind) {
    if !require("sipp") {
        return;
    }
    let Some(e) = Engine::start(kind) else { return };
    let dir = TempDir::new("avpops");
    let (mut uas, uas_port) = sipp_uas(dir.path());
    let fwd = format!("sip:bob@127.0.0.1:{uas_port}");
    ctl(&e, None, &["avp", "add", "bob@127.0.0.1", "fwd", "0", &fwd]);
    let rows = e.rows(
        "usr_preferences",
        &["username", "domain", "attribute", "type", "value"],
        "id",
    );
    assert_eq!(
        rows,
        [vec![
            "bob".to_string(),
            "127.0.0.1".into(),
            "fwd".into(),
            "0".into(),
            fwd.clone()
        ]]
    );
    assert!(ctl(&e, None, &["avp", "list", "bob@127.0.0.1"]).contains(&fwd));
    let mut s = Server::start(&avp_cfg(&e), &["-DD", "-E"]);
    // bob's calls follow his preference to the UAS
    sipp_calls(dir.path(), s.port, "bob", 3);
    let c = Client::new();
    // carol has none
    let r = ask(
        &s,
        &c,
        &req(
            "INVITE",
            &format!("sip:carol@127.0.0.1:{}", s.port),
            "sip:alice@127.0.0.1",
            &c,
            "inv1",
            "",
        ),
    );
    assert_eq!(status(&r), "SIP/2.0 404 No forwarding preference", "{r}");

    let opt = |user: &str, id: &str, extra: &str| {
        ask(
            &s,
            &c,
            &req(
                "OPTIONS",
                &format!("sip:{user}@127.0.0.1:{}", s.port),
                "sip:alice@127.0.0.1",
                &c,
                id,
                extra,
            ),
        )
    };
    assert_eq!(status(&opt("load", "l0", "")), "SIP/2.0 404 none");
    assert_eq!(
        status(&opt("store", "s1", "X-Lang: de\r\n")),
        "SIP/2.0 200 stored"
    );
    let rows = e.rows(
        "usr_preferences",
        &["username", "domain", "attribute", "type", "value"],
        "id",
    );
    assert_eq!(
        rows.last().unwrap(),
        &["alice", "127.0.0.1", "lang", "0", "de"]
            .map(String::from)
            .to_vec()
    );
    let r = opt("load", "l1", "");
    assert_eq!(header(&r, "X-Lang"), Some("de"), "{r}");
    let r = opt("query", "q1", "");
    assert_eq!(header(&r, "X-Q"), Some("de"), "{r}");
    assert_eq!(status(&opt("delete", "d1", "")), "SIP/2.0 200 deleted");
    assert_eq!(status(&opt("load", "l2", "")), "SIP/2.0 404 none");
    assert_eq!(e.rows("usr_preferences", &["username"], "id").len(), 1);

    // back references and run-time regular expressions
    let r = opt("subst", "x1", "X-E: alice@example.com\r\n");
    assert_eq!(header(&r, "X-E"), Some("example.com at alice"), "{r}");
    assert_eq!(
        status(&opt("re", "r1", "X-Re: ^sip:ALICE@\r\n")),
        "SIP/2.0 200 match"
    );
    assert_eq!(
        status(&opt("re", "r2", "X-Re: ^sip:bob@\r\n")),
        "SIP/2.0 403 no match"
    );
    assert_eq!(
        status(&opt("re", "r3", "X-Re: sip:(alice\r\n")),
        "SIP/2.0 403 no match"
    );
    assert!(
        s.wait_log(
            "bad regular expression 'sip:(alice'",
            Duration::from_secs(5)
        ),
        "{}",
        s.log()
    );
    // the worker is still serving
    assert_eq!(
        status(&opt("re", "r4", "X-Re: alice\r\n")),
        "SIP/2.0 200 match"
    );

    ctl(&e, None, &["avp", "rm", "bob@127.0.0.1", "fwd"]);
    assert!(e.rows("usr_preferences", &["username"], "id").is_empty());
    s.stop();
    uas.kill();
}

#[test]
fn avpops_mysql_preferences_route_calls() {
    avpops_body(Kind::Mysql);
}

#[test]
fn avpops_sqlite_preferences_route_calls() {
    avpops_body(Kind::Sqlite);
}

const ACL_CFG: &str = r#"listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "{DBMOD}.so"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "mi_fifo.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "domain.so"
loadmodule "group.so"
loadmodule "uri_db.so"
loadmodule "alias_db.so"
loadmodule "speeddial.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("auth_db", "db_url", "{URL}")
modparam("domain", "db_url", "{URL}")
modparam("domain", "db_mode", 1)
modparam("group", "db_url", "{URL}")
modparam("group", "re_table", "re_grp")
modparam("uri_db", "db_url", "{URL}")
modparam("uri_db", "use_domain", 1)
modparam("alias_db", "db_url", "{URL}")
modparam("alias_db", "use_domain", 1)
modparam("speeddial", "db_url", "{URL}")
route {
    if (method == "REGISTER") {
        if (!www_authorize("127.0.0.1", "subscriber")) {
            www_challenge("127.0.0.1", "0");
            exit;
        }
        if (!check_to()) {
            sl_send_reply("403", "Spoofed To");
            exit;
        }
        if (!is_user_in("Credentials", "voicemail")) {
            sl_send_reply("403", "No voicemail");
            exit;
        }
        sl_send_reply("200", "OK");
        exit;
    }
    if (!is_from_local()) {
        sl_send_reply("403", "Foreign domain");
        exit;
    }
    if (!is_uri_host_local()) {
        sl_send_reply("403", "Not a local R-URI");
        exit;
    }
    if ($rU =~ "^00") {
        if (!is_user_in("From", "pstn")) {
            sl_send_reply("403", "Not in pstn");
            exit;
        }
        if (get_user_group("From", "$avp(s:g)")) {
            append_to_reply("X-G: $avp(s:g)\r\n");
        }
        sl_send_reply("200", "PSTN allowed");
        exit;
    }
    if ($rU =~ "^[0-9][0-9]$") {
        if (sd_lookup("speed_dial")) {
            append_to_reply("X-RURI: $ru\r\n");
            sl_send_reply("200", "Speed dial");
        } else {
            sl_send_reply("404", "No speed dial");
        }
        exit;
    }
    if (alias_db_lookup("dbaliases")) {
        append_to_reply("X-RURI: $ru\r\n");
        sl_send_reply("200", "Alias");
        exit;
    }
    if (does_uri_exist()) {
        sl_send_reply("200", "User exists");
        exit;
    }
    sl_send_reply("404", "Not Found");
}
"#;

/// domain (foreign domains refused, MI reload), group (403 outside "pstn", regular
/// expression groups, Credentials), uri_db (check_to, does_uri_exist), alias_db and
/// speeddial, provisioned with openserctl.
fn acl_body(kind: Kind) {
    let Some(e) = Engine::start(kind) else { return };
    for a in [
        &["add", "alice@127.0.0.1", "alicepw"][..],
        &["add", "bob@127.0.0.1", "bobpw"],
        &["domain", "add", "127.0.0.1"],
        &["acl", "grant", "alice@127.0.0.1", "pstn"],
        &["acl", "grant", "alice@127.0.0.1", "voicemail"],
        &["alias_db", "add", "sales@127.0.0.1", "sip:bob@127.0.0.1"],
        &[
            "speeddial",
            "add",
            "alice@127.0.0.1",
            "11@127.0.0.1",
            "sip:carol@example.org",
        ],
    ] {
        ctl(&e, None, a);
    }
    assert!(ctl(&e, None, &["acl", "show", "alice@127.0.0.1"]).contains("pstn"));
    assert!(ctl(&e, None, &["alias_db", "show", "sales@127.0.0.1"]).contains("bob"));
    assert!(ctl(&e, None, &["speeddial", "list", "alice@127.0.0.1"]).contains("carol"));
    match kind {
        Kind::Mysql => {
            e.my.as_ref().unwrap().sql(
                Some("openser"),
                "INSERT INTO re_grp (reg_exp, group_id) VALUES ('^sip:alice@', 7)",
            );
        }
        _ => {
            let out = std::process::Command::new("sqlite3")
                .arg(e.path())
                .arg("INSERT INTO re_grp (reg_exp, group_id) VALUES ('^sip:alice@', 7);")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    }
    let cfg = ACL_CFG
        .replace("{DBMOD}", e.module())
        .replace("{URL}", &e.url());
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    assert!(wait_fifo(s.dir.path()));
    let fifo = s.dir.file("openser_fifo");
    let c = Client::new();
    let p = s.port;
    let call = |user: &str, from: &str, id: &str| {
        ask(
            &s,
            &c,
            &req(
                "MESSAGE",
                &format!("sip:{user}@127.0.0.1:{p}"),
                from,
                &c,
                id,
                "",
            ),
        )
    };
    let alice = "sip:alice@127.0.0.1";
    // a foreign domain is refused
    let r = call("bob", "sip:mallory@foreign.example", "f1");
    assert_eq!(status(&r), "SIP/2.0 403 Foreign domain", "{r}");
    // group ACL
    let r = call("0049301234", alice, "g1");
    assert_eq!(status(&r), "SIP/2.0 200 PSTN allowed", "{r}");
    assert_eq!(header(&r, "X-G"), Some("7"), "{r}");
    let r = call("0049301234", "sip:bob@127.0.0.1", "g2");
    assert_eq!(status(&r), "SIP/2.0 403 Not in pstn", "{r}");
    ctl(&e, None, &["acl", "revoke", "alice@127.0.0.1", "pstn"]);
    let r = call("0049301234", alice, "g3");
    assert_eq!(status(&r), "SIP/2.0 403 Not in pstn", "{r}");
    // speed dial, alias, user existence
    let r = call("11", alice, "sd1");
    assert_eq!(header(&r, "X-RURI"), Some("sip:carol@example.org"), "{r}");
    assert_eq!(
        status(&call("12", alice, "sd2")),
        "SIP/2.0 404 No speed dial"
    );
    let r = call("sales", alice, "al1");
    assert_eq!(header(&r, "X-RURI"), Some("sip:bob@127.0.0.1"), "{r}");
    assert_eq!(
        status(&call("alice", alice, "u1")),
        "SIP/2.0 200 User exists"
    );
    assert_eq!(
        status(&call("nobody", alice, "u2")),
        "SIP/2.0 404 Not Found"
    );

    // MI domain_reload picks up a domain added to the table
    ctl(&e, None, &["domain", "add", "new.example"]);
    let newd = "sip:carol@new.example";
    assert_eq!(
        status(&call("alice", newd, "d1")),
        "SIP/2.0 403 Foreign domain"
    );
    let dump = ctl(&e, Some(&fifo), &["domain", "show"]);
    assert!(
        dump.contains("127.0.0.1") && !dump.contains("new.example"),
        "{dump}"
    );
    ctl(&e, Some(&fifo), &["domain", "reload"]);
    assert_eq!(
        status(&call("alice", newd, "d2")),
        "SIP/2.0 200 User exists"
    );
    let dump = mi(s.dir.path(), "domain_dump", &[]);
    assert!(dump.contains("new.example"), "{dump}");
    ctl(&e, None, &["domain", "rm", "new.example"]);
    assert_eq!(
        mi(s.dir.path(), "domain_reload", &[]).lines().next(),
        Some("200 OK")
    );
    assert_eq!(
        status(&call("alice", newd, "d3")),
        "SIP/2.0 403 Foreign domain"
    );

    // check_to and the Credentials source after digest authentication (a fresh
    // nonce for each REGISTER)
    let register = |cseq: u32, to: &str| {
        let nonce = super::mysql_seed::alice_nonce(&s, &c);
        let authz = super::mysql_seed::alice_authz(p, &nonce, "alicepw");
        let reg = super::mysql_seed::alice_register(&c, p, cseq, 600, &authz)
            .replace("To: <sip:alice@", &format!("To: <sip:{to}@"));
        ask(&s, &c, &reg)
    };
    assert_eq!(status(&register(2, "alice")), "SIP/2.0 200 OK");
    assert_eq!(status(&register(3, "bob")), "SIP/2.0 403 Spoofed To");
    ctl(&e, None, &["acl", "revoke", "alice@127.0.0.1"]);
    assert_eq!(status(&register(4, "alice")), "SIP/2.0 403 No voicemail");
    s.stop();
}

#[test]
fn userdb_mysql_domain_group_uri_alias_speeddial() {
    acl_body(Kind::Mysql);
}

#[test]
fn userdb_sqlite_domain_group_uri_alias_speeddial() {
    acl_body(Kind::Sqlite);
}

/// A bad regular expression in an avpops operation stops the server at start-up with
/// its file:line:col; the same config with a good one starts.
#[test]
fn avpops_bad_static_regex_is_a_startup_error() {
    let dir = TempDir::new("avpre");
    let cfg = |re: &str| {
        format!(
            "listen=udp:127.0.0.1:5060\nloadmodule \"avpops.so\"\nroute {{\n    \
             if (avp_check(\"$avp(s:u)\", \"re/{re}/g\")) {{ exit; }}\n    \
             avp_subst(\"$avp(s:u)\", \"/^(a)b/\\1/\");\n}}\n"
        )
    };
    let p = dir.file("bad.cfg");
    std::fs::write(&p, cfg("sip:(.*@x")).unwrap();
    let ps = p.display().to_string();
    let (rc, _, err) = run(&["-c", "-f", &ps]);
    assert_ne!(rc, 0, "{err}");
    assert!(
        err.contains(&format!("{ps}:4:19: ")) && err.contains("bad regular expression"),
        "{err}"
    );
    std::fs::write(&p, cfg("sip:.*@x")).unwrap();
    let (rc, _, err) = run(&["-c", "-f", &ps]);
    assert_eq!(rc, 0, "{err}");
}

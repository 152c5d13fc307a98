//! permissions: rule files (allow_routing, allow_register, allow_uri) through the real
//! binary, malformed files refused at start-up with file:line, and allow_trusted
//! against a private MariaDB (cached with MI trusted_reload/trusted_dump, and
//! uncached), a trusted gateway skipping authentication.

use crate::harness::mariadb::MariaDb;
use crate::harness::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A UDP socket on `ip` (any address of 127.0.0.0/8 works on Linux).
pub fn sock_on(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind loopback address");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// A request from socket `s` (its own address in the Via and Contact).
pub fn req_from(
    s: &UdpSocket,
    method: &str,
    ruri: &str,
    from: &str,
    callid: &str,
    extra: &str,
) -> String {
    let a = s.local_addr().unwrap();
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {a};branch=z9hG4bK{callid}\r\n\
         From: <{from}>;tag=f{callid}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {callid}\r\n\
         CSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
}

/// Send `msg` and return the status line of the reply (empty on timeout).
pub fn ask(s: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    s.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = vec![0u8; 65536];
    match crate::harness::recv_from(s, &mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Err(_) => String::new(),
    }
}

fn rule_files(dir: &TempDir) {
    std::fs::write(
        dir.file("perm.allow"),
        "# gateways may be called by alice only\n\
         \"^sip:alice@\" : \"^sip:\\+?1[0-9]+@\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.file("perm.deny"),
        "ALL : \"^sip:\\+?1[0-9]+@\"   # nobody else\n",
    )
    .unwrap();
    std::fs::write(
        dir.file("register.deny"),
        "ALL : \"^sip:.*@10\\.0\\.0\\.1$\" EXCEPT \"^sip:gw@\"\n",
    )
    .unwrap();
}

const RULES_CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=1
loadmodule "sl.so"
loadmodule "permissions.so"
modparam("permissions", "check_all_branches", 0)
route {
    if (method == "REGISTER") {
        if (allow_register("{RULES}/register")) { sl_send_reply("200", "Register OK"); }
        else { sl_send_reply("403", "Register Forbidden"); };
        exit;
    };
    if ($rU == "uri") {
        $avp(s:dest) = "sip:100@gw.example.com";
        if (allow_uri("{RULES}/perm", "$avp(s:dest)")) { sl_send_reply("200", "URI OK"); }
        else { sl_send_reply("403", "URI Forbidden"); };
        exit;
    };
    if (allow_routing("{RULES}/perm.allow", "{RULES}/perm.deny")) {
        sl_send_reply("200", "Routing OK");
    } else {
        sl_send_reply("403", "Routing Forbidden");
    };
}
"#;

#[test]
fn rule_files_decide_routing_and_registration() {
    let rules = TempDir::new("rules");
    rule_files(&rules);
    let cfg = RULES_CFG.replace("{RULES}", &rules.path().display().to_string());
    let s = Server::start(&cfg, &[]);
    let c = sock_on("127.0.0.1");
    let inv = |ruri: &str, from: &str, id: &str| req_from(&c, "INVITE", ruri, from, id, "");
    let gw = "sip:+15551234@gw.example.com";
    assert_eq!(
        ask(&c, s.addr(), &inv(gw, "sip:alice@example.com", "r1")),
        "SIP/2.0 200 Routing OK"
    );
    assert_eq!(
        ask(&c, s.addr(), &inv(gw, "sip:bob@example.com", "r2")),
        "SIP/2.0 403 Routing Forbidden"
    );
    assert_eq!(
        ask(
            &c,
            s.addr(),
            &inv("sip:carol@example.com", "sip:bob@example.com", "r3")
        ),
        "SIP/2.0 200 Routing OK",
        "neither file matches: allowed"
    );
    // allow_uri: the pair (From, $avp(s:dest))
    assert_eq!(
        ask(
            &c,
            s.addr(),
            &inv("sip:uri@x", "sip:alice@example.com", "u1")
        ),
        "SIP/2.0 200 URI OK"
    );
    assert_eq!(
        ask(&c, s.addr(), &inv("sip:uri@x", "sip:bob@example.com", "u2")),
        "SIP/2.0 403 URI Forbidden"
    );
    // allow_register: (To, each Contact)
    let reg = |contact: &str, id: &str| {
        req_from(
            &c,
            "REGISTER",
            "sip:bob@example.com",
            "sip:bob@example.com",
            id,
            &format!("Contact: <{contact}>\r\n"),
        )
    };
    assert_eq!(
        ask(&c, s.addr(), &reg("sip:bob@192.0.2.7", "g1")),
        "SIP/2.0 200 Register OK"
    );
    assert_eq!(
        ask(&c, s.addr(), &reg("sip:bob@10.0.0.1", "g2")),
        "SIP/2.0 403 Register Forbidden"
    );
    assert_eq!(
        ask(&c, s.addr(), &reg("sip:gw@10.0.0.1", "g3")),
        "SIP/2.0 200 Register OK",
        "EXCEPT"
    );
}

/// A config using rule files that are broken: `-c` fails naming file:line.
#[test]
fn malformed_rule_files_are_startup_errors() {
    for (text, line, what) in [
        ("ALL : ALL\n\n\"^sip:a@\" \"^sip:b@\"\n", 3, "missing ':'"),
        ("# ok\n\"^sip:(\" : ALL\n", 2, "bad regular expression"),
        ("ALL : \"^sip:1\n", 1, "unterminated quote"),
    ] {
        let dir = TempDir::new("badrules");
        std::fs::write(dir.file("bad.allow"), text).unwrap();
        let cfg_path = dir.file("openser.cfg");
        std::fs::write(
            &cfg_path,
            "listen=udp:127.0.0.1:5999\nloadmodule \"sl.so\"\nloadmodule \"permissions.so\"\n\
             route {\n    if (!allow_routing(\"bad\")) { drop; };\n}\n",
        )
        .unwrap();
        let (rc, _, err) = run(&["-c", "-f", &cfg_path.display().to_string()]);
        assert_ne!(rc, 0, "{text:?} accepted: {err}");
        // relative names are in the config's directory
        let loc = format!("{}:{line}: ", dir.file("bad.allow").display());
        assert!(err.contains(&loc) && err.contains(what), "{text:?}: {err}");
        assert!(
            err.contains("openser.cfg:5:"),
            "the call's position too: {err}"
        );
    }
    // the default files, checked when allow_routing() is used without arguments
    let dir = TempDir::new("baddefault");
    std::fs::write(dir.file("permissions.allow"), "ALL : ALL\n").unwrap();
    std::fs::write(dir.file("permissions.deny"), "oops\n").unwrap();
    let cfg_path = dir.file("openser.cfg");
    std::fs::write(
        &cfg_path,
        "listen=udp:127.0.0.1:5999\nloadmodule \"permissions.so\"\nroute {\n allow_routing();\n}\n",
    )
    .unwrap();
    let (rc, _, err) = run(&["-c", "-f", &cfg_path.display().to_string()]);
    assert_ne!(rc, 0);
    assert!(err.contains("permissions.deny:1: "), "{err}");
}

fn trusted_cfg(url: &str, db_mode: u32) -> String {
    format!(
        r#"
listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "mysql.so"
loadmodule "sl.so"
loadmodule "mi_fifo.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "permissions.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("auth_db", "db_url", "{url}")
modparam("permissions", "db_url", "{url}")
modparam("permissions", "db_mode", {db_mode})
modparam("permissions", "peer_tag_avp", "$avp(s:peer)")
route {{
    if ($rU == "addr") {{
        if (allow_source_address("1")) {{ sl_send_reply("200", "Address OK"); exit; }};
        set_address_group("$hdr(X-Group)");
        if (allow_address("$si", "$sp")) {{ sl_send_reply("200", "Group Address OK"); exit; }};
        sl_send_reply("403", "Address Denied");
        exit;
    }};
    if (!allow_trusted()) {{
        if (!proxy_authorize("example.com", "subscriber")) {{
            proxy_challenge("example.com", "0");
            exit;
        }};
        sl_send_reply("200", "Authenticated");
        exit;
    }};
    if ($avp(s:peer) == "gw1") {{ sl_send_reply("200", "Trusted gw1"); exit; }};
    sl_send_reply("200", "Trusted");
}}
"#
    )
}

fn trusted_db() -> Option<MariaDb> {
    let db = MariaDb::start()?;
    db.create_openser_db();
    db.sql(
        Some("openser"),
        "INSERT INTO trusted (src_ip, proto, from_pattern, tag) VALUES \
         ('127.0.0.2', 'any', NULL, 'gw1'), \
         ('127.0.0.4', 'udp', '^sip:.*@carrier\\\\.net$', NULL);\
         INSERT INTO address (grp, ip_addr, mask, port) VALUES \
         (1, '127.0.0.6', 32, 0), (2, '127.0.7.0', 24, 0);",
    );
    Some(db)
}

#[test]
fn trusted_cache_and_mi_reload() {
    let Some(db) = trusted_db() else { return };
    let url = db.url("openser", "openserrw", "openser");
    let s = Server::start(&trusted_cfg(&url, 1), &[]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let inv = |ip: &str, from: &str, id: &str| {
        let c = sock_on(ip);
        ask(
            &c,
            s.addr(),
            &req_from(&c, "INVITE", "sip:+15551234@example.com", from, id, ""),
        )
    };
    // a trusted gateway: no authentication, its tag in the AVP
    assert_eq!(
        inv("127.0.0.2", "sip:pstn@gw", "t1"),
        "SIP/2.0 200 Trusted gw1"
    );
    // the pattern row: From must match
    assert_eq!(
        inv("127.0.0.4", "sip:x@carrier.net", "t2"),
        "SIP/2.0 200 Trusted"
    );
    assert_eq!(
        inv("127.0.0.4", "sip:x@other.net", "t3"),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    // anyone else is challenged
    assert_eq!(
        inv("127.0.0.3", "sip:x@carrier.net", "t4"),
        "SIP/2.0 407 Proxy Authentication Required"
    );

    // the address table: group 1 = 127.0.0.6, group 2 = 127.0.7.0/24
    let addr = |ip: &str, grp: &str, id: &str| {
        let c = sock_on(ip);
        ask(
            &c,
            s.addr(),
            &req_from(
                &c,
                "OPTIONS",
                "sip:addr@127.0.0.1",
                "sip:a@b",
                id,
                &format!("X-Group: {grp}\r\n"),
            ),
        )
    };
    assert_eq!(addr("127.0.0.6", "9", "a1"), "SIP/2.0 200 Address OK");
    assert_eq!(addr("127.0.7.9", "2", "a2"), "SIP/2.0 200 Group Address OK");
    assert_eq!(addr("127.0.7.9", "1", "a3"), "SIP/2.0 403 Address Denied");
    assert_eq!(addr("127.0.8.9", "2", "a4"), "SIP/2.0 403 Address Denied");
    let d = mi(&dir, "address_dump", &[]);
    assert!(d.contains("<1, 127.0.0.6, 0>"), "{d}");
    let d = mi(&dir, "subnet_dump", &[]);
    assert!(d.contains("<2, 127.0.7.0, 24, 0>"), "{d}");
    db.sql(
        Some("openser"),
        "INSERT INTO address (grp, ip_addr, mask, port) VALUES (1, '127.0.8.9', 32, 0);",
    );
    assert!(mi(&dir, "address_reload", &[]).starts_with("200"));
    assert_eq!(addr("127.0.8.9", "2", "a5"), "SIP/2.0 200 Address OK");

    // a new row (openserctl trusted add): not seen until trusted_reload
    let rc = dir.join("openserctlrc");
    std::fs::write(
        &rc,
        format!(
            "DBENGINE=MYSQL\nDBSOCKET='{}'\nDBNAME=openser\nDBRWUSER=openser\nDBRWPW=openserrw\n\
             OSER_FIFO='{}'\nREPLY_DIR='{}'\n",
            db.socket().display(),
            dir.join("openser_fifo").display(),
            dir.display()
        ),
    )
    .unwrap();
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new("sh")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openserctl"))
            .args(args)
            .env("OPENSERCTLRC", &rc)
            .env("HOME", &dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "openserctl {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    ctl(&["trusted", "add", "127.0.0.3", "udp", "", "gw3"]);
    assert!(ctl(&["trusted", "show"]).contains("127.0.0.3\tudp\tNULL\tgw3"));
    assert_eq!(
        inv("127.0.0.3", "sip:x@y", "t5"),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    let r = ctl(&["trusted", "reload"]);
    assert!(r.starts_with("200 OK"), "{r}");
    // every receiver picks the new snapshot up
    for i in 0..6 {
        assert_eq!(
            inv("127.0.0.3", "sip:x@y", &format!("t6{i}")),
            "SIP/2.0 200 Trusted",
            "try {i}"
        );
    }
    let d = mi(&dir, "trusted_dump", &[]);
    assert!(d.contains("<127.0.0.2, any, NULL, gw1>"), "{d}");
    assert!(d.contains("<127.0.0.3, udp, NULL, gw3>"), "{d}");
    assert!(d.contains("^sip:.*@carrier\\.net$"), "{d}");

    // a removed row goes at the next reload
    ctl(&["trusted", "rm", "127.0.0.2"]);
    assert!(mi(&dir, "trusted_reload", &[]).starts_with("200 OK"));
    assert_eq!(
        inv("127.0.0.2", "sip:pstn@gw", "t7"),
        "SIP/2.0 407 Proxy Authentication Required"
    );
}

#[test]
fn trusted_without_cache_reads_the_table_each_time() {
    let Some(db) = trusted_db() else { return };
    let url = db.url("openser", "openserrw", "openser");
    let s = Server::start(&trusted_cfg(&url, 0), &[]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let c = sock_on("127.0.0.5");
    let inv = |id: &str| {
        ask(
            &c,
            s.addr(),
            &req_from(&c, "INVITE", "sip:1@example.com", "sip:a@b", id, ""),
        )
    };
    assert_eq!(inv("n1"), "SIP/2.0 407 Proxy Authentication Required");
    db.sql(Some("openser"), "INSERT INTO trusted (src_ip, proto, from_pattern, tag) VALUES ('127.0.0.5', 'any', NULL, NULL);");
    assert_eq!(inv("n2"), "SIP/2.0 200 Trusted");
    // no cache, nothing to reload
    let r = mi(&dir, "trusted_reload", &[]);
    assert!(r.starts_with("400"), "{r}");
}

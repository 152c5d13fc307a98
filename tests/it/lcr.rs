//! lcr (issue 15): gateways and rules in MariaDB; the order calls try the gateways
//! (longest prefix, then priority), failover on a timeout and on 503 through
//! failure_route and `next_gw`, the gateway's strip and prefix, `from_gw`/`to_gw`, the
//! MI commands, and serial forking by q with `load_contacts`/`next_contacts`.

use crate::harness::*;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

/// A SIPp UAS running scenario `file` on `ip` (a loopback address) and a free port.
pub fn sipp_uas_on(dir: &Path, file: &str, ip: &str) -> (Sipp, u16) {
    let port = free_udp_port();
    let uas = sipp_spawn(
        dir,
        &[
            "-sf".into(),
            scenario(file),
            "-i".into(),
            ip.into(),
            "-p".into(),
            port.to_string(),
        ],
    );
    let end = Instant::now() + Duration::from_secs(20);
    while UdpSocket::bind((ip, port)).is_ok() {
        assert!(Instant::now() < end, "SIPp UAS did not bind {ip}:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (uas, port)
}

/// The gateways: 127.0.0.2 answers 503, 127.0.0.3 answers calls, 127.0.0.4 is silent.
pub struct Gateways {
    pub _bad: Sipp,
    pub _good: Sipp,
    pub silent: UdpSocket,
    pub p503: u16,
    pub pok: u16,
    pub psil: u16,
}

pub fn gateways(dir: &Path) -> Gateways {
    let (bad, p503) = sipp_uas_on(dir, "uas_503.xml", "127.0.0.2");
    let (good, pok) = sipp_uas_on(dir, "uas.xml", "127.0.0.3");
    let silent = UdpSocket::bind("127.0.0.4:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let psil = silent.local_addr().unwrap().port();
    Gateways {
        _bad: bad,
        _good: good,
        silent,
        p503,
        pok,
        psil,
    }
}

/// Rows: three gateways in three groups; numbers 49… go to group 1 (priority 1) and
/// group 2 (priority 2), 4930… to group 3 first (longer prefix). The good gateway
/// strips two digits and puts `0` in front.
pub fn provision(db: &mariadb::MariaDb, g: &Gateways) {
    db.sql(
        Some("openser"),
        &format!(
            "INSERT INTO gw (gw_name, grp_id, ip_addr, port, uri_scheme, transport, strip, prefix) VALUES \
             ('busy', 1, '127.0.0.2', {}, 1, 1, 0, NULL), \
             ('good', 2, '127.0.0.3', {}, NULL, NULL, 2, '0'), \
             ('silent', 3, '127.0.0.4', {}, 1, NULL, 0, NULL); \
             INSERT INTO gw_grp (grp_id, grp_name) VALUES (1, 'busy'), (2, 'good'), (3, 'silent'); \
             INSERT INTO lcr (prefix, from_uri, grp_id, priority) VALUES \
             ('49', NULL, 1, 1), ('49', '', 2, 2), ('4930', NULL, 3, 1), \
             ('33', '^sip:vip@', 2, 1)",
            g.p503, g.pok, g.psil
        ),
    );
}

fn cfg(url: &str, qa: u16, qb: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=3
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "mi_fifo.so"
loadmodule "mysql.so"
loadmodule "lcr.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("tm", "fr_timer", 2)
modparam("tm", "wt_timer", 1)
modparam("lcr", "db_url", "{url}")
route {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "MESSAGE") {{
        if (from_gw()) {{
            append_to_reply("X-From-Gw: yes\r\n");
        }}
        if (from_gw("3")) {{
            append_to_reply("X-From-Gw3: yes\r\n");
        }}
        if (to_gw()) {{
            append_to_reply("X-To-Gw: yes\r\n");
        }}
        sl_send_reply("200", "OK");
        exit;
    }}
    if ($rU == "qfork") {{
        # serial forking by q: qb (0.9) first, then the R-URI (qa, q unspecified)
        rewritehostport("127.0.0.1:{qa}");
        append_branch("sip:qfork@127.0.0.1:{qb}", "0.9");
        load_contacts();
        next_contacts();
        xlog("L_INFO", "Q-TRY $ru\n");
        t_on_failure("2");
        t_relay();
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
        if (!load_gws()) {{
            sl_send_reply("500", "Cannot load gateways");
            exit;
        }}
        if (!next_gw()) {{
            sl_send_reply("404", "No gateway");
            exit;
        }}
        xlog("L_INFO", "LCR-TRY $ru\n");
        t_on_failure("1");
    }}
    t_relay();
}}
failure_route[2] {{
    if (next_contacts()) {{
        xlog("L_INFO", "Q-TRY $ru after $T_reply_code fr_inv $avp(s:fr_inv_timer_avp)\n");
        t_relay();
    }}
}}
failure_route[1] {{
    if (t_check_status("5[0-9][0-9]|408")) {{
        if (next_gw()) {{
            xlog("L_INFO", "LCR-TRY $ru after $T_reply_code\n");
            t_on_failure("1");
            t_relay();
        }}
    }}
}}
"#
    )
}

/// One SIPp call (uac.xml) to `user`; its success.
fn call(dir: &Path, port: u16, user: &str) -> bool {
    sipp_run(
        dir,
        &[
            "-sf".into(),
            scenario("uac.xml"),
            format!("127.0.0.1:{port}"),
            "-s".into(),
            user.into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            "1".into(),
        ],
    )
    .status
    .success()
}

fn tries(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("LCR-TRY ").map(|(_, t)| t.to_string()))
        .collect()
}

#[test]
fn prefix_priority_and_failover_follow_the_tables() {
    if !require("sipp") {
        return;
    }
    let Some(db) = mariadb::MariaDb::start() else {
        return;
    };
    db.create_openser_db();
    let dir = TempDir::new("lcr");
    let g = gateways(dir.path());
    provision(&db, &g);
    let (qa, qb) = (Client::new(), Client::new());
    let mut s = Server::start(
        &cfg(
            &db.url("openser", "openserrw", "openser"),
            qa.port(),
            qb.port(),
        ),
        &[],
    );
    assert!(wait_fifo(s.dir.path()));

    // 4930…: group 3 (longest prefix, silent: 408), then group 1 (priority 1: 503),
    // then group 2 (priority 2), which answers; strip 2 and prefix 0 there.
    assert!(call(dir.path(), s.port, "4930555"), "{}", s.log());
    let mut buf = [0u8; 4096];
    let (n, _) = g.silent.recv_from(&mut buf).expect("silent gateway tried");
    assert!(buf[..n].starts_with(b"INVITE sip:4930555@127.0.0.4:"));
    let t = tries(&s.log());
    assert_eq!(
        t,
        [
            format!("sip:4930555@127.0.0.4:{}", g.psil),
            format!("sip:4930555@127.0.0.2:{};transport=udp after 408", g.p503),
            format!("sip:030555@127.0.0.3:{} after 503", g.pok),
        ],
        "{}",
        s.log()
    );

    // 4940…: no group 3; 1 before 2.
    assert!(call(dir.path(), s.port, "4940111"));
    let t = tries(&s.log());
    assert_eq!(
        t[3..],
        [
            format!("sip:4940111@127.0.0.2:{};transport=udp", g.p503),
            format!("sip:040111@127.0.0.3:{} after 503", g.pok),
        ]
    );

    // 33…: only for callers whose From matches ^sip:vip@ (uac.xml calls as sipp@…).
    let c = Client::new();
    c.send(
        s.addr(),
        &request(
            "INVITE",
            &format!("sip:3312@127.0.0.1:{}", s.port),
            c.port(),
            "lcr-33",
            1,
            "",
        ),
    );
    let r = c
        .recv_matching("404")
        .expect("no gateway for 33 from a non-VIP");
    assert!(r.contains("No gateway"));

    // from_gw / to_gw: by IP (and group).
    let from_good = UdpSocket::bind("127.0.0.3:0").unwrap();
    from_good
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let fp = from_good.local_addr().unwrap().port();
    from_good
        .send_to(
            request("MESSAGE", "sip:x@127.0.0.2", fp, "lcr-m1", 1, "").as_bytes(),
            s.addr(),
        )
        .unwrap();
    let (n, _) = recv_from(&from_good, &mut buf).expect("reply");
    let r = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(header(&r, "X-From-Gw"), Some("yes"), "{r}");
    assert_eq!(header(&r, "X-From-Gw3"), None, "{r}");
    assert_eq!(header(&r, "X-To-Gw"), Some("yes"), "{r}");
    c.send(
        s.addr(),
        &request("MESSAGE", "sip:x@127.0.0.9", c.port(), "lcr-m2", 1, ""),
    );
    let r = c.recv_matching("200").unwrap();
    assert_eq!(header(&r, "X-From-Gw"), None, "{r}");
    assert_eq!(header(&r, "X-To-Gw"), None, "{r}");

    // MI: the dump shows the tables; a reload picks up a new rule.
    let d = mi(s.dir.path(), "lcr_dump", &[]);
    assert!(d.contains(&format!("URI=sip:127.0.0.3:{}", g.pok)), "{d}");
    assert!(d.contains("PREFIX=4930"), "{d}");
    db.sql(
        Some("openser"),
        "INSERT INTO lcr (prefix, from_uri, grp_id, priority) VALUES ('44', NULL, 2, 1)",
    );
    let r = mi(s.dir.path(), "lcr_reload", &[]);
    assert!(r.starts_with("200"), "{r}");
    assert!(
        mi(s.dir.path(), "lcr_dump", &[]).contains("PREFIX=44 "),
        "reloaded"
    );
    assert!(call(dir.path(), s.port, "44777"));
    assert_eq!(
        tries(&s.log()).last().unwrap(),
        &format!("sip:0777@127.0.0.3:{}", g.pok)
    );

    // load_contacts/next_contacts: the higher q first, the next q group after a 486
    let caller = Client::new();
    caller.send(
        s.addr(),
        &request(
            "INVITE",
            "sip:qfork@example.com",
            caller.port(),
            "lcr-q",
            1,
            "",
        ),
    );
    let (m, from) = qb.recv().expect("q 0.9 first");
    assert!(
        m.starts_with(&format!("INVITE sip:qfork@127.0.0.1:{} ", qb.port())),
        "{m}"
    );
    assert!(
        qa.recv_timeout(Duration::from_millis(300)).is_none(),
        "serial, not parallel"
    );
    qb.send(from, &reply(&m, 486, "Busy Here"));
    let (m, from) = qa.recv().expect("then the R-URI");
    assert!(
        m.starts_with(&format!("INVITE sip:qfork@127.0.0.1:{} ", qa.port())),
        "{m}"
    );
    qa.send(from, &reply(&m, 200, "OK"));
    assert!(caller.recv_matching("200").is_some());
    let log = s.log();
    let q: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("Q-TRY ").map(|(_, t)| t))
        .collect();
    assert_eq!(
        q,
        [
            format!("sip:qfork@127.0.0.1:{}", qb.port()),
            format!("sip:qfork@127.0.0.1:{} after 486 fr_inv 90", qa.port()),
        ],
        "{log}"
    );
    assert!(s.stop().success());
}

/// A reply to `req` with a To-tag.
fn reply(req: &str, code: u16, reason: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, n) {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    s.push_str(&format!(
        "To: {};tag=q{code}\r\nContent-Length: 0\r\n\r\n",
        header(req, "To").unwrap_or("")
    ));
    s
}

//! uac remote registration (issue 22, Kamailio's `uac_reg`): records from SQLite; a
//! SIPp UAS is the upstream registrar of one (401 challenge, a 4 s registration, the
//! refresh before it ends, challenged again); a UDP socket of this test is the
//! registrar of another and answers 403 (the record fails and is not retried in a
//! loop); MI `uac.reg_dump` shows both; an INVITE to our Contact of the first is
//! routed by `uac_reg_lookup` to its local user.

use super::uac::{expect, reply_to};
use crate::harness::engines::{Engine, Kind};
use crate::harness::*;
use std::process::Command;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "db_sqlite.so"
loadmodule "uac.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("uac", "from_restore_mode", "none")
modparam("uac", "reg_db_url", "{URL}")
modparam("uac", "reg_contact_addr", "127.0.0.1:{PORT}")
modparam("uac", "reg_timer_interval", 1)
modparam("uac", "reg_retry_interval", 30)
route {
    if (uac_reg_lookup("$rU", "$ru")) {
        forward();
        exit;
    }
    sl_send_reply("404", "Not here");
}
"#;

fn sql(db: &Engine, statement: &str) {
    let out = Command::new("sqlite3")
        .arg(db.path())
        .arg(statement)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `record` node of `uuid` in a `uac.reg_dump` answer.
fn record_line<'a>(dump: &'a str, uuid: &str) -> &'a str {
    dump.lines()
        .find(|l| l.contains(&format!("l_uuid={uuid} ")))
        .unwrap_or("")
}

#[test]
fn registers_upstream_with_digest_refreshes_and_routes_incoming_calls() {
    if !require("sipp") || !require("sqlite3") {
        return;
    }
    let Some(db) = Engine::start(Kind::Sqlite) else {
        return;
    };
    let dir = TempDir::new("uac-reg");
    // the upstream registrar of record "u100": SIPp, one call (one Call-ID)
    let sipp_port = free_udp_port();
    let mut sipp = owned("sipp")
        .args([
            "-sf",
            &scenario("uac_reg_registrar.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            &sipp_port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sipp");
    assert!(
        wait_udp_bound(sipp_port, Duration::from_secs(20)),
        "SIPp did not bind"
    );
    // the upstream of record "u200" refuses; the local user of "u100"
    let refuser = Client::new();
    let alice = Client::new();
    sql(
        &db,
        &format!(
            "INSERT INTO uacreg (l_uuid, l_username, l_domain, r_username, r_domain, realm, \
             auth_username, auth_password, auth_proxy, expires) VALUES \
             ('u100', 'alice', '127.0.0.1:{}', 'acc1', '127.0.0.1:{sipp_port}', 'up.example', \
              'acc1', 's3cret', '', 30), \
             ('u200', 'bob', 'local.test', 'acc2', 'up2.example', '', 'acc2', 'pw', \
              'sip:127.0.0.1:{}', 0);",
            alice.port(),
            refuser.port()
        ),
    );
    let s = Server::start(&CFG.replace("{URL}", &db.url()), &[]);
    let sdir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&sdir), "{}", s.log());

    // u200: its REGISTER goes to the auth_proxy; a 403 fails it, without a retry
    let (reg, from) = expect(&refuser, "REGISTER sip:up2.example", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no REGISTER for u200; log:\n{}", s.log()));
    assert_eq!(
        header(&reg, "Contact"),
        Some(format!("<sip:u200@127.0.0.1:{}>", s.addr().port()).as_str()),
        "{reg}"
    );
    assert_eq!(header(&reg, "Expires"), Some("3600"), "{reg}");
    assert!(
        header(&reg, "From").is_some_and(|f| f.starts_with("<sip:acc2@up2.example>;tag=")),
        "{reg}"
    );
    refuser.send(from, &reply_to(&reg, 403, "Forbidden", "r1", ""));

    // u100: SIPp's scenario ends well only after the challenged registration, the
    // refresh before the 4 s ran out and its own challenge
    let status = wait_child(&mut sipp, Duration::from_secs(20));
    if status.is_none() {
        stop_child(&mut sipp, 9, Duration::from_secs(1));
    }
    let errors = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        status.is_some_and(|st| st.success()),
        "SIPp registrar scenario failed ({status:?}): {errors}\nlog:\n{}",
        s.log()
    );

    // nothing more came for u200 (retry after 30 s, not in a loop)
    assert!(
        refuser.recv_timeout(Duration::from_millis(500)).is_none(),
        "u200 retried at once"
    );
    let dump = mi(&sdir, "uac.reg_dump", &[]);
    let u100 = record_line(&dump, "u100");
    let u200 = record_line(&dump, "u200");
    assert!(u100.contains("state=registered"), "{dump}");
    assert!(u100.contains("granted=60"), "{dump}");
    assert!(u100.contains("last_code=200"), "{dump}");
    assert!(u100.contains("cseq=4"), "{dump}");
    assert!(!dump.contains("s3cret"), "{dump}");
    assert!(u200.contains("state=failed"), "{dump}");
    assert!(u200.contains("last_code=403"), "{dump}");
    // its retry is reg_retry_interval (30 s) after the 403, a few seconds ago
    let next: u64 = u200
        .split_whitespace()
        .find_map(|w| w.strip_prefix("next="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((15..=30).contains(&next), "{dump}");
    assert!(
        record_line(&mi(&sdir, "uac_reg_dump", &[]), "u100").contains("state=registered"),
        "the 1.x alias"
    );
    let info = mi(&sdir, "uac.reg_info", &["l_uuid", "u200"]);
    assert!(
        info.contains("state=failed") && !info.contains("u100"),
        "{info}"
    );
    assert!(mi(&sdir, "uac.reg_info", &["l_uuid", "nope"]).starts_with("404"));

    // an incoming call to our Contact of u100 reaches its local user
    let caller = Client::new();
    caller.send(
        s.addr(),
        &request(
            "INVITE",
            &format!("sip:u100@127.0.0.1:{}", s.addr().port()),
            caller.port(),
            "uacreg-in-1",
            1,
            "",
        ),
    );
    let (inv, _) = expect(&alice, "INVITE", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("INVITE not routed to alice; log:\n{}", s.log()));
    assert!(
        inv.starts_with(&format!(
            "INVITE sip:alice@127.0.0.1:{} SIP/2.0",
            alice.port()
        )),
        "{inv}"
    );
    // an unknown one is not
    caller.send(
        s.addr(),
        &request(
            "INVITE",
            &format!("sip:u999@127.0.0.1:{}", s.addr().port()),
            caller.port(),
            "uacreg-in-2",
            1,
            "",
        ),
    );
    assert!(
        expect(&caller, "404", Duration::from_secs(5)).is_some(),
        "{}",
        s.log()
    );

    // reg_refresh reloads the table: u200 dropped, u300 registered
    sql(
        &db,
        &format!(
            "DELETE FROM uacreg WHERE l_uuid = 'u200'; INSERT INTO uacreg (l_uuid, l_username, \
             l_domain, r_username, r_domain, auth_proxy) VALUES ('u300', 'carol', 'local.test', \
             'acc3', 'up3.example', 'sip:127.0.0.1:{}');",
            refuser.port()
        ),
    );
    let r = mi(&sdir, "uac.reg_refresh", &[]);
    assert!(r.starts_with("200"), "{r}");
    let (reg, _) = expect(&refuser, "REGISTER sip:up3.example", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no REGISTER for u300; log:\n{}", s.log()));
    assert!(reg.contains("<sip:u300@127.0.0.1:"), "{reg}");
    let dump = mi(&sdir, "uac.reg_dump", &[]);
    assert!(!dump.contains("l_uuid=u200"), "{dump}");
    assert!(
        record_line(&dump, "u300").contains("state=registering"),
        "{dump}"
    );
    assert!(
        record_line(&dump, "u100").contains("state=registered"),
        "{dump}"
    );
}

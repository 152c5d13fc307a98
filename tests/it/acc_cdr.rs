//! acc CDRs from dialogs (issue 22): a dialog-tracked call carrying `cdr_flag` gives one
//! CDR when it ends — by the caller's BYE or by its timeout — in the log and in
//! `acc_cdrs` (SQLite), with its times, duration, Call-ID and a `cdr_extra` value read
//! from `$dlg_var`; a call without the flag gives none.

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;
use std::process::Command;
use std::time::Duration;

fn cfg(uas_port: u16, db_url: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
loadmodule "db_sqlite.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "mi_fifo.so"
loadmodule "dialog.so"
loadmodule "acc.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("dialog", "dlg_flag", 4)
modparam("dialog", "default_timeout", 3600)
modparam("dialog", "timeout_avp", "$avp(i:10)")
modparam("acc", "cdr_flag", 5)
modparam("acc", "cdr_extra", "who=$dlg_var(who)")
modparam("acc", "db_url", "{db_url}")
modparam("acc", "cdrs_table", "acc_cdrs")
route {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
        setflag(4);
        if ($rU != "nocdr") {{
            setflag(5);
        }}
        $dlg_var(who) = $fU;
        if ($rU == "short") {{
            $avp(i:10) = 1;
        }}
        rewritehostport("127.0.0.1:{uas_port}");
        t_relay();
        exit;
    }}
    sl_send_reply("404", "Not here");
}}
"#
    )
}

/// A SIPp caller (`file`) calling `user` once with Call-ID `cid`, holding `hold_ms`.
fn call(dir: &std::path::Path, file: &str, port: u16, user: &str, cid: &str, hold_ms: u32) -> Sipp {
    sipp_spawn(
        dir,
        &[
            "-sf".into(),
            scenario(file),
            format!("127.0.0.1:{port}"),
            "-s".into(),
            user.into(),
            "-cid_str".into(),
            cid.into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            "1".into(),
            "-d".into(),
            hold_ms.to_string(),
            "-timeout".into(),
            "30".into(),
            "-timeout_error".into(),
        ],
    )
}

fn done(s: &mut Sipp, what: &str, log: &dyn Fn() -> String) {
    let st = wait_child(&mut s.0, Duration::from_secs(30));
    assert!(
        st.is_some_and(|s| s.success()),
        "{what} did not complete: {st:?}\n{}",
        log()
    );
}

/// The value of `key` in a `k=v;k=v` record.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_end())
}

#[test]
fn dialog_cdrs_to_the_log_and_the_database() {
    if !require("sipp") {
        return;
    }
    let Some(db) = Engine::start(Kind::Sqlite) else {
        return;
    };
    // the cdr_extra column
    let out = Command::new("sqlite3")
        .arg(db.path())
        .arg("ALTER TABLE acc_cdrs ADD COLUMN who VARCHAR(64);")
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = TempDir::new("acc-cdr");
    let (mut u, uport) = sipp_uas_with(dir.path(), "uas.xml", &["-m", "3"]);
    let s = Server::start(&cfg(uport, &db.url()), &[]);
    assert!(wait_fifo(s.dir.path()));
    // a 2 s call ended by the caller's BYE, a call without cdr_flag, and a call whose
    // dialog times out after 1 s (the proxy sends the BYEs)
    let mut held = call(
        dir.path(),
        "dlg_uac.xml",
        s.port,
        "cdr",
        "cdr-hold-%u",
        2000,
    );
    let mut plain = call(
        dir.path(),
        "dlg_uac.xml",
        s.port,
        "nocdr",
        "cdr-none-%u",
        200,
    );
    let mut short = call(
        dir.path(),
        "dlg_uac_bye.xml",
        s.port,
        "short",
        "cdr-short-%u",
        0,
    );
    done(&mut held, "the 2 s call", &|| s.log());
    done(&mut plain, "the call without cdr_flag", &|| s.log());
    done(&mut short, "the call ended by its timeout", &|| s.log());
    done(&mut u, "the callee", &|| s.log());
    let lines = || -> Vec<String> {
        s.log()
            .lines()
            .filter_map(|l| {
                l.split_once("ACC: call ended: ")
                    .map(|(_, r)| r.to_string())
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || lines().len() >= 2),
        "{}",
        s.log()
    );
    let lines = lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let held_cdr = lines
        .iter()
        .find(|l| l.contains("call_id=cdr-hold-1;"))
        .unwrap_or_else(|| panic!("no CDR of the 2 s call: {lines:#?}"));
    let dur: i64 = field(held_cdr, "duration").unwrap().parse().unwrap();
    assert!((1..=3).contains(&dur), "duration {dur}: {held_cdr}");
    let start: i64 = field(held_cdr, "start_time").unwrap().parse().unwrap();
    let end: i64 = field(held_cdr, "end_time").unwrap().parse().unwrap();
    assert_eq!(end - start, dur, "{held_cdr}");
    for want in [
        "cause=bye",
        "who=caller",
        "from_uri=sip:caller@127.0.0.1",
        &format!("to_uri=sip:cdr@127.0.0.1:{}", s.port),
    ] {
        assert!(held_cdr.contains(want), "missing {want:?}: {held_cdr}");
    }
    assert!(
        field(held_cdr, "to_tag").is_some_and(|t| !t.is_empty()),
        "{held_cdr}"
    );
    let short_cdr = lines
        .iter()
        .find(|l| l.contains("call_id=cdr-short-1;"))
        .unwrap_or_else(|| panic!("no CDR of the timed-out call: {lines:#?}"));
    assert!(short_cdr.contains("cause=timeout"), "{short_cdr}");
    assert!(short_cdr.contains("who=caller"), "{short_cdr}");
    assert!(
        !lines.iter().any(|l| l.contains("cdr-none")),
        "a CDR for the call without cdr_flag: {lines:#?}"
    );
    // the same two records in acc_cdrs
    let rows = db.rows(
        "acc_cdrs",
        &["callid", "duration", "cause", "who"],
        "callid",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], "cdr-hold-1");
    assert_eq!(rows[0][1], dur.to_string());
    assert_eq!(rows[0][2..], ["bye", "caller"]);
    assert_eq!(rows[1][0], "cdr-short-1");
    assert_eq!(rows[1][2..], ["timeout", "caller"]);
    let times = db.rows("acc_cdrs", &["start_time", "end_time"], "callid");
    for t in times.iter().flatten() {
        assert!(!t.is_empty() && !t.starts_with("2000-01-01"), "{times:?}");
    }
}

/// `cdr_start_id` is checked with the configuration; `cdr_flag` without the dialog
/// module stops the start-up (mod_init).
#[test]
fn cdr_config_errors() {
    let dir = TempDir::new("acc-cdr-bad");
    let p = dir.file("bad.cfg");
    std::fs::write(
        &p,
        "loadmodule \"tm.so\"\nloadmodule \"acc.so\"\n\
         modparam(\"acc\", \"cdr_start_id\", \"a b\")\nroute { exit; }\n",
    )
    .unwrap();
    let (code, out, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0, "accepted\n{out}{err}");
    assert!(err.contains("bad CDR field name"), "{out}{err}");
    let port = free_udp_port();
    std::fs::write(
        &p,
        format!(
            "listen=udp:127.0.0.1:{port}\nloadmodule \"tm.so\"\nloadmodule \"acc.so\"\n\
             modparam(\"acc\", \"cdr_flag\", 5)\nroute {{ exit; }}\n"
        ),
    )
    .unwrap();
    let err = start_refused(&p);
    assert!(err.contains("cdr_flag needs the dialog module"), "{err}");
}

//! dialog (issue 22): a relayed call tracked from INVITE to BYE (states seen by the
//! script and by MI `dlg_list`), a dialog past its timeout ended with a BYE to each
//! side, a profile capping concurrent calls per caller, and the MI and statistics.

use crate::harness::*;
use std::time::Duration;

/// The server: calls to `uas_port`, tracked with `dlg_flag` 4, profile `caller` by
/// From user (2 calls at most), `timeout` seconds per dialog.
fn cfg(uas_port: u16, timeout: u32) -> String {
    cfg_with(uas_port, timeout, "", "")
}

/// [`cfg`] with more modules loaded first (`mods`) and more parameters (`params`).
fn cfg_with(uas_port: u16, timeout: u32, mods: &str, params: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
{mods}loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "mi_fifo.so"
loadmodule "dialog.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("dialog", "dlg_flag", 4)
modparam("dialog", "default_timeout", {timeout})
modparam("dialog", "profiles_with_value", "caller")
modparam("dialog", "profiles_no_value", "calls")
{params}route {{
    if (loose_route()) {{
        xlog("L_INFO", "IN-DIALOG $rm status=$DLG_status who=$dlg_var(who) caller=$dlg_var(caller) gone=$dlg_var(gone)\n");
        if (method == "ACK") {{
            # a confirmed dialog's variable: its db_mode row is rewritten
            $dlg_var(acked) = "yes";
        }}
        if (method == "BYE") {{
            # the dialog ended with this BYE: its variables are still readable
            append_hf("X-Dlg-Caller: $dlg_var(caller)\r\n");
        }}
        t_relay();
        if (method == "ACK" && $tU == "byeme") {{
            dlg_bye("all");
        }}
        if (method == "ACK" && $tU == "referme") {{
            if (dlg_refer("callee", "sip:transfer@$si")) {{
                xlog("L_INFO", "REFERRED\n");
            }}
        }}
        exit;
    }}
    if (method == "INVITE") {{
        get_profile_size("caller", "$fU", "$var(n)");
        if ($var(n) >= 2) {{
            xlog("L_INFO", "BUSY $fU has $var(n) calls\n");
            sl_send_reply("486", "Busy Here");
            exit;
        }}
        record_route();
        setflag(4);
        set_dlg_profile("caller", "$fU");
        set_dlg_profile("calls");
        store_dlg_value("who", "$fU");
        $dlg_var(caller) = $fU;
        $dlg_var(gone) = "soon";
        $dlg_var(gone) = $null;
        if (!is_in_profile("caller", "$fU")) {{
            xlog("L_ERR", "NOT-IN-PROFILE\n");
        }}
        rewritehostport("127.0.0.1:{uas_port}");
        # read by the dialog module only where timeout_avp names it
        $avp(i:10) = 2;
        t_on_reply("1");
        t_relay();
        xlog("L_INFO", "CREATED status=$DLG_status count=$DLG_count\n");
        exit;
    }}
    # no dialog here: the assignment fails (logged)
    $dlg_var(nodlg) = "x";
    sl_send_reply("404", "Not here");
}}
onreply_route[1] {{
    xlog("L_INFO", "REPLY $rs status=$DLG_status\n");
}}
"#
    )
}

/// A SIPp UAS (uas.xml: 180, 200, ACK, then a BYE answered 200) for `calls` calls.
fn uas(dir: &std::path::Path, calls: u32) -> (Sipp, u16) {
    sipp_uas_with(dir, "uas.xml", &["-m", &calls.to_string()])
}

/// A SIPp caller running `file` once towards the server, in the background, calling
/// `user`, holding the call `hold_ms` (dlg_uac.xml).
fn caller_to(dir: &std::path::Path, file: &str, port: u16, hold_ms: u32, user: &str) -> Sipp {
    sipp_spawn(
        dir,
        &[
            "-sf".into(),
            scenario(file),
            format!("127.0.0.1:{port}"),
            "-s".into(),
            user.into(),
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

/// Statistic `dialog:<name>`.
fn caller(dir: &std::path::Path, file: &str, port: u16, hold_ms: u32) -> Sipp {
    caller_to(dir, file, port, hold_ms, "callee")
}

fn stat(dir: &std::path::Path, name: &str) -> Option<u64> {
    mi_stat(dir, &format!("dialog:{name}"))
}

fn exited_ok(s: &mut Sipp, what: &str, log: &dyn Fn() -> String) {
    let st = wait_child(&mut s.0, Duration::from_secs(30));
    assert!(
        st.is_some_and(|s| s.success()),
        "{what} did not complete: {st:?}\n{}",
        log()
    );
}

#[test]
fn call_is_tracked_from_invite_to_bye() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("dlg-call");
    // the callee checks the BYE's X-Dlg-Caller (from $dlg_var(caller))
    let (mut u, uport) = sipp_uas_with(dir.path(), "dlg_uas_var.xml", &["-m", "1"]);
    let s = Server::start(&cfg(uport, 3600), &[]);
    assert!(wait_fifo(s.dir.path()));
    let mut c = caller(dir.path(), "dlg_uac.xml", s.port, 2500);
    // confirmed (state 4) once the ACK went through
    let mut listing = String::new();
    let confirmed = wait_until(Duration::from_secs(10), || {
        listing = mi(s.dir.path(), "dlg_list", &[]);
        listing.contains("state:: 4")
    });
    assert!(confirmed, "{listing}\n{}", s.log());
    for want in [
        "from_uri:: sip:caller@127.0.0.1",
        "to_uri:: sip:callee@127.0.0.1",
        "from_tag:: ",
        "caller_contact:: sip:caller@127.0.0.1",
        &format!("callee_contact:: sip:127.0.0.1:{uport}"),
        "profiles:: caller,calls",
        "variable:: who=caller",
        "variable:: caller=caller",
        "timeout:: ",
    ] {
        assert!(listing.contains(want), "missing {want:?}:\n{listing}");
    }
    assert!(!listing.contains("to_tag:: \n"), "no To tag:\n{listing}");
    let size = mi(s.dir.path(), "profile_get_size", &["caller", "caller"]);
    assert!(size.contains("count=1"), "{size}");
    let size = mi(s.dir.path(), "profile_get_size", &["calls"]);
    assert!(size.contains("count=1"), "{size}");
    assert_eq!(stat(s.dir.path(), "active_dialogs"), Some(1));
    exited_ok(&mut c, "the caller", &|| s.log());
    exited_ok(&mut u, "the callee", &|| s.log());
    // BYE ended it
    let listing = mi(s.dir.path(), "dlg_list", &[]);
    assert!(!listing.contains("dialog::"), "{listing}");
    let size = mi(s.dir.path(), "profile_get_size", &["caller", "caller"]);
    assert!(size.contains("count=0"), "{size}");
    assert_eq!(stat(s.dir.path(), "active_dialogs"), Some(0));
    assert_eq!(stat(s.dir.path(), "early_dialogs"), Some(0));
    assert_eq!(stat(s.dir.path(), "processed_dialogs"), Some(1));
    assert_eq!(stat(s.dir.path(), "expired_dialogs"), Some(0));
    // the script saw the states: unconfirmed after t_relay, early on 180, confirmed
    // on 200, acknowledged on the ACK
    let log = s.log();
    assert!(
        log.contains("CREATED status=1 count=1") || log.contains("CREATED status=2 count=1"),
        "{log}"
    );
    for want in [
        "REPLY 180 status=2",
        "REPLY 200 status=3",
        "IN-DIALOG ACK status=4 who=caller caller=caller gone=<null>",
        "IN-DIALOG BYE status=4 who=caller caller=caller gone=<null>",
    ] {
        assert!(log.contains(want), "missing {want:?} in the log:\n{log}");
    }
    assert!(!log.contains("NOT-IN-PROFILE"), "{log}");
    // outside a dialog the assignment fails and says why
    let cl = Client::new();
    cl.send(
        s.addr(),
        &request(
            "OPTIONS",
            "sip:x@127.0.0.1",
            cl.port(),
            "dlgvar-none",
            1,
            "",
        ),
    );
    let r = cl.recv_matching("404").expect("a reply to the OPTIONS");
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    assert!(
        s.wait_log("dialog variable 'nodlg' not set", Duration::from_secs(5)),
        "{}",
        s.log()
    );
}

/// `timeout_avp` sets the dialog's timeout, `dlg_extra_hdrs` goes into its BYEs.
#[test]
fn expired_dialog_gets_a_bye_on_both_sides() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("dlg-timeout");
    let (mut u, uport) = uas(dir.path(), 1);
    // default_timeout is an hour: the 2 s come from timeout_avp (set by the script)
    let params = "modparam(\"dialog\", \"timeout_avp\", \"$avp(i:10)\")\n\
                  modparam(\"dialog\", \"dlg_extra_hdrs\", \"X-Dlg-End: timeout\\r\\n\")\n";
    let s = Server::start(&cfg_with(uport, 3600, "", params), &[]);
    assert!(wait_fifo(s.dir.path()));
    // the caller waits for a BYE with the extra header after its ACK, the callee
    // (uas.xml) for a BYE
    let mut c = caller(dir.path(), "dlg_uac_bye_hdr.xml", s.port, 0);
    exited_ok(&mut c, "the caller (BYE from the proxy)", &|| s.log());
    exited_ok(&mut u, "the callee (BYE from the proxy)", &|| s.log());
    assert_eq!(
        stat(s.dir.path(), "expired_dialogs"),
        Some(1),
        "{}",
        s.log()
    );
    assert_eq!(stat(s.dir.path(), "active_dialogs"), Some(0));
    let listing = mi(s.dir.path(), "dlg_list", &[]);
    assert!(!listing.contains("dialog::"), "{listing}");
    assert!(s.log().contains("timed out in state 4"), "{}", s.log());
}

#[test]
fn profile_caps_concurrent_calls_per_caller() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("dlg-profile");
    let (mut u, uport) = uas(dir.path(), 2);
    let s = Server::start(&cfg(uport, 3600), &[]);
    assert!(wait_fifo(s.dir.path()));
    let mut c1 = caller(dir.path(), "dlg_uac.xml", s.port, 4000);
    let mut c2 = caller(dir.path(), "dlg_uac.xml", s.port, 4000);
    let two = wait_until(Duration::from_secs(10), || {
        mi(s.dir.path(), "profile_get_size", &["caller", "caller"]).contains("count=2")
    });
    assert!(two, "{}", mi(s.dir.path(), "dlg_list", &[]));
    // the third call of the same caller is refused by the script
    let out = sipp_once(dir.path(), "dlg_uac_busy.xml", s.port, &["-s", "callee"]);
    assert!(
        out.status.success(),
        "third call not refused with 486: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        s.log()
    );
    assert!(s.log().contains("BUSY caller has 2 calls"), "{}", s.log());
    exited_ok(&mut c1, "the first call", &|| s.log());
    exited_ok(&mut c2, "the second call", &|| s.log());
    exited_ok(&mut u, "the callee", &|| s.log());
    let size = mi(s.dir.path(), "profile_get_size", &["caller", "caller"]);
    assert!(size.contains("count=0"), "{size}");
    assert_eq!(stat(s.dir.path(), "processed_dialogs"), Some(2));
}

#[test]
fn mi_ends_a_dialog_and_rejects_bad_input() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("dlg-mi");
    let (mut u, uport) = uas(dir.path(), 1);
    let s = Server::start(&cfg(uport, 3600), &[]);
    assert!(wait_fifo(s.dir.path()));
    let mut c = caller(dir.path(), "dlg_uac_bye.xml", s.port, 0);
    let mut listing = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            listing = mi(s.dir.path(), "dlg_list", &[]);
            listing.contains("state:: 4")
        }),
        "{listing}"
    );
    let hash = listing
        .lines()
        .find_map(|l| l.split("hash=").nth(1))
        .expect("hash")
        .trim()
        .to_string();
    let (e, i) = hash.split_once(':').unwrap();
    assert!(mi(s.dir.path(), "dlg_end_dlg", &[e, "999999"]).starts_with("404"));
    assert!(mi(s.dir.path(), "dlg_end_dlg", &["x"]).starts_with("400"));
    assert!(mi(s.dir.path(), "profile_get_size", &["nosuch"]).starts_with("404"));
    assert!(mi(s.dir.path(), "dlg_end_dlg", &[e, i]).starts_with("200"));
    exited_ok(&mut c, "the caller (BYE from MI)", &|| s.log());
    exited_ok(&mut u, "the callee (BYE from MI)", &|| s.log());
    assert!(!mi(s.dir.path(), "dlg_list", &[]).contains("dialog::"));
}

#[test]
fn dlg_bye_from_the_script_ends_the_call_on_both_sides() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("dlg-bye");
    let (mut u, uport) = uas(dir.path(), 1);
    let s = Server::start(&cfg(uport, 3600), &[]);
    assert!(wait_fifo(s.dir.path()));
    // the script calls dlg_bye("all") on the ACK of a call to "byeme"
    let mut c = caller_to(dir.path(), "dlg_uac_bye.xml", s.port, 0, "byeme");
    exited_ok(&mut c, "the caller (BYE from dlg_bye)", &|| s.log());
    exited_ok(&mut u, "the callee (BYE from dlg_bye)", &|| s.log());
    assert!(!mi(s.dir.path(), "dlg_list", &[]).contains("dialog::"));
    assert_eq!(stat(s.dir.path(), "active_dialogs"), Some(0));
    assert_eq!(stat(s.dir.path(), "expired_dialogs"), Some(0));
}

#[test]
fn dialogs_survive_a_restart_with_db_mode() {
    use crate::harness::engines::{Engine, Kind};
    if !require("sipp") {
        return;
    }
    let Some(db) = Engine::start(Kind::Sqlite) else {
        return;
    };
    let dir = TempDir::new("dlg-db");
    let (mut u, uport) = sipp_uas_with(dir.path(), "dlg_uas_var.xml", &["-m", "1"]);
    let conf = cfg_with(
        uport,
        3600,
        "loadmodule \"db_sqlite.so\"\n",
        &format!(
            "modparam(\"dialog\", \"db_mode\", 1)\nmodparam(\"dialog\", \"db_url\", \"{}\")\n",
            db.url()
        ),
    );
    let mut s = Server::start(&conf, &[]);
    let port = s.port;
    assert!(wait_fifo(s.dir.path()));
    let mut c = caller(dir.path(), "dlg_uac.xml", port, 6000);
    // confirmed and acknowledged: the row says so
    // (and the variable set on the ACK, after the ACK's own write, is in it)
    let written = wait_until(Duration::from_secs(10), || {
        let rows = db.rows("dialog", &["state", "vars"], "id");
        rows.len() == 1 && rows[0][0] == "4" && rows[0][1].contains("acked=yes;")
    });
    assert!(
        written,
        "{:?}\n{}",
        db.rows("dialog", &["callid", "state", "vars"], "id"),
        s.log()
    );
    s.stop();
    // a new server on the same port has the call, and the caller's BYE ends it
    let s = Server::start_on(port, &conf, &[]);
    assert!(wait_fifo(s.dir.path()));
    let listing = mi(s.dir.path(), "dlg_list", &[]);
    for want in [
        "state:: 4",
        "variable:: who=caller",
        "variable:: caller=caller",
        "variable:: acked=yes",
        "profiles:: caller,calls",
    ] {
        assert!(
            listing.contains(want),
            "missing {want:?}:\n{listing}\n{}",
            s.log()
        );
    }
    let size = mi(s.dir.path(), "profile_get_size", &["caller", "caller"]);
    assert!(size.contains("count=1"), "{size}");
    assert_eq!(stat(s.dir.path(), "active_dialogs"), Some(1));
    exited_ok(&mut c, "the caller (BYE after the restart)", &|| s.log());
    exited_ok(&mut u, "the callee (BYE after the restart)", &|| s.log());
    assert!(!mi(s.dir.path(), "dlg_list", &[]).contains("dialog::"));
    assert!(db.rows("dialog", &["state"], "id").is_empty());
    assert_eq!(stat(s.dir.path(), "active_dialogs"), Some(0));
    assert!(
        s.log()
            .contains("IN-DIALOG BYE status=4 who=caller caller=caller"),
        "{}",
        s.log()
    );
}

#[test]
fn bad_dialog_config_is_refused() {
    let dir = TempDir::new("dlg-badcfg");
    let base = r#"loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "dialog.so"
"#;
    for (extra, want) in [
        (
            "modparam(\"dialog\", \"profiles_with_value\", \"caller\")\nroute { set_dlg_profile(\"nosuch\"); }\n",
            "no dialog profile 'nosuch'",
        ),
        (
            "modparam(\"dialog\", \"profiles_with_value\", \"caller\")\nroute { set_dlg_profile(\"caller\"); }\n",
            "needs a value",
        ),
        ("route { dlg_manage(); }\n", "dlg_flag"),
        (
            "route { dlg_bye(\"both\"); }\n",
            "not caller, callee or all",
        ),
        (
            "modparam(\"dialog\", \"profiles_no_value\", \"a b\")\nroute { exit; }\n",
            "bad profile name",
        ),
    ] {
        let p = dir.file("bad.cfg");
        std::fs::write(&p, format!("{base}{extra}")).unwrap();
        let (code, out, err) = run(&["-c", "-f", p.to_str().unwrap()]);
        assert_ne!(code, 0, "{extra}: accepted\n{out}{err}");
        assert!(
            err.contains(want) || out.contains(want),
            "{extra}: want {want:?}\n{out}{err}"
        );
    }
}

/// `dlg_refer("callee", uri)` on the ACK: the callee gets a REFER with that Refer-To
/// (its scenario checks it and answers 202), the dialog stays up, and the caller's BYE
/// ends it as usual.
#[test]
fn dlg_refer_sends_a_refer_and_keeps_the_dialog() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("dlg-refer");
    let (mut u, uport) = sipp_uas_with(dir.path(), "dlg_uas_refer.xml", &["-m", "1"]);
    let s = Server::start(&cfg(uport, 3600), &[]);
    assert!(wait_fifo(s.dir.path()));
    let mut c = caller_to(dir.path(), "dlg_uac.xml", s.port, 500, "referme");
    exited_ok(&mut c, "the caller (its own BYE)", &|| s.log());
    exited_ok(&mut u, "the callee (REFER, then the BYE)", &|| s.log());
    let log = s.log();
    assert!(log.contains("REFERRED"), "{log}");
    assert!(log.contains("IN-DIALOG BYE"), "{log}");
    assert_eq!(stat(s.dir.path(), "active_dialogs"), Some(0));
    assert_eq!(stat(s.dir.path(), "processed_dialogs"), Some(1));
}

//! Issue 22, core script additions on the wire: transformations, `#!subst` with a
//! regular expression, `$nh`/`$TV`, `event_route[core:worker-one-init]`, `xlogl`/`xdbgl`,
//! `$C`, and the debugger module (cfgtrace names every executed line, a breakpoint as a
//! log point, `dbg_sip_msg` with the pending changes). One server, one request.

use crate::harness::*;
use std::time::Duration;

const CFG: &str = r#"debug=4
log_stderror=yes
children=1
listen=udp:127.0.0.1:{PORT}
#!subst "/([a-z]+)_DOMAIN/\1.example.org/g"

loadmodule "sl.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "debugger.so"
modparam("debugger", "cfgtrace", 1)
modparam("debugger", "breakpoint", 1)
modparam("debugger", "log_level", 2)

event_route[core:worker-one-init] {
    xlog("L_NOTICE", "WORKER-ONE-INIT done\n");
}

route {
    $var(d) = "alice_DOMAIN and bob_DOMAIN";
    xlogl("L_NOTICE", "SUBST [$var(d)]\n");
    xdbgl("DBGL here\n");
    xlog("L_NOTICE", "TR strip=[$(rU{s.strip,2})] tail=[$(rU{s.striptail,2})] pfx=[$(rU{s.prefixes,3})] md5=[$(rU{s.md5})] up=[$(fU{s.toupper})]\n");
    xlog("L_NOTICE", "NA name=[$(hdr(From){nameaddr.name})] uri=[$(hdr(From){nameaddr.uri})] tag=[$(hdr(From){tobody.tag})] host=[$(hdr(To){tobody.host})] scheme=[$(ru{uri.scheme})]\n");
    xlog("L_NOTICE", "NH1 [$nh(u)]\n");
    $du = "sip:nexthop.example.net:5099";
    xlog("L_NOTICE", "NH2 [$nh(u)] [$nh(d)] [$nh(p)] TV=[$TV(s)]\n");
    xlog("L_NOTICE", "COLOR $C(rx)red$C(xx)\n");
    dbg_breakpoint(1);
    append_hf("X-Dbg: pending-change\r\n");
    dbg_sip_msg();
    if ($rU == "12345") {
        sl_send_reply("200", "traced");
    } else {
        sl_send_reply("404", "not traced");
    }
    exit;
}
"#;

/// The 1-based line of the configuration holding `needle`.
fn line_of(needle: &str) -> usize {
    CFG.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in the config"))
        + 1
}

#[test]
fn script_additions_and_cfgtrace() {
    let mut s = Server::start(CFG, &[]);
    let cfg = s.cfg_path.display().to_string();
    assert!(
        s.wait_log("WORKER-ONE-INIT done", Duration::from_secs(5)),
        "{}",
        s.log()
    );
    let c = Client::new();
    let req = request(
        "OPTIONS",
        "sip:12345@127.0.0.1",
        c.port(),
        "cfgtrace-1",
        1,
        "",
    );
    c.send(s.addr(), &req);
    let r = c
        .recv_matching("SIP/2.0 ")
        .unwrap_or_else(|| panic!("no reply; log:\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 200 traced"), "{r}");
    // the route's last action (`exit`, after the reply went out) is traced last
    assert!(
        s.wait_log("n=[exit]", Duration::from_secs(5)),
        "{}",
        s.log()
    );
    let log = s.log();
    s.stop();

    // worker-one-init ran exactly once (one SIP worker of two processes at start-up)
    assert_eq!(log.matches("WORKER-ONE-INIT done").count(), 1, "{log}");
    // #!subst with a group reference, global
    assert!(
        log.contains("SUBST [alice.example.org and bob.example.org]"),
        "{log}"
    );
    // xlogl / xdbgl: the call's file:line in front
    let xl = format!("{cfg}:{}: SUBST", line_of("xlogl("));
    assert!(log.contains(&xl), "want `{xl}` in:\n{log}");
    let xd = format!("{cfg}:{}: DBGL here", line_of("xdbgl("));
    assert!(log.contains(&xd), "want `{xd}` in:\n{log}");
    // transformations
    assert!(
        log.contains(
            "TR strip=[345] tail=[123] pfx=[1,12,123] md5=[827ccb0eea8a706c4c34a16891f84e7b] up=[ALICE]"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "NA name=[] uri=[sip:alice@127.0.0.1] tag=[acfgtrace-1] host=[127.0.0.1] scheme=[sip]"
        ),
        "{log}"
    );
    // $nh: the R-URI, then the destination URI once set
    assert!(log.contains("NH1 [sip:12345@127.0.0.1]"), "{log}");
    assert!(
        log.contains("NH2 [sip:nexthop.example.net:5099] [nexthop.example.net] [5099] TV=[1"),
        "{log}"
    );
    // $C: ANSI escapes (logging to stderr)
    assert!(log.contains("COLOR \x1b[0;31;49mred\x1b[0;39;49m"), "{log}");
    // breakpoint as a log point
    let bp = format!("breakpoint hit at {cfg}:{}", line_of("dbg_breakpoint("));
    assert!(log.contains(&bp), "want `{bp}` in:\n{log}");
    // dbg_sip_msg: the message with the header appended by append_hf
    assert!(log.contains("1 pending change(s)"), "{log}");
    assert!(log.contains("X-Dbg: pending-change"), "{log}");

    // cfgtrace: every executed line of the route, named, with the file and column
    let executed = [
        ("$var(d) =", "assign"),
        ("xlogl(", "xlogl"),
        ("xdbgl(", "xdbgl"),
        ("TR strip", "xlog"),
        ("NA name", "xlog"),
        ("NH1", "xlog"),
        ("$du =", "assign"),
        ("NH2", "xlog"),
        ("COLOR", "xlog"),
        ("dbg_breakpoint(", "dbg_breakpoint"),
        ("append_hf(", "append_hf"),
        ("dbg_sip_msg(", "dbg_sip_msg"),
        ("if ($rU", "if"),
        ("\"200\", \"traced\"", "sl_send_reply"),
        ("exit;", "exit"),
    ];
    for (needle, name) in executed {
        let line = line_of(needle);
        let want = format!("rt=[request_route] c=[{cfg}] l=[{line}] col=[");
        let hit = log
            .lines()
            .any(|l| l.contains(&want) && l.ends_with(&format!("n=[{name}]")));
        assert!(hit, "no cfgtrace line for line {line} ({name}):\n{log}");
    }
    // the branch not taken is not traced
    let not = format!("l=[{}] ", line_of("\"404\""));
    assert!(!log.contains(&not), "{log}");
    // the event route runs with a trace too (it is script)
    let ev = format!("l=[{}] col=[5] n=[xlog]", line_of("WORKER-ONE-INIT"));
    assert!(log.contains(&ev), "{log}");
}

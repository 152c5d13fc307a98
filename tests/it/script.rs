//! Script engine and module framework (issue 4): fixup errors through `openser -c`,
//! and the interpreter on the wire (forwarding to a test socket).

use crate::harness::*;
use std::path::Path;
use std::time::Duration;

#[test]
fn fixup_good_configs_pass_check() {
    let list = cfg_corpus("fixup/good");
    assert!(!list.is_empty());
    for p in list {
        let ps = p.display().to_string();
        let (rc, _out, err) = run(&["-C", "-f", &ps]);
        assert_eq!(rc, 0, "{ps}:\n{err}");
    }
}

#[test]
fn fixup_bad_configs_fail_where_expected() {
    let list = cfg_corpus("fixup/bad");
    assert!(list.len() >= 8);
    let mut failed = Vec::new();
    for p in list {
        let ps = p.display().to_string();
        let (pos, want, flag) =
            cfg_expectation(&p).unwrap_or_else(|| panic!("{ps}: no `# expect:` line"));
        let flag = flag.unwrap_or_else(|| "-c".to_string());
        let (rc, _out, err) = run(&[&flag, "-f", &ps]);
        let first = err.lines().find(|l| l.starts_with(&ps)).unwrap_or("");
        let expect_prefix = format!("{ps}:{pos}: ");
        if rc == 0
            || !first.starts_with(&expect_prefix)
            || !first.contains(&want)
            || !err.contains('^')
            || !err.contains("ERROR: bad config file")
        {
            failed.push(format!(
                "{ps}: expected {pos} `{want}` (rc {rc}), got:\n{err}"
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

fn builtin(name: &str) -> bool {
    openser::MODULES.iter().any(|m| m.name == name)
}

#[test]
fn seed_hello_world_fails_on_lookup_of_registrar() {
    // The guide's config, verbatim (a copy of the seed kept in the repository).
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cfg/good/seed-hello-world.cfg"
    );
    assert!(Path::new(p).exists());
    let (rc, _out, err) = run(&["-c", "-f", p]);
    assert_ne!(rc, 0);
    let needed = ["sl", "tm", "rr", "maxfwd", "usrloc", "textops", "xlog"];
    if needed.iter().all(|m| builtin(m)) {
        assert!(
            err.contains(&format!(
                "{p}:67:14: function 'lookup' is exported by module 'registrar', which is not loaded"
            )),
            "{err}"
        );
        assert!(err.contains("ERROR: bad config file (1 errors)"), "{err}");
    } else {
        // until every module of the seed exists, only those are reported
        for l in err.lines().filter(|l| l.starts_with(p)) {
            assert!(
                l.contains("not found (built-in modules:")
                    || l.contains("modparam: no loaded module"),
                "{err}"
            );
        }
    }
}

#[test]
fn seed_mysql_auth_config_checks_clean() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cfg/good/seed-mysql-auth.cfg"
    );
    let (rc, out, err) = run(&["-c", "-f", p]);
    assert_eq!(rc, 0, "{out}\n{err}");
}

/// A test UDP socket the server forwards to.
fn sink() -> Client {
    Client::new()
}

fn forward_cfg(body: &str, sink_port: u16) -> String {
    format!(
        "listen=udp:127.0.0.1:{{PORT}}\nchildren=1\n\
         route {{\n{}\n}}\n",
        body.replace("SINK", &sink_port.to_string())
    )
}

#[test]
fn forward_to_fixed_destination_and_rewrite() {
    let dst = sink();
    let cfg = forward_cfg(
        "if (method == \"OPTIONS\") { drop; }\n\
         if ($rU == \"rewrite\") { rewriteuser(\"carol\"); $rd = \"biloxi.example\"; }\n\
         forward(\"127.0.0.1:SINK\");",
        dst.port(),
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let c = Client::new();
    let req = request("INVITE", "sip:rewrite@127.0.0.1", c.port(), "fwd1", 1, "");
    c.send(s.addr(), &req);
    let (got, _) = dst
        .recv_timeout(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("nothing forwarded; log:\n{}", s.log()));
    assert!(
        got.starts_with("INVITE sip:carol@biloxi.example SIP/2.0\r\n"),
        "{got}"
    );
    assert_eq!(headers(&got, "Via").len(), 2, "{got}");
    // dropped requests are not forwarded
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:x@127.0.0.1", c.port(), "fwd2", 1, ""),
    );
    assert!(dst.recv_timeout(Duration::from_millis(400)).is_none());
    assert!(s.stop().success());
}

#[test]
fn var_survives_across_messages_avp_does_not() {
    let dst = sink();
    // one receiver: both messages go through the same process
    let cfg = forward_cfg(
        "if ($var(n) == 0) { $var(n) = \"first\"; $avp(s:a) = \"x\"; seturi(\"sip:one@127.0.0.1\"); }\n\
         else { if ($avp(s:a) == null) { $ru = \"sip:\" + $var(n) + \"-noavp@127.0.0.1\"; } }\n\
         forward(\"127.0.0.1:SINK\");",
        dst.port(),
    );
    let mut s = Server::start(&cfg, &["-DD", "-E", "-n", "1"]);
    let c = Client::new();
    for i in 1..=2 {
        c.send(
            s.addr(),
            &request("MESSAGE", "sip:u@127.0.0.1", c.port(), "var", i, ""),
        );
        let (got, _) = dst
            .recv_timeout(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("nothing forwarded; log:\n{}", s.log()));
        let want = if i == 1 {
            "MESSAGE sip:one@127.0.0.1 SIP/2.0"
        } else {
            "MESSAGE sip:first-noavp@127.0.0.1 SIP/2.0"
        };
        assert!(got.starts_with(want), "{got}");
    }
    assert!(s.stop().success());
}

#[test]
fn exit_and_log_and_implicit_drop() {
    let dst = sink();
    let cfg = forward_cfg(
        "log(1, \"script saw $rm from $fU\\n\");\n\
         if ($rU == \"stop\") { exit; }\n\
         route(1);\n\
         forward(\"127.0.0.1:SINK\");\n}\nroute[1] {\n if ($rU == \"quiet\") { return(0); }",
        dst.port(),
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let c = Client::new();
    for (u, fwd) in [("stop", false), ("quiet", false), ("go", true)] {
        c.send(
            s.addr(),
            &request("INVITE", &format!("sip:{u}@127.0.0.1"), c.port(), u, 1, ""),
        );
        let got = dst.recv_timeout(Duration::from_millis(if fwd { 3000 } else { 400 }));
        assert_eq!(got.is_some(), fwd, "{u}: {got:?}\n{}", s.log());
    }
    assert!(
        s.wait_log("script saw INVITE from alice", Duration::from_secs(2)),
        "{}",
        s.log()
    );
    assert!(s.stop().success());
}

#[test]
fn malformed_request_gets_400() {
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=1\nroute { exit; }\n";
    let mut s = Server::start(cfg, &["-DD", "-E"]);
    let c = Client::new();
    // good Via, broken CSeq
    let req = format!(
        "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKbad1\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: bad1\r\nCSeq: abc\r\n\
         Content-Length: 0\r\n\r\n",
        c.port()
    );
    c.send(s.addr(), &req);
    let (got, _) = c
        .recv_timeout(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no 400; log:\n{}", s.log()));
    assert!(got.starts_with("SIP/2.0 400"), "{got}");
    // garbage is silently dropped and the server survives
    c.send_bytes(s.addr(), b"\x00\x01garbage\r\n\r\n");
    c.send(s.addr(), &req);
    assert!(c.recv_timeout(Duration::from_secs(3)).is_some());
    assert!(s.stop().success());
}

fn reply(code: &str, server_port: u16, client_port: u16) -> String {
    format!(
        "SIP/2.0 {code}\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{server_port};branch=z9hG4bKsrv1\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{client_port};branch=z9hG4bKcli1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n\
         Call-ID: rpl1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn onreply_route_drops_1xx_and_replies_are_forwarded_statelessly() {
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=1\nroute { exit; }\n\
               onreply_route { if (status == \"180\") { drop; } }\n";
    let mut s = Server::start(cfg, &["-DD", "-E"]);
    let up = Client::new();
    let down = Client::new();
    up.send(s.addr(), &reply("180 Ringing", s.port, down.port()));
    assert!(down.recv_timeout(Duration::from_millis(500)).is_none());
    up.send(s.addr(), &reply("200 OK", s.port, down.port()));
    let (got, _) = down
        .recv_timeout(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("200 not forwarded; log:\n{}", s.log()));
    assert!(got.starts_with("SIP/2.0 200 OK\r\n"), "{got}");
    assert_eq!(headers(&got, "Via").len(), 1, "{got}");
    assert!(s.stop().success());
}

#[test]
fn startup_and_timer_routes_run() {
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=1\nroute { exit; }\n\
               startup_route { log(1, \"startup route ran\\n\"); }\n\
               timer_route[tick, 1] { log(1, \"timer route ran\\n\"); }\n";
    let mut s = Server::start(cfg, &["-DD", "-E"]);
    assert!(
        s.wait_log("startup route ran", Duration::from_secs(3)),
        "{}",
        s.log()
    );
    assert!(
        s.wait_log("timer route ran", Duration::from_secs(4)),
        "{}",
        s.log()
    );
    assert!(s.stop().success());
}

/// The interpreter over the wire: the script computes a summary of what it saw and
/// puts it in the reason phrase of its stateless reply.
const LANG_CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
avp_aliases="color=s:colour"
loadmodule "sl.so"
loadmodule "textops.so"

route {
    # script flags are reset for every message: on the second message of the
    # same process this must still be unset.
    if (issflagset(3)) { $var(leak) = "sflag-leaked"; } else { $var(leak) = "clean"; };
    setsflag(3);

    switch ($rm) {
        case "INVITE":
            $var(m) = "inv";
            break;
        case "options":          # case-insensitive
            $var(m) = "opt";
            # fall through
        case "MESSAGE":
            $var(m) = "opt-or-msg";
            break;
        default:
            $var(m) = "other";
    };

    # AVP stack: newest first, [-1] the oldest, [*] all.
    $avp(s:x) = "a";
    $avp(s:x) = "b";
    $avp(color) = "red";
    $avp(s:x) = "c";
    $avp(s:x) = null;          # removes only the newest ("c")

    # the three kinds of flags
    setflag(5);
    setbflag(7);
    if (isflagset(5) && isbflagset(7) && issflagset(3) && !isflagset(6)) {
        $var(flags) = "flags-ok";
    } else {
        $var(flags) = "flags-bad";
    };
    resetflag(5);
    if (isflagset(5)) { $var(flags) = "reset-failed"; };

    # route(N): $rc holds the inner block's code (reference 6.6); as a condition a
    # negative code is false.
    route(2);
    $var(r2) = $rc;
    route(3);
    $var(r3) = $rc;
    if (route(2)) { $var(cond) = "true"; } else { $var(cond) = "false"; };

    # $var survives to the next message handled by the same process.
    $var(count) = $var(count) + 1;

    sl_send_reply("200", "m=$var(m) avp=$avp(s:x) oldest=$avp(s:x[-1]) all=$avp(s:x[*]) alias=$avp(color) $var(flags) r2=$var(r2) r3=$var(r3) cond=$var(cond) $var(leak) n=$var(count)");
    exit;
}

route[2] {
    return(-2);
}

route[3] {
    return(5);
}
"#;

#[test]
fn language_on_the_wire_switch_avps_flags_route_returns() {
    let mut s = Server::start(LANG_CFG, &["-DD", "-E", "-n", "1"]);
    let c = Client::new();
    let ask = |method: &str, id: &str| -> String {
        c.send(
            s.addr(),
            &request(method, "sip:x@127.0.0.1", c.port(), id, 1, ""),
        );
        let (r, _) = c.recv().unwrap_or_else(|| panic!("no reply to {method}"));
        r.lines().next().unwrap_or("").to_string()
    };
    let first = ask("OPTIONS", "lang1");
    assert!(first.starts_with("SIP/2.0 200 m=opt-or-msg "), "{first}");
    for want in [
        "avp=b",
        "oldest=a",
        "all=b, a",
        "alias=red",
        "flags-ok",
        "r2=-2",
        "r3=5",
        "cond=false",
        "clean",
        "n=1",
    ] {
        assert!(first.contains(want), "missing `{want}` in: {first}");
    }
    // Second message, same (single) receiver: script flags were reset, AVPs are per
    // message (the stack starts empty again), the switch takes another case.
    let second = ask("INVITE", "lang2");
    assert!(second.starts_with("SIP/2.0 200 m=inv "), "{second}");
    assert!(
        second.contains("all=b, a") && second.contains(" clean"),
        "{second}"
    );
    assert!(
        second.ends_with(" n=2"),
        "$var must survive between messages: {second}"
    );
    let third = ask("BYE", "lang3");
    assert!(third.starts_with("SIP/2.0 200 m=other "), "{third}");
    assert!(s.stop().success());
}

#[test]
fn check_reports_every_error_of_every_stage() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cfg/fixup/bad/every-stage.cfg"
    );
    let (rc, _out, err) = run(&["-c", "-f", p]);
    assert_ne!(rc, 0);
    let at: Vec<&str> = err.lines().filter_map(|l| l.strip_prefix(p)).collect();
    assert_eq!(at.len(), 4, "{err}");
    assert!(at[0].starts_with(":3:10: expected a number"), "{err}");
    assert!(
        at[1].starts_with(":6:28: bad value for modparam tm:fr_timer"),
        "{err}"
    );
    assert!(
        at[2].starts_with(":8:5: unknown function 'no_such_function'"),
        "{err}"
    );
    assert!(
        at[3].starts_with(":10:5: unknown function 'another_unknown_function'"),
        "{err}"
    );
    assert!(err.contains("ERROR: bad config file (4 errors)"), "{err}");
}

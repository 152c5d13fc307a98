//! tmx and the tm additions (issue 22, second part): a ringing call canceled by
//! Call-ID from the MI and from the script, a pending call answered by Call-ID, the
//! caller's Reason headers on the relayed CANCEL (SIPp UAS checking them), tm's own
//! Reason on the CANCEL after a 2xx elsewhere, `t_set_fr` timing out one ringing call
//! while an older one still rings, and `$T_req`/`$T_rpl`/`$T_reply_reason` and the
//! route-type tests in the routes.

use crate::harness::*;
use std::time::Duration;

/// The server: INVITEs to `uas` (or, for `fork`, to `uas` and `uas2`), with
/// failure/reply/branch routes logging what tmx shows; control requests `cancel` and
/// `answer` act on the call named by their X-Cid/X-CSeq headers.
fn cfg(uas: u16, uas2: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("tm", "fr_inv_timer", 60)
route {{
    if ($rU == "cancel") {{
        if (t_cancel_callid("$hdr(X-Cid)", "$hdr(X-CSeq)", "5", "480")) {{
            sl_send_reply("200", "Canceled");
        }} else {{
            sl_send_reply("404", "No Such Call");
        }}
        exit;
    }}
    if ($rU == "answer") {{
        if (t_reply_callid("$hdr(X-Cid)", "$hdr(X-CSeq)", "486", "Busy Elsewhere")) {{
            sl_send_reply("200", "Replied");
        }} else {{
            sl_send_reply("404", "No Such Call");
        }}
        exit;
    }}
    if (method == "INVITE") {{
        if (is_present_hf("X-Fast")) {{
            t_set_fr(1000);
        }}
        if (is_present_hf("X-No-Reason")) {{
            t_set_no_e2e_cancel_reason("1");
        }}
        if (t_is_request_route() && !t_is_failure_route()) {{
            xlog("L_INFO", "REQUEST-ROUTE $ci\n");
        }}
        t_on_failure("1");
        t_on_reply("1");
        t_on_branch("1");
    }}
    if ($rU == "drop" || $rU == "keep") {{
        t_on_failure("2");
    }}
    rewritehostport("127.0.0.1:{uas}");
    if ($rU == "fork") {{
        append_branch("sip:fork@127.0.0.1:{uas2}");
    }}
    t_relay();
}}
branch_route[1] {{
    if (t_is_branch_route()) {{
        xlog("L_INFO", "BRANCH-ROUTE $ci\n");
    }}
}}
onreply_route[1] {{
    if (t_is_reply_route()) {{
        xlog("L_INFO", "REPLY-ROUTE $ci $rs req=$T_req($hdr(X-Orig)) rpl=$T_rpl($hdr(X-Uas))\n");
    }}
}}
failure_route[2] {{
    if ($rU == "drop") {{
        t_drop_replies();
    }}
    rewritehostport("127.0.0.1:{uas2}");
    t_relay();
}}
failure_route[1] {{
    if (t_is_failure_route() && !t_is_branch_route()) {{
        if (isflagset(5)) {{
            $var(f) = "yes";
        }} else {{
            $var(f) = "no";
        }}
        xlog("L_INFO", "FAILURE-ROUTE $ci code=$T_reply_code reason=[$T_reply_reason] rpl=$T_rpl($hdr(X-Uas)) req=$T_req($hdr(X-Orig)) flag5=$var(f)\n");
    }}
}}
"#
    )
}

/// A UAS's reply to request text `req`: its Vias, From, Call-ID and CSeq, its To with
/// `tag` (unless it has one), `extra` header lines.
fn reply(req: &str, code: u16, reason: &str, tag: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line);
                if !line.contains(";tag=") {
                    out.push_str(&format!(";tag={tag}"));
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Wait at `uas` for a request whose first line starts with `method` and whose
/// Call-ID is `callid` (others are skipped).
fn expect_req(uas: &Client, method: &str, callid: &str) -> (String, std::net::SocketAddr) {
    for _ in 0..20 {
        let (m, from) = uas
            .recv()
            .unwrap_or_else(|| panic!("no {method} for {callid} at the UAS"));
        if m.starts_with(&format!("{method} ")) && header(&m, "Call-ID") == Some(callid) {
            return (m, from);
        }
    }
    panic!("no {method} for {callid} at the UAS");
}

/// The caller's INVITE for `user` at the UAS port, Call-ID `callid`, CSeq 1.
fn invite(caller: &Client, srv: &Server, user: &str, uas: u16, callid: &str, extra: &str) {
    let ruri = format!("sip:{user}@127.0.0.1:{uas}");
    caller.send(
        srv.addr(),
        &request("INVITE", &ruri, caller.port(), callid, 1, extra),
    );
}

/// The status code of a reply text.
fn code(m: &str) -> u16 {
    m.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The caller's next final reply (provisional ones skipped).
fn next_final(caller: &Client) -> String {
    for _ in 0..20 {
        let (m, _) = caller.recv().expect("a final reply for the caller");
        if code(&m) >= 200 {
            return m;
        }
    }
    panic!("no final reply for the caller");
}

/// A control request (`cancel`/`answer`) naming call `callid`; the server's reply.
fn control(srv: &Server, what: &str, callid: &str) -> String {
    let c = Client::new();
    let extra = format!("X-Cid: {callid}\r\nX-CSeq: 1\r\n");
    c.send(
        srv.addr(),
        &request(
            "OPTIONS",
            &format!("sip:{what}@127.0.0.1"),
            c.port(),
            &format!("ctl-{what}-{callid}"),
            1,
            &extra,
        ),
    );
    c.recv().expect("control reply").0
}

/// What SIPp wrote to its files ending in `suffix` in `dir` (`_logs.log`,
/// `_messages.log`).
fn sipp_output(dir: &std::path::Path, suffix: &str) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(suffix) {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

/// A SIPp UAS (uas_cancel.xml) must end its one call successfully.
fn sipp_done(uas: &mut Sipp, dir: &std::path::Path) {
    let st = wait_child(&mut uas.0, Duration::from_secs(15)).expect("SIPp UAS ends");
    assert!(
        st.success(),
        "SIPp UAS failed: {}",
        sipp_output(dir, "_messages.log")
    );
}

#[test]
fn t_cancel_callid_from_mi_cancels_a_ringing_call() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("tmx-mi");
    let (mut uas, uas_port) = sipp_uas_with(
        dir.path(),
        "uas_cancel.xml",
        &["-m", "1", "-trace_logs", "-trace_msg"],
    );
    let srv = Server::start(&cfg(uas_port, uas_port), &[]);
    assert!(wait_fifo(srv.dir.path()));
    let caller = Client::new();
    invite(&caller, &srv, "bob", uas_port, "mi-cancel-1", "");
    assert!(caller.recv_matching("180").is_some(), "{}", srv.log());
    let r = mi(
        srv.dir.path(),
        "t_cancel_callid",
        &["mi-cancel-1", "1", "487"],
    );
    assert!(r.starts_with("200"), "{r}");
    // The callee got the CANCEL (with the Reason of the MI command), answered the INVITE
    // 487, and that went to the caller.
    let fin = next_final(&caller);
    assert_eq!(code(&fin), 487, "{fin}");
    assert_eq!(header(&fin, "Call-ID"), Some("mi-cancel-1"));
    sipp_done(&mut uas, dir.path());
    let msgs = sipp_output(dir.path(), "_messages.log");
    assert!(msgs.contains("Reason: SIP;cause=487"), "{msgs}");
    // Nothing pending any more.
    let r = mi(srv.dir.path(), "t_cancel_callid", &["mi-cancel-1", "1"]);
    assert!(r.starts_with("481"), "{r}");
    let r = mi(srv.dir.path(), "t_cancel_callid", &["no-such-call", "1"]);
    assert!(r.starts_with("481"), "{r}");
    let r = mi(
        srv.dir.path(),
        "t_cancel_callid",
        &["mi-cancel-1", "1", "abc"],
    );
    assert!(r.starts_with("400"), "{r}");
}

#[test]
fn reason_headers_of_the_callers_cancel_are_relayed() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("tmx-reason");
    let (mut uas, uas_port) =
        sipp_uas_with(dir.path(), "uas_cancel.xml", &["-m", "1", "-trace_msg"]);
    let srv = Server::start(&cfg(uas_port, uas_port), &[]);
    let caller = Client::new();
    invite(&caller, &srv, "bob", uas_port, "e2e-reason-1", "");
    assert!(caller.recv_matching("180").is_some(), "{}", srv.log());
    let ruri = format!("sip:bob@127.0.0.1:{uas_port}");
    caller.send(
        srv.addr(),
        &request(
            "CANCEL",
            &ruri,
            caller.port(),
            "e2e-reason-1",
            1,
            "Reason: SIP;cause=487;text=\"Hung up\"\r\nReason: Q.850;cause=16\r\n",
        ),
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = next_final(&caller);
        got.push((code(&m), header(&m, "CSeq").unwrap_or("").to_string()));
    }
    got.sort();
    assert_eq!(
        got,
        [(200, "1 CANCEL".to_string()), (487, "1 INVITE".to_string())]
    );
    sipp_done(&mut uas, dir.path());
    // Both Reason headers, as the caller wrote them, in the CANCEL the callee got.
    let msgs = sipp_output(dir.path(), "_messages.log");
    let cancel = msgs
        .split("CANCEL sip:")
        .nth(1)
        .unwrap_or_else(|| panic!("no CANCEL in {msgs}"));
    let cancel = cancel.split("Content-Length").next().unwrap_or("");
    assert!(
        cancel.contains("Reason: SIP;cause=487;text=\"Hung up\""),
        "{cancel}"
    );
    assert!(cancel.contains("Reason: Q.850;cause=16"), "{cancel}");
}

#[test]
fn no_e2e_reason_and_local_reason_after_2xx_elsewhere() {
    let uas = Client::new();
    let uas2 = Client::new();
    let (p1, p2) = (uas.port(), uas2.port());
    let srv = Server::start(&cfg(p1, p2), &[]);
    let caller = Client::new();

    // t_set_no_e2e_cancel_reason(1): the caller's Reason is not copied.
    invite(
        &caller,
        &srv,
        "bob",
        p1,
        "no-reason-1",
        "X-No-Reason: 1\r\n",
    );
    let (inv, from) = expect_req(&uas, "INVITE", "no-reason-1");
    uas.send(from, &reply(&inv, 180, "Ringing", "u1", ""));
    assert!(caller.recv_matching("180").is_some());
    caller.send(
        srv.addr(),
        &request(
            "CANCEL",
            &format!("sip:bob@127.0.0.1:{p1}"),
            caller.port(),
            "no-reason-1",
            1,
            "Reason: SIP;cause=487\r\n",
        ),
    );
    let (cancel, from) = expect_req(&uas, "CANCEL", "no-reason-1");
    assert!(header(&cancel, "Reason").is_none(), "{cancel}");
    uas.send(from, &reply(&cancel, 200, "OK", "u1", ""));
    uas.send(from, &reply(&inv, 487, "Request Terminated", "u1", ""));

    // Parallel forking: the 2xx of one branch cancels the other with tm's Reason.
    let caller = Client::new();
    invite(&caller, &srv, "fork", p1, "fork-1", "");
    let (inv1, from1) = expect_req(&uas, "INVITE", "fork-1");
    let (inv2, from2) = expect_req(&uas2, "INVITE", "fork-1");
    uas.send(from1, &reply(&inv1, 180, "Ringing", "b1", ""));
    uas2.send(from2, &reply(&inv2, 180, "Ringing", "b2", ""));
    let mut ringing = 0;
    while ringing < 2 {
        let (m, _) = caller.recv().expect("180s relayed");
        if code(&m) == 180 {
            ringing += 1;
        }
    }
    uas.send(from1, &reply(&inv1, 200, "OK", "b1", ""));
    let (cancel, _) = expect_req(&uas2, "CANCEL", "fork-1");
    assert_eq!(
        header(&cancel, "Reason"),
        Some("SIP;cause=200;text=\"Call completed elsewhere\""),
        "{cancel}"
    );
    let fin = next_final(&caller);
    assert_eq!(code(&fin), 200, "{fin}");
}

#[test]
fn script_cancel_and_reply_by_callid_and_pvs() {
    let uas = Client::new();
    let p = uas.port();
    let srv = Server::start(&cfg(p, p), &[]);
    let caller = Client::new();

    // t_cancel_callid from the script: CANCEL with Reason cause=480, flag 5 set on the
    // transaction (seen in failure_route), 487 to the caller.
    invite(&caller, &srv, "bob", p, "scr-cancel-1", "X-Orig: first\r\n");
    let (inv, from) = expect_req(&uas, "INVITE", "scr-cancel-1");
    uas.send(
        from,
        &reply(&inv, 180, "Ringing", "s1", "X-Uas: ringing\r\n"),
    );
    assert!(caller.recv_matching("180").is_some());
    let r = control(&srv, "cancel", "scr-cancel-1");
    assert_eq!(code(&r), 200, "{r}");
    let (cancel, from) = expect_req(&uas, "CANCEL", "scr-cancel-1");
    assert_eq!(header(&cancel, "Reason"), Some("SIP;cause=480"), "{cancel}");
    uas.send(from, &reply(&cancel, 200, "OK", "s1", ""));
    uas.send(
        from,
        &reply(&inv, 487, "Request Terminated", "s1", "X-Uas: gone\r\n"),
    );
    let fin = next_final(&caller);
    assert_eq!(code(&fin), 487, "{fin}");
    assert!(
        srv.wait_log(
            "FAILURE-ROUTE scr-cancel-1 code=487 reason=[Request Terminated] rpl=gone req=first flag5=yes",
            Duration::from_secs(5)
        ),
        "{}",
        srv.log()
    );
    let log = srv.log();
    assert!(log.contains("REQUEST-ROUTE scr-cancel-1"), "{log}");
    assert!(log.contains("BRANCH-ROUTE scr-cancel-1"), "{log}");
    assert!(
        log.contains("REPLY-ROUTE scr-cancel-1 180 req=first rpl=ringing"),
        "{log}"
    );
    // Completed: nothing to cancel or answer any more.
    assert_eq!(code(&control(&srv, "cancel", "scr-cancel-1")), 404);
    assert_eq!(code(&control(&srv, "answer", "scr-cancel-1")), 404);

    // t_reply_callid: the pending call is answered 486 from elsewhere; the callee's
    // branch is canceled.
    let caller = Client::new();
    invite(&caller, &srv, "bob", p, "scr-answer-1", "");
    let (inv, from) = expect_req(&uas, "INVITE", "scr-answer-1");
    uas.send(from, &reply(&inv, 180, "Ringing", "a1", ""));
    assert!(caller.recv_matching("180").is_some());
    let r = control(&srv, "answer", "scr-answer-1");
    assert_eq!(code(&r), 200, "{r}");
    let fin = next_final(&caller);
    assert!(fin.starts_with("SIP/2.0 486 Busy Elsewhere\r\n"), "{fin}");
    let (cancel, _) = expect_req(&uas, "CANCEL", "scr-answer-1");
    assert!(cancel.contains("CSeq: 1 CANCEL"), "{cancel}");
    assert_eq!(code(&control(&srv, "answer", "no-such-call")), 404);
}

#[test]
fn t_set_fr_times_out_a_ringing_branch_before_an_older_one() {
    let uas = Client::new();
    let p = uas.port();
    let srv = Server::start(&cfg(p, p), &[]);
    assert!(wait_fifo(srv.dir.path()));
    let caller = Client::new();
    // An older call with the module's fr_inv_timer (60 s) rings first…
    invite(&caller, &srv, "bob", p, "fr-slow", "");
    let (slow, from) = expect_req(&uas, "INVITE", "fr-slow");
    uas.send(from, &reply(&slow, 180, "Ringing", "f1", ""));
    // …then one whose script called t_set_fr(1000).
    invite(&caller, &srv, "bob", p, "fr-fast", "X-Fast: 1\r\n");
    let (fast, from) = expect_req(&uas, "INVITE", "fr-fast");
    uas.send(from, &reply(&fast, 180, "Ringing", "f2", ""));
    // The first final reply the caller sees is the newer call's timeout…
    let fin = next_final(&caller);
    assert_eq!(code(&fin), 408, "{fin}");
    assert_eq!(header(&fin, "Call-ID"), Some("fr-fast"), "{fin}");
    // …whose ringing branch got a CANCEL, while the older call still rings: the only
    // CANCEL so far is the newer call's, and the older one can still be canceled.
    let (c, _) = uas.recv().expect("a CANCEL for the timed-out branch");
    assert!(c.starts_with("CANCEL "), "{c}");
    assert_eq!(header(&c, "Call-ID"), Some("fr-fast"), "{c}");
    let r = mi(srv.dir.path(), "t_cancel_callid", &["fr-slow", "1"]);
    assert!(r.starts_with("200"), "{r}");
    let (c, _) = expect_req(&uas, "CANCEL", "fr-slow");
    assert!(header(&c, "Reason").is_none(), "{c}");
}

#[test]
fn t_drop_replies_keeps_earlier_challenges_out_of_the_relayed_one() {
    let uas = Client::new();
    let uas2 = Client::new();
    let srv = Server::start(&cfg(uas.port(), uas2.port()), &[]);
    // Each MESSAGE is challenged by the first callee (realm a), failure_route tries
    // the second (realm b); its 407 goes upstream with the first one's challenge
    // aggregated, unless failure_route dropped the replies so far.
    let mut realms = Vec::new();
    for user in ["keep", "drop"] {
        let caller = Client::new();
        let callid = format!("drop-{user}");
        caller.send(
            srv.addr(),
            &request(
                "MESSAGE",
                &format!("sip:{user}@127.0.0.1"),
                caller.port(),
                &callid,
                1,
                "",
            ),
        );
        let (m, from) = expect_req(&uas, "MESSAGE", &callid);
        let ch =
            |realm: &str| format!("Proxy-Authenticate: Digest realm=\"{realm}\", nonce=\"n\"\r\n");
        uas.send(
            from,
            &reply(&m, 407, "Proxy Authentication Required", "d1", &ch("a")),
        );
        let (m, from) = expect_req(&uas2, "MESSAGE", &callid);
        uas2.send(
            from,
            &reply(&m, 407, "Proxy Authentication Required", "d2", &ch("b")),
        );
        let fin = next_final(&caller);
        assert_eq!(code(&fin), 407, "{fin}");
        let mut got: Vec<String> = headers(&fin, "Proxy-Authenticate")
            .iter()
            .map(|h| h.split('"').nth(1).unwrap_or("").to_string())
            .collect();
        got.sort();
        realms.push(got);
    }
    assert_eq!(realms, [vec!["a", "b"], vec!["b"]]);
}

/// t_suspend/t_continue: INVITEs suspended by the request route, their ids queued
/// (mqueue) and continued by a timer_route in `route[RESUME]`, which relays (arming an
/// onreply_route that marks the replies) or denies them. `forget` is never continued
/// (its own fr_timer of 1.5 s ends it with 408), `cancelme` is canceled while
/// suspended, `wrong` is continued first with a wrong label.
fn suspend_cfg(uas: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "mqueue.so"
modparam("mqueue", "mqueue", "name=susp")
modparam("mqueue", "mqueue", "name=wrong")
route {{
    if (method != "INVITE") {{
        t_relay();
        exit;
    }}
    setflag(3);
    $avp(s:who) = $rU;
    if ($rU == "forget") {{
        t_set_fr(0, 1500);
    }}
    if ($rU == "deny") {{
        # a change made after the transaction exists is kept for t_continue
        t_newtran();
        append_hf("X-Early: kept\r\n");
    }}
    if (!t_suspend()) {{
        xlog("L_ERR", "SUSPEND-FAILED $ci\n");
        sl_send_reply("500", "Not Suspended");
        exit;
    }}
    xlog("L_INFO", "SUSPENDED $ci id=$T(id_index):$T(id_label)\n");
    if ($rU == "wrong") {{
        mq_add("wrong", "$T(id_index)", "$T(id_label)");
    }} else if ($rU != "forget" && $rU != "cancelme") {{
        mq_add("susp", "$T(id_index)", "$T(id_label)");
    }}
    exit;
}}
route[RESUME] {{
    xlog("L_INFO", "RESUMED $ci who=$avp(s:who) id=$T(id_index):$T(id_label)\n");
    if (!isflagset(3)) {{
        t_reply("500", "Flags Lost");
        exit;
    }}
    if ($rU == "deny") {{
        if (!is_present_hf("X-Early")) {{
            t_reply("500", "Changes Lost");
            exit;
        }}
        t_reply("403", "Denied by resume");
        exit;
    }}
    append_hf("X-Resumed: RESUME\r\n");
    t_on_reply("MARK");
    rewritehostport("127.0.0.1:{uas}");
    t_relay();
}}
route[WRONGSEEN] {{
    t_reply("404", "Wrong label refused");
}}
onreply_route[MARK] {{
    append_hf("X-Resumed: RESUME\r\n");
}}
timer_route[resume, 1] {{
    while (mq_fetch("susp")) {{
        if (!t_continue("$mqk(susp)", "$mqv(susp)", "RESUME")) {{
            xlog("L_ERR", "CONTINUE-FAILED $mqk(susp)\n");
        }}
    }}
    while (mq_fetch("wrong")) {{
        $var(label) = $mqv(wrong) + 1;
        if (t_continue("$mqk(wrong)", "$var(label)", "RESUME")) {{
            xlog("L_ERR", "WRONG-LABEL-ACCEPTED\n");
        }} else {{
            t_continue("$mqk(wrong)", "$mqv(wrong)", "WRONGSEEN");
            if (!t_continue("$mqk(wrong)", "$mqv(wrong)", "WRONGSEEN")) {{
                xlog("L_INFO", "AGAIN-REFUSED\n");
            }}
        }}
    }}
}}
"#
    )
}

#[test]
fn t_suspend_and_t_continue_from_a_timer_route() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("tmx-susp");
    let (mut uas, uas_port) = sipp_uas_with(dir.path(), "uas.xml", &["-m", "1"]);
    let srv = Server::start(&suspend_cfg(uas_port), &[]);

    // (a) a call suspended, continued by the timer_route and relayed by route[RESUME]:
    // SIPp completes it, and its 180 and 200 carry the header only that route's
    // onreply_route adds.
    let out = sipp_once(dir.path(), "uac_resumed.xml", srv.port, &["-s", "bob"]);
    assert!(
        out.status.success(),
        "resumed call failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        srv.log()
    );
    sipp_done(&mut uas, dir.path());
    let log = srv.log();
    let susp = log.find("SUSPENDED ").expect("suspended in the log");
    let res = log.find("RESUMED ").expect("resumed in the log");
    assert!(susp < res, "{log}");
    assert!(log.contains("who=bob id="), "AVPs kept: {log}");

    // (b) route[RESUME] answers with t_reply: SIPp sees exactly that final reply (and
    // the route saw the header the request route added after t_newtran).
    let out = sipp_once(dir.path(), "uac_denied.xml", srv.port, &["-s", "deny"]);
    assert!(
        out.status.success(),
        "denied call failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        srv.log()
    );

    // (d) t_continue with a wrong label returns -1: the script's else branch continues
    // it into route[WRONGSEEN]; continuing it again is refused.
    let caller = Client::new();
    let ruri = "sip:wrong@127.0.0.1";
    caller.send(
        srv.addr(),
        &request("INVITE", ruri, caller.port(), "susp-wrong", 1, ""),
    );
    let fin = next_final(&caller);
    assert!(
        fin.starts_with("SIP/2.0 404 Wrong label refused\r\n"),
        "{fin}"
    );
    assert!(
        srv.wait_log("AGAIN-REFUSED", Duration::from_secs(5)),
        "{}",
        srv.log()
    );
    assert!(!srv.log().contains("WRONG-LABEL-ACCEPTED"), "{}", srv.log());

    // (c) never continued: a retransmission gets 100 Trying, then its fr_timer ends it
    // with 408.
    let caller = Client::new();
    let ruri = "sip:forget@127.0.0.1";
    let inv = request("INVITE", ruri, caller.port(), "susp-forget", 1, "");
    caller.send(srv.addr(), &inv);
    assert!(
        srv.wait_log("SUSPENDED susp-forget", Duration::from_secs(5)),
        "{}",
        srv.log()
    );
    caller.send(srv.addr(), &inv);
    let (m, _) = caller.recv().expect("100 Trying for the retransmission");
    assert_eq!(code(&m), 100, "{m}");
    let fin = next_final(&caller);
    assert!(fin.starts_with("SIP/2.0 408 Request Timeout\r\n"), "{fin}");
    assert_eq!(header(&fin, "Call-ID"), Some("susp-forget"));

    // A CANCEL of a suspended INVITE: 200 for the CANCEL, 487 for the INVITE.
    let caller = Client::new();
    let ruri = "sip:cancelme@127.0.0.1";
    caller.send(
        srv.addr(),
        &request("INVITE", ruri, caller.port(), "susp-cancel", 1, ""),
    );
    assert!(
        srv.wait_log("SUSPENDED susp-cancel", Duration::from_secs(5)),
        "{}",
        srv.log()
    );
    caller.send(
        srv.addr(),
        &request("CANCEL", ruri, caller.port(), "susp-cancel", 1, ""),
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = next_final(&caller);
        got.push((code(&m), header(&m, "CSeq").unwrap_or("").to_string()));
    }
    got.sort();
    assert_eq!(
        got,
        [(200, "1 CANCEL".to_string()), (487, "1 INVITE".to_string())]
    );
    let log = srv.log();
    assert!(!log.contains("SUSPEND-FAILED"), "{log}");
    assert!(!log.contains("CONTINUE-FAILED"), "{log}");
}

#[test]
fn t_continue_to_an_unknown_route_is_a_startup_error() {
    let tmp = TempDir::new("tmx-cont-cfg");
    let p = tmp.file("bad.cfg");
    std::fs::write(
        &p,
        "loadmodule \"tm.so\"\nloadmodule \"tmx.so\"\nroute {\n    t_suspend();\n}\ntimer_route[t, 1] {\n    t_continue(\"1\", \"2\", \"NOPE\");\n}\n",
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("no route[NOPE]"), "{err}");
    assert!(err.contains(":7:"), "file:line:col: {err}");
}

//! app_lua (issue 23): the guide's hello-world routing written in Lua and run with
//! `cfgengine "lua"` (SIPp register and calls with BYE, CANCEL/487, 404, 483, 513);
//! `lua_run`/`lua_dostring` from the configuration with `sr.pv` writes the
//! configuration reads afterwards; run-time errors and endless loops answered 500 with
//! the traceback in the log while the worker goes on; `app_lua_reload` picked up by
//! every process; bad scripts refused at start-up with their file and line.

use crate::harness::kemi::{Kemi, expect, options, reply_to};
use crate::harness::*;
use std::time::Duration;

const LUA: Kemi = Kemi {
    engine: "lua",
    module: "app_lua",
    data: "lua",
    ext: "lua",
    tag: "lua",
};

fn kemi_cfg(children: u32, script: &std::path::Path, extra: &str) -> String {
    LUA.cfg(children, script, extra)
}

fn script_in(dir: &TempDir, name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    LUA.script_in(dir, name, edit)
}

/// The guide's hello world (register, 20 calls, CANCEL/487, 404, 483, 513, scanner):
/// the flows tests/it/seed.rs runs against etc/openser.cfg, shared with the other
/// engine (tests/harness/kemi.rs).
#[test]
fn kemi_hello_world_register_call_cancel_and_errors() {
    LUA.hello_world();
}

/// Not KEMI: the configuration calls Lua. `lua_run` writes `$var`, AVPs and `$rU`
/// through `sr.pv`, and the configuration reads them afterwards; seed 002's
/// `lua_dostring` reply and its `my_append_hdr_ruri()`; `KSR.x.modf`; a failing
/// function returns −1 to the configuration with the traceback in the log.
#[test]
fn cfg_calls_lua_pv_writes_dostring_and_errors() {
    let dir = TempDir::new("lua-cfg");
    let script = script_in(&dir, "cfgmode.lua", |s| s);
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "app_lua.so"
modparam("app_lua", "load", "{}")
route {{
    if ($rU == "vars") {{
        $avp(s:gone) = "x";
        if (!lua_run("set_vars", "$fU")) {{
            sl_send_reply("500", "lua_run failed");
            exit;
        }}
        xlog("L_NOTICE", "after lua: var=$var(from_lua) avp=$avp(s:lua_count)\n");
        append_to_reply("X-Var: $var(from_lua)\r\n");
        append_to_reply("X-Count: $avp(s:lua_count)\r\n");
        append_to_reply("X-Name: $avp(s:lua_name)\r\n");
        append_to_reply("X-User: $rU\r\n");
        if ($avp(s:gone) == null) {{
            append_to_reply("X-Gone: yes\r\n");
        }}
        sl_send_reply("200", "OK");
        exit;
    }}
    if ($rU == "dostring") {{
        lua_dostring("sr.sl.send_reply(200, [[Lua says is ok]])");
        exit;
    }}
    if ($rU == "seed") {{
        lua_run("my_append_hdr_ruri");
        sl_send_reply("200", "OK");
        exit;
    }}
    if ($rU == "modf") {{
        if (lua_run("check_user", "modf")) {{
            sl_send_reply("200", "modf");
        }}
        exit;
    }}
    if (!lua_run("failing")) {{
        sl_send_reply("500", "Lua failed");
        exit;
    }}
    sl_send_reply("200", "unexpected");
}}
"#,
        script.display()
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let c = Client::new();
    let ask = |user: &str, id: &str| -> String {
        c.send(
            s.addr(),
            &request(
                "OPTIONS",
                &format!("sip:{user}@127.0.0.1:{}", s.port),
                c.port(),
                id,
                1,
                "",
            ),
        );
        c.recv_matching("SIP/2.0")
            .unwrap_or_else(|| panic!("no reply for {user}"))
    };
    let r = ask("vars", "luavars");
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    assert_eq!(header(&r, "X-Var"), Some("hello alice"), "{r}");
    assert_eq!(header(&r, "X-Count"), Some("42"), "{r}");
    assert_eq!(header(&r, "X-Name"), Some("lua-alice"), "{r}");
    assert_eq!(header(&r, "X-User"), Some("rewritten"), "{r}");
    assert_eq!(header(&r, "X-Gone"), Some("yes"), "{r}");
    let r = ask("dostring", "luados");
    assert!(r.starts_with("SIP/2.0 200 Lua says is ok"), "{r}");
    let r = ask("seed", "luaseed");
    assert_eq!(
        header(&r, "P-RUri"),
        Some(format!("<sip:seed@127.0.0.1:{}>", s.port).as_str()),
        "{r}"
    );
    let r = ask("modf", "luamodf");
    assert!(r.starts_with("SIP/2.0 200 modf"), "{r}");
    assert_eq!(header(&r, "X-Modf"), Some("yes"), "{r}");
    let r = ask("other", "luafail");
    assert!(r.starts_with("SIP/2.0 500 Lua failed"), "{r}");
    assert!(s.stop().success());
    let log = s.log();
    assert!(log.contains("message to syslog from Lua"), "{log}");
    assert!(log.contains("after lua: var=hello alice avp=42"), "{log}");
    assert!(log.contains("failing on purpose"), "{log}");
    assert!(log.contains("stack traceback"), "{log}");
}

/// A run-time error deep in the Lua call chain: 500, the error and its traceback
/// (with the script's file and the functions) in the log, and the same worker serves
/// the next request; an endless loop is stopped by `instruction_limit` the same way.
#[test]
fn kemi_runtime_error_and_endless_loop_give_500() {
    let dir = TempDir::new("lua-err");
    let script = script_in(&dir, "errors.lua", |s| s);
    let cfg = kemi_cfg(
        1,
        &script,
        "modparam(\"app_lua\", \"instruction_limit\", 200000)",
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let c = Client::new();
    let ask = |user: &str, id: &str| -> String {
        c.send(
            s.addr(),
            &options(s.port, c.port(), id, "").replace("sip:bob@", &format!("sip:{user}@")),
        );
        c.recv_matching("SIP/2.0")
            .unwrap_or_else(|| panic!("no reply for {user}"))
    };
    let r = ask("boom", "luaboom");
    assert!(r.starts_with("SIP/2.0 500 Server Internal Error"), "{r}");
    let r = ask("fine", "luafine1");
    assert!(r.starts_with("SIP/2.0 200 Still here"), "{r}");
    let r = ask("loop", "lualoop");
    assert!(r.starts_with("SIP/2.0 500 Server Internal Error"), "{r}");
    let r = ask("fine", "luafine2");
    assert!(r.starts_with("SIP/2.0 200 Still here"), "{r}");
    assert!(s.stop().success());
    let log = s.log();
    assert!(log.contains("attempt to index a nil value"), "{log}");
    assert!(log.contains("stack traceback"), "{log}");
    assert!(
        log.contains("'deeper'"),
        "the traceback names the caller: {log}"
    );
    assert!(log.contains("errors.lua:"), "{log}");
    assert!(log.contains("instruction limit (200000) exceeded"), "{log}");
}

/// `app_lua_reload` over the MI FIFO: every process answers from the new file
/// afterwards (two receivers, requests from several clients at once so that both
/// serve some); a broken file is refused and the running scripts stay.
#[test]
fn reload_picks_up_a_changed_file_in_every_process() {
    let dir = TempDir::new("lua-reload");
    let script = dir.file("routing.lua");
    let version = |v: &str| {
        format!(
            "function ksr_request_route()\n\
             \tKSR.hdr.append_to_reply(\"X-Pid: \" .. KSR.pv.get(\"$pp\") .. \"\\r\\n\")\n\
             \tKSR.sl.send_reply(200, \"{v}\")\n\
             end\n"
        )
    };
    std::fs::write(&script, version("v1")).unwrap();
    let cfg = kemi_cfg(
        2,
        &script,
        "loadmodule \"mi_fifo.so\"\n\
         modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
         modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")",
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    assert!(wait_fifo(s.dir.path()), "{}", s.log());
    // A burst from several clients: replies carry the version and the worker's pid.
    let burst = |tag: &str| -> Vec<(String, String)> {
        let clients: Vec<Client> = (0..8).map(|_| Client::new()).collect();
        for (k, c) in clients.iter().enumerate() {
            for n in 0..4 {
                c.send(
                    s.addr(),
                    &options(s.port, c.port(), &format!("{tag}{k}x{n}"), ""),
                );
            }
        }
        let mut out = Vec::new();
        for c in &clients {
            for _ in 0..4 {
                let (r, _) = c.recv().expect("a reply");
                let reason = r.lines().next().unwrap_or("").to_string();
                out.push((reason, header(&r, "X-Pid").unwrap_or("").to_string()));
            }
        }
        out
    };
    let before = burst("a");
    assert!(before.iter().all(|(r, _)| r.ends_with(" v1")), "{before:?}");
    std::fs::write(&script, version("v2")).unwrap();
    let out = mi(s.dir.path(), "app_lua_reload", &[]);
    assert!(out.starts_with("200"), "{out}\n{}", s.log());
    // Bursts until both receivers have answered (each must answer v2).
    let mut pids: Vec<String> = Vec::new();
    for round in 0..20 {
        let after = burst(&format!("b{round}-"));
        assert!(
            after.iter().all(|(r, _)| r.ends_with(" v2")),
            "{after:?}\n{}",
            s.log()
        );
        pids.extend(after.into_iter().map(|(_, p)| p));
        pids.sort();
        pids.dedup();
        if pids.len() >= 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "both receivers should have served: {pids:?}");
    // A broken file is refused with its error; the processes keep v2.
    std::fs::write(&script, "function ksr_request_route(\n").unwrap();
    let out = mi(s.dir.path(), "app_lua_reload", &[]);
    assert!(out.starts_with("500"), "{out}");
    assert!(out.contains("routing.lua"), "{out}");
    let again = burst("c");
    assert!(again.iter().all(|(r, _)| r.ends_with(" v2")), "{again:?}");
    assert!(s.stop().success());
    let log = s.log();
    // Every receiver that served after the reload switched before doing so.
    for p in &pids {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("({p}) ")) && l.contains("reloaded in this process")),
            "pid {p} served v2 without logging its reload:\n{log}"
        );
    }
}

/// Bad scripts and engines are start-up errors: a syntax error names the script's
/// file and line at the modparam; `cfgengine "lua"` without app_lua; a KEMI script
/// without ksr_request_route; top-level code that fails.
#[test]
fn bad_scripts_and_engines_stop_the_start() {
    let dir = TempDir::new("lua-bad");
    let bad = dir.file("bad.lua");
    std::fs::write(&bad, "-- comment\nlocal x = 1\nfunction f(\n  x +\nend\n").unwrap();
    let cfgp = dir.file("bad.cfg");
    std::fs::write(
        &cfgp,
        format!(
            "listen=udp:127.0.0.1:5060\nloadmodule \"app_lua.so\"\nmodparam(\"app_lua\", \"load\", \"{}\")\n",
            bad.display()
        ),
    )
    .unwrap();
    let (rc, out, err) = run(&["-c", "-f", cfgp.to_str().unwrap()]);
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("bad.cfg:3:"), "{err}");
    assert!(err.contains("bad.lua:"), "{err}");

    std::fs::write(
        &cfgp,
        "listen=udp:127.0.0.1:5060\ncfgengine \"lua\"\nloadmodule \"sl.so\"\n",
    )
    .unwrap();
    let (rc, _, err) = run(&["-c", "-f", cfgp.to_str().unwrap()]);
    assert_ne!(rc, 0, "{err}");
    assert!(err.contains("bad.cfg:2:"), "{err}");
    assert!(err.contains("app_lua"), "{err}");

    // These fail in mod_init: start the server for real, it must exit by itself.
    let start_fails = |script: &str, want: &str| {
        let lua = dir.file("start.lua");
        std::fs::write(&lua, script).unwrap();
        let port = free_udp_port();
        std::fs::write(
            &cfgp,
            kemi_cfg(1, &lua, "").replace("{PORT}", &port.to_string()),
        )
        .unwrap();
        let err = start_refused(&cfgp);
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    };
    start_fails("function other() end\n", "no function ksr_request_route()");
    start_fails(
        "local t = nil\nfunction ksr_request_route() end\nprint(t.x)\n",
        "start.lua:3:",
    );
}

/// KEMI failure, branch and reply routes: `KSR.tm.t_on_failure("name")` names a Lua
/// function that tm runs (by its handler index) when the branch fails — here a 503
/// rerouted to a second UAS; `t_on_branch` adds a header to each branch;
/// `t_on_reply` and `ksr_reply_route` see the replies.
#[test]
fn kemi_failure_branch_and_reply_routes() {
    let dir = TempDir::new("lua-fail");
    let uas1 = Client::new();
    let uas2 = Client::new();
    let script = dir.file("routing.lua");
    std::fs::write(
        &script,
        format!(
            r#"
function ksr_request_route()
	if KSR.is_INVITE() then
		KSR.tm.t_on_failure("ksr_failure_manage")
		KSR.tm.t_on_branch("ksr_branch_manage")
		KSR.tm.t_on_reply("ksr_onreply_manage")
	end
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
end

function ksr_branch_manage()
	KSR.hdr.append("X-Branch: " .. KSR.pv.get("$rU") .. "\r\n")
end

function ksr_onreply_manage()
	KSR.notice("lua onreply " .. KSR.pv.get("$rs") .. "\n")
end

function ksr_reply_route()
	KSR.notice("lua reply route " .. KSR.pv.get("$rs") .. "\n")
end

function ksr_failure_manage()
	if KSR.tm.t_check_status("503") > 0 then
		KSR.pv.sets("$ru", "sip:second@127.0.0.1:{}")
		KSR.tm.t_relay()
	end
end
"#,
            uas2.port()
        ),
    )
    .unwrap();
    let cfg = kemi_cfg(2, &script, "");
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let caller = Client::new();
    let ruri = format!("sip:first@127.0.0.1:{}", uas1.port());
    caller.send(
        s.addr(),
        &request(
            "INVITE",
            &ruri,
            caller.port(),
            "luafailure",
            1,
            "Contact: <sip:alice@127.0.0.1>\r\n",
        ),
    );
    let (i1, f1) = expect(&uas1, "INVITE", Duration::from_secs(5)).expect("INVITE at uas1");
    assert_eq!(header(&i1, "X-Branch"), Some("first"), "{i1}");
    uas1.send(f1, &reply_to(&i1, 503, "Service Unavailable", "u1"));
    let (i2, f2) = expect(&uas2, "INVITE", Duration::from_secs(5)).expect("rerouted INVITE");
    assert!(
        i2.starts_with(&format!("INVITE sip:second@127.0.0.1:{} ", uas2.port())),
        "{i2}"
    );
    assert_eq!(header(&i2, "X-Branch"), Some("second"), "{i2}");
    uas2.send(f2, &reply_to(&i2, 200, "OK", "u2"));
    let (ok, _) = expect(&caller, "200", Duration::from_secs(5)).expect("200 from uas2");
    assert!(header(&ok, "To").unwrap().contains("tag=u2"), "{ok}");
    assert!(s.stop().success());
    let log = s.log();
    assert!(log.contains("lua onreply 503"), "{log}");
    assert!(log.contains("lua reply route 200"), "{log}");
    assert!(!log.contains("ERROR:app_lua"), "{log}");
}

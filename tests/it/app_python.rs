//! app_python (issue 23): the guide's hello-world routing written in Python and run
//! with `cfgengine "python"` (SIPp register and calls with BYE, CANCEL/487, 404, 483,
//! 513); `python_exec` from the configuration with `KSR.pv` writes the configuration
//! reads afterwards; run-time exceptions and endless loops answered 500 with the
//! traceback in the log while the worker goes on; KEMI failure, branch and reply
//! routes; `app_python.reload`; bad scripts refused at start-up with file and line.

use crate::harness::kemi::{Kemi, expect, options, reply_to};
use crate::harness::*;
use std::time::Duration;

const PY: Kemi = Kemi {
    engine: "python",
    module: "app_python",
    data: "python",
    ext: "py",
    tag: "py",
};

fn kemi_cfg(children: u32, script: &std::path::Path, extra: &str) -> String {
    PY.cfg(children, script, extra)
}

fn script_in(dir: &TempDir, name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    PY.script_in(dir, name, edit)
}

/// The guide's hello world (register, 20 calls, CANCEL/487, 404, 483, 513, scanner):
/// the flows tests/it/seed.rs runs against etc/openser.cfg, shared with the other
/// engine (tests/harness/kemi.rs).
#[test]
fn kemi_hello_world_register_call_cancel_and_errors() {
    PY.hello_world();
}

/// Not KEMI: the configuration calls Python. `python_exec` writes `$var`, AVPs and
/// `$rU` through `KSR.pv`, and the configuration reads them afterwards; the `msg`
/// object; `KSR.x.modf`; a failing method returns −1 to the configuration with the
/// traceback in the log.
#[test]
fn cfg_calls_python_pv_writes_and_errors() {
    let dir = TempDir::new("py-cfg");
    let script = script_in(&dir, "cfgmode.py", |s| s);
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "app_python.so"
modparam("app_python", "load", "{}")
route {{
    if ($rU == "vars") {{
        $avp(s:gone) = "x";
        if (!python_exec("set_vars", "$fU")) {{
            sl_send_reply("500", "python_exec failed");
            exit;
        }}
        xlog("L_NOTICE", "after python: var=$var(from_py) avp=$avp(s:py_count)\n");
        append_to_reply("X-Var: $var(from_py)\r\n");
        append_to_reply("X-Count: $avp(s:py_count)\r\n");
        append_to_reply("X-Name: $avp(s:py_name)\r\n");
        append_to_reply("X-User: $rU\r\n");
        if ($avp(s:gone) == null) {{
            append_to_reply("X-Gone: yes\r\n");
        }}
        sl_send_reply("200", "OK");
        exit;
    }}
    if ($rU == "ruri") {{
        python_exec("append_ruri");
        sl_send_reply("200", "OK");
        exit;
    }}
    if ($rU == "modf") {{
        if (python_exec("check_user", "modf")) {{
            sl_send_reply("200", "modf");
        }}
        exit;
    }}
    if (!python_exec("failing")) {{
        sl_send_reply("500", "Python failed");
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
    let r = ask("vars", "pyvars");
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    assert_eq!(header(&r, "X-Var"), Some("hello alice"), "{r}");
    assert_eq!(header(&r, "X-Count"), Some("42"), "{r}");
    assert_eq!(header(&r, "X-Name"), Some("py-alice"), "{r}");
    assert_eq!(header(&r, "X-User"), Some("rewritten"), "{r}");
    assert_eq!(header(&r, "X-Gone"), Some("yes"), "{r}");
    let r = ask("ruri", "pyruri");
    assert_eq!(
        header(&r, "P-RUri"),
        Some(format!("<sip:ruri@127.0.0.1:{}>", s.port).as_str()),
        "{r}"
    );
    assert_eq!(header(&r, "P-Method"), Some("OPTIONS"), "{r}");
    let r = ask("modf", "pymodf");
    assert!(r.starts_with("SIP/2.0 200 modf"), "{r}");
    assert_eq!(header(&r, "X-Modf"), Some("yes"), "{r}");
    let r = ask("other", "pyfail");
    assert!(r.starts_with("SIP/2.0 500 Python failed"), "{r}");
    assert!(s.stop().success());
    let log = s.log();
    assert!(log.contains("message to syslog from Python"), "{log}");
    assert!(
        log.contains("after python: var=hello alice avp=42"),
        "{log}"
    );
    assert!(log.contains("ValueError: failing on purpose"), "{log}");
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
}

/// A run-time exception deep in the Python call chain: 500, the exception and its
/// traceback (with the script's file and the functions) in the log, and the same
/// worker serves the next request; an endless loop is stopped by `time_limit` the
/// same way; `KSR.x.exit()` inside `try: … except Exception:` still ends the handler.
#[test]
fn kemi_runtime_error_and_endless_loop_give_500() {
    let dir = TempDir::new("py-err");
    let script = script_in(&dir, "errors.py", |s| s);
    let cfg = kemi_cfg(1, &script, "modparam(\"app_python\", \"time_limit\", 200)");
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
    let r = ask("boom", "pyboom");
    assert!(r.starts_with("SIP/2.0 500 Server Internal Error"), "{r}");
    let r = ask("fine", "pyfine1");
    assert!(r.starts_with("SIP/2.0 200 Still here"), "{r}");
    let r = ask("loop", "pyloop");
    assert!(r.starts_with("SIP/2.0 500 Server Internal Error"), "{r}");
    let r = ask("fine", "pyfine2");
    assert!(r.starts_with("SIP/2.0 200 Still here"), "{r}");
    let r = ask("swallow", "pyswallow");
    assert!(r.starts_with("SIP/2.0 200 Exited"), "{r}");
    let r = ask("fine", "pyfine3");
    assert!(r.starts_with("SIP/2.0 200 Still here"), "{r}");
    assert!(s.stop().success());
    let log = s.log();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("TypeError"), "{log}");
    assert!(
        log.contains("in deeper"),
        "the traceback names the caller: {log}"
    );
    assert!(log.contains("errors.py\", line"), "{log}");
    assert!(log.contains("time limit (200 ms of CPU) exceeded"), "{log}");
    assert!(!log.contains("exit was swallowed"), "{log}");
}

/// `app_python.reload` over the MI FIFO: the processes answer from the new file
/// afterwards; a broken file is refused and the running script stays.
#[test]
fn reload_picks_up_a_changed_file() {
    let dir = TempDir::new("py-reload");
    let script = dir.file("routing.py");
    let version = |v: &str| {
        format!(
            "import KSR\n\
             class R:\n\
             \x20   def ksr_request_route(self, msg):\n\
             \x20       KSR.sl.send_reply(200, \"{v}\")\n\
             \x20       return 1\n\
             def mod_init():\n\
             \x20   return R()\n"
        )
    };
    std::fs::write(&script, version("v1")).unwrap();
    let cfg = kemi_cfg(
        1,
        &script,
        "loadmodule \"mi_fifo.so\"\n\
         modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
         modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")",
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    assert!(wait_fifo(s.dir.path()), "{}", s.log());
    let c = Client::new();
    let ask = |id: &str| -> String {
        c.send(s.addr(), &options(s.port, c.port(), id, ""));
        c.recv_matching("SIP/2.0").expect("a reply")
    };
    assert!(ask("pyr1").starts_with("SIP/2.0 200 v1"));
    std::fs::write(&script, version("v2")).unwrap();
    let out = mi(s.dir.path(), "app_python.reload", &[]);
    assert!(out.starts_with("200"), "{out}\n{}", s.log());
    let r = ask("pyr2");
    assert!(r.starts_with("SIP/2.0 200 v2"), "{r}\n{}", s.log());
    std::fs::write(&script, "def mod_init(:\n").unwrap();
    let out = mi(s.dir.path(), "app_python.reload", &[]);
    assert!(out.starts_with("500"), "{out}");
    assert!(out.contains("routing.py"), "{out}");
    assert!(ask("pyr3").starts_with("SIP/2.0 200 v2"));
    assert!(s.stop().success());
    assert!(s.log().contains("reloaded in this process"), "{}", s.log());
}

/// Bad scripts are start-up errors: a syntax error names the script's file and
/// line; a script without mod_init; a KEMI handler object without
/// ksr_request_route; top-level code that raises.
#[test]
fn bad_python_scripts_stop_the_start() {
    let dir = TempDir::new("py-bad");
    let cfgp = dir.file("bad.cfg");
    // A syntax error is found at the modparam line, also by `openser -c`.
    let bad = dir.file("bad.py");
    std::fs::write(&bad, "# comment\nx = 1\nif x\n    pass\n").unwrap();
    std::fs::write(
        &cfgp,
        format!(
            "listen=udp:127.0.0.1:5060\nloadmodule \"app_python.so\"\nmodparam(\"app_python\", \"load\", \"{}\")\n",
            bad.display()
        ),
    )
    .unwrap();
    let (rc, out, err) = run(&["-c", "-f", cfgp.to_str().unwrap()]);
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("bad.cfg:3:"), "{err}");
    assert!(err.contains("bad.py:3:"), "{err}");
    let start_fails = |script: &str, want: &[&str]| {
        let py = dir.file("start.py");
        std::fs::write(&py, script).unwrap();
        let port = free_udp_port();
        std::fs::write(
            &cfgp,
            kemi_cfg(1, &py, "").replace("{PORT}", &port.to_string()),
        )
        .unwrap();
        let err = start_refused(&cfgp);
        for w in want {
            assert!(err.contains(w), "{w:?} not in:\n{err}");
        }
    };
    start_fails(
        "# comment\nx = 1\ndef f(:\n    pass\n",
        &["start.py:3:", "SyntaxError"],
    );
    start_fails("x = 1\n", &["no function mod_init()"]);
    start_fails(
        "class R:\n    pass\ndef mod_init():\n    return R()\n",
        &["no method ksr_request_route"],
    );
    start_fails(
        "import KSR\nx = None\nprint(x.y)\n",
        &["start.py\", line 3", "AttributeError"],
    );
}

/// KEMI failure, branch and reply routes: `KSR.tm.t_on_failure("name")` names a Python
/// method that tm runs (by its handler index) when the branch fails — here a 503
/// rerouted to a second UAS; `t_on_branch` adds a header to each branch;
/// `t_on_reply` and `ksr_reply_route` see the replies.
#[test]
fn kemi_failure_branch_and_reply_routes_py() {
    let dir = TempDir::new("py-fail");
    let uas1 = Client::new();
    let uas2 = Client::new();
    let script = dir.file("routing.py");
    std::fs::write(
        &script,
        format!(
            r#"
import KSR

class Router:
    def ksr_request_route(self, msg):
        if KSR.is_INVITE():
            KSR.tm.t_on_failure("ksr_failure_manage")
            KSR.tm.t_on_branch("ksr_branch_manage")
            KSR.tm.t_on_reply("ksr_onreply_manage")
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        return 1

    def ksr_branch_manage(self, msg):
        KSR.hdr.append("X-Branch: " + KSR.pv.get("$rU") + "\r\n")
        return 1

    def ksr_onreply_manage(self, msg):
        KSR.notice("py onreply " + str(KSR.pv.get("$rs")) + "\n")
        return 1

    def ksr_reply_route(self, msg):
        KSR.notice("py reply route " + str(KSR.pv.get("$rs")) + "\n")
        return 1

    def ksr_failure_manage(self, msg):
        if KSR.tm.t_check_status("503") > 0:
            KSR.pv.sets("$ru", "sip:second@127.0.0.1:{}")
            KSR.tm.t_relay()
        return 1

def mod_init():
    return Router()
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
            "pyfailure",
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
    assert!(log.contains("py onreply 503"), "{log}");
    assert!(log.contains("py reply route 200"), "{log}");
    assert!(!log.contains("ERROR:app_python"), "{log}");
}

//! app_python (SIP Router 3.1 / Kamailio's app_python3; Kamailio's KEMI for Python):
//! routing logic and helpers written in Python 3, with the SIP message, the
//! configuration's variables and its functions at hand.
//!
//! The script (Kamailio app_python3's shape, so Kamailio scripts move over): the
//! `load` file is run as a module; its `mod_init()` returns the handler object, whose
//! methods are what the configuration and the KEMI routes call, each as
//! `method(self, msg)` (`msg`: a small message object; everything else goes through
//! `KSR`). `import KSR` gives the API: Kamailio KEMI's names over the table app_lua
//! publishes too (`openser_core::script::kemi`) — `KSR.info`/`err`/`dbg`/…,
//! `KSR.pv.get`/`sets`/`seti`/`unset`/`is_null`, `KSR.hdr.*`, `KSR.sl.send_reply`,
//! `KSR.tm.t_relay`/`t_on_failure`/`t_on_reply`/…, `KSR.rr.*`, `KSR.registrar.*`,
//! `KSR.auth*.*`, `KSR.maxfwd.*`, `KSR.x.modf("function", args…)` (any function the
//! configuration could call, with the same fixup and route-type check),
//! `KSR.x.exit()`/`KSR.x.drop()` (end the handler as `exit`/`drop`; raised as a
//! `SystemExit`, which `except Exception:` does not catch).
//!
//! Function: `python_exec(method[, param])` — call a method of the handler object
//! with `msg` (and the parameter, PVs expanded). Its value: the int the method
//! returns (0 stops the script as a cfg function's 0), a bool as 1/−1, anything else
//! 1; 0 after `KSR.x.exit()`; −1 on an error (logged with the traceback).
//!
//! Routing in Python (KEMI mode): with the global `cfgengine "python"` the request
//! route is the method `ksr_request_route`, the main reply route `ksr_reply_route`
//! (if defined; both looked up when the script is loaded or reloaded), and failure,
//! per-transaction reply and branch routes are the methods named in
//! `KSR.tm.t_on_failure("name")`, `t_on_reply`, `t_on_branch`. The configuration
//! keeps its globals, `loadmodule` and `modparam` lines; its route blocks other than
//! startup, timer and event routes are not run.
//!
//! One interpreter per process, initialised in `child_init` — after fork, never in
//! the attendant, since CPython's runtime does not survive fork. The start-up check:
//! `mod_init` forks a short-lived child that initialises Python, runs the script and
//! its `mod_init()` and reports back; a syntax error (with the script's file and
//! line), an exception in the top-level code, no `mod_init()`, or (KEMI) no
//! `ksr_request_route` method stops the start-up. A run-time exception in a handler
//! is logged with the Python traceback; in KEMI mode the request gets `500 Server
//! Internal Error`; the worker goes on.
//!
//! Parameters:
//! * `load` (string; `script_name` is the same) — the Python script (relative paths:
//!   from the configuration file's directory).
//! * `mod_init_function` (string, default `mod_init`) — the script function returning
//!   the handler object.
//! * `child_init_method` (string, default `child_init`) — a handler-object method
//!   called with the process rank in each process, if defined.
//! * `reload` (int, default 1) — whether the MI command `app_python.reload` (also
//!   `app_python_reload`) may reload the script: checked first in a trial child,
//!   then a generation number in shm is raised and every process rebuilds its
//!   interpreter before its next request.
//! * `time_limit` (int, ms, default 1000, 0 = none) — the CPU time one handler (with
//!   the handlers it runs) may use: each process with Python keeps an
//!   `ITIMER_VIRTUAL` timer running (period: a quarter of the limit; set once, no
//!   system call per request), its signal's handler counts the ticks the running
//!   outermost handler sees and raises an exception in the Python code at the 5th
//!   (2nd under 40 ms): the handler is stopped after between 1 and 1.25 × the limit
//!   of CPU (an endless loop costs one request, not a worker; a script catching the
//!   exception gets it again each period). Time spent inside `KSR` functions counts
//!   too; the exception is raised when control is back in Python.

mod api;
mod interp;

use interp::{Outcome, call_method, run_with};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, MiExport, ModParamValue, ModuleExports, Param,
    StrParam,
};
use openser_core::route::ANY_ROUTE;
use openser_core::script::engine::Engine;
use openser_core::script::{Ctx, kemi};
use pyo3::prelude::*;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "app_python",
    params: &[
        Param::func("load", set_load),
        Param::func("script_name", set_load),
        Param::str("mod_init_function", &P.mod_init_function),
        Param::str("child_init_method", &P.child_init_method),
        Param::bool("reload", &P.reload),
        Param::int_range("time_limit", &P.time_limit, 0, 86_400_000),
    ],
    cmds: &[CmdExport::new(
        "python_exec",
        1,
        2,
        ANY_ROUTE,
        cmd_python_exec,
    )],
    mi: &[
        MiExport::new("app_python.reload", mi_reload).no_input(),
        MiExport::new("app_python_reload", mi_reload).no_input(),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    engine: Some(&ENGINE),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells (defaults as Kamailio's app_python3; `time_limit` is ours).
pub struct Params {
    pub mod_init_function: StrParam,
    pub child_init_method: StrParam,
    pub reload: BoolParam,
    pub time_limit: IntParam,
}

pub static P: Params = Params {
    mod_init_function: StrParam::new("mod_init"),
    child_init_method: StrParam::new("child_init"),
    reload: BoolParam::new(true),
    time_limit: IntParam::new(1000),
};

/// The KEMI engine `cfgengine "python"` selects (`"python3"` is not a separate one):
/// the shared callbacks over this module's interpreter (`impl KemiInterp`).
static ENGINE: Engine = Engine {
    name: "python",
    run: kemi::engine_run::<interp::Interp>,
    route_index: kemi::engine_route_index::<interp::Interp>,
    has: kemi::engine_has::<interp::Interp>,
};

/// The reload generation in shm (made in `mod_init`, before fork).
static GEN: OnceLock<&'static AtomicU64> = OnceLock::new();
/// The script (set while the configuration loads, in the attendant).
static SCRIPT: OnceLock<PathBuf> = OnceLock::new();

pub(crate) use kemi::handler_index;

fn generation() -> u64 {
    GEN.get().map_or(0, |g| g.load(Ordering::Acquire))
}

fn script() -> Option<&'static std::path::Path> {
    SCRIPT.get().map(PathBuf::as_path)
}

fn set_load(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("load: a file name string expected".into());
    };
    let path = kemi::resolve_script(s.trim());
    if !path.is_file() {
        return Err(format!("Python script {} not found", path.display()));
    }
    if SCRIPT.get().is_some_and(|p| *p != path) {
        return Err("app_python loads one script (load given twice)".into());
    }
    // A syntax error is reported here, at the modparam's line (also with `-c`).
    trial(&path, false)?;
    let _ = SCRIPT.set(path);
    Ok(())
}

/// The script checked in a short-lived child (Python is never initialised in the
/// attendant): compiled only, or (`full`) run with its `mod_init()`. What the child
/// found: whether the handler object has `ksr_request_route`.
fn trial(file: &std::path::Path, full: bool) -> Result<bool, String> {
    let (mut ours, mut theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    match openser_core::sys::fork().map_err(|e| format!("fork: {e}"))? {
        openser_core::sys::ForkResult::Child => {
            drop(ours);
            interp::allow();
            let text = Python::with_gil(|py| {
                let r = if full {
                    interp::Interp::new(py, file, 0).map(|i| i.request_fn.is_some())
                } else {
                    interp::compile(py, file).map(|()| false)
                };
                match r {
                    Ok(has) => format!("OK {}", u8::from(has)),
                    Err(e) => format!("ERR {e}"),
                }
            });
            let _ = theirs.write_all(text.as_bytes());
            drop(theirs);
            openser_core::sys::exit_now(0);
        }
        openser_core::sys::ForkResult::Parent(pid) => {
            drop(theirs);
            let _ = ours.set_read_timeout(Some(Duration::from_secs(30)));
            let mut out = String::new();
            let r = ours.read_to_string(&mut out);
            if r.is_err() {
                let _ = openser_core::sys::kill(pid, libc_sigkill());
            }
            let _ = openser_core::sys::waitpid(pid, false);
            if let Err(e) = r {
                return Err(format!("checking the Python script: {e}"));
            }
            match out.split_once(' ') {
                Some(("OK", v)) => Ok(v == "1"),
                Some(("ERR", e)) => Err(e.to_string()),
                _ => Err(format!(
                    "checking the Python script {}: no answer",
                    file.display()
                )),
            }
        }
    }
}

const fn libc_sigkill() -> i32 {
    9
}

fn mod_init() -> Result<(), String> {
    let g = shm::alloc_static(AtomicU64::new(1)).ok_or("out of shared memory")?;
    let _ = GEN.set(g);
    let kemi_mode = openser_core::script::engine::active().is_some_and(|e| e.name == "python");
    if script().is_none() {
        return Err(
            "app_python needs a script: modparam(\"app_python\", \"load\", \"file.py\")".into(),
        );
    }
    let has_request = trial(script().unwrap_or(std::path::Path::new("")), true)?;
    if kemi_mode && !has_request {
        return Err(format!(
            "cfgengine \"python\": the handler object of {} has no method ksr_request_route",
            script().unwrap_or(std::path::Path::new("")).display()
        ));
    }
    Ok(())
}

fn child_init(rank: i32) -> Result<(), String> {
    interp::allow();
    match interp::current() {
        Ok(i) => {
            let m = P.child_init_method.get();
            if i.has_method(m) {
                Python::with_gil(|py| {
                    if let Err(e) = i.obj.bind(py).call_method1(m, (rank,)) {
                        openser_core::log_err!("{m}({rank}): {}", interp::describe(py, &e));
                    }
                });
            }
        }
        // A script changed on disk since start-up: logged, retried at the next request.
        Err(e) => openser_core::log_err!("{e}"),
    }
    Ok(())
}

/// The CPU-time limit's clock (`time_limit` ms; None for 0): the period of the
/// `ITIMER_VIRTUAL` timer each process with Python keeps running, and the ticks one
/// handler run may see before it is stopped. The first tick of a run comes anywhere
/// in its first period, so a run is stopped after between (ticks − 1) and ticks
/// periods of CPU: between `time_limit` and 1.25 × `time_limit` (2 × under 40 ms,
/// where a quarter period would be finer than the kernel's accounting).
pub(crate) fn timer_plan(ms: i64) -> Option<(f64, u32)> {
    match ms {
        ..=0 => None,
        1..40 => Some((ms as f64 / 1000.0, 2)),
        _ => Some((ms as f64 / 4000.0, 5)),
    }
}

/// The value of a finished `python_exec` for the script.
fn rc_of(what: &str, out: Outcome) -> i32 {
    match out {
        Outcome::Done(v) => v,
        Outcome::Exit => 0,
        Outcome::Error(e) => {
            openser_core::log_err!("{what}: {e}");
            -1
        }
    }
}

fn cmd_python_exec(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let name = ctx.arg_str(a);
    let param = args.get(1).map(|a| ctx.arg_str(a));
    let what = format!("python_exec({name})");
    let out = run_with(ctx, |py, i| call_method(py, i, &name, param.as_deref()));
    rc_of(&what, out)
}

// ---------------------------------------------------------------------------
// MI

fn mi_reload(_args: &[MiArg]) -> MiReply {
    if !P.reload.get() {
        return MiReply::err(500, "reload disabled (modparam app_python reload 0)");
    }
    let Some(g) = GEN.get() else {
        return MiReply::err(500, "app_python not initialised");
    };
    // Check the script as it is now (in a trial child) before any process switches.
    if let Err(e) = trial(script().unwrap_or(std::path::Path::new("")), true) {
        let first = e.lines().next().unwrap_or("").to_string();
        openser_core::log_err!("reload refused: {e}");
        return MiReply::err(500, &format!("reload failed: {first}"));
    }
    let n = g.fetch_add(1, Ordering::AcqRel) + 1;
    openser_core::log_info!("Python script reloaded (generation {n})");
    MiReply::ok(vec![MiNode::new("generation", n.to_string())])
}

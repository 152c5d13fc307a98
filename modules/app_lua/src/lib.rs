//! app_lua (SIP Router 3.1's module, seed 002; Kamailio's KEMI for Lua): routing logic
//! and helpers written in Lua 5.4, with the SIP message and the configuration's
//! variables and functions at hand.
//!
//! Functions (every route type):
//! * `lua_dofile(path)` — run a Lua file (path relative to the configuration file's
//!   directory; may contain PVs); 1, or −1 on an error (logged with the traceback).
//! * `lua_dostring(code)` — run Lua code given as text (PVs in it are expanded first,
//!   as Kamailio does); 1 or −1. Seed 002's example:
//!   `lua_dostring("sr.sl.send_reply(200, [[Lua says is ok]])")`.
//! * `lua_runstring(code)` — the same (Kamailio's name for it).
//! * `lua_run(function[, p1[, p2[, p3]]])` — call a global function of the loaded
//!   scripts with up to three string parameters (PVs expanded). Its value: an integer
//!   the function returns (0 stops the script, as a cfg function's 0 does), a boolean
//!   as 1/−1, anything else 1; 0 after `KSR.x.exit()`; −1 on an error.
//!
//! The API, in two trees over one implementation (`api.rs`): `sr.*` with SIP Router
//! 3.1's names and `KSR.*` with Kamailio KEMI's — `log`/`err`/`dbg`/…, `pv.get`/
//! `sets`/`seti`/`unset`/`is_null` (through the core's PV machinery: `$var`, AVPs,
//! `$ru`/`$rU`/`$rd`/`$du` are written as an assignment in the cfg writes them), `hdr.*`,
//! `sl.*`, `tm.*`, `rr.*`, `registrar.*`, `auth.*`, `auth_db.*`, `maxfwd.*`, and
//! `sr.modf("function", args…)` / `KSR.x.modf` calling any function the configuration
//! could call, with the same fixup and route-type check. Module functions return
//! their cfg return code (1/−1/0…), checks (`is_myself`, `is_INVITE`, `pv.is_null`)
//! return booleans. `KSR.x.exit()` / `KSR.x.drop()` end the handler as `exit`/`drop`.
//!
//! Routing in Lua (KEMI mode): with the global `cfgengine "lua"` the request route is
//! the Lua function `ksr_request_route()`, the main reply route `ksr_reply_route()`
//! (if defined; both looked up when the scripts are loaded or reloaded), and failure, per-transaction reply and branch routes are the
//! functions named in `KSR.tm.t_on_failure("name")`, `t_on_reply`, `t_on_branch`.
//! The configuration keeps its globals, `loadmodule` and `modparam` lines; its route
//! blocks other than startup, timer and event routes are not run.
//!
//! One interpreter per process, made in `child_init` (or at first use), never shared
//! across fork. Errors: a syntax error in a `load` script is reported at the
//! `modparam` line with the script's file and line, and the server does not start; a
//! script whose top-level code fails, or a KEMI script without `ksr_request_route`,
//! stops the start-up too. A run-time error logs the message with the Lua traceback;
//! in KEMI mode the request gets `500 Server Internal Error`; the worker goes on. A
//! handler that runs more than `instruction_limit` Lua VM instructions is stopped with
//! an error (an infinite loop costs one request, not a worker).
//!
//! Parameters:
//! * `load` (string, may be given several times) — a Lua script loaded in every
//!   process at start-up (relative paths: from the configuration file's directory).
//! * `reload` (int, default 1 as Kamailio) — whether the MI command `app_lua_reload`
//!   (also `app_lua.reload`) may reload the scripts. It checks them first (a broken
//!   script is refused with its error and nothing changes), then raises a generation
//!   number in shm; every process compares it with its own before each request and
//!   rebuilds its interpreter from the files when it changed.
//! * `instruction_limit` (int, default 1000000, 0 = none) — Lua VM instructions one
//!   handler (with the handlers it runs, e.g. a branch route inside `t_relay`) may
//!   run, checked every 1000 instructions.
//! * `register` — accepted for Kamailio configs; every API group is always there.
//!
//! Lua 5.4 (vendored, built into the binary by the `mlua` crate) rather than LuaJIT:
//! the instruction budget needs count hooks, which LuaJIT does not run inside
//! JIT-compiled traces (a hot infinite loop would never be stopped unless the JIT were
//! off, which gives up its speed); 5.4 has integers (reply codes, flags) and builds
//! with a C compiler alone on every platform Rust supports.

mod api;
mod interp;

use interp::{Outcome, run_with};
use mlua::{Value, Variadic};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, MiExport, ModParamValue, ModuleExports, Param,
};
use openser_core::route::ANY_ROUTE;
use openser_core::script::engine::Engine;
use openser_core::script::{Ctx, kemi};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "app_lua",
    params: &[
        Param::func("load", set_load),
        Param::bool("reload", &P.reload),
        Param::int_range(
            "instruction_limit",
            &P.instruction_limit,
            0,
            1_000_000_000_000,
        ),
        Param::no_effect("register", "every sr/KSR API group is always available"),
    ],
    cmds: &[
        CmdExport::new("lua_dofile", 1, 1, ANY_ROUTE, cmd_lua_dofile),
        CmdExport::new("lua_dostring", 1, 1, ANY_ROUTE, cmd_lua_dostring),
        CmdExport::new("lua_runstring", 1, 1, ANY_ROUTE, cmd_lua_dostring),
        CmdExport::new("lua_run", 1, 4, ANY_ROUTE, cmd_lua_run),
    ],
    mi: &[
        MiExport::new("app_lua_reload", mi_reload).no_input(),
        MiExport::new("app_lua.reload", mi_reload).no_input(),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    engine: Some(&ENGINE),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells (defaults as Kamailio's app_lua; `instruction_limit` is ours).
pub struct Params {
    pub reload: BoolParam,
    pub instruction_limit: IntParam,
}

pub static P: Params = Params {
    reload: BoolParam::new(true),
    instruction_limit: IntParam::new(1_000_000),
};

/// The KEMI engine `cfgengine "lua"` selects: the shared callbacks over this module's
/// interpreter (`impl KemiInterp`).
static ENGINE: Engine = Engine {
    name: "lua",
    run: kemi::engine_run::<interp::Interp>,
    route_index: kemi::engine_route_index::<interp::Interp>,
    has: kemi::engine_has::<interp::Interp>,
};

/// The reload generation in shm (made in `mod_init`, before fork).
static GEN: OnceLock<&'static AtomicU64> = OnceLock::new();

thread_local! {
    /// The `load` scripts, absolute paths (filled while the configuration loads, in the
    /// attendant; inherited by every child).
    static SCRIPTS: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn generation() -> u64 {
    GEN.get().map_or(0, |g| g.load(Ordering::Acquire))
}

/// The `load` scripts.
fn scripts() -> Vec<PathBuf> {
    SCRIPTS.with(|s| s.borrow().clone())
}

fn resolve(path: &str) -> PathBuf {
    kemi::resolve_script(path)
}

/// `modparam("app_lua", "load", path)`: the file must exist and compile (a syntax
/// error is reported here, at the modparam's line, with the script's file and line).
fn set_load(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("load: a file name string expected".into());
    };
    let path = resolve(s.trim());
    interp::compile_file(&path)?;
    SCRIPTS.with(|l| l.borrow_mut().push(path));
    Ok(())
}

fn mod_init() -> Result<(), String> {
    let g = shm::alloc_static(AtomicU64::new(1)).ok_or("out of shared memory")?;
    let _ = GEN.set(g);
    let kemi = openser_core::script::engine::active().is_some_and(|e| e.name == "lua");
    let files = scripts();
    if kemi && files.is_empty() {
        return Err(
            "cfgengine \"lua\" needs a script: modparam(\"app_lua\", \"load\", \"file.lua\")"
                .into(),
        );
    }
    // A trial interpreter in the attendant (dropped before fork): the scripts' top-level
    // code runs and the handler names are checked, so that a broken script stops the
    // start-up instead of every worker.
    let i = interp::Interp::new(&files, 0)?;
    if kemi && i.request_fn.is_none() {
        return Err(format!(
            "cfgengine \"lua\": no function ksr_request_route() in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    // Made here so the scripts' top-level code runs once per process at start; a
    // failure (a script changed on disk since start-up) is logged and retried at the
    // next request rather than killing the process.
    if let Err(e) = interp::fresh() {
        openser_core::log_err!("{e}");
    }
    Ok(())
}

/// The value of a finished `lua_*` call for the script.
fn rc_of(what: &str, out: Outcome) -> i32 {
    match out {
        Outcome::Done(Value::Integer(i)) => {
            i.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        }
        Outcome::Done(Value::Boolean(b)) => {
            if b {
                1
            } else {
                -1
            }
        }
        Outcome::Done(_) => 1,
        Outcome::Exit => 0,
        Outcome::Error(e) => {
            openser_core::log_err!("{what}: {e}");
            -1
        }
    }
}

fn cmd_lua_dofile(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let path = resolve(&ctx.arg_str(a));
    let out = run_with(ctx, |i| {
        let src = std::fs::read(&path)
            .map_err(|e| api::rt(format!("cannot read {}: {e}", path.display())))?;
        i.lua
            .load(src)
            .set_name(format!("@{}", path.display()))
            .call::<Value>(())
    });
    rc_of("lua_dofile", out)
}

fn cmd_lua_dostring(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let code = ctx.arg_str(a);
    let out = run_with(ctx, |i| {
        i.lua.load(code).set_name("=lua_dostring").call::<Value>(())
    });
    rc_of("lua_dostring", out)
}

fn cmd_lua_run(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let name = ctx.arg_str(a);
    let params: Vec<String> = args[1..].iter().map(|a| ctx.arg_str(a)).collect();
    let what = format!("lua_run({name})");
    let out = run_with(ctx, |i| match i.function(&name)? {
        Some(f) => f.call::<Value>(Variadic::from_iter(params)),
        None => Err(api::rt(format!("no Lua function '{name}'"))),
    });
    rc_of(&what, out)
}

// ---------------------------------------------------------------------------
// KEMI

pub(crate) use kemi::handler_index;

// ---------------------------------------------------------------------------
// MI

fn mi_reload(_args: &[MiArg]) -> MiReply {
    if !P.reload.get() {
        return MiReply::err(500, "reload disabled (modparam app_lua reload 0)");
    }
    let Some(g) = GEN.get() else {
        return MiReply::err(500, "app_lua not initialised");
    };
    // Check the scripts as they are now before any process switches to them.
    if let Err(e) = interp::Interp::new(&scripts(), 0) {
        let first = e.lines().next().unwrap_or("").to_string();
        openser_core::log_err!("reload refused: {e}");
        return MiReply::err(500, &format!("reload failed: {first}"));
    }
    let n = g.fetch_add(1, Ordering::AcqRel) + 1;
    openser_core::log_info!("Lua scripts reloaded (generation {n})");
    MiReply::ok(vec![MiNode::new("generation", n.to_string())])
}

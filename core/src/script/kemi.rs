//! What the embedded-language modules (app_lua, app_python) share: the table of API
//! functions a script sees (`KSR.*` with Kamailio KEMI's names, `sr.*` with SIP Router
//! 3.1's), the handler index of a named KEMI route, the language-neutral pieces of
//! the functions (log levels, `is_myself`, `is_method`), a script path relative to
//! the configuration, the engine callbacks over an interpreter ([`KemiInterp`]: which
//! handler a route runs, how its end is logged) and the 500 a failed request handler
//! gets. Each language keeps only its own binding: how values cross, how the message
//! is reached and how a handler is called.

use super::Ctx;
use super::fixup;
use super::interp::{CallOp, run_dyn_call};
use super::{PvValue, pv};
use crate::cfg::ast::{Arg, ArgValue, RouteKind};
use crate::cfg::error::Span;
use crate::cfg::pv::PvSpec;
use crate::log;
use crate::parser::{Method, Uri};
use crate::route::REQUEST_ROUTE;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What an API function does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// log(msg) at a fixed level
    Log(i32),
    /// log(level, msg)
    LogAt,
    /// the configuration function of this name, with the script's arguments
    Cfg(&'static str),
    /// modf("function", args…)
    Modf,
    Exit,
    Drop,
    IsMyself,
    IsMyselfRuri,
    /// is_method("INVITE") (also "INVITE|BYE", "INVITE,BYE")
    IsMethod,
    IsMethodNamed(&'static str),
    PvGet,
    /// get, or "" for null
    PvGetE,
    PvSets,
    PvSeti,
    PvUnset,
    PvIsNull,
}

/// One API function: its path under `sr` and under `KSR` ("" = not published there).
pub struct Api {
    pub sr: &'static str,
    pub ksr: &'static str,
    pub op: Op,
}

const fn both(path: &'static str, op: Op) -> Api {
    Api {
        sr: path,
        ksr: path,
        op,
    }
}
const fn ksr(path: &'static str, op: Op) -> Api {
    Api {
        sr: "",
        ksr: path,
        op,
    }
}
const fn named(sr: &'static str, ksr: &'static str, op: Op) -> Api {
    Api { sr, ksr, op }
}

impl Api {
    /// The name errors give.
    pub fn name(&self) -> &'static str {
        if self.ksr.is_empty() {
            self.sr
        } else {
            self.ksr
        }
    }
}

/// The API, in id order (the id is the index).
pub static APIS: &[Api] = &[
    // logging
    both("log", Op::LogAt),
    both("err", Op::Log(log::L_ERR)),
    both("dbg", Op::Log(log::L_DBG)),
    both("info", Op::Log(log::L_INFO)),
    both("warn", Op::Log(log::L_WARN)),
    both("notice", Op::Log(log::L_NOTICE)),
    both("crit", Op::Log(log::L_CRIT)),
    // the generic call and control
    named("modf", "x.modf", Op::Modf),
    named("exit", "x.exit", Op::Exit),
    named("drop", "x.drop", Op::Drop),
    // core checks
    both("is_myself", Op::IsMyself),
    ksr("is_myself_ruri", Op::IsMyselfRuri),
    ksr("is_method", Op::IsMethod),
    ksr("is_INVITE", Op::IsMethodNamed("INVITE")),
    ksr("is_ACK", Op::IsMethodNamed("ACK")),
    ksr("is_BYE", Op::IsMethodNamed("BYE")),
    ksr("is_CANCEL", Op::IsMethodNamed("CANCEL")),
    ksr("is_REGISTER", Op::IsMethodNamed("REGISTER")),
    ksr("is_OPTIONS", Op::IsMethodNamed("OPTIONS")),
    ksr("is_SUBSCRIBE", Op::IsMethodNamed("SUBSCRIBE")),
    ksr("is_NOTIFY", Op::IsMethodNamed("NOTIFY")),
    ksr("is_MESSAGE", Op::IsMethodNamed("MESSAGE")),
    ksr("is_INFO", Op::IsMethodNamed("INFO")),
    ksr("is_UPDATE", Op::IsMethodNamed("UPDATE")),
    ksr("is_PRACK", Op::IsMethodNamed("PRACK")),
    ksr("is_PUBLISH", Op::IsMethodNamed("PUBLISH")),
    ksr("is_REFER", Op::IsMethodNamed("REFER")),
    both("setflag", Op::Cfg("setflag")),
    both("resetflag", Op::Cfg("resetflag")),
    both("isflagset", Op::Cfg("isflagset")),
    both("setbflag", Op::Cfg("setbflag")),
    both("resetbflag", Op::Cfg("resetbflag")),
    both("isbflagset", Op::Cfg("isbflagset")),
    // pseudo-variables
    both("pv.get", Op::PvGet),
    ksr("pv.gete", Op::PvGetE),
    both("pv.sets", Op::PvSets),
    both("pv.seti", Op::PvSeti),
    both("pv.unset", Op::PvUnset),
    both("pv.is_null", Op::PvIsNull),
    // headers (textops)
    both("hdr.append", Op::Cfg("append_hf")),
    both("hdr.insert", Op::Cfg("insert_hf")),
    both("hdr.remove", Op::Cfg("remove_hf")),
    both("hdr.is_present", Op::Cfg("is_present_hf")),
    both("hdr.append_to_reply", Op::Cfg("append_to_reply")),
    // sl
    both("sl.send_reply", Op::Cfg("sl_send_reply")),
    both("sl.sl_send_reply", Op::Cfg("sl_send_reply")),
    both("sl.sl_reply_error", Op::Cfg("sl_reply_error")),
    // tm
    both("tm.t_relay", Op::Cfg("t_relay")),
    both("tm.t_on_failure", Op::Cfg("t_on_failure")),
    both("tm.t_on_reply", Op::Cfg("t_on_reply")),
    both("tm.t_on_branch", Op::Cfg("t_on_branch")),
    both("tm.t_reply", Op::Cfg("t_reply")),
    both("tm.t_newtran", Op::Cfg("t_newtran")),
    both("tm.t_check_trans", Op::Cfg("t_check_trans")),
    both("tm.t_check_status", Op::Cfg("t_check_status")),
    both("tm.t_is_canceled", Op::Cfg("t_was_cancelled")),
    both("tm.t_release", Op::Cfg("t_release")),
    // rr
    both("rr.record_route", Op::Cfg("record_route")),
    both("rr.record_route_preset", Op::Cfg("record_route_preset")),
    both("rr.loose_route", Op::Cfg("loose_route")),
    both("rr.add_rr_param", Op::Cfg("add_rr_param")),
    // registrar
    both("registrar.save", Op::Cfg("save")),
    both("registrar.lookup", Op::Cfg("lookup")),
    both("registrar.registered", Op::Cfg("registered")),
    // auth, auth_db
    both("auth.www_challenge", Op::Cfg("www_challenge")),
    both("auth.proxy_challenge", Op::Cfg("proxy_challenge")),
    both("auth.consume_credentials", Op::Cfg("consume_credentials")),
    both("auth_db.www_authorize", Op::Cfg("www_authorize")),
    both("auth_db.proxy_authorize", Op::Cfg("proxy_authorize")),
    // maxfwd
    both("maxfwd.process_maxfwd", Op::Cfg("mf_process_maxfwd_header")),
    both("maxfwd.is_maxfwd_lt", Op::Cfg("is_maxfwd_lt")),
];

/// FNV-1a of a handler name in 31 bits, never 0: the route index of a named KEMI
/// handler, the same in every process (tm stores it in the transaction; the process
/// running the route later may be another one).
pub fn handler_index(name: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff).max(1) as usize
}

/// A handler of a KEMI script: what a route of the configuration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler<'a> {
    /// `ksr_request_route`, for every request route
    Request,
    /// `ksr_reply_route`, for the main reply route
    Reply,
    /// a handler the script named (`t_on_failure("ksr_failure_manage")`, …)
    Named(&'a str),
}

impl Handler<'_> {
    /// The handler's name in the script.
    pub fn name(&self) -> &str {
        match self {
            Handler::Request => "ksr_request_route",
            Handler::Reply => "ksr_reply_route",
            Handler::Named(n) => n,
        }
    }
}

/// How a script's function ended; `T` is what it returned, in the language's terms.
pub enum Outcome<T> {
    Done(T),
    /// `KSR.x.exit()` / `KSR.x.drop()`
    Exit,
    /// The error with its traceback.
    Error(String),
}

/// The per-process interpreter of a KEMI engine (app_lua, app_python), as the engine
/// callbacks [`engine_route_index`], [`engine_has`] and [`engine_run`] reach it: each
/// language implements it on its interpreter and publishes those three, instantiated
/// for its interpreter, as its `Engine`.
pub trait KemiInterp: Sized {
    /// The module's `module_path!()`: the engine's errors are logged under its name.
    const MODULE: &'static str;
    /// What a handler is in this language ("Lua function"), for errors.
    const HANDLER: &'static str;
    /// What a handler returns.
    type Value;
    /// This process's interpreter (made, or rebuilt after a reload, on demand).
    fn current() -> Result<Rc<Self>, String>;
    /// Whether the script defines a handler `name`.
    fn defines(&self, name: &str) -> bool;
    /// Whether the script defines `ksr_reply_route`.
    fn has_reply(&self) -> bool;
    /// Handler index → name, as far as this process knows.
    fn names(&self) -> &RefCell<HashMap<usize, String>>;
    /// Index the script's handlers again (one defined after start-up, or named in
    /// another process).
    fn rescan(&self);
    /// Run handler `h` on the message.
    fn run(ctx: &mut Ctx, h: Handler<'_>) -> Outcome<Self::Value>;

    /// Record a handler name (`t_on_failure("name")` in this process).
    fn remember(&self, idx: usize, name: &str) {
        self.names().borrow_mut().insert(idx, name.to_string());
    }

    /// The handler name of an index: known, or found among the script's handlers now.
    fn name_of(&self, idx: usize) -> Option<String> {
        if let Some(n) = self.names().borrow().get(&idx) {
            return Some(n.clone());
        }
        self.rescan();
        self.names().borrow().get(&idx).cloned()
    }
}

/// `Engine::route_index` of a KEMI engine: the handler index of `name` when the
/// script defines it (remembered in this process).
pub fn engine_route_index<I: KemiInterp>(_kind: RouteKind, name: &str) -> Option<usize> {
    let i = I::current().ok()?;
    if !i.defines(name) {
        return None;
    }
    let idx = handler_index(name);
    i.remember(idx, name);
    Some(idx)
}

/// `Engine::has` of a KEMI engine: a request route always (a script without
/// `ksr_request_route` does not load), the main reply route when the script defines
/// `ksr_reply_route`, another route when its handler is known.
pub fn engine_has<I: KemiInterp>(kind: RouteKind, idx: usize) -> bool {
    match (kind, idx) {
        (RouteKind::Request, _) => true,
        (RouteKind::OnReply, 0) => I::current().is_ok_and(|i| i.has_reply()),
        _ => I::current().is_ok_and(|i| i.name_of(idx).is_some()),
    }
}

/// `Engine::run` of a KEMI engine: the handler of route `kind`/`idx` (`ksr_request_route`
/// for requests, `ksr_reply_route` for the main reply route, otherwise the one the
/// index names); 1 when it ran, 0 after exit/drop, −1 when it failed (logged; a
/// request then gets the 500, [`reply_500`]) or there is none.
pub fn engine_run<I: KemiInterp>(kind: RouteKind, idx: usize, ctx: &mut Ctx) -> i32 {
    let named;
    let h = match (kind, idx) {
        (RouteKind::Request, _) => Handler::Request,
        (RouteKind::OnReply, 0) => Handler::Reply,
        _ => match I::current().ok().and_then(|i| i.name_of(idx)) {
            Some(n) => {
                named = n;
                Handler::Named(&named)
            }
            None => {
                // Logged under the engine module's name (`ERROR:app_lua:…`).
                crate::log_at!(log::L_ERR, module: I::MODULE, "no {} for {kind:?} route {idx}", I::HANDLER);
                return -1;
            }
        },
    };
    match I::run(ctx, h) {
        Outcome::Done(_) => 1,
        Outcome::Exit => 0,
        Outcome::Error(e) => {
            crate::log_at!(log::L_ERR, module: I::MODULE, "{}: {e}", h.name());
            if kind == RouteKind::Request {
                reply_500(ctx);
            }
            -1
        }
    }
}

/// A log level by its name (`"err"`, `"L_INFO"`, …) or number.
pub fn level_by_name(name: &str) -> Option<i32> {
    Some(match name.to_ascii_lowercase().as_str() {
        "alert" | "l_alert" => log::L_ALERT,
        "crit" | "l_crit" => log::L_CRIT,
        "err" | "error" | "l_err" => log::L_ERR,
        "warn" | "l_warn" => log::L_WARN,
        "notice" | "l_notice" => log::L_NOTICE,
        "info" | "l_info" => log::L_INFO,
        "dbg" | "debug" | "l_dbg" => log::L_DBG,
        _ => return None,
    })
}

/// Whether a URI names this server (`is_myself`).
pub fn is_myself_uri(uri: &str) -> bool {
    match Uri::parse(uri) {
        Ok(u) => crate::transport::socket::is_myself(u.host_unbracketed(), u.port.unwrap_or(0)),
        Err(_) => false,
    }
}

/// Whether the message's method is in `list` ("INVITE", "INVITE|BYE", "INVITE,BYE").
pub fn method_is(ctx: &Ctx, list: &str) -> bool {
    let m = ctx.msg.method_str();
    list.split(['|', ','])
        .map(str::trim)
        .any(|x| x.eq_ignore_ascii_case(m))
}

/// A script path: absolute as is, else relative to the configuration file's directory.
pub fn resolve_script(path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let base = crate::config::cfg_file()
        .and_then(|c| Path::new(c).parent().map(Path::to_path_buf))
        .filter(|d| !d.as_os_str().is_empty())
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let joined = base.join(p);
    if joined.is_absolute() {
        joined
    } else {
        std::env::current_dir()
            .map(|d| d.join(&joined))
            .unwrap_or(joined)
    }
}

/// The 500 a KEMI request gets when its handler failed (not for ACK, only in request
/// routes): through `sl_send_reply` when sl is loaded, else built and sent here.
pub fn reply_500(ctx: &mut Ctx) {
    if ctx.msg.method() == Method::Ack || ctx.route_type & REQUEST_ROUTE == 0 {
        return;
    }
    let args = vec![
        Arg {
            value: ArgValue::Int(500),
            span: Span::default(),
        },
        Arg {
            value: ArgValue::Str("Server Internal Error".into()),
            span: Span::default(),
        },
    ];
    if let Ok(op) = fixup::dyn_call("sl_send_reply", args)
        && run_dyn_call(ctx, &op).is_ok()
    {
        return;
    }
    if let Ok(b) =
        crate::msg::build_local_reply(ctx.msg, 500, "Server Internal Error", None, &[], b"", None)
    {
        let _ = crate::transport::forward::send_reply(ctx.msg, &b);
    }
}

/// A script function's argument, in the language-neutral form the call cache keys.
#[derive(Clone, Copy, Debug)]
pub enum KArg<'a> {
    Int(i64),
    Str(&'a str),
}

#[derive(PartialEq, Eq)]
enum KeyArg {
    Int(i64),
    Str(String),
}

struct CallKey {
    name: String,
    args: Vec<KeyArg>,
}

/// Entries a cache may hold before it is emptied (arguments built from message data
/// would otherwise grow it without bound).
const CACHE_MAX: usize = 1024;

thread_local! {
    /// Prepared calls by a hash of (function, arguments), each with its key (checked,
    /// so a hash collision is a miss, never a wrong call).
    static CALLS: RefCell<HashMap<u64, (CallKey, Rc<CallOp>)>> = RefCell::new(HashMap::new());
    /// Checked PVs by their text.
    static PVS: RefCell<HashMap<String, Rc<PvSpec>>> = RefCell::new(HashMap::new());
}

/// FNV-1a, 64 bits, over `bytes` continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn call_hash(name: &str, args: &[KArg]) -> u64 {
    let mut h = fnv(0xcbf2_9ce4_8422_2325, name.as_bytes());
    for a in args {
        h = match a {
            KArg::Int(i) => fnv(fnv(h, b"i"), &i.to_le_bytes()),
            KArg::Str(s) => fnv(fnv(h, b"s"), s.as_bytes()),
        };
    }
    h
}

fn same_call(k: &CallKey, name: &str, args: &[KArg]) -> bool {
    k.name == name
        && k.args.len() == args.len()
        && k.args.iter().zip(args).all(|(k, a)| match (k, a) {
            (KeyArg::Int(x), KArg::Int(y)) => x == y,
            (KeyArg::Str(x), KArg::Str(y)) => x == y,
            _ => false,
        })
}

/// Call the configuration function `name` (a module function or a core one such as
/// `setflag`) with a script's arguments: the configuration's own lookup, arity check
/// and fixup (`fixup::dyn_call`) and route-type check (`run_dyn_call`), the prepared
/// call cached per process. Its cfg return code (1, −1, 0 …).
pub fn call_cfg(ctx: &mut Ctx, name: &str, args: &[KArg]) -> Result<i32, String> {
    let h = call_hash(name, args);
    let cached = CALLS.with(|c| {
        c.borrow()
            .get(&h)
            .filter(|(k, _)| same_call(k, name, args))
            .map(|(_, op)| op.clone())
    });
    let op = match cached {
        Some(op) => op,
        None => {
            let argv = args
                .iter()
                .map(|a| Arg {
                    value: match a {
                        KArg::Int(i) => ArgValue::Int(*i),
                        KArg::Str(s) => ArgValue::Str((*s).to_string()),
                    },
                    span: Span::default(),
                })
                .collect();
            let op = Rc::new(fixup::dyn_call(name, argv)?);
            let key = CallKey {
                name: name.to_string(),
                args: args
                    .iter()
                    .map(|a| match a {
                        KArg::Int(i) => KeyArg::Int(*i),
                        KArg::Str(s) => KeyArg::Str((*s).to_string()),
                    })
                    .collect(),
            };
            CALLS.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() >= CACHE_MAX {
                    c.clear();
                }
                c.insert(h, (key, op.clone()));
            });
            op
        }
    };
    run_dyn_call(ctx, &op)
}

/// A PV by its text (`"$var(x)"`, `"$avp(s:a)"`, `"$ru"`), checked once per process.
pub fn pv_spec(text: &str) -> Result<Rc<PvSpec>, String> {
    if let Some(s) = PVS.with(|p| p.borrow().get(text).cloned()) {
        return Ok(s);
    }
    let spec = Rc::new(fixup::dyn_pv(text).map_err(|e| format!("bad PV '{text}': {e}"))?);
    PVS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= CACHE_MAX {
            p.clear();
        }
        p.insert(text.to_string(), spec.clone());
    });
    Ok(spec)
}

/// Write a PV as an assignment in the configuration does (Null unsets).
pub fn pv_set(ctx: &mut Ctx, text: &str, v: PvValue) -> Result<i32, String> {
    let spec = pv_spec(text)?;
    let lhs = fixup::dyn_lhs(&spec)?;
    Ok(pv::assign(ctx, &lhs, v))
}

/// Read a PV.
pub fn pv_get(ctx: &mut Ctx, text: &str) -> Result<PvValue, String> {
    let spec = pv_spec(text)?;
    Ok(pv::get(ctx, &spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_unique_per_tree() {
        let mut sr = std::collections::HashSet::new();
        let mut k = std::collections::HashSet::new();
        for a in APIS {
            assert!(a.sr.is_empty() || sr.insert(a.sr), "sr.{} twice", a.sr);
            assert!(a.ksr.is_empty() || k.insert(a.ksr), "KSR.{} twice", a.ksr);
        }
    }

    #[test]
    fn handler_indexes_are_stable_and_nonzero() {
        assert_eq!(
            handler_index("ksr_failure_manage"),
            handler_index("ksr_failure_manage")
        );
        assert_ne!(handler_index("a"), handler_index("b"));
        assert!(handler_index("") > 0);
        assert!(handler_index("x") <= 0x7fff_ffff);
    }

    /// An interpreter whose script defines every `ksr_*` handler (and, found only by a
    /// rescan, `ksr_late`), but no `ksr_reply_route`; `ksr_exit` exits, `ksr_fail`
    /// fails.
    struct Fake {
        names: RefCell<HashMap<usize, String>>,
        ran: RefCell<Vec<String>>,
    }

    thread_local! {
        static FAKE: Rc<Fake> = Rc::new(Fake {
            names: RefCell::default(),
            ran: RefCell::default(),
        });
    }

    impl KemiInterp for Fake {
        const MODULE: &'static str = module_path!();
        const HANDLER: &'static str = "fake handler";
        type Value = ();

        fn current() -> Result<Rc<Fake>, String> {
            Ok(FAKE.with(Rc::clone))
        }
        fn defines(&self, name: &str) -> bool {
            name.starts_with("ksr_")
        }
        fn has_reply(&self) -> bool {
            false
        }
        fn names(&self) -> &RefCell<HashMap<usize, String>> {
            &self.names
        }
        fn rescan(&self) {
            self.remember(handler_index("ksr_late"), "ksr_late");
        }
        fn run(_ctx: &mut Ctx, h: Handler<'_>) -> Outcome<()> {
            FAKE.with(|f| f.ran.borrow_mut().push(h.name().to_string()));
            match h.name() {
                "ksr_exit" => Outcome::Exit,
                "ksr_fail" => Outcome::Error("boom".into()),
                _ => Outcome::Done(()),
            }
        }
    }

    #[test]
    fn engine_callbacks_over_an_interpreter() {
        use RouteKind::{Branch, Failure, OnReply, Request};
        assert_eq!(engine_route_index::<Fake>(Failure, "other"), None);
        let fail = engine_route_index::<Fake>(Failure, "ksr_fail").unwrap();
        assert_eq!(fail, handler_index("ksr_fail"));
        let exit = engine_route_index::<Fake>(Branch, "ksr_exit").unwrap();

        assert!(engine_has::<Fake>(Request, 0));
        assert!(!engine_has::<Fake>(OnReply, 0));
        assert!(engine_has::<Fake>(Failure, fail));
        assert!(engine_has::<Fake>(OnReply, handler_index("ksr_late")));
        assert!(!engine_has::<Fake>(Failure, handler_index("unknown")));

        let mut m = crate::parser::test_invite();
        let mut ctx = Ctx::new(&mut m, crate::route::FAILURE_ROUTE);
        assert_eq!(engine_run::<Fake>(Request, 0, &mut ctx), 1);
        assert_eq!(engine_run::<Fake>(OnReply, 0, &mut ctx), 1);
        assert_eq!(engine_run::<Fake>(Branch, exit, &mut ctx), 0);
        assert_eq!(engine_run::<Fake>(Failure, fail, &mut ctx), -1);
        assert_eq!(
            engine_run::<Fake>(Failure, handler_index("unknown"), &mut ctx),
            -1
        );
        let ran = FAKE.with(|f| f.ran.take());
        assert_eq!(
            ran,
            [
                "ksr_request_route",
                "ksr_reply_route",
                "ksr_exit",
                "ksr_fail"
            ]
        );
    }

    #[test]
    fn level_names() {
        assert_eq!(level_by_name("L_INFO"), Some(log::L_INFO));
        assert_eq!(level_by_name("err"), Some(log::L_ERR));
        assert_eq!(level_by_name("loud"), None);
    }
}

//! pipelimit (SIP Router 3.1 / Kamailio `modules/pipelimit`; not in OpenSER 1.2):
//! traffic shaping by pipes. A pipe (a name: a trunk, a source address, a method…)
//! counts the requests the script checks against it and refuses those above its
//! limit. The pipe table and its algorithms are [`engine`], shared with OpenSIPS's
//! `ratelimit` module (modules/ratelimit), which is the same implementation under
//! OpenSIPS's names.
//!
//! Pipes come from the database (`db_url`, no default: without it no table is read;
//! `plp_table_name` "pl_pipes", columns `plp_pipeid_column` "pipeid",
//! `plp_algorithm_column` "algorithm", `plp_limit_column` "plimit", read at start-up)
//! or are created by `pl_check` with an algorithm and a limit, or by MI `pl_set_pipe`.
//! The limit counts messages per window of `timer_interval` seconds (10): for 100
//! requests per second with windows of 1 s the limit is 100.
//!
//! Algorithms (Kamailio's, case-sensitive names):
//! * `TAILDROP` — the first `limit` messages of a window pass, the rest do not;
//! * `RED` — after a window with n × limit messages, one message in n passes (spreads
//!   the drops over the window; nothing is dropped after a window under the limit);
//! * `NETWORK` — nothing passes while the bytes waiting in the server's UDP socket
//!   queues (read each window) exceed the limit;
//! * `FEEDBACK` — the limit is a CPU load in percent; a PID controller (MI
//!   `pl_set_pid`) sets each window the share of messages refused so that the load
//!   drifts to the limit;
//! * `NOP` — everything passes.
//!
//! Functions:
//! * `pl_check(name[, algorithm, limit])` (every route; all may contain PVs): count the
//!   request on pipe `name`: 1 passes, −1 over the limit, −2 no such pipe, 2 a `NOP`
//!   pipe. With an algorithm and a limit a missing pipe is created; an existing one
//!   keeps its algorithm and takes the limit when it is above 0.
//! * `pl_active(name)`: 1 if the pipe exists, else −1.
//! * `pl_drop([[min, ]max])` (REQUEST, BRANCH, FAILURE): reply `reply_code`
//!   `reply_reason` (503 "Server Unavailable") statelessly; with `max` a
//!   `Retry-After: max` header, with both a random value in [min, max].
//!
//! Parameters: `timer_interval` (10 s), `hash_size` (6: the table holds 16 × 2^6 =
//! 1024 pipes; Kamailio's hash table grows without bound, ours is sized at start-up),
//! `reply_code` (503), `reply_reason` ("Server Unavailable"), `load_fetch` (1: measure
//! the CPU and network loads when a pipe needs them), the database ones above.
//!
//! MI: `pl_list [name]` (name, algorithm, limit, counter, last window's counter,
//! load, accepted and dropped totals), `pl_stats` (the windows ended, the loads
//! measured and each pipe's load and last counter), `pl_set_pipe name algorithm
//! limit` (creates a missing pipe), `pl_reset_pipe name`, `pl_get_pipes`,
//! `pl_set_pid kp ki kd`, `pl_get_pid`, `pl_push_load load` (sets the CPU load the
//! FEEDBACK pipes see until the next measurement).

pub mod engine;

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use engine::{Algo, PipeInfo, Table};
use openser_core::cfg::ast::Arg;
use openser_core::db::DbConn;
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    BoolParam, CmdExport, Every, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam,
    TimerExport,
};
use openser_core::route::{ANY_ROUTE, BRANCH_ROUTE, FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "pipelimit",
    binds: &["sl"],
    params: &[
        Param::int_range("timer_interval", &P.timer_interval, 1, 3600),
        Param::int_range("hash_size", &P.hash_size, 1, 16),
        Param::int_range("reply_code", &P.reply_code, 300, 699),
        Param::str("reply_reason", &P.reply_reason),
        Param::bool("load_fetch", &P.load_fetch),
        Param::str("db_url", &P.db_url),
        Param::str("plp_table_name", &P.table),
        Param::str("plp_pipeid_column", &P.pipeid_col),
        Param::str("plp_limit_column", &P.limit_col),
        Param::str("plp_algorithm_column", &P.algorithm_col),
        Param::no_effect("timer_mode", "the timer process runs every module's timers"),
        Param::no_effect("clean_unused", "pipes are kept until restart"),
    ],
    cmds: &[
        CmdExport::new("pl_check", 1, 3, ANY_ROUTE, cmd_pl_check).fixup(fixup_check),
        CmdExport::new("pl_active", 1, 1, ANY_ROUTE, cmd_pl_active),
        CmdExport::new("pl_drop", 0, 2, DROP_ROUTES, cmd_pl_drop).fixup(fixup_drop),
    ],
    mi: &[
        MiExport::new("pl_list", mi_list),
        MiExport::new("pl_stats", mi_stats).no_input(),
        MiExport::new("pl_set_pipe", mi_set_pipe),
        MiExport::new("pl_reset_pipe", mi_reset_pipe),
        MiExport::new("pl_get_pipes", mi_get_pipes).no_input(),
        MiExport::new("pl_set_pid", mi_set_pid),
        MiExport::new("pl_get_pid", mi_get_pid).no_input(),
        MiExport::new("pl_push_load", mi_push_load),
    ],
    timers: &[TimerExport::new(
        "pipelimit windows",
        Every::SecsParam(&P.timer_interval),
        timer,
    )],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// Where `pl_drop`/`rl_drop` may run.
pub const DROP_ROUTES: u32 = REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE;

/// The `modparam` cells, with Kamailio's defaults.
pub struct Params {
    pub timer_interval: IntParam,
    pub hash_size: IntParam,
    pub reply_code: IntParam,
    pub reply_reason: StrParam,
    pub load_fetch: BoolParam,
    pub db_url: StrParam,
    pub table: StrParam,
    pub pipeid_col: StrParam,
    pub limit_col: StrParam,
    pub algorithm_col: StrParam,
}

pub static P: Params = Params {
    timer_interval: IntParam::new(10),
    hash_size: IntParam::new(6),
    reply_code: IntParam::new(503),
    reply_reason: StrParam::new("Server Unavailable"),
    load_fetch: BoolParam::new(true),
    db_url: StrParam::new(""),
    table: StrParam::new("pl_pipes"),
    pipeid_col: StrParam::new("pipeid"),
    limit_col: StrParam::new("plimit"),
    algorithm_col: StrParam::new("algorithm"),
};

/// A module's pipe table (pipelimit's and ratelimit's are separate).
pub struct Limiter {
    table: OnceLock<Table>,
    what: &'static str,
}

impl Limiter {
    pub const fn new(what: &'static str) -> Limiter {
        Limiter {
            table: OnceLock::new(),
            what,
        }
    }

    /// Make the table of `cap` pipes in shm and register its repair hook (mod_init).
    pub fn init(&'static self, cap: usize) -> Result<&'static Table, String> {
        let t = Table::new(cap)
            .ok_or_else(|| format!("{}: no shared memory for the pipes", self.what))?;
        if self.table.set(t).is_ok() {
            let t = self.table();
            shm::register_repair(
                t.lock_addr(),
                size_of::<shm::FastLock>(),
                self.what,
                repair_any,
            );
        }
        Ok(self.table())
    }

    /// The table; a private one when the module was never initialised (unit tests).
    pub fn table(&self) -> &Table {
        self.table.get_or_init(|| Table::private(16))
    }

    fn adopt_repair(&'static self, g: shm::FastLockGuard<'static>) -> Option<Vec<String>> {
        let locked = self.table.get()?.adopt(g)?;
        Some(locked.repair())
    }
}

/// pipelimit's table.
pub static PIPES: Limiter = Limiter::new("pipelimit pipes");

/// Other modules' limiters whose repair hooks `repair_any` dispatches to (ratelimit).
static OTHERS: OnceLock<&'static Limiter> = OnceLock::new();

/// Register another module's limiter for repair (ratelimit's mod_init).
pub fn register_limiter(l: &'static Limiter) {
    let _ = OTHERS.set(l);
}

/// Repair hook of a pipe table lock (the attendant, for a dead process).
fn repair_any(lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let l = [Some(&PIPES), OTHERS.get().copied()]
        .into_iter()
        .flatten()
        .find(|l| l.table.get().is_some_and(|t| t.lock_addr() == lock))
        .ok_or_else(|| format!("pipelimit: no pipe table lock at {lock:#x}"))?;
    l.adopt_repair(g)
        .ok_or_else(|| "pipelimit: the guard is not the table's lock".into())
}

thread_local! {
    /// The timer process's previous CPU jiffies.
    static CPU_PREV: RefCell<Option<(u64, u64)>> = const { RefCell::new(None) };
    /// When this process last logged a pipe it could not create.
    static LAST_FULL_LOG: Cell<i64> = const { Cell::new(i64::MIN / 2) };
}

/// Measure the CPU load (percent since the last call in this process).
pub fn measure_cpu() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    CPU_PREV.with(|p| engine::cpu_load(&text, &mut p.borrow_mut()))
}

/// Bytes waiting in the UDP socket queues of the machine.
pub fn measure_net() -> Option<u64> {
    let mut n = 0;
    let mut any = false;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            n += engine::udp_queued(&t);
            any = true;
        }
    }
    any.then_some(n)
}

/// End a window of `t` (a module's timer).
pub fn end_window(t: &Table, fetch: bool) {
    t.end_window(
        || if fetch { measure_cpu() } else { None },
        || if fetch { measure_net() } else { None },
    );
}

fn timer(_ticks: u64) {
    end_window(PIPES.table(), P.load_fetch.get());
}

/// Read the pipes of the database table.
pub fn load_pipes(conn: &mut dyn DbConn, t: &Table) -> Result<usize, String> {
    let rows = conn
        .query(
            P.table.get(),
            &[],
            &[P.pipeid_col.get(), P.algorithm_col.get(), P.limit_col.get()],
            None,
        )
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    for r in &rows {
        let id = r.first().and_then(|v| v.as_str()).unwrap_or_default();
        let algo = r.get(1).and_then(|v| v.as_str()).unwrap_or_default();
        let limit = r.get(2).and_then(|v| v.as_int()).unwrap_or(0);
        let Some(a) = Algo::parse(&algo) else {
            openser_core::log_err!("pipe '{id}': unknown algorithm '{algo}', skipped");
            continue;
        };
        match t.find_or_create(id.trim(), a, limit) {
            Ok(s) => {
                t.set_algo(s, a);
                t.set_limit(s, limit);
                n += 1;
            }
            Err(e) => openser_core::log_err!("pipe '{id}': {e}"),
        }
    }
    Ok(n)
}

fn mod_init() -> Result<(), String> {
    let t = PIPES.init(16usize << P.hash_size.get())?;
    let url = P.db_url.get();
    if !url.is_empty() {
        openser_core::db::check_url(url).map_err(|e| format!("pipelimit: {e}"))?;
        let mut conn = openser_core::db::connect(url)
            .map_err(|e| format!("pipelimit: can't connect to the database: {e}"))?;
        let n = load_pipes(conn.as_mut(), t)
            .map_err(|e| format!("pipelimit: reading table {}: {e}", P.table.get()))?;
        openser_core::log_dbg!("{n} pipes loaded");
    }
    Ok(())
}

/// `pl_check(name[, algorithm, limit])`; a constant algorithm is checked at start-up.
pub fn fixup_check(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    if args.len() == 2 {
        return Err("algorithm and limit go together".into());
    }
    fixup_with_algo_at(args, 1)
}

/// The default fixup, and a constant algorithm at `idx` checked.
pub fn fixup_with_algo_at(args: &[Arg], idx: usize) -> Result<Vec<FixedArg>, String> {
    let out = openser_core::script::fixup::default_fixup(args)?;
    if let Some(FixedArg::Str(a)) = out.get(idx)
        && Algo::parse(a).is_none()
    {
        return Err(format!(
            "unknown algorithm '{a}' (TAILDROP, RED, NETWORK, FEEDBACK, NOP)"
        ));
    }
    Ok(out)
}

/// How a module's check function takes its arguments.
#[derive(Clone, Copy)]
pub struct CheckArgs {
    /// index of the algorithm and of the limit argument
    pub algo_at: usize,
    pub limit_at: usize,
    /// the algorithm when none is given
    pub default_algo: Algo,
    /// the given limit times this is the limit per window (1 for pipelimit, whose
    /// limits are per window; ratelimit's are per second)
    pub scale: i64,
}

/// Count the request on the pipe the arguments name (creating it when they give a
/// limit).
pub fn check_args(t: &Table, ctx: &mut Ctx, args: &[FixedArg], how: CheckArgs) -> i32 {
    let name = ctx.arg_str(&args[0]);
    let Some(limit_arg) = args.get(how.limit_at) else {
        return t.check_name(&name);
    };
    let algo = match args.get(how.algo_at) {
        Some(a) => {
            let s = ctx.arg_str(a);
            match Algo::parse(&s) {
                Some(x) => x,
                None => {
                    openser_core::log_err!("unknown algorithm '{s}'");
                    return -1;
                }
            }
        }
        None => how.default_algo,
    };
    let Some(limit) = ctx.arg_int(limit_arg) else {
        openser_core::log_err!("the limit of pipe '{name}' is not a number");
        return -1;
    };
    match t.find_or_create(&name, algo, limit.saturating_mul(how.scale)) {
        Ok(s) => t.check(s),
        Err(e) => {
            // a full table would otherwise log once per request
            let now = openser_core::clock::now();
            if LAST_FULL_LOG.get() + 10 <= now {
                LAST_FULL_LOG.set(now);
                openser_core::log_err!("{e} (this process logs it at most every 10 s)");
            }
            -1
        }
    }
}

fn cmd_pl_check(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let how = CheckArgs {
        algo_at: 1,
        limit_at: 2,
        default_algo: Algo::TailDrop,
        scale: 1,
    };
    check_args(PIPES.table(), ctx, args, how)
}

fn cmd_pl_active(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let name = ctx.arg_str(&args[0]);
    if PIPES.table().find(&name).is_some() {
        1
    } else {
        -1
    }
}

/// `drop([[min, ]max])`: constant numbers.
pub fn fixup_drop(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = Vec::new();
    for a in args {
        let n = openser_core::script::fixup::int_arg(a, "Retry-After")?;
        if n < 0 {
            return Err(format!("Retry-After {n} is negative"));
        }
        out.push(FixedArg::Int(n));
    }
    if let [FixedArg::Int(min), FixedArg::Int(max)] = out.as_slice()
        && min > max
    {
        return Err(format!("Retry-After range {min}..{max} is empty"));
    }
    Ok(out)
}

/// The Retry-After value of `drop`'s arguments, if any.
pub fn retry_after(args: &[FixedArg], rand: u64) -> Option<i64> {
    match args {
        [FixedArg::Int(max)] => Some(*max),
        [FixedArg::Int(min), FixedArg::Int(max)] => {
            let span = (max - min) as u64 + 1;
            Some(min + (rand % span) as i64)
        }
        _ => None,
    }
}

/// Send the limiting reply (`pl_drop`, `rl_drop`): 1 sent, −1 not.
pub fn send_drop(ctx: &mut Ctx, args: &[FixedArg], code: i64, reason: &str) -> i32 {
    let hdrs: Vec<String> = retry_after(args, openser_core::dns::resolver::rand_u64())
        .map(|s| format!("Retry-After: {s}\r\n"))
        .into_iter()
        .collect();
    match sl::sl_reply(ctx.msg, code as u16, reason, &hdrs, b"") {
        Ok(()) => 1,
        Err(_) => {
            openser_core::log_err!("failed to send the {code} reply");
            -1
        }
    }
}

fn cmd_pl_drop(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    send_drop(ctx, args, P.reply_code.get(), P.reply_reason.get())
}

// ---------------------------------------------------------------------------
// MI (shared with ratelimit)

/// One pipe as an MI node.
pub fn pipe_node(p: &PipeInfo) -> MiNode {
    MiNode::new("PIPE", "")
        .attr("id", p.name.clone())
        .attr("algorithm", p.algo.name())
        .attr("limit", p.limit.to_string())
        .attr("counter", p.counter.to_string())
        .attr("last_counter", p.last_counter.to_string())
        .attr("load", p.load.to_string())
        .attr("accepted", p.accepted.to_string())
        .attr("dropped", p.dropped.to_string())
}

/// `list [name]`.
pub fn mi_list_of(t: &Table, args: &[MiArg]) -> MiReply {
    match args.first().map(|a| a.value.trim()) {
        Some(n) if !n.is_empty() => match t.find(n) {
            Some(s) => MiReply::ok(vec![pipe_node(&t.info(s))]),
            None => MiReply::err(404, "No such pipe"),
        },
        _ => MiReply::ok(t.list().iter().map(pipe_node).collect()),
    }
}

/// `reset_pipe name`.
pub fn mi_reset_of(t: &Table, args: &[MiArg]) -> MiReply {
    let Some(n) = args.first().map(|a| a.value.trim()) else {
        return MiReply::err(400, "Too few or too many arguments");
    };
    match t.find(n) {
        Some(s) => {
            t.reset(s);
            MiReply::ok(vec![])
        }
        None => MiReply::err(404, "No such pipe"),
    }
}

/// `set_pid kp ki kd`.
pub fn mi_set_pid_of(t: &Table, args: &[MiArg]) -> MiReply {
    let v: Vec<f64> = args
        .iter()
        .filter_map(|a| a.value.trim().parse().ok())
        .collect();
    match (args.len(), v.as_slice()) {
        (3, [kp, ki, kd]) => {
            t.set_pid(engine::Pid {
                kp: *kp,
                ki: *ki,
                kd: *kd,
            });
            MiReply::ok(vec![])
        }
        _ => MiReply::err(400, "Bad parameters: kp ki kd expected"),
    }
}

/// `get_pid`.
pub fn mi_get_pid_of(t: &Table) -> MiReply {
    let p = t.pid();
    MiReply::ok(vec![
        MiNode::new("PID", "")
            .attr("ki", p.ki.to_string())
            .attr("kp", p.kp.to_string())
            .attr("kd", p.kd.to_string()),
    ])
}

fn mi_list(args: &[MiArg]) -> MiReply {
    mi_list_of(PIPES.table(), args)
}

fn mi_stats(_: &[MiArg]) -> MiReply {
    let t = PIPES.table();
    let (cpu, net) = t.loads();
    let mut nodes = vec![
        MiNode::new("windows", t.window().to_string()),
        MiNode::new("cpu_load", cpu.to_string()),
        MiNode::new("network_load", net.to_string()),
    ];
    nodes.extend(t.list().iter().map(|p| {
        MiNode::new("PIPE", "")
            .attr("id", p.name.clone())
            .attr("load", p.load.to_string())
            .attr("counter", p.last_counter.to_string())
    }));
    MiReply::ok(nodes)
}

fn mi_set_pipe(args: &[MiArg]) -> MiReply {
    let [name, algo, limit] = args else {
        return MiReply::err(400, "Too few or too many arguments");
    };
    let Some(a) = Algo::parse(&algo.value) else {
        return MiReply::err(400, "Unknown algorithm");
    };
    let Ok(l) = limit.value.trim().parse::<i64>() else {
        return MiReply::err(400, "Bad limit");
    };
    let t = PIPES.table();
    match t.find_or_create(name.value.trim(), a, l) {
        Ok(s) => {
            t.set_algo(s, a);
            t.set_limit(s, l);
            MiReply::ok(vec![])
        }
        Err(e) => MiReply::err(500, &e),
    }
}

fn mi_reset_pipe(args: &[MiArg]) -> MiReply {
    mi_reset_of(PIPES.table(), args)
}

fn mi_get_pipes(_: &[MiArg]) -> MiReply {
    MiReply::ok(
        PIPES
            .table()
            .list()
            .iter()
            .map(|p| {
                MiNode::new("PIPE", "")
                    .attr("id", p.name.clone())
                    .attr("algorithm", p.algo.name())
                    .attr("limit", p.limit.to_string())
                    .attr("counter", p.counter.to_string())
            })
            .collect(),
    )
}

fn mi_set_pid(args: &[MiArg]) -> MiReply {
    mi_set_pid_of(PIPES.table(), args)
}

fn mi_get_pid(_: &[MiArg]) -> MiReply {
    mi_get_pid_of(PIPES.table())
}

fn mi_push_load(args: &[MiArg]) -> MiReply {
    match args
        .first()
        .and_then(|a| a.value.trim().parse::<f64>().ok())
    {
        Some(l) if (0.0..=100.0).contains(&l) => {
            PIPES.table().push_cpu_load(l.round() as u64);
            MiReply::ok(vec![])
        }
        _ => MiReply::err(400, "Bad parameter: a load 0..100 expected"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_values() {
        assert_eq!(retry_after(&[], 7), None);
        assert_eq!(retry_after(&[FixedArg::Int(5)], 7), Some(5));
        for r in 0..20 {
            let v = retry_after(&[FixedArg::Int(3), FixedArg::Int(6)], r).unwrap();
            assert!((3..=6).contains(&v));
        }
    }

    #[test]
    fn mi_on_a_private_table() {
        let t = Table::private(8);
        let s = t.find_or_create("one", Algo::TailDrop, 2).unwrap();
        t.check(s);
        let r = mi_list_of(&t, &[]);
        assert_eq!(r.nodes.len(), 1);
        assert!(r.nodes[0].attrs.contains(&("counter".into(), "1".into())));
        assert_eq!(
            mi_list_of(
                &t,
                &[MiArg {
                    name: None,
                    value: "two".into()
                }]
            )
            .code,
            404
        );
        let three = |v: [&str; 3]| {
            v.map(|x| MiArg {
                name: None,
                value: x.into(),
            })
        };
        assert_eq!(mi_set_pid_of(&t, &three(["0.5", "0.1", "0"])).code, 200);
        assert_eq!(t.pid().kp, 0.5);
        assert_eq!(mi_set_pid_of(&t, &three(["a", "0.1", "0"])).code, 400);
        assert_eq!(
            mi_reset_of(
                &t,
                &[MiArg {
                    name: None,
                    value: "one".into()
                }]
            )
            .code,
            200
        );
        assert_eq!(t.info(s).counter, 0);
    }
}

//! ratelimit (OpenSIPS `modules/ratelimit`, 1.8–2.x script interface; not in OpenSER
//! 1.2): rate limiting by named pipes created from the script. The same
//! implementation as `pipelimit` (its [`pipelimit::engine`]: the pipe table in shared
//! memory, the algorithms, the windows ended by the module's timer), with a table of
//! its own and OpenSIPS's names. The crate uses pipelimit's library part only, so the
//! `pipelimit` module need not be loaded (no `binds`).
//!
//! * `rl_check(name, limit[, algorithm])` (every route; may contain PVs): count the
//!   request on pipe `name`, created at its first use with `algorithm` (default
//!   `default_algorithm`, "TAILDROP"); the limit is per second (OpenSIPS: "not per
//!   timer_interval"; the window's limit is limit × `timer_interval`) and replaces the
//!   pipe's limit at every call. 1 passes, −1 over the limit (or an error). With only
//!   `name` an existing pipe is checked (−2 when there is none).
//! * `rl_dec_count(name)`: un-count one request of the window; `rl_reset_count(name)`:
//!   zero the window's counter (1, −1 when there is no such pipe).
//! * `rl_drop([[min, ]max])` (OpenSIPS 1.4; REQUEST, BRANCH, FAILURE): reply
//!   `reply_code` `reply_reason` (503 "Server Unavailable") statelessly, with a
//!   `Retry-After` as `pl_drop`.
//!
//! Parameters: `timer_interval` (10 s), `hash_size` (1024: the number of pipes the
//! table holds), `default_algorithm` ("TAILDROP"), `reply_code`, `reply_reason`,
//! `load_fetch` (1). Algorithms: TAILDROP, RED, NETWORK, FEEDBACK, NOP as pipelimit.
//!
//! PV: `$rl_count(name)`, the pipe's counter in the current window (null without
//! such a pipe).
//!
//! MI: `rl_list [name]`, `rl_reset_pipe name`, `rl_set_pid kp ki kd`, `rl_get_pid`.

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{PvParam, PvSpec};
use openser_core::mi::{MiArg, MiReply};
use openser_core::module::{
    BoolParam, CmdExport, Every, FixedArg, IntParam, MiExport, ModuleExports, Param, PvExport,
    StrParam, TimerExport,
};
use openser_core::route::ANY_ROUTE;
use openser_core::script::{Ctx, PvValue};
use pipelimit::engine::Algo;
use pipelimit::{CheckArgs, Limiter};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "ratelimit",
    binds: &["sl"],
    params: &[
        Param::int_range("timer_interval", &P.timer_interval, 1, 3600),
        Param::int_range("hash_size", &P.hash_size, 1, 1 << 20),
        Param::str_with("default_algorithm", &P.default_algorithm, check_algo),
        Param::int_range("reply_code", &P.reply_code, 300, 699),
        Param::str("reply_reason", &P.reply_reason),
        Param::bool("load_fetch", &P.load_fetch),
        Param::no_effect("expire_time", "pipes are kept until restart"),
    ],
    cmds: &[
        CmdExport::new("rl_check", 1, 3, ANY_ROUTE, cmd_rl_check).fixup(fixup_check),
        CmdExport::new("rl_dec_count", 1, 1, ANY_ROUTE, cmd_rl_dec_count),
        CmdExport::new("rl_reset_count", 1, 1, ANY_ROUTE, cmd_rl_reset_count),
        CmdExport::new("rl_drop", 0, 2, pipelimit::DROP_ROUTES, cmd_rl_drop)
            .fixup(pipelimit::fixup_drop),
    ],
    pvs: &[PvExport::new("rl_count", pv_rl_count)],
    mi: &[
        MiExport::new("rl_list", mi_list),
        MiExport::new("rl_reset_pipe", mi_reset_pipe),
        MiExport::new("rl_set_pid", mi_set_pid),
        MiExport::new("rl_get_pid", mi_get_pid).no_input(),
    ],
    timers: &[TimerExport::new(
        "ratelimit windows",
        Every::SecsParam(&P.timer_interval),
        timer,
    )],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with OpenSIPS's defaults.
pub struct Params {
    pub timer_interval: IntParam,
    pub hash_size: IntParam,
    pub default_algorithm: StrParam,
    pub reply_code: IntParam,
    pub reply_reason: StrParam,
    pub load_fetch: BoolParam,
}

pub static P: Params = Params {
    timer_interval: IntParam::new(10),
    hash_size: IntParam::new(1024),
    default_algorithm: StrParam::new("TAILDROP"),
    reply_code: IntParam::new(503),
    reply_reason: StrParam::new("Server Unavailable"),
    load_fetch: BoolParam::new(true),
};

/// ratelimit's pipe table.
pub static PIPES: Limiter = Limiter::new("ratelimit pipes");

fn check_algo(s: &str) -> Result<(), String> {
    Algo::parse(s)
        .map(|_| ())
        .ok_or_else(|| format!("unknown algorithm '{s}' (TAILDROP, RED, NETWORK, FEEDBACK, NOP)"))
}

fn mod_init() -> Result<(), String> {
    PIPES.init(P.hash_size.get() as usize)?;
    pipelimit::register_limiter(&PIPES);
    Ok(())
}

fn timer(_ticks: u64) {
    pipelimit::end_window(PIPES.table(), P.load_fetch.get());
}

fn fixup_check(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    pipelimit::fixup_with_algo_at(args, 2)
}

fn cmd_rl_check(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let how = CheckArgs {
        algo_at: 2,
        limit_at: 1,
        default_algo: Algo::parse(P.default_algorithm.get()).unwrap_or(Algo::TailDrop),
        scale: P.timer_interval.get(),
    };
    pipelimit::check_args(PIPES.table(), ctx, args, how)
}

fn with_pipe(ctx: &mut Ctx, args: &[FixedArg], f: impl FnOnce(usize)) -> i32 {
    let name = ctx.arg_str(&args[0]);
    match PIPES.table().find(&name) {
        Some(s) => {
            f(s);
            1
        }
        None => -1,
    }
}

fn cmd_rl_dec_count(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    with_pipe(ctx, args, |s| PIPES.table().dec(s))
}

fn cmd_rl_reset_count(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    with_pipe(ctx, args, |s| PIPES.table().reset(s))
}

fn cmd_rl_drop(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    pipelimit::send_drop(ctx, args, P.reply_code.get(), P.reply_reason.get())
}

fn pv_rl_count(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    let name = match &pv.param {
        Some(PvParam::Name(n)) => n.clone(),
        Some(PvParam::Pv(inner)) => ctx.get_pv(inner).to_text(),
        _ => return PvValue::Null,
    };
    let t = PIPES.table();
    match t.find(&name) {
        Some(s) => PvValue::Int(t.info(s).counter as i64),
        None => PvValue::Null,
    }
}

fn mi_list(args: &[MiArg]) -> MiReply {
    pipelimit::mi_list_of(PIPES.table(), args)
}

fn mi_reset_pipe(args: &[MiArg]) -> MiReply {
    pipelimit::mi_reset_of(PIPES.table(), args)
}

fn mi_set_pid(args: &[MiArg]) -> MiReply {
    pipelimit::mi_set_pid_of(PIPES.table(), args)
}

fn mi_get_pid(_: &[MiArg]) -> MiReply {
    pipelimit::mi_get_pid_of(PIPES.table())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_table() {
        for p in [
            "timer_interval",
            "hash_size",
            "default_algorithm",
            "expire_time",
        ] {
            assert!(EXPORTS.param(p).is_some(), "{p}");
        }
        assert!(check_algo("RED").is_ok());
        assert!(check_algo("red").is_err());
    }
}

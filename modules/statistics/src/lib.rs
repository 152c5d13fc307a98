//! Module `statistics` (1.2): statistics defined by the script writer.
//!
//! `modparam("statistics", "variable", "name[/no_reset]")` (repeatable) declares a
//! counter of the `script` group; `update_stat(name, "+n"|"-n")` adds to any counter
//! (the script's or a module's, by `name` or `group:name`; a value never goes below
//! zero), `reset_stat(name)` sets it to zero (unless it is `no_reset`). The update is
//! a constant, as in 1.2, and 0 is refused. The counters are shm statistics like every
//! other: MI `get_statistics script:`, xhttp's metrics endpoint.

use std::cell::RefCell;
use std::collections::HashMap;

use openser_core::cfg::ast::Arg;
use openser_core::module::{CmdExport, FixedArg, ModParamValue, ModuleExports, Param};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;
use openser_core::script::fixup::{int_arg, string_arg};
use openser_core::state::Registry;
use openser_core::stats::{self, NO_RESET, Stat};

const ROUTES: u32 = REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "statistics",
    params: &[Param::func("variable", add_variable)],
    cmds: &[
        CmdExport::new("update_stat", 2, 2, ROUTES, cmd_update_stat).fixup(fixup_update),
        CmdExport::new("reset_stat", 1, 1, ROUTES, cmd_reset_stat).fixup(fixup_reset),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The group of the script's statistics (1.2's name).
pub const GROUP: &str = "script";

/// Declared variables: (name, flags), filled while the config loads.
static VARIABLES: Registry<(String, u32)> = Registry::new();

thread_local! {
    /// Resolved counters by name (the registry is read once per name and process).
    static CACHE: RefCell<HashMap<String, Option<Stat>>> = RefCell::new(HashMap::new());
}

/// `name` or `name/no_reset`.
pub fn parse_variable(v: &str) -> Result<(String, u32), String> {
    let (name, flag) = match v.split_once('/') {
        Some((n, f)) => (n.trim(), Some(f.trim())),
        None => (v.trim(), None),
    };
    if name.is_empty() || name.contains([':', ' ', '\t']) {
        return Err(format!("bad statistic name '{name}'"));
    }
    let flags = match flag {
        None => 0,
        Some(f) if f.eq_ignore_ascii_case("no_reset") => NO_RESET,
        Some(f) => return Err(format!("unsupported flag '{f}' (only no_reset)")),
    };
    Ok((name.to_string(), flags))
}

fn add_variable(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("a string expected".into());
    };
    let (name, flags) = parse_variable(s)?;
    let mut vars = VARIABLES.lock();
    if vars.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
        return Err(format!("statistic '{name}' declared twice"));
    }
    vars.push((name, flags));
    Ok(())
}

fn mod_init() -> Result<(), String> {
    for (name, flags) in VARIABLES.lock().iter() {
        stats::register(GROUP, name, *flags);
    }
    Ok(())
}

fn stat_name(a: &Arg) -> Result<FixedArg, String> {
    let name = string_arg(a)?;
    if name.trim().is_empty() {
        return Err("empty statistic name".into());
    }
    Ok(FixedArg::Str(name.trim().to_string()))
}

fn fixup_update(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let n = int_arg(&args[1], "update value")?;
    if n == 0 {
        return Err("update with 0 has no sense".into());
    }
    Ok(vec![stat_name(&args[0])?, FixedArg::Int(n)])
}

fn fixup_reset(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    Ok(vec![stat_name(&args[0])?])
}

fn counter(name: &str) -> Option<Stat> {
    CACHE.with(|c| {
        *c.borrow_mut()
            .entry(name.to_string())
            .or_insert_with(|| stats::find(name))
    })
}

fn cmd_update_stat(_: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (FixedArg::Str(name), FixedArg::Int(n)) = (&args[0], &args[1]) else {
        return -1;
    };
    match counter(name) {
        Some(s) => {
            s.update(*n);
            1
        }
        None => {
            openser_core::log_err!("update_stat: no statistic '{name}'");
            -1
        }
    }
}

fn cmd_reset_stat(_: &mut Ctx, args: &[FixedArg]) -> i32 {
    let FixedArg::Str(name) = &args[0] else {
        return -1;
    };
    if counter(name).is_none() {
        openser_core::log_err!("reset_stat: no statistic '{name}'");
        return -1;
    }
    // stats::reset leaves no_reset counters alone
    stats::reset(name);
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables() {
        assert_eq!(parse_variable("calls"), Ok(("calls".into(), 0)));
        assert_eq!(
            parse_variable("active_calls/no_reset"),
            Ok(("active_calls".into(), NO_RESET))
        );
        assert!(parse_variable("a/other").is_err());
        assert!(parse_variable("").is_err());
        assert!(parse_variable("g:x").is_err());
    }

    #[test]
    fn update_and_reset() {
        let s = stats::register(GROUP, "ut_counter", 0);
        let k = stats::register(GROUP, "ut_kept", NO_RESET);
        let mut m = openser_core::parser::SipMsg::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
        let up = |n: i64, name: &str, ctx: &mut Ctx| {
            cmd_update_stat(ctx, &[FixedArg::Str(name.into()), FixedArg::Int(n)])
        };
        assert_eq!(up(5, "ut_counter", &mut ctx), 1);
        assert_eq!(up(-2, "script:ut_counter", &mut ctx), 1);
        assert_eq!(s.get(), 3);
        assert_eq!(up(-10, "ut_counter", &mut ctx), 1);
        assert_eq!(s.get(), 0, "never below zero");
        assert_eq!(up(1, "no_such_stat", &mut ctx), -1);
        up(4, "ut_kept", &mut ctx);
        up(4, "ut_counter", &mut ctx);
        assert_eq!(
            cmd_reset_stat(&mut ctx, &[FixedArg::Str("ut_counter".into())]),
            1
        );
        assert_eq!(
            cmd_reset_stat(&mut ctx, &[FixedArg::Str("ut_kept".into())]),
            1
        );
        assert_eq!((s.get(), k.get()), (0, 4));
    }
}

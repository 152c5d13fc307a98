//! pike (OpenSER 1.2 `modules/pike`): flood detection per source IP address.
//!
//! `pike_check_req()` (REQUEST): counts the request against its source address in a
//! tree shared by all processes (`tree.rs`) and returns −1 when the address sends more
//! than `reqs_density_per_unit` requests per `sampling_time_unit` seconds (between 1
//! and 3 times that for IPv4, 8 times for IPv6, as 1.2 says), else 1. What to do with
//! a flooding source is the script's choice (usually `drop`). An internal error
//! (the tree is full) returns 1, as 1.2 does, not to block innocent sources.
//!
//! Parameters (1.2 defaults): `sampling_time_unit` 2 (seconds), `reqs_density_per_unit`
//! 30, `remove_latency` 120 (seconds an address stays in the tree after its last
//! request). `check_route` (OpenSIPS's later addition, unset by default): the name of
//! a route run for every received request before the main route; unless that route
//! `drop`s, the request is checked automatically and dropped silently when its source
//! floods. Not in 1.2: `max_nodes` (default 16384), the size of the tree's node pool,
//! which bounds pike's memory whatever the sources.
//!
//! MI `pike_list`: the addresses that currently exceed the density. Statistic
//! `pike:tree_nodes` (not in 1.2): nodes in use.

pub mod tree;

use openser_core::cfg::ast::RouteKind;
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, Every, FixedArg, IntParam, MiExport, ModuleExports, Param, StatExport, StrParam,
    TimerExport,
};
use openser_core::parser::SipMsg;
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;
use std::net::IpAddr;
use std::sync::OnceLock;
use tree::{Mark, Tree};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "pike",
    params: &[
        Param::int_range("sampling_time_unit", &P.sampling_time_unit, 1, 3600),
        Param::int_range(
            "reqs_density_per_unit",
            &P.reqs_density_per_unit,
            1,
            1 << 30,
        ),
        Param::int_range("remove_latency", &P.remove_latency, 1, 1 << 30),
        Param::str("check_route", &P.check_route),
        Param::int_range("max_nodes", &P.max_nodes, 16, 1 << 24),
    ],
    cmds: &[CmdExport::new(
        "pike_check_req",
        0,
        0,
        REQUEST_ROUTE,
        cmd_pike_check_req,
    )],
    mi: &[MiExport::new("pike_list", mi_pike_list).no_input()],
    stats: &[StatExport::func("tree_nodes", tree_nodes)],
    timers: &[
        TimerExport::new("pike-clean", Every::Secs(1), clean),
        TimerExport::new("pike-swap", Every::SecsParam(&P.sampling_time_unit), swap),
    ],
    mod_init: Some(mod_init),
    pre_script: Some(pre_script),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub sampling_time_unit: IntParam,
    pub reqs_density_per_unit: IntParam,
    pub remove_latency: IntParam,
    pub check_route: StrParam,
    pub max_nodes: IntParam,
}

pub static P: Params = Params {
    sampling_time_unit: IntParam::new(2),
    reqs_density_per_unit: IntParam::new(30),
    remove_latency: IntParam::new(120),
    check_route: StrParam::new(""),
    max_nodes: IntParam::new(16384),
};

static TREE: OnceLock<Tree> = OnceLock::new();
static CHECK_ROUTE: OnceLock<usize> = OnceLock::new();

fn mod_init() -> Result<(), String> {
    let t = Tree::new(
        P.max_nodes.get() as u32,
        P.reqs_density_per_unit.get() as u32,
        P.remove_latency.get() as u32,
    )
    .ok_or("pike: no shared memory for the tree")?;
    let (locks, len, pool) = t.lock_spans();
    if TREE.set(t).is_ok() {
        shm::register_repair(locks, len, "pike tree branch", repair_branch);
        shm::register_repair(
            pool,
            size_of::<shm::FastLock>(),
            "pike node pool",
            repair_pool,
        );
    }
    let name = P.check_route.get();
    if !name.is_empty() {
        let idx = openser_core::script::route_index(RouteKind::Request, name)
            .ok_or_else(|| format!("pike: check_route: no route \"{name}\" in the script"))?;
        let _ = CHECK_ROUTE.set(idx);
    }
    Ok(())
}

fn now() -> u32 {
    openser_core::clock::now().clamp(0, u32::MAX as i64) as u32
}

fn ip_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => {
                b[..4].copy_from_slice(&v4.octets());
                (b, 4)
            }
            None => (a.octets(), 16),
        },
    }
}

/// Count `msg`'s source; true when it floods.
fn is_red(msg: &SipMsg) -> bool {
    let Some(t) = TREE.get() else { return false };
    let ip = msg.rcv.src.ip();
    let (b, n) = ip_bytes(ip);
    match t.mark(&b[..n], now()) {
        Mark::Red => {
            openser_core::log_warn!("ALARM - TOO MANY HITS on {ip} !!");
            true
        }
        Mark::Ok => false,
        Mark::NoRoom => {
            openser_core::log_dbg!("pike tree full: {ip} not tracked");
            false
        }
    }
}

fn cmd_pike_check_req(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    if is_red(&*ctx.msg) { -1 } else { 1 }
}

fn pre_script(msg: &mut SipMsg) -> bool {
    let Some(&idx) = CHECK_ROUTE.get() else {
        return true;
    };
    let dropped = {
        let mut ctx = Ctx::new(&mut *msg, REQUEST_ROUTE);
        openser_core::script::run_route(RouteKind::Request, idx, &mut ctx);
        ctx.drop_requested()
    };
    if dropped {
        return true;
    }
    !is_red(msg)
}

fn clean(_ticks: u64) {
    if let Some(t) = TREE.get() {
        t.clean(now());
    }
}

fn swap(_ticks: u64) {
    if let Some(t) = TREE.get() {
        t.swap();
    }
}

/// Repair hook: a process died holding a branch lock (issue 18).
fn repair_branch(lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TREE.get().ok_or("pike: no tree")?;
    let b = t
        .branch_of_lock(lock)
        .ok_or_else(|| format!("pike: no branch lock at {lock:#x}"))?;
    let done = t.repair_branch(b);
    drop(g);
    Ok(done)
}

/// Repair hook: a process died holding the node pool's lock.
fn repair_pool(_lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TREE.get().ok_or("pike: no tree")?;
    let done = t.repair_pool();
    drop(g);
    Ok(done)
}

fn tree_nodes() -> u64 {
    TREE.get().map_or(0, |t| t.nodes() as u64)
}

fn mi_pike_list(_args: &[MiArg]) -> MiReply {
    let Some(t) = TREE.get() else {
        return MiReply::ok(Vec::new());
    };
    MiReply::ok(t.red_ips().into_iter().map(MiNode::value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_bytes() {
        let (b, n) = ip_bytes("10.1.2.3".parse().unwrap());
        assert_eq!(&b[..n], &[10, 1, 2, 3]);
        let (b, n) = ip_bytes("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(&b[..n], &[10, 1, 2, 3]);
        let (_, n) = ip_bytes("2001:db8::1".parse().unwrap());
        assert_eq!(n, 16);
    }

    #[test]
    fn exports_table() {
        for p in [
            "sampling_time_unit",
            "reqs_density_per_unit",
            "remove_latency",
            "check_route",
        ] {
            assert!(EXPORTS.param(p).is_some(), "{p}");
        }
        assert_eq!(EXPORTS.mi[0].name, "pike_list");
    }
}

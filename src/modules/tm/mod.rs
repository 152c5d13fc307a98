//! tm — the transaction module (reference §8.2): stateful forwarding with
//! transactions kept in shared memory.
//!
//! Files: `h_table` (table, cells, timer list), `shmref` (the module's only unsafe:
//! shm accessors), `lookup` (hash, branch ids, matching), `clone` (AVPs and the request
//! as kept in shm), `fwd` (t_newtran, t_relay), `reply` (local and relayed replies,
//! selection, failure_route), `cancel` (CANCEL/ACK), `timer` (retransmissions,
//! timeouts, wait and delete), `callbacks` (hooks for other modules, e.g. acc: final
//! reply sent upstream, negative outcome before failure_route).
//!
//! Lock order: hash entry lock -> cell reply lock (the timer-list locks are taken only
//! by the timer process, never while holding another tm lock). No lock is held while a
//! script route runs or while a name is resolved; UDP sends (which do not block) are
//! made under the reply lock, as OpenSER does.
//!
//! Per process, the "current transaction" (OpenSER's `T`) is remembered by identity
//! (pointer + hash + label) and re-validated under the entry lock on every use, so no
//! reference outlives a script function; it is reset before each request (pre_script)
//! and each reply (reply_hook).

pub mod callbacks;
pub mod cancel;
pub mod clone;
pub mod fwd;
pub mod h_table;
pub mod lookup;
pub mod reply;
mod shmref;
pub mod timer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use shm::ShmPtr;

use crate::core::cfg::ast::{Arg, ArgValue, RouteKind};
use crate::core::cfg::pv::PvSpec;
use crate::core::module::{
    CmdExport, FixedArg, ModParamValue, ModuleExports, ParamExport, PvExport,
};
use crate::core::parser::{Method, SipMsg};
use crate::core::route::*;
use crate::core::script::{AvpId, Ctx, PvValue, route_index};
use crate::core::stats::{self, NO_RESET, Stat};

use h_table::{B_FINAL, B_LOCAL_REPLY, Cell, CellRef, T_ALL_LOCAL, T_CANCELED, T_UAS_LOCAL_LAST};

// ---------------------------------------------------------------- parameters

/// Module parameters (set before fork, read everywhere).
pub struct Params {
    fr_timer: AtomicU32,
    fr_inv_timer: AtomicU32,
    wt_timer: AtomicU32,
    delete_timer: AtomicU32,
    t1: AtomicU32,
    t2: AtomicU32,
    noisy_ctimer: AtomicU32,
    ruri_matching: AtomicU32,
    via1_matching: AtomicU32,
    restart_fr: AtomicU32,
    enable_stats: AtomicU32,
}

pub static P: Params = Params {
    fr_timer: AtomicU32::new(30),
    fr_inv_timer: AtomicU32::new(120),
    wt_timer: AtomicU32::new(5),
    delete_timer: AtomicU32::new(2),
    t1: AtomicU32::new(500),
    t2: AtomicU32::new(4000),
    noisy_ctimer: AtomicU32::new(0),
    ruri_matching: AtomicU32::new(1),
    via1_matching: AtomicU32::new(1),
    restart_fr: AtomicU32::new(1),
    enable_stats: AtomicU32::new(1),
};

impl Params {
    pub fn fr_ms(&self) -> u32 {
        self.fr_timer.load(Ordering::Relaxed).saturating_mul(1000)
    }
    pub fn fr_inv_ms(&self) -> u32 {
        self.fr_inv_timer
            .load(Ordering::Relaxed)
            .saturating_mul(1000)
    }
    pub fn wt_ms(&self) -> u32 {
        self.wt_timer.load(Ordering::Relaxed).saturating_mul(1000)
    }
    pub fn t1_t2(&self) -> (u32, u32) {
        (
            self.t1.load(Ordering::Relaxed).max(100),
            self.t2.load(Ordering::Relaxed).max(100),
        )
    }
    pub fn noisy_ctimer(&self) -> bool {
        self.noisy_ctimer.load(Ordering::Relaxed) != 0
    }
    pub fn ruri_matching(&self) -> bool {
        self.ruri_matching.load(Ordering::Relaxed) != 0
    }
    pub fn via1_matching(&self) -> bool {
        self.via1_matching.load(Ordering::Relaxed) != 0
    }
    pub fn restart_fr(&self) -> bool {
        self.restart_fr.load(Ordering::Relaxed) != 0
    }
}

static FR_AVP: Mutex<Option<AvpId>> = Mutex::new(None);
static FR_INV_AVP: Mutex<Option<AvpId>> = Mutex::new(None);

fn int_param(v: &ModParamValue) -> Result<u32, String> {
    match v {
        ModParamValue::Int(i) => u32::try_from(*i).map_err(|_| format!("bad value {i}")),
        ModParamValue::Str(s) => s.trim().parse().map_err(|_| format!("bad number {s:?}")),
    }
}

macro_rules! int_params {
    ($($f:ident => $field:ident),* $(,)?) => { $(
        fn $f(v: &ModParamValue) -> Result<(), String> {
            P.$field.store(int_param(v)?, Ordering::Relaxed);
            Ok(())
        }
    )* };
}

int_params!(
    set_fr_timer => fr_timer, set_fr_inv_timer => fr_inv_timer, set_wt_timer => wt_timer,
    set_delete_timer => delete_timer, set_t1 => t1, set_t2 => t2, set_noisy => noisy_ctimer,
    set_ruri_m => ruri_matching, set_via1_m => via1_matching, set_restart_fr => restart_fr,
    set_enable_stats => enable_stats,
);

/// `i:24`, `s:name`, `$avp(i:24)`, `$avp(s:name)`, `$avp(name)` -> AVP id.
pub fn parse_avp_id(s: &str) -> Option<AvpId> {
    let s = s.trim();
    let s = s
        .strip_prefix("$avp(")
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(s);
    if let Some(n) = s.strip_prefix("i:").or_else(|| s.strip_prefix("I:")) {
        return n.trim().parse().ok().map(AvpId::Int);
    }
    let n = s
        .strip_prefix("s:")
        .or_else(|| s.strip_prefix("S:"))
        .unwrap_or(s);
    (!n.is_empty()).then(|| AvpId::Str(n.to_string()))
}

fn set_fr_avp(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("fr_timer_avp needs a string".into());
    };
    *FR_AVP.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(parse_avp_id(s).ok_or("bad AVP spec")?);
    Ok(())
}

fn set_fr_inv_avp(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("fr_inv_timer_avp needs a string".into());
    };
    *FR_INV_AVP.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(parse_avp_id(s).ok_or("bad AVP spec")?);
    Ok(())
}

fn ignore_param(_v: &ModParamValue) -> Result<(), String> {
    Ok(())
}

/// Per-transaction fr_timer (`fr` true) / fr_inv_timer from the configured AVP, in ms.
pub fn avp_secs(ctx: &Ctx, fr: bool) -> Option<u32> {
    let id = if fr { &FR_AVP } else { &FR_INV_AVP };
    let id = id.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
    let v = match ctx.avps.get(&id)? {
        PvValue::Int(i) => *i,
        PvValue::Str(s) => s.trim().parse().ok()?,
        PvValue::Null => return None,
    };
    u32::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .map(|v| v.saturating_mul(1000))
}

// ---------------------------------------------------------------- statistics

pub struct TmStats {
    pub uas: Stat,
    pub uac: Stat,
    pub x2: Stat,
    pub x3: Stat,
    pub x4: Stat,
    pub x5: Stat,
    pub x6: Stat,
    pub inuse: Stat,
    pub received: Stat,
    pub relayed: Stat,
    pub local: Stat,
}

static STATS: OnceLock<TmStats> = OnceLock::new();

pub fn stats() -> &'static TmStats {
    STATS.get_or_init(|| TmStats {
        received: stats::register("tm", "received_replies", 0),
        relayed: stats::register("tm", "relayed_replies", 0),
        local: stats::register("tm", "local_replies", 0),
        uas: stats::register("tm", "UAS_transactions", 0),
        uac: stats::register("tm", "UAC_transactions", 0),
        x2: stats::register("tm", "2xx_transactions", 0),
        x3: stats::register("tm", "3xx_transactions", 0),
        x4: stats::register("tm", "4xx_transactions", 0),
        x5: stats::register("tm", "5xx_transactions", 0),
        x6: stats::register("tm", "6xx_transactions", 0),
        inuse: stats::register("tm", "inuse_transactions", NO_RESET),
    })
}

pub(crate) fn stats_inuse(d: i64) {
    if d >= 0 {
        stats().inuse.add(d as u64);
    } else {
        for _ in 0..(-d) {
            stats().inuse.dec();
        }
    }
}

// ---------------------------------------------------------------- per-process state

#[derive(Clone, Copy)]
struct Cur {
    hash: u32,
    label: u32,
    p: ShmPtr<Cell>,
}

static CURRENT: Mutex<Option<Cur>> = Mutex::new(None);
/// t_on_failure / t_on_reply / t_on_branch armed for this message (route index + 1).
static PENDING: Mutex<[u32; 3]> = Mutex::new([0; 3]);

fn cur_of(c: &Cell) -> Cur {
    // The address is only compared, never dereferenced, after revalidation.
    Cur {
        hash: c.hash_index,
        label: c.label,
        p: shmptr_of(c),
    }
}

fn shmptr_of(c: &Cell) -> ShmPtr<Cell> {
    shmref_ptr(c)
}

use shmref::ptr_of as shmref_ptr;

/// The current transaction (re-validated), if any.
pub fn current() -> Option<CellRef> {
    let cur = (*CURRENT.lock().unwrap_or_else(|e| e.into_inner()))?;
    h_table::revalidate(cur.hash, cur.p, cur.label)
}

pub fn set_current(c: &Cell) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(cur_of(c));
}

pub fn clear_current() {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Replace the current transaction, returning the previous one (for nested routes).
pub fn swap_current(c: Option<&CellRef>) -> Option<CellRef> {
    let prev = current();
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = c.map(|c| cur_of(c));
    prev
}

/// Take (and reset) the routes armed by t_on_*.
pub fn take_pending() -> [u32; 3] {
    std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()))
}

fn pre_script(_msg: &mut SipMsg) -> bool {
    clear_current();
    take_pending();
    true
}

fn reply_hook(msg: &mut SipMsg) -> bool {
    reply::reply_hook(msg)
}

// ---------------------------------------------------------------- init

fn mod_init() -> Result<(), String> {
    h_table::init_table()?;
    stats();
    crate::core::process::timer::register_utimer("tm-utimer", 100, timer::utimer);
    crate::core::process::timer::register_timer("tm-timer", 1, timer::timer);
    Ok(())
}

fn destroy() {
    let ms = shm::stats();
    crate::log_info!(
        "INFO:tm:destroy: inuse_transactions={} cells={} shm_used={}",
        stats().inuse.get(),
        h_table::count_cells(),
        ms.used
    );
}

// ---------------------------------------------------------------- functions

/// Parse a t_relay flags value (decimal or 0x hex).
fn parse_flags(s: &str) -> Option<i64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn arg_text(a: &Arg) -> String {
    match &a.value {
        ArgValue::Str(s) | ArgValue::Ident(s) => s.clone(),
        ArgValue::Int(i) => i.to_string(),
        ArgValue::Ip(ip) => ip.to_string(),
        ArgValue::Sock(s) => {
            let mut t = String::new();
            if let Some(p) = s.proto {
                t.push_str(&format!("{p:?}").to_lowercase());
                t.push(':');
            }
            match &s.host {
                crate::core::cfg::ast::Host::Ip(ip) => t.push_str(&ip.to_string()),
                crate::core::cfg::ast::Host::Name(n) => t.push_str(n),
            }
            if let Some(p) = s.port {
                t.push_str(&format!(":{p}"));
            }
            t
        }
        ArgValue::Pv(p) => p.text.clone(),
        ArgValue::Net(n) => format!("{n:?}"),
    }
}

/// t_relay fixup: `()`, `(flags)`, `("[proto:]host[:port]")`, `(dest, flags)` ->
/// `[Str(dest) or Str(""), Int(flags)]`.
fn fixup_t_relay(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut dest = String::new();
    let mut flags = 0;
    match args {
        [] => {}
        [a] => {
            let t = arg_text(a);
            match parse_flags(&t) {
                Some(f) if !matches!(a.value, ArgValue::Sock(_)) => flags = f,
                _ => dest = t,
            }
        }
        [a, b] => {
            dest = arg_text(a);
            flags = parse_flags(&arg_text(b)).ok_or("t_relay: bad flags")?;
        }
        _ => return Err("t_relay: too many parameters".into()),
    }
    if !dest.is_empty() && fwd::parse_hostport(&dest).is_none() {
        return Err(format!("t_relay: cannot resolve {dest:?}"));
    }
    Ok(vec![FixedArg::Str(dest), FixedArg::Int(flags)])
}

/// `t_relay_to_udp(host, port)` fixup -> same shape as t_relay.
fn fixup_relay_to(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let dest = match args {
        [] => String::new(),
        [h] => arg_text(h),
        [h, p] => format!("{}:{}", arg_text(h), arg_text(p)),
        _ => return Err("too many parameters".into()),
    };
    Ok(vec![FixedArg::Str(dest), FixedArg::Int(0)])
}

fn fixup_regex(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let [a] = args else {
        return Err("one regular expression expected".into());
    };
    let re = crate::core::re::Regex::new(&arg_text(a), true, true)?;
    Ok(vec![FixedArg::Regex(Arc::new(re))])
}

fn relay_common(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (dest, flags) = match args {
        [FixedArg::Str(d), FixedArg::Int(f)] => (d.as_str(), *f),
        _ => ("", 0),
    };
    let fixed: Option<SocketAddr> = if dest.is_empty() {
        None
    } else {
        match fwd::parse_hostport(dest) {
            Some(a) => Some(a),
            None => return -1,
        }
    };
    fwd::t_relay(ctx, fixed, flags)
}

fn cmd_t_relay(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    relay_common(ctx, args)
}

fn cmd_t_newtran(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    if ctx.msg.method() == Method::Ack {
        return if reply::absorb_ack(ctx.msg) { 0 } else { -1 };
    }
    match fwd::new_tran(ctx.msg) {
        fwd::NewTran::New(_) => 1,
        fwd::NewTran::Retrans(_) => 0,
        fwd::NewTran::Err => -1,
    }
}

fn cmd_t_reply(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
        return -1;
    };
    let code = ctx.arg_str(a);
    let reason = ctx.arg_str(b);
    let Ok(code) = code.trim().parse::<u16>() else {
        return -1;
    };
    if !(100..700).contains(&code) {
        return -1;
    }
    let Some(c) = current() else {
        crate::log_err!(
            "ERROR:tm:t_reply: cannot send a t_reply to a message for which no T-state has been established"
        );
        return -1;
    };
    if reply::t_reply_msg(&c, ctx.msg, code, &reason) {
        1
    } else {
        -1
    }
}

fn cmd_t_check_trans(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    match ctx.msg.method() {
        Method::Cancel => {
            if reply::find_invite(ctx.msg).is_some() {
                1
            } else {
                -1
            }
        }
        Method::Ack => {
            if reply::find_invite(ctx.msg).is_some() {
                1
            } else {
                -1
            }
        }
        _ => {
            let Some(k) = lookup::request_key(ctx.msg) else {
                return 0;
            };
            let b = ctx.msg.buf();
            let hash = lookup::tm_hash(k.callid.of(b), k.cseq_num.of(b));
            let (r, v) = (P.ruri_matching(), P.via1_matching());
            let msg = &*ctx.msg;
            match h_table::find_in_entry(hash, |c| {
                lookup::request_matches(c, msg, &k, lookup::Want::Same, r, v)
            }) {
                Some(c) => {
                    reply::resend_last(&c);
                    0
                }
                None => -1,
            }
        }
    }
}

fn with_state<R>(f: impl FnOnce(&Cell, &mut h_table::CellState) -> R) -> Option<R> {
    let c = current()?;
    let mut g = c.lock_state();
    let st = g.st();
    Some(f(&c, st))
}

fn cmd_t_was_cancelled(_ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    match with_state(|_, st| st.flags & T_CANCELED != 0) {
        Some(true) => 1,
        _ => -1,
    }
}

fn arm(ctx: &mut Ctx, args: &[FixedArg], kind: RouteKind, slot: usize) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let name = ctx.arg_str(a);
    let Some(idx) = route_index(kind, name.trim()) else {
        crate::log_err!("ERROR:tm:t_on: no such route {name:?}");
        return -1;
    };
    let v = idx as u32 + 1;
    PENDING.lock().unwrap_or_else(|e| e.into_inner())[slot] = v;
    // Inside reply/failure routes, arm the current transaction directly.
    if ctx.route_type & (ONREPLY_ROUTE | FAILURE_ROUTE) != 0 && slot == 1 {
        with_state(|_, st| st.on_reply = v);
    }
    if ctx.route_type & ONREPLY_ROUTE != 0 && slot == 0 {
        with_state(|_, st| st.on_failure = v);
    }
    1
}

fn cmd_t_on_failure(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    arm(ctx, args, RouteKind::Failure, 0)
}
fn cmd_t_on_reply(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    arm(ctx, args, RouteKind::OnReply, 1)
}
fn cmd_t_on_branch(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    arm(ctx, args, RouteKind::Branch, 2)
}

fn cmd_t_replicate(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let uri = ctx.arg_str(a);
    let c = match fwd::new_tran(ctx.msg) {
        fwd::NewTran::New(c) => c,
        fwd::NewTran::Retrans(_) => return 0,
        fwd::NewTran::Err => return -1,
    };
    {
        let mut g = c.lock_state();
        g.st().flags |= h_table::T_LOCAL;
    }
    let saved = ctx.msg.dst_uri.replace(uri);
    let n = fwd::relay_branches(ctx, &c, None);
    ctx.msg.dst_uri = saved;
    if n > 0 { 1 } else { -1 }
}

fn cmd_t_flush_flags(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let f = ctx.msg.flags;
    match with_state(|_, st| st.msg_flags = f) {
        Some(()) => 1,
        None => -1,
    }
}

fn cmd_t_release(_ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let r = with_state(|c, st| {
        st.wait_at = fwd::now_ms() + u64::from(P.wt_ms());
        c.due(st.wait_at);
    });
    clear_current();
    if r.is_some() { 1 } else { -1 }
}

fn cmd_t_check_status(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Regex(re)) = args.first() else {
        return -1;
    };
    let code = if ctx.route_type & ONREPLY_ROUTE != 0 {
        ctx.msg.status().map(u32::from).unwrap_or(0)
    } else if ctx.route_type & FAILURE_ROUTE != 0 {
        ctx.reply_code
    } else {
        with_state(|_, st| u32::from(st.uas_status)).unwrap_or(0)
    };
    if re.is_match(&code.to_string()) {
        1
    } else {
        -1
    }
}

fn cmd_t_local_replied(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let what = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    let all = what.eq_ignore_ascii_case("all");
    let r = with_state(|_, st| {
        let n = st.nr_branches as usize;
        let branches = &st.branches[..n];
        if all {
            st.flags & T_ALL_LOCAL != 0
                && branches
                    .iter()
                    .all(|b| b.flags & B_FINAL == 0 || b.flags & B_LOCAL_REPLY != 0)
        } else if ctx_is_failure_like(st) {
            branches
                .iter()
                .filter(|b| b.last_code >= 200)
                .min_by_key(|b| b.last_code)
                .is_some_and(|b| b.flags & B_LOCAL_REPLY != 0)
        } else {
            st.flags & T_UAS_LOCAL_LAST != 0
        }
    });
    if r == Some(true) { 1 } else { -1 }
}

fn ctx_is_failure_like(st: &h_table::CellState) -> bool {
    st.flags & h_table::T_COMPLETED == 0
}

fn cmd_t_relay_to_udp(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    relay_common(ctx, args)
}

fn pv_branch_idx(ctx: &mut Ctx, _pv: &PvSpec) -> PvValue {
    PvValue::Int(i64::from(ctx.branch_idx))
}

fn pv_reply_code(ctx: &mut Ctx, _pv: &PvSpec) -> PvValue {
    if ctx.reply_code != 0 {
        return PvValue::Int(i64::from(ctx.reply_code));
    }
    match with_state(|_, st| st.uas_status) {
        Some(c) if c > 0 => PvValue::Int(i64::from(c)),
        _ => PvValue::Int(0),
    }
}

const RF: u32 = REQUEST_ROUTE | FAILURE_ROUTE;
const ALL4: u32 = REQUEST_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "tm",
    params: &[
        ParamExport {
            name: "fr_timer",
            set: set_fr_timer,
        },
        ParamExport {
            name: "fr_inv_timer",
            set: set_fr_inv_timer,
        },
        ParamExport {
            name: "wt_timer",
            set: set_wt_timer,
        },
        ParamExport {
            name: "delete_timer",
            set: set_delete_timer,
        },
        ParamExport {
            name: "T1_timer",
            set: set_t1,
        },
        ParamExport {
            name: "T2_timer",
            set: set_t2,
        },
        ParamExport {
            name: "noisy_ctimer",
            set: set_noisy,
        },
        ParamExport {
            name: "ruri_matching",
            set: set_ruri_m,
        },
        ParamExport {
            name: "via1_matching",
            set: set_via1_m,
        },
        ParamExport {
            name: "restart_fr_on_each_reply",
            set: set_restart_fr,
        },
        ParamExport {
            name: "fr_timer_avp",
            set: set_fr_avp,
        },
        ParamExport {
            name: "fr_inv_timer_avp",
            set: set_fr_inv_avp,
        },
        ParamExport {
            name: "enable_stats",
            set: set_enable_stats,
        },
        ParamExport {
            name: "unix_tx_timeout",
            set: ignore_param,
        },
        ParamExport {
            name: "tw_append",
            set: ignore_param,
        },
        ParamExport {
            name: "pass_provisional_replies",
            set: ignore_param,
        },
        ParamExport {
            name: "syn_branch",
            set: ignore_param,
        },
        ParamExport {
            name: "onreply_avp_mode",
            set: ignore_param,
        },
    ],
    cmds: &[
        CmdExport {
            name: "t_relay",
            min_args: 0,
            max_args: 2,
            fixup: Some(fixup_t_relay),
            handler: cmd_t_relay,
            routes: RF,
        },
        CmdExport {
            name: "t_relay_to_udp",
            min_args: 0,
            max_args: 2,
            fixup: Some(fixup_relay_to),
            handler: cmd_t_relay_to_udp,
            routes: RF,
        },
        CmdExport {
            name: "t_newtran",
            min_args: 0,
            max_args: 0,
            fixup: None,
            handler: cmd_t_newtran,
            routes: REQUEST_ROUTE,
        },
        CmdExport {
            name: "t_reply",
            min_args: 2,
            max_args: 2,
            fixup: None,
            handler: cmd_t_reply,
            routes: RF,
        },
        CmdExport {
            name: "t_check_trans",
            min_args: 0,
            max_args: 0,
            fixup: None,
            handler: cmd_t_check_trans,
            routes: REQUEST_ROUTE | BRANCH_ROUTE,
        },
        CmdExport {
            name: "t_was_cancelled",
            min_args: 0,
            max_args: 0,
            fixup: None,
            handler: cmd_t_was_cancelled,
            routes: FAILURE_ROUTE | ONREPLY_ROUTE,
        },
        CmdExport {
            name: "t_on_failure",
            min_args: 1,
            max_args: 1,
            fixup: None,
            handler: cmd_t_on_failure,
            routes: ALL4,
        },
        CmdExport {
            name: "t_on_reply",
            min_args: 1,
            max_args: 1,
            fixup: None,
            handler: cmd_t_on_reply,
            routes: ALL4,
        },
        CmdExport {
            name: "t_on_branch",
            min_args: 1,
            max_args: 1,
            fixup: None,
            handler: cmd_t_on_branch,
            routes: ALL4,
        },
        CmdExport {
            name: "t_replicate",
            min_args: 1,
            max_args: 2,
            fixup: None,
            handler: cmd_t_replicate,
            routes: REQUEST_ROUTE,
        },
        CmdExport {
            name: "t_flush_flags",
            min_args: 0,
            max_args: 0,
            fixup: None,
            handler: cmd_t_flush_flags,
            routes: REQUEST_ROUTE | BRANCH_ROUTE,
        },
        CmdExport {
            name: "t_release",
            min_args: 0,
            max_args: 0,
            fixup: None,
            handler: cmd_t_release,
            routes: REQUEST_ROUTE,
        },
        CmdExport {
            name: "t_check_status",
            min_args: 1,
            max_args: 1,
            fixup: Some(fixup_regex),
            handler: cmd_t_check_status,
            routes: ALL4,
        },
        CmdExport {
            name: "t_local_replied",
            min_args: 1,
            max_args: 1,
            fixup: None,
            handler: cmd_t_local_replied,
            routes: ALL4,
        },
    ],
    pvs: &[
        PvExport {
            name: "T_branch_idx",
            get: pv_branch_idx,
        },
        PvExport {
            name: "T_reply_code",
            get: pv_reply_code,
        },
    ],
    mod_init: Some(mod_init),
    child_init: None,
    destroy: Some(destroy),
    pre_script: Some(pre_script),
    reply_hook: Some(reply_hook),
};

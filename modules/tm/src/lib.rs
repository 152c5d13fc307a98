//! tm — the transaction module (reference §8.2): stateful forwarding with
//! transactions kept in shared memory.
//!
//! Files: `h_table` (table, cells, timer list; its `unsafe impl ShmSafe` lines),
//! `shmref` (shm accessors; with those lines the module's only unsafe), `lookup` (hash, branch ids, matching), `clone` (AVPs and the request
//! as kept in shm), `fwd` (t_newtran, t_relay), `reply` (local and relayed replies,
//! selection, failure_route), `cancel` (CANCEL/ACK), `timer` (retransmissions,
//! timeouts, wait and delete), `callbacks` (hooks for other modules, e.g. acc: final
//! reply sent upstream, negative outcome before failure_route), `uac` (requests tm
//! makes itself — dispatcher's probes — with a completion callback), `mi` (the MI
//! commands `t_uac_dlg`, `t_uac_cancel`, `t_hash`, `t_reply`), `suspend` (suspended
//! transactions as a blind branch: `suspend::suspend`, `suspend::continue_cell`, for
//! tmx's `t_suspend`/`t_continue`; its invariants are in that file).
//!
//! SIP Router 3.1 additions: `t_set_fr(fr_inv[, fr])` and `t_set_retr(t1, t2)` (ms, 0 =
//! the module's; for the branches added after the call, winning over the timer AVPs),
//! `t_set_no_e2e_cancel_reason(0|1)`, `t_drop_replies([a|l|n])` (failure_route), and
//! the parameters `e2e_cancel_reason` (1: the caller's Reason headers go into the
//! CANCELs relayed to the branches) and `local_cancel_reason` (1: tm's CANCELs after a
//! 2xx or 6xx elsewhere say why, RFC 3326). Changes an onreply_route makes to a reply
//! are applied to it before tm stores or relays it. `find_by_callid` and
//! `cancel::cancel_transaction` are the API tmx uses.
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
pub mod dns_failover;
pub mod fwd;
pub mod h_table;
pub mod lookup;
pub mod mi;
mod repair;
pub mod reply;
mod shmref;
pub mod suspend;
pub mod timer;
pub mod uac;

use std::cell::Cell as StdCell;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use shm::ShmPtr;

use openser_core::cfg::ast::{Arg, ArgValue, RouteKind};
use openser_core::cfg::pv::PvSpec;
use openser_core::module::{
    BoolParam, CmdExport, Every, FixedArg, IntParam, MiExport, ModuleExports, Param, PvExport,
    StatCell, StatExport, StrParam, TimerExport,
};
use openser_core::parser::{Method, Proto, SipMsg};
use openser_core::route::*;
use openser_core::script::{AvpId, Ctx, PvValue, route_index};

use h_table::{B_FINAL, B_LOCAL_REPLY, Cell, CellRef, T_ALL_LOCAL, T_CANCELED, T_UAS_LOCAL_LAST};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "tm",
    params: &[
        Param::uint("fr_timer", &P.fr_timer),
        Param::uint("fr_inv_timer", &P.fr_inv_timer),
        Param::uint("wt_timer", &P.wt_timer),
        Param::uint("delete_timer", &P.delete_timer),
        Param::uint("T1_timer", &P.t1),
        Param::uint("T2_timer", &P.t2),
        Param::bool("noisy_ctimer", &P.noisy_ctimer),
        Param::bool("ruri_matching", &P.ruri_matching),
        Param::bool("via1_matching", &P.via1_matching),
        Param::bool("restart_fr_on_each_reply", &P.restart_fr),
        Param::str_with("fr_timer_avp", &P.fr_timer_avp, check_avp),
        Param::str_with("fr_inv_timer_avp", &P.fr_inv_timer_avp, check_avp),
        Param::bool("enable_stats", &P.enable_stats),
        Param::bool("e2e_cancel_reason", &P.e2e_cancel_reason),
        Param::bool("local_cancel_reason", &P.local_cancel_reason),
        Param::no_effect("unix_tx_timeout", "there is no unix socket transport"),
        Param::no_effect("tw_append", "no tw_append support"),
        Param::no_effect(
            "pass_provisional_replies",
            "provisional replies are always relayed",
        ),
        Param::no_effect("syn_branch", "branch ids are always computed"),
        Param::no_effect(
            "onreply_avp_mode",
            "onreply routes see the transaction's AVPs",
        ),
    ],
    cmds: &[
        CmdExport::new("t_relay", 0, 2, RF, cmd_t_relay).fixup(fixup_t_relay),
        CmdExport::new("t_relay_to_udp", 0, 2, RF, cmd_t_relay_to_udp).fixup(fixup_relay_to),
        CmdExport::new("t_relay_to_tcp", 0, 2, RF, cmd_t_relay_to_udp).fixup(fixup_relay_to_tcp),
        CmdExport::new("t_relay_to_tls", 0, 2, RF, cmd_t_relay_to_udp).fixup(fixup_relay_to_tls),
        CmdExport::new("t_newtran", 0, 0, REQUEST_ROUTE, cmd_t_newtran),
        CmdExport::new("t_reply", 2, 2, RF, cmd_t_reply),
        CmdExport::new(
            "t_check_trans",
            0,
            0,
            REQUEST_ROUTE | BRANCH_ROUTE,
            cmd_t_check_trans,
        ),
        CmdExport::new(
            "t_was_cancelled",
            0,
            0,
            FAILURE_ROUTE | ONREPLY_ROUTE,
            cmd_t_was_cancelled,
        ),
        CmdExport::new("t_on_failure", 1, 1, ALL4, cmd_t_on_failure),
        CmdExport::new("t_on_reply", 1, 1, ALL4, cmd_t_on_reply),
        CmdExport::new("t_on_branch", 1, 1, ALL4, cmd_t_on_branch),
        CmdExport::new("t_replicate", 1, 2, REQUEST_ROUTE, cmd_t_replicate),
        CmdExport::new(
            "t_flush_flags",
            0,
            0,
            REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE,
            cmd_t_flush_flags,
        ),
        CmdExport::new("t_set_fr", 1, 2, ALL4, cmd_t_set_fr),
        CmdExport::new("t_set_retr", 2, 2, ALL4, cmd_t_set_retr),
        CmdExport::new(
            "t_set_no_e2e_cancel_reason",
            1,
            1,
            ALL4,
            cmd_t_set_no_e2e_cancel_reason,
        ),
        CmdExport::new("t_drop_replies", 0, 1, FAILURE_ROUTE, cmd_t_drop_replies),
        CmdExport::new("t_release", 0, 0, REQUEST_ROUTE, cmd_t_release),
        CmdExport::new("t_check_status", 1, 1, ALL4, cmd_t_check_status).fixup(fixup_regex),
        CmdExport::new("t_local_replied", 1, 1, ALL4, cmd_t_local_replied),
    ],
    mi: &[
        MiExport::new("t_uac_dlg", mi::mi_uac_dlg),
        MiExport::new("t_uac_cancel", mi::mi_uac_cancel),
        MiExport::new("t_hash", mi::mi_hash).no_input(),
        MiExport::new("t_reply", mi::mi_reply),
    ],
    pvs: &[
        PvExport::new("T_branch_idx", pv_branch_idx),
        PvExport::new("T_reply_code", pv_reply_code),
    ],
    stats: &[
        StatExport::counter("received_replies", &STATS.received),
        StatExport::counter("relayed_replies", &STATS.relayed),
        StatExport::counter("local_replies", &STATS.local),
        StatExport::counter("UAS_transactions", &STATS.uas),
        StatExport::counter("UAC_transactions", &STATS.uac),
        StatExport::counter("2xx_transactions", &STATS.x2),
        StatExport::counter("3xx_transactions", &STATS.x3),
        StatExport::counter("4xx_transactions", &STATS.x4),
        StatExport::counter("5xx_transactions", &STATS.x5),
        StatExport::counter("6xx_transactions", &STATS.x6),
        StatExport::no_reset("inuse_transactions", &STATS.inuse),
    ],
    enable_stats: Some(&P.enable_stats),
    timers: &[
        TimerExport::new("tm-utimer", Every::Millis(100), timer::utimer),
        TimerExport::new("tm-timer", Every::Secs(1), timer::timer),
    ],
    mod_init: Some(mod_init),
    destroy: Some(destroy),
    pre_script: Some(pre_script),
    reply_hook: Some(reply_hook),
    ..ModuleExports::EMPTY
};

const RF: u32 = REQUEST_ROUTE | FAILURE_ROUTE;

/// `t_relay(flags)` bit: no automatic `100 Trying` for an INVITE.
pub const T_RELAY_NO_100: i64 = 0x01;
/// `t_relay(flags)` bit: on a forwarding failure send no negative reply, return an error.
pub const T_RELAY_NO_NEGATIVE_REPLY: i64 = 0x02;
/// `t_relay(flags)` bit: no DNS failover (accepted; failover is not built yet).
pub const T_RELAY_NO_DNS_FAILOVER: i64 = 0x04;
const ALL4: u32 = REQUEST_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE;

// ---------------------------------------------------------------- parameters

/// Module parameters (1.2 defaults; timers in seconds, T1/T2 in ms).
pub struct Params {
    fr_timer: IntParam,
    fr_inv_timer: IntParam,
    wt_timer: IntParam,
    delete_timer: IntParam,
    t1: IntParam,
    t2: IntParam,
    noisy_ctimer: BoolParam,
    ruri_matching: BoolParam,
    via1_matching: BoolParam,
    restart_fr: BoolParam,
    enable_stats: BoolParam,
    fr_timer_avp: StrParam,
    fr_inv_timer_avp: StrParam,
    e2e_cancel_reason: BoolParam,
    local_cancel_reason: BoolParam,
}

pub static P: Params = Params {
    fr_timer: IntParam::new(30),
    fr_inv_timer: IntParam::new(120),
    wt_timer: IntParam::new(5),
    delete_timer: IntParam::new(2),
    t1: IntParam::new(500),
    t2: IntParam::new(4000),
    noisy_ctimer: BoolParam::new(false),
    ruri_matching: BoolParam::new(true),
    via1_matching: BoolParam::new(true),
    restart_fr: BoolParam::new(true),
    enable_stats: BoolParam::new(true),
    fr_timer_avp: StrParam::new(""),
    fr_inv_timer_avp: StrParam::new(""),
    e2e_cancel_reason: BoolParam::new(true),
    local_cancel_reason: BoolParam::new(true),
};

impl Params {
    pub fn fr_ms(&self) -> u32 {
        self.fr_timer.get_u32().saturating_mul(1000)
    }
    pub fn fr_inv_ms(&self) -> u32 {
        self.fr_inv_timer.get_u32().saturating_mul(1000)
    }
    pub fn wt_ms(&self) -> u32 {
        self.wt_timer.get_u32().saturating_mul(1000)
    }
    pub fn t1_t2(&self) -> (u32, u32) {
        (self.t1.get_u32().max(100), self.t2.get_u32().max(100))
    }
    /// T1/T2 of one transaction: its own (`t_set_retr`) or the module's.
    pub fn t1_t2_of(&self, st: &h_table::CellState) -> (u32, u32) {
        let (t1, t2) = self.t1_t2();
        (
            if st.t1_ms != 0 { st.t1_ms } else { t1 },
            if st.t2_ms != 0 { st.t2_ms } else { t2 },
        )
    }
    /// Copy the caller's Reason headers into the CANCELs tm relays.
    pub fn e2e_cancel_reason(&self) -> bool {
        self.e2e_cancel_reason.get()
    }
    /// Put a Reason header in the CANCELs tm makes itself (2xx or 6xx elsewhere).
    pub fn local_cancel_reason(&self) -> bool {
        self.local_cancel_reason.get()
    }
    pub fn noisy_ctimer(&self) -> bool {
        self.noisy_ctimer.get()
    }
    pub fn ruri_matching(&self) -> bool {
        self.ruri_matching.get()
    }
    pub fn via1_matching(&self) -> bool {
        self.via1_matching.get()
    }
    pub fn restart_fr(&self) -> bool {
        self.restart_fr.get()
    }
}

fn check_avp(s: &str) -> Result<(), String> {
    AvpId::parse_param(s).map(|_| ())
}

/// The AVPs of `fr_timer_avp` and `fr_inv_timer_avp`, parsed once.
fn timer_avps() -> &'static (Option<AvpId>, Option<AvpId>) {
    static AVPS: OnceLock<(Option<AvpId>, Option<AvpId>)> = OnceLock::new();
    AVPS.get_or_init(|| {
        (
            parse_avp_id(P.fr_timer_avp.get()),
            parse_avp_id(P.fr_inv_timer_avp.get()),
        )
    })
}

/// An AVP parameter → AVP id (`AvpId::parse_param`); `None` when malformed.
pub fn parse_avp_id(s: &str) -> Option<AvpId> {
    AvpId::parse_param(s).ok()
}

/// Per-transaction fr_timer (`fr` true) / fr_inv_timer from the configured AVP, in ms.
pub fn avp_secs(ctx: &Ctx, fr: bool) -> Option<u32> {
    let (fr_avp, fr_inv_avp) = timer_avps();
    let id = if fr { fr_avp } else { fr_inv_avp }.as_ref()?;
    let v = match ctx.avps.get(id)? {
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
    pub uas: StatCell,
    pub uac: StatCell,
    pub x2: StatCell,
    pub x3: StatCell,
    pub x4: StatCell,
    pub x5: StatCell,
    pub x6: StatCell,
    pub inuse: StatCell,
    pub received: StatCell,
    pub relayed: StatCell,
    pub local: StatCell,
}

pub static STATS: TmStats = TmStats {
    uas: StatCell::new(),
    uac: StatCell::new(),
    x2: StatCell::new(),
    x3: StatCell::new(),
    x4: StatCell::new(),
    x5: StatCell::new(),
    x6: StatCell::new(),
    inuse: StatCell::new(),
    received: StatCell::new(),
    relayed: StatCell::new(),
    local: StatCell::new(),
};

pub fn stats() -> &'static TmStats {
    &STATS
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

/// Per-transaction settings made by the script before the transaction (or its next
/// branches) exist: `t_set_fr`, `t_set_retr`, `t_set_no_e2e_cancel_reason`. `None` =
/// not set; a time of 0 = back to the module's value.
#[derive(Clone, Copy, Default)]
struct Settings {
    fr_inv: Option<u32>,
    fr: Option<u32>,
    t1: Option<u32>,
    t2: Option<u32>,
    no_e2e_reason: Option<bool>,
}

impl Settings {
    /// Write these settings into a transaction's state.
    fn apply(&self, st: &mut h_table::CellState) {
        if let Some(v) = self.fr_inv {
            st.fr_inv_ms = if v == 0 { P.fr_inv_ms() } else { v };
        }
        if let Some(v) = self.fr {
            st.fr_ms = if v == 0 { P.fr_ms() } else { v };
        }
        if let Some(v) = self.t1 {
            st.t1_ms = v;
        }
        if let Some(v) = self.t2 {
            st.t2_ms = v;
        }
        match self.no_e2e_reason {
            Some(true) => st.flags |= h_table::T_NO_E2E_CANCEL_REASON,
            Some(false) => st.flags &= !h_table::T_NO_E2E_CANCEL_REASON,
            None => {}
        }
    }
}

thread_local! {
    static CURRENT: StdCell<Option<Cur>> = const { StdCell::new(None) };
    /// t_set_fr / t_set_retr / t_set_no_e2e_cancel_reason for this message.
    static SETTINGS: StdCell<Settings> = const {
        StdCell::new(Settings {
            fr_inv: None,
            fr: None,
            t1: None,
            t2: None,
            no_e2e_reason: None,
        })
    };
    /// t_on_failure / t_on_reply / t_on_branch armed for this message (route index + 1).
    static PENDING: StdCell<[u32; 3]> = const { StdCell::new([0; 3]) };
}

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
    let cur = CURRENT.with(StdCell::get)?;
    h_table::revalidate(cur.hash, cur.p, cur.label)
}

pub fn set_current(c: &Cell) {
    CURRENT.with(|x| x.set(Some(cur_of(c))));
}

pub fn clear_current() {
    CURRENT.with(|x| x.set(None));
}

/// Replace the current transaction, returning the previous one (for nested routes).
pub fn swap_current(c: Option<&CellRef>) -> Option<CellRef> {
    let prev = current();
    CURRENT.with(|x| x.set(c.map(|c| cur_of(c))));
    prev
}

/// tm's per-process script state (current transaction, routes armed by `t_on_*`,
/// `t_set_*` settings), put aside while a route runs for another transaction
/// (`t_continue` from a route of some other message) and put back afterwards.
pub(crate) struct SavedScriptState {
    cur: Option<Cur>,
    pending: [u32; 3],
    settings: Settings,
}

/// Put tm's per-process script state aside (and reset it).
pub(crate) fn save_script_state() -> SavedScriptState {
    SavedScriptState {
        cur: CURRENT.with(|x| x.replace(None)),
        pending: PENDING.with(|p| p.replace([0; 3])),
        settings: SETTINGS.with(|s| s.replace(Settings::default())),
    }
}

/// Put back what [`save_script_state`] put aside.
pub(crate) fn restore_script_state(s: SavedScriptState) {
    CURRENT.with(|x| x.set(s.cur));
    PENDING.with(|p| p.set(s.pending));
    SETTINGS.with(|x| x.set(s.settings));
}

/// Take (and reset) the routes armed by t_on_*; the per-message settings
/// (`t_set_fr` & co.) are reset with them.
pub fn take_pending() -> [u32; 3] {
    SETTINGS.with(|s| s.set(Settings::default()));
    PENDING.with(|p| p.replace([0; 3]))
}

/// Arm routes as `t_on_failure`/`t_on_reply`/`t_on_branch` would (route index + 1, 0 =
/// none): `t_continue` re-arms what the transaction had.
pub(crate) fn set_pending(armed: [u32; 3]) {
    PENDING.with(|p| p.set(armed));
}

/// Apply the per-message settings (`t_set_fr` & co.) to the transaction's state
/// before branches are added (they stay pending for a later transaction too).
pub(crate) fn apply_settings(st: &mut h_table::CellState) {
    SETTINGS.with(StdCell::get).apply(st);
}

/// Change the per-message settings and, when the message has a transaction already,
/// that transaction's state.
fn update_settings(f: impl Fn(&mut Settings)) {
    let mut s = Settings::default();
    f(&mut s);
    SETTINGS.with(|cell| {
        let mut all = cell.get();
        f(&mut all);
        cell.set(all);
    });
    with_state(|_, st| s.apply(st));
}

/// The transaction of `callid` and CSeq number `cseq` (not its CANCEL's): an INVITE
/// one only with `invite_only` (tmx's `t_cancel_callid`, `t_reply_callid`).
pub fn find_by_callid(callid: &[u8], cseq: &[u8], invite_only: bool) -> Option<CellRef> {
    let hash = lookup::tm_hash(callid, cseq);
    h_table::find_in_entry(hash, |c| {
        c.k(c.key.callid) == callid
            && c.k(c.key.cseq_num) == cseq
            && (c.is_invite
                || (!invite_only
                    && !c.k(c.key.method).eq_ignore_ascii_case(b"CANCEL")
                    && !c.k(c.key.method).eq_ignore_ascii_case(b"ACK")))
    })
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
    shmref::init_ledger()?;
    repair::register();
    repair::register_timer();
    timer_avps();
    Ok(())
}

fn destroy() {
    let ms = shm::stats();
    openser_core::log_info!(
        "inuse_transactions={} cells={} shm_used={}",
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
                openser_core::cfg::ast::Host::Ip(ip) => t.push_str(&ip.to_string()),
                openser_core::cfg::ast::Host::Name(n) => t.push_str(n),
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
    if !dest.is_empty() {
        openser_core::transport::served::check_dest_prefix(&dest)
            .map_err(|e| format!("t_relay: {e}"))?;
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

/// `t_relay_to_tcp`/`t_relay_to_tls`: refused at start-up while the transport is not
/// served (never relayed over UDP instead).
fn fixup_relay_to_tcp(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    openser_core::transport::served::check_served("tcp")
        .map_err(|e| format!("t_relay_to_tcp: {e}"))?;
    let mut v = fixup_relay_to(args)?;
    if let Some(FixedArg::Str(d)) = v.first_mut() {
        *d = format!("tcp:{d}");
    }
    Ok(v)
}

fn fixup_relay_to_tls(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    openser_core::transport::served::check_served("tls")
        .map_err(|e| format!("t_relay_to_tls: {e}"))?;
    let mut v = fixup_relay_to(args)?;
    if let Some(FixedArg::Str(d)) = v.first_mut() {
        *d = format!("tls:{d}");
    }
    Ok(v)
}

fn fixup_regex(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let [a] = args else {
        return Err("one regular expression expected".into());
    };
    let re = openser_core::re::Regex::new(&arg_text(a), true, true)?;
    Ok(vec![FixedArg::Regex(Arc::new(re))])
}

fn relay_common(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (dest, flags) = match args {
        [FixedArg::Str(d), FixedArg::Int(f)] => (d.as_str(), *f),
        _ => ("", 0),
    };
    let (proto, rest) = fwd::split_proto(dest);
    let fixed: Option<(SocketAddr, Proto)> = if dest.is_empty() {
        None
    } else if rest.is_empty() {
        // t_relay_to_tcp(): the R-URI's (or dst URI's) address over that transport
        let target = ctx
            .msg
            .dst_uri
            .clone()
            .unwrap_or_else(|| ctx.msg.ruri().to_string());
        match fwd::uri_destination(&target) {
            Some((a, _)) => Some((a, proto)),
            None => return -1,
        }
    } else {
        match fwd::parse_hostport(rest) {
            Some(a) => Some((a, proto)),
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
        openser_core::log_err!(
            "cannot send a t_reply to a message for which no T-state has been established"
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
        openser_core::log_err!("no such route {name:?}");
        return -1;
    };
    let v = idx as u32 + 1;
    PENDING.with(|p| {
        let mut armed = p.get();
        armed[slot] = v;
        p.set(armed);
    });
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

/// A time argument in ms (a number or a PV); `None` when not a number >= 0.
fn arg_ms(ctx: &mut Ctx, a: &FixedArg) -> Option<u32> {
    let v = match a {
        FixedArg::Int(i) => *i,
        other => ctx.arg_str(other).trim().parse::<i64>().ok()?,
    };
    u32::try_from(v).ok()
}

/// `t_set_fr(fr_inv[, fr])`: this transaction's fr_inv_timer (and fr_timer) in ms, for
/// the branches added after the call; 0 = the module's value.
fn cmd_t_set_fr(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(inv) = args.first().and_then(|a| arg_ms(ctx, a)) else {
        openser_core::log_err!("t_set_fr: invalid fr_inv_timeout");
        return -1;
    };
    let fr = match args.get(1) {
        Some(a) => match arg_ms(ctx, a) {
            Some(v) => Some(v),
            None => {
                openser_core::log_err!("t_set_fr: invalid fr_timeout");
                return -1;
            }
        },
        None => None,
    };
    update_settings(|s| {
        s.fr_inv = Some(inv);
        if fr.is_some() {
            s.fr = fr;
        }
    });
    1
}

/// `t_set_retr(t1, t2)`: this transaction's retransmission intervals in ms for the
/// branches added after the call; 0 = the module's T1_timer/T2_timer.
fn cmd_t_set_retr(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
        return -1;
    };
    let (Some(t1), Some(t2)) = (arg_ms(ctx, a), arg_ms(ctx, b)) else {
        openser_core::log_err!("t_set_retr: invalid interval");
        return -1;
    };
    if t1 != 0 && t2 != 0 && t1 > t2 {
        openser_core::log_err!("t_set_retr: t1 ({t1}) is above t2 ({t2})");
        return -1;
    }
    update_settings(|s| {
        s.t1 = Some(t1);
        s.t2 = Some(t2);
    });
    1
}

/// `t_set_no_e2e_cancel_reason(0|1)`: 1 = do not copy the caller's Reason headers into
/// the CANCELs of this transaction (overrides `e2e_cancel_reason`).
fn cmd_t_set_no_e2e_cancel_reason(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(v) = args.first().and_then(|a| arg_ms(ctx, a)) else {
        return -1;
    };
    update_settings(|s| s.no_e2e_reason = Some(v != 0));
    1
}

/// `t_drop_replies([mode])` (failure_route): forget the replies received so far
/// (`a`, the default: every branch's; `l`: the last round's; `n`: none), so that a
/// later 401/407 does not aggregate their challenges and none of them is relayed
/// again. As in Kamailio, meant for a failure_route that adds a branch or replies.
fn cmd_t_drop_replies(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let mode = args
        .first()
        .map(|a| ctx.arg_str(a).trim().to_ascii_lowercase())
        .unwrap_or_default();
    // the first branch whose reply is forgotten ("n": none)
    let from = |st: &h_table::CellState| match mode.as_str() {
        "" | "a" => Some(0),
        "l" => Some(st.first_branch as usize),
        _ => None,
    };
    if !matches!(mode.as_str(), "" | "a" | "l" | "n") {
        openser_core::log_err!("t_drop_replies: unknown mode {mode:?}");
        return -1;
    }
    let r = with_state(|_, st| {
        if let Some(first) = from(&*st) {
            let n = st.nr_branches as usize;
            for b in &mut st.branches[first.min(n)..n] {
                std::mem::take(&mut b.reply).free();
            }
        }
    });
    if r.is_some() { 1 } else { -1 }
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
    t_reply_code(ctx)
}

/// `$T_reply_code` (tmx's `$T(reply_code)`): the reply's code in an onreply or failure
/// route, else the last code sent upstream by the current transaction (0: none).
pub fn t_reply_code(ctx: &Ctx) -> PvValue {
    if ctx.reply_code != 0 {
        return PvValue::Int(i64::from(ctx.reply_code));
    }
    match with_state(|_, st| st.uas_status) {
        Some(c) if c > 0 => PvValue::Int(i64::from(c)),
        _ => PvValue::Int(0),
    }
}

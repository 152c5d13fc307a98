//! dialog (Kamailio 3.1's `modules_k/dialog`, not in OpenSER 1.2): the server keeps
//! the calls it relays — INVITE dialogs — in shared memory, from the INVITE through the
//! 1xx, the 2xx and its ACK to the BYE or the dialog's timeout, and counts them in
//! profiles (e.g. calls per user).
//!
//! A dialog is created when an initial INVITE (no To tag) carrying message flag
//! `dlg_flag`, or on which the script called `dlg_manage()`, is relayed by `t_relay`
//! (tm's request-in hook): its Call-ID, tags, URIs, the caller's Contact and route set
//! and CSeq are stored, and — unless `dlg_match_mode` is 2 — a `did=<entry>.<id>`
//! parameter (name: `rr_param`) is added to the Record-Route. It is early on a 1xx with a
//! To tag, confirmed on a 2xx (the callee's Contact and route set are kept; its
//! lifetime of `default_timeout` seconds starts), confirmed-and-acknowledged on the ACK,
//! deleted on a BYE from either side or when the INVITE transaction ends negatively
//! (a tm callback on the final reply sent upstream). In-dialog requests are found when
//! `loose_route()` consumes our Route (rr's callback): by the `did` parameter
//! (`dlg_match_mode` 0), by it and else by Call-ID and tags (1, the default), or by
//! Call-ID and tags only (2). A dialog past its timeout is ended by the timer process
//! with a BYE to each side (tm local requests) and counted in `expired_dialogs`.
//!
//! States (`dlg_list`, `$DLG_status`): 1 unconfirmed, 2 early, 3 confirmed (2xx, no
//! ACK yet), 4 confirmed.
//!
//! Functions:
//! * `dlg_manage()` (REQUEST) — track the dialog of this initial INVITE (sets
//!   `dlg_flag`, which must be set). 1.
//! * `set_dlg_profile(profile[, value])`, `unset_dlg_profile(profile[, value])`,
//!   `is_in_profile(profile[, value])` (any route but error) — add the dialog to a
//!   profile (a value is required for, and only allowed with, profiles declared in
//!   `profiles_with_value`), remove it, test membership (without a value: with any
//!   value). On an initial INVITE before `t_relay` they act on the dialog to be created.
//!   1 or -1.
//! * `get_profile_size(profile[, value], $pv)` — the number of dialogs in the profile
//!   (with that value) into `$var(..)`/`$avp(..)`. 1.
//! * `dlg_set_timeout(seconds)` — this dialog's timeout (counted from its 2xx). 1/-1.
//! * `store_dlg_value(name, value)`, `fetch_dlg_value(name, $pv)` (OpenSIPS's names) —
//!   dialog variables, also readable as `$dlg_var(name)`. 1/-1.
//! * `is_known_dlg()` — the message belongs to a tracked dialog. 1/-1.
//! * `dlg_bye(side)` — end the current confirmed dialog: a BYE to `caller`, `callee`
//!   or `all`, and the dialog is deleted. 1/-1.
//! * `dlg_refer(side, uri)` — a REFER inside the current confirmed dialog to `caller` or
//!   `callee` with `Refer-To: <uri>` (a string with PVs), as if from the other side, with
//!   that side's CSeq plus one (stored, so a later BYE of ours counts on from it). The
//!   dialog stays up: the referred side answers 202 and calls the new target itself.
//!   1/-1.
//!
//! PVs: `$dlg_var(name)`, `$DLG_status`, `$DLG_count` (dialogs in the table),
//! `$DLG_lifetime` (seconds since the 2xx). `$dlg_var(name) = value;` stores a variable
//! as `store_dlg_value` does (`= $null;` deletes it); with no dialog for the message the
//! assignment fails (-1, logged). A variable set on a confirmed dialog with `db_mode` 1
//! rewrites its row: at once from a request route, else (a reply route may hold the
//! transaction's lock) with the row's next write. After the BYE that ended a dialog (its `loose_route`),
//! the rest of that BYE's script still reads the ended dialog's variables and state.
//!
//! API for binding modules: `register_create_cb` (an initial INVITE's dialog is being
//! made: the hook may add dialog variables) and `register_end_cb` (a confirmed dialog
//! ended by BYE, timeout, `dlg_bye` or MI, with its copy, the cause and the time; acc's
//! CDRs).
//!
//! MI: `dlg_list [callid]`, `dlg_end_dlg h_entry h_id [extra headers]` (BYE to both
//! sides), `profile_get_size profile [value]`. Statistics: `active_dialogs` (confirmed),
//! `early_dialogs`, `processed_dialogs`, `expired_dialogs`.
//!
//! Parameters (Kamailio's defaults): `dlg_flag` (-1: none), `default_timeout` 43200,
//! `hash_size` 4096, `rr_param` "did", `dlg_match_mode` 1, `profiles_with_value`,
//! `profiles_no_value` (`;`-separated names), `enable_stats` 1, `timeout_avp` (an AVP
//! whose positive integer value, when the INVITE is relayed, is the dialog's timeout;
//! `dlg_set_timeout` wins over it), `dlg_extra_hdrs` (header lines added to every BYE
//! the module sends: timer, `dlg_bye`, MI), and `max_dialogs` 4096:
//! dialogs live in a pool of that many cells allocated at start-up (1.4 KiB each; the
//! strings of a dialog must fit 1 KiB, its variables 256 bytes, 8 profile links); when it
//! is full a new call is relayed untracked, with an error logged.
//!
//! Persistence (`db.rs`): `db_mode` 0 (default) memory only; 1 (and 2, the same here)
//! a confirmed dialog's row in `table_name` ("dialog") on `db_url` is written after its
//! 2xx and its ACK and deleted when it ends; 3 every dialog is written at shutdown.
//! Either way the rows are loaded at start-up, so calls survive a restart (their BYE is
//! matched by the `did` of the Route, or by Call-ID and tags).

mod db;
mod table;

pub use db::{vars_parse, vars_text};
pub use table::{
    DlgInfo, F_CALLEE_CONTACT, F_CALLER_CONTACT, F_CALLID, F_FROM, F_FTAG, F_TO, F_TTAG,
};

use std::cell::RefCell;
use std::sync::OnceLock;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::cfg::pv::{PvParam, PvSpec};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    BoolParam, CmdExport, Every, FixedArg, IntParam, MiExport, ModuleExports, Param, PvExport,
    StatCell, StatExport, StrParam, TimerExport,
};
use openser_core::parser::{HdrType, Method, SipMsg};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::interp::Lhs;
use openser_core::script::{AvpList, Ctx, PvValue};

use table::{
    Bucket, F_CALLEE_ROUTE, F_CALLER_ROUTE, NF, S_CONFIRMED, S_CONFIRMED_NA, S_EARLY,
    S_UNCONFIRMED, StoreError, Table, callid_hash, prof_key,
};

const ROUTES: u32 = REQUEST_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "dialog",
    binds: &["tm", "rr"],
    params: &[
        Param::int_range("dlg_flag", &P.dlg_flag, -1, 31),
        Param::int_range("default_timeout", &P.default_timeout, 1, u32::MAX as i64),
        Param::int_range("hash_size", &P.hash_size, 1, 1 << 20),
        Param::int_range("max_dialogs", &P.max_dialogs, 1, 1 << 22),
        Param::str_with("rr_param", &P.rr_param, check_rr_param),
        Param::int_range("dlg_match_mode", &P.match_mode, 0, 2),
        Param::str_with(
            "profiles_with_value",
            &P.profiles_with_value,
            check_profiles,
        ),
        Param::str_with("profiles_no_value", &P.profiles_no_value, check_profiles),
        Param::bool("enable_stats", &P.enable_stats),
        Param::int_range("db_mode", &P.db_mode, 0, 3),
        Param::str("db_url", &P.db_url),
        Param::str_with("table_name", &P.table_name, check_rr_param),
        Param::str_with("timeout_avp", &P.timeout_avp, check_avp),
        Param::str("dlg_extra_hdrs", &P.dlg_extra_hdrs),
    ],
    cmds: &[
        CmdExport::new("dlg_manage", 0, 0, REQUEST_ROUTE, cmd_dlg_manage).fixup(fixup_manage),
        CmdExport::new("set_dlg_profile", 1, 2, ROUTES, cmd_set_profile).fixup(fixup_set),
        CmdExport::new("unset_dlg_profile", 1, 2, ROUTES, cmd_unset_profile).fixup(fixup_profile),
        CmdExport::new("is_in_profile", 1, 2, ROUTES, cmd_is_in_profile).fixup(fixup_profile),
        CmdExport::new("get_profile_size", 2, 3, ROUTES, cmd_profile_size).fixup(fixup_size),
        CmdExport::new("dlg_set_timeout", 1, 1, ROUTES, cmd_set_timeout),
        CmdExport::new("store_dlg_value", 2, 2, ROUTES, cmd_store_value),
        CmdExport::new("fetch_dlg_value", 2, 2, ROUTES, cmd_fetch_value).fixup(fixup_fetch),
        CmdExport::new("is_known_dlg", 0, 0, ROUTES, cmd_is_known),
        CmdExport::new("dlg_bye", 1, 1, ROUTES, cmd_dlg_bye).fixup(fixup_bye),
        CmdExport::new("dlg_refer", 2, 2, ROUTES, cmd_dlg_refer).fixup(fixup_refer),
    ],
    pvs: &[
        PvExport::new("dlg_var", pv_dlg_var).setter(set_dlg_var),
        PvExport::new("DLG_status", pv_status),
        PvExport::new("DLG_count", pv_count),
        PvExport::new("DLG_lifetime", pv_lifetime),
    ],
    mi: &[
        MiExport::new("dlg_list", mi_dlg_list),
        MiExport::new("dlg_end_dlg", mi_end_dlg),
        MiExport::new("profile_get_size", mi_profile_size),
    ],
    stats: &[
        StatExport::no_reset("active_dialogs", &ACTIVE),
        StatExport::no_reset("early_dialogs", &EARLY),
        StatExport::counter("processed_dialogs", &PROCESSED),
        StatExport::counter("expired_dialogs", &EXPIRED),
    ],
    enable_stats: Some(&P.enable_stats),
    timers: &[TimerExport::new("dialog-timer", Every::Secs(1), dlg_timer)],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    destroy: Some(destroy),
    pre_script: Some(pre_script),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with Kamailio 3.1's defaults.
pub struct Params {
    pub dlg_flag: IntParam,
    pub default_timeout: IntParam,
    pub hash_size: IntParam,
    pub max_dialogs: IntParam,
    pub rr_param: StrParam,
    pub match_mode: IntParam,
    pub profiles_with_value: StrParam,
    pub profiles_no_value: StrParam,
    pub enable_stats: BoolParam,
    pub db_mode: IntParam,
    pub db_url: StrParam,
    pub table_name: StrParam,
    pub timeout_avp: StrParam,
    pub dlg_extra_hdrs: StrParam,
}

pub static P: Params = Params {
    dlg_flag: IntParam::new(-1),
    default_timeout: IntParam::new(43200),
    hash_size: IntParam::new(4096),
    max_dialogs: IntParam::new(4096),
    rr_param: StrParam::new("did"),
    match_mode: IntParam::new(1),
    profiles_with_value: StrParam::new(""),
    profiles_no_value: StrParam::new(""),
    enable_stats: BoolParam::new(true),
    db_mode: IntParam::new(0),
    db_url: StrParam::new(""),
    table_name: StrParam::new("dialog"),
    timeout_avp: StrParam::new(""),
    dlg_extra_hdrs: StrParam::new(""),
};

static ACTIVE: StatCell = StatCell::new();
static EARLY: StatCell = StatCell::new();
static PROCESSED: StatCell = StatCell::new();
static EXPIRED: StatCell = StatCell::new();

/// The table, made in mod_init (attendant, before fork).
static TABLE: OnceLock<Table> = OnceLock::new();
/// The declared profiles (name, has values), read from the parameters once.
static PROFILES: OnceLock<Vec<(String, bool)>> = OnceLock::new();

/// What the script asked for an initial INVITE before `t_relay` created its dialog.
#[derive(Default)]
struct Pending {
    manage: bool,
    timeout: Option<u32>,
    profiles: Vec<(u32, Option<String>)>,
    vars: Vec<(String, String)>,
}

thread_local! {
    /// A confirmed dialog that ended while this process handled it (its BYE, its timeout,
    /// `dlg_bye`, MI): `$dlg_var` reads it for the rest of the BYE's script run and in
    /// the end-of-dialog callbacks. The flag is set while those callbacks run (their
    /// message may be a fake one, with another Call-ID).
    static ENDED: RefCell<Option<(DlgInfo, bool)>> = const { RefCell::new(None) };
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
    /// The dialog of the message being handled: (entry, id), validated by Call-ID.
    static CUR: RefCell<Option<(u32, u32, String)>> = const { RefCell::new(None) };
}

fn now() -> u32 {
    openser_core::clock::now().clamp(0, u32::MAX as i64) as u32
}

fn check_avp(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    tm::parse_avp_id(s)
        .map(|_| ())
        .ok_or_else(|| format!("bad AVP spec '{s}'"))
}

/// The dialog's timeout from `timeout_avp`, when set and holding a positive number.
fn timeout_from_avp(ctx: &Ctx) -> Option<u32> {
    let spec = P.timeout_avp.get();
    if spec.is_empty() {
        return None;
    }
    let id = tm::parse_avp_id(spec)?;
    let v = match ctx.avps.get(&id)? {
        PvValue::Int(i) => *i,
        PvValue::Str(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (v > 0).then(|| v.min(i64::from(u32::MAX)) as u32)
}

/// `dlg_extra_hdrs` and the caller's own extra headers, for a BYE we send.
fn extra_headers(own: &str) -> String {
    let mut h = P.dlg_extra_hdrs.get().replace("\\r\\n", "\r\n");
    if !h.is_empty() && !h.ends_with('\n') {
        h.push_str("\r\n");
    }
    h.push_str(own);
    h
}

fn check_rr_param(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(format!("bad Record-Route parameter name '{s}'"))
    }
}

fn profile_names(s: &str) -> impl Iterator<Item = &str> {
    s.split(';').map(str::trim).filter(|n| !n.is_empty())
}

fn check_profiles(s: &str) -> Result<(), String> {
    for n in profile_names(s) {
        if !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("bad profile name '{n}'"));
        }
    }
    Ok(())
}

/// The declared profiles: those with values, then those without.
fn profiles() -> &'static [(String, bool)] {
    PROFILES.get_or_init(|| {
        let mut v: Vec<(String, bool)> = Vec::new();
        for n in profile_names(P.profiles_with_value.get()) {
            v.push((n.to_string(), true));
        }
        for n in profile_names(P.profiles_no_value.get()) {
            v.push((n.to_string(), false));
        }
        v
    })
}

fn profile_index(name: &str) -> Option<(u32, bool)> {
    profiles()
        .iter()
        .position(|(n, _)| n == name)
        .map(|i| (i as u32, profiles()[i].1))
}

fn mod_init() -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (n, _) in profiles() {
        if !seen.insert(n.as_str()) {
            return Err(format!("dialog: profile '{n}' declared twice"));
        }
    }
    let t = Table::new(P.max_dialogs.get() as u32, P.hash_size.get() as u32)
        .ok_or("dialog: no shared memory for the dialog table (see max_dialogs, -m)")?;
    let (locks, len, pool, _prof) = t.lock_spans();
    if TABLE.set(t).is_ok() {
        shm::register_repair(locks, len, "dialog hash entry", repair_bucket);
        shm::register_repair(pool, size_of::<shm::FastLock>(), "dialog pool", repair_pool);
    }
    if db::enabled() {
        if P.db_url.get().is_empty() {
            return Err("dialog: db_mode needs db_url".into());
        }
        openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("dialog: {e}"))?;
        let t = TABLE.get().ok_or("dialog: no table")?;
        let (n, confirmed) = db::load(t)?;
        ACTIVE.add(confirmed);
        openser_core::log_info!("{n} dialogs loaded from table {}", P.table_name.get());
    }
    if P.dlg_flag.get() >= 0 {
        tm::callbacks::register(on_tm_event, 1u32 << P.dlg_flag.get());
    }
    tm::callbacks::register_request_in(on_request_in);
    tm::callbacks::register_reply_in(on_reply_in);
    rr::register_rrcb(on_loose_route);
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    if db::realtime() {
        openser_core::db::open_in_child("dialog", P.db_url.get());
    }
    Ok(())
}

fn destroy() {
    if P.db_mode.get() == 3
        && let Some(t) = TABLE.get()
    {
        db::store_all(t);
    }
}

/// Repair hook: a process died holding a hash entry's lock.
fn repair_bucket(lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TABLE.get().ok_or("dialog: no table")?;
    let b = t
        .bucket_of_lock(lock)
        .ok_or_else(|| format!("dialog: no hash entry lock at {lock:#x}"))?;
    let done = t.repair_bucket(b, &g);
    drop(g);
    Ok(done)
}

/// Repair hook: a process died holding the pool's lock.
fn repair_pool(_lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TABLE.get().ok_or("dialog: no table")?;
    let done = t.repair_pool(&g);
    drop(g);
    Ok(done)
}

fn pre_script(msg: &mut SipMsg) -> bool {
    if msg.is_request() {
        PENDING.with(|p| *p.borrow_mut() = Pending::default());
        CUR.with(|c| *c.borrow_mut() = None);
        ENDED.with(|e| *e.borrow_mut() = None);
    }
    true
}

// ---------------------------------------------------------------------------
// message helpers

fn tag_of(msg: &SipMsg, to: bool) -> Option<String> {
    let na = if to { msg.to().ok()? } else { msg.from().ok()? };
    na.tag.map(|t| msg.s(t).to_string())
}

fn has_totag(msg: &SipMsg) -> bool {
    tag_of(msg, true).is_some_and(|t| !t.is_empty())
}

fn uri_of(msg: &SipMsg, to: bool) -> String {
    let na = if to { msg.to() } else { msg.from() };
    na.map(|n| msg.s(n.uri).to_string()).unwrap_or_default()
}

fn first_contact(msg: &SipMsg) -> String {
    msg.contacts()
        .ok()
        .and_then(|c| c.contacts.first().map(|n| msg.s(n.uri).to_string()))
        .unwrap_or_default()
}

/// The Record-Route entries of `msg`, whole, in order.
fn rr_entries(msg: &SipMsg) -> Vec<String> {
    msg.routes(HdrType::RecordRoute)
        .map(|v| v.iter().map(|n| msg.s(n.full).to_string()).collect())
        .unwrap_or_default()
}

/// The URI of the first entry of a route set (`<uri>, <uri>`).
fn first_route_uri(route: &str) -> Option<String> {
    let s = route.trim();
    if s.is_empty() {
        return None;
    }
    let start = s.find('<')? + 1;
    let end = start + s[start..].find('>')?;
    Some(s[start..end].to_string())
}

/// The Call-ID of `msg` (trimmed).
fn callid(msg: &SipMsg) -> Option<String> {
    msg.callid().map(|c| c.trim().to_string())
}

// ---------------------------------------------------------------------------
// state changes (statistics follow the state)

fn is_confirmed(s: u32) -> bool {
    s == S_CONFIRMED_NA || s == S_CONFIRMED
}

fn transition(b: &Bucket<'_>, c: u32, new: u32) {
    let old = b.state(c);
    if old == new {
        return;
    }
    if old == S_EARLY {
        EARLY.dec();
    }
    if new == S_EARLY {
        EARLY.inc();
    }
    if is_confirmed(new) && !is_confirmed(old) {
        ACTIVE.inc();
    }
    b.set_state(c, new);
}

/// After a dialog was removed (no lock held): its row goes too.
fn forget(d: &DlgInfo) {
    if db::realtime() && is_confirmed(d.state) {
        db::delete(d);
    }
}

/// Why a confirmed dialog ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCause {
    /// a BYE from either side
    Bye,
    /// its timeout (the timer sent the BYEs)
    Timeout,
    /// `dlg_bye()` or MI `dlg_end_dlg`
    Terminated,
}

/// An end-of-dialog callback: the message being handled (the BYE; for a timeout or MI a
/// fake request), the dialog as it was (state, 2xx time in `start`, variables), why it
/// ended and when (wall-clock seconds). Runs with no dialog or tm lock held; `$dlg_var`
/// reads the ended dialog's variables.
pub type EndHook = fn(&mut Ctx, &DlgInfo, EndCause, u32);

static END_HOOKS: openser_core::state::Registry<EndHook> = openser_core::state::Registry::new();

/// A dialog-creation callback: called with the initial INVITE before its dialog is made;
/// the (name, value) pairs it returns become dialog variables of the new dialog (they
/// persist with it, `db_mode`), as Kamailio's acc keeps its CDR state in dialog
/// variables.
pub type CreateHook = fn(&mut Ctx) -> Vec<(String, String)>;

static CREATE_HOOKS: openser_core::state::Registry<CreateHook> =
    openser_core::state::Registry::new();

/// Register a dialog-creation callback (a binding module's mod_init, before fork).
pub fn register_create_cb(h: CreateHook) {
    CREATE_HOOKS.lock().push(h);
}

/// Register an end-of-dialog callback (a binding module's mod_init, before fork). It is
/// called once per confirmed dialog when it ends; unconfirmed dialogs (failed or
/// cancelled calls) do not end through it.
pub fn register_end_cb(h: EndHook) {
    END_HOOKS.lock().push(h);
}

/// A removed dialog (no lock held): its row goes, and a confirmed one's end callbacks run
/// with `ctx` (a fake request when None).
fn ended(ctx: Option<&mut Ctx>, d: &DlgInfo, cause: EndCause) {
    forget(d);
    if !is_confirmed(d.state) {
        return;
    }
    let hooks: Vec<EndHook> = END_HOOKS.lock().clone();
    ENDED.with(|e| *e.borrow_mut() = Some((d.clone(), true)));
    if !hooks.is_empty() {
        let at = now();
        match ctx {
            Some(ctx) => {
                for h in &hooks {
                    h(ctx, d, cause, at);
                }
            }
            None => {
                if let Some(mut m) = openser_core::script::fake_msg() {
                    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
                    for h in &hooks {
                        h(&mut ctx, d, cause, at);
                    }
                }
            }
        }
    }
    ENDED.with(|e| {
        if let Some((_, during)) = e.borrow_mut().as_mut() {
            *during = false;
        }
    });
}

/// The ended dialog the current message (or end callback) sees.
fn with_ended<R>(ctx: &Ctx, f: impl FnOnce(&mut DlgInfo) -> R) -> Option<R> {
    ENDED.with(|e| {
        let mut e = e.borrow_mut();
        let (d, during) = e.as_mut()?;
        if !*during && callid(ctx.msg).as_deref() != Some(d.callid()) {
            return None;
        }
        Some(f(d))
    })
}

fn drop_dialog(b: &Bucket<'_>, c: u32) {
    let old = b.state(c);
    if old == S_EARLY {
        EARLY.dec();
    }
    if is_confirmed(old) {
        ACTIVE.dec();
    }
    b.remove(c);
}

/// Lock the bucket of `callid` and find the dialog of the initial transaction.
fn find_initial<'t>(t: &'t Table, callid: &str, ftag: &str) -> Option<(Bucket<'t>, u32)> {
    let b = t.lock_bucket(callid_hash(callid, t.size()))?;
    let c = b.find(callid, ftag, None)?;
    Some((b, c))
}

/// Lock the bucket of dialog (entry, id) and find it.
fn find_id(t: &Table, entry: u32, id: u32) -> Option<(Bucket<'_>, u32)> {
    let b = t.lock_bucket(entry)?;
    let c = b.find_id(id)?;
    Some((b, c))
}

// ---------------------------------------------------------------------------
// tm and rr hooks

/// tm's request-in hook: create the dialog of a flagged initial INVITE.
fn on_request_in(ctx: &mut Ctx) {
    let Some(t) = TABLE.get() else { return };
    let msg = &*ctx.msg;
    if msg.method() != Method::Invite || has_totag(msg) {
        return;
    }
    let flagged = P.dlg_flag.get() >= 0 && msg.flags & (1u32 << P.dlg_flag.get()) != 0;
    let manage = PENDING.with(|p| p.borrow().manage);
    if !flagged && !manage {
        return;
    }
    let (Some(cid), Some(ftag)) = (callid(msg), tag_of(msg, false)) else {
        return;
    };
    let rrs = rr_entries(msg);
    let mut f: [String; NF] = Default::default();
    f[F_CALLID] = cid.clone();
    f[F_FTAG] = ftag.clone();
    f[F_FROM] = uri_of(msg, false);
    f[F_TO] = uri_of(msg, true);
    f[F_CALLER_CONTACT] = first_contact(msg);
    f[F_CALLER_ROUTE] = rrs.join(", ");
    let cseq = msg.cseq().map(|c| c.num).unwrap_or(1);
    let mut pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let hooks: Vec<CreateHook> = CREATE_HOOKS.lock().clone();
    for h in hooks {
        for (k, v) in h(ctx) {
            pending.vars.retain(|(n, _)| *n != k);
            pending.vars.push((k, v));
        }
    }
    let timeout = pending
        .timeout
        .or_else(|| timeout_from_avp(ctx))
        .unwrap_or(P.default_timeout.get().clamp(1, u32::MAX as i64) as u32);
    let links: Vec<(u32, u64)> = pending
        .profiles
        .iter()
        .map(|(p, v)| (*p, v.as_deref().map_or(0, |v| prof_key(*p, Some(v)))))
        .collect();
    let entry = callid_hash(&cid, t.size());
    let Some(b) = t.lock_bucket(entry) else {
        return;
    };
    if let Some(c) = b.find(&cid, &ftag, None) {
        // already tracked (t_relay called again for the same INVITE)
        let id = b.h_id(c);
        drop(b);
        CUR.with(|x| *x.borrow_mut() = Some((entry, id, cid)));
        return;
    }
    let made = b.create(
        &f,
        rrs.len() as u32,
        cseq,
        now(),
        timeout,
        &links,
        &pending.vars,
    );
    drop(b);
    match made {
        Ok((_, id)) => {
            PROCESSED.inc();
            if P.match_mode.get() != 2 {
                rr::add_rr_param(
                    ctx.msg,
                    &format!("{}={:x}.{:x}", P.rr_param.get(), entry, id),
                );
            }
            CUR.with(|x| *x.borrow_mut() = Some((entry, id, cid)));
        }
        Err(StoreError::Full) => openser_core::log_err!(
            "no room for another dialog (max_dialogs {}): call {cid} is not tracked",
            P.max_dialogs.get()
        ),
        Err(StoreError::TooLong) => openser_core::log_err!(
            "the headers or variables of call {cid} do not fit a dialog cell: not tracked"
        ),
    }
}

/// tm's reply-in hook: 1xx makes the dialog early, 2xx confirms it.
fn on_reply_in(reply: &mut SipMsg, _avps: &AvpList) {
    let Some(t) = TABLE.get() else { return };
    if t.count() == 0 {
        return;
    }
    let Some(code) = reply.status() else { return };
    if !(101..300).contains(&code) {
        return;
    }
    if !matches!(reply.cseq(), Ok(cs) if cs.method == Method::Invite) {
        return;
    }
    let (Some(cid), Some(ftag)) = (callid(reply), tag_of(reply, false)) else {
        return;
    };
    let ttag = tag_of(reply, true).unwrap_or_default();
    if ttag.is_empty() {
        return;
    }
    let Some((b, c)) = find_initial(t, &cid, &ftag) else {
        return;
    };
    let st = b.state(c);
    if code < 200 {
        if st == S_UNCONFIRMED {
            transition(&b, c, S_EARLY);
        }
        return;
    }
    if st != S_UNCONFIRMED && st != S_EARLY {
        return;
    }
    let info = b.info(c);
    let rrs = rr_entries(reply);
    // entries above ours were added downstream: the callee's route set is them, from
    // the one nearest to us
    let down = rrs.len().saturating_sub(info.upstream_rr as usize + 1);
    let route: Vec<String> = rrs[..down].iter().rev().cloned().collect();
    let contact = first_contact(reply);
    let route = route.join(", ");
    if b.update_fields(
        c,
        &[
            (F_TTAG, ttag.as_str()),
            (F_CALLEE_CONTACT, contact.as_str()),
            (F_CALLEE_ROUTE, route.as_str()),
        ],
    )
    .is_err()
    {
        openser_core::log_err!("the 2xx of call {cid} does not fit its dialog cell");
    }
    b.set_times(c, now(), info.timeout);
    transition(&b, c, S_CONFIRMED_NA);
    if db::realtime() {
        // written by the final-reply callback, once no tm lock is held
        db::mark(b.entry, b.h_id(c));
    }
}

/// tm's callback on the final reply sent upstream: a negative one ends the dialog.
fn on_tm_event(ev: &mut tm::callbacks::TmEvent) -> u32 {
    if ev.kind != tm::callbacks::TmEventKind::ReplyOut {
        return 0;
    }
    let Some(t) = TABLE.get() else { return 0 };
    if db::realtime() {
        db::flush(t);
    }
    if ev.code < 300 {
        return 0;
    }
    if ev.req.method() != Method::Invite || has_totag(&ev.req) {
        return 0;
    }
    let (Some(cid), Some(ftag)) = (callid(&ev.req), tag_of(&ev.req, false)) else {
        return 0;
    };
    if let Some((b, c)) = find_initial(t, &cid, &ftag)
        && !is_confirmed(b.state(c))
    {
        drop_dialog(&b, c);
    }
    0
}

/// The dialog of an in-dialog request: by the `did` Route parameter and/or by
/// Call-ID and tags (`dlg_match_mode`).
fn find_in_dialog<'t>(t: &'t Table, msg: &SipMsg, params: &str) -> Option<(Bucket<'t>, u32)> {
    let cid = callid(msg)?;
    let ftag = tag_of(msg, false)?;
    let ttag = tag_of(msg, true)?;
    let mode = P.match_mode.get();
    if mode != 2
        && let Some(did) = rr::param_in(params, P.rr_param.get())
        && let Some((e, i)) = parse_did(did)
        && let Some((b, c)) = find_id(t, e, i)
        && b.fields(c)[F_CALLID] == cid
    {
        return Some((b, c));
    }
    if mode == 0 {
        return None;
    }
    let b = t.lock_bucket(callid_hash(&cid, t.size()))?;
    let c = b.find(&cid, &ftag, Some(&ttag))?;
    Some((b, c))
}

/// The (entry, id) of a `did` Route parameter (`<hex>.<hex>`).
pub fn parse_did(did: &str) -> Option<(u32, u32)> {
    let (e, i) = did.split_once('.')?;
    let hex = |s: &str| {
        if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    };
    Some((hex(e)?, hex(i)?))
}

/// rr's callback: an in-dialog request loose-routed by us.
fn on_loose_route(ctx: &mut Ctx, params: &str) {
    let Some(t) = TABLE.get() else { return };
    if t.count() == 0 {
        return;
    }
    let msg = &*ctx.msg;
    let Some((b, c)) = find_in_dialog(t, msg, params) else {
        return;
    };
    let entry = b.entry;
    let id = b.h_id(c);
    let cid = b.fields(c)[F_CALLID].clone();
    match msg.method() {
        Method::Bye => {
            let d = b.info(c);
            drop_dialog(&b, c);
            drop(b);
            ended(Some(ctx), &d, EndCause::Bye);
            return;
        }
        Method::Ack => {
            if b.state(c) == S_CONFIRMED_NA {
                transition(&b, c, S_CONFIRMED);
                if db::realtime() {
                    db::changed(t, b, c);
                    CUR.with(|x| *x.borrow_mut() = Some((entry, id, cid)));
                    return;
                }
            }
        }
        _ => {
            if let Ok(cs) = msg.cseq() {
                let caller = tag_of(msg, false).as_deref() == Some(b.fields(c)[F_FTAG].as_str());
                b.set_cseq(c, caller, cs.num);
            }
        }
    }
    drop(b);
    CUR.with(|x| *x.borrow_mut() = Some((entry, id, cid)));
}

// ---------------------------------------------------------------------------
// the current dialog of a script run

enum Target {
    Dialog(u32, u32),
    /// an initial INVITE whose dialog `t_relay` will create
    Pending,
}

fn target(ctx: &mut Ctx) -> Option<Target> {
    let t = TABLE.get()?;
    let cid = callid(ctx.msg)?;
    let cur = CUR.with(|x| {
        x.borrow()
            .as_ref()
            .filter(|(_, _, c)| *c == cid)
            .map(|(e, i, _)| (*e, *i))
    });
    if let Some((e, i)) = cur {
        return Some(Target::Dialog(e, i));
    }
    if ctx.route_type == REQUEST_ROUTE {
        if ctx.msg.method() == Method::Invite && !has_totag(ctx.msg) {
            return Some(Target::Pending);
        }
        return None;
    }
    // replies, failure and branch routes: the dialog of the initial INVITE
    let ftag = tag_of(ctx.msg, false)?;
    let (b, c) = find_initial(t, &cid, &ftag)?;
    Some(Target::Dialog(b.entry, b.h_id(c)))
}

/// Run `f` on the current dialog, its bucket locked.
fn with_dialog<R>(e: u32, i: u32, f: impl FnOnce(&Bucket<'_>, u32) -> R) -> Option<R> {
    let t = TABLE.get()?;
    let (b, c) = find_id(t, e, i)?;
    Some(f(&b, c))
}

// ---------------------------------------------------------------------------
// script functions

fn fixup_manage(_args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    if P.dlg_flag.get() < 0 {
        return Err("dlg_manage() needs modparam(\"dialog\", \"dlg_flag\", N)".into());
    }
    Ok(Vec::new())
}

fn cmd_dlg_manage(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    if ctx.msg.method() != Method::Invite || has_totag(ctx.msg) {
        return -1;
    }
    if P.dlg_flag.get() >= 0 {
        ctx.msg.flags |= 1u32 << P.dlg_flag.get();
    }
    PENDING.with(|p| p.borrow_mut().manage = true);
    1
}

/// `profile[, value]` → [Int(index), value?]; `need_value`: a value is required for a
/// profile with values (set_dlg_profile).
fn profile_args(args: &[Arg], need_value: bool) -> Result<Vec<FixedArg>, String> {
    let name = openser_core::script::fixup::string_arg(&args[0])?;
    let (idx, with_value) =
        profile_index(name.trim()).ok_or_else(|| format!("no dialog profile '{name}'"))?;
    let mut out = vec![FixedArg::Int(i64::from(idx))];
    match args.get(1) {
        Some(v) => {
            if !with_value {
                return Err(format!("profile '{name}' has no values"));
            }
            out.extend(openser_core::script::fixup::default_fixup(
                std::slice::from_ref(v),
            )?);
        }
        None if need_value && with_value => {
            return Err(format!("profile '{name}' needs a value"));
        }
        None => {}
    }
    Ok(out)
}

fn fixup_set(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    profile_args(args, true)
}

fn fixup_profile(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    profile_args(args, false)
}

/// A PV argument the function writes to: `$var(..)` or an AVP.
fn writable_pv(a: &Arg) -> Result<PvSpec, String> {
    let spec = match &a.value {
        ArgValue::Pv(p) => p.clone(),
        _ => {
            let s = openser_core::script::fixup::string_arg(a)?;
            let t = s.trim();
            let (spec, n) = openser_core::cfg::pv::parse_pv(t)?;
            if n != t.len() {
                return Err(format!("bad variable '{t}'"));
            }
            spec
        }
    };
    let ok = match spec.name.as_str() {
        "var" => matches!(spec.param, Some(PvParam::Name(_))),
        n => openser_core::cfg::pv::is_avp_name(n),
    };
    if !ok {
        return Err(format!("'{}' cannot be written to", spec.text));
    }
    Ok(spec)
}

fn fixup_size(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let (last, rest) = args.split_last().ok_or("missing arguments")?;
    let mut out = profile_args(rest, false)?;
    out.push(FixedArg::Pv(writable_pv(last)?));
    Ok(out)
}

fn fixup_fetch(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = openser_core::script::fixup::default_fixup(&args[..1])?;
    out.push(FixedArg::Pv(writable_pv(&args[1])?));
    Ok(out)
}

fn write_pv(ctx: &mut Ctx, spec: &PvSpec, v: PvValue) -> bool {
    let lhs = match (spec.name.as_str(), &spec.param) {
        ("var", Some(PvParam::Name(n))) => Lhs::Var(n.clone()),
        _ => Lhs::Avp(spec.clone()),
    };
    openser_core::script::pv::assign(ctx, &lhs, v) > 0
}

/// (profile index, value) of profile function arguments.
fn profile_of(ctx: &mut Ctx, args: &[FixedArg]) -> Option<(u32, Option<String>)> {
    let FixedArg::Int(p) = args.first()? else {
        return None;
    };
    let v = args.get(1).map(|a| ctx.arg_str(a));
    Some((*p as u32, v))
}

fn cmd_set_profile(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some((p, v)) = profile_of(ctx, args) else {
        return -1;
    };
    match target(ctx) {
        Some(Target::Pending) => {
            PENDING.with(|x| {
                let mut x = x.borrow_mut();
                if !x.profiles.contains(&(p, v.clone())) {
                    x.profiles.push((p, v));
                }
            });
            1
        }
        Some(Target::Dialog(e, i)) => {
            let key = v.as_deref().map_or(0, |v| prof_key(p, Some(v)));
            match with_dialog(e, i, |b, c| b.add_profile(c, p, key)) {
                Some(true) => 1,
                Some(false) => {
                    openser_core::log_err!("the dialog is in too many profiles");
                    -1
                }
                None => -1,
            }
        }
        None => -1,
    }
}

fn cmd_unset_profile(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some((p, v)) = profile_of(ctx, args) else {
        return -1;
    };
    match target(ctx) {
        Some(Target::Pending) => PENDING.with(|x| {
            let mut x = x.borrow_mut();
            let before = x.profiles.len();
            x.profiles
                .retain(|(pp, vv)| !(*pp == p && (v.is_none() || *vv == v)));
            if x.profiles.len() < before { 1 } else { -1 }
        }),
        Some(Target::Dialog(e, i)) => {
            let key = v.as_deref().map(|v| prof_key(p, Some(v)));
            match with_dialog(e, i, |b, c| b.remove_profile(c, p, key)) {
                Some(true) => 1,
                _ => -1,
            }
        }
        None => -1,
    }
}

fn cmd_is_in_profile(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some((p, v)) = profile_of(ctx, args) else {
        return -1;
    };
    let yes = match target(ctx) {
        Some(Target::Pending) => PENDING.with(|x| {
            x.borrow()
                .profiles
                .iter()
                .any(|(pp, vv)| *pp == p && (v.is_none() || *vv == v))
        }),
        Some(Target::Dialog(e, i)) => {
            let key = v.as_deref().map(|v| prof_key(p, Some(v)));
            with_dialog(e, i, |b, c| b.in_profile(c, p, key)).unwrap_or(false)
        }
        None => false,
    };
    if yes { 1 } else { -1 }
}

fn cmd_profile_size(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(t) = TABLE.get() else { return -1 };
    let Some(FixedArg::Pv(out)) = args.last() else {
        return -1;
    };
    let Some(FixedArg::Int(p)) = args.first() else {
        return -1;
    };
    let p = *p as u32;
    let v = if args.len() == 3 {
        Some(ctx.arg_str(&args[1]))
    } else {
        None
    };
    let n = t.prof_size(prof_key(p, v.as_deref()));
    if write_pv(ctx, out, PvValue::Int(i64::from(n))) {
        1
    } else {
        -1
    }
}

fn cmd_set_timeout(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(secs) = args.first().and_then(|a| ctx.arg_int(a)) else {
        return -1;
    };
    let Ok(secs) = u32::try_from(secs) else {
        return -1;
    };
    if secs == 0 {
        return -1;
    }
    match target(ctx) {
        Some(Target::Pending) => {
            PENDING.with(|x| x.borrow_mut().timeout = Some(secs));
            1
        }
        Some(Target::Dialog(e, i)) => match with_dialog(e, i, |b, c| b.set_timeout(c, secs)) {
            Some(()) => 1,
            None => -1,
        },
        None => -1,
    }
}

fn cmd_store_value(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(n), Some(v)) = (args.first(), args.get(1)) else {
        return -1;
    };
    let name = ctx.arg_str(n);
    let value = ctx.arg_str(v);
    set_var(ctx, name, Some(value))
}

/// Set (`Some`) or delete (`None`) dialog variable `name` of the current dialog: the
/// one to be created for an initial INVITE, the dialog of the message, or the one that
/// just ended with it. -1 when there is none or the variables do not fit its cell.
fn set_var(ctx: &mut Ctx, name: String, value: Option<String>) -> i32 {
    match target(ctx) {
        Some(Target::Pending) => {
            PENDING.with(|x| {
                let mut x = x.borrow_mut();
                x.vars.retain(|(k, _)| *k != name);
                if let Some(v) = value {
                    x.vars.push((name, v));
                }
            });
            1
        }
        Some(Target::Dialog(e, i)) => {
            let Some(t) = TABLE.get() else { return -1 };
            let Some((b, c)) = find_id(t, e, i) else {
                return -1;
            };
            if b.set_var(c, &name, value.as_deref()).is_err() {
                drop(b);
                openser_core::log_err!("no room for dialog variable '{name}'");
                return -1;
            }
            if db::realtime() && is_confirmed(b.state(c)) {
                // a confirmed dialog's row follows: at once from a request route (no
                // lock held), else with its next write (a reply route may run under
                // the transaction's lock)
                if ctx.route_type == REQUEST_ROUTE {
                    db::changed(t, b, c);
                } else {
                    db::mark(e, i);
                }
            }
            1
        }
        None => {
            let done = with_ended(ctx, |d| {
                d.vars.retain(|(k, _)| *k != name);
                if let Some(v) = value {
                    d.vars.push((name.clone(), v));
                }
            });
            if done.is_some() {
                1
            } else {
                openser_core::log_err!(
                    "no dialog for this message: dialog variable '{name}' not set"
                );
                -1
            }
        }
    }
}

/// The value of dialog variable `name` of the current dialog.
fn dlg_var(ctx: &mut Ctx, name: &str) -> Option<String> {
    let Some(t) = target(ctx) else {
        return with_ended(ctx, |d| {
            d.vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })?;
    };
    match t {
        Target::Pending => PENDING.with(|x| {
            x.borrow()
                .vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }),
        Target::Dialog(e, i) => with_dialog(e, i, |b, c| {
            b.vars(c)
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        })?,
    }
}

fn cmd_fetch_value(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(n), Some(FixedArg::Pv(out))) = (args.first(), args.get(1)) else {
        return -1;
    };
    let name = ctx.arg_str(n);
    let Some(v) = dlg_var(ctx, &name) else {
        return -1;
    };
    if write_pv(ctx, out, PvValue::Str(v)) {
        1
    } else {
        -1
    }
}

fn cmd_is_known(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    match target(ctx) {
        Some(Target::Dialog(e, i)) if with_dialog(e, i, |_, _| ()).is_some() => 1,
        _ => -1,
    }
}

// ---------------------------------------------------------------------------
// PVs

fn pv_dlg_var(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    let Some(PvParam::Name(n)) = &pv.param else {
        return PvValue::Null;
    };
    dlg_var(ctx, n).map_or(PvValue::Null, PvValue::Str)
}

/// `$dlg_var(name) = value;` (`$null` deletes it).
fn set_dlg_var(ctx: &mut Ctx, pv: &PvSpec, v: PvValue) -> i32 {
    let Some(PvParam::Name(n)) = &pv.param else {
        return -1;
    };
    let value = match v {
        PvValue::Null => None,
        PvValue::Int(i) => Some(i.to_string()),
        PvValue::Str(s) => Some(s),
    };
    set_var(ctx, n.clone(), value)
}

fn current_info(ctx: &mut Ctx) -> Option<DlgInfo> {
    let Some(t) = target(ctx) else {
        return with_ended(ctx, |d| d.clone());
    };
    match t {
        Target::Dialog(e, i) => with_dialog(e, i, |b, c| b.info(c)),
        Target::Pending => None,
    }
}

fn pv_status(ctx: &mut Ctx, _pv: &PvSpec) -> PvValue {
    current_info(ctx).map_or(PvValue::Null, |d| PvValue::Int(i64::from(d.state)))
}

fn pv_count(_ctx: &mut Ctx, _pv: &PvSpec) -> PvValue {
    PvValue::Int(TABLE.get().map_or(0, |t| i64::from(t.count())))
}

fn pv_lifetime(ctx: &mut Ctx, _pv: &PvSpec) -> PvValue {
    match current_info(ctx) {
        Some(d) if is_confirmed(d.state) => PvValue::Int(i64::from(now().saturating_sub(d.start))),
        Some(_) => PvValue::Int(0),
        None => PvValue::Null,
    }
}

// ---------------------------------------------------------------------------
// ending dialogs: the timer, MI

/// Send a BYE to both sides of a confirmed dialog (tm local requests).
fn send_byes(d: &DlgInfo, extra: &str) {
    send_byes_to(d, extra, SIDE_ALL);
}

/// Send a BYE to the sides of `d` in `sides` (`SIDE_CALLER` | `SIDE_CALLEE`).
fn send_byes_to(d: &DlgInfo, extra: &str, sides: i64) {
    let f = &d.f;
    if f[F_TTAG].is_empty() {
        return;
    }
    let caller = format!("<{}>;tag={}", f[F_FROM], f[F_FTAG]);
    let callee = format!("<{}>;tag={}", f[F_TO], f[F_TTAG]);
    if sides & SIDE_CALLEE != 0 {
        send_bye(
            d,
            &f[F_CALLEE_CONTACT],
            &f[F_CALLEE_ROUTE],
            &caller,
            &callee,
            d.cseq_caller.wrapping_add(1),
            extra,
        );
    }
    if sides & SIDE_CALLER != 0 {
        send_bye(
            d,
            &f[F_CALLER_CONTACT],
            &f[F_CALLER_ROUTE],
            &callee,
            &caller,
            d.cseq_callee.wrapping_add(1),
            extra,
        );
    }
}

const SIDE_CALLER: i64 = 1;
const SIDE_CALLEE: i64 = 2;
const SIDE_ALL: i64 = 3;

fn fixup_bye(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let side = openser_core::script::fixup::string_arg(&args[0])?;
    let v = match side.trim() {
        "caller" => SIDE_CALLER,
        "callee" => SIDE_CALLEE,
        "all" => SIDE_ALL,
        other => {
            return Err(format!(
                "dlg_bye: side '{other}' is not caller, callee or all"
            ));
        }
    };
    Ok(vec![FixedArg::Int(v)])
}

/// `dlg_bye(side)`: end the current (confirmed) dialog with a BYE to one or both sides.
fn cmd_dlg_bye(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Int(sides)) = args.first() else {
        return -1;
    };
    let Some(Target::Dialog(e, i)) = target(ctx) else {
        return -1;
    };
    let Some(d) = with_dialog(e, i, |b, c| {
        let d = b.info(c);
        if is_confirmed(d.state) {
            drop_dialog(b, c);
        }
        d
    }) else {
        return -1;
    };
    if !is_confirmed(d.state) {
        return -1;
    }
    ended(Some(ctx), &d, EndCause::Terminated);
    send_byes_to(&d, "", *sides);
    1
}

fn fixup_refer(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let side = match openser_core::script::fixup::string_arg(&args[0])?.trim() {
        "caller" => SIDE_CALLER,
        "callee" => SIDE_CALLEE,
        other => return Err(format!("dlg_refer: side '{other}' is not caller or callee")),
    };
    let mut uri = openser_core::script::fixup::default_fixup(&args[1..])?;
    Ok(vec![FixedArg::Int(side), uri.remove(0)])
}

/// `dlg_refer(side, uri)`: a REFER to one side of the current confirmed dialog.
fn cmd_dlg_refer(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(FixedArg::Int(side)), Some(u)) = (args.first(), args.get(1)) else {
        return -1;
    };
    let side = *side;
    let uri = ctx.arg_str(u);
    if uri.trim().is_empty() {
        openser_core::log_err!("dlg_refer: empty Refer-To URI");
        return -1;
    }
    let Some(Target::Dialog(e, i)) = target(ctx) else {
        return -1;
    };
    // The REFER goes to `side` as if from the other one: it takes the CSeq space of the
    // other side's requests, which is bumped in the cell.
    let to_callee = side == SIDE_CALLEE;
    let Some(Some(d)) = with_dialog(e, i, |b, c| {
        let d = b.info(c);
        if !is_confirmed(d.state) {
            return None;
        }
        let n = if to_callee {
            d.cseq_caller
        } else {
            d.cseq_callee
        }
        .wrapping_add(1);
        b.set_cseq(c, to_callee, n);
        Some(b.info(c))
    }) else {
        return -1;
    };
    let f = &d.f;
    let caller = format!("<{}>;tag={}", f[F_FROM], f[F_FTAG]);
    let callee = format!("<{}>;tag={}", f[F_TO], f[F_TTAG]);
    let refer_to = format!("Refer-To: <{}>\r\n", uri.trim().trim_matches(['<', '>']));
    let sent = if to_callee {
        send_in_dialog(
            "REFER",
            &d,
            &f[F_CALLEE_CONTACT],
            &f[F_CALLEE_ROUTE],
            &caller,
            &callee,
            d.cseq_caller,
            &refer_to,
        )
    } else {
        send_in_dialog(
            "REFER",
            &d,
            &f[F_CALLER_CONTACT],
            &f[F_CALLER_ROUTE],
            &callee,
            &caller,
            d.cseq_callee,
            &refer_to,
        )
    };
    if sent { 1 } else { -1 }
}

fn send_bye(d: &DlgInfo, ruri: &str, route: &str, from: &str, to: &str, cseq: u32, extra: &str) {
    let extra = extra_headers(extra);
    send_in_dialog("BYE", d, ruri, route, from, to, cseq, &extra);
}

/// A request of ours inside dialog `d` (tm local request); false when it could not go.
#[allow(clippy::too_many_arguments)]
fn send_in_dialog(
    method: &str,
    d: &DlgInfo,
    ruri: &str,
    route: &str,
    from: &str,
    to: &str,
    cseq: u32,
    extra: &str,
) -> bool {
    if ruri.is_empty() {
        openser_core::log_warn!("dialog {}: no Contact to send a {method} to", d.callid());
        return false;
    }
    let mut headers = String::new();
    if !route.is_empty() {
        headers.push_str(&format!("Route: {route}\r\n"));
    }
    for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
        headers.push_str(line);
        headers.push_str("\r\n");
    }
    let dst = first_route_uri(route);
    let r = tm::uac::LocalRequest {
        method,
        ruri,
        from,
        to,
        dst: dst.as_deref(),
        headers: &headers,
        callid: Some(d.callid()),
        cseq: Some(cseq.max(1)),
        ..Default::default()
    };
    if let Err(e) = tm::uac::send_request(&r) {
        openser_core::log_err!(
            "dialog {}: cannot send a {method} to {ruri}: {e}",
            d.callid()
        );
        return false;
    }
    true
}

/// Every second: dialogs past their timeout are removed; confirmed ones get BYEs.
fn dlg_timer(_ticks: u64) {
    let Some(t) = TABLE.get() else { return };
    if t.count() == 0 {
        return;
    }
    let now = now();
    let mut gone = Vec::new();
    for e in 0..t.size() {
        let Some(b) = t.lock_bucket(e) else { continue };
        for c in b.cells() {
            if b.expires(c) <= now {
                gone.push(b.info(c));
                drop_dialog(&b, c);
            }
        }
    }
    for d in gone {
        EXPIRED.inc();
        ended(None, &d, EndCause::Timeout);
        openser_core::log_info!(
            "dialog {}:{} (call {}) timed out in state {}",
            d.h_entry,
            d.h_id,
            d.callid(),
            d.state
        );
        if is_confirmed(d.state) {
            send_byes(&d, "");
        }
    }
}

fn dialog_node(d: &DlgInfo) -> MiNode {
    let f = &d.f;
    let mut n = MiNode::new("dialog", "").attr("hash", format!("{}:{}", d.h_entry, d.h_id));
    let kids: [(&str, String); 15] = [
        ("state", d.state.to_string()),
        ("timestart", d.start.to_string()),
        ("timeout", d.expires.to_string()),
        ("callid", f[F_CALLID].clone()),
        ("from_uri", f[F_FROM].clone()),
        ("from_tag", f[F_FTAG].clone()),
        ("caller_contact", f[F_CALLER_CONTACT].clone()),
        ("caller_cseq", d.cseq_caller.to_string()),
        ("caller_route_set", f[F_CALLER_ROUTE].clone()),
        ("to_uri", f[F_TO].clone()),
        ("to_tag", f[F_TTAG].clone()),
        ("callee_contact", f[F_CALLEE_CONTACT].clone()),
        ("callee_cseq", d.cseq_callee.to_string()),
        ("callee_route_set", f[F_CALLEE_ROUTE].clone()),
        ("profiles", {
            d.profiles
                .iter()
                .filter_map(|(p, _)| profiles().get(*p as usize).map(|(n, _)| n.clone()))
                .collect::<Vec<_>>()
                .join(",")
        }),
    ];
    for (k, v) in kids {
        n = n.kid(MiNode::new(k, v));
    }
    for (k, v) in &d.vars {
        n = n.kid(MiNode::new("variable", format!("{k}={v}")));
    }
    n
}

/// `dlg_list [callid]`.
fn mi_dlg_list(args: &[MiArg]) -> MiReply {
    let Some(t) = TABLE.get() else {
        return MiReply::ok(Vec::new());
    };
    let want = args.first().map(|a| a.value.trim().to_string());
    let mut nodes = Vec::new();
    let entries: Vec<u32> = match &want {
        Some(cid) => vec![callid_hash(cid, t.size())],
        None => (0..t.size()).collect(),
    };
    for e in entries {
        let Some(b) = t.lock_bucket(e) else { continue };
        let infos: Vec<DlgInfo> = b.cells().into_iter().map(|c| b.info(c)).collect();
        drop(b);
        for d in infos {
            if want.as_deref().is_none_or(|w| d.callid() == w) {
                nodes.push(dialog_node(&d));
            }
        }
    }
    MiReply::ok(nodes)
}

/// `dlg_end_dlg h_entry h_id [extra headers]`.
fn mi_end_dlg(args: &[MiArg]) -> MiReply {
    let Some(t) = TABLE.get() else {
        return MiReply::err(500, "No dialog table");
    };
    let (Some(e), Some(i)) = (
        args.first()
            .and_then(|a| a.value.trim().parse::<u32>().ok()),
        args.get(1).and_then(|a| a.value.trim().parse::<u32>().ok()),
    ) else {
        return MiReply::err(400, "Bad parameter");
    };
    let extra = args.get(2).map(|a| a.value.clone()).unwrap_or_default();
    let Some((b, c)) = find_id(t, e, i) else {
        return MiReply::err(404, "Requested Dialog not found");
    };
    let d = b.info(c);
    drop_dialog(&b, c);
    drop(b);
    ended(None, &d, EndCause::Terminated);
    if is_confirmed(d.state) {
        send_byes(&d, &extra);
    }
    MiReply::ok(Vec::new())
}

/// `profile_get_size profile [value]`.
fn mi_profile_size(args: &[MiArg]) -> MiReply {
    let Some(t) = TABLE.get() else {
        return MiReply::err(500, "No dialog table");
    };
    let Some(name) = args.first().map(|a| a.value.trim().to_string()) else {
        return MiReply::err(400, "Too few or too many arguments");
    };
    let Some((p, _)) = profile_index(&name) else {
        return MiReply::err(404, "Profile not found");
    };
    let value = args.get(1).map(|a| a.value.trim().to_string());
    let n = t.prof_size(prof_key(p, value.as_deref()));
    MiReply::ok(vec![
        MiNode::new("profile", "")
            .attr("name", name)
            .attr("value", value.unwrap_or_default())
            .attr("count", n.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_uri() {
        assert_eq!(
            first_route_uri("<sip:p1;lr>, <sip:p2;lr>").as_deref(),
            Some("sip:p1;lr")
        );
        assert_eq!(first_route_uri(""), None);
    }

    #[test]
    fn did_values() {
        assert_eq!(parse_did("1f.a"), Some((0x1f, 0xa)));
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "x.1",
            "1.1.1",
            "+1.1",
            "123456789.1",
            "1 .1",
        ] {
            assert_eq!(parse_did(bad), None, "{bad:?}");
        }
    }

    /// KEMI's `KSR.pv.sets("$dlg_var(x)", ..)` goes through the module PV's setter: it
    /// fails with no dialog, and reaches the dialog that ended with the message.
    #[test]
    fn dlg_var_assignment_by_text() {
        use openser_core::module::ModuleExports;
        use openser_core::script::kemi::{pv_get, pv_set};
        static MODS: [&ModuleExports; 1] = [&EXPORTS];
        openser_core::module::set_builtin(&MODS);
        openser_core::module::freeze(vec![&EXPORTS]);
        let mut m = openser_core::script::fake_msg().unwrap();
        let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
        let s = |v: &str| PvValue::Str(v.to_string());
        assert_eq!(pv_set(&mut ctx, "$dlg_var(x)", s("1")), Ok(-1));
        let mut d = DlgInfo {
            state: S_CONFIRMED,
            vars: vec![("a".into(), "b".into())],
            ..DlgInfo::default()
        };
        d.f[F_CALLID] = callid(ctx.msg).unwrap();
        ENDED.with(|e| *e.borrow_mut() = Some((d.clone(), false)));
        assert_eq!(pv_get(&mut ctx, "$dlg_var(a)"), Ok(s("b")));
        assert_eq!(pv_set(&mut ctx, "$dlg_var(x)", PvValue::Int(7)), Ok(1));
        assert_eq!(pv_get(&mut ctx, "$dlg_var(x)"), Ok(s("7")));
        assert_eq!(pv_set(&mut ctx, "$dlg_var(a)", PvValue::Null), Ok(1));
        assert_eq!(pv_get(&mut ctx, "$dlg_var(a)"), Ok(PvValue::Null));
        // another call's message does not see it
        d.f[F_CALLID] = "other".into();
        ENDED.with(|e| *e.borrow_mut() = Some((d, false)));
        assert_eq!(pv_get(&mut ctx, "$dlg_var(x)"), Ok(PvValue::Null));
        // a PV without a setter stays read-only
        assert!(pv_set(&mut ctx, "$DLG_count", PvValue::Int(1)).is_err());
    }

    #[test]
    fn profile_params() {
        assert!(check_profiles("caller ; callee").is_ok());
        assert!(check_profiles("a b").is_err());
        assert_eq!(profile_names(" a;;b ").collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(check_rr_param("did").is_ok());
        assert!(check_rr_param("d=d").is_err());
    }
}

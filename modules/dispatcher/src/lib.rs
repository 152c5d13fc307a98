//! dispatcher (OpenSER 1.2 `modules/dispatcher`, with the 1.3-era additions the guide's
//! configs use): picks a destination for a request from a set of addresses — load
//! balancing over media servers, PBXs or proxies — with failover and health probing.
//!
//! Functions (1 = done, -1 = error or nothing left):
//! * `ds_select_dst(set, alg)` (REQUEST, FAILURE) — sets the destination URI (outbound
//!   proxy) to a destination of `set` chosen by `alg`; refuses (-1) when a destination
//!   URI is already set unless `force_dst` is 1. `set` and `alg` are numbers or PVs.
//! * `ds_select_domain(set, alg)` (REQUEST, FAILURE) — the same, rewriting the host and
//!   port of the Request-URI instead.
//! * `ds_next_dst()`, `ds_next_domain()` (REQUEST, FAILURE) — failover: drop the
//!   destination just tried from `dst_avp` and use the next one.
//! * `ds_mark_dst([state])` (FAILURE) — the destination just tried (newest `dst_avp`,
//!   set from `grp_avp`) becomes inactive (`"i"`, the default), active (`"a"`), or
//!   counts a failure towards probing (`"p"`: after `ds_probing_threshhold` failures it
//!   is inactive and probed).
//! * `ds_is_from_list([set])` (any route) — the request came from a destination's
//!   address (IP and port) of any set, or of `set`.
//!
//! Algorithms: 0 hash over Call-ID, 1 over the From URI, 2 over the To URI, 3 over the
//! Request-URI (URI hashes use user, host and a non-default port; user only with
//! `flags` bit 1), 4 round-robin, 5 hash over the authentication username
//! (Authorization/Proxy-Authorization; round-robin without credentials), 6 random,
//! 7 hash over the `hash_pvar` format (also named `hash_pvar_param`), 8 the first active
//! destination, 9 weight-based (the `weight` attribute, 1–100, default 1: a set of
//! weights 3 and 1 sends three calls of four to the first), 10 call load (the active
//! destination with the fewest calls in progress). Any other number: the first destination, with a warning (1.2).
//! Inactive destinations are skipped (the next one in list order is used); with
//! `use_default` 1 the last destination of a set is used only when all others are
//! inactive. Round-robin and weighted positions are shared by every process.
//!
//! Call load without a dialog module: dispatcher keeps the calls itself, in shared
//! memory. `ds_select_dst(set, "10")` marks the request with message flag
//! `call_load_flag` (required for algorithm 10); a 2xx to that INVITE (a tm callback)
//! counts one call on the destination that answered, a BYE with its Call-ID ends it,
//! and a call not ended after `call_load_timeout` seconds (a lost BYE) is forgotten.
//!
//! Failover (`flags` bit 2, with `dst_avp`, `grp_avp`, `cnt_avp` set): the selecting
//! function stores every usable destination of the set in `dst_avp` (newest = the one
//! chosen, then the ones after it in list order, then those before it, the default last),
//! the set in `grp_avp` and their number in `cnt_avp`; `ds_next_dst` pops the newest.
//!
//! Destinations come from `list_file` (lines `setid uri [flags [attrs]]`, `#` comments;
//! flags 1 = inactive, 2 = probing, or A/I/P; attrs `weight=N;…`), or from the
//! `dispatcher` table when `db_url` is set (`setid_col`, `destination_col`, and
//! `flags_col`/`attrs_col` if named). A bad list file stops the start-up with its
//! `file:line:col`. The list and each destination's state live in shared memory:
//! MI `ds_reload` re-reads the source (states of destinations still listed are kept),
//! `ds_set_state state set uri` (a, i, p) changes a state, `ds_list` shows every set.
//!
//! Probing (needs tm): every `ds_ping_interval` seconds (default 10, 0 = off), a
//! `ds_ping_method` request (OPTIONS) from `ds_ping_from` goes to each destination in
//! probing state (`ds_probing_mode` 0, 1.3) or to every destination not set inactive by
//! hand (`ds_probing_mode` 1, Kamailio). A 200 or 501 reply makes it active; no reply
//! (tm's `fr_timer`, a local 408) or another reply counts a failure, and after
//! `ds_probing_threshhold` (default 3) failures in a row it becomes inactive and probed.

pub mod list;
mod shmref;

use std::cell::{Cell as StdCell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, Every, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam, TimerExport,
};
use openser_core::parser::{Method, SipMsg, Uri};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::{AvpId, Ctx, PvFormat, PvValue};

pub use list::{Dest, List, MAX_DSTS, MAX_SETS, ST_INACTIVE, ST_PROBING, Set};
use shm::SharedBlob as Cache;
use shmref::{CallSlot, DstSlot, SetSlot};

const RF: u32 = REQUEST_ROUTE | FAILURE_ROUTE;
const ANY: u32 = REQUEST_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "dispatcher",
    params: &[
        Param::str_with("list_file", &P.list_file, check_list_file),
        Param::str("db_url", &P.db_url),
        Param::str("table_name", &P.table_name),
        Param::str("setid_col", &P.setid_col),
        Param::str("destination_col", &P.destination_col),
        Param::str("flags_col", &P.flags_col),
        Param::str("attrs_col", &P.attrs_col),
        Param::int_range("force_dst", &P.force_dst, 0, 1),
        Param::int_range("flags", &P.flags, 0, 3),
        Param::int_range("use_default", &P.use_default, 0, 1),
        Param::str_with("dst_avp", &P.dst_avp, check_avp),
        Param::str_with("grp_avp", &P.grp_avp, check_avp),
        Param::str_with("cnt_avp", &P.cnt_avp, check_avp),
        Param::str_with("hash_pvar", &P.hash_pvar, check_format),
        Param::str_with("hash_pvar_param", &P.hash_pvar, check_format),
        Param::str_with("ds_ping_method", &P.ping_method, check_method),
        Param::str_with("ds_ping_from", &P.ping_from, check_uri),
        Param::uint("ds_ping_interval", &P.ping_interval),
        Param::int_range("ds_probing_threshhold", &P.threshold, 1, 1_000_000),
        Param::int_range("ds_probing_threshold", &P.threshold, 1, 1_000_000),
        Param::int_range("ds_probing_mode", &P.probing_mode, 0, 1),
        Param::int_range("call_load_flag", &P.load_flag, -1, 31),
        Param::uint("call_load_timeout", &P.load_timeout),
    ],
    cmds: &[
        CmdExport::new("ds_select_dst", 2, 2, RF, cmd_select_dst).fixup(fixup_select),
        CmdExport::new("ds_select_domain", 2, 2, RF, cmd_select_domain).fixup(fixup_select),
        CmdExport::new("ds_next_dst", 0, 0, RF, cmd_next_dst),
        CmdExport::new("ds_next_domain", 0, 0, RF, cmd_next_domain),
        CmdExport::new("ds_mark_dst", 0, 1, FAILURE_ROUTE, cmd_mark_dst).fixup(fixup_mark),
        CmdExport::new("ds_is_from_list", 0, 1, ANY, cmd_is_from_list).fixup(fixup_group),
    ],
    mi: &[
        MiExport::new("ds_set_state", mi_set_state),
        MiExport::new("ds_list", mi_list).no_input(),
        MiExport::new("ds_reload", mi_reload).no_input(),
    ],
    timers: &[
        TimerExport::new("ds-probe", Every::SecsParam(&P.ping_interval), probe_timer),
        TimerExport::new("ds-load", Every::Secs(5), load_timer),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    pre_script: Some(pre_script),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with the 1.2/1.3 defaults.
pub struct Params {
    pub list_file: StrParam,
    pub db_url: StrParam,
    pub table_name: StrParam,
    pub setid_col: StrParam,
    pub destination_col: StrParam,
    pub flags_col: StrParam,
    pub attrs_col: StrParam,
    pub force_dst: IntParam,
    pub flags: IntParam,
    pub use_default: IntParam,
    pub dst_avp: StrParam,
    pub grp_avp: StrParam,
    pub cnt_avp: StrParam,
    pub hash_pvar: StrParam,
    pub ping_method: StrParam,
    pub ping_from: StrParam,
    pub ping_interval: IntParam,
    pub threshold: IntParam,
    pub probing_mode: IntParam,
    pub load_flag: IntParam,
    pub load_timeout: IntParam,
}

pub static P: Params = Params {
    list_file: StrParam::new("/etc/openser/dispatcher.list"),
    db_url: StrParam::new(""),
    table_name: StrParam::new("dispatcher"),
    setid_col: StrParam::new("setid"),
    destination_col: StrParam::new("destination"),
    flags_col: StrParam::new(""),
    attrs_col: StrParam::new(""),
    force_dst: IntParam::new(0),
    flags: IntParam::new(0),
    use_default: IntParam::new(0),
    dst_avp: StrParam::new(""),
    grp_avp: StrParam::new(""),
    cnt_avp: StrParam::new(""),
    hash_pvar: StrParam::new(""),
    ping_method: StrParam::new("OPTIONS"),
    ping_from: StrParam::new("sip:dispatcher@localhost"),
    ping_interval: IntParam::new(10),
    threshold: IntParam::new(3),
    probing_mode: IntParam::new(0),
    load_flag: IntParam::new(-1),
    load_timeout: IntParam::new(3600),
};

/// `flags` bit 1: URI hashes over the user part only.
pub const DS_HASH_USER_ONLY: i64 = 1;
/// `flags` bit 2: failover AVPs.
pub const DS_FAILOVER_ON: i64 = 2;

/// Slots of the call-load table (a power of two).
const CALL_SLOTS: usize = 1 << 15;
const TOMBSTONE: u64 = u64::MAX;

/// The internal AVP naming the destination a call-load request went to (`set uri`).
const LOAD_AVP: &str = "__ds_load_dst";

// ---------------------------------------------------------------- parameters

fn check_avp(s: &str) -> Result<(), String> {
    tm::parse_avp_id(s)
        .map(|_| ())
        .ok_or_else(|| format!("bad AVP spec '{s}'"))
}

fn check_format(s: &str) -> Result<(), String> {
    openser_core::cfg::pv::parse_format(s).map(|_| ())
}

fn check_method(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(format!("bad method '{s}'"))
    }
}

fn check_uri(s: &str) -> Result<(), String> {
    Uri::parse(s)
        .map(|_| ())
        .map_err(|e| format!("bad URI '{s}': {e}"))
}

/// The list file is read and checked when `modparam` sets it, so a bad line stops the
/// start-up at the `modparam` (with the file's own line:col in the message).
fn check_list_file(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    list::parse_text(&text).map_err(|e| format!("{path}:{e}"))?;
    Ok(())
}

/// What `mod_init` derives from the parameters.
struct Conf {
    dst_avp: Option<AvpId>,
    grp_avp: Option<AvpId>,
    cnt_avp: Option<AvpId>,
    hash_fmt: Option<PvFormat>,
    cache: &'static Cache,
    dsts: &'static [DstSlot],
    sets: &'static [SetSlot],
    calls: &'static [CallSlot],
    probe_cb: u32,
}

static CONF: OnceLock<Conf> = OnceLock::new();

fn conf() -> Option<&'static Conf> {
    CONF.get()
}

thread_local! {
    /// This process's copy of the list and the generation it belongs to.
    static LOCAL: RefCell<(u64, Rc<List>)> = RefCell::new((u64::MAX, Rc::new(List::default())));
    static RAND: StdCell<u64> = const { StdCell::new(0) };
}

/// The current list (re-read after a reload).
pub fn current() -> Option<(u64, Rc<List>)> {
    let c = conf()?;
    let g = c.cache.generation();
    Some(LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != g {
            let (g, bytes) = c.cache.read();
            *l = (g, Rc::new(list::deserialize(&bytes)));
        }
        (l.0, l.1.clone())
    }))
}

// ---------------------------------------------------------------- loading

/// Read the configured source (list file, or the table when `db_url` is set).
fn load_source(via_proc_conn: bool) -> Result<List, String> {
    let rows = if P.db_url.get().is_empty() {
        let path = P.list_file.get();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        list::parse_text(&text).map_err(|e| format!("{path}:{e}"))?
    } else {
        let cols = [
            P.setid_col.get(),
            P.destination_col.get(),
            P.flags_col.get(),
            P.attrs_col.get(),
        ];
        let table = P.table_name.get();
        if via_proc_conn {
            openser_core::db::with_conn(P.db_url.get(), |c| list::load_db(c, table, cols))
                .map_err(|e| e.to_string())??
        } else {
            let mut c = openser_core::db::connect(P.db_url.get())
                .map_err(|e| format!("can't connect to the database: {e}"))?;
            list::load_db(c.as_mut(), table, cols)?
        }
    };
    list::build(rows, resolve_dest)
}

/// Where a destination URI sends to (blocking DNS: the loader only).
fn resolve_dest(uri: &str) -> Option<SocketAddr> {
    match openser_core::transport::send::uri_destination(uri) {
        Ok((a, _)) => Some(a),
        Err(e) => {
            openser_core::log_warn!("destination <{uri}> does not resolve: {e}");
            None
        }
    }
}

/// Publish `l`: states of destinations that stay (same set and URI) are kept, new ones
/// start with their list flags; tracked calls follow their destination.
fn publish(c: &Conf, l: &List) -> Result<(), String> {
    let old = current().map(|(_, o)| o);
    let bytes = list::serialize(l);
    let ok = c.cache.replace_with(&bytes, || {
        let mut map = vec![u32::MAX; MAX_DSTS];
        let mut vals = Vec::with_capacity(l.dests.len());
        for (i, d) in l.dests.iter().enumerate() {
            let prev = old
                .as_ref()
                .filter(|o| !o.dests.is_empty())
                .and_then(|o| o.find(d.set, &d.uri));
            match prev {
                Some(p) => {
                    map[p] = i as u32;
                    let s = &c.dsts[p];
                    vals.push((
                        s.state.load(Ordering::Relaxed),
                        s.fails.load(Ordering::Relaxed),
                        s.load.load(Ordering::Relaxed),
                    ));
                }
                None => vals.push((d.flags, 0, 0)),
            }
        }
        for (i, s) in c.dsts.iter().enumerate() {
            let (st, f, ld) = vals.get(i).copied().unwrap_or((0, 0, 0));
            s.state.store(st, Ordering::Relaxed);
            s.fails.store(f, Ordering::Relaxed);
            s.load.store(ld, Ordering::Relaxed);
        }
        for s in c.sets {
            s.rr.store(0, Ordering::Relaxed);
            s.wrr.store(0, Ordering::Relaxed);
        }
        for call in c.calls {
            let k = call.key.load(Ordering::Relaxed);
            if k != 0 && k != TOMBSTONE {
                let d = call.dst.load(Ordering::Relaxed) as usize;
                match map.get(d) {
                    Some(&n) if n != u32::MAX => call.dst.store(n, Ordering::Relaxed),
                    _ => call.key.store(TOMBSTONE, Ordering::Relaxed),
                }
            }
        }
    });
    if ok {
        Ok(())
    } else {
        Err("out of shared memory".into())
    }
}

fn mod_init() -> Result<(), String> {
    if !P.db_url.get().is_empty() {
        openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("dispatcher: {e}"))?;
    }
    let avp = |s: &str| {
        if s.is_empty() {
            None
        } else {
            tm::parse_avp_id(s)
        }
    };
    let hash_fmt = if P.hash_pvar.get().is_empty() {
        None
    } else {
        Some(openser_core::cfg::pv::parse_format(P.hash_pvar.get())?)
    };
    let probing = P.ping_interval.get() > 0;
    let tracking = P.load_flag.get() >= 0;
    let tm_loaded = openser_core::module::is_loaded("tm");
    if (probing || tracking) && !tm_loaded {
        let what = if tracking {
            "call_load_flag"
        } else {
            "probing (ds_ping_interval > 0)"
        };
        if tracking {
            return Err(format!("dispatcher: {what} needs the tm module"));
        }
        openser_core::log_warn!("{what} needs the tm module: no probing");
    }
    let probe_cb = if probing && tm_loaded {
        tm::uac::register_callback(probe_done)
    } else {
        0
    };
    if tracking {
        tm::callbacks::register(load_hook, 1u32 << P.load_flag.get());
    }
    let cache =
        Cache::new_static("dispatcher destination list").ok_or("dispatcher: no shared memory")?;
    let dsts = shm::alloc_static_slice_with(MAX_DSTS, |_| DstSlot::default())
        .ok_or("dispatcher: no shared memory")?;
    let sets = shm::alloc_static_slice_with(MAX_SETS, |_| SetSlot::default())
        .ok_or("dispatcher: no shared memory")?;
    let calls = shm::alloc_static_slice_with(if tracking { CALL_SLOTS } else { 1 }, |_| {
        CallSlot::default()
    })
    .ok_or("dispatcher: no shared memory")?;
    let c = Conf {
        dst_avp: avp(P.dst_avp.get()),
        grp_avp: avp(P.grp_avp.get()),
        cnt_avp: avp(P.cnt_avp.get()),
        hash_fmt,
        cache,
        dsts,
        sets,
        calls,
        probe_cb,
    };
    let l = load_source(false).map_err(|e| format!("dispatcher: {e}"))?;
    if l.dests.is_empty() {
        openser_core::log_warn!("no destinations loaded");
    }
    publish(&c, &l).map_err(|e| format!("dispatcher: {e}"))?;
    let _ = CONF.set(c);
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    RAND.with(|r| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        r.set(t ^ (u64::from(std::process::id()) << 32) | 1);
    });
    Ok(())
}

// ---------------------------------------------------------------- hashing

/// The hash of `ds_select_*` (FNV-1a over the keys).
pub fn ds_hash(k1: &str, k2: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in k1.as_bytes().iter().chain(k2.as_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^ (h >> 15)
}

/// The hash keys of a URI: (user, host[:port]) — port only when not the default of
/// its scheme; host left out with `flags` bit 1.
pub fn uri_keys(uri: &str, user_only: bool) -> Option<(String, String)> {
    let u = match Uri::parse(uri.trim()) {
        Ok(u) => u,
        Err(e) => {
            openser_core::log_err!("invalid uri <{uri}>: {e}");
            return None;
        }
    };
    if u.host.is_empty() {
        openser_core::log_err!("invalid uri, no host: <{uri}>");
        return None;
    }
    if user_only {
        return Some((u.user.clone(), String::new()));
    }
    let def = if uri
        .trim()
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
    {
        5061
    } else {
        5060
    };
    let hp = match u.port {
        Some(p) if p != def => format!("{}:{p}", u.host),
        _ => u.host.clone(),
    };
    Some((u.user.clone(), hp))
}

fn uri_hash(uri: &str) -> Option<u32> {
    let (a, b) = uri_keys(uri, P.flags.get() & DS_HASH_USER_ONLY != 0)?;
    Some(ds_hash(&a, &b))
}

/// The username of the request's credentials, if any.
pub fn auth_username(msg: &SipMsg) -> Option<String> {
    for h in ["Proxy-Authorization", "Authorization"] {
        for v in msg.headers_by_name(h) {
            for part in v.split(',') {
                let p = part.trim();
                let p = p
                    .strip_prefix("Digest ")
                    .or_else(|| p.strip_prefix("digest "))
                    .unwrap_or(p)
                    .trim();
                if let Some((k, val)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("username")
                {
                    let u = val.trim().trim_matches('"');
                    if !u.is_empty() {
                        return Some(u.to_string());
                    }
                }
            }
        }
    }
    None
}

fn next_rand() -> u32 {
    RAND.with(|r| {
        let mut x = r.get().max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x >> 16) as u32
    })
}

// ---------------------------------------------------------------- selection

fn active(c: &Conf, slot: usize) -> bool {
    c.dsts
        .get(slot)
        .is_some_and(|s| s.state.load(Ordering::Relaxed) & ST_INACTIVE == 0)
}

/// Choose a position in set `s` (index into `s.dests`) with `alg`; `None` when no
/// destination is usable.
fn choose(c: &Conf, ctx: &mut Ctx, l: &List, si: usize, alg: i64) -> Option<usize> {
    let s = &l.sets[si];
    let n = s.dests.len();
    if n == 0 {
        return None;
    }
    let use_default = P.use_default.get() != 0 && n > 1;
    let m = if use_default { n - 1 } else { n };
    let slot = |i: usize| s.dests[i];
    let counters = &c.sets[si];
    let rr = || counters.rr.fetch_add(1, Ordering::Relaxed);
    let hash: u32 = match alg {
        0 => match ctx.msg.callid() {
            Some(cid) => ds_hash(cid.trim(), ""),
            None => {
                openser_core::log_err!("can't get callid hash");
                return None;
            }
        },
        1 => {
            let Ok(f) = ctx.msg.from() else {
                openser_core::log_err!("can't get From uri hash");
                return None;
            };
            uri_hash(ctx.msg.s(f.uri))?
        }
        2 => {
            let Ok(t) = ctx.msg.to() else {
                openser_core::log_err!("can't get To uri hash");
                return None;
            };
            uri_hash(ctx.msg.s(t.uri))?
        }
        3 => uri_hash(ctx.msg.ruri())?,
        4 => rr(),
        5 => match auth_username(ctx.msg) {
            Some(u) => ds_hash(&u, ""),
            None => rr(),
        },
        6 => next_rand(),
        7 => {
            let Some(f) = c.hash_fmt.as_ref() else {
                openser_core::log_err!("algorithm 7 needs the hash_pvar parameter");
                return None;
            };
            let v = ctx.format(f);
            if v.is_empty() {
                openser_core::log_err!("empty hash_pvar value");
                return None;
            }
            ds_hash(&v, "")
        }
        8 => 0,
        9 => {
            if s.wseq.is_empty() {
                0
            } else {
                let w = counters.wrr.fetch_add(1, Ordering::Relaxed) as usize;
                u32::from(s.wseq[w % s.wseq.len()])
            }
        }
        10 => {
            let start = rr() as usize;
            let best = (0..m)
                .map(|k| (start + k) % m)
                .filter(|&i| active(c, slot(i)))
                .min_by_key(|&i| c.dsts[slot(i)].load.load(Ordering::Relaxed));
            return match best {
                Some(i) => Some(i),
                None if use_default => Some(n - 1),
                None => None,
            };
        }
        _ => {
            openser_core::log_warn!("algorithm {alg} not implemented - using first entry");
            0
        }
    };
    let start = hash as usize % m;
    let mut i = start;
    loop {
        if active(c, slot(i)) {
            return Some(i);
        }
        i = (i + 1) % m;
        if i == start {
            return if use_default { Some(n - 1) } else { None };
        }
    }
}

/// Point the request at `uri`: the destination URI (`domain` false) or the host and
/// port of the Request-URI.
fn update_dst(ctx: &mut Ctx, uri: &str, domain: bool) -> bool {
    if domain {
        let Ok(d) = Uri::parse(uri) else {
            return false;
        };
        let hp = match d.port {
            Some(p) => format!("{}:{p}", d.host),
            None => d.host.clone(),
        };
        let cur = ctx.msg.ruri().to_string();
        let Ok(mut u) = Uri::parse(&cur) else {
            openser_core::log_err!("bad request uri <{cur}>");
            return false;
        };
        if u.set_hostport(&hp).is_err() {
            return false;
        }
        ctx.msg.new_uri = Some(u.to_string());
    } else {
        ctx.msg.dst_uri = Some(uri.to_string());
    }
    true
}

fn select(ctx: &mut Ctx, args: &[FixedArg], domain: bool) -> i32 {
    let Some(c) = conf() else { return -1 };
    let (Some(set), Some(alg)) = (
        args.first().and_then(|a| ctx.arg_int(a)),
        args.get(1).and_then(|a| ctx.arg_int(a)),
    ) else {
        openser_core::log_err!("bad set or algorithm value");
        return -1;
    };
    if !domain
        && P.force_dst.get() == 0
        && ctx.msg.dst_uri.as_deref().is_some_and(|d| !d.is_empty())
    {
        openser_core::log_err!(
            "destination already set [{}]",
            ctx.msg.dst_uri.as_deref().unwrap_or("")
        );
        return -1;
    }
    let Some((_, l)) = current() else { return -1 };
    let Ok(set32) = i32::try_from(set) else {
        return -1;
    };
    let Some((si, s)) = l.set(set32) else {
        openser_core::log_err!("destination set [{set}] not found");
        return -1;
    };
    let Some(pos) = choose(c, ctx, &l, si, alg) else {
        openser_core::log_dbg!("no active destination in set [{set}]");
        return -1;
    };
    let chosen = &l.dests[s.dests[pos]];
    if !update_dst(ctx, &chosen.uri, domain) {
        openser_core::log_err!("cannot set dst addr");
        return -1;
    }
    if alg == 10 && P.load_flag.get() >= 0 {
        ctx.msg.flags |= 1u32 << P.load_flag.get();
        let id = AvpId::Str(LOAD_AVP.into());
        ctx.avps.del_all(&id);
        ctx.avps
            .add(id, PvValue::Str(format!("{set} {}", chosen.uri)));
    }
    if P.flags.get() & DS_FAILOVER_ON == 0 {
        return 1;
    }
    let mut cnt = 0i64;
    if let Some(dst_avp) = c.dst_avp.clone() {
        ctx.avps.del_all(&dst_avp);
        let n = s.dests.len();
        let use_default = P.use_default.get() != 0 && n > 1;
        let usable = |i: usize| active(c, s.dests[i]) && !(use_default && i == n - 1);
        let push = |ctx: &mut Ctx, i: usize| {
            ctx.avps.add(
                dst_avp.clone(),
                PvValue::Str(l.dests[s.dests[i]].uri.clone()),
            );
        };
        // Added oldest first: the default, those before the chosen one (backwards),
        // those after it (backwards), the chosen one — so popping the newest walks the
        // list forward from the chosen one.
        if use_default && pos != n - 1 {
            push(ctx, n - 1);
            cnt += 1;
        }
        for i in (0..pos).rev() {
            if usable(i) {
                push(ctx, i);
                cnt += 1;
            }
        }
        for i in (pos + 1..n).rev() {
            if usable(i) {
                push(ctx, i);
                cnt += 1;
            }
        }
        push(ctx, pos);
        cnt += 1;
    }
    if let Some(g) = c.grp_avp.clone() {
        ctx.avps.del_all(&g);
        ctx.avps.add(g, PvValue::Int(set));
    }
    if let Some(k) = c.cnt_avp.clone() {
        ctx.avps.del_all(&k);
        ctx.avps.add(k, PvValue::Int(cnt));
    }
    1
}

fn cmd_select_dst(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    select(ctx, args, false)
}

fn cmd_select_domain(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    select(ctx, args, true)
}

fn next(ctx: &mut Ctx, domain: bool) -> i32 {
    let Some(c) = conf() else { return -1 };
    let Some(dst_avp) = c
        .dst_avp
        .clone()
        .filter(|_| P.flags.get() & DS_FAILOVER_ON != 0)
    else {
        openser_core::log_warn!("failover support disabled");
        return -1;
    };
    if ctx.avps.get(&dst_avp).is_none() {
        return -1;
    }
    ctx.avps.del_one(&dst_avp);
    let Some(PvValue::Str(uri)) = ctx.avps.get(&dst_avp).cloned() else {
        return -1;
    };
    if !update_dst(ctx, &uri, domain) {
        openser_core::log_err!("cannot set dst addr");
        return -1;
    }
    let id = AvpId::Str(LOAD_AVP.into());
    if let Some(PvValue::Str(v)) = ctx.avps.get(&id).cloned()
        && let Some((set, _)) = v.split_once(' ')
    {
        let nv = format!("{set} {uri}");
        ctx.avps.del_all(&id);
        ctx.avps.add(id, PvValue::Str(nv));
    }
    openser_core::log_dbg!("using [{uri}]");
    1
}

fn cmd_next_dst(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    next(ctx, false)
}

fn cmd_next_domain(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    next(ctx, true)
}

/// A state change by name: `a`ctive, `i`nactive, `p`robing (one failure towards it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Active,
    Inactive,
    Probing,
}

fn parse_mark(s: &str) -> Option<Mark> {
    match s.trim() {
        "a" | "A" => Some(Mark::Active),
        "i" | "I" => Some(Mark::Inactive),
        "p" | "P" => Some(Mark::Probing),
        _ => None,
    }
}

fn fixup_mark(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let m = match args.first() {
        None => Mark::Inactive,
        Some(a) => {
            let s = openser_core::script::fixup::string_arg(a)?;
            parse_mark(&s).ok_or_else(|| format!("ds_mark_dst: bad state '{s}' (a, i or p)"))?
        }
    };
    let code = match m {
        Mark::Active => 0,
        Mark::Inactive => 1,
        Mark::Probing => 2,
    };
    Ok(vec![FixedArg::Int(code)])
}

/// Apply a mark to slot `slot`.
fn apply_mark(c: &Conf, slot: usize, m: Mark) {
    let Some(s) = c.dsts.get(slot) else { return };
    match m {
        Mark::Active => {
            s.fails.store(0, Ordering::Relaxed);
            s.state.store(0, Ordering::Relaxed);
        }
        Mark::Inactive => {
            s.state.fetch_or(ST_INACTIVE, Ordering::Relaxed);
        }
        Mark::Probing => {
            let f = s.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if i64::from(f) >= P.threshold.get() {
                s.state
                    .fetch_or(ST_INACTIVE | ST_PROBING, Ordering::Relaxed);
            }
        }
    }
}

fn cmd_mark_dst(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(c) = conf() else { return -1 };
    if P.flags.get() & DS_FAILOVER_ON == 0 {
        openser_core::log_warn!("failover support disabled");
        return -1;
    }
    let m = match args.first() {
        Some(FixedArg::Int(0)) => Mark::Active,
        Some(FixedArg::Int(2)) => Mark::Probing,
        _ => Mark::Inactive,
    };
    let group = match c.grp_avp.as_ref().and_then(|g| ctx.avps.get(g)) {
        Some(PvValue::Int(g)) => *g,
        _ => return -1,
    };
    let uri = match c.dst_avp.as_ref().and_then(|d| ctx.avps.get(d)) {
        Some(PvValue::Str(u)) => u.clone(),
        _ => return -1,
    };
    let Some((_, l)) = current() else { return -1 };
    let Some(slot) = i32::try_from(group).ok().and_then(|g| l.find(g, &uri)) else {
        return -1;
    };
    apply_mark(c, slot, m);
    openser_core::log_dbg!("mode [{m:?}] grp [{group}] dst [{uri}]");
    1
}

fn fixup_select(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = Vec::new();
    for (k, a) in args.iter().enumerate() {
        let what = if k == 0 { "set" } else { "algorithm" };
        match &a.value {
            ArgValue::Int(i) => out.push(FixedArg::Int(*i)),
            ArgValue::Pv(p) => out.push(FixedArg::Pv(p.clone())),
            _ => {
                let s = openser_core::script::fixup::string_arg(a)?;
                let t = s.trim();
                if t.starts_with('$') {
                    let (spec, n) = openser_core::cfg::pv::parse_pv(t)?;
                    if n != t.len() {
                        return Err(format!("bad {what} '{t}'"));
                    }
                    out.push(FixedArg::Pv(spec));
                } else {
                    let v: i64 = t
                        .parse()
                        .map_err(|_| format!("{what} '{t}' is not a number"))?;
                    out.push(FixedArg::Int(v));
                }
            }
        }
        if let Some(FixedArg::Int(v)) = out.last()
            && *v < 0
        {
            return Err(format!("{what} must not be negative"));
        }
    }
    if matches!(out.get(1), Some(FixedArg::Int(10))) && P.load_flag.get() < 0 {
        return Err("algorithm 10 (call load) needs modparam call_load_flag".into());
    }
    Ok(out)
}

fn fixup_group(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.first()
        .map(|a| openser_core::script::fixup::int_arg(a, "group").map(FixedArg::Int))
        .into_iter()
        .collect()
}

/// Whether `src` is the address of a destination (of set `group`, or of any set).
pub fn is_from_list(l: &List, src: SocketAddr, group: Option<i32>) -> bool {
    l.dests
        .iter()
        .filter(|d| group.is_none_or(|g| d.set == g))
        .any(|d| {
            d.addr
                .is_some_and(|a| a.ip() == src.ip() && a.port() == src.port())
        })
}

fn cmd_is_from_list(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let group = match args.first() {
        Some(FixedArg::Int(g)) => i32::try_from(*g).ok(),
        _ => None,
    };
    let Some((_, l)) = current() else { return -1 };
    if is_from_list(&l, ctx.msg.rcv.src, group) {
        1
    } else {
        -1
    }
}

// ---------------------------------------------------------------- MI

fn state_letter(st: u32) -> &'static str {
    if st & ST_PROBING != 0 {
        "P"
    } else if st & ST_INACTIVE != 0 {
        "I"
    } else {
        "A"
    }
}

fn mi_list(_: &[MiArg]) -> MiReply {
    let (Some(c), Some((_, l))) = (conf(), current()) else {
        return MiReply::err(500, "No destination sets");
    };
    let mut nodes = Vec::new();
    for s in &l.sets {
        let mut set = MiNode::new("SET", s.id.to_string());
        for &i in &s.dests {
            let d = &l.dests[i];
            let st = &c.dsts[i];
            let mut n = MiNode::new("URI", d.uri.clone())
                .attr("flags", state_letter(st.state.load(Ordering::Relaxed)))
                .attr("weight", d.weight.to_string());
            if P.load_flag.get() >= 0 {
                n = n.attr("load", st.load.load(Ordering::Relaxed).to_string());
            }
            if !d.attrs.is_empty() {
                n = n.attr("attrs", d.attrs.clone());
            }
            set = set.kid(n);
        }
        nodes.push(set);
    }
    MiReply::ok(nodes)
}

fn mi_set_state(args: &[MiArg]) -> MiReply {
    let [st, grp, addr] = args else {
        return MiReply::err(400, "Too few or too many arguments");
    };
    let Some(m) = parse_mark(&st.value) else {
        return MiReply::err(400, "Bad state value");
    };
    let Ok(g) = grp.value.trim().parse::<i32>() else {
        return MiReply::err(400, "Bad group value");
    };
    let (Some(c), Some((_, l))) = (conf(), current()) else {
        return MiReply::err(500, "No destination sets");
    };
    let Some(slot) = l.find(g, &addr.value) else {
        return MiReply::err(404, "Destination not found");
    };
    match m {
        // by hand: probing now, without counting failures
        Mark::Probing => {
            c.dsts[slot]
                .state
                .store(ST_INACTIVE | ST_PROBING, Ordering::Relaxed);
        }
        Mark::Inactive => c.dsts[slot].state.store(ST_INACTIVE, Ordering::Relaxed),
        Mark::Active => apply_mark(c, slot, Mark::Active),
    }
    MiReply::ok(Vec::new())
}

fn mi_reload(_: &[MiArg]) -> MiReply {
    let Some(c) = conf() else {
        return MiReply::err(500, "dispatcher not initialised");
    };
    match load_source(true).and_then(|l| publish(c, &l)) {
        Ok(()) => MiReply::ok(Vec::new()),
        Err(e) => {
            openser_core::log_err!("reload failed: {e}");
            MiReply::err(500, "ERROR Reloading data")
        }
    }
}

// ---------------------------------------------------------------- probing

fn probe_timer(_ticks: u64) {
    let Some(c) = conf() else { return };
    if c.probe_cb == 0 || P.ping_interval.get() <= 0 {
        return;
    }
    let Some((g, l)) = current() else { return };
    let all = P.probing_mode.get() == 1;
    for (i, d) in l.dests.iter().enumerate() {
        let st = c.dsts[i].state.load(Ordering::Relaxed);
        let probe = if all {
            st & ST_PROBING != 0 || st & ST_INACTIVE == 0
        } else {
            st & ST_PROBING != 0
        };
        if !probe {
            continue;
        }
        let Some(addr) = d.addr else {
            openser_core::log_dbg!("not probing unresolved <{}>", d.uri);
            continue;
        };
        let dst = format!("sip:{addr}");
        let r = tm::uac::LocalRequest {
            method: P.ping_method.get(),
            ruri: &d.uri,
            from: P.ping_from.get(),
            to: &d.uri,
            dst: Some(&dst),
            callback: Some((c.probe_cb, (g << 32) | i as u64)),
            ..Default::default()
        };
        if let Err(e) = tm::uac::send_request(&r) {
            openser_core::log_err!("probing <{}>: {e}", d.uri);
        }
    }
}

/// A probe's outcome (receiver or timer process, no tm lock held).
fn probe_done(done: &tm::uac::UacDone) {
    let Some(c) = conf() else { return };
    let slot = (done.param & 0xffff_ffff) as usize;
    if c.cache.generation() != done.param >> 32 {
        return; // reloaded meanwhile: the slot may be another destination now
    }
    let Some(s) = c.dsts.get(slot) else { return };
    if done.code == 200 || done.code == 501 {
        s.fails.store(0, Ordering::Relaxed);
        if s.state.load(Ordering::Relaxed) & ST_PROBING != 0 {
            s.state.store(0, Ordering::Relaxed);
        }
    } else {
        openser_core::log_dbg!("probe of slot {slot}: {}", done.code);
        apply_mark(c, slot, Mark::Probing);
    }
}

// ---------------------------------------------------------------- call load

fn now_secs() -> u32 {
    (openser_core::process::timer::get_uticks() / 10) as u32
}

fn call_key(callid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in callid.trim().as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    if h == 0 || h == TOMBSTONE { 1 } else { h }
}

/// Count a call on `slot` (a 2xx to an INVITE).
fn call_start(c: &Conf, callid: &str, slot: usize) {
    let key = call_key(callid);
    let n = c.calls.len();
    let start = key as usize & (n - 1);
    for k in 0..n {
        let e = &c.calls[(start + k) & (n - 1)];
        let cur = e.key.load(Ordering::Acquire);
        if cur == key {
            return; // already counted (a retransmitted 2xx)
        }
        if (cur == 0 || cur == TOMBSTONE)
            && e.key
                .compare_exchange(cur, key, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            e.dst.store(slot as u32, Ordering::Release);
            e.since.store(now_secs(), Ordering::Release);
            c.dsts[slot].load.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if cur == 0 {
            continue;
        }
    }
    openser_core::log_warn!("call-load table full: call not counted");
}

/// End a call (BYE or expiry).
fn call_end(c: &Conf, callid: &str) {
    let key = call_key(callid);
    let n = c.calls.len();
    let start = key as usize & (n - 1);
    for k in 0..n {
        let e = &c.calls[(start + k) & (n - 1)];
        let cur = e.key.load(Ordering::Acquire);
        if cur == 0 {
            return;
        }
        if cur == key {
            let d = e.dst.load(Ordering::Acquire) as usize;
            if e.key
                .compare_exchange(cur, TOMBSTONE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                dec_load(c, d);
            }
            return;
        }
    }
}

fn dec_load(c: &Conf, slot: usize) {
    if let Some(s) = c.dsts.get(slot) {
        let _ = s
            .load
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

/// tm callback: a 2xx went upstream for a call-load INVITE.
fn load_hook(ev: &mut tm::callbacks::TmEvent) -> u32 {
    if ev.kind != tm::callbacks::TmEventKind::ReplyOut
        || !(200..300).contains(&ev.code)
        || ev.req.method() != Method::Invite
    {
        return 0;
    }
    let Some(c) = conf() else { return 0 };
    let Some(PvValue::Str(v)) = ev.avps.get(&AvpId::Str(LOAD_AVP.into())).cloned() else {
        return 0;
    };
    let Some((set, uri)) = v.split_once(' ') else {
        return 0;
    };
    let Some((_, l)) = current() else { return 0 };
    let Some(slot) = set.parse().ok().and_then(|s| l.find(s, uri)) else {
        return 0;
    };
    if let Some(cid) = ev.req.callid() {
        let cid = cid.to_string();
        call_start(c, &cid, slot);
    }
    0
}

fn pre_script(msg: &mut SipMsg) -> bool {
    if P.load_flag.get() >= 0
        && msg.is_request()
        && msg.method() == Method::Bye
        && let Some(c) = conf()
        && let Some(cid) = msg.callid()
    {
        let cid = cid.to_string();
        call_end(c, &cid);
    }
    true
}

fn load_timer(_ticks: u64) {
    let Some(c) = conf() else { return };
    if P.load_flag.get() < 0 {
        return;
    }
    let now = now_secs();
    let max = P.load_timeout.get_u32();
    for e in c.calls {
        let k = e.key.load(Ordering::Acquire);
        if k == 0 || k == TOMBSTONE {
            continue;
        }
        if now.saturating_sub(e.since.load(Ordering::Acquire)) >= max {
            let d = e.dst.load(Ordering::Acquire) as usize;
            if e.key
                .compare_exchange(k, TOMBSTONE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                dec_load(c, d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_hash_keys() {
        assert_eq!(
            uri_keys("sip:alice@example.com:5060", false),
            Some(("alice".into(), "example.com".into()))
        );
        assert_eq!(
            uri_keys("sip:alice@example.com:5070", false),
            Some(("alice".into(), "example.com:5070".into()))
        );
        assert_eq!(
            uri_keys("sips:bob@h:5061", false),
            Some(("bob".into(), "h".into()))
        );
        assert_eq!(
            uri_keys("sip:bob@h:5070", true),
            Some(("bob".into(), String::new()))
        );
        assert_eq!(uri_keys("nonsense", false), None);
        assert_ne!(ds_hash("a", ""), ds_hash("b", ""));
        assert_eq!(ds_hash("a", "b"), ds_hash("a", "b"));
    }

    #[test]
    fn auth_username_from_credentials() {
        let m = SipMsg::parse(
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nProxy-Authorization: Digest realm=\"h\", username=\"alice\", nonce=\"n\"\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(auth_username(&m).as_deref(), Some("alice"));
    }

    #[test]
    fn from_list_matches_ip_and_port() {
        let l = list::build(
            vec![(1, "sip:127.0.0.1:7070".into(), 0, String::new())],
            |_| "127.0.0.1:7070".parse().ok(),
        )
        .unwrap();
        assert!(is_from_list(&l, "127.0.0.1:7070".parse().unwrap(), None));
        assert!(is_from_list(&l, "127.0.0.1:7070".parse().unwrap(), Some(1)));
        assert!(!is_from_list(
            &l,
            "127.0.0.1:7070".parse().unwrap(),
            Some(2)
        ));
        assert!(!is_from_list(&l, "127.0.0.1:7071".parse().unwrap(), None));
    }

    #[test]
    fn marks() {
        assert_eq!(parse_mark("p"), Some(Mark::Probing));
        assert_eq!(parse_mark("A"), Some(Mark::Active));
        assert_eq!(parse_mark("x"), None);
        assert_eq!(state_letter(ST_INACTIVE | ST_PROBING), "P");
        assert_eq!(state_letter(ST_INACTIVE), "I");
        assert_eq!(state_letter(0), "A");
    }

    #[test]
    fn exports_table() {
        for p in [
            "list_file",
            "db_url",
            "flags",
            "dst_avp",
            "ds_ping_interval",
            "ds_probing_threshhold",
            "ds_probing_mode",
        ] {
            assert!(EXPORTS.param(p).is_some(), "{p}");
        }
        assert_eq!(EXPORTS.mi.len(), 3);
    }
}

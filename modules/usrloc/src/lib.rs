//! usrloc: the user-location table (OpenSER 1.2 `modules/usrloc`), kept in shared
//! memory so that every SIP worker sees the same bindings.
//!
//! Structure: [`UDomain`] ("table", e.g. `location`) → `2^hash_size` slots, each with
//! its own lock → records (one per AOR, doubly linked per slot) → contacts (linked
//! per record, ordered by q descending, or newest first with `desc_time_order`).
//! Everything below the domain handle is `#[repr(C)]` data in shm linked by
//! `ShmPtr`. A record is one shm block holding its AOR after the struct, a contact one
//! block holding all its strings after the struct (`shmref::alloc_tailed`), so a
//! REGISTER refreshing one of a million users misses on the slot, the record and the
//! contact block, not also on a block for the AOR and one for the contact's strings.
//!
//! Locking: one lock per slot; every operation on records and contacts is a method
//! of [`SlotGuard`] (the held lock). Lock order: a usrloc slot lock is a leaf except
//! for the shm allocator lock taken inside it — hold at most one slot lock, take no
//! other lock (tm, another slot) while holding it, and never block (DB, DNS, I/O)
//! under it. Callbacks run with the slot lock held and must obey the same rules.
//!
//! A failed [`SlotGuard::insert_ucontact`] leaves an AOR's record as it was; a record
//! created just before it stays empty until [`SlotGuard::release_urecord`] (which the
//! registrar calls at the end of `save`, as OpenSER does) or the next timer run.
//!
//! Expiry: the timer walks `slots / timer_interval` slots a second (a whole pass per
//! `timer_interval`, as OpenSER's whole walk) but looks into a slot only when its
//! `SlotHead::due` has come. Invariant: `due` is 0 only if no contact of the slot has
//! a non-zero `expires` and no record is empty; otherwise it is ≤ every such `expires`
//! (1 once a record is left empty when its slot lock is released). Inserts and
//! updates lower it, the walk sets it exactly; so a table of a million refreshed
//! bindings costs the walk a read of each slot head per pass, not a visit of every
//! contact. A record created and given its first contact under one lock (registrar's
//! `save`) never makes its slot due at once.
//!
//! Memory: a slot's lock and list head share one 32-byte array element
//! (`hslot::Slot`), so in a table larger than the caches a lookup pays one miss for
//! both. A user with one contact costs about 240 bytes of shm besides its slot
//! (`tests::refresh_cost_probe` prints it). A caller with lock-free work to do before
//! locking (the registrar's `save`) first calls [`UDomain::prefetch_slot`], later
//! [`UDomain::prefetch_first_record`], so the slot's and the record's misses overlap
//! that work.
//!
//! AORs are compared and hashed ASCII case-insensitively unless
//! [`UsrlocParams::case_sensitive`] is set (OpenSER's registrar lowercases the AOR
//! unless its `case_sensitive` is set; here the table itself honours it). Contact
//! URIs and Call-IDs are compared byte for byte, as in OpenSER.
//!
//! The exports table opens this file; the `modparam` cells, mod_init, the expiry timer
//! and the per-domain statistics are in [`module`]; `db_mode` 1 (write-through), 2 (write-back) — both with the table loaded
//! at start-up — and 3 (DB only) are in [`db`].

use std::fmt;

use openser_core::module::{Every, MiExport, ModuleExports, Param, StatExport, TimerExport};
use openser_core::state::Registry;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "usrloc",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::int_with("db_mode", &P.db_mode, module::check_db_mode),
        Param::int_range("timer_interval", &P.timer_interval, 1, u32::MAX as i64),
        Param::bool("use_domain", &P.use_domain),
        Param::bool("desc_time_order", &P.desc_time_order),
        Param::int_with(
            "matching_mode",
            &P.matching_mode,
            module::check_matching_mode,
        ),
        Param::int_with("cseq_delay", &P.cseq_delay, module::check_cseq_delay),
        Param::uint("fetch_rows", &P.fetch_rows),
        Param::uint("hash_size", &P.hash_size),
        Param::int_range("nat_bflag", &P.nat_bflag, -1, 31),
        Param::str("user_column", &P.user_column),
        Param::str("domain_column", &P.domain_column),
        Param::str("contact_column", &P.contact_column),
        Param::str("expires_column", &P.expires_column),
        Param::str("q_column", &P.q_column),
        Param::str("callid_column", &P.callid_column),
        Param::str("cseq_column", &P.cseq_column),
        Param::str("flags_column", &P.flags_column),
        Param::str("cflags_column", &P.cflags_column),
        Param::str("user_agent_column", &P.user_agent_column),
        Param::str("received_column", &P.received_column),
        Param::str("path_column", &P.path_column),
        Param::str("socket_column", &P.socket_column),
        Param::str("methods_column", &P.methods_column),
    ],
    mi: &[
        MiExport::new("ul_rm", mi::ul_rm),
        MiExport::new("ul_rm_contact", mi::ul_rm_contact),
        MiExport::new("ul_dump", mi::ul_dump),
        MiExport::new("ul_flush", mi::ul_flush).no_input(),
        MiExport::new("ul_add", mi::ul_add),
        MiExport::new("ul_show_contact", mi::ul_show_contact),
    ],
    stats: &[StatExport::func("registered_users", registered_users)],
    timers: &[TimerExport::new("usrloc", Every::Secs(1), module::ul_timer)],
    mod_init: Some(module::mod_init),
    destroy: Some(module::destroy),
    ..ModuleExports::EMPTY
};

mod db;
mod hslot;
pub mod mi;
pub mod module;
mod repair;
mod shmref;
mod ucontact;
mod udomain;
mod urecord;

#[cfg(test)]
mod tests;

pub use db::{DbFailure, take_db_failure};
pub use hslot::ul_hash;
pub use module::P;
pub use ucontact::{ALL_METHODS, ContactInfo, ContactState, Q_UNSPECIFIED};
pub use udomain::{SlotGuard, UDomain};
pub use urecord::{ContactId, Match, RecordId};

/// Errors of usrloc operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UlError {
    /// Shared memory exhausted; nothing was changed.
    NoMemory,
    /// A string is longer than 65535 bytes (or an AOR is empty).
    TooLong,
    /// The AOR does not hash to the locked slot.
    WrongSlot,
    /// The record or contact id is not (any longer) in the locked slot.
    NotFound,
}

impl fmt::Display for UlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UlError::NoMemory => "no more shared memory",
            UlError::TooLong => "string too long",
            UlError::WrongSlot => "AOR does not belong to the locked slot",
            UlError::NotFound => "record or contact not found",
        })
    }
}

impl std::error::Error for UlError {}

/// Column names of the `location` table (usrloc's `*_column` parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnNames {
    pub user: String,
    pub domain: String,
    pub contact: String,
    pub expires: String,
    pub q: String,
    pub callid: String,
    pub cseq: String,
    pub flags: String,
    pub cflags: String,
    pub user_agent: String,
    pub received: String,
    pub path: String,
    pub socket: String,
    pub methods: String,
    /// `last_modified` (not configurable in 1.2).
    pub last_modified: String,
}

impl Default for ColumnNames {
    fn default() -> Self {
        let s = |v: &str| v.to_owned();
        ColumnNames {
            user: s("username"),
            domain: s("domain"),
            contact: s("contact"),
            expires: s("expires"),
            q: s("q"),
            callid: s("callid"),
            cseq: s("cseq"),
            flags: s("flags"),
            cflags: s("cflags"),
            user_agent: s("user_agent"),
            received: s("received"),
            path: s("path"),
            socket: s("socket"),
            methods: s("methods"),
            last_modified: s("last_modified"),
        }
    }
}

/// usrloc module parameters, with OpenSER 1.2's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsrlocParams {
    pub db_url: String,
    /// 0 memory only, 1 write-through, 2 write-back, 3 DB only (only 0 implemented).
    pub db_mode: i32,
    /// Seconds between expiry (and write-back) runs.
    pub timer_interval: u32,
    /// AOR is `user@domain` instead of `user`.
    pub use_domain: bool,
    /// Order contacts newest first instead of by q.
    pub desc_time_order: bool,
    /// 0 match contact only; 1 contact and Call-ID.
    pub matching_mode: i32,
    /// Seconds within which an equal CSeq is a retransmission.
    pub cseq_delay: i64,
    /// Rows per fetch when loading from the DB.
    pub fetch_rows: u32,
    /// log2 of the slot count; 0 (the default) sizes the table from the shm segment
    /// ([`udomain::auto_hash_bits`]: 2^9 … 2^20 slots), 1 means 9 (512 slots, 1.2's
    /// default).
    pub hash_size: u32,
    /// Branch flag meaning "contact is behind NAT"; -1 = not set.
    pub nat_bflag: i32,
    /// Compare/hash AORs byte for byte (default: ASCII case-insensitive).
    pub case_sensitive: bool,
    pub columns: ColumnNames,
}

impl Default for UsrlocParams {
    /// OpenSER 1.2's defaults (those of a fresh set of `modparam` cells).
    fn default() -> Self {
        module::Cells::new().values()
    }
}

impl UsrlocParams {
    /// The `nat_bflag` as a `cflags` bit mask (0 if not set).
    pub fn nat_bflag_mask(&self) -> u32 {
        match u32::try_from(self.nat_bflag) {
            Ok(b) if b < 32 => 1 << b,
            _ => 0,
        }
    }
}

/// The module parameters as `modparam` set them (defaults elsewhere). Domains keep the
/// switches they were created with.
pub fn params() -> UsrlocParams {
    P.values()
}

/// Callback kinds (OpenSER's `UL_CONTACT_INSERT` … `UL_CONTACT_EXPIRE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum UlCbType {
    Insert = 1,
    Update = 2,
    Delete = 4,
    Expire = 8,
}

/// A usrloc callback: (kind, domain name, AOR, contact). Runs with the slot lock
/// held: it must not block and must not call usrloc.
pub type UlCallback = fn(UlCbType, &str, &[u8], &ContactInfo);

static CALLBACKS: Registry<(u32, UlCallback)> = Registry::new();

/// Register a callback for the kinds in `mask` (OR of [`UlCbType`] values); call
/// before fork (mod_init of a module binding usrloc's API).
pub fn register_ulcb(mask: u32, f: UlCallback) {
    CALLBACKS.lock().push((mask, f));
}

static UNLOCKED_CALLBACKS: Registry<(u32, UlCallback)> = Registry::new();

/// A binding change for the unlocked callbacks: (kind, domain, AOR, contact).
type Deferred = (UlCbType, String, Vec<u8>, ContactInfo);

thread_local! {
    /// Events for the [`register_ulcb_unlocked`] callbacks, queued under a slot lock.
    static DEFERRED: std::cell::RefCell<Vec<Deferred>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Register a callback for the kinds in `mask` that runs once the slot lock is
/// released (from [`SlotGuard::unlock_then_flush`], after the database writes): it may
/// block and use other modules (tm), but must not expect the binding to be unchanged
/// since. For pua_usrloc, whose PUBLISHes go out through tm. Call before fork.
pub fn register_ulcb_unlocked(mask: u32, f: UlCallback) {
    UNLOCKED_CALLBACKS.lock().push((mask, f));
}

fn has_callbacks(kind: UlCbType) -> bool {
    CALLBACKS.lock().iter().any(|(m, _)| m & kind as u32 != 0)
        || UNLOCKED_CALLBACKS
            .lock()
            .iter()
            .any(|(m, _)| m & kind as u32 != 0)
}

fn run_callbacks(kind: UlCbType, domain: &str, aor: &[u8], ci: &ContactInfo) {
    let cbs: Vec<(u32, UlCallback)> = CALLBACKS.lock().clone();
    for (m, f) in cbs {
        if m & kind as u32 != 0 {
            f(kind, domain, aor, ci);
        }
    }
    if UNLOCKED_CALLBACKS
        .lock()
        .iter()
        .any(|(m, _)| m & kind as u32 != 0)
    {
        DEFERRED.with(|q| {
            q.borrow_mut()
                .push((kind, domain.to_string(), aor.to_vec(), ci.clone()))
        });
    }
}

/// Run the queued [`register_ulcb_unlocked`] callbacks (no slot lock held).
fn run_deferred() {
    let q = DEFERRED.with(|q| std::mem::take(&mut *q.borrow_mut()));
    if q.is_empty() {
        return;
    }
    let cbs: Vec<(u32, UlCallback)> = UNLOCKED_CALLBACKS.lock().clone();
    for (kind, domain, aor, ci) in q {
        for (m, f) in &cbs {
            if m & kind as u32 != 0 {
                f(kind, &domain, &aor, &ci);
            }
        }
    }
}

/// The domains (tables), registered before fork by the modules that use them.
static DOMAINS: Registry<&'static UDomain> = Registry::new();

/// Get the domain `name`, creating it (with [`params`]) on first use — OpenSER's
/// `register_udomain`. Call before fork. Names compare case-sensitively.
pub fn register_udomain(name: &str) -> Result<&'static UDomain, UlError> {
    register_udomain_with(name, &params())
}

/// As [`register_udomain`] with explicit parameters for a new domain.
pub fn register_udomain_with(
    name: &str,
    params: &UsrlocParams,
) -> Result<&'static UDomain, UlError> {
    let mut doms = DOMAINS.lock();
    if let Some(d) = doms.iter().find(|d| d.name() == name) {
        return Ok(d);
    }
    let d: &'static UDomain = Box::leak(Box::new(UDomain::new(name, params)?));
    doms.push(d);
    let idx = doms.len() - 1;
    drop(doms);
    module::domain_stats(idx, name);
    Ok(d)
}

/// A registered domain by name.
/// Register domain `name` and, with `db_mode` 1, load its rows from the database table
/// of the same name (attendant, before fork; once per domain).
pub fn register_udomain_db(name: &str) -> Result<&'static UDomain, String> {
    let p = params();
    let existed = find_domain(name).is_some();
    let d = register_udomain_with(name, &p)
        .map_err(|e| format!("usrloc: cannot register domain `{name}`: {e}"))?;
    if !existed && (p.db_mode == 1 || p.db_mode == 2) {
        let now = openser_core::clock::now();
        let n = db::preload(d, &p, now)?;
        openser_core::log_info!("loaded {n} contact(s) of table {name} from the database");
    }
    Ok(d)
}

pub fn find_domain(name: &str) -> Option<&'static UDomain> {
    DOMAINS.lock().iter().find(|d| d.name() == name).copied()
}

/// All registered domains, in registration order.
pub fn domains() -> Vec<&'static UDomain> {
    DOMAINS.lock().clone()
}

/// `usrloc:registered_users`: records over all domains.
pub fn registered_users() -> u64 {
    domains().iter().map(|d| d.users()).sum()
}

/// Valid contacts of every domain whose `cflags` contain all bits of `flags` (OpenSER's
/// `get_all_ucontacts`, used by nathelper pings with the `nat_bflag` mask).
pub fn get_all_ucontacts(flags: u32, now: i64) -> Vec<ContactInfo> {
    let mut out = Vec::new();
    for d in domains() {
        for i in 0..d.size() {
            let g = d.lock_index(i);
            for r in g.records() {
                if let Ok(cs) = g.contacts(r) {
                    out.extend(
                        cs.into_iter()
                            .filter(|c| c.is_valid(now) && c.cflags & flags == flags),
                    );
                }
            }
        }
    }
    out
}

/// The usrloc timer, every second in the timer process: one step of each domain's
/// amortised expiry walk (a whole pass per `timer_interval`), and every
/// `timer_interval` seconds the `db_mode` 2 write-back and the `db_mode` 3 expiry of
/// the database rows. `tick` counts seconds.
pub fn timer_tick(now: i64, tick: u64) {
    let interval = u64::from(params().timer_interval.max(1));
    let full = tick.is_multiple_of(interval);
    for d in domains() {
        d.expire_step(now, interval as usize);
        if full && db::write_back() {
            db::sync_domain(d);
        }
        if full && db::db_only() {
            db::expire_db(d, now);
        }
    }
}

/// The number of hash slots over all domains: the range of the slot index that
/// [`get_ucontacts_of_slots`] walks.
pub fn total_slots() -> usize {
    domains().iter().map(|d| d.size()).sum()
}

/// As [`get_all_ucontacts`], for the slots `from..to` of the sequence of all domains'
/// slots (domain by domain, in registration order): a caller walks the table a part
/// at a time (nathelper spreads a ping round over its interval). Each slot is locked
/// only while its contacts are copied out; no lock is held when this returns.
pub fn get_ucontacts_of_slots(flags: u32, now: i64, from: usize, to: usize) -> Vec<ContactInfo> {
    let mut out = Vec::new();
    let mut base = 0;
    for d in domains() {
        let n = d.size();
        let (lo, hi) = (from.max(base), to.min(base + n));
        for i in lo..hi {
            let g = d.lock_index(i - base);
            for r in g.records() {
                if let Ok(cs) = g.contacts(r) {
                    out.extend(
                        cs.into_iter()
                            .filter(|c| c.is_valid(now) && c.cflags & flags == flags),
                    );
                }
            }
        }
        base += n;
        if base >= to {
            break;
        }
    }
    out
}

/// A whole expiry pass over every domain at `now` (and the write-back and DB expiry of
/// `db_mode` 2 and 3): what `timer_interval` steps of [`timer_tick`] add up to.
pub fn timer(now: i64) {
    for d in domains() {
        d.timer(now);
        if db::write_back() {
            db::sync_domain(d);
        }
        if db::db_only() {
            db::expire_db(d, now);
        }
    }
}

/// Shutdown (attendant, after the children are gone): write back what the last timer
/// pass did not (`db_mode` 2).
pub fn flush_to_db() {
    if db::write_back() {
        for d in domains() {
            db::sync_domain(d);
        }
    }
}

//! usrloc: the user-location table (OpenSER 1.2 `modules/usrloc`), kept in shared
//! memory so that every SIP worker sees the same bindings.
//!
//! Structure: [`UDomain`] ("table", e.g. `location`) → `2^hash_size` slots, each with
//! its own lock → records (one per AOR, doubly linked per slot) → contacts (linked
//! per record, ordered by q descending, or newest first with `desc_time_order`).
//! Everything below the domain handle is `#[repr(C)]` data in shm linked by
//! `ShmPtr`; all strings of a contact share one shm block.
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
//! AORs are compared and hashed ASCII case-insensitively unless
//! [`UsrlocParams::case_sensitive`] is set (OpenSER's registrar lowercases the AOR
//! unless its `case_sensitive` is set; here the table itself honours it). Contact
//! URIs and Call-IDs are compared byte for byte, as in OpenSER.
//!
//! The module descriptor (`modparam`s, the expiry timer, statistics) is in
//! [`module`]; `db_mode` 1 (write-through), 2 (write-back) — both with the table loaded
//! at start-up — and 3 (DB only) are in [`db`].

use std::fmt;
use std::sync::{Mutex, RwLock};

mod db;
mod hslot;
pub mod mi;
pub mod module;
mod shmref;
mod ucontact;
mod udomain;
mod urecord;

#[cfg(test)]
mod tests;

pub use hslot::ul_hash;
pub use module::EXPORTS;
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
    /// log2 of the slot count; ≤ 1 means 9 (512 slots).
    pub hash_size: u32,
    /// Branch flag meaning "contact is behind NAT"; -1 = not set.
    pub nat_bflag: i32,
    /// Compare/hash AORs byte for byte (default: ASCII case-insensitive).
    pub case_sensitive: bool,
    pub columns: ColumnNames,
}

impl Default for UsrlocParams {
    fn default() -> Self {
        UsrlocParams {
            db_url: "mysql://openser:openserrw@localhost/openser".to_owned(),
            db_mode: 0,
            timer_interval: 60,
            use_domain: false,
            desc_time_order: false,
            matching_mode: 0,
            cseq_delay: 20,
            fetch_rows: 2000,
            hash_size: 9,
            nat_bflag: -1,
            case_sensitive: false,
            columns: ColumnNames::default(),
        }
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

static PARAMS: RwLock<Option<UsrlocParams>> = RwLock::new(None);

/// Set the module parameters (module framework, before the first domain is
/// registered). Domains keep the switches they were created with.
pub fn set_params(p: UsrlocParams) {
    if let Ok(mut g) = PARAMS.write() {
        *g = Some(p);
    }
}

/// The current module parameters (defaults if never set).
pub fn params() -> UsrlocParams {
    PARAMS
        .read()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default()
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

static CALLBACKS: RwLock<Vec<(u32, UlCallback)>> = RwLock::new(Vec::new());

/// Register a callback for the kinds in `mask` (OR of [`UlCbType`] values); call
/// before fork (mod_init).
pub fn register_ulcb(mask: u32, f: UlCallback) {
    if let Ok(mut v) = CALLBACKS.write() {
        v.push((mask, f));
    }
}

fn has_callbacks(kind: UlCbType) -> bool {
    CALLBACKS
        .read()
        .is_ok_and(|v| v.iter().any(|(m, _)| m & kind as u32 != 0))
}

fn run_callbacks(kind: UlCbType, domain: &str, aor: &[u8], ci: &ContactInfo) {
    if let Ok(v) = CALLBACKS.read() {
        for (m, f) in v.iter() {
            if m & kind as u32 != 0 {
                f(kind, domain, aor, ci);
            }
        }
    }
}

static DOMAINS: Mutex<Vec<&'static UDomain>> = Mutex::new(Vec::new());

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
    let mut doms = DOMAINS.lock().map_err(|_| UlError::NotFound)?;
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
        let now = crate::modules::registrar::now();
        let n = db::preload(d, &p, now)?;
        crate::log_info!("INFO:usrloc: loaded {n} contact(s) of table {name} from the database");
    }
    Ok(d)
}

pub fn find_domain(name: &str) -> Option<&'static UDomain> {
    DOMAINS
        .lock()
        .ok()
        .and_then(|d| d.iter().find(|d| d.name() == name).copied())
}

/// All registered domains, in registration order.
pub fn domains() -> Vec<&'static UDomain> {
    DOMAINS.lock().map(|d| d.clone()).unwrap_or_default()
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

/// The usrloc timer (every `timer_interval` s in the timer process): expire contacts
/// of every domain at `now` (unix seconds).
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

//! Remote registration (Kamailio 3.1's uac `uac_reg`; not in OpenSER 1.2): the server
//! registers accounts of its own to upstream registrars, from a database table, keeps
//! them registered, and routes the calls that come back for them.
//!
//! Records (`reg_db_table`, default `uacreg`): `l_uuid` (the user part of our Contact,
//! unique), `l_username`/`l_domain` (the local user calls are given to),
//! `r_username`/`r_domain` (the account upstream: From/To `sip:r_username@r_domain`,
//! Request-URI `sip:r_domain`), `realm`, `auth_username`, `auth_password`,
//! `auth_proxy` (the next hop when set, else `r_domain`), `expires` (asked for;
//! 3600 when 0). Column names are parameters (`l_uuid_column`, …).
//!
//! State: the records' strings are one image in shared memory (`shm::SharedBlob`,
//! each process keeps a private copy, renewed when its generation changes); their
//! run-time state is a fixed array of [`RegSlot`]s (`#[repr(C)]` atomics) under one
//! lock, read and written only through the [`RegGuard`] helpers. The capacity is fixed
//! at start-up: twice the rows read then, at least [`MIN_SLOTS`].
//!
//! The timer (every second, in the timer process) sends a REGISTER for every record
//! that is due, through tm as a local request: one Call-ID per record (its key and the
//! start-up time), CSeq raised for every request, `Contact: <sip:l_uuid@reg_contact_addr>`
//! and `Expires`. Nothing is sent under the lock: due records are marked under it, the
//! requests go out after. The completion callback (in the receiver that got the final
//! reply, or the timer process for a 408):
//! * 2xx: registered, for the expiry our Contact has in the reply (its `expires`
//!   parameter, else the `Expires` header, else what we asked for); the refresh is
//!   due after `max(expires − reg_timer_interval, expires / 2)` seconds.
//! * 401/407 to a request without credentials: the digest answer (`auth.rs`) with
//!   `auth_username`/`auth_password` (a set `realm` must match the challenge's), sent
//!   once with the next CSeq. A refresh starts again without credentials, so every
//!   refresh gets its own challenge (no nonce is kept).
//! * anything else — a second 401/407, 403, a timeout — fails the record; it is tried
//!   again after `reg_retry_interval` seconds (0, the default as in Kamailio: not
//!   before `uac.reg_refresh`).
//!
//! A request waiting for its reply longer than [`WAIT_REPLY`] seconds (its callback was
//! lost with a dead process) is sent again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{PvParam, PvSpec};
use openser_core::db::DbConn;
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{FixedArg, IntParam, StrParam};
use openser_core::parser::SipMsg;
use openser_core::script::interp::Lhs;
use openser_core::script::{Ctx, PvValue};
use shm::{FastLock, FastLockGuard, SharedBlob};

use crate::auth;
use crate::reg_shm::RegSlot;

/// Slot states (shown by `uac.reg_dump`).
pub const ST_NEW: u32 = 0;
pub const ST_SENT: u32 = 1;
pub const ST_AUTH: u32 = 2;
pub const ST_REGISTERED: u32 = 3;
pub const ST_FAILED: u32 = 4;

/// The fewest slots the table has.
pub const MIN_SLOTS: usize = 1024;
/// Seconds a sent REGISTER may wait for its callback before it is sent again.
pub const WAIT_REPLY: u64 = 60;
/// `expires` asked for when a record's column is 0.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// The string columns, in this order in [`Record::f`].
pub const F_L_UUID: usize = 0;
pub const F_L_USERNAME: usize = 1;
pub const F_L_DOMAIN: usize = 2;
pub const F_R_USERNAME: usize = 3;
pub const F_R_DOMAIN: usize = 4;
pub const F_REALM: usize = 5;
pub const F_AUTH_USERNAME: usize = 6;
pub const F_AUTH_PASSWORD: usize = 7;
pub const F_AUTH_PROXY: usize = 8;
pub const NF: usize = 9;

/// The parameters of remote registration (Kamailio's names and defaults).
pub struct RegParams {
    pub db_url: StrParam,
    pub table: StrParam,
    pub contact_addr: StrParam,
    pub timer_interval: IntParam,
    pub retry_interval: IntParam,
    /// the column names: the [`NF`] string columns, then `expires`
    pub cols: [StrParam; NF + 1],
}

pub static RP: RegParams = RegParams {
    db_url: StrParam::new(""),
    table: StrParam::new("uacreg"),
    contact_addr: StrParam::new(""),
    timer_interval: IntParam::new(90),
    retry_interval: IntParam::new(0),
    cols: [
        StrParam::new("l_uuid"),
        StrParam::new("l_username"),
        StrParam::new("l_domain"),
        StrParam::new("r_username"),
        StrParam::new("r_domain"),
        StrParam::new("realm"),
        StrParam::new("auth_username"),
        StrParam::new("auth_password"),
        StrParam::new("auth_proxy"),
        StrParam::new("expires"),
    ],
};

/// One record of the table (private copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub f: [String; NF],
    /// asked for, seconds (0: [`DEFAULT_EXPIRES`])
    pub expires: u32,
    /// its slot in the shared table
    pub slot: u32,
}

impl Record {
    pub fn uuid(&self) -> &str {
        &self.f[F_L_UUID]
    }
    pub fn key(&self) -> u64 {
        key_of(self.uuid())
    }
    pub fn asked(&self) -> u32 {
        if self.expires == 0 {
            DEFAULT_EXPIRES
        } else {
            self.expires
        }
    }
}

/// The slot key of an `l_uuid` (FNV-1a, never 0).
pub fn key_of(uuid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in uuid.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

// ---------------------------------------------------------------- the image

fn put(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

pub fn encode(recs: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + recs.len() * 128);
    out.extend_from_slice(&(recs.len() as u32).to_le_bytes());
    for r in recs {
        for f in &r.f {
            put(&mut out, f.as_bytes());
        }
        out.extend_from_slice(&r.expires.to_le_bytes());
        out.extend_from_slice(&r.slot.to_le_bytes());
    }
    out
}

/// The records of an image (empty for a damaged one).
pub fn decode(b: &[u8]) -> Vec<Record> {
    fn u32_at(b: &[u8], at: &mut usize) -> Option<u32> {
        let v = b.get(*at..*at + 4)?;
        *at += 4;
        Some(u32::from_le_bytes(v.try_into().ok()?))
    }
    fn all(b: &[u8]) -> Option<Vec<Record>> {
        let mut at = 0;
        let n = u32_at(b, &mut at)? as usize;
        let mut out = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let mut r = Record::default();
            for f in &mut r.f {
                let len = u32_at(b, &mut at)? as usize;
                let s = b.get(at..at.checked_add(len)?)?;
                *f = String::from_utf8_lossy(s).into_owned();
                at += len;
            }
            r.expires = u32_at(b, &mut at)?;
            r.slot = u32_at(b, &mut at)?;
            out.push(r);
        }
        Some(out)
    }
    all(b).unwrap_or_default()
}

// ---------------------------------------------------------------- the shared table

/// The shared table: slots, their lock, and the image of the records.
pub struct RegTable {
    lock: &'static FastLock,
    slots: &'static [RegSlot],
    image: &'static SharedBlob,
}

static TABLE: OnceLock<RegTable> = OnceLock::new();
/// Wall-clock seconds at start-up (part of every Call-ID: a restart starts new ones).
static BOOT: OnceLock<u64> = OnceLock::new();
/// The tm completion callback id.
static CB: OnceLock<u32> = OnceLock::new();

thread_local! {
    /// This process's copy of the records and the generation it was taken at.
    static LOCAL: RefCell<(u64, Vec<Record>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

impl RegTable {
    fn new(n: usize) -> Option<RegTable> {
        Some(RegTable {
            lock: shm::alloc_static(FastLock::new())?,
            slots: shm::alloc_static_slice_with(n, |_| RegSlot::default())?,
            image: SharedBlob::new_static("uac_reg records")?,
        })
    }

    /// The table under its lock.
    pub fn lock(&self) -> RegGuard<'_> {
        RegGuard {
            slots: self.slots,
            _g: self.lock.lock(),
        }
    }
}

/// The slots under the table lock: the only way to read or write them.
pub struct RegGuard<'t> {
    slots: &'t [RegSlot],
    _g: FastLockGuard<'t>,
}

/// One slot's state as read under the lock (private copy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotInfo {
    pub key: u64,
    pub serial: u32,
    pub state: u32,
    pub cseq: u32,
    pub expires: u32,
    pub last_code: u32,
    pub due: u64,
    pub since: u64,
}

impl RegGuard<'_> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    fn slot(&self, i: usize) -> Option<&RegSlot> {
        self.slots.get(i)
    }
    pub fn key(&self, i: usize) -> u64 {
        self.slot(i).map_or(0, |s| s.key.load(Relaxed))
    }
    pub fn info(&self, i: usize) -> SlotInfo {
        let Some(s) = self.slot(i) else {
            return SlotInfo::default();
        };
        SlotInfo {
            key: s.key.load(Relaxed),
            serial: s.serial.load(Relaxed),
            state: s.state.load(Relaxed),
            cseq: s.cseq.load(Relaxed),
            expires: s.expires.load(Relaxed),
            last_code: s.last_code.load(Relaxed),
            due: s.due.load(Relaxed),
            since: s.since.load(Relaxed),
        }
    }
    /// Give free slot `i` to the record of `key`: new, due now.
    pub fn take(&self, i: usize, key: u64, now: u64) {
        if let Some(s) = self.slot(i) {
            s.serial.fetch_add(1, Relaxed);
            s.state.store(ST_NEW, Relaxed);
            s.cseq.store(0, Relaxed);
            s.expires.store(0, Relaxed);
            s.last_code.store(0, Relaxed);
            s.since.store(0, Relaxed);
            s.due.store(now, Relaxed);
            s.key.store(key, Relaxed);
        }
    }
    /// Slot `i` is free again.
    pub fn release(&self, i: usize) {
        if let Some(s) = self.slot(i) {
            s.key.store(0, Relaxed);
            s.due.store(u64::MAX, Relaxed);
        }
    }
    /// A REGISTER goes out for slot `i` (`auth`: with credentials): the next CSeq,
    /// which is returned.
    pub fn mark_sent(&self, i: usize, auth: bool, now: u64) -> u32 {
        let Some(s) = self.slot(i) else { return 0 };
        let c = s.cseq.load(Relaxed).wrapping_add(1).max(1);
        s.cseq.store(c, Relaxed);
        s.state.store(if auth { ST_AUTH } else { ST_SENT }, Relaxed);
        s.due.store(now + WAIT_REPLY, Relaxed);
        c
    }
    /// Slot `i` got a 2xx granting `expires` seconds; the refresh is due `refresh_in`
    /// seconds from now.
    pub fn mark_registered(&self, i: usize, expires: u32, refresh_in: u64, now: u64) {
        if let Some(s) = self.slot(i) {
            s.state.store(ST_REGISTERED, Relaxed);
            s.expires.store(expires, Relaxed);
            s.since.store(now, Relaxed);
            s.due.store(now + refresh_in, Relaxed);
        }
    }
    /// Slot `i` failed; tried again `retry` seconds from now (0: not by the timer).
    pub fn mark_failed(&self, i: usize, retry: u64, now: u64) {
        if let Some(s) = self.slot(i) {
            s.state.store(ST_FAILED, Relaxed);
            s.expires.store(0, Relaxed);
            s.due
                .store(if retry == 0 { u64::MAX } else { now + retry }, Relaxed);
        }
    }
    pub fn set_last_code(&self, i: usize, code: u16) {
        if let Some(s) = self.slot(i) {
            s.last_code.store(u32::from(code), Relaxed);
        }
    }
    /// Slot `i` is due now (a refresh asked by MI).
    pub fn make_due(&self, i: usize, now: u64) {
        if let Some(s) = self.slot(i) {
            s.due.store(now, Relaxed);
        }
    }
}

pub fn state_name(st: u32) -> &'static str {
    match st {
        ST_NEW => "new",
        ST_SENT => "registering",
        ST_AUTH => "authenticating",
        ST_REGISTERED => "registered",
        ST_FAILED => "failed",
        _ => "unknown",
    }
}

/// Repair hook: a process died holding the table lock. A slot may be half updated:
/// every record in use is made new and due now (one more REGISTER each, never a lost
/// registration). Keys are written last by [`RegGuard::take`] and are kept.
fn repair(_lock: usize, g: FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TABLE.get().ok_or("uac: no uac_reg table")?;
    let now = now();
    let mut n = 0;
    for s in t.slots {
        if s.key.load(Relaxed) != 0 {
            s.state.store(ST_NEW, Relaxed);
            s.due.store(now, Relaxed);
            n += 1;
        }
    }
    drop(g);
    Ok(if n == 0 {
        Vec::new()
    } else {
        vec![format!("uac_reg: {n} records re-registered")]
    })
}

fn now() -> u64 {
    openser_core::clock::now().max(0) as u64
}

/// Run `f` on this process's current copy of the records.
fn with_records<T>(f: impl FnOnce(&[Record]) -> T) -> Option<T> {
    let t = TABLE.get()?;
    let g = t.image.generation();
    Some(LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != g {
            let (g, bytes) = t.image.read();
            *l = (g, decode(&bytes));
        }
        f(&l.1)
    }))
}

fn record_of_slot(slot: usize) -> Option<Record> {
    with_records(|rs| rs.iter().find(|r| r.slot as usize == slot).cloned()).flatten()
}

// ---------------------------------------------------------------- loading

/// Read the records of the table.
pub fn load(conn: &mut dyn DbConn) -> Result<Vec<Record>, String> {
    let table = RP.table.get();
    let cols: Vec<&str> = RP.cols.iter().map(|c| c.get()).collect();
    let rows = conn
        .query(table, &[], &cols, None)
        .map_err(|e| format!("table {table}: {e}"))?;
    let mut out: Vec<Record> = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut r = Record::default();
        for (i, f) in r.f.iter_mut().enumerate() {
            *f = row
                .get(i)
                .and_then(|v| v.as_str())
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
        }
        r.expires = row
            .get(NF)
            .and_then(|v| v.as_int())
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32;
        if r.uuid().is_empty() || r.f[F_R_USERNAME].is_empty() || r.f[F_R_DOMAIN].is_empty() {
            openser_core::log_err!(
                "uac_reg: record {:?} skipped: l_uuid, r_username and r_domain are required",
                r.uuid()
            );
            continue;
        }
        if out.iter().any(|o| o.uuid() == r.uuid()) {
            openser_core::log_err!("uac_reg: duplicate l_uuid {:?} skipped", r.uuid());
            continue;
        }
        out.push(r);
    }
    Ok(out)
}

/// Give the records their slots (kept for a record already in the table, a free one
/// for a new record; records no longer in the table free theirs) and publish them.
/// Records beyond the table's capacity are dropped with an error. Returns how many
/// records are in the table.
fn publish(t: &RegTable, mut recs: Vec<Record>) -> Result<usize, String> {
    let now = now();
    let mut kept = Vec::with_capacity(recs.len());
    {
        let g = t.lock();
        let mut by_key: HashMap<u64, usize> = HashMap::new();
        for i in 0..g.len() {
            let k = g.key(i);
            if k != 0 {
                by_key.insert(k, i);
            }
        }
        let wanted: std::collections::HashSet<u64> = recs.iter().map(Record::key).collect();
        for (k, i) in &by_key {
            if !wanted.contains(k) {
                g.release(*i);
            }
        }
        let mut free = (0..g.len()).filter(|&i| g.key(i) == 0);
        for mut r in recs.drain(..) {
            let slot = match by_key.get(&r.key()) {
                Some(&i) => i,
                None => match free.next() {
                    Some(i) => {
                        g.take(i, r.key(), now);
                        i
                    }
                    None => {
                        openser_core::log_err!(
                            "uac_reg: no free slot for record {:?} ({} records at most)",
                            r.uuid(),
                            g.len()
                        );
                        continue;
                    }
                },
            };
            r.slot = slot as u32;
            kept.push(r);
        }
    }
    if !t.image.replace(&encode(&kept)) {
        return Err("out of shared memory".into());
    }
    Ok(kept.len())
}

/// mod_init's part: nothing when `reg_db_url` is not set.
pub fn init() -> Result<(), String> {
    let url = RP.db_url.get();
    if url.is_empty() {
        return Ok(());
    }
    let addr = RP.contact_addr.get().trim();
    if addr.is_empty() {
        return Err("uac: reg_contact_addr is required with reg_db_url".into());
    }
    if RP.timer_interval.get() < 0 || RP.retry_interval.get() < 0 {
        return Err("uac: reg_timer_interval and reg_retry_interval cannot be negative".into());
    }
    openser_core::db::check_url(url).map_err(|e| format!("uac: {e}"))?;
    // a connection of the attendant's own, closed before it forks
    let mut conn = openser_core::db::connect(url)
        .map_err(|e| format!("uac: can't connect to the database: {e}"))?;
    let recs = load(conn.as_mut()).map_err(|e| format!("uac: loading uac_reg records: {e}"))?;
    drop(conn);
    let n = (recs.len() * 2).max(MIN_SLOTS);
    let t = RegTable::new(n).ok_or("uac: no shared memory for the uac_reg table")?;
    let _ = BOOT.set(now());
    let _ = CB.set(tm::uac::register_callback(on_done));
    let n = publish(&t, recs).map_err(|e| format!("uac: uac_reg records: {e}"))?;
    let lock_addr = std::ptr::from_ref(t.lock) as usize;
    if TABLE.set(t).is_ok() {
        shm::register_repair(lock_addr, size_of::<FastLock>(), "uac_reg table", repair);
    }
    openser_core::log_info!("uac_reg: {n} records loaded from {}", RP.table.get());
    Ok(())
}

// ---------------------------------------------------------------- sending

/// When a registration of `expires` seconds is refreshed: `reg_timer_interval`
/// before it ends, but not before half of it.
pub fn refresh_in(expires: u32, timer_interval: u64) -> u64 {
    let e = u64::from(expires);
    e.saturating_sub(timer_interval).max(e / 2).max(1)
}

fn callid(r: &Record) -> String {
    format!(
        "{:016x}.{:x}@uac_reg",
        r.key(),
        BOOT.get().copied().unwrap_or(0)
    )
}

fn ruri(r: &Record) -> String {
    format!("sip:{}", r.f[F_R_DOMAIN])
}

/// Our Contact URI for a record.
pub fn contact_uri(r: &Record) -> String {
    format!("sip:{}@{}", r.uuid(), RP.contact_addr.get().trim())
}

/// Send a REGISTER for `r` (slot `serial`, CSeq `cseq`), with a credentials line.
fn send_register(r: &Record, serial: u32, cseq: u32, auth_line: &str) -> Result<(), String> {
    let aor = format!("sip:{}@{}", r.f[F_R_USERNAME], r.f[F_R_DOMAIN]);
    let proxy = &r.f[F_AUTH_PROXY];
    let dst = if proxy.is_empty() {
        None
    } else if proxy.starts_with("sip:") || proxy.starts_with("sips:") {
        Some(proxy.clone())
    } else {
        Some(format!("sip:{proxy}"))
    };
    let headers = format!(
        "Contact: <{}>\r\nExpires: {}\r\n{auth_line}",
        contact_uri(r),
        r.asked()
    );
    let ruri = ruri(r);
    let cid = callid(r);
    let cb = *CB.get().ok_or("no callback")?;
    let req = tm::uac::LocalRequest {
        method: "REGISTER",
        ruri: &ruri,
        from: &aor,
        to: &aor,
        dst: dst.as_deref(),
        headers: &headers,
        callback: Some((cb, (u64::from(serial) << 32) | u64::from(r.slot))),
        callid: Some(&cid),
        cseq: Some(cseq),
        ..Default::default()
    };
    tm::uac::send_request(&req)
}

/// A send failed: the record fails (retried later as any failure).
fn send_failed(slot: usize, serial: u32, e: &str) {
    openser_core::log_err!("uac_reg: sending REGISTER failed: {e}");
    let Some(t) = TABLE.get() else { return };
    let g = t.lock();
    if g.info(slot).serial == serial {
        g.mark_failed(slot, retry_interval(), now());
    }
}

fn retry_interval() -> u64 {
    RP.retry_interval.get().max(0) as u64
}

/// The timer (every second): send the REGISTERs that are due.
pub fn timer(_ticks: u64) {
    let Some(t) = TABLE.get() else { return };
    let Some(recs) = with_records(<[Record]>::to_vec) else {
        return;
    };
    let now = now();
    let mut jobs = Vec::new();
    {
        let g = t.lock();
        for r in &recs {
            let i = r.slot as usize;
            let s = g.info(i);
            if s.key != r.key() || s.due > now {
                continue;
            }
            let cseq = g.mark_sent(i, false, now);
            jobs.push((i, s.serial, cseq));
        }
    }
    for (i, serial, cseq) in jobs {
        let Some(r) = recs.iter().find(|r| r.slot as usize == i) else {
            continue;
        };
        if let Err(e) = send_register(r, serial, cseq, "") {
            send_failed(i, serial, &e);
        }
    }
}

/// The expiry our Contact got in a 2xx: its `expires` parameter, the `Expires`
/// header, or what we asked for.
pub fn granted(reply: &SipMsg, ours: &str, asked: u32) -> u32 {
    let same = |u: &str| {
        let u = u.trim();
        u.eq_ignore_ascii_case(ours)
            || u.split(';')
                .next()
                .is_some_and(|b| b.eq_ignore_ascii_case(ours))
    };
    if let Ok(list) = reply.contacts() {
        for c in &list.contacts {
            if same(reply.s(c.uri))
                && let Some(e) = c.expires
                && let Ok(v) = reply.s(e).trim().parse::<u32>()
            {
                return if v == 0 { asked } else { v };
            }
        }
    }
    match reply.expires() {
        Ok(Some(v)) if v > 0 => v,
        _ => asked,
    }
}

/// The credentials line answering the challenge of a 401/407 for record `r`.
fn answer(code: u16, reply: &SipMsg, r: &Record) -> Result<String, String> {
    let name = if code == 407 {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    let realm = &r.f[F_REALM];
    let mut why = format!("no {name} header");
    for v in reply.headers_by_name(name) {
        let Some(ch) = auth::Challenge::from_header(v.as_bytes()) else {
            why = "unreadable challenge".into();
            continue;
        };
        if let Err(e) = ch.supported() {
            why = e;
            continue;
        }
        if !realm.is_empty() && !realm.eq_ignore_ascii_case(&ch.realm) {
            why = format!("challenge for realm {:?}, record has {realm:?}", ch.realm);
            continue;
        }
        let cred = auth::Credential {
            user: r.f[F_AUTH_USERNAME].clone(),
            realm: ch.realm.clone(),
            password: r.f[F_AUTH_PASSWORD].clone(),
        };
        return Ok(auth::credentials_header(
            code,
            &cred,
            &ch,
            "REGISTER",
            &ruri(r),
            &auth::new_cnonce(),
        ));
    }
    Err(why)
}

/// What the callback does once the lock is released.
enum Next {
    Nothing,
    Auth(u32),
}

/// tm's completion callback of a REGISTER.
fn on_done(d: &tm::uac::UacDone) {
    let slot = (d.param & 0xffff_ffff) as usize;
    let serial = (d.param >> 32) as u32;
    let Some(t) = TABLE.get() else { return };
    let Some(r) = record_of_slot(slot) else {
        return;
    };
    let reply = d.reply.as_deref().and_then(|b| SipMsg::parse(b).ok());
    let rcseq = reply.as_ref().and_then(|m| m.cseq().ok().map(|c| c.num));
    let now = now();
    let next = {
        let g = t.lock();
        let s = g.info(slot);
        if s.serial != serial || s.key != r.key() || !matches!(s.state, ST_SENT | ST_AUTH) {
            return;
        }
        if rcseq.is_some_and(|c| c != s.cseq) {
            return; // the reply to an older request
        }
        g.set_last_code(slot, d.code);
        match (d.code, &reply) {
            (200..=299, Some(m)) => {
                let e = granted(m, &contact_uri(&r), r.asked());
                let tiv = RP.timer_interval.get().max(0) as u64;
                g.mark_registered(slot, e, refresh_in(e, tiv), now);
                Next::Nothing
            }
            (401 | 407, Some(_)) if s.state == ST_SENT && !r.f[F_AUTH_USERNAME].is_empty() => {
                Next::Auth(g.mark_sent(slot, true, now))
            }
            _ => {
                g.mark_failed(slot, retry_interval(), now);
                Next::Nothing
            }
        }
    };
    match next {
        Next::Nothing => {
            if !(200..300).contains(&d.code) {
                openser_core::log_err!(
                    "uac_reg: registration of {:?} failed with {}",
                    r.uuid(),
                    d.code
                );
            }
        }
        Next::Auth(cseq) => {
            let Some(m) = reply.as_ref() else { return };
            let sent = answer(d.code, m, &r)
                .map_err(|e| format!("cannot answer the {} for {:?}: {e}", d.code, r.uuid()))
                .and_then(|line| send_register(&r, serial, cseq, &line));
            if let Err(e) = sent {
                send_failed(slot, serial, &e);
            }
        }
    }
}

// ---------------------------------------------------------------- uac_reg_lookup

/// `uac_reg_lookup(uuid, dst)`: check the destination is writable.
pub fn fixup_lookup(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = openser_core::script::fixup::default_fixup(&args[..1])?;
    let t = match &args[1].value {
        openser_core::cfg::ast::ArgValue::Str(s) => s.trim().to_string(),
        _ => return Err("uac_reg_lookup: the destination must be a variable".into()),
    };
    let (spec, n) = openser_core::cfg::pv::parse_pv(&t)?;
    if n != t.len() || lhs_of(&spec).is_none() {
        return Err(format!("uac_reg_lookup: '{t}' cannot be written to"));
    }
    out.push(FixedArg::Pv(spec));
    Ok(out)
}

fn lhs_of(spec: &PvSpec) -> Option<Lhs> {
    match (spec.name.as_str(), &spec.param) {
        ("ru", _) => Some(Lhs::Ru),
        ("du", _) => Some(Lhs::Du),
        ("var", Some(PvParam::Name(n))) => Some(Lhs::Var(n.clone())),
        (n, _) if openser_core::cfg::pv::is_avp_name(n) => Some(Lhs::Avp(spec.clone())),
        _ => None,
    }
}

/// The local user's URI for `uuid`: the record of that `l_uuid`, or, given a SIP URI,
/// the record of its user as `r_username`.
pub fn lookup(recs: &[Record], uuid: &str) -> Option<String> {
    let uuid = uuid.trim();
    let r = if let Some(rest) = uuid
        .strip_prefix("sip:")
        .or_else(|| uuid.strip_prefix("sips:"))
    {
        let user = rest.split('@').next().unwrap_or("");
        recs.iter()
            .find(|r| rest.contains('@') && r.f[F_R_USERNAME] == user)
    } else {
        recs.iter().find(|r| r.uuid() == uuid)
    }?;
    Some(format!("sip:{}@{}", r.f[F_L_USERNAME], r.f[F_L_DOMAIN]))
}

pub fn cmd_lookup(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let [u, FixedArg::Pv(spec)] = args else {
        return -1;
    };
    let uuid = ctx.arg_str(u);
    let Some(Some(uri)) = with_records(|rs| lookup(rs, &uuid)) else {
        return -1;
    };
    let Some(lhs) = lhs_of(spec) else { return -1 };
    if openser_core::script::pv::assign(ctx, &lhs, PvValue::Str(uri)) > 0 {
        1
    } else {
        -1
    }
}

// ---------------------------------------------------------------- MI

fn record_node(r: &Record, s: &SlotInfo, now: u64) -> MiNode {
    let names = [
        "l_uuid",
        "l_username",
        "l_domain",
        "r_username",
        "r_domain",
        "realm",
        "auth_username",
        "auth_password",
        "auth_proxy",
    ];
    let mut n = MiNode::new("record", "");
    for (i, name) in names.iter().enumerate() {
        if i == F_AUTH_PASSWORD {
            continue; // not shown
        }
        n = n.attr(name, r.f[i].as_str());
    }
    let left = if s.state == ST_REGISTERED {
        (s.since + u64::from(s.expires)).saturating_sub(now)
    } else {
        0
    };
    n.attr("expires", r.asked().to_string())
        .attr("state", state_name(s.state))
        .attr("granted", s.expires.to_string())
        .attr("left", left.to_string())
        .attr("last_code", s.last_code.to_string())
        .attr("cseq", s.cseq.to_string())
        .attr(
            "next",
            if s.due == u64::MAX {
                "never".to_string()
            } else {
                s.due.saturating_sub(now).to_string()
            },
        )
}

fn dump(only: Option<&str>) -> MiReply {
    let Some(t) = TABLE.get() else {
        return MiReply::err(500, "uac_reg not enabled (reg_db_url)");
    };
    let Some(recs) = with_records(<[Record]>::to_vec) else {
        return MiReply::err(500, "uac_reg not enabled (reg_db_url)");
    };
    let now = now();
    let infos: Vec<SlotInfo> = {
        let g = t.lock();
        recs.iter().map(|r| g.info(r.slot as usize)).collect()
    };
    let nodes: Vec<MiNode> = recs
        .iter()
        .zip(&infos)
        .filter(|(r, _)| only.is_none_or(|u| r.uuid() == u))
        .map(|(r, s)| record_node(r, s, now))
        .collect();
    if only.is_some() && nodes.is_empty() {
        return MiReply::err(404, "Record not found");
    }
    MiReply::ok(nodes)
}

/// MI `uac.reg_dump` (alias `uac_reg_dump`): every record and its state.
pub fn mi_dump(_args: &[MiArg]) -> MiReply {
    dump(None)
}

/// MI `uac.reg_info l_uuid value` (or `uac.reg_info value`): one record.
pub fn mi_info(args: &[MiArg]) -> MiReply {
    let v: Vec<&str> = args.iter().map(|a| a.value.trim()).collect();
    match v.as_slice() {
        ["l_uuid", u] | [u] => dump(Some(u)),
        _ => MiReply::err(400, "Too few or too many arguments (l_uuid value)"),
    }
}

/// MI `uac.reg_refresh`: re-read the table (new records are registered, records gone
/// from it are dropped — not unregistered, their registrations upstream lapse). With
/// an `l_uuid`: register that record again now.
pub fn mi_refresh(args: &[MiArg]) -> MiReply {
    let Some(t) = TABLE.get() else {
        return MiReply::err(500, "uac_reg not enabled (reg_db_url)");
    };
    if let Some(u) = args
        .first()
        .map(|a| a.value.trim())
        .filter(|u| !u.is_empty())
    {
        let Some(Some(slot)) = with_records(|rs| rs.iter().find(|r| r.uuid() == u).map(|r| r.slot))
        else {
            return MiReply::err(404, "Record not found");
        };
        let g = t.lock();
        if g.key(slot as usize) == key_of(u) {
            g.make_due(slot as usize, now());
        }
        return MiReply::ok(Vec::new());
    }
    match openser_core::db::with_conn(RP.db_url.get(), |c| load(c).and_then(|r| publish(t, r))) {
        Ok(Ok(n)) => MiReply::ok(vec![MiNode::new("records", n.to_string())]),
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("uac_reg: reload failed: {e}");
            MiReply::err(500, "Reload failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uuid: &str, slot: u32) -> Record {
        let mut r = Record {
            slot,
            expires: 60,
            ..Record::default()
        };
        r.f[F_L_UUID] = uuid.into();
        r.f[F_L_USERNAME] = "alice".into();
        r.f[F_L_DOMAIN] = "local.test".into();
        r.f[F_R_USERNAME] = "acc1".into();
        r.f[F_R_DOMAIN] = "up.test".into();
        r
    }

    #[test]
    fn image_round_trip_and_damage() {
        let rs = vec![rec("u1", 0), rec("ü2", 7)];
        let img = encode(&rs);
        assert_eq!(decode(&img), rs);
        assert!(decode(&img[..img.len() - 3]).is_empty());
        assert!(decode(&[]).is_empty());
        assert!(decode(&[255, 255, 255, 255]).is_empty());
    }

    #[test]
    fn refresh_time() {
        assert_eq!(refresh_in(3600, 90), 3510);
        assert_eq!(refresh_in(120, 90), 60);
        assert_eq!(refresh_in(5, 90), 2);
        assert_eq!(refresh_in(1, 90), 1);
        assert_eq!(refresh_in(0, 0), 1);
    }

    #[test]
    fn lookup_by_uuid_and_by_remote_uri() {
        let rs = vec![rec("u1", 0)];
        assert_eq!(lookup(&rs, "u1").as_deref(), Some("sip:alice@local.test"));
        assert_eq!(
            lookup(&rs, "sip:acc1@up.test").as_deref(),
            Some("sip:alice@local.test")
        );
        assert_eq!(lookup(&rs, "u2"), None);
        assert_eq!(lookup(&rs, "sip:acc1"), None);
    }

    #[test]
    fn granted_expiry() {
        let ours = "sip:u1@127.0.0.1:5060";
        let m = |hdrs: &str| {
            SipMsg::parse(
                format!(
                    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                     To: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n{hdrs}Content-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let r = m(
            "Contact: <sip:other@x>;expires=99, <sip:u1@127.0.0.1:5060>;expires=30\r\nExpires: 50\r\n",
        );
        assert_eq!(granted(&r, ours, 60), 30);
        let r = m("Contact: <sip:other@x>;expires=99\r\nExpires: 50\r\n");
        assert_eq!(granted(&r, ours, 60), 50);
        let r = m("");
        assert_eq!(granted(&r, ours, 60), 60);
    }

    #[test]
    fn slots_follow_the_records_across_reloads() {
        let _ = shm::init(8 << 20);
        let t = RegTable::new(2).unwrap();
        let image = |t: &RegTable| decode(&t.image.read().1);
        assert_eq!(publish(&t, vec![rec("a", 0), rec("b", 0)]), Ok(2));
        let recs = image(&t);
        let (a, b) = (recs[0].slot as usize, recs[1].slot as usize);
        assert_ne!(a, b);
        {
            let g = t.lock();
            assert_eq!(g.info(a).state, ST_NEW);
            assert!(g.info(a).due <= now());
            assert_eq!(g.mark_sent(a, false, 100), 1);
            assert_eq!(g.info(a).state, ST_SENT);
            assert_eq!(g.info(a).due, 100 + WAIT_REPLY);
            assert_eq!(g.mark_sent(a, true, 100), 2);
            assert_eq!(g.info(a).state, ST_AUTH);
            g.mark_registered(a, 60, refresh_in(60, 90), 100);
            let i = g.info(a);
            assert_eq!(
                (i.state, i.expires, i.since, i.due),
                (ST_REGISTERED, 60, 100, 130)
            );
            g.mark_failed(b, 0, 100);
            assert_eq!(g.info(b).due, u64::MAX);
            g.mark_failed(b, 30, 100);
            assert_eq!(g.info(b).due, 130);
        }
        // b goes, c and d come: a keeps its slot and state, c takes a free slot, d
        // finds none
        let serial_a = t.lock().info(a).serial;
        assert_eq!(
            publish(&t, vec![rec("a", 0), rec("c", 0), rec("d", 0)]),
            Ok(2)
        );
        let recs = image(&t);
        assert_eq!(
            recs.iter().map(|r| r.uuid()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(recs[0].slot as usize, a);
        let g = t.lock();
        let i = g.info(a);
        assert_eq!((i.state, i.serial, i.cseq), (ST_REGISTERED, serial_a, 2));
        let c = recs[1].slot as usize;
        assert_eq!((g.key(c), g.info(c).state), (key_of("c"), ST_NEW));
        let used: Vec<u64> = (0..g.len()).map(|i| g.key(i)).filter(|&k| k != 0).collect();
        assert_eq!(used.len(), 2);
        assert!(!used.contains(&key_of("b")));
    }

    #[test]
    fn keys_are_never_zero() {
        assert_ne!(key_of(""), 0);
        assert_ne!(key_of("a"), key_of("b"));
    }
}

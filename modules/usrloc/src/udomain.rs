//! Domains (usrloc "tables" such as `location`): an array of hash slots, each with its
//! own lock and list of records, plus per-domain statistics in shm.
//!
//! The [`UDomain`] handle itself lives in private memory: it is built in the attendant
//! before fork (domains are registered from module fixups) and is immutable after, so
//! every child inherits an identical copy pointing at the same shm objects.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use shm::{FastLockGuard, ShmPtr, ShmSafe};

use super::hslot::{Slot, SlotHead, aor_eq, ul_hash};
use super::shmref::{
    alloc, alloc_tailed, alloc_zeroed, dispose, forever, get, get_mut, slot_head, slot_lock,
    slot_prefetch_first,
};
use super::ucontact::ContactInfo;
use super::urecord::{RecordId, URecord};
use super::{UlCbType, UlError, UsrlocParams};

/// Per-domain statistics, in shm, updated under a slot lock.
#[repr(C)]
pub(super) struct DomainStats {
    users: AtomicU64,
    contacts: AtomicU64,
    expires: AtomicU64,
}

// SAFETY: #[repr(C)] atomics only.
#[allow(unsafe_code)]
unsafe impl ShmSafe for DomainStats {}

impl DomainStats {
    pub(super) fn contacts_inc(&self) {
        self.contacts.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn contacts_dec(&self) {
        let _ = self
            .contacts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
    fn users_inc(&self) {
        self.users.fetch_add(1, Ordering::Relaxed);
    }
    fn users_dec(&self) {
        let _ = self
            .users
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

/// A usrloc domain ("table").
pub struct UDomain {
    name: String,
    /// `nslots` slots (lock and list head), one shm array (zeroed: every lock free,
    /// every list empty).
    slots: ShmPtr<Slot>,
    /// A power of two.
    nslots: usize,
    /// Next slot of the amortised expiry walk (the timer process's; private memory).
    expiry_cursor: AtomicUsize,
    stats: &'static DomainStats,
    pub(super) desc_time_order: bool,
    pub(super) matching_mode: i32,
    pub(super) cseq_delay: i64,
    pub(super) case_sensitive: bool,
}

/// The lock of one slot, held: every record/contact operation goes through it.
///
/// With `db_mode` 1 or 3 a change queues its database write while the lock is held;
/// the writes go out after the unlock, in [`SlotGuard::unlock_then_flush`] (or
/// [`UDomain::with_slot`], which calls it), where the round trip is visible. Dropping
/// the guard only releases the lock; dropping it with writes queued is a bug, caught
/// by a debug assertion (and logged in release builds, where the writes stay queued
/// for this process's next flush).
#[must_use = "end the guard with unlock_then_flush() where it may have changed bindings"]
pub struct SlotGuard<'d> {
    dom: &'d UDomain,
    slot: usize,
    /// The record last found in this slot (saves re-walking the slot list to validate
    /// a `RecordId`; valid while the lock is held, cleared when that record is freed).
    pub(super) known: Cell<ShmPtr<URecord>>,
    /// A record of this slot that this guard left without contacts (created and not yet
    /// given one, or emptied): if it is still empty when the lock is released, the slot's
    /// `due` becomes 1 so the expiry walk frees it. Marking at once instead would send
    /// the walk into every slot that gained a user (registrar's `save` inserts a record,
    /// then its contact, under one guard) — a pass over each new record for nothing.
    empty: ShmPtr<URecord>,
    /// `None` only while dropping (released before queued DB writes go out).
    lock: Option<FastLockGuard<'d>>,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.release_lock();
        if super::db::has_pending() {
            debug_assert!(
                false,
                "usrloc: SlotGuard dropped with database writes queued"
            );
            openser_core::log_crit!("BUG: a usrloc slot was unlocked without writing its changes");
        }
    }
}

/// Slot count (log2) of a domain whose `hash_size` is 0: one slot per 4 KiB of the
/// shm segment (rounded down to a power of two), between 2^9 (1.2's default, 512) and
/// 2^20. With the default 32 MiB that is 8,192 slots (160 KiB); with `-m 1536`, 2^18
/// (8 MiB), so a million contacts make chains of four. A slot costs 32 bytes (its
/// lock and its list head, see [`Slot`]).
pub fn auto_hash_bits(shm_total: usize) -> u32 {
    let slots = (shm_total / 4096).max(1);
    (usize::BITS - 1 - slots.leading_zeros()).clamp(9, 20)
}

impl UDomain {
    /// Create a domain in shm with `2^hash_size` slots (0 = sized from the shm
    /// segment, see [`auto_hash_bits`]; 1 means 9, as before) and the behaviour switches of `params`: two
    /// allocations (statistics, the slot array). On shm exhaustion what
    /// was allocated is freed and `NoMemory` returned. (Domains live as long as the
    /// server.)
    pub fn new(name: &str, params: &UsrlocParams) -> Result<UDomain, UlError> {
        let bits = match params.hash_size {
            0 => auto_hash_bits(shm::stats().total),
            1 => 9,
            b => b.min(24),
        };
        let n = 1usize << bits;
        let stats = alloc(DomainStats {
            users: AtomicU64::new(0),
            contacts: AtomicU64::new(0),
            expires: AtomicU64::new(0),
        });
        let slots = stats.and_then(|_| alloc_zeroed::<Slot>(n));
        match (stats.and_then(forever), slots) {
            (Some(stats), Some(slots)) => Ok({
                super::repair::register(slots.as_ptr() as usize, n);
                UDomain {
                    name: name.to_owned(),
                    slots,
                    nslots: n,
                    expiry_cursor: AtomicUsize::new(0),
                    stats,
                    desc_time_order: params.desc_time_order,
                    matching_mode: params.matching_mode,
                    cseq_delay: params.cseq_delay,
                    case_sensitive: params.case_sensitive,
                }
            }),
            _ => {
                stats.into_iter().for_each(dispose);
                Err(UlError::NoMemory)
            }
        }
    }

    /// The domain's name (`location`, `aliases`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of hash slots.
    pub fn size(&self) -> usize {
        self.nslots
    }

    /// Index of the slot whose lock is at address `lock`, if it is one of this domain's.
    pub(super) fn slot_of_lock(&self, lock: usize) -> Option<usize> {
        let base = self.slots.as_ptr() as usize;
        let off = lock.checked_sub(base)?;
        let size = std::mem::size_of::<Slot>();
        (off.is_multiple_of(size) && off / size < self.nslots).then_some(off / size)
    }

    /// Slot index of an AOR.
    pub fn slot_of(&self, aor: &[u8]) -> usize {
        (ul_hash(aor, self.case_sensitive) as usize) & (self.nslots - 1)
    }

    /// Start loading the slot of `aor` into the cache without locking it: a caller that
    /// has lock-free work to do before [`UDomain::with_slot`] (the registrar parsing a
    /// REGISTER's contacts) calls this first, so in a table larger than the caches the
    /// slot's miss (and its page walk) overlaps that work instead of stalling the lock.
    /// Only a hint; it reads nothing.
    pub fn prefetch_slot(&self, aor: &[u8]) {
        slot_head(self.slots, self.nslots, self.slot_of(aor)).prefetch();
    }

    /// The second step after [`UDomain::prefetch_slot`] and some more lock-free work:
    /// read the slot's first-record link without the lock (the slot's line should have
    /// arrived by now) and start loading that record, which in a table of a million
    /// users is the AOR's own record most of the time. Only a hint, like the first step.
    pub fn prefetch_first_record(&self, aor: &[u8]) {
        slot_prefetch_first(self.slots, self.nslots, self.slot_of(aor));
    }

    /// Lock the slot of `aor` (OpenSER's `lock_udomain`). Do not block (DB, DNS, I/O)
    /// while holding it, and do not take a second usrloc slot lock.
    /// With `db_mode` 3 the AOR's bindings are first read again from the database
    /// (before the lock is taken).
    pub fn lock_slot(&self, aor: &[u8]) -> SlotGuard<'_> {
        if super::db::db_only() {
            super::db::refresh_aor(self, aor);
        }
        self.lock_index(self.slot_of(aor))
    }

    /// [`UDomain::lock_slot`] without the `db_mode` 3 refresh.
    pub(super) fn lock_slot_cached(&self, aor: &[u8]) -> SlotGuard<'_> {
        self.lock_index(self.slot_of(aor))
    }

    /// Lock slot `i` (masked into range), e.g. to walk the whole table slot by slot.
    pub fn lock_index(&self, i: usize) -> SlotGuard<'_> {
        let slot = i & (self.nslots - 1);
        SlotGuard {
            dom: self,
            slot,
            known: Cell::new(ShmPtr::null()),
            empty: ShmPtr::null(),
            lock: Some(slot_lock(self.slots, self.nslots, slot).lock()),
        }
    }

    pub(super) fn stats(&self) -> &'static DomainStats {
        self.stats
    }

    /// `usrloc:<domain>-users`: records in the domain.
    pub fn users(&self) -> u64 {
        self.stats.users.load(Ordering::Relaxed)
    }

    /// `usrloc:<domain>-contacts`: contacts in the domain.
    pub fn contacts(&self) -> u64 {
        self.stats.contacts.load(Ordering::Relaxed)
    }

    /// `usrloc:<domain>-expires`: contacts removed by the timer since start/reset.
    pub fn expires(&self) -> u64 {
        self.stats.expires.load(Ordering::Relaxed)
    }

    /// Reset `<domain>-expires` (the only resettable usrloc statistic).
    pub fn reset_expires(&self) {
        self.stats.expires.store(0, Ordering::Relaxed);
    }

    /// Snapshot of the contacts of `aor` (`None` if no record), taken under the slot
    /// lock, which is released before returning.
    pub fn get_contacts(&self, aor: &[u8]) -> Option<Vec<ContactInfo>> {
        let g = self.lock_slot(aor);
        let r = g.get_urecord(aor)?;
        g.contacts(r).ok()
    }

    /// Lock `aor`'s slot, run `f` on it, release the lock, then write the database
    /// changes `f` queued ([`SlotGuard::unlock_then_flush`]).
    pub fn with_slot<R>(&self, aor: &[u8], f: impl FnOnce(&mut SlotGuard<'_>) -> R) -> R {
        let mut g = self.lock_slot(aor);
        let r = f(&mut g);
        g.unlock_then_flush();
        r
    }

    /// Remove a whole record (`ul_rm`): false if there was none.
    pub fn delete_aor(&self, aor: &[u8]) -> bool {
        self.with_slot(aor, |g| match g.get_urecord(aor) {
            Some(r) => g.delete_urecord(r).is_ok(),
            None => false,
        })
    }

    /// Records per slot (for `ul_dump`'s `max_slot` and the spread test).
    pub fn slot_counts(&self) -> Vec<u32> {
        (0..self.size())
            .map(|i| {
                let g = self.lock_index(i);
                get(&g, g.head()).map_or(0, |h| h.n)
            })
            .collect()
    }

    /// Snapshot of every record: (AOR, contacts), one slot locked at a time.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<ContactInfo>)> {
        let mut out = Vec::new();
        for i in 0..self.size() {
            let g = self.lock_index(i);
            for r in g.records() {
                if let (Ok(aor), Ok(cs)) = (g.aor(r), g.contacts(r)) {
                    out.push((aor, cs));
                }
            }
        }
        out
    }

    /// Expiry pass (OpenSER's `timer_udomain`): in every slot, delete contacts with
    /// `expires != 0 && expires <= now` (EXPIRE callbacks, `-expires` statistic) and
    /// then records left without contacts. Each slot lock is held only for its slot.
    pub fn timer(&self, now: i64) {
        for i in 0..self.size() {
            let mut g = self.lock_index(i);
            g.expire_slot(now);
            g.unlock_then_flush();
        }
    }

    /// One step of the amortised expiry walk: the next `ceil(slots / rounds)` slots,
    /// so that `rounds` calls (one per second, `rounds` = `timer_interval`) cover the
    /// table once. The work per call is bounded whatever the table holds, and a contact
    /// is removed at most `timer_interval` seconds after it expired, as with a whole
    /// walk every `timer_interval` (OpenSER's).
    pub fn expire_step(&self, now: i64, rounds: usize) {
        let n = self.size();
        let batch = n.div_ceil(rounds.max(1));
        let start = self.expiry_cursor.load(Ordering::Relaxed);
        for k in 0..batch.min(n) {
            let mut g = self.lock_index(start + k);
            if g.due_at(now) {
                g.expire_slot(now);
            }
            g.unlock_then_flush();
        }
        self.expiry_cursor
            .store((start + batch) & (n - 1), Ordering::Relaxed);
    }
}

impl SlotGuard<'static> {
    /// The guard of slot `slot` of `dom` whose lock the attendant took over from a dead
    /// process (`shm::repair_dead`), to check and repair the slot.
    pub(super) fn taken_over(
        dom: &'static UDomain,
        slot: usize,
        held: FastLockGuard<'static>,
    ) -> SlotGuard<'static> {
        SlotGuard {
            dom,
            slot,
            known: Cell::new(ShmPtr::null()),
            empty: ShmPtr::null(),
            lock: Some(held),
        }
    }
}

/// Whether `p` can be followed: inside the shm segment and aligned (a repair walk must
/// never follow a pointer a dead process left half-written out of the segment).
fn plausible<T>(p: ShmPtr<T>) -> bool {
    let a = p.as_ptr() as usize;
    shm::global::contains(a) && a.is_multiple_of(std::mem::align_of::<T>())
}

impl<'d> SlotGuard<'d> {
    /// Check and repair the locked slot after the process that held its lock died:
    /// the list links (`prev` of each record, the head), the record count, each
    /// record's contact count, and records without a contact — a record is only left
    /// without one inside a critical section (between `insert_urecord` and the first
    /// contact) or briefly until the expiry walk, so such a record is the dead
    /// process's half-written one and is dropped. Returns what was changed (AORs
    /// named); `Err` when a link leaves the segment (the slot cannot be proven
    /// consistent).
    pub(super) fn repair(&mut self) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        let head = self.head();
        let (first, n) = get(self, head).map_or((ShmPtr::null(), 0), |h| (h.first.load(), h.n));
        // A record linked as `first.prev` but not (yet) the head: the dead process was
        // between the two stores of `insert_urecord`; it is unreachable, free it.
        let mut orphans = Vec::new();
        if !first.is_null() {
            if !plausible(first) {
                return Err(format!(
                    "slot {}: head link {:p} out of shm",
                    self.slot,
                    first.as_ptr()
                ));
            }
            let orphan = get(self, first).map(|r| r.prev).unwrap_or(ShmPtr::null());
            if !orphan.is_null() {
                if plausible(orphan) {
                    orphans.push(orphan);
                }
                if let Some(f) = get_mut(self, first) {
                    f.prev = ShmPtr::null();
                }
            }
        }
        let mut prev = ShmPtr::<URecord>::null();
        let mut p = first;
        let mut count = 0u32;
        let mut empty = Vec::new();
        while !p.is_null() {
            if !plausible(p) || count > n.saturating_add(16) {
                return Err(format!(
                    "slot {}: record list broken after {count} record(s)",
                    self.slot
                ));
            }
            let (rprev, next, contacts, nc) = match get(self, p) {
                Some(r) => (r.prev, r.next, r.contacts, r.ncontacts),
                None => break,
            };
            if rprev != prev {
                done.push(format!("slot {}: fixed a back link", self.slot));
                if let Some(r) = get_mut(self, p) {
                    r.prev = prev;
                }
            }
            let mut k = 0u32;
            let mut cp = contacts;
            while !cp.is_null() {
                if !plausible(cp) || k > nc.saturating_add(16) {
                    return Err(format!("slot {}: contact list broken", self.slot));
                }
                k += 1;
                cp = get(self, cp).map(|c| c.next).unwrap_or(ShmPtr::null());
            }
            if k != nc {
                if let Some(r) = get_mut(self, p) {
                    r.ncontacts = k;
                }
                done.push(format!("slot {}: contact count {nc} -> {k}", self.slot));
            }
            if contacts.is_null() {
                empty.push(p);
            }
            count += 1;
            prev = p;
            p = next;
        }
        if count != n {
            if let Some(h) = get_mut(self, head) {
                h.n = count;
            }
            done.push(format!("slot {}: record count {n} -> {count}", self.slot));
        }
        for rp in empty {
            let aor = String::from_utf8_lossy(self.rec_aor(rp)).into_owned();
            self.free_record(rp, UlCbType::Delete);
            done.push(format!(
                "half-written usrloc record of AOR {aor} (no contact yet)"
            ));
        }
        for rp in orphans {
            let name = String::from_utf8_lossy(self.rec_aor(rp)).into_owned();
            dispose(rp);
            self.dom.stats.users_dec();
            done.push(format!("half-linked usrloc record of AOR {name}"));
        }
        Ok(done)
    }

    /// Release the slot lock, then write the database changes queued under it (a no-op
    /// unless `db_mode` is 1 or 3). Database writes never run under a usrloc lock.
    pub fn unlock_then_flush(mut self) {
        self.release_lock();
        if super::db::has_pending() {
            super::db::flush();
        }
        super::run_deferred();
    }

    pub(super) fn domain(&self) -> &'d UDomain {
        self.dom
    }

    pub(super) fn head(&self) -> ShmPtr<SlotHead> {
        slot_head(self.dom.slots, self.dom.nslots, self.slot)
    }

    /// Index of the locked slot.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Whether the expiry walk may have work in the locked slot at `now` (its `due`
    /// has come; see [`SlotHead::due`]).
    fn due_at(&self, now: i64) -> bool {
        get(self, self.head()).is_some_and(|h| h.due != 0 && h.due <= now)
    }

    /// The locked slot's `due` (tests).
    #[cfg(test)]
    pub(super) fn slot_due(&self) -> i64 {
        get(self, self.head()).map_or(0, |h| h.due)
    }

    /// Lower the locked slot's `due` to `t` (a contact's new non-zero `expires`, or 1
    /// for a record that may be left without contacts).
    /// Settle the record left empty (see `empty`), then release the lock (once).
    fn release_lock(&mut self) {
        if self.lock.is_some() {
            self.settle_empty();
        }
        drop(self.lock.take());
    }

    /// Note that record `rp` of this slot has no contacts now (see `empty`); a record
    /// noted before it and still empty is settled first.
    pub(super) fn note_empty(&mut self, rp: ShmPtr<URecord>) {
        if self.empty != rp {
            self.settle_empty();
            self.empty = rp;
        }
    }

    /// Record `rp` gained a contact or was freed: nothing to settle for it.
    pub(super) fn clear_empty(&mut self, rp: ShmPtr<URecord>) {
        if self.empty == rp {
            self.empty = ShmPtr::null();
        }
    }

    /// If the noted record is still without contacts, make the slot due at once.
    fn settle_empty(&mut self) {
        let rp = std::mem::replace(&mut self.empty, ShmPtr::null());
        if get(self, rp).is_some_and(|r| r.contacts.is_null()) {
            self.lower_due(1);
        }
    }

    pub(super) fn lower_due(&mut self, t: i64) {
        if t == 0 {
            return;
        }
        let head = self.head();
        if let Some(h) = get_mut(self, head)
            && (h.due == 0 || t < h.due)
        {
            h.due = t;
        }
    }

    /// Ids of all records of the locked slot.
    pub fn records(&self) -> Vec<RecordId> {
        let mut out = Vec::new();
        let mut p = get(self, self.head())
            .map(|h| h.first.load())
            .unwrap_or(ShmPtr::null());
        while let Some(r) = get(self, p) {
            out.push(RecordId(p));
            p = r.next;
        }
        out
    }

    /// Find the record of `aor` (`get_urecord`).
    pub fn get_urecord(&self, aor: &[u8]) -> Option<RecordId> {
        let cs = self.dom.case_sensitive;
        let hash = ul_hash(aor, cs);
        let mut p = get(self, self.head())
            .map(|h| h.first.load())
            .unwrap_or(ShmPtr::null());
        while let Some(r) = get(self, p) {
            if r.hash == hash && aor_eq(self.rec_aor(p), aor, cs) {
                self.known.set(p);
                return Some(RecordId(p));
            }
            p = r.next;
        }
        None
    }

    /// Create an empty record for `aor` (`insert_urecord`); `aor` must hash to the
    /// locked slot (`WrongSlot` otherwise) and should not exist yet (not checked, as in
    /// OpenSER: call [`SlotGuard::get_urecord`] first).
    pub fn insert_urecord(&mut self, aor: &[u8]) -> Result<RecordId, UlError> {
        if aor.is_empty() || aor.len() > usize::from(u16::MAX) {
            return Err(UlError::TooLong);
        }
        if self.dom.slot_of(aor) != self.slot {
            return Err(UlError::WrongSlot);
        }
        let head = self.head();
        let first = get(self, head)
            .map(|h| h.first.load())
            .unwrap_or(ShmPtr::null());
        let rec = URecord {
            next: first,
            prev: ShmPtr::null(),
            contacts: ShmPtr::null(),
            hash: ul_hash(aor, self.dom.case_sensitive),
            aor_len: aor.len() as u32,
            ncontacts: 0,
        };
        let Some(rp) = alloc_tailed(rec, aor, aor.len()) else {
            return Err(UlError::NoMemory);
        };
        if let Some(f) = get_mut(self, first) {
            f.prev = rp;
        }
        if let Some(h) = get_mut(self, head) {
            h.first.store(rp);
            h.n += 1;
        }
        self.dom.stats.users_inc();
        // Debug builds, tests: stop here (record linked and counted, no contact yet).
        #[cfg(debug_assertions)]
        super::repair::debug_pause(aor, self.slot);
        // Empty until its first contact: the walk frees it if none comes.
        self.note_empty(rp);
        self.known.set(rp);
        Ok(RecordId(rp))
    }

    /// Get the record of `aor`, creating it if missing.
    pub fn get_or_insert_urecord(&mut self, aor: &[u8]) -> Result<RecordId, UlError> {
        match self.get_urecord(aor) {
            Some(r) => Ok(r),
            None => self.insert_urecord(aor),
        }
    }

    /// Delete a record and all its contacts (DELETE callbacks fire per contact).
    pub fn delete_urecord(&mut self, r: RecordId) -> Result<(), UlError> {
        let rp = self.check_record(r)?;
        self.free_record(rp, UlCbType::Delete);
        Ok(())
    }

    /// Delete the record if it has no contacts left (`release_urecord`). Returns
    /// whether it was deleted.
    pub fn release_urecord(&mut self, r: RecordId) -> Result<bool, UlError> {
        let rp = self.check_record(r)?;
        let empty = get(self, rp).is_some_and(|r| r.contacts.is_null());
        if empty {
            self.free_record(rp, UlCbType::Delete);
        }
        Ok(empty)
    }

    /// Unlink and free a record of this slot with its contacts.
    fn free_record(&mut self, rp: ShmPtr<URecord>, kind: UlCbType) {
        loop {
            let first = get(self, rp).map(|r| r.contacts).unwrap_or(ShmPtr::null());
            if first.is_null() {
                break;
            }
            self.notify(kind, rp, first);
            self.remove_contact(rp, first);
        }
        let (prev, next) = match get(self, rp) {
            Some(r) => (r.prev, r.next),
            None => return,
        };
        if let Some(n) = get_mut(self, next) {
            n.prev = prev;
        }
        let head = self.head();
        match get_mut(self, prev) {
            Some(p) => p.next = next,
            None => {
                if let Some(h) = get_mut(self, head) {
                    h.first.store(next);
                }
            }
        }
        if let Some(h) = get_mut(self, head) {
            h.n = h.n.saturating_sub(1);
        }
        if self.known.get() == rp {
            self.known.set(ShmPtr::null());
        }
        self.clear_empty(rp);
        dispose(rp);
        self.dom.stats.users_dec();
    }

    /// Expire contacts of the locked slot at `now` and drop empty records.
    /// Sets the slot's `due` to the earliest `expires` left.
    fn expire_slot(&mut self, now: i64) {
        let mut due = 0i64;
        let mut rp = get(self, self.head())
            .map(|h| h.first.load())
            .unwrap_or(ShmPtr::null());
        while let Some(rec) = get(self, rp) {
            let next_rec = rec.next;
            let mut cp = rec.contacts;
            while let Some(c) = get(self, cp) {
                let next_c = c.next;
                if c.expires != 0 && c.expires <= now {
                    self.notify(UlCbType::Expire, rp, cp);
                    self.remove_contact(rp, cp);
                    self.dom.stats.expires.fetch_add(1, Ordering::Relaxed);
                } else if c.expires != 0 && (due == 0 || c.expires < due) {
                    due = c.expires;
                }
                cp = next_c;
            }
            if get(self, rp).is_some_and(|r| r.contacts.is_null()) {
                self.free_record(rp, UlCbType::Expire);
            }
            rp = next_rec;
        }
        let head = self.head();
        if let Some(h) = get_mut(self, head) {
            h.due = due;
        }
    }
}

//! The subscription table in shared memory: a fixed pool of subscription cells and a
//! hash table of buckets, keyed by presentity URI and event, each under its own lock.
//!
//! As dialog's table, everything is parallel arrays of atomics allocated once in the
//! attendant before fork (no pointers, nothing freed, no `unsafe`): per cell a row of
//! `NUMS` 32-bit fields and a row of `WORDS` 64-bit words holding its strings (packed
//! bytes). Links are cell indexes + 1 (0 = none).
//!
//! Locks, in order: a bucket lock, then (a leaf) the pool lock. Every read or write of a
//! cell happens under the lock of the bucket it belongs to (its `ENTRY`), which
//! [`Bucket`] — the guard of that lock — proves: the accessors live on it. Cells are
//! taken from the pool and returned to it under the pool lock, which also sets their
//! state and bucket, so a repair can tell which bucket a cell in no list belonged to.
//!
//! The bucket of a subscription is the hash of its presentity URI and event: a PUBLISH
//! finds every watcher of the presentity in one bucket, and an in-dialog SUBSCRIBE
//! (whose To is the presentity) finds its subscription there too.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shm::{FastLock, FastLockGuard};

// 32-bit fields of a cell
const STATE: usize = 0;
const H_ID: usize = 1;
const NEXT: usize = 2;
const ENTRY: usize = 3;
const EXPIRES: usize = 4;
const STATUS: usize = 5;
const LCSEQ: usize = 6;
const RCSEQ: usize = 7;
const VERSION: usize = 8;
const FLAGS: usize = 9;
const SOCK: usize = 10;
const LENS: usize = 11;
/// the string fields (see [`F_PRES`] …)
pub const NF: usize = 10;
const NUMS: usize = LENS + NF;

/// presentity URI (`sip:user@domain`)
pub const F_PRES: usize = 0;
/// event package name
pub const F_EVENT: usize = 1;
/// the Event header's `id` parameter
pub const F_EVENT_ID: usize = 2;
/// watcher URI (the SUBSCRIBE's From)
pub const F_WATCHER: usize = 3;
pub const F_CALLID: usize = 4;
/// the watcher's tag (From tag of its SUBSCRIBE)
pub const F_FTAG: usize = 5;
/// our tag (To tag of the 200 OK)
pub const F_TTAG: usize = 6;
/// the watcher's Contact: the Request-URI of the NOTIFYs
pub const F_CONTACT: usize = 7;
/// the route set (the SUBSCRIBE's Record-Route, in order)
pub const F_ROUTE: usize = 8;
/// why the subscription has its status (`polite-block`, …)
pub const F_REASON: usize = 9;

/// Bytes for the strings of a subscription.
pub const TEXT_BYTES: usize = 1024;
const WORDS: usize = TEXT_BYTES / 8;

const S_FREE: u32 = 0;
/// taken from the pool, not yet linked (or unlinked, not yet returned)
const S_ALLOC: u32 = 1;
const S_LIVE: u32 = 2;

/// Subscription states (`Subscription-State`).
pub const ST_PENDING: u32 = 1;
pub const ST_ACTIVE: u32 = 2;
pub const ST_TERMINATED: u32 = 3;

/// Flags: changed since last written to the database; has a row there.
pub const FL_DIRTY: u32 = 1;
pub const FL_INDB: u32 = 2;

/// A subscription as read out of shm (private copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubInfo {
    pub entry: u32,
    pub h_id: u32,
    /// wall-clock seconds when it expires
    pub expires: u32,
    pub status: u32,
    /// the CSeq of our last NOTIFY
    pub lcseq: u32,
    /// the CSeq of the watcher's last SUBSCRIBE
    pub rcseq: u32,
    /// watcher-info version (winfo subscriptions)
    pub version: u32,
    pub flags: u32,
    /// listen socket index + 1 (0: chosen by destination)
    pub sock: u32,
    pub f: [String; NF],
}

impl SubInfo {
    pub fn pres(&self) -> &str {
        &self.f[F_PRES]
    }
    pub fn event(&self) -> &str {
        &self.f[F_EVENT]
    }
}

/// The bucket of a presentity and event.
pub fn key_hash(pres: &str, event: &str, size: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in pres.as_bytes().iter().chain(b"\0").chain(event.as_bytes()) {
        h ^= u32::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0193);
    }
    h % size.max(1)
}

pub struct Table {
    nums: &'static [AtomicU32],
    words: &'static [AtomicU64],
    heads: &'static [AtomicU32],
    locks: &'static [FastLock],
    pool_lock: &'static FastLock,
    free_head: &'static AtomicU32,
    in_use: &'static AtomicU32,
    next_id: &'static AtomicU32,
    cap: u32,
    size: u32,
}

/// A bucket's lock held: the proof needed to read and write its cells.
pub struct Bucket<'t> {
    t: &'t Table,
    pub entry: u32,
    _g: FastLockGuard<'t>,
}

/// Why a subscription could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// the pool is exhausted
    Full,
    /// its strings do not fit a cell
    TooLong,
}

impl Table {
    /// A table of `cap` subscriptions in `size` buckets (attendant, before fork).
    pub fn new(cap: u32, size: u32) -> Option<Table> {
        let n = cap as usize;
        let nums = shm::alloc_static_slice_with(n * NUMS, |i| {
            let (cell, field) = (i / NUMS, i % NUMS);
            if field == NEXT && cell + 1 < n {
                AtomicU32::new(cell as u32 + 2)
            } else {
                AtomicU32::new(0)
            }
        })?;
        Some(Table {
            nums,
            words: shm::alloc_static_slice_with(n * WORDS, |_| AtomicU64::new(0))?,
            heads: shm::alloc_static_slice_with(size.max(1) as usize, |_| AtomicU32::new(0))?,
            locks: shm::alloc_static_slice_with(size.max(1) as usize, |_| FastLock::new())?,
            pool_lock: shm::alloc_static(FastLock::new())?,
            free_head: shm::alloc_static(AtomicU32::new(if n > 0 { 1 } else { 0 }))?,
            in_use: shm::alloc_static(AtomicU32::new(0))?,
            next_id: shm::alloc_static(AtomicU32::new(1))?,
            cap,
            size: size.max(1),
        })
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Subscriptions in the table.
    pub fn count(&self) -> u32 {
        self.in_use.load(Ordering::Relaxed)
    }

    #[inline]
    fn n(&self, cell: u32, field: usize) -> &AtomicU32 {
        &self.nums[(cell as usize - 1) * NUMS + field]
    }
    #[inline]
    fn w(&self, cell: u32) -> &[AtomicU64] {
        let base = (cell as usize - 1) * WORDS;
        &self.words[base..base + WORDS]
    }
    #[inline]
    fn get(&self, cell: u32, field: usize) -> u32 {
        self.n(cell, field).load(Ordering::Relaxed)
    }
    #[inline]
    fn set(&self, cell: u32, field: usize, v: u32) {
        self.n(cell, field).store(v, Ordering::Relaxed);
    }

    /// Lock bucket `entry` (`None` if out of range).
    pub fn lock_bucket(&self, entry: u32) -> Option<Bucket<'_>> {
        let l = self.locks.get(entry as usize)?;
        Some(Bucket {
            t: self,
            entry,
            _g: l.lock(),
        })
    }

    /// Lock the bucket of a presentity and event.
    pub fn lock_key(&self, pres: &str, event: &str) -> Option<Bucket<'_>> {
        self.lock_bucket(key_hash(pres, event, self.size))
    }

    /// (address, length) of the bucket locks, and the pool lock's address.
    pub fn lock_spans(&self) -> (usize, usize, usize) {
        (
            self.locks.as_ptr() as usize,
            size_of_val(self.locks),
            self.pool_lock as *const FastLock as usize,
        )
    }

    /// The bucket whose lock lies at `addr`.
    pub fn bucket_of_lock(&self, addr: usize) -> Option<u32> {
        self.locks
            .iter()
            .position(|l| std::ptr::eq(l, addr as *const FastLock))
            .map(|i| i as u32)
    }

    /// Take a cell for bucket `entry` (called with that bucket locked).
    fn pop(&self, entry: u32) -> Option<u32> {
        let _g = self.pool_lock.lock();
        let c = self.free_head.load(Ordering::Relaxed);
        if c == 0 || c > self.cap {
            return None;
        }
        self.free_head.store(self.get(c, NEXT), Ordering::Relaxed);
        self.in_use.fetch_add(1, Ordering::Relaxed);
        for f in 0..NUMS {
            self.set(c, f, 0);
        }
        self.set(c, ENTRY, entry);
        self.set(c, STATE, S_ALLOC);
        Some(c)
    }

    /// Return a cell to the pool (called with its bucket locked, the cell unlinked).
    fn push(&self, c: u32) {
        let _g = self.pool_lock.lock();
        self.set(c, STATE, S_FREE);
        self.set(c, NEXT, self.free_head.load(Ordering::Relaxed));
        self.free_head.store(c, Ordering::Relaxed);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    /// Repair after a process died holding bucket `b`'s lock (`_held`: that lock, taken
    /// over). Cuts the list at a link out of range, to a free cell, to another bucket's
    /// cell or back into itself; returns to the pool the cells of this bucket in no list
    /// (half linked or half unlinked).
    pub fn repair_bucket(&self, b: u32, _held: &FastLockGuard<'_>) -> Vec<String> {
        let mut done = Vec::new();
        let Some(head) = self.heads.get(b as usize) else {
            return done;
        };
        let mut seen = vec![false; self.cap as usize + 1];
        let mut prev: Option<u32> = None;
        let mut c = head.load(Ordering::Relaxed);
        while c != 0 {
            let bad = c > self.cap
                || seen[c as usize]
                || self.get(c, ENTRY) != b
                || self.get(c, STATE) != S_LIVE;
            if bad {
                done.push(format!("bucket {b}: list cut at bad link {c}"));
                match prev {
                    None => head.store(0, Ordering::Relaxed),
                    Some(p) => self.set(p, NEXT, 0),
                }
                break;
            }
            seen[c as usize] = true;
            prev = Some(c);
            c = self.get(c, NEXT);
        }
        for c in 1..=self.cap {
            if seen[c as usize] || self.get(c, ENTRY) != b || self.get(c, STATE) == S_FREE {
                continue;
            }
            // the pool lock may be held by the dead process too: then the pool's own
            // repair rebuilds the free list from the cells' states
            if let Some(_g) = self.pool_lock.try_lock() {
                self.set(c, STATE, S_FREE);
                self.set(c, NEXT, self.free_head.load(Ordering::Relaxed));
                self.free_head.store(c, Ordering::Relaxed);
                self.in_use.fetch_sub(1, Ordering::Relaxed);
                done.push(format!(
                    "bucket {b}: subscription cell {c} in no list returned to the pool"
                ));
            } else {
                self.set(c, STATE, S_FREE);
                done.push(format!(
                    "bucket {b}: subscription cell {c} in no list marked free"
                ));
            }
        }
        done
    }

    /// Repair after a process died holding the pool lock: the free list is rebuilt from
    /// the cells' states.
    pub fn repair_pool(&self, _held: &FastLockGuard<'_>) -> Vec<String> {
        let mut head = 0;
        let mut free = 0;
        for c in (1..=self.cap).rev() {
            if self.get(c, STATE) == S_FREE {
                self.set(c, NEXT, head);
                head = c;
                free += 1;
            }
        }
        self.free_head.store(head, Ordering::Relaxed);
        self.in_use.store(self.cap - free, Ordering::Relaxed);
        vec![format!(
            "presence subscription pool: free list rebuilt ({free} free cells)"
        )]
    }
}

fn pack(words: &[AtomicU64], data: &[u8]) {
    for (i, ch) in data.chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..ch.len()].copy_from_slice(ch);
        words[i].store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

fn unpack(words: &[AtomicU64], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    for w in words.iter().take(len.div_ceil(8)) {
        out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl Bucket<'_> {
    /// The cells of this bucket, in list order.
    pub fn cells(&self) -> Vec<u32> {
        let t = self.t;
        let mut out = Vec::new();
        let mut c = t.heads[self.entry as usize].load(Ordering::Relaxed);
        while c != 0 && c <= t.cap && out.len() < t.cap as usize {
            out.push(c);
            c = t.get(c, NEXT);
        }
        out
    }

    /// All string fields of `c`.
    pub fn fields(&self, c: u32) -> [String; NF] {
        let t = self.t;
        let lens: Vec<usize> = (0..NF).map(|k| t.get(c, LENS + k) as usize).collect();
        let total: usize = lens.iter().sum::<usize>().min(TEXT_BYTES);
        let all = unpack(t.w(c), total);
        let mut out: [String; NF] = Default::default();
        let mut off = 0;
        for (k, l) in lens.iter().enumerate() {
            let start = off.min(all.len());
            let end = (off + l).min(all.len());
            out[k] = String::from_utf8_lossy(&all[start..end]).into_owned();
            off += l;
        }
        out
    }

    fn write_fields(&self, c: u32, f: &[String; NF]) -> Result<(), StoreError> {
        let total: usize = f.iter().map(String::len).sum();
        if total > TEXT_BYTES {
            return Err(StoreError::TooLong);
        }
        let mut all = Vec::with_capacity(total);
        for s in f {
            all.extend_from_slice(s.as_bytes());
        }
        pack(self.t.w(c), &all);
        for (k, s) in f.iter().enumerate() {
            self.t.set(c, LENS + k, s.len() as u32);
        }
        Ok(())
    }

    /// Change some string fields of `c`.
    pub fn update_fields(&self, c: u32, changes: &[(usize, &str)]) -> Result<(), StoreError> {
        let mut f = self.fields(c);
        for &(k, v) in changes {
            if k < NF {
                f[k] = v.to_string();
            }
        }
        self.write_fields(c, &f)
    }

    /// Whether the string field `k` of `c` equals `v` (lengths compared first).
    fn field_is(&self, c: u32, k: usize, v: &str) -> bool {
        self.t.get(c, LENS + k) as usize == v.len() && self.fields(c)[k] == v
    }

    /// The subscription of an in-dialog SUBSCRIBE: Call-ID, the watcher's tag and ours.
    pub fn find_dialog(&self, callid: &str, ftag: &str, ttag: &str) -> Option<u32> {
        self.cells().into_iter().find(|&c| {
            self.field_is(c, F_CALLID, callid) && {
                let f = self.fields(c);
                f[F_FTAG] == ftag && f[F_TTAG] == ttag
            }
        })
    }

    /// The cell of subscription `h_id`.
    pub fn find_id(&self, h_id: u32) -> Option<u32> {
        self.cells()
            .into_iter()
            .find(|&c| self.t.get(c, H_ID) == h_id)
    }

    /// The subscriptions of this bucket to `pres` for `event`.
    pub fn watchers_of(&self, pres: &str, event: &str) -> Vec<u32> {
        self.cells()
            .into_iter()
            .filter(|&c| {
                let f = self.fields(c);
                f[F_PRES].eq_ignore_ascii_case(pres) && f[F_EVENT].eq_ignore_ascii_case(event)
            })
            .collect()
    }

    /// A private copy of subscription `c`.
    pub fn info(&self, c: u32) -> SubInfo {
        let t = self.t;
        SubInfo {
            entry: self.entry,
            h_id: t.get(c, H_ID),
            expires: t.get(c, EXPIRES),
            status: t.get(c, STATUS),
            lcseq: t.get(c, LCSEQ),
            rcseq: t.get(c, RCSEQ),
            version: t.get(c, VERSION),
            flags: t.get(c, FLAGS),
            sock: t.get(c, SOCK),
            f: self.fields(c),
        }
    }

    pub fn expires(&self, c: u32) -> u32 {
        self.t.get(c, EXPIRES)
    }
    pub fn set_expires(&self, c: u32, at: u32) {
        self.t.set(c, EXPIRES, at);
        self.mark_dirty(c);
    }
    pub fn status(&self, c: u32) -> u32 {
        self.t.get(c, STATUS)
    }
    pub fn set_status(&self, c: u32, st: u32) {
        self.t.set(c, STATUS, st);
        self.mark_dirty(c);
    }
    pub fn set_rcseq(&self, c: u32, n: u32) {
        self.t.set(c, RCSEQ, n);
    }
    pub fn rcseq(&self, c: u32) -> u32 {
        self.t.get(c, RCSEQ)
    }
    pub fn set_sock(&self, c: u32, sock_plus_one: u32) {
        self.t.set(c, SOCK, sock_plus_one);
    }
    /// The CSeq of the next NOTIFY (the counter moves on).
    pub fn next_cseq(&self, c: u32) -> u32 {
        let n = self.t.get(c, LCSEQ).wrapping_add(1).max(1);
        self.t.set(c, LCSEQ, n);
        self.mark_dirty(c);
        n
    }
    /// The next watcher-info version (the counter moves on; the first is 0).
    pub fn next_version(&self, c: u32) -> u32 {
        let v = self.t.get(c, VERSION);
        self.t.set(c, VERSION, v.wrapping_add(1));
        self.mark_dirty(c);
        v
    }
    pub fn mark_dirty(&self, c: u32) {
        let f = self.t.get(c, FLAGS);
        self.t.set(c, FLAGS, f | FL_DIRTY);
    }
    /// Take the dirty mark (the caller writes the row): whether it was set. The cell
    /// is then known to have a row.
    pub fn take_dirty(&self, c: u32) -> bool {
        let f = self.t.get(c, FLAGS);
        self.t.set(c, FLAGS, (f & !FL_DIRTY) | FL_INDB);
        f & FL_DIRTY != 0
    }

    /// Store a new subscription in this bucket (`s.f`, the numbers but `h_id`).
    /// Returns (cell, h_id).
    pub fn create(&self, s: &SubInfo) -> Result<(u32, u32), StoreError> {
        let t = self.t;
        let total: usize = s.f.iter().map(String::len).sum();
        if total > TEXT_BYTES {
            return Err(StoreError::TooLong);
        }
        let c = t.pop(self.entry).ok_or(StoreError::Full)?;
        let mut id = t.next_id.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            id = t.next_id.fetch_add(1, Ordering::Relaxed);
        }
        t.set(c, H_ID, id);
        t.set(c, EXPIRES, s.expires);
        t.set(c, STATUS, s.status);
        t.set(c, LCSEQ, s.lcseq);
        t.set(c, RCSEQ, s.rcseq);
        t.set(c, VERSION, s.version);
        t.set(c, FLAGS, s.flags);
        t.set(c, SOCK, s.sock);
        let _ = self.write_fields(c, &s.f);
        t.set(
            c,
            NEXT,
            t.heads[self.entry as usize].load(Ordering::Relaxed),
        );
        t.set(c, STATE, S_LIVE);
        t.heads[self.entry as usize].store(c, Ordering::Relaxed);
        Ok((c, id))
    }

    /// Unlink cell `c` and return it to the pool.
    pub fn remove(&self, c: u32) {
        let t = self.t;
        let head = &t.heads[self.entry as usize];
        let next = t.get(c, NEXT);
        if head.load(Ordering::Relaxed) == c {
            head.store(next, Ordering::Relaxed);
        } else {
            let mut p = head.load(Ordering::Relaxed);
            let mut steps = 0;
            while p != 0 && p <= t.cap && steps < t.cap {
                let pn = t.get(p, NEXT);
                if pn == c {
                    t.set(p, NEXT, next);
                    break;
                }
                p = pn;
                steps += 1;
            }
        }
        t.set(c, STATE, S_ALLOC);
        t.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pack_and_unpack() {
        let w: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        pack(&w, b"sip:bob@example.com");
        assert_eq!(unpack(&w, 19), b"sip:bob@example.com");
        assert_eq!(unpack(&w, 3), b"sip");
    }

    fn sub(pres: &str, callid: &str) -> SubInfo {
        let mut f: [String; NF] = Default::default();
        f[F_PRES] = pres.into();
        f[F_EVENT] = "presence".into();
        f[F_WATCHER] = "sip:alice@example.com".into();
        f[F_CALLID] = callid.into();
        f[F_FTAG] = "ft".into();
        f[F_TTAG] = format!("tt-{callid}");
        SubInfo {
            expires: 100,
            status: ST_ACTIVE,
            f,
            ..SubInfo::default()
        }
    }

    #[test]
    fn subscriptions_stored_found_removed_and_repaired() {
        let _ = shm::init(16 << 20);
        let t = Table::new(4, 2).unwrap();
        let pres = "sip:bob@example.com";
        let b = t.lock_key(pres, "presence").unwrap();
        let (c1, id1) = b.create(&sub(pres, "c1")).unwrap();
        let (_, id2) = b.create(&sub(pres, "c2")).unwrap();
        assert_ne!(id1, id2);
        assert_eq!(b.find_dialog("c1", "ft", "tt-c1"), Some(c1));
        assert_eq!(b.find_dialog("c1", "ft", "tt-c2"), None);
        assert_eq!(b.watchers_of(pres, "presence").len(), 2);
        assert_eq!(b.next_cseq(c1), 1);
        assert_eq!(b.next_cseq(c1), 2);
        assert_eq!(b.info(c1).lcseq, 2);
        assert!(b.take_dirty(c1));
        assert!(!b.take_dirty(c1));
        assert_eq!(b.info(c1).flags & FL_INDB, FL_INDB);
        let mut long = sub(pres, "c3");
        long.f[F_ROUTE] = "x".repeat(TEXT_BYTES);
        assert_eq!(b.create(&long), Err(StoreError::TooLong));
        b.remove(c1);
        assert_eq!(b.find_id(id1), None);
        assert_eq!(t.count(), 1);
        let entry = b.entry;
        drop(b);
        // a cell taken from the pool but never linked (its process died) goes back
        let held = t.locks[entry as usize].lock();
        let lost = t.pop(entry).unwrap();
        let done = t.repair_bucket(entry, &held);
        drop(held);
        assert!(
            done.iter().any(|d| d.contains(&format!("cell {lost}"))),
            "{done:?}"
        );
        assert_eq!(t.count(), 1);
        // the pool fills up, then refuses
        let b = t.lock_key(pres, "presence").unwrap();
        for i in 0..3 {
            b.create(&sub(pres, &format!("f{i}"))).unwrap();
        }
        assert_eq!(b.create(&sub(pres, "f9")), Err(StoreError::Full));
    }

    #[test]
    fn keys_spread_and_ignore_case() {
        assert!(key_hash("sip:bob@example.com", "presence", 16) < 16);
        assert_eq!(
            key_hash("sip:Bob@Example.com", "Presence", 1024),
            key_hash("sip:bob@example.com", "presence", 1024)
        );
        assert_eq!(key_hash("x", "y", 0), 0);
    }
}

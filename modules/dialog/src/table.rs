//! The dialog table in shared memory: a fixed pool of dialog cells, a hash table of
//! buckets (by Call-ID) each under its own lock, and the profile counters.
//!
//! As pike's tree, everything is parallel arrays of atomics allocated once in the
//! attendant before fork (no pointers, nothing freed, no `unsafe`): per cell a row of
//! `NUMS` 32-bit fields and a row of `WORDS` 64-bit words holding its profile links,
//! its strings (packed bytes) and its variables. Links are cell indexes + 1 (0 = none).
//!
//! Locks, in order: a bucket lock, then (leaves) the pool lock or the profile lock.
//! Every read or write of a cell's fields happens under the lock of the bucket the
//! cell belongs to (its `ENTRY`), which [`Bucket`] — the guard of that lock — proves:
//! the accessors live on it. Cells are taken from the pool and returned to it under the
//! pool lock, which also sets their state and bucket, so a repair can tell which bucket
//! a cell not in any list was being linked to or unlinked from.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shm::{FastLock, FastLockGuard};

// 32-bit fields of a cell
const STATE: usize = 0;
const H_ID: usize = 1;
const NEXT: usize = 2;
const ENTRY: usize = 3;
const START: usize = 4;
const EXPIRES: usize = 5;
const TIMEOUT: usize = 6;
const CSEQ_CALLER: usize = 7;
const CSEQ_CALLEE: usize = 8;
const NPROF: usize = 9;
/// 1 while the cell's profile links are counted in the profile table
const COUNTED: usize = 10;
const UP_RR: usize = 11;
const VARS_LEN: usize = 12;
/// database writes of the dialog: 0 none, 1 one running, 2 one running and the
/// dialog changed since its snapshot (db_mode 1)
const DBW: usize = 13;
const LENS: usize = 14;
/// the string fields (see [`F_CALLID`] …)
pub const NF: usize = 9;
const NUMS: usize = LENS + NF;

pub const F_CALLID: usize = 0;
pub const F_FTAG: usize = 1;
pub const F_TTAG: usize = 2;
pub const F_FROM: usize = 3;
pub const F_TO: usize = 4;
pub const F_CALLER_CONTACT: usize = 5;
pub const F_CALLEE_CONTACT: usize = 6;
pub const F_CALLER_ROUTE: usize = 7;
pub const F_CALLEE_ROUTE: usize = 8;

/// Profile links per dialog.
pub const MAX_PROFILES: usize = 8;
/// Bytes for the strings of a dialog (Call-ID, tags, URIs, contacts, route sets).
pub const TEXT_BYTES: usize = 1024;
/// Bytes for the variables of a dialog (`name=value` records).
pub const VAR_BYTES: usize = 256;
const PROF_WORDS: usize = 2 * MAX_PROFILES;
const TEXT_WORDS: usize = TEXT_BYTES / 8;
const VAR_WORDS: usize = VAR_BYTES / 8;
const W_TEXT: usize = 0;
const W_VARS: usize = TEXT_WORDS;
const W_PROF: usize = TEXT_WORDS + VAR_WORDS;
const WORDS: usize = W_PROF + PROF_WORDS;

/// Dialog states (Kamailio's numbers, shown by `dlg_list`).
pub const S_FREE: u32 = 0;
pub const S_UNCONFIRMED: u32 = 1;
pub const S_EARLY: u32 = 2;
pub const S_CONFIRMED_NA: u32 = 3;
pub const S_CONFIRMED: u32 = 4;
/// taken from the pool, not yet linked (or unlinked, not yet returned)
const S_ALLOC: u32 = 9;

/// A dialog as read out of shm (private copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DlgInfo {
    pub h_entry: u32,
    pub h_id: u32,
    pub state: u32,
    /// wall-clock seconds: creation, then the 2xx
    pub start: u32,
    /// wall-clock seconds when the dialog expires
    pub expires: u32,
    pub timeout: u32,
    pub cseq_caller: u32,
    pub cseq_callee: u32,
    /// Record-Route entries the initial INVITE had when it reached us
    pub upstream_rr: u32,
    pub f: [String; NF],
    /// (profile index, value hash or 0)
    pub profiles: Vec<(u32, u64)>,
    pub vars: Vec<(String, String)>,
}

impl DlgInfo {
    pub fn callid(&self) -> &str {
        &self.f[F_CALLID]
    }
}

/// The key of a profile link in the counter table: the profile alone (`value` None,
/// every member) or the profile and a value.
pub fn prof_key(profile: u32, value: Option<&str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for b in profile.to_le_bytes() {
        eat(b);
    }
    match value {
        None => eat(0),
        Some(v) => {
            eat(1);
            for &b in v.as_bytes() {
                eat(b);
            }
        }
    }
    h.max(1)
}

/// The bucket of a Call-ID.
pub fn callid_hash(callid: &str, size: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in callid.trim().as_bytes() {
        h ^= u32::from(b);
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
    prof_lock: &'static FastLock,
    prof_keys: &'static [AtomicU64],
    prof_counts: &'static [AtomicU32],
    cap: u32,
    size: u32,
}

/// A bucket's lock held: the proof needed to read and write its cells.
pub struct Bucket<'t> {
    t: &'t Table,
    pub entry: u32,
    _g: FastLockGuard<'t>,
}

impl Table {
    /// A table of `cap` dialogs in `size` buckets (attendant, before fork).
    pub fn new(cap: u32, size: u32) -> Option<Table> {
        let n = cap as usize;
        let nums = shm::alloc_static_slice_with(n * NUMS, |i| {
            // chain every cell into the free list through NEXT
            let (cell, field) = (i / NUMS, i % NUMS);
            if field == NEXT && cell + 1 < n {
                AtomicU32::new(cell as u32 + 2)
            } else {
                AtomicU32::new(0)
            }
        })?;
        let pslots = (n * 4).max(64);
        Some(Table {
            nums,
            words: shm::alloc_static_slice_with(n * WORDS, |_| AtomicU64::new(0))?,
            heads: shm::alloc_static_slice_with(size as usize, |_| AtomicU32::new(0))?,
            locks: shm::alloc_static_slice_with(size as usize, |_| FastLock::new())?,
            pool_lock: shm::alloc_static(FastLock::new())?,
            free_head: shm::alloc_static(AtomicU32::new(if n > 0 { 1 } else { 0 }))?,
            in_use: shm::alloc_static(AtomicU32::new(0))?,
            next_id: shm::alloc_static(AtomicU32::new(1))?,
            prof_lock: shm::alloc_static(FastLock::new())?,
            prof_keys: shm::alloc_static_slice_with(pslots, |_| AtomicU64::new(0))?,
            prof_counts: shm::alloc_static_slice_with(pslots, |_| AtomicU32::new(0))?,
            cap,
            size: size.max(1),
        })
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Dialogs in the table.
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

    /// (address, length) of the bucket locks, and the pool and profile locks' addresses.
    pub fn lock_spans(&self) -> (usize, usize, usize, usize) {
        (
            self.locks.as_ptr() as usize,
            size_of_val(self.locks),
            self.pool_lock as *const FastLock as usize,
            self.prof_lock as *const FastLock as usize,
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
        for w in self.w(c) {
            w.store(0, Ordering::Relaxed);
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

    /// Count (`+1`) or uncount (`-1`) a profile key (profile lock, a leaf).
    fn prof_add(&self, key: u64, delta: i32) {
        let _g = self.prof_lock.lock();
        let n = self.prof_keys.len();
        let start = (key % n as u64) as usize;
        let mut reuse = None;
        for k in 0..n {
            let i = (start + k) % n;
            let kk = self.prof_keys[i].load(Ordering::Relaxed);
            if kk == key {
                let c = self.prof_counts[i].load(Ordering::Relaxed);
                let v = if delta > 0 {
                    c.saturating_add(1)
                } else {
                    c.saturating_sub(1)
                };
                self.prof_counts[i].store(v, Ordering::Relaxed);
                if v == 0 {
                    self.prof_trim(i);
                }
                return;
            }
            if kk == 0 || self.prof_counts[i].load(Ordering::Relaxed) == 0 {
                reuse.get_or_insert(i);
            }
            if kk == 0 {
                break;
            }
        }
        if delta > 0
            && let Some(i) = reuse
        {
            self.prof_keys[i].store(key, Ordering::Relaxed);
            self.prof_counts[i].store(1, Ordering::Relaxed);
        }
    }

    /// Slot `i` counts nothing any more: when it ends its cluster (the next slot was
    /// never used), it and the unused slots before it become never-used again, so
    /// lookups of absent keys stay short (linear probing's deletion from the tail).
    fn prof_trim(&self, i: usize) {
        let n = self.prof_keys.len();
        if self.prof_keys[(i + 1) % n].load(Ordering::Relaxed) != 0 {
            return;
        }
        let mut j = i;
        for _ in 0..n {
            if self.prof_counts[j].load(Ordering::Relaxed) != 0 {
                break;
            }
            self.prof_keys[j].store(0, Ordering::Relaxed);
            j = (j + n - 1) % n;
            if self.prof_keys[j].load(Ordering::Relaxed) == 0 {
                break;
            }
        }
    }

    /// Members counted under `key`.
    pub fn prof_size(&self, key: u64) -> u32 {
        let _g = self.prof_lock.lock();
        let n = self.prof_keys.len();
        let start = (key % n as u64) as usize;
        for k in 0..n {
            let i = (start + k) % n;
            let kk = self.prof_keys[i].load(Ordering::Relaxed);
            if kk == key {
                return self.prof_counts[i].load(Ordering::Relaxed);
            }
            if kk == 0 {
                break;
            }
        }
        0
    }

    /// Repair after a process died holding bucket `b`'s lock (`_held`: that lock, taken
    /// over). Cuts a list at a link out of range, to a free cell, to another bucket's
    /// cell or back into itself; returns to the pool the cells of this bucket that are
    /// in no list (half linked or half unlinked), uncounting their profiles.
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
                || !matches!(
                    self.get(c, STATE),
                    S_UNCONFIRMED | S_EARLY | S_CONFIRMED_NA | S_CONFIRMED
                );
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
            // the profile lock may be held by the dead process too: then the counts
            // of this cell's profiles stay as they are
            if self.get(c, COUNTED) == 1 {
                if self.prof_lock.try_lock().is_some() {
                    self.uncount(c);
                } else {
                    done.push(format!(
                        "bucket {b}: profile counts of cell {c} left as they are"
                    ));
                }
            }
            // the pool lock may be held by the dead process too: then the pool's own
            // repair rebuilds the free list from the cells' states
            if let Some(_g) = self.pool_lock.try_lock() {
                self.set(c, STATE, S_FREE);
                self.set(c, NEXT, self.free_head.load(Ordering::Relaxed));
                self.free_head.store(c, Ordering::Relaxed);
                self.in_use.fetch_sub(1, Ordering::Relaxed);
                done.push(format!(
                    "bucket {b}: dialog cell {c} in no list returned to the pool"
                ));
            } else {
                self.set(c, STATE, S_FREE);
                done.push(format!(
                    "bucket {b}: dialog cell {c} in no list marked free"
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
            "dialog pool: free list rebuilt ({free} free cells)"
        )]
    }

    fn uncount(&self, c: u32) {
        let n = (self.get(c, NPROF) as usize).min(MAX_PROFILES);
        for k in 0..n {
            let (p, v) = self.prof_link(c, k);
            self.prof_add(prof_key(p, None), -1);
            if v != 0 {
                self.prof_add(v, -1);
            }
        }
        self.set(c, COUNTED, 0);
    }

    fn prof_link(&self, c: u32, k: usize) -> (u32, u64) {
        let w = self.w(c);
        (
            w[W_PROF + 2 * k].load(Ordering::Relaxed) as u32,
            w[W_PROF + 2 * k + 1].load(Ordering::Relaxed),
        )
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

fn vars_encode(vars: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in vars {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn vars_decode(b: &[u8]) -> Vec<(String, String)> {
    let parts: Vec<&[u8]> = b.split(|&c| c == 0).collect();
    parts
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| {
            (
                String::from_utf8_lossy(p[0]).into_owned(),
                String::from_utf8_lossy(p[1]).into_owned(),
            )
        })
        .collect()
}

/// Why a dialog could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// the pool is exhausted
    Full,
    /// its strings or variables do not fit a cell
    TooLong,
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

    /// Whether cell `c` has Call-ID `callid` and from-tag `ftag` (or, `ttag` given, is
    /// the dialog of those tags in either direction).
    pub fn matches(&self, c: u32, callid: &str, ftag: &str, ttag: Option<&str>) -> bool {
        let t = self.t;
        if t.get(c, LENS + F_CALLID) as usize != callid.len() {
            return false;
        }
        let fields = self.fields(c);
        if fields[F_CALLID] != callid {
            return false;
        }
        match ttag {
            None => fields[F_FTAG] == ftag,
            Some(tt) => {
                (fields[F_FTAG] == ftag && (fields[F_TTAG] == tt || fields[F_TTAG].is_empty()))
                    || (fields[F_FTAG] == tt && fields[F_TTAG] == ftag)
            }
        }
    }

    /// The dialog with Call-ID and from-tag (initial transaction), or — `ttag` given —
    /// the dialog of an in-dialog request in either direction.
    pub fn find(&self, callid: &str, ftag: &str, ttag: Option<&str>) -> Option<u32> {
        self.cells()
            .into_iter()
            .find(|&c| self.matches(c, callid, ftag, ttag))
    }

    /// The cell of dialog `h_id`.
    pub fn find_id(&self, h_id: u32) -> Option<u32> {
        self.cells()
            .into_iter()
            .find(|&c| self.t.get(c, H_ID) == h_id)
    }

    /// All string fields of `c`.
    pub fn fields(&self, c: u32) -> [String; NF] {
        let t = self.t;
        let lens: Vec<usize> = (0..NF).map(|k| t.get(c, LENS + k) as usize).collect();
        let total: usize = lens.iter().sum();
        let all = unpack(&t.w(c)[W_TEXT..W_VARS], total);
        let mut out: [String; NF] = Default::default();
        let mut off = 0;
        for (k, l) in lens.iter().enumerate() {
            let end = (off + l).min(all.len());
            out[k] = String::from_utf8_lossy(&all[off.min(end)..end]).into_owned();
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
        pack(&self.t.w(c)[W_TEXT..W_VARS], &all);
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

    /// A private copy of dialog `c`.
    pub fn info(&self, c: u32) -> DlgInfo {
        let t = self.t;
        let np = (t.get(c, NPROF) as usize).min(MAX_PROFILES);
        DlgInfo {
            h_entry: self.entry,
            h_id: t.get(c, H_ID),
            state: t.get(c, STATE),
            start: t.get(c, START),
            expires: t.get(c, EXPIRES),
            timeout: t.get(c, TIMEOUT),
            cseq_caller: t.get(c, CSEQ_CALLER),
            cseq_callee: t.get(c, CSEQ_CALLEE),
            upstream_rr: t.get(c, UP_RR),
            f: self.fields(c),
            profiles: (0..np).map(|k| t.prof_link(c, k)).collect(),
            vars: self.vars(c),
        }
    }

    /// Ask for the dialog's row to be written: true when this caller is to write it
    /// (no write running), false when the running writer will write it again.
    pub fn db_claim(&self, c: u32) -> bool {
        let w = self.t.get(c, DBW) == 0;
        self.t.set(c, DBW, if w { 1 } else { 2 });
        w
    }

    /// The writer finished a write: true when the dialog changed meanwhile (write
    /// again), false when it is done.
    pub fn db_release(&self, c: u32) -> bool {
        let again = self.t.get(c, DBW) == 2;
        self.t.set(c, DBW, if again { 1 } else { 0 });
        again
    }

    pub fn state(&self, c: u32) -> u32 {
        self.t.get(c, STATE)
    }
    pub fn set_state(&self, c: u32, s: u32) {
        self.t.set(c, STATE, s);
    }
    pub fn h_id(&self, c: u32) -> u32 {
        self.t.get(c, H_ID)
    }
    pub fn expires(&self, c: u32) -> u32 {
        self.t.get(c, EXPIRES)
    }
    /// Start the dialog's lifetime at `now` for `timeout` seconds.
    pub fn set_times(&self, c: u32, now: u32, timeout: u32) {
        self.t.set(c, START, now);
        self.t.set(c, TIMEOUT, timeout);
        self.t.set(c, EXPIRES, now.saturating_add(timeout));
    }
    /// Change the timeout (counted from the start).
    pub fn set_timeout(&self, c: u32, timeout: u32) {
        let start = self.t.get(c, START);
        self.t.set(c, TIMEOUT, timeout);
        self.t.set(c, EXPIRES, start.saturating_add(timeout));
    }
    pub fn set_cseq(&self, c: u32, caller: bool, n: u32) {
        self.t
            .set(c, if caller { CSEQ_CALLER } else { CSEQ_CALLEE }, n);
    }

    /// The variables of `c`.
    pub fn vars(&self, c: u32) -> Vec<(String, String)> {
        let t = self.t;
        let len = (t.get(c, VARS_LEN) as usize).min(VAR_BYTES);
        vars_decode(&unpack(&t.w(c)[W_VARS..W_PROF], len))
    }

    /// Set (`Some`) or delete (`None`) variable `name` of `c`.
    pub fn set_var(&self, c: u32, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        let mut v = self.vars(c);
        v.retain(|(n, _)| n != name);
        if let Some(val) = value {
            v.push((name.to_string(), val.to_string()));
        }
        let b = vars_encode(&v);
        if b.len() > VAR_BYTES {
            return Err(StoreError::TooLong);
        }
        pack(&self.t.w(c)[W_VARS..W_PROF], &b);
        self.t.set(c, VARS_LEN, b.len() as u32);
        Ok(())
    }

    /// Whether `c` is in `profile` (with `value_key`, for that value).
    pub fn in_profile(&self, c: u32, profile: u32, value_key: Option<u64>) -> bool {
        let n = (self.t.get(c, NPROF) as usize).min(MAX_PROFILES);
        (0..n).any(|k| {
            let (p, v) = self.t.prof_link(c, k);
            p == profile && value_key.is_none_or(|vk| vk == v)
        })
    }

    /// Link `c` to `profile` (`value_key`: the key of the value, 0 for none); false if
    /// it has no room for another link.
    pub fn add_profile(&self, c: u32, profile: u32, value_key: u64) -> bool {
        if self.in_profile(c, profile, Some(value_key)) {
            return true;
        }
        let t = self.t;
        let n = t.get(c, NPROF) as usize;
        if n >= MAX_PROFILES {
            return false;
        }
        let w = t.w(c);
        w[W_PROF + 2 * n].store(u64::from(profile), Ordering::Relaxed);
        w[W_PROF + 2 * n + 1].store(value_key, Ordering::Relaxed);
        t.set(c, NPROF, n as u32 + 1);
        if t.get(c, COUNTED) == 1 {
            t.prof_add(prof_key(profile, None), 1);
            if value_key != 0 {
                t.prof_add(value_key, 1);
            }
        }
        true
    }

    /// Unlink `c` from `profile` (`value_key` None: every value); whether it was linked.
    pub fn remove_profile(&self, c: u32, profile: u32, value_key: Option<u64>) -> bool {
        let t = self.t;
        let n = (t.get(c, NPROF) as usize).min(MAX_PROFILES);
        let links: Vec<(u32, u64)> = (0..n).map(|k| t.prof_link(c, k)).collect();
        let (gone, keep): (Vec<_>, Vec<_>) = links
            .into_iter()
            .partition(|&(p, v)| p == profile && value_key.is_none_or(|vk| vk == v));
        if gone.is_empty() {
            return false;
        }
        let w = t.w(c);
        for (k, (p, v)) in keep.iter().enumerate() {
            w[W_PROF + 2 * k].store(u64::from(*p), Ordering::Relaxed);
            w[W_PROF + 2 * k + 1].store(*v, Ordering::Relaxed);
        }
        t.set(c, NPROF, keep.len() as u32);
        if t.get(c, COUNTED) == 1 {
            for (p, v) in gone {
                t.prof_add(prof_key(p, None), -1);
                if v != 0 {
                    t.prof_add(v, -1);
                }
            }
        }
        true
    }

    /// Store a new dialog in this bucket: its strings, variables, profile links,
    /// state unconfirmed, lifetime from `now`. Returns (cell, h_id).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        f: &[String; NF],
        upstream_rr: u32,
        cseq: u32,
        now: u32,
        timeout: u32,
        profiles: &[(u32, u64)],
        vars: &[(String, String)],
    ) -> Result<(u32, u32), StoreError> {
        let t = self.t;
        let total: usize = f.iter().map(String::len).sum();
        if total > TEXT_BYTES || vars_encode(vars).len() > VAR_BYTES {
            return Err(StoreError::TooLong);
        }
        let c = t.pop(self.entry).ok_or(StoreError::Full)?;
        let mut id = t.next_id.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            id = t.next_id.fetch_add(1, Ordering::Relaxed);
        }
        t.set(c, H_ID, id);
        t.set(c, UP_RR, upstream_rr);
        t.set(c, CSEQ_CALLER, cseq);
        self.set_times(c, now, timeout);
        let _ = self.write_fields(c, f);
        for (n, v) in vars {
            let _ = self.set_var(c, n, Some(v));
        }
        for &(p, v) in profiles {
            self.add_profile(c, p, v);
        }
        // count the links, then link the cell (a repair of a half-made cell uncounts)
        t.set(c, COUNTED, 1);
        let n = (t.get(c, NPROF) as usize).min(MAX_PROFILES);
        for k in 0..n {
            let (p, v) = t.prof_link(c, k);
            t.prof_add(prof_key(p, None), 1);
            if v != 0 {
                t.prof_add(v, 1);
            }
        }
        t.set(
            c,
            NEXT,
            t.heads[self.entry as usize].load(Ordering::Relaxed),
        );
        t.set(c, STATE, S_UNCONFIRMED);
        t.heads[self.entry as usize].store(c, Ordering::Relaxed);
        Ok((c, id))
    }

    /// Store a dialog read back from the database (start-up): its id, state and times
    /// as they were. Returns its cell.
    pub fn restore(&self, d: &DlgInfo) -> Result<u32, StoreError> {
        let t = self.t;
        let (c, _) = self.create(
            &d.f,
            0,
            d.cseq_caller,
            d.start,
            d.expires.saturating_sub(d.start).max(1),
            &d.profiles,
            &d.vars,
        )?;
        if d.h_id != 0 {
            t.set(c, H_ID, d.h_id);
            t.next_id
                .fetch_max(d.h_id.wrapping_add(1), Ordering::Relaxed);
        }
        t.set(c, CSEQ_CALLEE, d.cseq_callee);
        t.set(c, STATE, d.state.clamp(S_UNCONFIRMED, S_CONFIRMED));
        Ok(c)
    }

    /// Unlink cell `c`, uncount its profiles and return it to the pool.
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
        if t.get(c, COUNTED) == 1 {
            t.uncount(c);
        }
        t.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pack_and_unpack() {
        let w: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        pack(&w, b"hello, dialog!");
        assert_eq!(unpack(&w, 14), b"hello, dialog!");
        assert_eq!(unpack(&w, 5), b"hello");
    }

    #[test]
    fn vars_round_trip() {
        let v = vec![("a".to_string(), "1".to_string()), ("bb".into(), "".into())];
        assert_eq!(vars_decode(&vars_encode(&v)), v);
        assert!(vars_decode(b"").is_empty());
    }

    #[test]
    fn keys_differ() {
        assert_ne!(prof_key(0, None), prof_key(0, Some("")));
        assert_ne!(prof_key(0, Some("a")), prof_key(1, Some("a")));
        assert_eq!(prof_key(2, Some("x")), prof_key(2, Some("x")));
        assert!(callid_hash("abc", 16) < 16);
    }
}

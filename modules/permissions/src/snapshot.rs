//! A table published in shared memory for every process (the cached `trusted` and
//! `address` tables): serialised bytes in a fixed buffer of atomics, with a
//! generation counter, under one lock held only while bytes are copied. The
//! attendant publishes the first copy in `mod_init`, MI reloads publish new ones
//! (MI process); a reader keeps its own parsed copy and re-reads the bytes when the
//! generation moved, so a lookup costs one atomic load.
//!
//! Repair (issue 18): while a publication copies its bytes the length holds
//! [`WRITING`]; a process that died holding the lock with the length still at that mark
//! left the bytes half-written. The repair hook ([`register_repair`]) then empties the
//! table (a half-copied table could let the wrong sources through) and logs that it
//! needs a reload (MI `trusted_reload` / `address_reload`); in every case it moves the
//! generation, so every process re-reads what is there. A reader that sees the mark
//! (only possible after such a death, before the repair) reads an empty table.

use shm::{FastLock, FastLockGuard};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// The length while a publication is copying its bytes.
const WRITING: u32 = u32::MAX;

pub struct Snapshot {
    lock: &'static FastLock,
    epoch: &'static AtomicU64,
    len: &'static AtomicU32,
    buf: &'static [AtomicU8],
}

impl Snapshot {
    /// A snapshot of at most `cap` bytes in shm (attendant, before fork).
    pub fn new(cap: usize) -> Option<Snapshot> {
        Some(Snapshot {
            lock: shm::alloc_static(FastLock::new())?,
            epoch: shm::alloc_static(AtomicU64::new(0))?,
            len: shm::alloc_static(AtomicU32::new(0))?,
            buf: shm::alloc_static_slice_with(cap, |_| AtomicU8::new(0))?,
        })
    }

    /// Replace the contents.
    pub fn publish(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > self.buf.len() {
            return Err(format!(
                "the table ({} bytes) does not fit the cache ({} bytes)",
                bytes.len(),
                self.buf.len()
            ));
        }
        let _g = self.lock.lock();
        self.len.store(WRITING, Ordering::Relaxed);
        for (cell, b) in self.buf.iter().zip(bytes.iter()) {
            cell.store(*b, Ordering::Relaxed);
        }
        self.len.store(bytes.len() as u32, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The current generation (cheap).
    pub fn generation(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The contents and their generation.
    pub fn read(&self) -> (u64, Vec<u8>) {
        let _g = self.lock.lock();
        let n = match self.len.load(Ordering::Relaxed) {
            WRITING => 0,
            l => (l as usize).min(self.buf.len()),
        };
        let bytes = self.buf[..n]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        (self.epoch.load(Ordering::Acquire), bytes)
    }

    /// The check-and-repair after a process died holding the lock (`held`, taken over):
    /// see the module doc. Returns what was done.
    pub fn repair(&self, held: &FastLockGuard<'_>) -> Result<Vec<String>, String> {
        if !std::ptr::eq(held.lock_ref(), self.lock) {
            return Err("the guard is not this table's lock".into());
        }
        let mut done = Vec::new();
        if self.len.load(Ordering::Relaxed) == WRITING {
            self.len.store(0, Ordering::Relaxed);
            done.push(
                "a reload was copying the table: emptied it (half-written), reload it (MI)"
                    .to_string(),
            );
        }
        let g = self.epoch.fetch_add(1, Ordering::Release) + 1;
        done.push(format!(
            "generation moved to {g}: every process re-reads the table"
        ));
        Ok(done)
    }
}

thread_local! {
    /// The snapshots with a repair hook, by lock address (attendant, before fork).
    static REPAIRABLE: RefCell<Vec<(usize, &'static str, &'static Snapshot)>> =
        const { RefCell::new(Vec::new()) };
}

/// Registers the repair hook of `snap` (attendant, mod_init); `what` names it in logs.
pub fn register_repair(snap: &'static Snapshot, what: &'static str) {
    let addr = snap.lock as *const FastLock as usize;
    REPAIRABLE.with(|r| r.borrow_mut().push((addr, what, snap)));
    shm::register_repair(addr, size_of::<FastLock>(), what, repair_hook);
}

fn repair_hook(lock: usize, held: FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let found = REPAIRABLE.with(|r| {
        r.borrow()
            .iter()
            .find(|(a, _, _)| *a == lock)
            .map(|&(_, w, s)| (w, s))
    });
    let (what, snap) = found.ok_or_else(|| format!("no permissions table at {lock:#x}"))?;
    let r = snap.repair(&held);
    drop(held);
    r.map(|v| v.into_iter().map(|l| format!("{what}: {l}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_cut_short_is_emptied_and_a_reader_death_changes_nothing() {
        let _ = shm::init(8 << 20);
        let s = Snapshot::new(64).unwrap();
        s.publish(b"10.0.0.1 trusted").unwrap();
        let g0 = s.generation();
        // A reader died holding the lock: the table is intact, everyone re-reads it.
        {
            let g = s.lock.lock();
            let done = s.repair(&g).unwrap();
            assert_eq!(done.len(), 1, "{done:?}");
        }
        assert_eq!(s.read(), (g0 + 1, b"10.0.0.1 trusted".to_vec()));
        // A reload died half-way through the copy.
        {
            let _g = s.lock.lock();
            s.len.store(WRITING, Ordering::Relaxed);
            s.buf[0].store(b'9', Ordering::Relaxed);
        }
        assert_eq!(
            s.read().1,
            Vec::<u8>::new(),
            "a half-written table is never parsed"
        );
        let g = s.lock.lock();
        let done = s.repair(&g).unwrap();
        drop(g);
        assert!(done[0].contains("emptied it (half-written)"), "{done:?}");
        assert_eq!(s.read(), (g0 + 2, Vec::new()));
        // The next reload fills it again.
        s.publish(b"10.0.0.2 trusted").unwrap();
        assert_eq!(s.read().1, b"10.0.0.2 trusted".to_vec());
    }
}

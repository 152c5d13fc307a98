//! Spinlocks that live in shared memory (OpenSER's `fastlock.h` with `ADAPTIVE_WAIT`).
//!
//! A [`FastLock`] is one `AtomicU32` holding the owner's pid (0 = free). Acquisition is
//! test-and-set (`compare_exchange`) with a relaxed read loop in between: up to
//! [`ADAPTIVE_WAIT_LOOPS`] failed attempts with `spin_loop()`, then `sched_yield()` on every
//! further failure. Release is a `Release` store of 0.
//!
//! Every acquisition of a lock that lives inside the global segment is recorded in the
//! held-lock table of the segment header (see [`crate::global`]), so that the attendant can
//! release the locks of a child that died while holding them ([`crate::force_unlock_dead`]).
//! The record is written *before* the lock is taken (an "intent"), and cleared *after* it is
//! released: a process killed at any point therefore leaves at worst a stale record, and a
//! stale record is harmless because force-release only clears a lock whose owner is the dead
//! pid.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::global;
use crate::ptr::{ShmPtr, ShmSafe};

/// Failed test-and-set attempts before the lock starts calling `sched_yield()`
/// (OpenSER's `ADAPTIVE_WAIT_LOOPS`).
pub const ADAPTIVE_WAIT_LOOPS: u32 = 1024;

/// A spinlock usable across processes: lives in shared memory, owner = pid.
#[repr(C)]
#[derive(Debug, Default)]
pub struct FastLock {
    owner: AtomicU32,
}

/// Holds a [`FastLock`]; dropping it releases the lock (and clears this process's record).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct FastLockGuard<'a> {
    lock: &'a FastLock,
    /// The held-lock table entry for this acquisition, if one was recorded.
    record: Option<&'static AtomicUsize>,
    /// Not Send: the guard belongs to the process (and thread) that took the lock.
    _not_send: PhantomData<*const ()>,
}

impl FastLock {
    /// A free lock.
    pub const fn new() -> Self {
        FastLock {
            owner: AtomicU32::new(0),
        }
    }

    #[inline]
    fn try_acquire(&self, pid: u32) -> bool {
        self.owner
            .compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, spinning then yielding until it is free. Not re-entrant: taking a lock
    /// the process already holds deadlocks (as in OpenSER).
    #[inline]
    pub fn lock(&self) -> FastLockGuard<'_> {
        let pid = global::current_pid();
        let record = global::record_lock(self);
        if !self.try_acquire(pid) {
            self.lock_slow(pid);
        }
        FastLockGuard {
            lock: self,
            record,
            _not_send: PhantomData,
        }
    }

    #[cold]
    fn lock_slow(&self, pid: u32) {
        let mut failures: u32 = 0;
        loop {
            // Test-and-test-and-set: wait on a plain load, so the cache line is only written
            // when the lock looks free.
            while self.owner.load(Ordering::Relaxed) != 0 {
                failures = failures.saturating_add(1);
                backoff(failures);
            }
            if self.try_acquire(pid) {
                return;
            }
            failures = failures.saturating_add(1);
            backoff(failures);
        }
    }

    /// Takes the lock if it is free right now.
    #[inline]
    pub fn try_lock(&self) -> Option<FastLockGuard<'_>> {
        if self.owner.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let pid = global::current_pid();
        let record = global::record_lock(self);
        if self.try_acquire(pid) {
            Some(FastLockGuard {
                lock: self,
                record,
                _not_send: PhantomData,
            })
        } else {
            global::clear_record(record, self);
            None
        }
    }

    /// The pid holding the lock, 0 when free.
    pub fn owner(&self) -> u32 {
        self.owner.load(Ordering::Relaxed)
    }

    /// Whether some process holds the lock.
    pub fn is_locked(&self) -> bool {
        self.owner() != 0
    }

    /// Releases the lock only if it is held by `pid`. Returns whether it did.
    ///
    /// # Safety
    /// `pid` must be a process that has been reaped (`waitpid` returned it) and that was
    /// forked from the process that created the segment: a live owner would go on using
    /// the structure the lock protects while others take it.
    pub unsafe fn force_unlock(&self, pid: u32) -> bool {
        pid != 0
            && self
                .owner
                .compare_exchange(pid, 0, Ordering::Release, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes over the lock from `dead` if it holds it: the calling process becomes the
    /// owner, so it can check (and repair) the structure the lock protects before anybody
    /// else sees it; dropping the guard releases it. `None` when `dead` does not hold it.
    /// The acquisition is not recorded in the held-lock table (the caller is the
    /// attendant, whose death ends everything anyway).
    ///
    /// # Safety
    /// As [`FastLock::force_unlock`]: `dead` must have been reaped.
    pub unsafe fn take_over(&self, dead: u32) -> Option<FastLockGuard<'_>> {
        let me = global::current_pid();
        if dead == 0 || dead == me {
            return None;
        }
        self.owner
            .compare_exchange(dead, me, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(FastLockGuard {
            lock: self,
            record: None,
            _not_send: PhantomData,
        })
    }

    pub(crate) fn release(&self) {
        self.owner.store(0, Ordering::Release);
    }
}

#[inline]
fn backoff(failures: u32) {
    if failures < ADAPTIVE_WAIT_LOOPS {
        std::hint::spin_loop();
    } else {
        // SAFETY: sched_yield takes no arguments and has no memory-safety preconditions.
        unsafe {
            libc::sched_yield();
        }
    }
}

impl FastLockGuard<'_> {
    /// The lock this guard holds.
    pub fn lock_ref(&self) -> &FastLock {
        self.lock
    }
}

impl Drop for FastLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // A plain store, not a compare-and-swap: only this process can have taken the lock
        // from 0 to its pid, and nobody else may clear it while this process lives (the
        // force-release functions are `unsafe` with a "reaped" precondition), so the owner
        // is still this process here.
        debug_assert_eq!(
            self.lock.owner(),
            global::current_pid(),
            "lock lost its owner"
        );
        self.lock.release();
        global::clear_record(self.record, self.lock);
    }
}

impl std::fmt::Debug for FastLockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastLockGuard")
            .field("owner", &self.lock.owner())
            .finish()
    }
}

/// `n` fast locks allocated in shm (OpenSER's `lock_set_alloc`); lock `i` is `get(i % n)`.
#[repr(C)]
#[derive(Debug)]
pub struct LockSet {
    len: usize,
    locks: ShmPtr<FastLock>,
}

// SAFETY: `LockSet` is #[repr(C)] plain data: a count and a shm pointer to shm locks.
unsafe impl ShmSafe for LockSet {}

impl LockSet {
    /// Allocates a set of `n` (≥ 1) free locks in the global segment. `None` when `n == 0`,
    /// shm is not initialised, or shm is full.
    pub fn new(n: usize) -> Option<ShmPtr<LockSet>> {
        if n == 0 {
            return None;
        }
        let locks = global::alloc_zeroed_array::<FastLock>(n)?;
        match global::alloc(LockSet { len: n, locks }) {
            Some(set) => Some(set),
            None => {
                // SAFETY: `locks` was just allocated by us and is referenced nowhere else.
                unsafe { global::free(locks) };
                None
            }
        }
    }

    /// Lock number `i % len()`.
    pub fn get(&self, i: usize) -> &FastLock {
        let i = i % self.len;
        // SAFETY: `locks` points to an array of `len` FastLocks allocated by `new` and `i <
        // len`, so the offset stays inside that array.
        let lock = unsafe { self.locks.as_ptr().add(i) };
        // SAFETY: `lock` is an initialised (zeroed = free) FastLock of the array, which is
        // kept for the life of the set (freed only by the unsafe `destroy`, whose caller
        // guarantees no reference into the set survives); only shared access is given out.
        unsafe { &*lock }
    }

    /// Number of locks in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a set has at least one lock); present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frees the set and its locks.
    ///
    /// # Safety
    /// `set` must come from [`LockSet::new`], no lock of it may be held, and neither `set` nor
    /// any reference into it may be used afterwards.
    pub unsafe fn destroy(set: ShmPtr<LockSet>) {
        if set.is_null() {
            return;
        }
        let locks = set.as_ref().locks;
        // SAFETY: `locks` was allocated from the global heap by `LockSet::new` (caller's
        // contract: `set` comes from it); no lock of it is held and none is used afterwards.
        unsafe { global::free(locks) };
        // SAFETY: `set` was allocated from the global heap by `LockSet::new` and neither it
        // nor any reference into it is used afterwards (caller's contract); its `locks` field
        // was read above, before the free.
        unsafe { global::free(set) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncontended_lock_unlock() {
        let l = FastLock::new();
        assert!(!l.is_locked());
        {
            let g = l.lock();
            assert!(l.is_locked());
            assert_eq!(l.owner(), global::current_pid());
            assert_eq!(g.lock_ref().owner(), l.owner());
        }
        assert!(!l.is_locked());
        assert_eq!(l.owner(), 0);
        for _ in 0..1000 {
            drop(l.lock());
        }
        assert!(!l.is_locked());
    }

    #[test]
    fn try_lock_fails_while_held() {
        let l = FastLock::new();
        let g = l.try_lock().expect("free lock");
        assert!(l.try_lock().is_none());
        drop(g);
        let g2 = l.try_lock();
        assert!(g2.is_some());
    }

    #[test]
    fn force_unlock_only_by_owner() {
        let l = FastLock::new();
        let g = l.lock();
        let me = l.owner();
        // SAFETY: a test of the owner check: no other process or thread uses `l`.
        assert!(!unsafe { l.force_unlock(me.wrapping_add(1)) });
        assert!(l.is_locked());
        std::mem::forget(g);
        // SAFETY: the guard was forgotten: nothing uses the lock on our behalf any more.
        assert!(unsafe { l.force_unlock(me) });
        assert!(!l.is_locked());
        // SAFETY: 0 is never an owner; the call must refuse.
        assert!(!unsafe { l.force_unlock(0) });
    }

    #[test]
    fn take_over_from_a_dead_owner() {
        let l = FastLock::new();
        let dead = global::current_pid().wrapping_add(7);
        // SAFETY: no process `dead` uses `l` in this test; nothing else uses it either.
        let none = unsafe { l.take_over(dead) };
        assert!(none.is_none(), "free lock taken over");
        l.owner.store(dead, Ordering::Relaxed);
        // SAFETY: as above: the "owner" is not a live process using `l`.
        let g = unsafe { l.take_over(dead) }.expect("take over");
        assert_eq!(l.owner(), global::current_pid());
        assert!(l.try_lock().is_none());
        drop(g);
        assert!(!l.is_locked());
    }
}

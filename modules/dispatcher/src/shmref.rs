//! dispatcher's unsafe code: the shared list cell.
//!
//! Invariant: [`Cache::list`] is read and replaced only while [`Cache::lock`] is held
//! (by `read` and `replace` below, the only code touching it); readers copy the bytes
//! out before releasing the lock, so the string a reader saw can be freed as soon as a
//! writer has swapped it out. The cache is allocated once, before fork, never freed.
//! (The same cell as domain's; the per-destination state is atomics, in `state.rs`.)
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shm::{FastLock, ShmSafe, ShmStr};

/// The destination list shared by every process, in `list::serialize`'s form.
#[repr(C)]
pub struct Cache {
    lock: FastLock,
    /// bumped by every replacement; read without the lock to see whether a private
    /// copy is still current
    generation: AtomicU64,
    list: UnsafeCell<ShmStr>,
}

// SAFETY: `#[repr(C)]` of a FastLock, an atomic and an `UnsafeCell<ShmStr>`: plain data
// and a pointer into the segment only, no destructor needed.
unsafe impl ShmSafe for Cache {}
// SAFETY: the only non-atomic field, `list`, is accessed only under `lock` (module
// invariant above), which excludes every other process and this one's other users.
unsafe impl Sync for Cache {}

impl Cache {
    pub fn new() -> Cache {
        Cache {
            lock: FastLock::new(),
            generation: AtomicU64::new(0),
            list: UnsafeCell::new(ShmStr::empty()),
        }
    }

    /// The current generation (0 until the first load).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A private copy of the list and the generation it belongs to.
    pub fn read(&self) -> (u64, Vec<u8>) {
        let _g = self.lock.lock();
        // SAFETY: the lock is held, so no writer replaces the cell meanwhile (module
        // invariant); the `ShmStr` is copied out (it is `Copy`) and its bytes copied
        // before the guard drops.
        let s = unsafe { *self.list.get() };
        (
            self.generation.load(Ordering::Relaxed),
            s.as_bytes().to_vec(),
        )
    }

    /// Replace the list, running `also` under the lock before the generation moves (the
    /// state array is rewritten there, so no reader sees a new list with old states).
    /// False when shared memory is full (the old list stays).
    pub fn replace(&self, bytes: &[u8], also: impl FnOnce()) -> bool {
        let Some(new) = ShmStr::new(bytes) else {
            return false;
        };
        let old = {
            let _g = self.lock.lock();
            also();
            // SAFETY: the lock is held: no other process or user reads or writes the
            // cell now (module invariant), and no reference into it outlives this block.
            let old = unsafe { std::ptr::replace(self.list.get(), new) };
            self.generation.fetch_add(1, Ordering::Release);
            old
        };
        // readers copy under the lock, so nobody can still be using the old bytes
        old.free();
        true
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new()
    }
}

/// The shared state of one destination slot.
#[repr(C)]
#[derive(Default)]
pub struct DstSlot {
    /// `ST_INACTIVE` | `ST_PROBING`
    pub state: AtomicU32,
    /// failed requests/probes since it last answered
    pub fails: AtomicU32,
    /// calls in progress (call-load tracking)
    pub load: AtomicU32,
}
// SAFETY: `#[repr(C)]` of atomics only.
unsafe impl ShmSafe for DstSlot {}

/// The shared counters of one set.
#[repr(C)]
#[derive(Default)]
pub struct SetSlot {
    /// round-robin position
    pub rr: AtomicU32,
    /// position in the weighted order
    pub wrr: AtomicU32,
}
// SAFETY: `#[repr(C)]` of atomics only.
unsafe impl ShmSafe for SetSlot {}

/// One tracked call (call-load): the Call-ID's hash, the destination slot, when.
#[repr(C)]
#[derive(Default)]
pub struct CallSlot {
    /// 0 = free, `TOMBSTONE` = deleted
    pub key: AtomicU64,
    pub dst: AtomicU32,
    /// seconds (timer clock) when the call was answered
    pub since: AtomicU32,
}
// SAFETY: `#[repr(C)]` of atomics only.
unsafe impl ShmSafe for CallSlot {}

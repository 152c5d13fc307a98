//! [`SharedBlob`]: bytes published to every process (a module's cached table — domain's
//! list, lcr's gateways and rules, dispatcher's destinations), replaced whole under a
//! lock, with a generation counter so that a reader can keep a private parsed copy and
//! re-read only when the generation moved (one atomic load per use).
//!
//! Invariant: `bytes` is read and replaced only while `lock` is held (by `read` and
//! `replace_with`, the only code touching it); readers copy the bytes out before
//! releasing the lock, so the string a reader saw can be freed as soon as a writer has
//! swapped it out under the lock. A blob is allocated once, before fork
//! (`alloc_static`), and never freed.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{FastLock, ShmSafe, ShmStr};

/// Bytes shared by every process, replaced whole (see the module doc).
#[repr(C)]
pub struct SharedBlob {
    lock: FastLock,
    /// bumped by every replacement; read without the lock to see whether a private
    /// copy is still current
    generation: AtomicU64,
    bytes: UnsafeCell<ShmStr>,
}

// SAFETY: `#[repr(C)]` of a FastLock, an atomic and an `UnsafeCell<ShmStr>`: plain data
// and a pointer into the segment only, no destructor needed.
unsafe impl ShmSafe for SharedBlob {}
// SAFETY: the only non-atomic field, `bytes`, is accessed only under `lock` (module
// invariant), which excludes every other process and this one's other users.
unsafe impl Sync for SharedBlob {}

impl SharedBlob {
    /// An empty blob of generation 0.
    pub fn new() -> SharedBlob {
        SharedBlob {
            lock: FastLock::new(),
            generation: AtomicU64::new(0),
            bytes: UnsafeCell::new(ShmStr::empty()),
        }
    }

    /// The current generation (0 until the first replacement).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A private copy of the bytes and the generation they belong to.
    pub fn read(&self) -> (u64, Vec<u8>) {
        let _g = self.lock.lock();
        // SAFETY: the lock is held, so no writer replaces the cell meanwhile (module
        // invariant); the `ShmStr` is copied out (it is `Copy`) and its bytes copied
        // before the guard drops.
        let s = unsafe { *self.bytes.get() };
        (
            self.generation.load(Ordering::Relaxed),
            s.as_bytes().to_vec(),
        )
    }

    /// Replace the bytes. False when shared memory is full (the old bytes stay).
    pub fn replace(&self, bytes: &[u8]) -> bool {
        self.replace_with(bytes, || {})
    }

    /// Replace the bytes, running `also` under the lock before the generation moves
    /// (state kept beside the blob is rewritten there, so no reader sees new bytes with
    /// old state). `also` must not block. False when shared memory is full (the old
    /// bytes stay and `also` does not run).
    pub fn replace_with(&self, bytes: &[u8], also: impl FnOnce()) -> bool {
        let Some(new) = ShmStr::new(bytes) else {
            return false;
        };
        let old = {
            let _g = self.lock.lock();
            also();
            // SAFETY: the lock is held: no other process or user reads or writes the
            // cell now (module invariant), and no reference into it outlives this block.
            let old = unsafe { std::ptr::replace(self.bytes.get(), new) };
            self.generation.fetch_add(1, Ordering::Release);
            old
        };
        // readers copy under the lock, so nobody can still be using the old bytes
        old.free();
        true
    }
}

impl Default for SharedBlob {
    fn default() -> Self {
        SharedBlob::new()
    }
}

//! [`SharedBlob`]: bytes published to every process (a module's cached table — domain's
//! list, lcr's gateways and rules, dispatcher's destinations), replaced whole under a
//! lock, with a generation counter so that a reader can keep a private parsed copy and
//! re-read only when the generation moved (one atomic load per use).
//!
//! Invariant: `bytes` is read and replaced only while `lock` is held (by `read` and
//! `replace_with`, the only code touching it); readers copy the bytes out before
//! releasing the lock, so the string a reader saw can be freed as soon as a writer has
//! swapped it out under the lock. A blob is allocated once, before fork
//! ([`SharedBlob::new_static`], or `alloc_static`), and never freed.
//!
//! Repair (issue 18): a process that dies holding the lock was reading (nothing
//! changed) or replacing (it may have swapped the bytes in without moving the
//! generation, or rewritten the state kept beside the blob half-way). The hook
//! registered by [`SharedBlob::new_static`] checks that the bytes lie inside the
//! segment (else the blob is emptied: the module's next reload fills it again) and moves
//! the generation, so every process re-reads bytes and state on its next use.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{FastLock, FastLockGuard, ShmSafe, ShmStr};

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

impl SharedBlob {
    /// An empty blob in shm for the rest of the program, with its repair hook registered
    /// (attendant, before fork); `what` names it in the repair log ("domain cache").
    pub fn new_static(what: &'static str) -> Option<&'static SharedBlob> {
        let b = crate::alloc_static(SharedBlob::new())?;
        crate::register_repair(
            &b.lock as *const FastLock as usize,
            size_of::<FastLock>(),
            what,
            repair_hook,
        );
        Some(b)
    }

    /// The check-and-repair of a blob whose lock a dead process held, `held` being that
    /// lock taken over (see the module doc). Returns what was done.
    pub fn repair(&self, held: &FastLockGuard<'_>) -> Result<Vec<String>, String> {
        if !std::ptr::eq(held.lock_ref(), &self.lock) {
            return Err("the guard is not this blob's lock".into());
        }
        let mut done = Vec::new();
        // SAFETY: the lock is held (`held`, checked above): no process reads or writes
        // the cell meanwhile; the `ShmStr` (plain data) is copied out.
        let s = unsafe { *self.bytes.get() };
        let p = s.as_ptr().as_ptr() as usize;
        let inside = s.is_empty()
            || (crate::global::contains(p) && crate::global::contains(p + s.len() - 1));
        if !inside {
            // SAFETY: as above; a plain write with no reference into the cell alive. The
            // bad string is not freed (it is not a block of the heap).
            unsafe { *self.bytes.get() = ShmStr::empty() };
            done.push(format!(
                "dropped the cached bytes ({} at {p:#x}, out of shared memory); the next reload fills it",
                s.len()
            ));
        }
        let g = self.generation.fetch_add(1, Ordering::Release) + 1;
        done.push(format!(
            "generation moved to {g}: every process re-reads the {} byte(s)",
            if inside { s.len() } else { 0 }
        ));
        Ok(done)
    }
}

fn repair_hook(lock: usize, held: FastLockGuard<'static>) -> Result<Vec<String>, String> {
    // SAFETY: this hook is registered only by `new_static`, for the lock of a blob that
    // lives in the never-unmapped segment for the rest of the program; the lock is the
    // first field of the `#[repr(C)]` struct, so its address is the blob's.
    let b = unsafe { &*(lock as *const SharedBlob) };
    let r = b.repair(&held);
    drop(held);
    r
}

impl Default for SharedBlob {
    fn default() -> Self {
        SharedBlob::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let _ = crate::init(16 << 20);
        });
    }

    #[test]
    fn repair_after_a_half_done_replace_moves_the_generation() {
        setup();
        let b = SharedBlob::new_static("test blob").unwrap();
        assert!(b.replace(b"old"));
        let g0 = b.generation();
        // A writer swapped new bytes in and died before moving the generation: a
        // reader's private copy of "old" (generation g0) would stay in use forever.
        {
            let _g = b.lock.lock();
            let new = ShmStr::new(b"new").unwrap();
            // SAFETY: the lock is held; plain swap, as `replace_with` does.
            let old = unsafe { std::ptr::replace(b.bytes.get(), new) };
            old.free();
        }
        assert_eq!(b.generation(), g0);
        let g = b.lock.lock();
        let done = b.repair(&g).unwrap();
        drop(g);
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].contains("re-reads the 3 byte(s)"), "{done:?}");
        assert_eq!(b.read(), (g0 + 1, b"new".to_vec()));
    }

    #[test]
    fn repair_drops_bytes_outside_shared_memory() {
        setup();
        let b = SharedBlob::new_static("test blob").unwrap();
        assert!(b.replace(b"table"));
        let g0 = b.generation();
        let private = Box::leak(Box::new([7u8; 8]));
        {
            let _g = b.lock.lock();
            // A half-written cell: a pointer that is not into the segment.
            // SAFETY: test only: the pointer is never dereferenced (the repair sees it
            // is outside the segment and drops it).
            let p = unsafe { crate::ShmPtr::from_raw(private.as_mut_ptr()) };
            let bogus = ShmStr::forged(p, 8);
            // SAFETY: the lock is held; plain write (the old bytes leak, test only).
            unsafe { *b.bytes.get() = bogus };
        }
        let g = b.lock.lock();
        let done = b.repair(&g).unwrap();
        drop(g);
        assert!(
            done[0].contains("dropped the cached bytes (8 at"),
            "{done:?}"
        );
        assert_eq!(b.read(), (g0 + 1, Vec::new()));
        // The module's next reload works as before.
        assert!(b.replace(b"reloaded"));
        assert_eq!(b.read().1, b"reloaded".to_vec());
    }

    #[test]
    fn repair_refuses_a_foreign_guard() {
        setup();
        let b = SharedBlob::new_static("test blob").unwrap();
        let other = FastLock::new();
        let g = other.lock();
        assert!(b.repair(&g).is_err());
    }
}

//! Types that may be stored in shared memory: the [`ShmSafe`] marker, [`ShmPtr`] and
//! [`ShmStr`].
//!
//! Soundness argument shared by [`ShmPtr::as_ref`] and [`ShmStr::as_bytes`] (both safe):
//! a non-null `ShmPtr`/`ShmStr` can only be made by the shm allocator (which returns memory
//! holding an initialised value) or by the `unsafe` [`ShmPtr::from_raw`] whose caller vouches
//! for the same. The segment is mapped before the first fork at the same address in every
//! process and is never unmapped, so the address is always valid memory. Freeing is the
//! operation that ends validity, and it is `unsafe` ([`crate::free`]) with the contract that
//! no copy of the pointer is used afterwards; [`ShmStr::free`] is safe by the crate contract
//! (the root crate forbids `unsafe`) and carries the same rule in its documentation.
//! Shared mutation between processes must go through interior mutability (atomics,
//! [`crate::FastLock`]-protected `UnsafeCell`s) or raw pointers from [`ShmPtr::as_ptr`].

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicBool, AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicPtr, AtomicU8,
    AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use crate::global;
use crate::lock::FastLock;

/// Marker for types that may live in shared memory.
///
/// # Safety
/// Implement only for `#[repr(C)]` (or primitive) plain data that holds no pointer into
/// private memory: no `Box`, `Vec`, `String`, `Arc`, `&T` to private data, no function
/// pointers or trait objects; only numbers, atomics, [`FastLock`]s, [`ShmPtr`]s, [`ShmStr`]s,
/// offsets and arrays/structs of those. The type must need no `Drop` (shm frees do not run
/// destructors).
pub unsafe trait ShmSafe {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: primitive plain data with no pointers.
        unsafe impl ShmSafe for $t {}
    )* };
}

shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    bool,
    f32,
    f64,
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
    FastLock,
    ShmStr,
    ()
);

// SAFETY: an array of shm-safe elements is shm-safe (same layout rules, no extra pointers).
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
// SAFETY: a ShmPtr is an address inside the shared segment (see the type's invariant).
unsafe impl<T> ShmSafe for ShmPtr<T> {}
// SAFETY: UnsafeCell<T> has the layout of T and adds no pointers.
unsafe impl<T: ShmSafe> ShmSafe for std::cell::UnsafeCell<T> {}

/// An address inside the shared segment (valid in every process, since the mapping is
/// inherited at the same address). Null is allowed and is the `Default`.
#[repr(transparent)]
pub struct ShmPtr<T> {
    ptr: *mut T,
    _t: PhantomData<T>,
}

// SAFETY: a ShmPtr behaves like `&T` to memory every process (and thread) may reach, so
// sharing or sending it is sound exactly when sharing `&T` is: `T: Sync`.
unsafe impl<T: Sync> Send for ShmPtr<T> {}
// SAFETY: as for Send.
unsafe impl<T: Sync> Sync for ShmPtr<T> {}

/// A [`ShmPtr`] field whose loads and stores are atomic (relaxed: plain moves on
/// x86-64), for a link that the lock holder reads and writes and that a process without
/// the lock may still glance at to prefetch its target ([`AtomicShmPtr::prefetch_target`]:
/// a hint, the value never leaves it). [`AtomicShmPtr::load`] is for code that holds the
/// lock serialising the stores, as for any other field of the structure.
#[repr(transparent)]
pub struct AtomicShmPtr<T> {
    ptr: AtomicPtr<T>,
}

// SAFETY: an atomic pointer into the segment, nothing else (see ShmPtr).
unsafe impl<T> ShmSafe for AtomicShmPtr<T> {}

impl<T> AtomicShmPtr<T> {
    /// A null link.
    pub const fn null() -> Self {
        AtomicShmPtr {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The link, read under the lock that serialises its stores.
    pub fn load(&self) -> ShmPtr<T> {
        ShmPtr {
            ptr: self.ptr.load(Ordering::Relaxed),
            _t: PhantomData,
        }
    }

    /// Set the link (under the lock that serialises the stores).
    pub fn store(&self, p: ShmPtr<T>) {
        self.ptr.store(p.ptr, Ordering::Relaxed);
    }

    /// Prefetch whatever the link points to now, read without any lock: the value may
    /// be stale or null by the time the line arrives, which costs only the wasted
    /// prefetch ([`ShmPtr::prefetch`] accepts any address).
    pub fn prefetch_target(&self) {
        self.load().prefetch();
    }
}

impl<T> fmt::Debug for AtomicShmPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AtomicShmPtr({:p})", self.ptr.load(Ordering::Relaxed))
    }
}

impl<T> Clone for ShmPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ShmPtr<T> {}

impl<T> PartialEq for ShmPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}
impl<T> Eq for ShmPtr<T> {}

impl<T> Default for ShmPtr<T> {
    fn default() -> Self {
        Self::null()
    }
}

impl<T> fmt::Debug for ShmPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShmPtr({:p})", self.ptr)
    }
}

impl<T> ShmPtr<T> {
    /// The null pointer.
    pub const fn null() -> Self {
        ShmPtr {
            ptr: std::ptr::null_mut(),
            _t: PhantomData,
        }
    }

    /// Wraps a raw address.
    ///
    /// # Safety
    /// `p` must be null, or point to an initialised `T` inside the shared segment that stays
    /// allocated as long as this pointer (or any copy) is dereferenced.
    pub const unsafe fn from_raw(p: *mut T) -> Self {
        ShmPtr {
            ptr: p,
            _t: PhantomData,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        self.ptr.is_null()
    }

    /// The raw address (for code that mutates non-atomic fields under a lock).
    pub fn as_ptr(&self) -> *mut T {
        self.ptr
    }

    /// The address as an integer (for hashing, logging, offsets).
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// Ask the CPU to start loading the cache line at this address, so that a later
    /// access (after other work) does not wait for memory: a lookup in a table larger
    /// than the caches issues this for the slot it will lock, then does its lock-free
    /// work, then locks. Only a hint: nothing is read into the program, and any address
    /// (null, stale, freed) is allowed. A no-op on other architectures.
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHT0 reads nothing into the program and never faults, whatever
        // the address; its target feature (sse) is part of the x86_64 baseline that every
        // build of this crate has (the call is `unsafe` only because of that attribute).
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                self.ptr as *const i8,
            )
        };
    }

    /// A reference to the pointee, or `None` when null. See the module docs for why this is
    /// safe; the pointee must have been freed by nobody (the `unsafe` free contract).
    pub fn get(&self) -> Option<&T> {
        // SAFETY: non-null ShmPtrs come from the allocator or `from_raw` and point to an
        // initialised T in the never-unmapped segment; freeing is `unsafe` and requires that
        // no copy is used afterwards (module docs).
        unsafe { self.ptr.as_ref() }
    }

    /// A reference to the pointee.
    ///
    /// # Panics
    /// On a null pointer (a programming error, never input-driven); use [`ShmPtr::get`]
    /// where null is expected.
    // The name is the crate contract; `AsRef` cannot be implemented (it would need a
    // non-null invariant the type does not have).
    #[allow(clippy::should_implement_trait)]
    pub fn as_ref(&self) -> &T {
        match self.get() {
            Some(r) => r,
            None => panic!("ShmPtr::as_ref on a null pointer"),
        }
    }
}

/// Bytes copied into shared memory (`ptr` + `len`, `len` < 4 GiB).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ShmStr {
    ptr: ShmPtr<u8>,
    len: u32,
}

impl ShmStr {
    /// Copies `bytes` into shm. `None` when shm is full or not initialised, or
    /// `bytes.len() >= 4 GiB`. An empty input gives [`ShmStr::empty`] without allocating.
    pub fn new(bytes: &[u8]) -> Option<ShmStr> {
        if bytes.is_empty() {
            return Some(ShmStr::empty());
        }
        let len = u32::try_from(bytes.len()).ok()?;
        let p = global::alloc_bytes(bytes.len())?;
        // SAFETY: `p` is a fresh allocation of at least `bytes.len()` bytes, disjoint from
        // `bytes` (which is private memory or another allocation).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr(), bytes.len()) };
        // SAFETY: `p` points to `len` initialised bytes in the segment.
        let ptr = unsafe { ShmPtr::from_raw(p.as_ptr()) };
        Some(ShmStr { ptr, len })
    }

    /// A string of `len` bytes at `ptr`, unchecked (tests that forge a corrupt cell).
    #[cfg(test)]
    pub(crate) fn forged(ptr: ShmPtr<u8>, len: u32) -> ShmStr {
        ShmStr { ptr, len }
    }

    /// The empty string (null pointer, length 0).
    pub const fn empty() -> ShmStr {
        ShmStr {
            ptr: ShmPtr::null(),
            len: 0,
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: a non-empty ShmStr is made only by `new`, which copied `len` bytes to `ptr`
        // in the never-unmapped segment; see the module docs on freeing.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len as usize) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shm address of the bytes (null when empty).
    pub fn as_ptr(&self) -> ShmPtr<u8> {
        self.ptr
    }

    /// Returns the bytes to the shm heap. No copy of this `ShmStr` may be used afterwards
    /// (it is `Copy`: the owner of the structure holding it is responsible for freeing it
    /// once). Freeing the empty string does nothing.
    pub fn free(self) {
        if let Some(p) = NonNull::new(self.ptr.as_ptr()) {
            // SAFETY: a non-null ShmStr pointer comes from `global::alloc_bytes` in `new`;
            // the no-use-after-free rule is this function's documented contract.
            unsafe { global::free_bytes(p) };
        }
    }
}

// SAFETY: a ShmStr is an immutable byte slice in shm (bytes are never written after `new`).
unsafe impl Send for ShmStr {}
// SAFETY: as for Send.
unsafe impl Sync for ShmStr {}

impl Default for ShmStr {
    fn default() -> Self {
        ShmStr::empty()
    }
}

impl PartialEq for ShmStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for ShmStr {}

impl fmt::Debug for ShmStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShmStr({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

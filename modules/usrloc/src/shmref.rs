//! usrloc's unsafe code (besides the argued `unsafe impl ShmSafe` lines of `udomain.rs`,
//! `hslot.rs`, `urecord.rs` and `ucontact.rs`): turning shm pointers into references.
//!
//! Module invariant (upheld by every caller inside `usrloc`, never exposed outside):
//! * every record and contact is reachable from exactly one slot and is read or
//!   written only while that slot's lock is held, which the `&SlotGuard` /
//!   `&mut SlotGuard` argument proves (shared borrow = read, exclusive borrow = write,
//!   so Rust's aliasing rules hold inside this process, and the lock excludes all
//!   other processes);
//! * callers pass only pointers reached from the guard's own slot head (or objects
//!   they have just allocated and not yet published);
//! * objects are freed only after being unlinked, under the same lock, and no
//!   reference into them outlives the guard borrow;
//! * "forever" objects (the slot array, domain statistics) are allocated when a domain
//!   is created and never freed; of a slot, only the lock (an atomic) is reached
//!   without the guard.
#![allow(unsafe_code)]

use shm::{FastLock, ShmPtr, ShmSafe, ShmStr};

use super::hslot::{Slot, SlotHead};
use super::udomain::SlotGuard;

/// A shared reference to a never-freed shm object made only of atomics.
pub(super) fn forever<T: ShmSafe + Sync>(p: ShmPtr<T>) -> Option<&'static T> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null; points to a live allocation that is never freed (module
    // invariant: only domain statistics are passed here), and the type
    // is only ever accessed through shared references (atomics), so `'static` shared
    // access is sound in every process that inherited the mapping.
    Some(unsafe { &*p.as_ptr() })
}

/// A zero-filled shm array of `n` `T`s (the slots), counted in tests.
pub(super) fn alloc_zeroed<T: ShmSafe>(n: usize) -> Option<ShmPtr<T>> {
    if inject::fail_now() {
        return None;
    }
    let p = shm::alloc_zeroed_array::<T>(n);
    if p.is_some() {
        inject::count(1);
    }
    p
}

/// Element `i` of a domain's slot array `base` of `n` slots.
fn slot_elem(base: ShmPtr<Slot>, n: usize, i: usize) -> *mut Slot {
    assert!(i < n && !base.is_null(), "slot index out of range");
    base.as_ptr().wrapping_add(i)
}

/// The lock of slot `i` of a domain's slot array `base` of `n` slots.
pub(super) fn slot_lock(base: ShmPtr<Slot>, n: usize, i: usize) -> &'static FastLock {
    let elem = slot_elem(base, n, i);
    // SAFETY: `base` points to a live array of `n` slots (allocated zeroed — a free
    // FastLock — by `UDomain::new` and never freed) and `i < n` was checked, so `elem`
    // is element `i`; the reference covers only its `lock` field, which is only used
    // through shared references (atomics), so a `'static` shared reference to it is
    // sound in every process, and it never overlaps the `head` field that `get_mut`
    // borrows exclusively.
    unsafe { &(*elem).lock }
}

/// The list head of slot `i` of a domain's slot array `base` of `n` slots.
pub(super) fn slot_head(base: ShmPtr<Slot>, n: usize, i: usize) -> ShmPtr<SlotHead> {
    let elem = slot_elem(base, n, i);
    // SAFETY: `i < n` keeps `elem` inside the live array; `addr_of_mut!` takes the
    // address of its `head` field without creating a reference. The result is only
    // dereferenced through `get`/`get_mut` with the slot's guard, like every other
    // pointer of the slot.
    let head = unsafe { std::ptr::addr_of_mut!((*elem).head) };
    // SAFETY: `head` is a valid, aligned pointer into the shm array (just computed).
    unsafe { ShmPtr::from_raw(head) }
}

/// Prefetch the first record of slot `i` without taking its lock (a hint for a caller
/// about to lock it; see `SlotHead::first`).
pub(super) fn slot_prefetch_first(base: ShmPtr<Slot>, n: usize, i: usize) {
    let elem = slot_elem(base, n, i);
    // SAFETY: `i < n` keeps `elem` inside the live slot array (allocated by
    // `UDomain::new`, never freed). The shared reference covers only the head's `first`
    // field, an atomic that every process only ever loads and stores atomically, and it
    // lives for this call only; a `&mut SlotHead` exists only inside a `SlotGuard` method
    // of this module for one operation and never across a call to this function.
    let first = unsafe { &(*elem).head.first };
    first.prefetch_target();
}

/// Read access to a record/contact/slot head of the guard's slot.
pub(super) fn get<'g, T: ShmSafe>(_held: &'g SlotGuard<'_>, p: ShmPtr<T>) -> Option<&'g T> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and live (freed only after unlinking under this same lock);
    // the slot lock is held for `'g` (the guard is borrowed), and no `&mut` to this
    // object can exist while the guard is shared-borrowed.
    Some(unsafe { &*p.as_ptr() })
}

/// Write access to a record/contact/slot head of the guard's slot.
pub(super) fn get_mut<'g, T: ShmSafe>(
    _held: &'g mut SlotGuard<'_>,
    p: ShmPtr<T>,
) -> Option<&'g mut T> {
    if p.is_null() {
        return None;
    }
    // SAFETY: as for `get`; the guard is exclusively borrowed for `'g`, so this is the
    // only reference to the object in this process, and the lock excludes others.
    Some(unsafe { &mut *p.as_ptr() })
}

/// `shm::alloc`, counted (and failable on demand) in tests.
pub(super) fn alloc<T: ShmSafe>(val: T) -> Option<ShmPtr<T>> {
    if inject::fail_now() {
        return None;
    }
    let p = shm::alloc(val);
    if p.is_some() {
        inject::count(1);
    }
    p
}

/// An object stored with a byte tail in the same shm allocation, right after it (a
/// record's AOR, a contact's strings), so reading the object and its strings touches
/// adjacent cache lines of one block instead of a second block elsewhere.
///
/// Contract of implementors: `tail_len` never exceeds the `cap` the object was
/// allocated with by [`alloc_tailed`] (it is a field set at allocation and never
/// raised), so the tail slice stays inside the allocation.
pub(super) trait Tailed: ShmSafe {
    fn tail_len(&self) -> usize;
}

/// `val` followed by `cap` bytes (the first `tail.len()` of them copied from `tail`,
/// the rest zero) in one shm allocation, counted in tests. `None` when shm is full or
/// `tail` is longer than `cap`.
pub(super) fn alloc_tailed<T: Tailed>(val: T, tail: &[u8], cap: usize) -> Option<ShmPtr<T>> {
    const { assert!(std::mem::align_of::<T>() <= 16) };
    if tail.len() > cap || val.tail_len() > cap {
        return None;
    }
    if inject::fail_now() {
        return None;
    }
    let size = std::mem::size_of::<T>() + cap;
    let raw = shm::alloc_bytes(size)?.as_ptr();
    let obj = raw.cast::<T>();
    // SAFETY: `raw` is a fresh 16-aligned allocation of `size` bytes (align_of::<T>() <=
    // 16, checked above), owned by nobody else yet; `T` fits at its start.
    unsafe { obj.write(val) };
    let t = raw.wrapping_add(std::mem::size_of::<T>());
    // SAFETY: the `cap` bytes after the object are inside the allocation (size = T + cap)
    // and disjoint from `tail` (private memory or another allocation).
    unsafe { std::ptr::write_bytes(t, 0, cap) };
    // SAFETY: as above; `tail.len() <= cap` was checked.
    unsafe { std::ptr::copy_nonoverlapping(tail.as_ptr(), t, tail.len()) };
    inject::count(1);
    // SAFETY: `obj` points to an initialised `T` in the segment, freed only by `dispose`.
    Some(unsafe { ShmPtr::from_raw(obj) })
}

/// The byte tail of an object of the guard's slot made by [`alloc_tailed`].
fn tail_ptr<T: Tailed>(p: ShmPtr<T>) -> *mut u8 {
    p.as_ptr()
        .cast::<u8>()
        .wrapping_add(std::mem::size_of::<T>())
}

/// Read access to an object made by [`alloc_tailed`] and its tail (lock held, as `get`).
pub(super) fn get_tailed<'g, T: Tailed>(
    held: &'g SlotGuard<'_>,
    p: ShmPtr<T>,
) -> Option<(&'g T, &'g [u8])> {
    let obj = get(held, p)?;
    let len = obj.tail_len();
    // SAFETY: `p` was made by `alloc_tailed` (caller: only records and contacts, which
    // are all allocated so) with at least `tail_len()` bytes after the object (trait
    // contract), initialised there; the bytes are disjoint from the `T` and read under
    // the same held lock as `get`, with no `&mut` alive while the guard is shared.
    let t = unsafe { std::slice::from_raw_parts(tail_ptr(p), len) };
    Some((obj, t))
}

/// Write access to an object made by [`alloc_tailed`] and its tail (as `get_mut`); the
/// two borrows are disjoint (the tail starts after the object).
pub(super) fn get_tailed_mut<'g, T: Tailed>(
    held: &'g mut SlotGuard<'_>,
    p: ShmPtr<T>,
) -> Option<(&'g mut T, &'g mut [u8])> {
    let obj = get_mut(held, p)?;
    let len = obj.tail_len();
    // SAFETY: as `get_tailed`; the guard is exclusively borrowed for `'g`, so this is the
    // only reference to these bytes in this process, and they do not overlap `obj`.
    let t = unsafe { std::slice::from_raw_parts_mut(tail_ptr(p), len) };
    Some((obj, t))
}

/// `ShmStr::new` (empty strings allocate nothing), counted in tests.
pub(super) fn alloc_str(bytes: &[u8]) -> Option<ShmStr> {
    if bytes.is_empty() {
        return Some(ShmStr::empty());
    }
    if inject::fail_now() {
        return None;
    }
    let s = ShmStr::new(bytes);
    if s.is_some() {
        inject::count(1);
    }
    s
}

/// Free an object that has been unlinked (or never published).
pub(super) fn dispose<T: ShmSafe>(p: ShmPtr<T>) {
    if p.is_null() {
        return;
    }
    inject::count(-1);
    // SAFETY: module invariant: `p` came from `shm::alloc`, is unreachable from any
    // slot, and no reference into it is alive; it is freed exactly once.
    unsafe { shm::free(p) }
}

/// Free a string owned by an object being disposed (the string came from
/// `ShmStr::new`, its owner is unlinked or was never published, and it is freed once).
pub(super) fn dispose_str(s: ShmStr) {
    if !s.is_empty() {
        inject::count(-1);
    }
    s.free()
}

// SAFETY: a `UDomain` is immutable after creation; what its `ShmPtr`s reach is either
// atomics (statistics, locks) or slot data accessed only while holding that slot's
// `FastLock`, a compare-and-swap from 0 that excludes other threads as well as other
// processes. Sharing or sending the handle therefore cannot cause a data race.
unsafe impl Sync for super::udomain::UDomain {}
// SAFETY: as above; the handle owns nothing thread-affine.
unsafe impl Send for super::udomain::UDomain {}

/// Allocation failure injection and a live-allocation count, per thread, for tests
/// (no-ops otherwise).
#[cfg(test)]
pub(super) mod inject {
    use std::cell::Cell;

    thread_local! {
        static FAIL_AT: Cell<u32> = const { Cell::new(0) };
        static LIVE: Cell<i64> = const { Cell::new(0) };
    }

    /// Make the `n`th usrloc allocation from now fail (0 = none).
    pub(in super::super) fn fail_nth(n: u32) {
        FAIL_AT.with(|f| f.set(n));
    }

    /// usrloc allocations minus frees made by this thread.
    pub(in super::super) fn live() -> i64 {
        LIVE.with(Cell::get)
    }

    pub(super) fn fail_now() -> bool {
        FAIL_AT.with(|f| match f.get() {
            0 => false,
            1 => {
                f.set(0);
                true
            }
            n => {
                f.set(n - 1);
                false
            }
        })
    }

    pub(super) fn count(d: i64) {
        LIVE.with(|l| l.set(l.get() + d));
    }
}

#[cfg(not(test))]
mod inject {
    #[inline(always)]
    pub(super) fn fail_now() -> bool {
        false
    }

    #[inline(always)]
    pub(super) fn count(_d: i64) {}
}

//! Shared memory for openser-rs: one anonymous `MAP_SHARED` mapping created by the
//! attendant before it forks, an allocator over it, spinlocks that live in it, and
//! the pointer/string types that may be stored in it.
//!
//! Contract used by the rest of the server (see ARCHITECTURE.md):
//! - [`init`] once in the attendant, before the first fork; every child inherits the
//!   mapping at the same address, so [`ShmPtr`] is a plain address valid everywhere.
//! - [`alloc()`]/[`alloc_bytes`]/[`ShmStr::new`] return `None` when the segment is full.
//! - [`FastLock`] is an `AtomicU32` holding the owner's pid; each process records the
//!   locks it holds so the attendant can [`force_unlock_dead`] a reaped child.
//! - Each child calls [`set_process_slot`] right after fork (its process-table index), so
//!   its lock records land in its own row of the held-lock table and its pid is cached.
//!
//! Modules: [`segment`] (the mapping), [`mod@alloc`] (the allocator, usable over any byte
//! buffer), [`lock`] (FastLock, LockSet), [`ptr`] (ShmSafe, ShmPtr, ShmStr), [`global`] (the
//! process-wide segment and its typed allocation helpers), [`blob`] (SharedBlob: bytes
//! published to every process, replaced whole, with a generation).
//!
//! Lock order: the heap lock is a leaf. The allocator never takes another lock while holding
//! it, and callers may allocate while holding any other lock.
#![allow(unsafe_code)] // this crate is the shared-memory layer: its unsafe is argued block by block

pub mod alloc;
pub mod blob;
pub mod global;
pub mod lock;
pub mod ptr;
pub mod segment;

pub use alloc::{Heap, MemStats};
pub use blob::SharedBlob;
pub use global::{
    DeadHook, DeadReport, RepairFn, Repaired, alloc, alloc_bytes, alloc_failures, alloc_static,
    alloc_static_slice_with, alloc_zeroed_array, current_pid, force_unlock_dead, free, free_bytes,
    init, is_initialized, register_dead_hook, register_repair, repair_dead, set_process_slot,
    stats, status_dump,
};
pub use lock::{FastLock, FastLockGuard, LockSet};
pub use ptr::{AtomicShmPtr, ShmPtr, ShmSafe, ShmStr};
pub use segment::Segment;

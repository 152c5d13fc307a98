//! dispatcher's shared-memory types: per-destination, per-set and per-call slots, all
//! atomics (the destination list itself is a `shm::SharedBlob`).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64};

use shm::ShmSafe;

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

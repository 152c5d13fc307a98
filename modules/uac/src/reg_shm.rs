//! The shared-memory type of remote registration: one slot of the fixed record table
//! (`reg.rs`), all atomics. Kept apart so the one `unsafe impl` is argued here.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64};

use shm::ShmSafe;

/// The run-time state of one registration record. Every field is read and written
/// under the table lock (`reg::RegGuard`); the strings of the record live in the
/// published image, keyed by the slot index.
#[repr(C)]
#[derive(Default)]
pub struct RegSlot {
    /// hash of the record's `l_uuid` (0 = free slot)
    pub key: AtomicU64,
    /// wall-clock seconds when the timer acts on the record next (`u64::MAX`: never)
    pub due: AtomicU64,
    /// wall-clock seconds of the last 2xx
    pub since: AtomicU64,
    /// raised each time the slot is given to a record (callbacks name slot + serial)
    pub serial: AtomicU32,
    /// `reg::ST_*`
    pub state: AtomicU32,
    /// CSeq number of the last REGISTER sent
    pub cseq: AtomicU32,
    /// seconds granted by the registrar in its last 2xx
    pub expires: AtomicU32,
    /// status of the last final reply (408 for a timeout)
    pub last_code: AtomicU32,
    pub _pad: AtomicU32,
}
// SAFETY: `#[repr(C)]` of atomics only: no pointers, valid when zeroed, shared safely.
unsafe impl ShmSafe for RegSlot {}

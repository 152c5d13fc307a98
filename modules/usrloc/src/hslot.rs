//! Hash slots: the AOR hash and the per-slot list head kept in shm.

use shm::{AtomicShmPtr, FastLock, ShmSafe};

use super::urecord::URecord;

/// One hash slot: its lock and its list head side by side in one array element (32
/// bytes, two to a cache line), so taking the lock brings the head with it: a lookup in
/// a table larger than the caches pays one miss for both, not two. The lock is only
/// ever reached through a shared reference to the `lock` field and the head through a
/// pointer to the `head` field (`shmref::slot_lock`/`slot_head`): the two borrows are
/// disjoint, so the lock can be held `'static` while the head is mutated.
#[repr(C)]
pub(super) struct Slot {
    pub(super) lock: FastLock,
    pub(super) head: SlotHead,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

// SAFETY: #[repr(C)] plain data: a FastLock (an atomic) and a SlotHead (below).
#[allow(unsafe_code)]
unsafe impl ShmSafe for Slot {}

/// Head of one slot's doubly linked list of records.
#[repr(C)]
pub(super) struct SlotHead {
    /// The first record. Atomic so that a process about to lock the slot may prefetch
    /// the record it will most likely want (`shmref::slot_prefetch_first`) without the
    /// lock; read and written under the lock like every other field.
    pub(super) first: AtomicShmPtr<URecord>,
    /// Number of records in the slot.
    pub(super) n: u32,
    /// When the expiry walk next has work in this slot (seconds, as contacts'
    /// `expires`): a lower bound of every contact's non-zero `expires`, or 1 ("at once")
    /// while a record may be left without contacts; 0 when nothing in the slot will ever
    /// be due. Lowered on every insert/update and on a record left empty, recomputed
    /// exactly by the walk, so the walk skips a slot whose `due` is 0 or in the future
    /// without touching its records.
    pub(super) due: i64,
}

// SAFETY: #[repr(C)] plain data: an atomic shm pointer and integers.
#[allow(unsafe_code)]
unsafe impl ShmSafe for SlotHead {}

/// Hash of an AOR: FNV-1a over the bytes (ASCII-lowercased unless `case_sensitive`)
/// followed by the murmur3 finaliser, so the low bits used for the slot index are
/// well mixed even for AORs differing only in a trailing digit ("user12345").
pub fn ul_hash(aor: &[u8], case_sensitive: bool) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in aor {
        let b = if case_sensitive {
            b
        } else {
            b.to_ascii_lowercase()
        };
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Whether two AORs name the same record.
pub(super) fn aor_eq(a: &[u8], b: &[u8], case_sensitive: bool) -> bool {
    if case_sensitive {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

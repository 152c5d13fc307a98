//! Nonce replay protection (issue 18; Kamailio's `nonce_count` / `one_time_nonce`).
//!
//! Every nonce issued while protection is on carries an id (see [`super::nonce`]): a
//! counter shared by all processes. The id selects a slot of a fixed table in shm
//! (`slot = id mod size`); the slot remembers which id was issued into it last and, for
//! that nonce, the highest `nc` accepted and whether it was used without qop. A nonce
//! whose slot has since been given to a newer nonce (more nonces in flight than slots)
//! is stale: the UA is challenged again with `stale=true` and answers without asking
//! its user.
//!
//! Layout (all `#[repr(C)]` atomics, no pointers): `ids[size]`, `state[size]`,
//! `locks[LOCKS]` (slot `i` is under lock `i mod LOCKS`), `next` (the id counter).
//! `state`: bit 31 = a nonce was issued into the slot (cleared by repair), bit 30 = the
//! nonce was used once without qop, bits 0..30 = the highest nc accepted.
//! Slots are read and written only through a [`SlotGuard`], which holds the slot's lock.
//!
//! Repair: a process that dies holding a stripe lock may have left one slot half
//! written (its id changed but not its state). The hook invalidates every slot of the
//! stripe: their nonces become stale, which costs their UAs one more challenge and
//! never lets a replay through.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use shm::{FastLock, FastLockGuard};

/// Stripe locks (a power of two).
pub const LOCKS: usize = 1024;
const ISSUED: u32 = 1 << 31;
const OTN_USED: u32 = 1 << 30;
const NC_MASK: u32 = OTN_USED - 1;

/// The shared table (references into the shm segment, fixed before fork).
pub struct NcTable {
    ids: &'static [AtomicU32],
    state: &'static [AtomicU32],
    locks: &'static [FastLock],
    next: &'static AtomicU32,
}

static TABLE: OnceLock<NcTable> = OnceLock::new();

/// What the table says about a nonce presented with a correct response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (and recorded).
    Ok,
    /// The slot holds a newer nonce (or was repaired): challenge again, stale.
    Overwritten,
    /// `nc` not above the highest accepted for this nonce: a replay.
    NcReplay,
    /// A no-qop nonce already used once (`one_time_nonce`).
    OtnReused,
}

/// The checks to apply (the module parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks {
    pub nonce_count: bool,
    pub one_time_nonce: bool,
}

/// A slot under its lock: the only way to read or write it.
pub struct SlotGuard<'t> {
    t: &'t NcTable,
    slot: usize,
    _g: FastLockGuard<'t>,
}

impl SlotGuard<'_> {
    fn id(&self) -> u32 {
        self.t.ids[self.slot].load(Ordering::Relaxed)
    }
    fn state(&self) -> u32 {
        self.t.state[self.slot].load(Ordering::Relaxed)
    }
    fn set(&self, id: u32, state: u32) {
        self.t.ids[self.slot].store(id, Ordering::Relaxed);
        self.t.state[self.slot].store(state, Ordering::Relaxed);
    }
    fn set_state(&self, state: u32) {
        self.t.state[self.slot].store(state, Ordering::Relaxed);
    }
}

impl NcTable {
    /// Allocate a table of `size` slots (rounded up to a power of two, at least LOCKS)
    /// in shm. `None` when shm is full.
    pub fn alloc(size: usize) -> Option<NcTable> {
        let size = size.max(LOCKS).checked_next_power_of_two()?;
        Some(NcTable {
            ids: shm::alloc_static_slice_with(size, |_| AtomicU32::new(0))?,
            state: shm::alloc_static_slice_with(size, |_| AtomicU32::new(0))?,
            locks: shm::alloc_static_slice_with(LOCKS, |_| FastLock::new())?,
            next: shm::alloc_static(AtomicU32::new(1))?,
        })
    }

    pub fn size(&self) -> usize {
        self.ids.len()
    }

    fn slot_of(&self, id: u32) -> usize {
        id as usize & (self.size() - 1)
    }

    fn lock_slot(&self, slot: usize) -> SlotGuard<'_> {
        SlotGuard {
            t: self,
            slot,
            _g: self.locks[slot % LOCKS].lock(),
        }
    }

    /// A new nonce id, its slot reset for it.
    pub fn issue(&self) -> u32 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let g = self.lock_slot(self.slot_of(id));
        g.set(id, ISSUED);
        id
    }

    /// Check (and record) the use of nonce `id` with `nc` (`None` = no qop).
    pub fn check(&self, id: u32, nc: Option<u32>, c: Checks) -> Verdict {
        let g = self.lock_slot(self.slot_of(id));
        let st = g.state();
        if g.id() != id || st & ISSUED == 0 {
            return Verdict::Overwritten;
        }
        match nc {
            Some(nc) if c.nonce_count => {
                let nc = nc.min(NC_MASK);
                if nc <= st & NC_MASK {
                    return Verdict::NcReplay;
                }
                g.set_state((st & !NC_MASK) | nc);
            }
            Some(_) => {}
            None if c.one_time_nonce => {
                if st & OTN_USED != 0 {
                    return Verdict::OtnReused;
                }
                g.set_state(st | OTN_USED);
            }
            None => {}
        }
        Verdict::Ok
    }

    /// The repair of a stripe taken over from a dead process: every slot of stripe
    /// `stripe` is invalidated. Returns how many held a nonce.
    fn invalidate_stripe(&self, stripe: usize, held: FastLockGuard<'static>) -> usize {
        let mut n = 0;
        let mut slot = stripe;
        while slot < self.size() {
            let st = &self.state[slot];
            if st.load(Ordering::Relaxed) & ISSUED != 0 {
                n += 1;
            }
            st.store(0, Ordering::Relaxed);
            slot += LOCKS;
        }
        drop(held);
        n
    }
}

/// Create the table in the attendant (mod_init, before fork) and register its repair
/// hook. Idempotent.
pub fn init(size: usize) -> Result<(), String> {
    if TABLE.get().is_some() {
        return Ok(());
    }
    if !shm::is_initialized() {
        return Err("auth: shared memory is not initialised".into());
    }
    let t = NcTable::alloc(size).ok_or_else(|| {
        format!("auth: no shared memory for the nonce table ({size} slots, nc_array_size)")
    })?;
    let base = t.locks.as_ptr() as usize;
    shm::register_repair(
        base,
        LOCKS * size_of::<FastLock>(),
        "auth nonce table",
        repair,
    );
    let _ = TABLE.set(t);
    Ok(())
}

/// The table, when replay protection is on.
pub fn table() -> Option<&'static NcTable> {
    TABLE.get()
}

fn repair(lock: usize, held: FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TABLE.get().ok_or("auth: no nonce table")?;
    let base = t.locks.as_ptr() as usize;
    let off = lock.wrapping_sub(base);
    let stripe = off / size_of::<FastLock>();
    if lock < base || !off.is_multiple_of(size_of::<FastLock>()) || stripe >= LOCKS {
        return Err(format!("no auth nonce lock at {lock:#x}"));
    }
    if !std::ptr::eq(held.lock_ref(), &t.locks[stripe]) {
        return Err(format!(
            "auth nonce stripe {stripe}: the guard is not its lock"
        ));
    }
    let n = t.invalidate_stripe(stripe, held);
    Ok(vec![format!(
        "auth nonce stripe {stripe}: {n} nonce(s) invalidated (their UAs get a stale challenge)"
    )])
}

/// Parse an `nc` value (8 hex digits per RFC 2617; up to 8 accepted).
pub fn parse_nc(nc: &str) -> Option<u32> {
    if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repair of a stripe: its nonces become stale, the other stripes' stay valid.
    #[test]
    fn repair_invalidates_only_the_stripe() {
        let _ = shm::init(16 << 20);
        let t = NcTable::alloc(4 * LOCKS).expect("shm");
        let c = Checks {
            nonce_count: true,
            one_time_nonce: false,
        };
        let ids: Vec<u32> = (0..3 * LOCKS).map(|_| t.issue()).collect();
        let victim = t.slot_of(ids[5]) % LOCKS;
        let held = t.locks[victim].lock();
        assert_eq!(t.invalidate_stripe(victim, held), 3);
        for id in ids {
            let v = t.check(id, Some(1), c);
            if t.slot_of(id) % LOCKS == victim {
                assert_eq!(v, Verdict::Overwritten, "id {id}");
            } else {
                assert_eq!(v, Verdict::Ok, "id {id}");
            }
        }
        // The lock was released with the guard.
        assert!(!t.locks[victim].is_locked());
    }
}

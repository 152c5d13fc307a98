//! The usrloc slot repair hook (issue 18): when a process dies holding a slot lock, the
//! attendant takes the lock over and runs [`repair_slot`], which checks the slot's list
//! and drops the record the dead process left half-written.
//!
//! Also the test-only pause inside a slot's critical section ([`debug_pause`]): compiled
//! only in debug builds (`cfg(debug_assertions)`; the black-box tests run the debug
//! binary), and even there inert unless `OPENSER_DEBUG_USRLOC_PAUSE` names an AOR in the
//! environment at start-up. A release build has no such code at all.

use super::udomain::SlotGuard;

/// Registers the repair hook for a domain's slot array (`n` slots of 32 bytes at
/// `base`), in the attendant when the domain is created (before fork).
pub(super) fn register(base: usize, n: usize) {
    shm::register_repair(base, n * 32, "usrloc slot", repair_slot);
}

fn repair_slot(lock: usize, held: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    for d in super::domains() {
        if let Some(slot) = d.slot_of_lock(lock) {
            let mut g = SlotGuard::taken_over(d, slot, held);
            let r = g.repair();
            // The attendant writes no database changes: a dropped record never reached
            // the database (it had no contact), and nothing else is removed.
            g.unlock_then_flush();
            return r.map(|mut v| {
                for l in v.iter_mut() {
                    l.insert_str(0, &format!("{}: ", d.name()));
                }
                v
            });
        }
    }
    Err(format!("no usrloc slot at {lock:#x}"))
}

#[cfg(debug_assertions)]
static PAUSE_AOR: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();

/// Reads `OPENSER_DEBUG_USRLOC_PAUSE` (mod_init, attendant, debug builds only).
pub(super) fn init_debug_pause() {
    #[cfg(debug_assertions)]
    {
        let v = std::env::var_os("OPENSER_DEBUG_USRLOC_PAUSE")
            .map(|s| s.to_string_lossy().as_bytes().to_vec());
        if let Some(a) = &v {
            openser_core::log_warn!(
                "debug: a process inserting the record of {} will pause holding its slot lock",
                String::from_utf8_lossy(a)
            );
        }
        let _ = PAUSE_AOR.set(v);
    }
}

/// Debug builds: if `aor` is the configured one, stop here for good (inside the slot's
/// critical section, the record linked, no contact yet) so that a test can kill us.
#[cfg(debug_assertions)]
pub(super) fn debug_pause(aor: &[u8], slot: usize) {
    if PAUSE_AOR.get().and_then(|a| a.as_deref()) == Some(aor) {
        openser_core::log_warn!(
            "debug: process {} paused in usrloc slot {slot} inserting {}",
            std::process::id(),
            String::from_utf8_lossy(aor)
        );
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

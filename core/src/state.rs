//! Where state lives, by kind. Every process is single-threaded (invariant 1), so no
//! state needs a lock for threads; the kinds differ in who writes and when:
//!
//! 1. **Configuration**, written while the config loads (the attendant, before the
//!    first fork) and only read afterwards: module parameters in typed cells
//!    ([`crate::module::IntParam`], `StrParam`, `BoolParam`) bound by the exports table,
//!    data a module derives from them in `mod_init` in a `std::sync::OnceLock`, the
//!    globals (`crate::globals`), the fixed-up script. Children inherit it with the
//!    address space; nobody writes it after fork.
//! 2. **Tables built before fork**: what is registered while modules initialise and
//!    looked up afterwards, in a [`Registry`] (statistics names). Module functions,
//!    MI commands, timers and processes need none: they are declared.
//! 3. **Per-process mutable state** (the current transaction, a process's database
//!    connection, per-message marks): `thread_local!` with `Cell`/`RefCell`. In a
//!    process that never starts a thread a thread-local is a process-local, with no
//!    lock and no poisoning; under the test harness's threads each test gets its own.
//! 4. **Shared state** across processes lives in shm (`shm` crate) under its locks.
//!
//! No `static Mutex` anywhere else: a lock in a static would only guard against
//! threads that do not exist.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// An append-only table filled before fork and read after (kind 2 above). The lock
/// exists for the unit-test harness's threads; a server process takes it uncontended.
pub struct Registry<T>(Mutex<Vec<T>>);

impl<T> Registry<T> {
    pub const fn new() -> Registry<T> {
        Registry(Mutex::new(Vec::new()))
    }

    /// The entries, for reading or appending. No caller panics while holding it, so a
    /// poisoned lock (impossible with `panic = "abort"`) is taken as it is.
    pub fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry::new()
    }
}

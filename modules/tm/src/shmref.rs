//! tm's unsafe code (besides the argued `unsafe impl ShmSafe` lines of `h_table.rs`):
//! turning shm pointers into references, and freeing cells.
//!
//! Module invariants (upheld by every caller inside `tm`, never exposed outside):
//! * the hash table and the timer list head are allocated once by `mod_init` (attendant,
//!   before fork) and never freed;
//! * a [`Cell`] is allocated by `h_table::new_cell`, published by linking it into a hash
//!   entry (under that entry's lock) and into the timer list (under the timer lock);
//!   it is freed only by the timer process after it was unlinked from both, while
//!   holding the timer lock, and only when its `ref_count` is 0;
//! * `ref_count` is incremented only while the cell is reachable and the lock of the
//!   structure it was reached through is held (hash entry lock or timer lock); so a
//!   counted reference ([`CellRef`]) keeps the cell alive;
//! * the immutable part of a cell (key, cloned request) is written before publication
//!   and never changed; the mutable part (`Cell::st`) is accessed only through
//!   [`Cell::state`], which needs the cell's reply lock guard, exclusively borrowed;
//! * hash chain links are accessed only under the entry lock ([`Entry::head`]), timer
//!   links only under the timer lock.
#![allow(unsafe_code)]

use std::sync::atomic::Ordering;

use super::h_table::Links;

use shm::{FastLockGuard, ShmPtr};

use super::h_table::{Cell, CellState, Entry, TimerList};

// SAFETY: an `Entry` is shared by every process; its only non-atomic field (the chain
// head, in an UnsafeCell) is accessed only through `Entry::head`, which requires the
// entry's FastLock guard (a compare-and-swap spinlock excluding all other threads and
// processes).
unsafe impl Sync for Entry {}
// SAFETY: as for `Entry`: the list head is reached only under the timer lock.
unsafe impl Sync for TimerList {}
// SAFETY: cells are shared; all non-atomic mutable fields sit in UnsafeCells accessed
// only under the lock named in the module invariants.
unsafe impl Sync for Cell {}

impl Entry {
    /// The chain head; `g` must be this entry's lock guard.
    pub(super) fn head(&self, g: &FastLockGuard<'_>) -> ShmPtr<Cell> {
        debug_assert!(std::ptr::eq(g.lock_ref(), &self.lock));
        // SAFETY: the entry lock is held (guard borrowed) so no other process writes the
        // head; a plain copy is read, no reference escapes.
        unsafe { *self.head_cell.get() }
    }
    pub(super) fn set_head(&self, g: &FastLockGuard<'_>, p: ShmPtr<Cell>) {
        debug_assert!(std::ptr::eq(g.lock_ref(), &self.lock));
        // SAFETY: as for `head`; a plain write, no reference to the head is alive
        // (every access copies in or out).
        unsafe { *self.head_cell.get() = p }
    }
}

impl TimerList {
    /// The head of list `i` (a bucket, the reap or the idle list); `g` must be this
    /// shard's lock guard.
    pub(super) fn list_head(&self, g: &FastLockGuard<'_>, i: u32) -> ShmPtr<Cell> {
        debug_assert!(std::ptr::eq(g.lock_ref(), &self.lock));
        // SAFETY: as for `Entry::head`, with the shard's timer lock; a plain copy of one
        // element is read (an index past the array panics in the indexing, no access).
        unsafe { (*self.heads.get())[i as usize] }
    }
    pub(super) fn set_list_head(&self, g: &FastLockGuard<'_>, i: u32, p: ShmPtr<Cell>) {
        debug_assert!(std::ptr::eq(g.lock_ref(), &self.lock));
        // SAFETY: as for `Entry::set_head`, with the shard's timer lock.
        unsafe { (*self.heads.get())[i as usize] = p }
    }
    /// The last tick whose bucket was looked at; `g` must be this shard's lock guard.
    pub(super) fn last_tick(&self, g: &FastLockGuard<'_>) -> u64 {
        debug_assert!(std::ptr::eq(g.lock_ref(), &self.lock));
        // SAFETY: only touched under the shard's timer lock, held; copied out.
        unsafe { *self.last_tick.get() }
    }
    pub(super) fn set_last_tick(&self, g: &FastLockGuard<'_>, t: u64) {
        debug_assert!(std::ptr::eq(g.lock_ref(), &self.lock));
        // SAFETY: as for `last_tick`; a plain write, no reference alive.
        unsafe { *self.last_tick.get() = t }
    }
}

/// The timer list a cell is in; `_g` is its shard's timer lock guard.
pub(super) fn timer_list(_g: &FastLockGuard<'_>, c: &Cell) -> u32 {
    // SAFETY: a cell's list index is written only by `new_cell` before publication and
    // then under the timer lock, held; copied out.
    unsafe { *c.timer_list.get() }
}
pub(super) fn set_timer_list(_g: &FastLockGuard<'_>, c: &Cell, i: u32) {
    // SAFETY: as for `timer_list`; a plain write, no reference alive.
    unsafe { *c.timer_list.get() = i }
}

/// A cell reached through a hash chain or the timer list while the structure's lock
/// is held (`_g` proves it): valid for as long as that lock is held.
pub(super) fn cell_locked<'g>(_g: &'g FastLockGuard<'_>, p: ShmPtr<Cell>) -> Option<&'g Cell> {
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is linked in the structure whose lock `_g` holds; cells are freed
    // only after being unlinked under that lock, so it is live while `_g` is borrowed.
    Some(unsafe { &*p.as_ptr() })
}

/// Hash-chain links of a cell; `_g` is the cell's entry lock guard.
pub(super) fn hash_links(_g: &FastLockGuard<'_>, c: &Cell) -> Links {
    // SAFETY: hash links are only touched under the entry lock, held; copied out.
    unsafe { *c.hash_links.get() }
}
pub(super) fn set_hash_links(_g: &FastLockGuard<'_>, c: &Cell, l: Links) {
    // SAFETY: hash links are only touched under the entry lock, held; plain write with
    // no live reference to them (all accesses copy).
    unsafe { *c.hash_links.get() = l }
}

/// Timer-list links of a cell; `_g` is the timer lock guard.
pub(super) fn timer_links(_g: &FastLockGuard<'_>, c: &Cell) -> Links {
    // SAFETY: timer links are only touched under the timer lock, held; copied out.
    unsafe { *c.timer_links.get() }
}
pub(super) fn set_timer_links(_g: &FastLockGuard<'_>, c: &Cell, l: Links) {
    // SAFETY: as for `set_hash_links`, with the timer lock.
    unsafe { *c.timer_links.get() = l }
}

/// The reply lock of one cell, held: the only way to reach the cell's mutable state.
///
/// A final reply sent upstream under this lock queues the transaction callbacks
/// (`callbacks`, e.g. acc's SQL insert); they must run after the lock is released, so
/// code that may send a final reply ends the guard with
/// [`StateGuard::unlock_then_run_callbacks`], where the database round trip is visible.
/// Dropping the guard only releases the lock; dropping it with callbacks queued is a
/// bug, caught by a debug assertion (and logged in release builds, where the events
/// stay queued for this process's next explicit run).
#[must_use = "end the guard with unlock_then_run_callbacks() where a final reply may have been sent"]
pub struct StateGuard<'a> {
    cell: &'a Cell,
    g: Option<FastLockGuard<'a>>,
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        drop(self.g.take());
        if super::callbacks::queued() {
            debug_assert!(
                false,
                "tm: StateGuard dropped with transaction callbacks queued"
            );
            openser_core::log_crit!("BUG: a tm lock was released without running its callbacks");
        }
    }
}

impl<'a> StateGuard<'a> {
    pub(super) fn new(cell: &'a Cell) -> StateGuard<'a> {
        StateGuard {
            g: Some(cell.reply_lock.lock()),
            cell,
        }
    }

    /// Release the reply lock, then run the transaction callbacks queued while it was
    /// held (a no-op when no module registered one).
    pub fn unlock_then_run_callbacks(mut self) {
        drop(self.g.take());
        super::callbacks::flush();
    }

    /// The mutable transaction state of the locked cell.
    pub fn st(&mut self) -> &mut CellState {
        // SAFETY: this guard holds the cell's reply lock (taken in `new`, released on
        // drop) and is exclusively borrowed for the lifetime of the result, so this is
        // the only reference to the state in any process or in this one (the lock is
        // not re-entrant: a second guard for the same cell cannot exist meanwhile).
        unsafe { &mut *self.cell.st.get() }
    }
}

/// A counted reference to a cell: keeps it alive (see the module invariants).
pub struct CellRef {
    p: ShmPtr<Cell>,
}

impl CellRef {
    /// Take a reference to `c`, reached under a lock of a structure it is linked in.
    pub(super) fn take(c: &Cell) -> CellRef {
        c.ref_count.fetch_add(1, Ordering::AcqRel);
        let p = ptr_of(c);
        note_ref(p.as_ptr() as usize);
        CellRef { p }
    }

    /// Adopt the creator's reference of a freshly allocated cell (ref_count already 1).
    pub(super) fn adopt(p: ShmPtr<Cell>) -> CellRef {
        note_ref(p.as_ptr() as usize);
        CellRef { p }
    }

    pub fn ptr(&self) -> ShmPtr<Cell> {
        self.p
    }
}

impl Clone for CellRef {
    fn clone(&self) -> CellRef {
        CellRef::take(self)
    }
}

impl std::ops::Deref for CellRef {
    type Target = Cell;
    fn deref(&self) -> &Cell {
        // SAFETY: a CellRef holds one count of `ref_count`, so the cell is not freed
        // while it exists; only shared access is given out (mutation goes through locks).
        unsafe { &*self.p.as_ptr() }
    }
}

impl Drop for CellRef {
    fn drop(&mut self) {
        unnote_ref(self.p.as_ptr() as usize);
        self.ref_count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counted references recorded per process (more at once are simply not recorded).
const REFS_PER_PROC: usize = 16;

/// The reference ledger: for each process slot, the cells it holds a counted reference
/// to, so the attendant can give back a dead process's references (issue 18) and its
/// cells can be freed. An entry is written after the count is taken and erased before
/// it is given back, so an entry always stands for a count still held: the cell cannot
/// have been freed meanwhile. A process killed between the two steps leaves a count
/// without an entry (that cell is never freed: a leak, never a premature free).
static LEDGER: std::sync::OnceLock<&'static [std::sync::atomic::AtomicUsize]> =
    std::sync::OnceLock::new();

/// Allocate the ledger (attendant, mod_init, after the table).
pub(super) fn init_ledger() -> Result<(), String> {
    if LEDGER.get().is_some() {
        return Ok(());
    }
    let l = shm::alloc_static_slice_with(shm::global::MAX_PROCS * REFS_PER_PROC, |_| {
        std::sync::atomic::AtomicUsize::new(0)
    })
    .ok_or("tm: no shm for the reference ledger")?;
    let _ = LEDGER.set(l);
    shm::register_dead_hook("tm references", give_back_dead_refs);
    Ok(())
}

fn ledger_row(slot: usize) -> Option<&'static [std::sync::atomic::AtomicUsize]> {
    LEDGER
        .get()?
        .get(slot * REFS_PER_PROC..(slot + 1) * REFS_PER_PROC)
}

#[inline]
fn note_ref(a: usize) {
    if let Some(row) = ledger_row(shm::global::process_slot()) {
        for e in row {
            if e.load(Ordering::Relaxed) == 0 {
                e.store(a, Ordering::Release);
                return;
            }
        }
    }
}

#[inline]
fn unnote_ref(a: usize) {
    if let Some(row) = ledger_row(shm::global::process_slot()) {
        for e in row {
            if e.load(Ordering::Relaxed) == a {
                e.store(0, Ordering::Release);
                return;
            }
        }
    }
}

/// Attendant, for a reaped process's slot: gives back the counted references it held.
fn give_back_dead_refs(slot: usize) -> Result<Vec<String>, String> {
    let Some(row) = ledger_row(slot) else {
        return Ok(Vec::new());
    };
    let mut n = 0;
    for e in row {
        let a = e.swap(0, Ordering::AcqRel);
        if a == 0 || !shm::global::contains(a) || !a.is_multiple_of(align_of::<Cell>()) {
            continue;
        }
        // SAFETY: the entry stands for a count the dead process still held (written after
        // the count was taken, erased before it was given back: see LEDGER), so the cell
        // was not freed and is a live `Cell`; only its atomic count is touched.
        let c = unsafe { &*(a as *const Cell) };
        c.ref_count.fetch_sub(1, Ordering::AcqRel);
        n += 1;
    }
    Ok(if n > 0 {
        vec![format!("{n} transaction reference(s) given back")]
    } else {
        Vec::new()
    })
}

/// Free a cell: `c` must be unlinked from its hash chain and from the timer list, with
/// `ref_count == 0`, checked while holding the timer lock (`_g`) after both unlinks.
pub(super) fn free_cell(_g: &FastLockGuard<'_>, p: ShmPtr<Cell>) {
    if p.is_null() {
        return;
    }
    {
        // SAFETY: unreachable (unlinked from both structures), no counted reference
        // exists, so this process has the only access; read before freeing.
        let c = unsafe { &mut *p.as_ptr() };
        c.request.free();
        c.st.get_mut().free_all();
    }
    // SAFETY: `p` came from `shm::alloc` in `new_cell`, is unreachable and unreferenced
    // (module invariants), and is freed exactly once here.
    unsafe { shm::free(p) }
}

/// The shm address of a cell borrowed from shm (for identity comparisons only).
pub(super) fn ptr_of(c: &Cell) -> ShmPtr<Cell> {
    // SAFETY: `c` is a cell living in the segment (cells are only ever created by
    // `shm::alloc`), so its address is a valid ShmPtr while the cell lives; callers use
    // it only for identity (revalidated under the entry lock before any dereference).
    unsafe { ShmPtr::from_raw(c as *const Cell as *mut Cell) }
}

/// Worker: push a just-created cell on the shard's pending stack. Its timer links are
/// written before the compare-and-swap publishes it (Release) to the walker, which is
/// the only other party ever touching a cell's timer links (under the list lock, after
/// taking the stack with an Acquire swap): until the CAS succeeds nobody else reads them.
pub(super) fn push_pending(tl: &TimerList, c: &Cell) {
    let me = ptr_of(c).addr();
    let mut head = tl.pending.load(Ordering::Acquire);
    loop {
        // SAFETY: the cell is not yet on the stack nor in the list (see above), so this
        // process has exclusive access to its timer links; plain write, no reference kept.
        unsafe {
            *c.timer_links.get() = Links {
                next: addr_to_ptr(head),
                prev: ShmPtr::null(),
            };
        }
        match tl
            .pending
            .compare_exchange_weak(head, me, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// Walker: take the whole pending stack (top cell; chain through timer `next`).
pub(super) fn take_pending(tl: &TimerList) -> ShmPtr<Cell> {
    addr_to_ptr(tl.pending.swap(0, Ordering::AcqRel))
}

/// Push `c` on its shard's reschedule stack. The caller won `c.resched_queued` (0 → 1),
/// so the cell is on the stack at most once; its link is an atomic, written before the
/// compare-and-swap publishes the cell (Release).
pub(super) fn push_resched(tl: &TimerList, c: &Cell) {
    let me = ptr_of(c).addr();
    let mut head = tl.resched.load(Ordering::Acquire);
    loop {
        c.resched_next.store(head, Ordering::Relaxed);
        match tl
            .resched
            .compare_exchange_weak(head, me, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// Walker: take the whole reschedule stack (top cell; chain through `resched_next`).
pub(super) fn take_resched(tl: &TimerList) -> ShmPtr<Cell> {
    addr_to_ptr(tl.resched.swap(0, Ordering::AcqRel))
}

/// The top of the pending stack, left in place (the repair hook walks it; with the
/// shard lock held nobody takes it meanwhile, workers only push on top).
pub(super) fn pending_top(tl: &TimerList) -> ShmPtr<Cell> {
    addr_to_ptr(tl.pending.load(Ordering::Acquire))
}

/// A cell on the pending or reschedule stack of the shard whose lock `_g` holds: live
/// while it is there (see `addr_to_ptr`), and nobody takes it off meanwhile.
pub(super) fn stacked_cell<'g>(_g: &'g FastLockGuard<'_>, p: ShmPtr<Cell>) -> Option<&'g Cell> {
    if p.is_null() {
        return None;
    }
    // SAFETY: cells on a stack are live (see `addr_to_ptr`), and only the holder of the
    // shard lock (the caller) takes them off, so the cell outlives the borrow of `_g`.
    Some(unsafe { &*p.as_ptr() })
}

/// The next cell on the pending stack after `c` (a cell on that stack, see
/// [`stacked_cell`]).
pub(super) fn stacked_pending_next(c: &Cell) -> ShmPtr<Cell> {
    // SAFETY: the links of a cell on the pending stack were written before the
    // compare-and-swap that published it (Release; the top was read with Acquire), and
    // nobody writes them while it is on the stack (only the walker, who holds the shard
    // lock — the caller — takes it off); a plain copy is read.
    unsafe { (*c.timer_links.get()).next }
}

/// The top of the reschedule stack, left in place (as [`pending_top`]).
pub(super) fn resched_top(tl: &TimerList) -> ShmPtr<Cell> {
    addr_to_ptr(tl.resched.load(Ordering::Acquire))
}

/// The next cell on the reschedule stack after `c`.
pub(super) fn resched_next(c: &Cell) -> ShmPtr<Cell> {
    addr_to_ptr(c.resched_next.load(Ordering::Acquire))
}

fn addr_to_ptr(a: usize) -> ShmPtr<Cell> {
    // SAFETY: `a` is 0 or the address of a live cell pushed on a stack by a process that
    // held a reference: cells on the pending stack are in no list, so nothing frees
    // them; cells on the reschedule stack keep `resched_queued` at 1 until the walker
    // takes them off, and the reaper frees no cell with the mark set.
    unsafe { ShmPtr::from_raw(a as *mut Cell) }
}

//! The process-wide segment: created once by the attendant before it forks.
//!
//! Segment layout:
//!
//! ```text
//! [ Header: magic, size, held-lock table [MAX_PROCS][HELD_PER_PROC] ][ Heap ... ]
//! ```
//!
//! The base address, the heap pointer, this process's slot and its cached pid are
//! process-private statics: the first two are set before fork and inherited; the slot and
//! pid are set by [`set_process_slot`] in each child (and the pid cache is also cleared by a
//! `pthread_atfork` child handler, so a child that forgets still records its own pid).

use std::cell::RefCell;
use std::io;
use std::ptr::NonNull;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::alloc::{ALIGN, Heap, MemStats};
use crate::lock::{FastLock, FastLockGuard};
use crate::ptr::{ShmPtr, ShmSafe};
use crate::segment::Segment;

/// Process slots in the held-lock table (process-table indexes; the attendant is 0).
pub const MAX_PROCS: usize = 512;
/// Locks one process may hold at once and still have recorded for force-release.
pub const HELD_PER_PROC: usize = 8;
const MAGIC: u64 = 0x6f70_656e_7365_7231; // "openser1"

#[repr(C)]
struct Header {
    magic: u64,
    size: usize,
    /// Acquisitions that found no free entry in their slot (not force-releasable).
    held_overflow: AtomicUsize,
    /// Allocations the heap refused (full or too fragmented), since start.
    alloc_failures: AtomicU64,
    held: [[AtomicUsize; HELD_PER_PROC]; MAX_PROCS],
}

const HEADER_SIZE: usize = size_of::<Header>().next_multiple_of(ALIGN);

static SEG_BASE: AtomicUsize = AtomicUsize::new(0);
static SEG_LEN: AtomicUsize = AtomicUsize::new(0);
static HEAP: AtomicPtr<Heap> = AtomicPtr::new(std::ptr::null_mut());
static SLOT: AtomicUsize = AtomicUsize::new(0);
static PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn atfork_child() {
    PID.store(0, Ordering::Relaxed);
}

fn register_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registers a child handler that only stores to an atomic (async-signal-safe);
        // no prepare/parent handlers.
        unsafe {
            libc::pthread_atfork(None, None, Some(atfork_child));
        }
    });
}

/// This process's pid, cached (recomputed after fork).
#[inline]
pub fn current_pid() -> u32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    register_atfork();
    // SAFETY: getpid has no preconditions.
    let p = unsafe { libc::getpid() } as u32;
    PID.store(p, Ordering::Relaxed);
    p
}

fn header() -> Option<&'static Header> {
    let base = SEG_BASE.load(Ordering::Acquire);
    if base == 0 {
        return None;
    }
    // SAFETY: `base` is the start of the segment set by `init`, which wrote a Header there
    // (all-zero atomics are valid); the segment is never unmapped.
    Some(unsafe { &*(base as *const Header) })
}

/// The global heap, if [`init`] has run.
pub fn heap() -> Option<&'static Heap> {
    let h = HEAP.load(Ordering::Acquire);
    // SAFETY: set once by `init` to a heap living in the never-unmapped segment.
    unsafe { h.as_ref() }
}

/// Whether `addr` lies inside the global segment.
pub fn contains(addr: usize) -> bool {
    let base = SEG_BASE.load(Ordering::Acquire);
    base != 0 && addr >= base && addr < base + SEG_LEN.load(Ordering::Relaxed)
}

/// Creates the segment (`size` bytes, rounded up to a page), the held-lock table and the
/// heap. Once, in the attendant, before the first fork; a second call is an error.
pub fn init(size: usize) -> Result<(), io::Error> {
    if is_initialized() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "shm already initialised",
        ));
    }
    if size < HEADER_SIZE + Heap::min_region() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "shm size too small",
        ));
    }
    let seg = Segment::create(size)?;
    let base = seg.base();
    // The fresh mapping is zeroed, page-aligned and `seg.len()` >= HEADER_SIZE +
    // Heap::min_region() bytes long; the header goes at its start and the heap right after
    // (16-aligned). Nothing else uses the mapping yet: its address is published only below.
    let h = base.cast::<Header>();
    // SAFETY: `h` is the page-aligned start of the mapping, which holds a whole Header
    // (HEADER_SIZE <= its length); no other reference to it exists yet.
    unsafe { (*h).magic = MAGIC };
    // SAFETY: same header as for `magic`: in bounds, aligned, not shared yet.
    unsafe { (*h).size = seg.len() };
    // SAFETY: HEADER_SIZE < `seg.len()`, so the heap start is inside the mapping.
    let heap_base = unsafe { base.add(HEADER_SIZE) };
    // SAFETY: `heap_base` is 16-aligned (page-aligned base plus HEADER_SIZE, a multiple of
    // ALIGN) and valid for the remaining `seg.len() - HEADER_SIZE` >= Heap::min_region()
    // bytes for the rest of the program (the mapping is never unmapped); only this heap uses
    // them.
    let heap = unsafe { Heap::init(heap_base, seg.len() - HEADER_SIZE) };
    register_atfork();
    SEG_LEN.store(seg.len(), Ordering::Relaxed);
    HEAP.store(heap as *const Heap as *mut Heap, Ordering::Release);
    SEG_BASE.store(base as usize, Ordering::Release);
    // The mapping is never unmapped: `Segment` has no Drop and we keep only its address.
    Ok(())
}

/// Whether [`init`] has run (in this process or an ancestor).
pub fn is_initialized() -> bool {
    SEG_BASE.load(Ordering::Acquire) != 0
}

/// Records this process's slot (its process-table index; the attendant is 0) and caches its
/// pid. Call right after fork in every child.
pub fn set_process_slot(slot: usize) {
    SLOT.store(slot, Ordering::Relaxed);
    register_atfork();
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
}

/// This process's slot (0 unless [`set_process_slot`] said otherwise).
pub fn process_slot() -> usize {
    SLOT.load(Ordering::Relaxed)
}

/// Records `lock` in this process's held-lock slot, if it lives in the segment.
///
/// A slot's row is written only by the process owning the slot (and read by the attendant
/// after that process died), so plain loads and stores suffice: no locked instruction on the
/// lock fast path besides the lock's own `compare_exchange`. If two live processes wrongly
/// share a slot, a record may be lost (that lock is then not force-releasable), never
/// anything worse: force-release re-validates the address and the owner pid.
#[inline]
pub(crate) fn record_lock(lock: &FastLock) -> Option<&'static AtomicUsize> {
    let addr = lock as *const FastLock as usize;
    if !contains(addr) {
        return None;
    }
    let h = header()?;
    let row = h.held.get(SLOT.load(Ordering::Relaxed))?;
    for e in row {
        if e.load(Ordering::Relaxed) == 0 {
            // The lock's acquiring compare_exchange follows, so the intent is visible before
            // the lock is owned (a later release of that lock publishes it anyway).
            e.store(addr, Ordering::Release);
            return Some(e);
        }
    }
    h.held_overflow.fetch_add(1, Ordering::Relaxed);
    None
}

/// Clears a record made by [`record_lock`] (after the lock was released).
#[inline]
pub(crate) fn clear_record(rec: Option<&'static AtomicUsize>, _lock: &FastLock) {
    if let Some(e) = rec {
        e.store(0, Ordering::Release);
    }
}

/// Whether no process `pid` exists any more (a reaped child: `kill(pid, 0)` fails with
/// ESRCH; a zombie not yet reaped still exists and is refused).
///
/// Why this is enough for the force-release functions below: the segment is an anonymous
/// shared mapping, so only descendants of the attendant reach it, and the attendant (a
/// single thread, the only caller) forks no new process between this check and its
/// compare-and-swap of the dead pid; a process that no longer exists cannot go on using a
/// structure whose lock it held.
fn reaped(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for the process; no memory is involved.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The recorded lock addresses of process `slot` that still point at a plausible lock.
fn recorded(h: &Header, slot: usize) -> Vec<(usize, &'static FastLock)> {
    let mut v = Vec::new();
    if let Some(row) = h.held.get(slot) {
        for e in row {
            let a = e.load(Ordering::Acquire);
            if a == 0 || !contains(a) || !a.is_multiple_of(align_of::<FastLock>()) {
                continue;
            }
            // SAFETY: only addresses of FastLocks inside the segment are recorded (checked
            // again above); the segment is never unmapped, so this reads a FastLock (or, if
            // it was freed meanwhile, plain shm bytes, which an atomic read tolerates).
            v.push((a, unsafe { &*(a as *const FastLock) }));
        }
    }
    v
}

/// Empties the held-lock row of process `slot` (its process is dead: the row is stale).
fn clear_row(h: &Header, slot: usize) {
    if let Some(row) = h.held.get(slot) {
        for e in row {
            e.store(0, Ordering::Release);
        }
    }
}

/// Releases every lock recorded for process `slot` that is still owned by `pid`, plus the
/// heap lock if that pid holds it, without repairing anything. Returns how many locks were
/// released. Only for a reaped process: for a `pid` that still exists (a live process, or
/// a zombie not yet reaped) it does nothing and returns 0. See [`repair_dead`] for the
/// version that checks the structures first.
pub fn force_unlock_dead(slot: usize, pid: u32) -> usize {
    let Some(h) = header() else { return 0 };
    if !reaped(pid) {
        return 0;
    }
    let mut n = 0;
    for (_, lock) in recorded(h, slot) {
        // SAFETY: `pid` no longer exists (checked by `reaped` above, see its argument).
        if unsafe { lock.force_unlock(pid) } {
            n += 1;
        }
    }
    clear_row(h, slot);
    if let Some(heap) = heap()
        // SAFETY: as above.
        && unsafe { heap.lock_ref().force_unlock(pid) }
    {
        n += 1;
    }
    n
}

/// A check-and-repair function for the structure a lock protects, run by the attendant
/// with the lock taken over from a dead process (the guard; dropping it releases the
/// lock). `lock` is the lock's address. `Ok` lists what was dropped (empty: nothing was
/// wrong); `Err` means consistency could not be proven (the server must not go on).
pub type RepairFn = fn(lock: usize, held: FastLockGuard<'static>) -> Result<Vec<String>, String>;

thread_local! {
    /// Repair hooks by lock address range (start, length, what, hook). Registered in the
    /// attendant before it forks; only the attendant runs them.
    static REPAIRS: RefCell<Vec<(usize, usize, &'static str, RepairFn)>> =
        const { RefCell::new(Vec::new()) };
}

/// Registers `hook` for every lock whose address lies in `[start, start + len)`: a lock
/// array, or a structure that embeds its lock. `what` names the structure in the logs.
pub fn register_repair(start: usize, len: usize, what: &'static str, hook: RepairFn) {
    REPAIRS.with(|r| r.borrow_mut().push((start, len, what, hook)));
}

fn repair_hook(addr: usize) -> Option<(&'static str, RepairFn)> {
    REPAIRS.with(|r| {
        r.borrow()
            .iter()
            .find(|(s, l, _, _)| addr >= *s && addr - *s < *l)
            .map(|&(_, _, w, f)| (w, f))
    })
}

/// A check-and-repair function for what a dead process held outside any lock (e.g.
/// counted references), given its process slot; run by [`repair_dead`] after the locks.
pub type DeadHook = fn(slot: usize) -> Result<Vec<String>, String>;

thread_local! {
    /// Per-process repair hooks (attendant, registered before fork).
    static DEAD_HOOKS: RefCell<Vec<(&'static str, DeadHook)>> = const { RefCell::new(Vec::new()) };
}

/// Registers `hook`, run for every reaped process (see [`DeadHook`]).
pub fn register_dead_hook(what: &'static str, hook: DeadHook) {
    DEAD_HOOKS.with(|h| h.borrow_mut().push((what, hook)));
}

/// What [`repair_dead`] did for one lock the dead process held.
#[derive(Debug)]
pub struct Repaired {
    /// The lock's address.
    pub lock: usize,
    /// The structure it protects ("unregistered" if no hook covers it: released as is).
    pub what: &'static str,
    /// The hook's verdict: what it dropped, or why consistency could not be proven.
    pub outcome: Result<Vec<String>, String>,
}

/// What [`repair_dead`] found.
#[derive(Debug, Default)]
pub struct DeadReport {
    /// One entry per lock the dead process held (heap lock excluded), then one per
    /// per-process hook ([`register_dead_hook`], `lock` 0).
    pub locks: Vec<Repaired>,
    /// `Some` when the dead process held the heap lock: the result of the heap check.
    pub heap: Option<Result<(), String>>,
    /// False when `pid` still exists: nothing was done.
    pub reaped: bool,
}

impl DeadReport {
    /// Whether every structure touched by the dead process was proven consistent (or
    /// repaired): false means the server must not go on serving.
    pub fn consistent(&self) -> bool {
        !matches!(self.heap, Some(Err(_))) && self.locks.iter().all(|r| r.outcome.is_ok())
    }
}

/// For a reaped process `pid` of process slot `slot`: takes over every lock it held, runs
/// the repair hook registered for it ([`register_repair`]) and releases it; checks the heap
/// first if it held the heap lock. When the heap is not consistent, the other locks are
/// released without their hooks (which might allocate or free on a corrupt heap): the
/// caller must then stop serving ([`DeadReport::consistent`]). Does nothing for a pid that
/// still exists. Attendant only.
pub fn repair_dead(slot: usize, pid: u32) -> DeadReport {
    let mut rep = DeadReport::default();
    let Some(h) = header() else { return rep };
    if !reaped(pid) {
        return rep;
    }
    rep.reaped = true;
    let heap_lock = heap().map(|hp| hp.lock_ref() as *const FastLock as usize);
    if let Some(hp) = heap()
        // SAFETY: `pid` no longer exists (`reaped` above, see its argument).
        && let Some(g) = unsafe { hp.lock_ref().take_over(pid) }
    {
        rep.heap = Some(hp.check_held(&g));
    }
    let heap_ok = !matches!(rep.heap, Some(Err(_)));
    for (addr, lock) in recorded(h, slot) {
        if Some(addr) == heap_lock {
            continue;
        }
        // SAFETY: as above.
        let Some(g) = (unsafe { lock.take_over(pid) }) else {
            continue;
        };
        let (what, outcome) = match repair_hook(addr) {
            Some((what, f)) if heap_ok => (what, f(addr, g)),
            Some((what, _)) => {
                drop(g);
                (what, Err("not checked: the heap is corrupt".to_string()))
            }
            None => {
                drop(g);
                ("unregistered", Ok(Vec::new()))
            }
        };
        rep.locks.push(Repaired {
            lock: addr,
            what,
            outcome,
        });
    }
    clear_row(h, slot);
    if heap_ok {
        let hooks: Vec<(&'static str, DeadHook)> = DEAD_HOOKS.with(|h| h.borrow().clone());
        for (what, f) in hooks {
            rep.locks.push(Repaired {
                lock: 0,
                what,
                outcome: f(slot),
            });
        }
    }
    rep
}

/// Allocations the global heap refused since start (shm full or too fragmented).
pub fn alloc_failures() -> u64 {
    header().map_or(0, |h| h.alloc_failures.load(Ordering::Relaxed))
}

fn count_failure() {
    if let Some(h) = header() {
        h.alloc_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Acquisitions that could not be recorded because a process held more than
/// [`HELD_PER_PROC`] locks at once.
pub fn held_overflow() -> usize {
    header().map_or(0, |h| h.held_overflow.load(Ordering::Relaxed))
}

/// Moves `val` into shm. `None` when shm is full or not initialised, or `T` needs an
/// alignment above 16.
pub fn alloc<T: ShmSafe>(val: T) -> Option<ShmPtr<T>> {
    if align_of::<T>() > ALIGN {
        return None;
    }
    let p = alloc_bytes(size_of::<T>().max(1))?.cast::<T>();
    // SAFETY: `p` is a fresh, 16-aligned allocation of at least size_of::<T>() bytes, and
    // align_of::<T>() <= 16 (checked); nobody else has it yet.
    unsafe { p.as_ptr().write(val) };
    // SAFETY: `p` now points to an initialised `T` in the segment, which stays allocated
    // until the caller frees it through the unsafe `free`.
    Some(unsafe { ShmPtr::from_raw(p.as_ptr()) })
}

/// Frees a value allocated by [`alloc`] or [`alloc_zeroed_array`] (no destructor runs:
/// `ShmSafe` types have none). Null is ignored.
///
/// # Safety
/// `p` must come from this module's allocation functions and not be freed yet; no copy of
/// it may be used afterwards.
pub unsafe fn free<T: ShmSafe>(p: ShmPtr<T>) {
    if let Some(nn) = NonNull::new(p.as_ptr().cast::<u8>()) {
        // SAFETY: forwarded contract.
        unsafe { free_bytes(nn) };
    }
}

/// `size` raw bytes (16-aligned) from the global heap.
pub fn alloc_bytes(size: usize) -> Option<NonNull<u8>> {
    let p = heap()?.alloc(size);
    if p.is_none() {
        count_failure();
    }
    p
}

/// Frees bytes from [`alloc_bytes`].
///
/// # Safety
/// `p` must come from [`alloc_bytes`] (or the typed allocators) and not be freed yet; the
/// memory is not used afterwards.
pub unsafe fn free_bytes(p: NonNull<u8>) {
    if let Some(h) = heap() {
        // SAFETY: forwarded contract.
        unsafe { h.free(p) };
    }
}

/// Resizes bytes from [`alloc_bytes`] (see [`Heap::realloc`]).
///
/// # Safety
/// As [`Heap::realloc`].
pub unsafe fn realloc_bytes(p: NonNull<u8>, new_size: usize) -> Option<NonNull<u8>> {
    // SAFETY: forwarded contract.
    let q = unsafe { heap()?.realloc(p, new_size) };
    if q.is_none() {
        count_failure();
    }
    q
}

/// An array of `n` zero-filled `T`s. Only for types whose all-zero bytes are a valid value:
/// integers, atomics, [`FastLock`] (free), null [`ShmPtr`], empty [`ShmStr`](crate::ShmStr),
/// arrays and `#[repr(C)]` structs of those. `None` when full or on size overflow.
pub fn alloc_zeroed_array<T: ShmSafe>(n: usize) -> Option<ShmPtr<T>> {
    if align_of::<T>() > ALIGN {
        return None;
    }
    let bytes = size_of::<T>().checked_mul(n)?.max(1);
    let p = alloc_bytes(bytes)?;
    // SAFETY: `p` is a fresh allocation of `bytes` bytes that nobody else has yet.
    unsafe { std::ptr::write_bytes(p.as_ptr(), 0, bytes) };
    // SAFETY: `p` is 16-aligned (align_of::<T>() <= 16, checked) and now holds `n` zeroed
    // `T`s, each a valid value by this function's documented rule; it stays allocated until
    // the caller frees it through the unsafe `free`.
    Some(unsafe { ShmPtr::from_raw(p.as_ptr().cast()) })
}

/// Global heap statistics (all zero when not initialised).
pub fn stats() -> MemStats {
    heap().map(Heap::stats).unwrap_or_default()
}

/// Global heap status dump (OpenSER's `fm_status`).
pub fn status_dump() -> String {
    match heap() {
        Some(h) => h.status_dump(),
        None => "shm not initialised\n".to_string(),
    }
}

/// Moves `val` into shm for the rest of the program (never freed): a reference valid
/// in every process that inherits the mapping. For counters, tables and other
/// structures created by the attendant before it forks.
pub fn alloc_static<T: ShmSafe + Sync>(val: T) -> Option<&'static T> {
    let p = alloc(val)?;
    // SAFETY: `p` is a fresh, initialised allocation that is never freed (nothing else
    // holds it), and the segment is never unmapped, so the reference lives as long as
    // the program. `T: Sync` because other processes (and this one) share it.
    Some(unsafe { &*p.as_ptr() })
}

/// `n` values built by `init(i)` in one never-freed shm array (see [`alloc_static`]).
pub fn alloc_static_slice_with<T: ShmSafe + Sync>(
    n: usize,
    init: impl Fn(usize) -> T,
) -> Option<&'static [T]> {
    if align_of::<T>() > ALIGN {
        return None;
    }
    let bytes = size_of::<T>().checked_mul(n)?.max(1);
    let p = alloc_bytes(bytes)?.cast::<T>();
    // `p` is a fresh allocation of room for `n` properly aligned `T`s (16-aligned base,
    // align_of::<T>() <= 16, stride size_of::<T>()).
    for i in 0..n {
        // SAFETY: `i < n`, so the offset stays inside the allocation of `n` `T`s.
        let slot = unsafe { p.as_ptr().add(i) };
        let value = init(i);
        // SAFETY: `slot` is aligned, in bounds and not yet initialised; each element is
        // written exactly once, and nobody else has the allocation yet.
        unsafe { slot.write(value) };
    }
    // SAFETY: all `n` elements were written above, and the memory is never freed nor
    // unmapped, so the slice lives as long as the program; it is only read through shared
    // references (`T: Sync`).
    Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), n) })
}

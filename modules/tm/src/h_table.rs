//! The transaction table in shm: 65536 entries with a lock each, cells with the cloned
//! request, up to 12 UAC branches and the UAS state, and the timer list.
//!
//! Lock order: hash entry lock -> cell reply lock. The timer wheels (sharded by hash)
//! have a lock taken only by the timer process; workers add new cells to a shard's
//! lock-free pending stack and cells whose deadline they moved earlier to its
//! lock-free reschedule stack, so they never wait for the timer.
//!
//! Timer wheel: each shard has `WHEEL` lists, one per 100 ms tick modulo `WHEEL`
//! (102.4 s), a reap list (cells unlinked from their chain, freed once the last
//! reference is gone) and an idle list (cells with no deadline). A cell is in exactly
//! one list, the one of its `next_due`; every 100 ms the timer process looks at the
//! buckets of the ticks that passed, so its cost follows the deadlines that fall due,
//! not the number of transactions in flight (a cell due in a later turn of the wheel
//! is looked at once per 102.4 s).

use std::cell::UnsafeCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use shm::{FastLock, ShmPtr, ShmSafe, ShmStr};

pub use super::shmref::{CellRef, StateGuard};
use super::shmref::{cell_locked, hash_links, set_hash_links, set_timer_links, timer_links};

/// Hash table size (OpenSER's TABLE_ENTRIES).
pub const TABLE_ENTRIES: usize = 65536;
/// Maximum number of UAC branches per transaction (OpenSER's MAX_BRANCHES).
pub const MAX_BRANCHES: usize = 12;

/// One hash entry: lock, chain head, next label.
#[repr(C)]
pub struct Entry {
    pub lock: FastLock,
    pub(super) head_cell: UnsafeCell<ShmPtr<Cell>>,
    pub next_label: AtomicU32,
}
// SAFETY: #[repr(C)] of a FastLock, a shm pointer (in an UnsafeCell) and an atomic.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Entry {}

/// Buckets of the timer wheel: 100 ms ticks, 1024 of them (102.4 s per turn).
pub const WHEEL: usize = 1024;
/// List index of the reap list (after the `WHEEL` buckets).
pub const REAP_LIST: u32 = WHEEL as u32;
/// List index of the idle list (cells with no deadline).
pub const IDLE_LIST: u32 = WHEEL as u32 + 1;
/// `Cell::timer_list` of a cell on the pending stack (in no list yet).
pub const ON_PENDING: u32 = u32::MAX;
const LISTS: usize = WHEEL + 2;

/// One shard of the timer: the wheel's lists and the stacks workers push to.
#[repr(C)]
pub struct TimerList {
    /// Taken only by the timer process (and tests): workers never wait on it.
    pub lock: FastLock,
    /// Heads of the `WHEEL` buckets, the reap list and the idle list.
    pub(super) heads: UnsafeCell<[ShmPtr<Cell>; LISTS]>,
    /// The last 100 ms tick whose bucket was looked at.
    pub(super) last_tick: UnsafeCell<u64>,
    /// New cells pushed by workers (a lock-free stack linked through the cells' timer
    /// `next` link; address of the top cell, 0 = empty), put in a list by the timer.
    pub(super) pending: AtomicUsize,
    /// Cells whose `next_due` a worker lowered (a lock-free stack linked through
    /// `Cell::resched_next`; each cell at most once, see `Cell::resched_queued`).
    pub(super) resched: AtomicUsize,
}
// SAFETY: #[repr(C)] of a FastLock, shm pointers and an integer in UnsafeCells, and
// atomics.
#[allow(unsafe_code)]
unsafe impl ShmSafe for TimerList {}

/// Doubly linked list links.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Links {
    pub next: ShmPtr<Cell>,
    pub prev: ShmPtr<Cell>,
}

/// A span into the cloned request.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct KSpan {
    pub off: u32,
    pub len: u32,
}

impl KSpan {
    pub fn of<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        b.get(self.off as usize..(self.off + self.len) as usize)
            .unwrap_or(&[])
    }
}

/// A socket address as plain data.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Addr {
    pub family: u8,
    pub port: u16,
    pub ip: [u8; 16],
}

impl Addr {
    pub fn from_sa(a: SocketAddr) -> Addr {
        match a.ip() {
            IpAddr::V4(v) => {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&v.octets());
                Addr {
                    family: 4,
                    port: a.port(),
                    ip,
                }
            }
            IpAddr::V6(v) => Addr {
                family: 6,
                port: a.port(),
                ip: v.octets(),
            },
        }
    }
    pub fn to_sa(self) -> Option<SocketAddr> {
        match self.family {
            4 => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(
                    self.ip[0], self.ip[1], self.ip[2], self.ip[3],
                )),
                self.port,
            )),
            6 => Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(self.ip)),
                self.port,
            )),
            _ => None,
        }
    }
}

// Branch flags.
pub const B_PROVISIONAL: u16 = 1; // got a 1xx
pub const B_FINAL: u16 = 2; // got (or generated) a final reply
pub const B_CANCEL_SENT: u16 = 4;
pub const B_LOCAL_REPLY: u16 = 8; // final reply generated locally (timeout)
pub const B_CANCEL_PENDING: u16 = 16; // cancel wanted before a 1xx arrived

/// One UAC branch.
#[repr(C)]
#[derive(Default)]
pub struct UacBranch {
    /// The outgoing request as sent.
    pub request: ShmStr,
    /// The branch's R-URI (what failure_route sees).
    pub uri: ShmStr,
    /// Stored final negative reply (for selection and 401/407 aggregation).
    pub reply: ShmStr,
    pub dst: Addr,
    pub sock: u32,
    pub last_code: u16,
    pub flags: u16,
    /// Retransmission: next send time and current interval (ms); 0 = off.
    pub retr_at: u64,
    pub retr_iv: u32,
    /// Final-response timeout (ms timestamp), 0 = off.
    pub fr_at: u64,
}

// Transaction flags.
pub const T_INVITE: u32 = 1;
pub const T_CANCELED: u32 = 2;
pub const T_COMPLETED: u32 = 4; // final reply sent upstream
pub const T_ACKED: u32 = 8;
pub const T_NOISY_CTIMER: u32 = 16;
pub const T_LOCAL: u32 = 32; // t_replicate: replies are not relayed
pub const T_NO_NEG_REPLY: u32 = 64;
pub const T_DELETE: u32 = 128; // wait timer expired, awaiting free
pub const T_IN_FAILURE: u32 = 256;
pub const T_UAS_LOCAL_LAST: u32 = 512; // last UAS reply generated locally
pub const T_ALL_LOCAL: u32 = 1024; // every UAS reply so far local
pub const T_UDP: u32 = 2048; // request came over UDP
pub const T_ON_FAIL_RAN: u32 = 4096;
pub const T_NO_DNS_FAILOVER: u32 = 8192; // t_relay flag 0x04
pub const T_NO_E2E_CANCEL_REASON: u32 = 16384; // t_set_no_e2e_cancel_reason(1)

/// The mutable transaction state (under the cell's reply lock).
#[repr(C)]
#[derive(Default)]
pub struct CellState {
    pub flags: u32,
    pub uas_status: u16,
    /// Last reply sent upstream (for retransmissions).
    pub uas_reply: ShmStr,
    /// To-tag of the last final reply sent upstream (ACK matching).
    pub uas_totag: ShmStr,
    /// Retransmission of a final negative reply to an INVITE over UDP until the ACK.
    pub uas_retr_at: u64,
    pub uas_retr_iv: u32,
    pub nr_branches: u32,
    pub branches: [UacBranch; MAX_BRANCHES],
    /// Route indexes + 1 (0 = none).
    pub on_failure: u32,
    pub on_reply: u32,
    pub on_branch: u32,
    pub msg_flags: u32,
    /// Serialized AVPs.
    pub avps: ShmStr,
    /// Wait-state end (ms), 0 = not in wait state.
    pub wait_at: u64,
    /// Per-transaction timers (ms).
    pub fr_ms: u32,
    pub fr_inv_ms: u32,
    /// Where replies go upstream, and from which socket.
    pub uas_dst: Addr,
    pub uas_sock: u32,
    /// A local request's completion callback (`uac::register_callback` id, 0 = none)
    /// and its parameter.
    pub uac_cb: u32,
    pub uac_param: u64,
    /// The first branch of the latest forwarding round (1.2's `first_branch`): a
    /// failure_route that relays again starts a round, and the reply chosen for the
    /// next failure_route or upstream comes from that round's branches only.
    pub first_branch: u32,
    /// Reason header lines (each ending in CRLF) put in the CANCELs tm sends on the
    /// branches: copied from the caller's CANCEL (`e2e_cancel_reason`), or tm's own
    /// (`local_cancel_reason`: a 2xx or 6xx on another branch, `t_cancel_callid`).
    pub cancel_reason: ShmStr,
    /// Per-transaction retransmission intervals (ms, `t_set_retr`); 0 = T1_timer /
    /// T2_timer.
    pub t1_ms: u32,
    pub t2_ms: u32,
    /// `t_suspend`: index + 1 of the blind branch standing for the suspension (no
    /// request, no destination; its fr_at is the suspension's timeout), 0 = never
    /// suspended. Suspended while that branch is not final (`suspend::is_suspended`).
    pub suspended_branch: u32,
    /// The request as the script had changed it when it called `t_suspend` on a
    /// transaction created earlier (`t_newtran`); empty when the cell's request has
    /// those changes already. What `t_continue` runs its route on.
    pub resume_req: ShmStr,
}

/// Receive information of the request, fixed at creation.
#[derive(Clone, Copy, Default)]
pub struct CellInit {
    pub rcv_src: Addr,
    pub rcv_dst: Addr,
    pub rcv_sock: u32,
    pub rcv_proto: u8,
}

impl CellState {
    /// Free everything the state owns.
    pub(super) fn free_all(&mut self) {
        std::mem::take(&mut self.uas_reply).free();
        std::mem::take(&mut self.uas_totag).free();
        std::mem::take(&mut self.avps).free();
        std::mem::take(&mut self.cancel_reason).free();
        std::mem::take(&mut self.resume_req).free();
        for b in self.branches.iter_mut() {
            std::mem::take(&mut b.request).free();
            std::mem::take(&mut b.uri).free();
            std::mem::take(&mut b.reply).free();
        }
    }
}

/// Matching key (spans into `Cell::request`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Key {
    pub method: KSpan,
    pub ruri: KSpan,
    pub via_branch: KSpan,
    pub via_host: KSpan,
    pub via_port: u16,
    pub from_tag: KSpan,
    pub to_tag: KSpan,
    pub callid: KSpan,
    pub cseq_num: KSpan,
    pub via1: KSpan,
}

/// A transaction.
#[repr(C)]
pub struct Cell {
    pub(super) hash_links: UnsafeCell<Links>,
    pub(super) timer_links: UnsafeCell<Links>,
    /// The timer list the cell is in (bucket, `REAP_LIST`, `IDLE_LIST`, `ON_PENDING`);
    /// under the timer lock.
    pub(super) timer_list: UnsafeCell<u32>,
    /// Link of the reschedule stack (address of the next cell, 0 = none).
    pub(super) resched_next: AtomicUsize,
    /// 1 while the cell is on its shard's reschedule stack.
    pub(super) resched_queued: AtomicU32,
    pub ref_count: AtomicU32,
    /// Earliest timer deadline (ms), u64::MAX = none, `DELETE_MARK` = unlinked.
    pub next_due: AtomicU64,
    pub hash_index: u32,
    pub label: u32,
    /// The request as received (cloned once).
    pub request: ShmStr,
    pub key: Key,
    pub rcv_src: Addr,
    pub rcv_dst: Addr,
    pub rcv_sock: u32,
    pub rcv_proto: u8,
    pub is_invite: bool,
    pub reply_lock: FastLock,
    pub(super) st: UnsafeCell<CellState>,
}
// SAFETY: #[repr(C)]; only shm pointers/strings, atomics, a FastLock and plain data
// (in UnsafeCells where mutable).
#[allow(unsafe_code)]
unsafe impl ShmSafe for Cell {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl ShmSafe for CellState {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl ShmSafe for UacBranch {}
// SAFETY: plain data.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Key {}
// SAFETY: plain data.
#[allow(unsafe_code)]
unsafe impl ShmSafe for KSpan {}
// SAFETY: plain data.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Addr {}
// SAFETY: two shm pointers.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Links {}

impl Cell {
    pub fn req(&self) -> &[u8] {
        self.request.as_bytes()
    }
    pub fn k(&self, s: KSpan) -> &[u8] {
        s.of(self.request.as_bytes())
    }
    /// Take the reply lock: the guard gives access to the mutable state.
    pub fn lock_state(&self) -> StateGuard<'_> {
        StateGuard::new(self)
    }
    /// Lower `next_due` to `t` if earlier; then the timer must move the cell to an
    /// earlier bucket, so it is queued for that (once).
    pub fn due(&self, t: u64) {
        let old = self.next_due.fetch_min(t, Ordering::SeqCst);
        if t < old {
            requeue(self);
        }
    }
}

struct Table {
    entries: &'static [Entry],
    timers: &'static [TimerList],
}

/// The timer list is sharded by hash index so a walk holds one shard lock at a time and
/// inserts rarely wait for the timer process.
pub const TIMER_SHARDS: usize = 16;

static TABLE: OnceLock<Table> = OnceLock::new();

/// Allocate the table (attendant, mod_init).
pub fn init_table() -> Result<(), String> {
    if TABLE.get().is_some() {
        return Ok(());
    }
    let entries = shm::alloc_static_slice_with(TABLE_ENTRIES, |i| Entry {
        lock: FastLock::new(),
        head_cell: UnsafeCell::new(ShmPtr::null()),
        // Start labels at a per-entry pseudo-random point (as OpenSER's rand()).
        next_label: AtomicU32::new(first_label(i as u32)),
    })
    .ok_or("tm: no shm for the transaction table")?;
    let timers = shm::alloc_static_slice_with(TIMER_SHARDS, |_| TimerList {
        lock: FastLock::new(),
        heads: UnsafeCell::new([ShmPtr::null(); LISTS]),
        last_tick: UnsafeCell::new(0),
        pending: AtomicUsize::new(0),
        resched: AtomicUsize::new(0),
    })
    .ok_or("tm: no shm for the timer lists")?;
    let _ = TABLE.set(Table { entries, timers });
    Ok(())
}

pub fn entry(hash: u32) -> Option<&'static Entry> {
    TABLE.get().and_then(|t| t.entries.get(hash as usize))
}

fn timers() -> &'static [TimerList] {
    TABLE.get().map(|t| t.timers).unwrap_or(&[])
}

fn timer_of(hash: u32) -> Option<&'static TimerList> {
    timers().get(hash as usize % TIMER_SHARDS)
}

/// Allocate an unpublished cell (ref_count 1 = the creator's).
pub fn new_cell(
    hash: u32,
    request: ShmStr,
    key: Key,
    init: CellInit,
    state: CellState,
) -> Option<CellRef> {
    let label = entry(hash)?.next_label.fetch_add(1, Ordering::Relaxed);
    let c = Cell {
        hash_links: UnsafeCell::new(Links::default()),
        timer_links: UnsafeCell::new(Links::default()),
        timer_list: UnsafeCell::new(ON_PENDING),
        resched_next: AtomicUsize::new(0),
        resched_queued: AtomicU32::new(0),
        ref_count: AtomicU32::new(1),
        next_due: AtomicU64::new(u64::MAX),
        hash_index: hash,
        label,
        request,
        key,
        rcv_src: init.rcv_src,
        rcv_dst: init.rcv_dst,
        rcv_sock: init.rcv_sock,
        rcv_proto: init.rcv_proto,
        is_invite: state.flags & T_INVITE != 0,
        reply_lock: FastLock::new(),
        st: UnsafeCell::new(state),
    };
    let p = shm::alloc(c)?;
    Some(CellRef::adopt(p))
}

/// The first label an entry gives out.
fn first_label(i: u32) -> u32 {
    i.wrapping_mul(2_654_435_761) >> 8
}

/// An entry's load (MI `t_hash`): transactions in its chain now, labels given out.
pub fn entry_load(hash: u32) -> (u32, u32) {
    let Some(e) = entry(hash) else {
        return (0, 0);
    };
    let g = e.lock.lock();
    let mut n = 0;
    let mut p = e.head(&g);
    while let Some(c) = cell_locked(&g, p) {
        n += 1;
        p = hash_links(&g, c).next;
    }
    let total = e
        .next_label
        .load(Ordering::Relaxed)
        .wrapping_sub(first_label(hash));
    (n, total)
}

/// Iterate a hash chain under its entry lock; `f` returns true to stop (then the cell
/// is returned with a counted reference).
pub fn find_in_entry(hash: u32, mut f: impl FnMut(&Cell) -> bool) -> Option<CellRef> {
    let e = entry(hash)?;
    let g = e.lock.lock();
    let mut p = e.head(&g);
    while let Some(c) = cell_locked(&g, p) {
        if f(c) {
            return Some(CellRef::take(c));
        }
        p = hash_links(&g, c).next;
    }
    None
}

/// Like `find_in_entry` but inserts the cell made by `new` at the head if nothing
/// matched, atomically (t_newtran). Returns (cell, true if it was inserted).
pub fn find_or_insert(
    hash: u32,
    mut f: impl FnMut(&Cell) -> bool,
    new: impl FnOnce() -> Option<CellRef>,
) -> Option<(CellRef, bool)> {
    let e = entry(hash)?;
    let g = e.lock.lock();
    let mut p = e.head(&g);
    while let Some(c) = cell_locked(&g, p) {
        if f(c) {
            return Some((CellRef::take(c), false));
        }
        p = hash_links(&g, c).next;
    }
    let nc = new()?;
    let head = e.head(&g);
    set_hash_links(
        &g,
        &nc,
        Links {
            next: head,
            prev: ShmPtr::null(),
        },
    );
    if let Some(h) = cell_locked(&g, head) {
        let mut l = hash_links(&g, h);
        l.prev = nc.ptr();
        set_hash_links(&g, h, l);
    }
    e.set_head(&g, nc.ptr());
    // Timer list: pushed on the shard's lock-free pending stack (no lock).
    if let Some(tl) = timer_of(hash) {
        super::shmref::push_pending(tl, &nc);
    }
    drop(g);
    super::stats_inuse(1);
    Some((nc, true))
}

/// Whether `p` (identified by pointer + label) is still in its chain; returns a
/// counted reference.
pub fn revalidate(hash: u32, p: ShmPtr<Cell>, label: u32) -> Option<CellRef> {
    find_in_entry(hash, |c| std::ptr::eq(c, p.as_ptr()) && c.label == label)
}

/// Queue `c` for the timer to put it in the list of its current `next_due` (a worker
/// lowered it, or the timer process just handled it): at most once until the timer
/// takes it off the stack.
pub fn requeue(c: &Cell) {
    if c.resched_queued
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
        && let Some(tl) = timer_of(c.hash_index)
    {
        super::shmref::push_resched(tl, c);
    }
}

/// The 100 ms tick of a deadline in ms.
fn tick_of(ms: u64) -> u64 {
    ms / 100
}

/// Timer process: the cells whose `next_due <= now` (ms) in the buckets of the ticks
/// since the last call (counted references; the caller handles them and `requeue`s
/// them). On the way, puts new and rescheduled cells in their lists, moves cells
/// unlinked from their chains to the reap list, and frees those no process references.
pub fn due_cells(now: u64) -> Vec<CellRef> {
    let mut out = Vec::new();
    let mut freed = 0usize;
    let now_tick = tick_of(now);
    for tl in timers() {
        let g = tl.lock.lock();
        drain_pending(tl, &g);
        drain_resched(tl, &g);
        let last = tl.last_tick(&g);
        if now_tick > last {
            // At most one turn of the wheel: older ticks share these buckets.
            let first = last.max(now_tick.saturating_sub(WHEEL as u64 - 1)) + 1;
            tl.set_last_tick(&g, now_tick);
            for tick in first..=now_tick {
                scan_bucket(tl, &g, (tick % WHEEL as u64) as u32, now, &mut out);
            }
        }
        freed += reap_list(tl, &g);
    }
    if freed > 0 {
        super::stats_inuse(-(freed as i64));
    }
    out
}

/// The list a cell with deadline `due` belongs in, `last` being the shard's last
/// looked-at tick: a deadline already passed goes to the next bucket looked at.
fn list_for(due: u64, last: u64) -> u32 {
    match due {
        DELETE_MARK => REAP_LIST,
        u64::MAX => IDLE_LIST,
        d => (tick_of(d).max(last + 1) % WHEEL as u64) as u32,
    }
}

/// Link `c` at the head of list `i` of `tl`.
fn link_into(tl: &TimerList, g: &shm::FastLockGuard<'_>, c: &Cell, i: u32) {
    let me = super::shmref::ptr_of(c);
    let head = tl.list_head(g, i);
    set_timer_links(
        g,
        c,
        Links {
            next: head,
            prev: ShmPtr::null(),
        },
    );
    if let Some(h) = cell_locked(g, head) {
        let mut l = timer_links(g, h);
        l.prev = me;
        set_timer_links(g, h, l);
    }
    tl.set_list_head(g, i, me);
    super::shmref::set_timer_list(g, c, i);
}

/// Unlink `c` from the list it is in (nothing if it is still on the pending stack).
fn unlink_from(tl: &TimerList, g: &shm::FastLockGuard<'_>, c: &Cell) {
    let i = super::shmref::timer_list(g, c);
    if i == ON_PENDING {
        return;
    }
    let l = timer_links(g, c);
    if let Some(n) = cell_locked(g, l.next) {
        let mut nl = timer_links(g, n);
        nl.prev = l.prev;
        set_timer_links(g, n, nl);
    }
    match cell_locked(g, l.prev) {
        Some(pv) => {
            let mut pl = timer_links(g, pv);
            pl.next = l.next;
            set_timer_links(g, pv, pl);
        }
        None => tl.set_list_head(g, i, l.next),
    }
    set_timer_links(g, c, Links::default());
}

/// Put the cells workers pushed on `tl`'s pending stack in their lists.
fn drain_pending(tl: &TimerList, g: &shm::FastLockGuard<'_>) {
    let last = tl.last_tick(g);
    let mut p = super::shmref::take_pending(tl);
    while let Some(c) = cell_locked(g, p) {
        let next = timer_links(g, c).next;
        link_into(tl, g, c, list_for(c.next_due.load(Ordering::SeqCst), last));
        p = next;
    }
}

/// Move the cells on `tl`'s reschedule stack to the lists of their deadlines.
fn drain_resched(tl: &TimerList, g: &shm::FastLockGuard<'_>) {
    let last = tl.last_tick(g);
    let mut p = super::shmref::take_resched(tl);
    while let Some(c) = cell_locked(g, p) {
        let next = super::shmref::resched_next(c);
        // Clear the mark before reading the deadline: a worker lowering it after this
        // read queues the cell again (both sides are SeqCst).
        c.resched_queued.store(0, Ordering::SeqCst);
        if super::shmref::timer_list(g, c) != ON_PENDING {
            let to = list_for(c.next_due.load(Ordering::SeqCst), last);
            if to != super::shmref::timer_list(g, c) {
                unlink_from(tl, g, c);
                link_into(tl, g, c, to);
            }
        }
        p = next;
    }
}

/// Look at bucket `b`: due cells out, unlinked ones to the reap list, cells whose
/// deadline moved to another bucket into that bucket.
fn scan_bucket(
    tl: &TimerList,
    g: &shm::FastLockGuard<'_>,
    b: u32,
    now: u64,
    out: &mut Vec<CellRef>,
) {
    let last = tl.last_tick(g);
    let mut p = tl.list_head(g, b);
    while let Some(c) = cell_locked(g, p) {
        let next = timer_links(g, c).next;
        let due = c.next_due.load(Ordering::SeqCst);
        if due == DELETE_MARK {
            unlink_from(tl, g, c);
            link_into(tl, g, c, REAP_LIST);
        } else if due <= now {
            out.push(CellRef::take(c));
        } else {
            let to = list_for(due, last);
            if to != b {
                unlink_from(tl, g, c);
                link_into(tl, g, c, to);
            }
        }
        p = next;
    }
}

/// Free the cells of the reap list that no process references any more and that are
/// not on the reschedule stack. Returns how many were freed.
fn reap_list(tl: &TimerList, g: &shm::FastLockGuard<'_>) -> usize {
    let mut freed = 0;
    let mut p = tl.list_head(g, REAP_LIST);
    while let Some(c) = cell_locked(g, p) {
        let next = timer_links(g, c).next;
        if c.ref_count.load(Ordering::Acquire) == 0 && c.resched_queued.load(Ordering::SeqCst) == 0
        {
            unlink_from(tl, g, c);
            super::shmref::free_cell(g, p);
            freed += 1;
        }
        p = next;
    }
    freed
}

/// Index of the timer shard whose lock is at address `lock`, if one is.
pub(super) fn timer_shard_of_lock(lock: usize) -> Option<usize> {
    timers()
        .iter()
        .position(|tl| std::ptr::eq(&tl.lock, lock as *const shm::FastLock))
}

/// Address and length of the timer shard array (for the repair hook's registration).
pub(super) fn timer_shards_span() -> Option<(usize, usize)> {
    let t = timers();
    let first = t.first()?;
    Some((first as *const TimerList as usize, size_of_val(t)))
}

fn plausible_cell(p: ShmPtr<Cell>) -> bool {
    let a = p.as_ptr() as usize;
    shm::global::contains(a) && a.is_multiple_of(align_of::<Cell>())
}

/// The cells on a lock-free stack of a shard whose lock `g` is held, from `p` on,
/// `next` giving the link (at most `cap`; a link out of shm or a loop ends the walk).
fn stack_cells(
    g: &shm::FastLockGuard<'_>,
    mut p: ShmPtr<Cell>,
    cap: usize,
    next: impl Fn(&Cell) -> ShmPtr<Cell>,
) -> std::collections::HashSet<usize> {
    let mut out = std::collections::HashSet::new();
    while plausible_cell(p) && out.len() < cap && out.insert(p.as_ptr() as usize) {
        let Some(c) = super::shmref::stacked_cell(g, p) else {
            break;
        };
        p = next(c);
    }
    out
}

/// The repair of timer shard `idx` whose lock a dead process held (the timer process
/// dies inside `due_cells`), run by the attendant with the lock `g` taken over:
/// - every list (wheel buckets, reap, idle) is walked: back links and list indices are
///   set right, a list is cut where a link leaves shm, loops or reaches a cell of
///   another shard, and a cell left half-linked at a list head (its back link set, the
///   head not yet moved) is linked properly;
/// - cells the dead process had taken off the pending stack and not yet put in a list
///   (found in their hash chains, in no list and not on the stack) are put in the list
///   of their deadline, so they keep their timers;
/// - cells marked as queued for rescheduling but on no reschedule stack (the dead
///   process had taken the stack) are unmarked and queued again.
///
/// Returns what was changed; a cell already unlinked from its chain and lost between
/// two lists cannot be found again (reported as not recoverable: it stays allocated).
pub(super) fn repair_timer_shard(
    idx: usize,
    g: &shm::FastLockGuard<'_>,
) -> Result<Vec<String>, String> {
    let tl = timers()
        .get(idx)
        .ok_or_else(|| format!("no tm timer shard {idx}"))?;
    if !std::ptr::eq(g.lock_ref(), &tl.lock) {
        return Err(format!("tm timer shard {idx}: the guard is not its lock"));
    }
    let null = ShmPtr::<Cell>::null();
    let mut done = Vec::new();
    let mut in_lists = std::collections::HashSet::new();
    let mut half_linked = Vec::new();
    for i in 0..LISTS as u32 {
        let head = tl.list_head(g, i);
        if head.is_null() {
            continue;
        }
        if !plausible_cell(head) {
            tl.set_list_head(g, i, null);
            done.push(format!(
                "tm timer shard {idx} list {i}: head out of shm, list emptied"
            ));
            continue;
        }
        let mut prev = null;
        let mut p = head;
        let mut n = 0usize;
        while let Some(c) = cell_locked(g, p) {
            let foreign = c.hash_index as usize % TIMER_SHARDS != idx;
            if foreign || !in_lists.insert(p.as_ptr() as usize) {
                match cell_locked(g, prev) {
                    Some(pv) => {
                        let mut pl = timer_links(g, pv);
                        pl.next = null;
                        set_timer_links(g, pv, pl);
                    }
                    None => tl.set_list_head(g, i, null),
                }
                done.push(format!(
                    "tm timer shard {idx} list {i}: cut after {n} cell(s) ({})",
                    if foreign {
                        "a cell of another shard"
                    } else {
                        "a loop or a cell in two lists"
                    }
                ));
                break;
            }
            let mut l = timer_links(g, c);
            if n == 0 && !l.prev.is_null() {
                // `link_into` stopped after the old head's back link: that cell was
                // about to become the head.
                if plausible_cell(l.prev) {
                    half_linked.push(l.prev);
                }
                l.prev = null;
                set_timer_links(g, c, l);
                done.push(format!(
                    "tm timer shard {idx} list {i}: cleared the back link of the head (label {})",
                    c.label
                ));
            } else if l.prev != prev {
                l.prev = prev;
                set_timer_links(g, c, l);
                done.push(format!(
                    "tm timer shard {idx} list {i}: fixed a back link (label {})",
                    c.label
                ));
            }
            if super::shmref::timer_list(g, c) != i {
                super::shmref::set_timer_list(g, c, i);
                done.push(format!(
                    "tm timer shard {idx} list {i}: fixed the list index of label {}",
                    c.label
                ));
            }
            if !l.next.is_null() && !plausible_cell(l.next) {
                l.next = null;
                set_timer_links(g, c, l);
                done.push(format!(
                    "tm timer shard {idx} list {i}: cut after label {} (link out of shm)",
                    c.label
                ));
            }
            n += 1;
            prev = p;
            p = l.next;
        }
    }
    let last = tl.last_tick(g);
    let relink = |c: &Cell, in_lists: &mut std::collections::HashSet<usize>| {
        in_lists.insert(c as *const Cell as usize);
        link_into(tl, g, c, list_for(c.next_due.load(Ordering::SeqCst), last));
    };
    for p in half_linked {
        if let Some(c) = cell_locked(g, p)
            && c.hash_index as usize % TIMER_SHARDS == idx
            && !in_lists.contains(&(p.as_ptr() as usize))
        {
            relink(c, &mut in_lists);
            done.push(format!(
                "tm timer shard {idx}: linked label {} left half-linked at a list head",
                c.label
            ));
        }
    }
    // The cells of this shard in their hash chains (entry locks, one at a time; nobody
    // holds an entry lock while waiting for a timer lock, so this cannot deadlock, and
    // a busy entry is skipped rather than waited for).
    let mut chained: Vec<ShmPtr<Cell>> = Vec::new();
    let mut busy = 0usize;
    for e in (idx..TABLE_ENTRIES).step_by(TIMER_SHARDS) {
        let Some(ent) = entry(e as u32) else { break };
        let Some(eg) = ent.lock.try_lock() else {
            busy += 1;
            continue;
        };
        let mut p = ent.head(&eg);
        let mut n = 0usize;
        while let Some(c) = cell_locked(&eg, p) {
            if !plausible_cell(p) || n > 1 << 20 {
                break;
            }
            chained.push(p);
            n += 1;
            p = hash_links(&eg, c).next;
        }
    }
    if busy > 0 {
        done.push(format!(
            "tm timer shard {idx}: {busy} hash entr(ies) busy, not searched for lost cells"
        ));
    }
    // Taken after the chains: the stacks only grow while the shard lock is held, so
    // every cell pushed before its chain was looked at is on them.
    let pending = stack_cells(
        g,
        super::shmref::pending_top(tl),
        1 << 22,
        super::shmref::stacked_pending_next,
    );
    let resched = stack_cells(
        g,
        super::shmref::resched_top(tl),
        1 << 22,
        super::shmref::resched_next,
    );
    let mut requeued = 0usize;
    for p in chained {
        // Cells are freed only by the timer walk under this shard's lock (held): the
        // cells seen in the chains are still live.
        let Some(c) = cell_locked(g, p) else { continue };
        let a = p.as_ptr() as usize;
        if !in_lists.contains(&a) && !pending.contains(&a) {
            relink(c, &mut in_lists);
            done.push(format!(
                "tm timer shard {idx}: label {} was in no timer list, linked again",
                c.label
            ));
        }
        if c.resched_queued.load(Ordering::SeqCst) == 1 && !resched.contains(&a) {
            c.resched_queued.store(0, Ordering::SeqCst);
            requeue(c);
            requeued += 1;
        }
    }
    if requeued > 0 {
        done.push(format!(
            "tm timer shard {idx}: {requeued} cell(s) marked for rescheduling but on no stack, queued again"
        ));
    }
    Ok(done)
}

/// Timer process: unlink `c` from its hash chain (entry lock) so lookups no longer find
/// it, and mark it for freeing. Idempotent.
pub fn unlink_hash(c: &CellRef) {
    let Some(e) = entry(c.hash_index) else { return };
    let g = e.lock.lock();
    let mut p = e.head(&g);
    let mut found = false;
    while let Some(x) = cell_locked(&g, p) {
        if std::ptr::eq(x, c.ptr().as_ptr()) {
            found = true;
            break;
        }
        p = hash_links(&g, x).next;
    }
    if found {
        let l = hash_links(&g, c);
        if let Some(n) = cell_locked(&g, l.next) {
            let mut nl = hash_links(&g, n);
            nl.prev = l.prev;
            set_hash_links(&g, n, nl);
        }
        match cell_locked(&g, l.prev) {
            Some(pv) => {
                let mut pl = hash_links(&g, pv);
                pl.next = l.next;
                set_hash_links(&g, pv, pl);
            }
            None => e.set_head(&g, l.next),
        }
        set_hash_links(&g, c, Links::default());
    }
    c.next_due.store(DELETE_MARK, Ordering::SeqCst);
    requeue(c);
}

/// Timer process: free the cells marked for deletion that nobody references.
pub fn reap() -> usize {
    // `due_cells` frees as it walks; cells it returns as due are handed back at once.
    let before = super::stats().inuse.get();
    drop(due_cells(0));
    before.saturating_sub(super::stats().inuse.get()) as usize
}

/// `next_due` value of a cell unlinked from its chain and waiting to be freed.
pub const DELETE_MARK: u64 = u64::MAX - 1;

/// Number of cells in the timer lists (diagnostics).
pub fn count_cells() -> usize {
    let mut n = 0;
    for tl in timers() {
        let g = tl.lock.lock();
        drain_pending(tl, &g);
        drain_resched(tl, &g);
        for i in 0..LISTS as u32 {
            let mut p = tl.list_head(&g, i);
            while let Some(c) = cell_locked(&g, p) {
                n += 1;
                p = timer_links(&g, c).next;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            // Another module's tests may have initialised the segment already.
            let _ = shm::init(256 << 20);
            init_table().expect("table");
        });
    }

    fn mk(hash: u32, text: &[u8]) -> Option<CellRef> {
        let req = ShmStr::new(text)?;
        let key = Key {
            callid: KSpan {
                off: 0,
                len: text.len() as u32,
            },
            ..Default::default()
        };
        new_cell(hash, req, key, CellInit::default(), CellState::default())
    }

    #[test]
    fn insert_find_delete_free() {
        setup();
        let hash = 4242;
        let used0 = shm::stats().used;
        let same = |c: &Cell| c.k(c.key.callid) == b"call-a";
        let (a, new) = find_or_insert(hash, same, || mk(hash, b"call-a")).unwrap();
        assert!(new);
        let (a2, new2) = find_or_insert(hash, same, || mk(hash, b"call-a")).unwrap();
        assert!(!new2, "second lookup finds the first cell");
        assert_eq!(a.ptr(), a2.ptr());
        drop(a2);
        let (b, newb) = find_or_insert(
            hash,
            |c| c.k(c.key.callid) == b"call-b",
            || mk(hash, b"call-b"),
        )
        .unwrap();
        assert!(newb);
        assert!(revalidate(hash, a.ptr(), a.label).is_some());
        assert!(revalidate(hash, a.ptr(), a.label.wrapping_add(1)).is_none());
        {
            let mut g = a.lock_state();
            g.st().uas_reply = ShmStr::new(b"SIP/2.0 100 Trying\r\n\r\n").unwrap();
        }
        // Deleted while referenced: unlinked at once, freed only after the last ref.
        unlink_hash(&a);
        assert!(revalidate(hash, a.ptr(), a.label).is_none());
        drop(due_cells(0));
        assert!(count_cells() >= 2);
        let pa = a.ptr();
        drop(a);
        drop(due_cells(0));
        assert!(find_in_entry(hash, |c| std::ptr::eq(c, pa.as_ptr())).is_none());
        unlink_hash(&b);
        drop(b);
        drop(due_cells(0));
        assert!(find_in_entry(hash, |_| true).is_none());
        // Other tests may allocate concurrently; ours are all returned.
        assert!(shm::stats().used <= used0 + 64 * 1024);
    }

    /// The timer tests share the wheel's per-shard "last tick": each runs alone and in
    /// its own window of time, later than every earlier test's.
    fn timer_window() -> (std::sync::MutexGuard<'static, ()>, u64) {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        static NEXT: AtomicU64 = AtomicU64::new(10_000_000);
        let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let base = NEXT.fetch_add(100_000_000, Ordering::SeqCst);
        // Bring every shard to `base`.
        drop(due_cells(base));
        (g, base)
    }

    /// The list `p` is in, if it is in any of its shard's lists.
    fn list_of(hash: u32, p: ShmPtr<Cell>) -> Option<u32> {
        let tl = timer_of(hash)?;
        let g = tl.lock.lock();
        for i in 0..LISTS as u32 {
            let mut q = tl.list_head(&g, i);
            while let Some(c) = cell_locked(&g, q) {
                if std::ptr::eq(c, p.as_ptr()) {
                    return Some(i);
                }
                q = timer_links(&g, c).next;
            }
        }
        None
    }

    fn returned(v: &[CellRef], c: &CellRef) -> bool {
        v.iter().any(|x| x.ptr() == c.ptr())
    }

    /// Take `c` out of the table and let the timer free it.
    fn discard(hash: u32, c: CellRef) {
        let p = c.ptr();
        unlink_hash(&c);
        drop(c);
        drop(due_cells(0));
        assert_eq!(list_of(hash, p), None, "freed");
    }

    #[test]
    fn due_cells_returns_only_due() {
        setup();
        let (_g, t) = timer_window();
        let hash = 777;
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"due")).unwrap();
        c.due(t + 1_000);
        assert!(!returned(&due_cells(t + 999), &c));
        assert!(returned(&due_cells(t + 1_000), &c));
        // Due in the middle of a tick the walk has just looked at: moved on to the next
        // bucket, not left behind for a whole turn.
        c.next_due.store(t + 1_150, Ordering::SeqCst);
        requeue(&c);
        assert!(!returned(&due_cells(t + 1_120), &c));
        assert!(returned(&due_cells(t + 1_200), &c));
        discard(hash, c);
        assert!(find_in_entry(hash, |_| true).is_none());
    }

    #[test]
    fn deadline_a_turn_later_shares_the_bucket_but_is_not_early() {
        setup();
        let (_g, t) = timer_window();
        let hash = 778;
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"turn")).unwrap();
        let turn = WHEEL as u64 * 100;
        c.due(t + turn + 500);
        drop(due_cells(t));
        let bucket = list_of(hash, c.ptr()).expect("linked");
        assert_eq!(bucket as u64, tick_of(t + 500) % WHEEL as u64);
        // The walk passes its bucket once before the deadline: the cell stays.
        assert!(!returned(&due_cells(t + 600), &c));
        assert!(!returned(&due_cells(t + turn + 400), &c));
        assert!(returned(&due_cells(t + turn + 500), &c));
        discard(hash, c);
    }

    #[test]
    fn lowered_deadline_moves_the_cell_to_its_new_bucket() {
        setup();
        let (_g, t) = timer_window();
        let hash = 779;
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"lower")).unwrap();
        c.due(t + 50_000);
        drop(due_cells(t));
        assert_eq!(
            list_of(hash, c.ptr()),
            Some((tick_of(t + 50_000) % WHEEL as u64) as u32)
        );
        // A worker lowers it (e.g. a retransmission timer): queued once, moved at the
        // next walk, due at the new time and not before.
        c.due(t + 1_000);
        c.due(t + 1_200); // later than the current deadline: no effect
        assert!(!returned(&due_cells(t + 900), &c));
        assert_eq!(
            list_of(hash, c.ptr()),
            Some((tick_of(t + 1_000) % WHEEL as u64) as u32)
        );
        assert!(returned(&due_cells(t + 1_000), &c));
        discard(hash, c);
    }

    #[test]
    fn raised_deadline_after_handling_is_rescheduled_by_requeue() {
        setup();
        let (_g, t) = timer_window();
        let hash = 780;
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"raise")).unwrap();
        c.due(t + 300);
        let v = due_cells(t + 300);
        assert!(returned(&v, &c));
        drop(v);
        // What the timer process does after handling: the next deadline, then requeue.
        c.next_due.store(t + 7_000, Ordering::SeqCst);
        requeue(&c);
        assert!(!returned(&due_cells(t + 6_900), &c));
        assert!(returned(&due_cells(t + 7_050), &c));
        // Nothing left: idle cells are not looked at.
        c.next_due.store(u64::MAX, Ordering::SeqCst);
        requeue(&c);
        drop(due_cells(t + 7_100));
        assert_eq!(list_of(hash, c.ptr()), Some(IDLE_LIST));
        assert!(!returned(&due_cells(t + 500_000), &c));
        discard(hash, c);
    }

    #[test]
    fn overdue_cell_is_due_at_the_next_walk() {
        setup();
        let (_g, t) = timer_window();
        let hash = 781;
        // Created with a deadline already behind the wheel's last tick.
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"late")).unwrap();
        c.due(t - 5_000);
        drop(due_cells(0)); // drains the pending stack without moving time
        assert_eq!(
            list_of(hash, c.ptr()),
            Some((tick_of(t + 100) % WHEEL as u64) as u32)
        );
        assert!(returned(&due_cells(t + 100), &c));
        discard(hash, c);
    }

    #[test]
    fn reap_waits_for_the_last_reference_and_the_reschedule_stack() {
        setup();
        let (_g, _t) = timer_window();
        let hash = 782;
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"reap")).unwrap();
        let p = c.ptr();
        let other = revalidate(hash, p, c.label).expect("second reference");
        unlink_hash(&c);
        drop(c);
        drop(due_cells(0));
        assert_eq!(list_of(hash, p), Some(REAP_LIST), "still referenced");
        // Queued for rescheduling (as if a worker lowered its deadline just now): the
        // timer still has to take it off the stack, so it is not freed yet.
        other.resched_queued.store(1, Ordering::SeqCst);
        let label = other.label;
        drop(other);
        drop(due_cells(0));
        assert_eq!(
            list_of(hash, p),
            Some(REAP_LIST),
            "still on the reschedule stack"
        );
        // The cell is still allocated; the timer takes it off the stack.
        let tl = timer_of(hash).unwrap();
        {
            let g = tl.lock.lock();
            let c = cell_locked(&g, p).expect("allocated");
            assert_eq!(c.label, label);
            c.resched_queued.store(0, Ordering::SeqCst);
        }
        drop(due_cells(0));
        assert_eq!(list_of(hash, p), None, "freed");
    }

    #[test]
    fn addr_roundtrip() {
        for a in ["127.0.0.1:5060", "[::1]:5070"] {
            let sa: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(Addr::from_sa(sa).to_sa(), Some(sa));
        }
        assert_eq!(Addr::default().to_sa(), None);
    }

    /// Runs the timer shard repair of `hash`'s shard, as the attendant does after the
    /// timer process died holding its lock.
    fn repair_shard_of(hash: u32) -> Vec<String> {
        let idx = hash as usize % TIMER_SHARDS;
        let tl = timer_of(hash).unwrap();
        let g = tl.lock.lock();
        let r = repair_timer_shard(idx, &g).expect("repair");
        drop(g);
        r
    }

    #[test]
    fn timer_repair_relinks_cells_taken_off_the_pending_stack() {
        setup();
        let (_g, t) = timer_window();
        let hash = 5_001;
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"lost")).unwrap();
        c.due(t + 1_000);
        // The timer process took the stack and died before linking the cell.
        let tl = timer_of(hash).unwrap();
        {
            let _lg = tl.lock.lock();
            let _ = super::super::shmref::take_pending(tl);
        }
        let _ = super::super::shmref::take_resched(tl);
        c.resched_queued.store(0, Ordering::SeqCst);
        assert_eq!(list_of(hash, c.ptr()), None, "lost from the timer");
        let done = repair_shard_of(hash);
        assert!(
            done.iter()
                .any(|l| l.contains("was in no timer list, linked again")),
            "{done:?}"
        );
        assert!(list_of(hash, c.ptr()).is_some());
        // It keeps its timer.
        assert!(!returned(&due_cells(t + 900), &c));
        assert!(returned(&due_cells(t + 1_000), &c));
        // A second repair finds nothing to do.
        let again = repair_shard_of(hash);
        assert!(again.is_empty(), "{again:?}");
        discard(hash, c);
    }

    #[test]
    fn timer_repair_finishes_a_half_linked_head_and_fixes_back_links() {
        setup();
        let (_g, t) = timer_window();
        let (ha, hb) = (5_002, 5_002 + TIMER_SHARDS as u32);
        let (a, _) = find_or_insert(ha, |_| false, || mk(ha, b"ha")).unwrap();
        let (b, _) = find_or_insert(hb, |_| false, || mk(hb, b"hb")).unwrap();
        drop(due_cells(t));
        // Both idle (no deadline), b at the head (linked last).
        assert_eq!(list_of(ha, a.ptr()), Some(IDLE_LIST));
        assert_eq!(list_of(hb, b.ptr()), Some(IDLE_LIST));
        let tl = timer_of(ha).unwrap();
        {
            let g = tl.lock.lock();
            // A move of b stopped half-way: unlinked, given its new links and set as
            // the new head's back link, the list head not yet moved.
            unlink_from(tl, &g, &b);
            let head = tl.list_head(&g, IDLE_LIST);
            assert!(!head.is_null());
            set_timer_links(
                &g,
                &b,
                Links {
                    next: head,
                    prev: ShmPtr::null(),
                },
            );
            let h = cell_locked(&g, head).unwrap();
            let mut l = timer_links(&g, h);
            l.prev = b.ptr();
            set_timer_links(&g, h, l);
        }
        assert_eq!(list_of(hb, b.ptr()), None);
        let done = repair_shard_of(ha);
        assert!(
            done.iter()
                .any(|l| l.contains("left half-linked at a list head")),
            "{done:?}"
        );
        assert_eq!(list_of(hb, b.ptr()), Some(IDLE_LIST));
        assert_eq!(list_of(ha, a.ptr()), Some(IDLE_LIST));
        // A broken back link is set right.
        {
            let g = tl.lock.lock();
            let mut l = timer_links(&g, &a);
            l.prev = ShmPtr::null();
            set_timer_links(&g, &a, l);
            let head = tl.list_head(&g, IDLE_LIST);
            if head == a.ptr() {
                // a is the head: give it a bogus back link instead.
                l.prev = b.ptr();
                set_timer_links(&g, &a, l);
            }
        }
        let done = repair_shard_of(ha);
        assert!(!done.is_empty(), "the broken back link went unnoticed");
        assert!(repair_shard_of(ha).is_empty());
        discard(ha, a);
        discard(hb, b);
    }

    #[test]
    fn timer_repair_requeues_a_reschedule_mark_left_without_its_stack() {
        setup();
        let (_g, t) = timer_window();
        let hash = 5_003;
        let (c, _) = find_or_insert(hash, |_| false, || mk(hash, b"resched")).unwrap();
        c.due(t + 50_000);
        drop(due_cells(t));
        // The timer took the reschedule stack and died: the mark stays set, so no
        // later deadline change would ever move the cell again.
        c.resched_queued.store(1, Ordering::SeqCst);
        c.next_due.store(t + 1_000, Ordering::SeqCst);
        let done = repair_shard_of(hash);
        assert!(done.iter().any(|l| l.contains("queued again")), "{done:?}");
        // Moved to its new deadline's bucket by the next walk.
        assert!(returned(&due_cells(t + 1_000), &c));
        discard(hash, c);
    }
}

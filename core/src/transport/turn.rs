//! Whose turn it is to read a UDP socket.
//!
//! When every receiver of a socket blocks in `recvmmsg`, the kernel wakes them in turn
//! (its wait queue is first in, first out), so with a steady trickle each datagram
//! lands on a process that had gone to sleep: a context switch per datagram, and on two
//! cores most of a stateful call's CPU time. Instead, one receiver at a time — the
//! *reader* — reads the socket; the others sleep on a futex in shared memory. The
//! reader keeps reading while it keeps up. It hands the turn on (waking one sleeper):
//! - when a `recvmmsg` returns [`BACKLOG`] datagrams or more: a backlog is building,
//!   and a second process helps ([`hand_on_if_backlog`]);
//! - before a call that can block — a database query, a DNS lookup —
//!   ([`let_others_read`]): the socket is never left unread behind a slow peer;
//! - when the timer process finds it has taken no batch for a whole tick while busy or
//!   while datagrams wait (stuck in a slow call, or stopped) ([`watchdog`]).
//!
//! Only efficiency depends on the turn, never correctness: a receiver that lost the
//! turn while inside `recvmmsg` handles what it got and then waits; two readers at once
//! are harmless (the kernel hands each datagram to one of them).
//!
//! Map: one [`Turn`] per listen socket, in shm, allocated by the attendant before it
//! forks ([`init`]). No lock: each field is one atomic, all SeqCst. A sleeper wakes
//! at least once a second to notice a reader that died.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use crate::sys;

#[repr(C)]
#[derive(Default)]
pub struct Turn {
    /// pid of the reader, 0 when the turn is free.
    reader: AtomicI32,
    /// The futex word sleepers wait on: bumped each time the turn is freed.
    freed: AtomicU32,
    /// How many receivers sleep on `freed` (a free turn wakes one only if any).
    sleepers: AtomicU32,
    /// Batches the reader has taken (the watchdog's progress mark).
    batches: AtomicU32,
    /// 1 while the reader handles a batch, 0 while it waits in `recvmmsg`.
    busy: AtomicU32,
}

// SAFETY: #[repr(C)] atomics only, no pointers, no Drop.
#[allow(unsafe_code)]
unsafe impl shm::ShmSafe for Turn {}

/// Datagrams in one `recvmmsg` that make the reader hand the turn on. Arrivals come in
/// bursts (an INVITE, then its 100, 180 and 200 close together), so a short queue is
/// normal at half load; a half-full batch is not. Handing on at 2 instead cost about a
/// third more CPU per call at 4,000 calls/s on two cores (one wake-up per hand-over).
pub const BACKLOG: usize = super::udp::BATCH / 2;

/// How long a sleeper waits before looking whether the reader still lives.
const SLEEP: Duration = Duration::from_secs(1);

static TURNS: OnceLock<&'static [Turn]> = OnceLock::new();

thread_local! {
    /// The socket this process reads (receivers only).
    static MINE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Allocate one turn per listen socket (attendant, after the sockets are bound and
/// before it forks). Without shm (unit tests) the turns live on the heap.
pub fn init(sockets: usize) -> Result<(), String> {
    if TURNS.get().is_some() {
        return Ok(());
    }
    let turns: &'static [Turn] = if shm::is_initialized() {
        shm::alloc_static_slice_with(sockets, |_| Turn::default())
            .ok_or("no shm for the socket turns")?
    } else {
        Box::leak((0..sockets).map(|_| Turn::default()).collect())
    };
    let _ = TURNS.set(turns);
    Ok(())
}

fn turn(idx: usize) -> Option<&'static Turn> {
    TURNS.get().and_then(|t| t.get(idx))
}

impl Turn {
    /// Free the turn if `me` holds it, and wake one sleeper.
    fn free(&self, me: i32) -> bool {
        if self.reader.compare_exchange(me, 0, SeqCst, SeqCst).is_err() {
            return false;
        }
        self.freed.fetch_add(1, SeqCst);
        if self.sleepers.load(SeqCst) > 0 {
            sys::futex_wake(&self.freed, 1);
        }
        true
    }

    /// Take the turn if free; true if `me` holds it now.
    fn try_take(&self, me: i32) -> bool {
        match self.reader.load(SeqCst) {
            r if r == me => true,
            0 => self.reader.compare_exchange(0, me, SeqCst, SeqCst).is_ok(),
            _ => false,
        }
    }

    /// Sleep until the turn is freed (or a signal, or [`SLEEP`]); frees it if its
    /// reader has died.
    fn sleep(&self) {
        let seen = self.freed.load(SeqCst);
        self.sleepers.fetch_add(1, SeqCst);
        // Freed between the caller's look and our registration: `freed` moved on, and
        // the wait returns at once.
        let reader = self.reader.load(SeqCst);
        if reader != 0 {
            sys::futex_wait(&self.freed, seen, SLEEP);
        }
        self.sleepers.fetch_sub(1, SeqCst);
        if reader != 0 && self.freed.load(SeqCst) == seen && !sys::process_alive(reader) {
            crate::log_warn!("reader {reader} of a socket is gone, taking over");
            self.free(reader);
        }
    }
}

/// Receiver of socket `idx`: return once this process holds the turn (at once if it
/// does already), or after a wait without it (a signal, or a second passed): the
/// caller checks its signals and calls again. True if it holds the turn.
pub fn wait_for_turn(idx: usize) -> bool {
    MINE.with(|m| m.set(Some(idx)));
    let Some(t) = turn(idx) else { return true };
    let me = sys::getpid();
    if t.try_take(me) {
        return true;
    }
    t.sleep();
    t.try_take(me)
}

/// Receiver: `n` datagrams came from one `recvmmsg` call. [`BACKLOG`] or more means
/// the reader is falling behind: another receiver takes over the socket while this one
/// handles them. Marks the reader busy either way (see [`done_batch`]).
pub fn hand_on_if_backlog(idx: usize, n: usize) {
    let Some(t) = turn(idx) else { return };
    let me = sys::getpid();
    if t.reader.load(SeqCst) == me {
        t.batches.fetch_add(1, SeqCst);
        t.busy.store(1, SeqCst);
        if n >= BACKLOG {
            t.free(me);
        }
    }
}

/// Receiver: the batch is handled; back to `recvmmsg`.
pub fn done_batch(idx: usize) {
    if let Some(t) = turn(idx) {
        t.busy.store(0, SeqCst);
    }
}

/// Before a call that can block (database, DNS): a receiver holding its socket's turn
/// gives it to another receiver, so the socket is read meanwhile. Nothing in other
/// processes.
pub fn let_others_read() {
    let Some(idx) = MINE.with(Cell::get) else {
        return;
    };
    if let Some(t) = turn(idx) {
        t.free(sys::getpid());
    }
}

/// Attendant, after reaping process `pid`: frees every turn it held and wakes a sleeper,
/// so a socket is read again at once (not after a sleeper's one-second look) and the
/// dead reader's replacement joins the others as a plain receiver.
pub fn release_dead(pid: i32) {
    if let Some(turns) = TURNS.get() {
        for t in turns.iter() {
            if t.free(pid) {
                crate::log_info!(plain: "freed the socket turn of dead receiver {pid}");
            }
        }
    }
}

/// Timer process, every tick: a reader that took no batch since the last tick while
/// busy at both ticks (stuck on one batch) or while datagrams wait on its socket at
/// both ticks (stopped, e.g. under a debugger, or starved) loses the turn to another
/// receiver. `seen` keeps each socket's (batches, stuck-looking) of the last tick.
pub fn watchdog(seen: &mut Vec<(u32, bool)>) {
    let Some(turns) = TURNS.get() else { return };
    seen.resize(turns.len(), (0, false));
    for (idx, (t, last)) in turns.iter().zip(seen.iter_mut()).enumerate() {
        let batches = t.batches.load(SeqCst);
        let reader = t.reader.load(SeqCst);
        let looks_stuck =
            reader != 0 && (t.busy.load(SeqCst) == 1 || queued(idx)) && t.sleepers.load(SeqCst) > 0;
        if looks_stuck && *last == (batches, true) {
            crate::log_dbg!("receiver {reader} made no progress for a tick, another one reads");
            t.free(reader);
        }
        *last = (batches, looks_stuck);
    }
}

/// Whether datagrams wait on listen socket `idx`.
fn queued(idx: usize) -> bool {
    use std::os::fd::AsRawFd;
    crate::transport::socket::sockets()
        .get(idx)
        .and_then(|s| s.udp.as_ref())
        .is_some_and(|u| sys::pending_bytes(u.as_raw_fd()).is_ok_and(|n| n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_free_and_hand_on() {
        let t = Turn::default();
        assert!(t.try_take(10));
        assert!(t.try_take(10), "held: taking again is a no-op");
        assert!(!t.try_take(11), "someone else holds it");
        assert!(!t.free(11), "only the holder frees it");
        let before = t.freed.load(SeqCst);
        assert!(t.free(10));
        assert_eq!(t.freed.load(SeqCst), before + 1);
        assert!(t.try_take(11));
    }

    #[test]
    fn sleeper_frees_a_dead_readers_turn() {
        let t = Turn::default();
        // A pid that cannot exist (above pid_max's limit).
        assert!(t.try_take(i32::MAX - 1));
        t.sleep();
        assert_eq!(t.reader.load(SeqCst), 0);
        assert!(t.try_take(sys::getpid()));
    }
}

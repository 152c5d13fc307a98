//! tm timers, run by the timer process every 100 ms over the shm timer wheel
//! (`h_table`):
//! UDP retransmissions (T1 doubling up to T2), final-response timeouts (fr_timer /
//! fr_inv_timer), UAS reply retransmissions until the ACK, the wait state, and freeing
//! deleted cells once no process holds a reference (delete_timer).

use super::P;
use super::fwd::{now_ms, send};
use super::h_table::*;
use super::reply;

/// The 100 ms tick: the cells due in the wheel buckets of the ticks that passed; each
/// goes back to the wheel at its new deadline once handled.
pub fn utimer(_ticks: u64) {
    let now = now_ms();
    for c in due_cells(now) {
        process(&c, now);
        requeue(&c);
    }
}

/// The 1 s tick: frees deleted cells whose last reference went away (delete_timer; the
/// 100 ms tick does the same).
pub fn timer(_ticks: u64) {
    reap();
}

fn process(c: &CellRef, now: u64) {
    let mut g = c.lock_state();
    let st = g.st();
    let (_, t2) = P.t1_t2_of(st);
    if st.flags & T_DELETE != 0 {
        drop(g);
        unlink_hash(c);
        return;
    }
    if st.wait_at != 0 && st.wait_at <= now && st.flags & T_IN_FAILURE == 0 {
        st.flags |= T_DELETE;
        drop(g);
        unlink_hash(c);
        return;
    }
    let mut timed_out = false;
    for i in 0..st.nr_branches as usize {
        let b = &mut st.branches[i];
        if b.flags & B_FINAL != 0 {
            continue;
        }
        if b.retr_at != 0 && b.retr_at <= now {
            if let Some(dst) = b.dst.to_sa() {
                send(b.sock as usize, dst, b.request.as_bytes());
            }
            b.retr_iv = (b.retr_iv.saturating_mul(2)).min(t2);
            b.retr_at = now + u64::from(b.retr_iv);
        }
        if b.fr_at != 0 && b.fr_at <= now {
            reply::branch_timeout_locked(c, st, i);
            timed_out = true;
        }
    }
    if st.uas_retr_at != 0 && st.uas_retr_at <= now && st.flags & T_ACKED == 0 {
        if let Some(dst) = st.uas_dst.to_sa() {
            send(st.uas_sock as usize, dst, st.uas_reply.as_bytes());
        }
        st.uas_retr_iv = st.uas_retr_iv.saturating_mul(2).min(t2);
        st.uas_retr_at = now + u64::from(st.uas_retr_iv);
    }
    // Next deadline.
    let mut due = u64::MAX;
    for b in &st.branches[..st.nr_branches as usize] {
        if b.flags & B_FINAL == 0 {
            for t in [b.retr_at, b.fr_at] {
                if t != 0 {
                    due = due.min(t);
                }
            }
        }
    }
    for t in [st.uas_retr_at, st.wait_at] {
        if t != 0 {
            due = due.min(t);
        }
    }
    c.next_due.store(due, std::sync::atomic::Ordering::Release);
    if timed_out {
        reply::complete(c, g);
    }
}

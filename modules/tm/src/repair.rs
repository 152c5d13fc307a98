//! The tm hash entry repair hook (issue 18): when a process dies holding an entry lock,
//! the attendant takes the lock over and runs [`repair_entry`]: the chain's links are
//! checked (every cell inside shm, in this entry, back links right) and a cell the dead
//! process was inserting — linked as the head's `prev` but not yet made the head — is
//! dropped from the chain. Cells of the chain keep their timers (nothing else is
//! touched). The dropped cell's memory stays allocated: its references belonged to the
//! dead process, and freeing what another process may still reach through the timer's
//! pending stack is not provable; one cell per death at most.
//!
//! The timer shards have a hook too ([`register_timer`]): the check and repair of a
//! shard's lists and stacks is `h_table::repair_timer_shard`.

use shm::{FastLockGuard, ShmPtr};

use super::h_table::{Cell, Entry, TABLE_ENTRIES, entry};
use super::shmref::{cell_locked, hash_links, set_hash_links};

/// Registers the hook for the entry array (attendant, mod_init, after `init_table`).
pub(super) fn register() {
    if let Some(e0) = entry(0) {
        let base = e0 as *const Entry as usize;
        shm::register_repair(
            base,
            TABLE_ENTRIES * size_of::<Entry>(),
            "tm hash entry",
            repair_entry,
        );
    }
}

/// Registers the hook for the timer shards (attendant, mod_init, after `init_table`).
pub(super) fn register_timer() {
    if let Some((base, len)) = super::h_table::timer_shards_span() {
        shm::register_repair(base, len, "tm timer shard", repair_timer);
    }
}

fn repair_timer(lock: usize, g: FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let idx = super::h_table::timer_shard_of_lock(lock)
        .ok_or_else(|| format!("no tm timer shard lock at {lock:#x}"))?;
    let r = super::h_table::repair_timer_shard(idx, &g);
    drop(g);
    r
}

fn plausible(p: ShmPtr<Cell>) -> bool {
    let a = p.as_ptr() as usize;
    shm::global::contains(a) && a.is_multiple_of(align_of::<Cell>())
}

fn repair_entry(lock: usize, g: FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let base = entry(0).map_or(0, |e| e as *const Entry as usize);
    let off = lock.wrapping_sub(base);
    let idx = off / size_of::<Entry>();
    if lock < base || !off.is_multiple_of(size_of::<Entry>()) || idx >= TABLE_ENTRIES {
        return Err(format!("no tm hash entry at {lock:#x}"));
    }
    let e = entry(idx as u32).ok_or("no tm table")?;
    if !std::ptr::eq(g.lock_ref(), &e.lock) {
        return Err(format!("tm entry {idx}: the guard is not its lock"));
    }
    let mut done = Vec::new();
    let head = e.head(&g);
    if !head.is_null() {
        if !plausible(head) {
            return Err(format!(
                "tm entry {idx}: head {:p} out of shm",
                head.as_ptr()
            ));
        }
        if let Some(h) = cell_locked(&g, head) {
            let mut l = hash_links(&g, h);
            if !l.prev.is_null() {
                l.prev = ShmPtr::null();
                set_hash_links(&g, h, l);
                done.push(format!(
                    "tm entry {idx}: a transaction being inserted (not yet in the chain)"
                ));
            }
        }
    }
    let mut prev = ShmPtr::<Cell>::null();
    let mut p = head;
    let mut n = 0usize;
    while !p.is_null() {
        if !plausible(p) || n > 1 << 20 {
            return Err(format!("tm entry {idx}: chain broken after {n} cell(s)"));
        }
        let Some(c) = cell_locked(&g, p) else { break };
        if c.hash_index as usize != idx {
            return Err(format!(
                "tm entry {idx}: cell of entry {} in the chain",
                c.hash_index
            ));
        }
        let mut l = hash_links(&g, c);
        if l.prev != prev {
            l.prev = prev;
            set_hash_links(&g, c, l);
            done.push(format!(
                "tm entry {idx}: fixed a back link (label {})",
                c.label
            ));
        }
        n += 1;
        prev = p;
        p = l.next;
    }
    drop(g);
    Ok(done)
}

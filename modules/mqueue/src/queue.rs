//! The queues in shared memory.
//!
//! As dialog's table and pike's tree, a queue is parallel arrays of atomics allocated
//! once in the attendant before fork (no pointers, nothing freed, no `unsafe`): a ring
//! of `cap` item slots, each a row of two lengths (key, value) and `words` 64-bit words
//! holding the key's bytes followed by the value's. The ring's position is one 64-bit
//! word, `head << 32 | len`, so every change of the queue commits with a single store.
//!
//! Every access to a queue goes through [`Locked`], the guard of the queue's lock: the
//! accessors live on it. A writer first fills a free slot, then commits; a reader
//! copies the item out, then commits. When the queue is full, [`Locked::push`] first
//! commits dropping the oldest item, then writes over its slot, then commits the new
//! one: a process that dies at any point leaves a consistent ring (the repair hook
//! checks the position and the live items' lengths, and empties a queue it cannot
//! prove consistent).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shm::{FastLock, FastLockGuard};

/// One queue in shared memory (the references point into the segment).
pub struct Queue {
    pub name: String,
    lock: &'static FastLock,
    /// `head << 32 | len`
    pos: &'static AtomicU64,
    /// items dropped because the queue was full (read without the lock)
    dropped: &'static AtomicU64,
    /// per slot: key length, value length
    lens: &'static [AtomicU32],
    /// per slot: `words` words of key then value bytes
    bytes: &'static [AtomicU64],
    cap: u32,
    words: usize,
}

/// A queue's lock held: the only way to read or change it.
#[must_use]
pub struct Locked<'a> {
    q: &'a Queue,
    _g: FastLockGuard<'a>,
}

fn split(pos: u64) -> (u32, u32) {
    ((pos >> 32) as u32, pos as u32)
}

fn join(head: u32, len: u32) -> u64 {
    (u64::from(head) << 32) | u64::from(len)
}

impl Queue {
    /// A queue of `cap` items of at most `item_bytes` bytes (key + value) in shm;
    /// `None` when shm is full.
    pub fn new(name: &str, cap: u32, item_bytes: usize) -> Option<Queue> {
        let cap = cap.max(1);
        let words = item_bytes.div_ceil(8).max(1);
        let lock = shm::alloc_static(FastLock::new())?;
        let pos = shm::alloc_static(AtomicU64::new(0))?;
        let dropped = shm::alloc_static(AtomicU64::new(0))?;
        let lens = shm::alloc_static_slice_with(cap as usize * 2, |_| AtomicU32::new(0))?;
        let bytes = shm::alloc_static_slice_with(cap as usize * words, |_| AtomicU64::new(0))?;
        Some(Queue {
            name: name.to_string(),
            lock,
            pos,
            dropped,
            lens,
            bytes,
            cap,
            words,
        })
    }

    /// A queue in private memory (unit tests).
    pub fn private(name: &str, cap: u32, item_bytes: usize) -> Queue {
        let cap = cap.max(1);
        let words = item_bytes.div_ceil(8).max(1);
        let leak_u32 = |n: usize| -> &'static [AtomicU32] {
            Box::leak(
                (0..n)
                    .map(|_| AtomicU32::new(0))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        };
        let leak_u64 = |n: usize| -> &'static [AtomicU64] {
            Box::leak(
                (0..n)
                    .map(|_| AtomicU64::new(0))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        };
        Queue {
            name: name.to_string(),
            lock: Box::leak(Box::new(FastLock::new())),
            pos: &leak_u64(1)[0],
            dropped: &leak_u64(1)[0],
            lens: leak_u32(cap as usize * 2),
            bytes: leak_u64(cap as usize * words),
            cap,
            words,
        }
    }

    /// The address of the queue's lock (for the repair registry).
    pub fn lock_addr(&self) -> usize {
        self.lock as *const FastLock as usize
    }

    pub fn capacity(&self) -> u32 {
        self.cap
    }

    /// Bytes an item (key + value) may have.
    pub fn item_bytes(&self) -> usize {
        self.words * 8
    }

    /// Items dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn lock(&self) -> Locked<'_> {
        Locked {
            q: self,
            _g: self.lock.lock(),
        }
    }

    /// The guard for a lock taken over from a dead process (repair), if it is this
    /// queue's.
    pub fn adopt<'a>(&'a self, g: FastLockGuard<'a>) -> Option<Locked<'a>> {
        std::ptr::eq(g.lock_ref(), self.lock).then_some(Locked { q: self, _g: g })
    }
}

impl Locked<'_> {
    fn pos(&self) -> (u32, u32) {
        split(self.q.pos.load(Ordering::Relaxed))
    }

    fn commit(&self, head: u32, len: u32) {
        self.q.pos.store(join(head, len), Ordering::Release);
    }

    pub fn len(&self) -> u32 {
        self.pos().1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write_slot(&self, slot: u32, key: &[u8], value: &[u8]) {
        let s = slot as usize;
        let words = &self.q.bytes[s * self.q.words..(s + 1) * self.q.words];
        // the caller checked the item fits; never write past the slot
        let room = self.q.words * 8;
        let key = &key[..key.len().min(room)];
        let value = &value[..value.len().min(room - key.len())];
        let all = key.iter().chain(value.iter()).copied();
        let mut buf = [0u8; 8];
        let mut i = 0;
        let mut w = 0;
        for b in all {
            buf[i] = b;
            i += 1;
            if i == 8 {
                words[w].store(u64::from_le_bytes(buf), Ordering::Relaxed);
                w += 1;
                i = 0;
                buf = [0u8; 8];
            }
        }
        if i > 0 {
            words[w].store(u64::from_le_bytes(buf), Ordering::Relaxed);
        }
        self.q.lens[s * 2].store(key.len() as u32, Ordering::Relaxed);
        self.q.lens[s * 2 + 1].store(value.len() as u32, Ordering::Relaxed);
    }

    fn slot_lens(&self, slot: u32) -> (usize, usize) {
        let s = slot as usize;
        (
            self.q.lens[s * 2].load(Ordering::Relaxed) as usize,
            self.q.lens[s * 2 + 1].load(Ordering::Relaxed) as usize,
        )
    }

    fn read_slot(&self, slot: u32) -> (Vec<u8>, Vec<u8>) {
        let s = slot as usize;
        let (kl, vl) = self.slot_lens(slot);
        let total = (kl + vl).min(self.q.words * 8);
        let words = &self.q.bytes[s * self.q.words..(s + 1) * self.q.words];
        let mut all = Vec::with_capacity(total);
        for w in words.iter().take(total.div_ceil(8)) {
            all.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        all.truncate(total);
        let value = all.split_off(kl.min(total));
        (all, value)
    }

    /// Append an item; when the queue is full the oldest item is dropped first.
    /// Returns whether one was dropped. The caller checked the item fits
    /// ([`Queue::item_bytes`]).
    pub fn push(&self, key: &[u8], value: &[u8]) -> bool {
        let (mut head, mut len) = self.pos();
        let mut dropped = false;
        if len >= self.q.cap {
            head = (head + 1) % self.q.cap;
            len = self.q.cap - 1;
            self.commit(head, len);
            self.q.dropped.fetch_add(1, Ordering::Relaxed);
            dropped = true;
        }
        let slot = (head + len) % self.q.cap;
        self.write_slot(slot, key, value);
        self.commit(head, len + 1);
        dropped
    }

    /// Take the oldest item.
    pub fn pop(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let (head, len) = self.pos();
        if len == 0 {
            return None;
        }
        let item = self.read_slot(head);
        self.commit((head + 1) % self.q.cap, len - 1);
        Some(item)
    }

    /// The check of a queue whose lock a dead process held (the caller holds it now):
    /// the position must lie in the ring and every live item's lengths in its slot;
    /// otherwise the queue is emptied. Returns what was done.
    pub fn repair(&self) -> Vec<String> {
        let (head, len) = self.pos();
        let bad = if head >= self.q.cap || len > self.q.cap {
            Some(format!(
                "position head {head}, length {len} outside the ring"
            ))
        } else {
            (0..len)
                .map(|i| (head + i) % self.q.cap)
                .find(|&s| {
                    let (k, v) = self.slot_lens(s);
                    k + v > self.q.words * 8
                })
                .map(|s| format!("item in slot {s} longer than its slot"))
        };
        match bad {
            Some(why) => {
                self.commit(0, 0);
                vec![format!(
                    "mqueue {}: {why}: emptied ({len} item(s) lost)",
                    self.q.name
                )]
            }
            None => Vec::new(),
        }
    }

    /// Overwrite the raw position (tests of the repair).
    #[cfg(test)]
    pub fn force_pos(&self, head: u32, len: u32) {
        self.commit(head, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_wrap_and_drop_oldest() {
        let q = Queue::private("t", 3, 32);
        let l = q.lock();
        assert!(l.pop().is_none());
        for i in 0..3 {
            assert!(!l.push(format!("k{i}").as_bytes(), format!("value {i}").as_bytes()));
        }
        assert_eq!(l.len(), 3);
        assert!(l.push(b"k3", b"value 3"), "full: the oldest goes");
        assert_eq!(q.dropped(), 1);
        let got: Vec<_> = std::iter::from_fn(|| l.pop()).collect();
        assert_eq!(
            got,
            (1..4)
                .map(|i| (
                    format!("k{i}").into_bytes(),
                    format!("value {i}").into_bytes()
                ))
                .collect::<Vec<_>>()
        );
        assert!(l.is_empty());
        // exact fits and empty parts
        assert!(!l.push(b"", b""));
        assert!(!l.push(&[7u8; 16], &[9u8; 16]));
        assert_eq!(l.pop(), Some((vec![], vec![])));
        assert_eq!(l.pop(), Some((vec![7u8; 16], vec![9u8; 16])));
    }

    #[test]
    fn repair_keeps_a_good_queue_and_empties_a_bad_one() {
        let q = Queue::private("r", 4, 16);
        let l = q.lock();
        let _ = l.push(b"a", b"1");
        let _ = l.push(b"b", b"2");
        assert!(l.repair().is_empty());
        assert_eq!(l.len(), 2);
        l.force_pos(9, 2);
        let done = l.repair();
        assert!(done[0].contains("outside the ring"), "{done:?}");
        assert!(l.is_empty());
        let _ = l.push(b"c", b"3");
        assert_eq!(l.pop(), Some((b"c".to_vec(), b"3".to_vec())));
    }
}

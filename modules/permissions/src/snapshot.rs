//! A table published in shared memory for every process (the cached `trusted` and
//! `address` tables): serialised bytes in a fixed buffer of atomics, with a
//! generation counter, under one lock held only while bytes are copied. The
//! attendant publishes the first copy in `mod_init`, MI reloads publish new ones
//! (MI process); a reader keeps its own parsed copy and re-reads the bytes when the
//! generation moved, so a lookup costs one atomic load.

use shm::FastLock;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

pub struct Snapshot {
    lock: &'static FastLock,
    epoch: &'static AtomicU64,
    len: &'static AtomicU32,
    buf: &'static [AtomicU8],
}

impl Snapshot {
    /// A snapshot of at most `cap` bytes in shm (attendant, before fork).
    pub fn new(cap: usize) -> Option<Snapshot> {
        Some(Snapshot {
            lock: shm::alloc_static(FastLock::new())?,
            epoch: shm::alloc_static(AtomicU64::new(0))?,
            len: shm::alloc_static(AtomicU32::new(0))?,
            buf: shm::alloc_static_slice_with(cap, |_| AtomicU8::new(0))?,
        })
    }

    /// Replace the contents.
    pub fn publish(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > self.buf.len() {
            return Err(format!(
                "the table ({} bytes) does not fit the cache ({} bytes)",
                bytes.len(),
                self.buf.len()
            ));
        }
        let _g = self.lock.lock();
        for (cell, b) in self.buf.iter().zip(bytes.iter()) {
            cell.store(*b, Ordering::Relaxed);
        }
        self.len.store(bytes.len() as u32, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The current generation (cheap).
    pub fn generation(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The contents and their generation.
    pub fn read(&self) -> (u64, Vec<u8>) {
        let _g = self.lock.lock();
        let n = (self.len.load(Ordering::Relaxed) as usize).min(self.buf.len());
        let bytes = self.buf[..n]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        (self.epoch.load(Ordering::Acquire), bytes)
    }
}

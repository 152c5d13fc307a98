//! The DNS cache in shared memory, one for every process.
//!
//! Map: a fixed table of slots allocated by the attendant before it forks
//! ([`init`]), its size from `dns_cache_max_mem` ([`SLOT_BYTES`] bytes a slot). A
//! slot is [`WORDS`] words of `AtomicU64` in one shm array (no pointers): the key's hash, the
//! expiry (seconds, wall clock), the lengths, then the key (`qtype name`) and the
//! value (records in a line format, or empty for a negative answer). The whole table
//! is under one [`FastLock`], held only while a few slots are copied — never across
//! a query (a lookup misses, unlocks, queries, then stores). A key hashes to a
//! bucket of [`WAYS`] slots; a store replaces the same key, else an expired or
//! empty slot, else the slot expiring first. An answer too big for a slot is not
//! cached in shm (each process keeps it locally until its TTL).
//!
//! Every process keeps its own copy of what it read (thread_local), valid until the
//! entry's expiry and while the table's generation — bumped by a flush — is unchanged,
//! so a warm lookup takes no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use shm::FastLock;

/// Bytes a slot takes.
pub const SLOT_BYTES: usize = 512;
const WORDS: usize = SLOT_BYTES / 8;
const HDR: usize = 3;
const DATA: usize = (WORDS - HDR) * 8;
/// Slots a key may live in.
const WAYS: usize = 4;

struct Table {
    lock: &'static FastLock,
    generation: &'static AtomicU64,
    /// `WORDS` words per slot, one after the other.
    words: &'static [AtomicU64],
}

impl Table {
    fn len(&self) -> usize {
        self.words.len() / WORDS
    }
    fn slot(&self, i: usize) -> &'static [AtomicU64] {
        &self.words[i * WORDS..(i + 1) * WORDS]
    }
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// Allocate the table (attendant, after `shm::init`, before forking).
pub fn init() -> Result<(), String> {
    let g = crate::globals::get();
    if !g.use_dns_cache {
        return Ok(());
    }
    let n = ((g.dns_cache_max_mem as usize) / SLOT_BYTES).max(WAYS);
    let t = Table {
        lock: shm::alloc_static(FastLock::new()).ok_or("no shm for the DNS cache")?,
        generation: shm::alloc_static(AtomicU64::new(0)).ok_or("no shm for the DNS cache")?,
        words: shm::alloc_static_slice_with(n * WORDS, |_| AtomicU64::new(0))
            .ok_or("no shm for the DNS cache")?,
    };
    let _ = TABLE.set(t);
    Ok(())
}

/// A cached answer: the records (line format), empty for a negative one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub expires: i64,
}

thread_local! {
    static LOCAL: RefCell<(u64, HashMap<String, Entry>)> = RefCell::new((0, HashMap::new()));
}

fn hash(key: &[u8]) -> u64 {
    // FNV-1a
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h | 1
}

fn key_of(qtype: u16, name: &str) -> String {
    format!("{qtype} {}", name.to_ascii_lowercase())
}

fn read_bytes(s: &[AtomicU64], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    for w in &s[HDR..] {
        if out.len() >= n {
            break;
        }
        out.extend_from_slice(&w.load(Relaxed).to_le_bytes());
    }
    out.truncate(n);
    out
}

fn write_slot(s: &[AtomicU64], h: u64, expires: i64, key: &[u8], val: &[u8]) {
    let mut bytes = Vec::with_capacity(key.len() + val.len());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(val);
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        s[HDR + i].store(u64::from_le_bytes(w), Relaxed);
    }
    s[1].store(expires as u64, Relaxed);
    s[2].store(((key.len() as u64) << 32) | val.len() as u64, Relaxed);
    s[0].store(h, Relaxed);
}

/// The cached answer for `name`/`qtype`, if fresh.
pub fn get(qtype: u16, name: &str) -> Option<Entry> {
    let key = key_of(qtype, name);
    let now = crate::clock::now();
    let t = TABLE.get();
    let gen_now = t.map(|t| t.generation.load(SeqCst)).unwrap_or(0);
    let local = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != gen_now {
            l.1.clear();
            l.0 = gen_now;
        }
        l.1.get(&key).filter(|e| e.expires > now).cloned()
    });
    if local.is_some() {
        return local;
    }
    let t = t?;
    let h = hash(key.as_bytes());
    let n = t.len();
    let base = (h as usize) % n;
    let found = {
        let _g = t.lock.lock();
        (0..WAYS).find_map(|i| {
            let s = t.slot((base + i) % n);
            if s[0].load(Relaxed) != h {
                return None;
            }
            let exp = s[1].load(Relaxed) as i64;
            let lens = s[2].load(Relaxed);
            let (kl, vl) = ((lens >> 32) as usize, (lens & 0xFFFF_FFFF) as usize);
            if exp <= now || kl + vl > DATA {
                return None;
            }
            let b = read_bytes(s, kl + vl);
            if &b[..kl] != key.as_bytes() {
                return None;
            }
            Some(Entry {
                value: String::from_utf8_lossy(&b[kl..]).into_owned(),
                expires: exp,
            })
        })
    };
    if let Some(e) = &found {
        LOCAL.with(|l| l.borrow_mut().1.insert(key, e.clone()));
    }
    found
}

/// The cache's generation (bumped by a flush).
pub fn generation() -> u64 {
    TABLE.get().map(|t| t.generation.load(SeqCst)).unwrap_or(0)
}

/// Store an answer for `ttl` seconds (bounded by the cache's min/max TTL globals).
/// Returns its expiry (now when it is not cached).
pub fn put(qtype: u16, name: &str, value: &str, ttl: u32) -> i64 {
    let g = crate::globals::get();
    if !g.use_dns_cache {
        return crate::clock::now();
    }
    let ttl = (ttl as i64)
        .max(g.dns_cache_min_ttl)
        .min(g.dns_cache_max_ttl);
    if ttl <= 0 {
        return crate::clock::now();
    }
    let key = key_of(qtype, name);
    let expires = crate::clock::now() + ttl;
    let Some(t) = TABLE.get() else {
        LOCAL.with(|l| {
            l.borrow_mut().1.insert(
                key,
                Entry {
                    value: value.to_string(),
                    expires,
                },
            )
        });
        return expires;
    };
    let gen_now = t.generation.load(SeqCst);
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != gen_now {
            l.1.clear();
            l.0 = gen_now;
        }
        l.1.insert(
            key.clone(),
            Entry {
                value: value.to_string(),
                expires,
            },
        );
    });
    if key.len() + value.len() > DATA {
        return expires;
    }
    let h = hash(key.as_bytes());
    let n = t.len();
    let base = (h as usize) % n;
    let now = crate::clock::now();
    let _g = t.lock.lock();
    let mut pick = base % n;
    let mut best = i64::MAX;
    for i in 0..WAYS {
        let idx = (base + i) % n;
        let s = t.slot(idx);
        let exp = s[1].load(Relaxed) as i64;
        if s[0].load(Relaxed) == h {
            let lens = s[2].load(Relaxed);
            let kl = (lens >> 32) as usize;
            if kl <= DATA && read_bytes(s, kl) == key.as_bytes() {
                pick = idx;
                break;
            }
        }
        let rank = if s[0].load(Relaxed) == 0 || exp <= now {
            i64::MIN
        } else {
            exp
        };
        if rank < best {
            best = rank;
            pick = idx;
        }
    }
    write_slot(t.slot(pick), h, expires, key.as_bytes(), value.as_bytes());
    expires
}

/// Empty the cache (every process's copy too).
pub fn flush() {
    LOCAL.with(|l| l.borrow_mut().1.clear());
    let Some(t) = TABLE.get() else { return };
    let _g = t.lock.lock();
    for i in 0..t.len() {
        let s = t.slot(i);
        s[0].store(0, Relaxed);
        s[1].store(0, Relaxed);
    }
    t.generation.fetch_add(1, SeqCst);
}

/// Fresh entries: (key, seconds left, value).
pub fn view() -> Vec<(String, i64, String)> {
    let Some(t) = TABLE.get() else {
        return Vec::new();
    };
    let now = crate::clock::now();
    let mut out = Vec::new();
    let _g = t.lock.lock();
    for i in 0..t.len() {
        let s = t.slot(i);
        if s[0].load(Relaxed) == 0 {
            continue;
        }
        let exp = s[1].load(Relaxed) as i64;
        let lens = s[2].load(Relaxed);
        let (kl, vl) = ((lens >> 32) as usize, (lens & 0xFFFF_FFFF) as usize);
        if exp <= now || kl + vl > DATA {
            continue;
        }
        let b = read_bytes(s, kl + vl);
        out.push((
            String::from_utf8_lossy(&b[..kl]).into_owned(),
            exp - now,
            String::from_utf8_lossy(&b[kl..]).into_owned(),
        ));
    }
    out
}

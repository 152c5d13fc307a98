//! The pipes: one implementation for `pipelimit` (Kamailio) and `ratelimit` (OpenSIPS).
//!
//! A pipe is a named counter with an algorithm and a limit per window. The table is a
//! fixed pool of slots in shared memory, parallel arrays of atomics allocated once in
//! the attendant before fork (no pointers, no `unsafe`), found by open addressing on
//! the name's hash. A slot is filled once, under the table's lock ([`Inserting`], the
//! guard, is the only way to add one): name, algorithm and limit first, then the
//! `USED` flag with release ordering, so a reader that sees the flag sees the whole
//! name. Slots are never emptied (pipes live until restart), so a lookup needs no lock.
//!
//! The counters are atomics changed by every worker; the module's timer (every
//! `timer_interval` seconds, in the timer process) ends a window: it takes each
//! pipe's counter (swap to 0), and sets what the algorithms read in the next window —
//! RED's pass-one-in-n, NETWORK's verdict from the bytes waiting in the server's UDP
//! socket queues, FEEDBACK's drop rate from a PID controller on the CPU load.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shm::{FastLock, FastLockGuard};

/// Longest pipe name.
pub const NAME_MAX: usize = 64;
const NAME_WORDS: usize = NAME_MAX / 8;

// 32-bit fields of a slot
const USED: usize = 0;
const ALGO: usize = 1;
const NAME_LEN: usize = 2;
const NUMS: usize = 3;

// 64-bit fields of a slot
const LIMIT: usize = 0;
const COUNTER: usize = 1;
const LAST: usize = 2;
/// RED: pass one in LOAD; NETWORK: 1 = drop; FEEDBACK: drop rate in percent
const LOAD: usize = 3;
const ACCEPTED: usize = 4;
const DROPPED: usize = 5;
/// FEEDBACK: the PID controller's integral and last error (f64 bits)
const INTEGRAL: usize = 6;
const LAST_ERR: usize = 7;
const VALS: usize = 8;

/// The algorithms (Kamailio's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Nop = 0,
    TailDrop = 1,
    Red = 2,
    Network = 3,
    Feedback = 4,
}

impl Algo {
    /// An algorithm by its name (case-sensitive, as Kamailio).
    pub fn parse(s: &str) -> Option<Algo> {
        Some(match s.trim() {
            "NOP" => Algo::Nop,
            "TAILDROP" => Algo::TailDrop,
            "RED" => Algo::Red,
            "NETWORK" => Algo::Network,
            "FEEDBACK" => Algo::Feedback,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Algo::Nop => "NOP",
            Algo::TailDrop => "TAILDROP",
            Algo::Red => "RED",
            Algo::Network => "NETWORK",
            Algo::Feedback => "FEEDBACK",
        }
    }
    fn from_u32(v: u32) -> Algo {
        match v {
            1 => Algo::TailDrop,
            2 => Algo::Red,
            3 => Algo::Network,
            4 => Algo::Feedback,
            _ => Algo::Nop,
        }
    }
}

/// What `check` says.
pub const PASS: i32 = 1;
pub const PASS_NOP: i32 = 2;
pub const OVER: i32 = -1;
pub const NO_PIPE: i32 = -2;

/// A pipe as read out of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipeInfo {
    pub name: String,
    pub algo: Algo,
    /// per window
    pub limit: i64,
    pub counter: u64,
    pub last_counter: u64,
    pub load: u64,
    pub accepted: u64,
    pub dropped: u64,
}

/// The PID controller's gains (FEEDBACK).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pid {
    pub kp: f64,
    pub ki: f64,
    pub kd: f64,
}

/// The pipe table.
pub struct Table {
    lock: &'static FastLock,
    nums: &'static [AtomicU32],
    vals: &'static [AtomicU64],
    names: &'static [AtomicU64],
    cap: usize,
    /// windows ended since start
    window: &'static AtomicU64,
    /// last measured CPU load (percent) and bytes waiting in UDP queues
    cpu: &'static AtomicU64,
    net: &'static AtomicU64,
    /// PID gains, f64 bits
    pid: &'static [AtomicU64],
}

/// The table's lock held: the only way to add a pipe.
#[must_use]
pub struct Inserting<'a> {
    t: &'a Table,
    _g: FastLockGuard<'a>,
}

/// FNV-1a of a name.
fn hash(name: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as usize
}

fn leak_u32(n: usize) -> &'static [AtomicU32] {
    Box::leak(
        (0..n)
            .map(|_| AtomicU32::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

fn leak_u64(n: usize) -> &'static [AtomicU64] {
    Box::leak(
        (0..n)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

const DEFAULT_PID: Pid = Pid {
    kp: 0.0,
    ki: 0.25,
    kd: 0.0,
};

impl Table {
    /// A table of `cap` pipes in shm; `None` when shm is full.
    pub fn new(cap: usize) -> Option<Table> {
        let cap = cap.max(1);
        let u32s = |n| shm::alloc_static_slice_with(n, |_| AtomicU32::new(0));
        let u64s = |n| shm::alloc_static_slice_with(n, |_| AtomicU64::new(0));
        let t = Table {
            lock: shm::alloc_static(FastLock::new())?,
            nums: u32s(cap * NUMS)?,
            vals: u64s(cap * VALS)?,
            names: u64s(cap * NAME_WORDS)?,
            cap,
            window: &u64s(1)?[0],
            cpu: &u64s(1)?[0],
            net: &u64s(1)?[0],
            pid: u64s(3)?,
        };
        t.set_pid(DEFAULT_PID);
        Some(t)
    }

    /// A table in private memory (unit tests).
    pub fn private(cap: usize) -> Table {
        let cap = cap.max(1);
        let t = Table {
            lock: Box::leak(Box::new(FastLock::new())),
            nums: leak_u32(cap * NUMS),
            vals: leak_u64(cap * VALS),
            names: leak_u64(cap * NAME_WORDS),
            cap,
            window: &leak_u64(1)[0],
            cpu: &leak_u64(1)[0],
            net: &leak_u64(1)[0],
            pid: leak_u64(3),
        };
        t.set_pid(DEFAULT_PID);
        t
    }

    /// The address of the table's lock (for the repair registry).
    pub fn lock_addr(&self) -> usize {
        self.lock as *const FastLock as usize
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Windows ended since start.
    pub fn window(&self) -> u64 {
        self.window.load(Ordering::Relaxed)
    }

    /// The last CPU load (percent) and UDP bytes waiting measured.
    pub fn loads(&self) -> (u64, u64) {
        (
            self.cpu.load(Ordering::Relaxed),
            self.net.load(Ordering::Relaxed),
        )
    }

    /// Set the CPU load the FEEDBACK pipes see (MI `pl_push_load`; the next
    /// measurement replaces it).
    pub fn push_cpu_load(&self, load: u64) {
        self.cpu.store(load.min(100), Ordering::Relaxed);
    }

    pub fn pid(&self) -> Pid {
        let g = |i: usize| f64::from_bits(self.pid[i].load(Ordering::Relaxed));
        Pid {
            kp: g(0),
            ki: g(1),
            kd: g(2),
        }
    }

    pub fn set_pid(&self, p: Pid) {
        for (i, v) in [p.kp, p.ki, p.kd].into_iter().enumerate() {
            self.pid[i].store(v.to_bits(), Ordering::Relaxed);
        }
    }

    fn n(&self, slot: usize, f: usize) -> &AtomicU32 {
        &self.nums[slot * NUMS + f]
    }

    fn v(&self, slot: usize, f: usize) -> &AtomicU64 {
        &self.vals[slot * VALS + f]
    }

    fn used(&self, slot: usize) -> bool {
        self.n(slot, USED).load(Ordering::Acquire) != 0
    }

    fn name_is(&self, slot: usize, name: &[u8]) -> bool {
        if self.n(slot, NAME_LEN).load(Ordering::Relaxed) as usize != name.len() {
            return false;
        }
        let words = &self.names[slot * NAME_WORDS..(slot + 1) * NAME_WORDS];
        name.chunks(8).zip(words).all(|(chunk, w)| {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            w.load(Ordering::Relaxed) == u64::from_le_bytes(b)
        })
    }

    fn name_of(&self, slot: usize) -> String {
        let len = (self.n(slot, NAME_LEN).load(Ordering::Relaxed) as usize).min(NAME_MAX);
        let words = &self.names[slot * NAME_WORDS..(slot + 1) * NAME_WORDS];
        let mut b: Vec<u8> = words
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        b.truncate(len);
        String::from_utf8_lossy(&b).into_owned()
    }

    /// The slot of pipe `name`, without a lock.
    pub fn find(&self, name: &str) -> Option<usize> {
        let b = name.as_bytes();
        if b.len() > NAME_MAX {
            return None;
        }
        let start = hash(b) % self.cap;
        for i in 0..self.cap {
            let s = (start + i) % self.cap;
            if !self.used(s) {
                return None;
            }
            if self.name_is(s, b) {
                return Some(s);
            }
        }
        None
    }

    pub fn lock(&self) -> Inserting<'_> {
        Inserting {
            t: self,
            _g: self.lock.lock(),
        }
    }

    /// The guard for a lock taken over from a dead process (repair).
    pub fn adopt<'a>(&'a self, g: FastLockGuard<'a>) -> Option<Inserting<'a>> {
        std::ptr::eq(g.lock_ref(), self.lock).then_some(Inserting { t: self, _g: g })
    }

    /// The pipe `name`, created with `algo` and `limit` if missing; an existing pipe
    /// gets `limit` when it is above 0. Err: name too long, table full.
    pub fn find_or_create(&self, name: &str, algo: Algo, limit: i64) -> Result<usize, String> {
        if let Some(s) = self.find(name) {
            if limit > 0 {
                self.set_limit(s, limit);
            }
            return Ok(s);
        }
        self.lock().insert(name, algo, limit)
    }

    pub fn set_limit(&self, slot: usize, limit: i64) {
        self.v(slot, LIMIT).store(limit as u64, Ordering::Relaxed);
    }

    pub fn set_algo(&self, slot: usize, algo: Algo) {
        self.n(slot, ALGO).store(algo as u32, Ordering::Relaxed);
    }

    /// Count a message on pipe `slot` and say whether it passes.
    pub fn check(&self, slot: usize) -> i32 {
        let counter = self.v(slot, COUNTER).fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.v(slot, LIMIT).load(Ordering::Relaxed) as i64;
        let load = self.v(slot, LOAD).load(Ordering::Relaxed);
        let r = match Algo::from_u32(self.n(slot, ALGO).load(Ordering::Relaxed)) {
            Algo::Nop => PASS_NOP,
            Algo::TailDrop => {
                if counter as i64 <= limit {
                    PASS
                } else {
                    OVER
                }
            }
            Algo::Red => {
                if load == 0 || counter.is_multiple_of(load) {
                    PASS
                } else {
                    OVER
                }
            }
            Algo::Network => {
                if load == 0 {
                    PASS
                } else {
                    OVER
                }
            }
            Algo::Feedback => {
                // spread the drops evenly over the window's messages
                if (counter.wrapping_mul(37) % 100) < load {
                    OVER
                } else {
                    PASS
                }
            }
        };
        let total = if r == OVER { DROPPED } else { ACCEPTED };
        self.v(slot, total).fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Check pipe `name`: [`NO_PIPE`] when there is none.
    pub fn check_name(&self, name: &str) -> i32 {
        match self.find(name) {
            Some(s) => self.check(s),
            None => NO_PIPE,
        }
    }

    /// Un-count a message (OpenSIPS's `rl_dec_count`).
    pub fn dec(&self, slot: usize) {
        let _ = self
            .v(slot, COUNTER)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(1))
            });
    }

    /// Zero the window's counter (`rl_reset_count`, MI reset).
    pub fn reset(&self, slot: usize) {
        self.v(slot, COUNTER).store(0, Ordering::Relaxed);
    }

    pub fn info(&self, slot: usize) -> PipeInfo {
        let v = |f| self.v(slot, f).load(Ordering::Relaxed);
        PipeInfo {
            name: self.name_of(slot),
            algo: Algo::from_u32(self.n(slot, ALGO).load(Ordering::Relaxed)),
            limit: v(LIMIT) as i64,
            counter: v(COUNTER),
            last_counter: v(LAST),
            load: v(LOAD),
            accepted: v(ACCEPTED),
            dropped: v(DROPPED),
        }
    }

    /// Every pipe, by name.
    pub fn list(&self) -> Vec<PipeInfo> {
        let mut v: Vec<PipeInfo> = (0..self.cap)
            .filter(|&s| self.used(s))
            .map(|s| self.info(s))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn any(&self, algo: Algo) -> bool {
        (0..self.cap)
            .any(|s| self.used(s) && self.n(s, ALGO).load(Ordering::Relaxed) == algo as u32)
    }

    /// End a window (the module's timer). `cpu` and `net` measure the loads when a
    /// FEEDBACK or NETWORK pipe needs them; `interval` is the window in seconds.
    pub fn end_window(&self, cpu: impl FnOnce() -> Option<u64>, net: impl FnOnce() -> Option<u64>) {
        if self.any(Algo::Feedback)
            && let Some(c) = cpu()
        {
            self.cpu.store(c, Ordering::Relaxed);
        }
        if self.any(Algo::Network)
            && let Some(n) = net()
        {
            self.net.store(n, Ordering::Relaxed);
        }
        let (cpu, net) = self.loads();
        let pid = self.pid();
        for s in (0..self.cap).filter(|&s| self.used(s)) {
            let c = self.v(s, COUNTER).swap(0, Ordering::Relaxed);
            self.v(s, LAST).store(c, Ordering::Relaxed);
            let limit = self.v(s, LIMIT).load(Ordering::Relaxed) as i64;
            let load = match Algo::from_u32(self.n(s, ALGO).load(Ordering::Relaxed)) {
                Algo::Nop | Algo::TailDrop => 0,
                Algo::Red => {
                    if limit > 0 {
                        c / limit as u64
                    } else {
                        0
                    }
                }
                Algo::Network => u64::from(net as i64 > limit),
                Algo::Feedback => self.feedback(s, cpu as f64, limit as f64, pid),
            };
            self.v(s, LOAD).store(load, Ordering::Relaxed);
        }
        self.window.fetch_add(1, Ordering::Relaxed);
    }

    /// One step of the PID controller of a FEEDBACK pipe: the drop rate (percent) that
    /// drives the CPU load towards the pipe's limit (percent).
    fn feedback(&self, s: usize, load: f64, target: f64, pid: Pid) -> u64 {
        let err = load - target;
        let f = |i| f64::from_bits(self.v(s, i).load(Ordering::Relaxed));
        let integral = (f(INTEGRAL) + err).clamp(-400.0, 400.0);
        let deriv = err - f(LAST_ERR);
        self.v(s, INTEGRAL)
            .store(integral.to_bits(), Ordering::Relaxed);
        self.v(s, LAST_ERR).store(err.to_bits(), Ordering::Relaxed);
        let rate = pid.kp * err + pid.ki * integral + pid.kd * deriv;
        rate.clamp(0.0, 100.0).round() as u64
    }

    /// Check the table after a process died holding its lock (the caller holds it):
    /// a slot is published by its `USED` flag, set last, so a half-made insertion left
    /// only an unpublished slot, overwritten by the next insertion. Checks that every
    /// published slot has a name that fits.
    pub fn repair(&self) -> Vec<String> {
        (0..self.cap)
            .filter(|&s| self.used(s))
            .filter(|&s| self.n(s, NAME_LEN).load(Ordering::Relaxed) as usize > NAME_MAX)
            .map(|s| {
                self.n(s, NAME_LEN).store(0, Ordering::Relaxed);
                format!("pipe slot {s}: name length out of range, name emptied")
            })
            .collect()
    }
}

impl Inserting<'_> {
    /// Add pipe `name` (or find it, if another process added it meanwhile).
    pub fn insert(&self, name: &str, algo: Algo, limit: i64) -> Result<usize, String> {
        let t = self.t;
        let b = name.as_bytes();
        if b.is_empty() || b.len() > NAME_MAX {
            return Err(format!("pipe name of {} bytes (1..{NAME_MAX})", b.len()));
        }
        let start = hash(b) % t.cap;
        for i in 0..t.cap {
            let s = (start + i) % t.cap;
            if t.used(s) {
                if t.name_is(s, b) {
                    return Ok(s);
                }
                continue;
            }
            let words = &t.names[s * NAME_WORDS..(s + 1) * NAME_WORDS];
            for (w, chunk) in words.iter().zip(b.chunks(8)) {
                let mut x = [0u8; 8];
                x[..chunk.len()].copy_from_slice(chunk);
                w.store(u64::from_le_bytes(x), Ordering::Relaxed);
            }
            t.n(s, NAME_LEN).store(b.len() as u32, Ordering::Relaxed);
            t.n(s, ALGO).store(algo as u32, Ordering::Relaxed);
            for f in 0..VALS {
                t.v(s, f).store(0, Ordering::Relaxed);
            }
            t.v(s, LIMIT).store(limit as u64, Ordering::Relaxed);
            t.n(s, USED).store(1, Ordering::Release);
            return Ok(s);
        }
        Err(format!("no room for pipe '{name}' ({} pipes)", t.cap))
    }

    /// The repair of the table (see [`Table::repair`]).
    pub fn repair(&self) -> Vec<String> {
        self.t.repair()
    }
}

/// The CPU load in percent since the previous call (`prev`: busy and total jiffies).
pub fn cpu_load(stat: &str, prev: &mut Option<(u64, u64)>) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 4 {
        return None;
    }
    let total = f.iter().fold(0u64, |a, x| a.saturating_add(*x));
    let idle = f[3].saturating_add(f.get(4).copied().unwrap_or(0));
    let busy = total - idle.min(total);
    let r = prev.and_then(|(pb, pt)| {
        let dt = total.checked_sub(pt)?;
        (dt > 0).then(|| busy.saturating_sub(pb).saturating_mul(100) / dt)
    });
    *prev = Some((busy, total));
    r
}

/// Bytes waiting in the send and receive queues of `/proc/net/udp`-style text.
pub fn udp_queued(text: &str) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter_map(|q| {
            let (tx, rx) = q.split_once(':')?;
            Some(
                u64::from_str_radix(tx, 16)
                    .ok()?
                    .saturating_add(u64::from_str_radix(rx, 16).ok()?),
            )
        })
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taildrop_passes_the_limit_per_window() {
        let t = Table::private(8);
        let s = t.find_or_create("p", Algo::TailDrop, 3).unwrap();
        let r: Vec<i32> = (0..5).map(|_| t.check(s)).collect();
        assert_eq!(r, [PASS, PASS, PASS, OVER, OVER]);
        t.end_window(|| None, || None);
        assert_eq!(t.info(s).last_counter, 5);
        assert_eq!(t.check(s), PASS);
        assert_eq!((t.info(s).accepted, t.info(s).dropped), (4, 2));
        assert_eq!(t.window(), 1);
    }

    #[test]
    fn red_passes_one_in_n_after_an_overloaded_window() {
        let t = Table::private(8);
        let s = t.find_or_create("r", Algo::Red, 10).unwrap();
        for _ in 0..30 {
            assert_eq!(t.check(s), PASS, "no load measured yet");
        }
        t.end_window(|| None, || None);
        assert_eq!(t.info(s).load, 3);
        let passed = (0..30).filter(|_| t.check(s) == PASS).count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn network_and_feedback() {
        let t = Table::private(8);
        let n = t.find_or_create("n", Algo::Network, 1000).unwrap();
        let f = t.find_or_create("f", Algo::Feedback, 50).unwrap();
        t.end_window(|| Some(90), || Some(5000));
        assert_eq!(t.check(n), OVER);
        let rate = t.info(f).load;
        assert!(rate > 0 && rate <= 100, "{rate}");
        let dropped = (0..100).filter(|_| t.check(f) == OVER).count() as u64;
        assert_eq!(
            dropped, rate,
            "the drop rate is a percentage of the messages"
        );
        t.end_window(|| Some(10), || Some(10));
        assert_eq!(t.check(n), PASS);
        for _ in 0..20 {
            t.end_window(|| Some(10), || None);
        }
        assert_eq!(t.info(f).load, 0, "below target the drop rate falls to 0");
    }

    #[test]
    fn names_lookup_and_capacity() {
        let t = Table::private(3);
        assert_eq!(t.check_name("x"), NO_PIPE);
        let a = t
            .find_or_create("a-long-pipe-name-of-more-than-eight-bytes", Algo::Nop, 1)
            .unwrap();
        assert_eq!(t.find("a-long-pipe-name-of-more-than-eight-bytes"), Some(a));
        assert_eq!(t.find("a-long-pipe-name-of-more-than-eight-byteZ"), None);
        t.find_or_create("b", Algo::TailDrop, 1).unwrap();
        t.find_or_create("c", Algo::TailDrop, 1).unwrap();
        assert!(t.find_or_create("d", Algo::TailDrop, 1).is_err());
        assert!(
            t.find_or_create(&"x".repeat(NAME_MAX + 1), Algo::Nop, 1)
                .is_err()
        );
        assert_eq!(t.check(a), PASS_NOP);
        // an existing pipe takes a new limit
        let b = t.find_or_create("b", Algo::Red, 7).unwrap();
        assert_eq!((t.info(b).algo, t.info(b).limit), (Algo::TailDrop, 7));
        let names: Vec<String> = t.list().into_iter().map(|p| p.name).collect();
        assert_eq!(names.len(), 3);
        assert!(t.lock().repair().is_empty());
    }

    #[test]
    fn load_readers() {
        let mut prev = None;
        assert_eq!(cpu_load("cpu  10 0 10 80 0 0 0 0\n", &mut prev), None);
        assert_eq!(cpu_load("cpu  40 0 40 120 0 0 0 0\n", &mut prev), Some(60));
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr\n   0: 0100007F:13C4 00000000:0000 07 00000010:00000200 00:00000000\n   1: 0100007F:13C5 00000000:0000 07 00000000:00000001 00:00000000\n";
        assert_eq!(udp_queued(udp), 0x10 + 0x200 + 1);
    }
}

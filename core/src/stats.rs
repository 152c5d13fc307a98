//! Named statistics, addressed as `group:name` (reference §11).
//!
//! Counters are `AtomicU64`s in shared memory, registered in the attendant before the
//! first fork (the registry itself is private memory, inherited copy-on-write, and
//! identical in every process). Computed statistics (`shmem:*`, usrloc's
//! `registered_users`) are functions evaluated on read.

use crate::state::Registry;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Do not reset this statistic with `reset_statistics`.
pub const NO_RESET: u32 = 1;

/// A handle to a counter in shared memory.
#[derive(Clone, Copy, Debug)]
pub struct Stat(&'static AtomicU64);

impl Stat {
    /// A counter in private memory, registered nowhere (a module used without its
    /// `mod_init`, in unit tests).
    pub fn private() -> Stat {
        Stat(Box::leak(Box::new(AtomicU64::new(0))))
    }
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        // Never wrap below zero on a stray decrement.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }
    /// Add a signed amount (the statistics module's `update_stat`); never below zero.
    pub fn update(&self, n: i64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add_signed(n))
            });
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy)]
enum Value {
    Counter(Stat),
    Func(fn() -> u64),
}

struct Entry {
    group: String,
    name: String,
    flags: u32,
    value: Value,
}

static REGISTRY: Registry<Entry> = Registry::new();

fn new_counter() -> &'static AtomicU64 {
    if shm::is_initialized() {
        if let Some(r) = shm::alloc_static(AtomicU64::new(0)) {
            return r;
        }
        crate::log_err!("no more shm for a statistic, using private memory");
    }
    // Before shm exists (unit tests, `-c`) a private counter does as well.
    Stat::private().0
}

/// Register a counter (before fork). Registering the same name twice returns the
/// first counter.
pub fn register(group: &str, name: &str, flags: u32) -> Stat {
    let mut reg = REGISTRY.lock();
    if let Some(e) = reg
        .iter()
        .find(|e| e.group.eq_ignore_ascii_case(group) && e.name.eq_ignore_ascii_case(name))
        && let Value::Counter(s) = e.value
    {
        return s;
    }
    let s = Stat(new_counter());
    reg.push(Entry {
        group: group.into(),
        name: name.into(),
        flags,
        value: Value::Counter(s),
    });
    s
}

/// Register a computed statistic (never reset).
pub fn register_func(group: &str, name: &str, f: fn() -> u64) {
    let mut reg = REGISTRY.lock();
    reg.retain(|e| !(e.group.eq_ignore_ascii_case(group) && e.name.eq_ignore_ascii_case(name)));
    reg.push(Entry {
        group: group.into(),
        name: name.into(),
        flags: NO_RESET,
        value: Value::Func(f),
    });
}

fn read(v: &Value) -> u64 {
    match v {
        Value::Counter(s) => s.get(),
        Value::Func(f) => f(),
    }
}

/// The counter registered as `group:name` or a bare `name` (case-insensitive); None
/// for unknown names and computed statistics.
pub fn find(full: &str) -> Option<Stat> {
    let reg = REGISTRY.lock();
    let (g, n) = match full.split_once(':') {
        Some((g, n)) => (Some(g), n),
        None => (None, full),
    };
    reg.iter().find_map(|e| match e.value {
        Value::Counter(s)
            if e.name.eq_ignore_ascii_case(n)
                && g.is_none_or(|g| e.group.eq_ignore_ascii_case(g)) =>
        {
            Some(s)
        }
        _ => None,
    })
}

/// Look up `group:name` or a bare `name` (case-insensitive).
pub fn get(full: &str) -> Option<u64> {
    let reg = REGISTRY.lock();
    let (g, n) = match full.split_once(':') {
        Some((g, n)) => (Some(g), n),
        None => (None, full),
    };
    reg.iter()
        .find(|e| {
            e.name.eq_ignore_ascii_case(n) && g.is_none_or(|g| e.group.eq_ignore_ascii_case(g))
        })
        .map(|e| read(&e.value))
}

/// What MI `get_statistics` takes: `name`, `group:name`, `group:` or `all`.
/// Returns `group:name = value` pairs.
pub fn query(what: &str) -> Vec<(String, u64)> {
    let reg = REGISTRY.lock();
    let all = what.eq_ignore_ascii_case("all");
    let (g, n) = match what.split_once(':') {
        Some((g, n)) => (Some(g), n),
        None => (None, what),
    };
    reg.iter()
        .filter(|e| {
            all || match g {
                Some(g) => {
                    e.group.eq_ignore_ascii_case(g)
                        && (n.is_empty() || e.name.eq_ignore_ascii_case(n))
                }
                None => e.name.eq_ignore_ascii_case(n),
            }
        })
        .map(|e| (format!("{}:{}", e.group, e.name), read(&e.value)))
        .collect()
}

/// One statistic as an exporter sees it (`xhttp`'s Prometheus endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatInfo {
    pub group: String,
    pub name: String,
    pub value: u64,
    /// A counter that only grows (resettable by MI); else a gauge (non-resettable
    /// counters such as `inuse_transactions`, computed values such as shm figures).
    pub counter: bool,
}

/// Every registered statistic, in registration order.
pub fn all() -> Vec<StatInfo> {
    let reg = REGISTRY.lock();
    reg.iter()
        .map(|e| StatInfo {
            group: e.group.clone(),
            name: e.name.clone(),
            value: read(&e.value),
            counter: e.flags & NO_RESET == 0 && matches!(e.value, Value::Counter(_)),
        })
        .collect()
}

/// Reset a resettable counter; returns whether it existed.
pub fn reset(full: &str) -> bool {
    let reg = REGISTRY.lock();
    let (g, n) = match full.split_once(':') {
        Some((g, n)) => (Some(g), n),
        None => (None, full),
    };
    let mut found = false;
    for e in reg.iter() {
        if e.name.eq_ignore_ascii_case(n) && g.is_none_or(|g| e.group.eq_ignore_ascii_case(g)) {
            found = true;
            if e.flags & NO_RESET == 0
                && let Value::Counter(s) = e.value
            {
                s.set(0);
            }
        }
    }
    found
}

/// The core's own counters (reference §11).
pub struct CoreStats {
    pub rcv_requests: Stat,
    pub rcv_replies: Stat,
    pub fwd_requests: Stat,
    pub fwd_replies: Stat,
    pub drop_requests: Stat,
    pub drop_replies: Stat,
    pub err_requests: Stat,
    pub err_replies: Stat,
    pub bad_uris_rcvd: Stat,
    pub unsupported_methods: Stat,
    pub bad_msg_hdr: Stat,
    /// Children that died and were replaced (`respawn_children`).
    pub respawned_children: Stat,
    /// `rcv_requests_<method>` (Kamailio's names), indexed by [`method_slot`].
    pub rcv_requests_by_method: [Stat; METHOD_SLOTS],
    /// `rcv_replies_1xx` .. `rcv_replies_6xx`.
    pub rcv_replies_by_class: [Stat; 6],
}

/// Methods counted one by one (the last slot counts every other method).
pub const METHOD_NAMES: [&str; 15] = [
    "invite",
    "cancel",
    "ack",
    "bye",
    "info",
    "register",
    "subscribe",
    "notify",
    "message",
    "options",
    "prack",
    "update",
    "refer",
    "publish",
    "other",
];
const METHOD_SLOTS: usize = METHOD_NAMES.len();

/// The counter slot of a method.
pub fn method_slot(m: crate::parser::Method) -> usize {
    use crate::parser::Method as M;
    match m {
        M::Invite => 0,
        M::Cancel => 1,
        M::Ack => 2,
        M::Bye => 3,
        M::Info => 4,
        M::Register => 5,
        M::Subscribe => 6,
        M::Notify => 7,
        M::Message => 8,
        M::Options => 9,
        M::Prack => 10,
        M::Update => 11,
        M::Refer => 12,
        M::Publish => 13,
        M::Other => 14,
    }
}

impl CoreStats {
    /// Count a received request by method.
    pub fn count_request(&self, m: crate::parser::Method) {
        self.rcv_requests_by_method[method_slot(m)].inc();
    }
    /// Count a received reply by class.
    pub fn count_reply(&self, code: u16) {
        if let Some(s) = self
            .rcv_replies_by_class
            .get(usize::from(code / 100).wrapping_sub(1))
        {
            s.inc();
        }
    }
}

static CORE: OnceLock<CoreStats> = OnceLock::new();

/// Register the core and shmem statistics (attendant, after `shm::init`).
pub fn init_core() -> &'static CoreStats {
    CORE.get_or_init(|| {
        let c = |n| register("core", n, 0);
        let s = CoreStats {
            rcv_requests: c("rcv_requests"),
            rcv_replies: c("rcv_replies"),
            fwd_requests: c("fwd_requests"),
            fwd_replies: c("fwd_replies"),
            drop_requests: c("drop_requests"),
            drop_replies: c("drop_replies"),
            err_requests: c("err_requests"),
            err_replies: c("err_replies"),
            bad_uris_rcvd: c("bad_URIs_rcvd"),
            unsupported_methods: c("unsupported_methods"),
            bad_msg_hdr: c("bad_msg_hdr"),
            rcv_requests_by_method: METHOD_NAMES
                .map(|m| register("core", &format!("rcv_requests_{m}"), 0)),
            rcv_replies_by_class: [1, 2, 3, 4, 5, 6]
                .map(|k| register("core", &format!("rcv_replies_{k}xx"), 0)),
            respawned_children: c("respawned_children"),
        };
        register_func("shmem", "total_size", || shm::stats().total as u64);
        register_func("shmem", "used_size", || shm::stats().used as u64);
        register_func("shmem", "real_used_size", || shm::stats().real_used as u64);
        register_func("shmem", "max_used_size", || shm::stats().max_used as u64);
        register_func("shmem", "free_size", || shm::stats().free as u64);
        register_func("shmem", "fragments", || shm::stats().fragments as u64);
        register_func("shmem", "largest_free_block", || {
            shm::stats().largest_free as u64
        });
        register_func("shmem", "alloc_failures", shm::alloc_failures);
        s
    })
}

/// The core counters (registered on first use if `init_core` was not called).
#[inline]
pub fn core() -> &'static CoreStats {
    match CORE.get() {
        Some(c) => c,
        None => init_core(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_query_reset() {
        let s = register("testgrp", "hits", 0);
        let k = register("testgrp", "kept", NO_RESET);
        s.add(5);
        k.inc();
        assert_eq!(get("testgrp:hits"), Some(5));
        assert_eq!(get("HITS"), Some(5));
        assert_eq!(query("testgrp:").len(), 2);
        assert!(reset("testgrp:hits"));
        assert!(reset("testgrp:kept"));
        assert_eq!(get("testgrp:hits"), Some(0));
        assert_eq!(get("testgrp:kept"), Some(1));
        assert!(!reset("testgrp:nothing"));
        s.set(0);
        s.dec();
        assert_eq!(s.get(), 0);
    }

    #[test]
    fn core_stats_registered() {
        core().rcv_requests.inc();
        assert!(get("core:rcv_requests").unwrap() >= 1);
        assert!(get("shmem:total_size").is_some());
    }
}

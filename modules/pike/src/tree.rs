//! The tree of source addresses in shared memory (1.2's `ip_tree.c`): one tree for
//! IPv4 and IPv6, a node per address byte, 256 top branches each under its own lock.
//!
//! A prefix node counts the requests that stopped at it; once it is "hot" (a quarter
//! of the density in the current or previous sampling unit, or on average) it grows a
//! child for the next byte, so only busy prefixes are expanded down to full addresses
//! (leaves), which count their own hits. A leaf is red — the source floods — when its
//! hits reach `reqs_density_per_unit` in the current or previous unit or on average.
//! Marking an address walks at most one node per byte and a sibling list of at most
//! 256: the cost per packet is bounded by the address length.
//!
//! Memory: nodes come from a fixed pool allocated at start-up (`capacity` nodes), as
//! parallel arrays of atomics (no pointers, nothing to free, no `unsafe`); links are
//! pool indexes + 1 (0 = none). A node expires `remove_latency` seconds after its last
//! counted hit, when it has no children; the timer returns it to the free list, and a
//! parent whose last child went starts its own expiry then. When the pool is empty a
//! new address is not tracked (the request passes, as 1.2 does on an allocation
//! failure), so a flood of spoofed sources cannot exhaust shared memory.

use shm::FastLock;
use std::sync::atomic::{AtomicU32, Ordering};

const KIDS: usize = 0;
const NEXT: usize = 1;
const PARENT: usize = 2;
const HITS_PREV: usize = 3;
const HITS_CURR: usize = 4;
const LEAF_PREV: usize = 5;
const LEAF_CURR: usize = 6;
const EXPIRES: usize = 7;
/// byte value (bits 0-7), flags (bits 8-)
const BYTE_FLAGS: usize = 8;
const STRIDE: usize = 9;

/// A complete address ends at this node.
const IPLEAF: u32 = 1 << 8;
/// Its expiry is running (no children).
const INTIMER: u32 = 1 << 9;

/// What marking an address found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// under the limit
    Ok,
    /// the address exceeds the density
    Red,
    /// the pool is exhausted: not tracked
    NoRoom,
}

/// The tree: the node pool, branch roots and locks, the free list.
pub struct Tree {
    cells: &'static [AtomicU32],
    roots: &'static [AtomicU32],
    locks: &'static [FastLock],
    pool_lock: &'static FastLock,
    free_head: &'static AtomicU32,
    in_use: &'static AtomicU32,
    max_hits: u32,
    timeout: u32,
}

fn sat_inc(a: &AtomicU32) {
    let v = a.load(Ordering::Relaxed);
    if v < u32::MAX - 1 {
        a.store(v + 1, Ordering::Relaxed);
    }
}

impl Tree {
    /// A tree of `capacity` nodes in shm (attendant, before fork); `None` without shm.
    pub fn new(capacity: u32, max_hits: u32, timeout: u32) -> Option<Tree> {
        let n = capacity as usize;
        let cells = shm::alloc_static_slice_with(n * STRIDE, |i| {
            // chain every node into the free list through NEXT
            let (node, field) = (i / STRIDE, i % STRIDE);
            if field == NEXT && node + 1 < n {
                AtomicU32::new(node as u32 + 2)
            } else {
                AtomicU32::new(0)
            }
        })?;
        Some(Tree {
            cells,
            roots: shm::alloc_static_slice_with(256, |_| AtomicU32::new(0))?,
            locks: shm::alloc_static_slice_with(256, |_| FastLock::new())?,
            pool_lock: shm::alloc_static(FastLock::new())?,
            free_head: shm::alloc_static(AtomicU32::new(if n > 0 { 1 } else { 0 }))?,
            in_use: shm::alloc_static(AtomicU32::new(0))?,
            max_hits,
            timeout,
        })
    }

    #[inline]
    fn f(&self, node: u32, field: usize) -> &AtomicU32 {
        &self.cells[(node as usize - 1) * STRIDE + field]
    }
    #[inline]
    fn get(&self, node: u32, field: usize) -> u32 {
        self.f(node, field).load(Ordering::Relaxed)
    }
    #[inline]
    fn set(&self, node: u32, field: usize, v: u32) {
        self.f(node, field).store(v, Ordering::Relaxed);
    }
    fn byte(&self, node: u32) -> u8 {
        (self.get(node, BYTE_FLAGS) & 0xff) as u8
    }
    fn flags(&self, node: u32) -> u32 {
        self.get(node, BYTE_FLAGS) & !0xff
    }
    fn set_flag(&self, node: u32, flag: u32, on: bool) {
        let v = self.get(node, BYTE_FLAGS);
        self.set(node, BYTE_FLAGS, if on { v | flag } else { v & !flag });
    }

    /// Nodes in use.
    pub fn nodes(&self) -> u32 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Take a node from the pool (under a branch lock).
    fn alloc(&self, byte: u8, parent: u32) -> Option<u32> {
        let _g = self.pool_lock.lock();
        let n = self.free_head.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        self.free_head.store(self.get(n, NEXT), Ordering::Relaxed);
        self.in_use.fetch_add(1, Ordering::Relaxed);
        for field in 0..STRIDE {
            self.set(n, field, 0);
        }
        self.set(n, BYTE_FLAGS, byte as u32);
        self.set(n, PARENT, parent);
        Some(n)
    }

    fn release(&self, n: u32) {
        let _g = self.pool_lock.lock();
        self.set(n, NEXT, self.free_head.load(Ordering::Relaxed));
        self.free_head.store(n, Ordering::Relaxed);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    fn hot_non_leaf(&self, n: u32) -> bool {
        let m = self.max_hits >> 2;
        let (p, c) = (self.get(n, HITS_PREV), self.get(n, HITS_CURR));
        p >= m || c >= m || (p.saturating_add(c) >> 1) >= m
    }
    fn hot_leaf(&self, n: u32) -> bool {
        let m = self.max_hits;
        let (p, c) = (self.get(n, LEAF_PREV), self.get(n, LEAF_CURR));
        p >= m || c >= m || (p.saturating_add(c) >> 1) >= m
    }
    fn warm(&self, n: u32) -> bool {
        self.get(n, HITS_CURR) >= self.max_hits >> 2
    }

    fn start_expiry(&self, n: u32, now: u32) {
        self.set(n, EXPIRES, now.saturating_add(self.timeout));
        self.set_flag(n, INTIMER, true);
    }

    /// Count one request from `ip` (4 or 16 bytes) at time `now` (seconds).
    pub fn mark(&self, ip: &[u8], now: u32) -> Mark {
        let Some(&first) = ip.first() else {
            return Mark::Ok;
        };
        let _g = self.locks[first as usize].lock();
        let root = &self.roots[first as usize];
        let mut kid = root.load(Ordering::Relaxed);
        let mut node = 0;
        let mut pos = 0;
        while kid != 0 && pos < ip.len() {
            while kid != 0 && self.byte(kid) != ip[pos] {
                kid = self.get(kid, NEXT);
            }
            if kid != 0 {
                node = kid;
                kid = self.get(kid, KIDS);
                pos += 1;
            }
        }
        if pos == ip.len() {
            // the whole address
            self.set_flag(node, IPLEAF, true);
            sat_inc(self.f(node, LEAF_CURR));
            self.start_expiry(node, now);
            return if self.hot_leaf(node) {
                Mark::Red
            } else {
                Mark::Ok
            };
        }
        if pos == 0 {
            let Some(n) = self.alloc(first, 0) else {
                return Mark::NoRoom;
            };
            self.set(n, HITS_CURR, 1);
            root.store(n, Ordering::Relaxed);
            self.start_expiry(n, now);
            return Mark::Ok;
        }
        // a prefix of the address
        sat_inc(self.f(node, HITS_CURR));
        if self.hot_non_leaf(node) {
            let Some(n) = self.alloc(ip[pos], node) else {
                return Mark::NoRoom;
            };
            self.set(n, HITS_CURR, self.get(node, HITS_CURR).saturating_sub(1));
            self.set(n, NEXT, self.get(node, KIDS));
            self.set(node, KIDS, n);
            // a node with children does not expire (an IP leaf keeps its own timer)
            if self.flags(node) & IPLEAF == 0 {
                self.set_flag(node, INTIMER, false);
            }
            self.start_expiry(n, now);
        } else if self.warm(node) && self.get(node, KIDS) == 0 {
            self.start_expiry(node, now);
        }
        Mark::Ok
    }

    /// The nodes of branch `b` (depth-first, with their depth).
    fn walk(&self, b: usize, mut f: impl FnMut(u32, usize)) {
        let mut stack = vec![(self.roots[b].load(Ordering::Relaxed), 0usize)];
        while let Some((n, depth)) = stack.pop() {
            if n == 0 {
                continue;
            }
            f(n, depth);
            stack.push((self.get(n, NEXT), depth));
            stack.push((self.get(n, KIDS), depth + 1));
        }
    }

    /// A new sampling unit: current hits become the previous ones.
    pub fn swap(&self) {
        for b in 0..256 {
            if self.roots[b].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let _g = self.locks[b].lock();
            self.walk(b, |n, _| {
                self.set(n, HITS_PREV, self.get(n, HITS_CURR));
                self.set(n, HITS_CURR, 0);
                self.set(n, LEAF_PREV, self.get(n, LEAF_CURR));
                self.set(n, LEAF_CURR, 0);
            });
        }
    }

    /// Remove what expired by `now`; returns how many nodes were freed.
    pub fn clean(&self, now: u32) -> usize {
        let mut freed = 0;
        for b in 0..256 {
            if self.roots[b].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let _g = self.locks[b].lock();
            let mut expired = Vec::new();
            self.walk(b, |n, _| {
                if self.flags(n) & INTIMER != 0 && self.get(n, EXPIRES) <= now {
                    expired.push(n);
                }
            });
            // deepest first: children go before their parents
            for n in expired.into_iter().rev() {
                if self.get(n, KIDS) != 0 {
                    // a full address that is also a prefix: it stops being an address
                    self.set_flag(n, IPLEAF | INTIMER, false);
                    self.set(n, LEAF_CURR, 0);
                    self.set(n, LEAF_PREV, 0);
                    continue;
                }
                self.unlink(b, n, now);
                freed += 1;
            }
        }
        freed
    }

    fn unlink(&self, b: usize, n: u32, now: u32) {
        let parent = self.get(n, PARENT);
        let head = if parent == 0 {
            &self.roots[b]
        } else {
            self.f(parent, KIDS)
        };
        let first = head.load(Ordering::Relaxed);
        if first == n {
            head.store(self.get(n, NEXT), Ordering::Relaxed);
        } else {
            let mut k = first;
            while k != 0 {
                let next = self.get(k, NEXT);
                if next == n {
                    self.set(k, NEXT, self.get(n, NEXT));
                    break;
                }
                k = next;
            }
        }
        if parent != 0 && self.get(parent, KIDS) == 0 && self.flags(parent) & IPLEAF == 0 {
            self.start_expiry(parent, now);
        }
        self.release(n);
    }

    /// Address and byte length of the 256 branch locks, and the address of the pool
    /// lock (the repair hooks are registered for them).
    pub fn lock_spans(&self) -> (usize, usize, usize) {
        (
            self.locks.as_ptr() as usize,
            size_of_val(self.locks),
            self.pool_lock as *const FastLock as usize,
        )
    }

    /// The branch whose lock lies at `addr`.
    pub fn branch_of_lock(&self, addr: usize) -> Option<usize> {
        self.locks
            .iter()
            .position(|l| std::ptr::eq(l, addr as *const FastLock))
    }

    fn capacity(&self) -> u32 {
        (self.cells.len() / STRIDE) as u32
    }

    /// Check branch `b` after a process died holding its lock (the caller holds it now):
    /// every link must name a node of the pool, once, with the right parent, the
    /// branch's byte at the top and at most 16 levels. A link that does not is cut (the
    /// nodes below it leave the tree; they stay out of the pool, as a node the dead
    /// process had taken from the pool and not linked yet does). Returns what was cut.
    pub fn repair_branch(&self, b: usize) -> Vec<String> {
        let mut done = Vec::new();
        let cap = self.capacity();
        let mut seen = std::collections::HashSet::new();
        // (link holder, node, expected parent, depth); the holder is where the link is
        // stored: the root, a KIDS or a NEXT field.
        let mut stack: Vec<(&AtomicU32, u32, u32)> = vec![(&self.roots[b], 0, 0)];
        while let Some((holder, parent, depth)) = stack.pop() {
            let n = holder.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let why = if n > cap {
                Some("not a node of the pool")
            } else if !seen.insert(n) {
                Some("a node reached twice")
            } else if self.get(n, PARENT) != parent {
                Some("a node with another parent")
            } else if depth >= 16 {
                Some("deeper than an address")
            } else if depth == 0 && self.byte(n) as usize != b {
                Some("a node of another branch")
            } else {
                None
            };
            if let Some(why) = why {
                holder.store(0, Ordering::Relaxed);
                done.push(format!(
                    "pike branch {b}: cut a link to node {n} ({why}) at depth {depth}"
                ));
                continue;
            }
            stack.push((self.f(n, NEXT), parent, depth));
            stack.push((self.f(n, KIDS), n, depth + 1));
        }
        done
    }

    /// Check the free list after a process died holding the pool lock (the caller holds
    /// it now): it is cut where a link leaves the pool or loops, and the count of nodes
    /// in use is set from what is left. Returns what was changed.
    pub fn repair_pool(&self) -> Vec<String> {
        let mut done = Vec::new();
        let cap = self.capacity();
        let mut seen = std::collections::HashSet::new();
        let mut holder: &AtomicU32 = self.free_head;
        loop {
            let n = holder.load(Ordering::Relaxed);
            if n == 0 {
                break;
            }
            if n > cap || !seen.insert(n) {
                holder.store(0, Ordering::Relaxed);
                done.push(format!(
                    "pike node pool: free list cut after {} node(s) (a link to node {n})",
                    seen.len()
                ));
                break;
            }
            holder = self.f(n, NEXT);
        }
        let in_use = cap - seen.len() as u32;
        if self.in_use.swap(in_use, Ordering::Relaxed) != in_use {
            done.push(format!(
                "pike node pool: {in_use} node(s) in use (count corrected)"
            ));
        }
        done
    }

    /// The red addresses (full addresses whose hits exceed the density).
    pub fn red_ips(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in 0..256 {
            if self.roots[b].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let _g = self.locks[b].lock();
            let mut path = [0u8; 16];
            self.walk(b, |n, depth| {
                if depth < 16 {
                    path[depth] = self.byte(n);
                }
                if self.flags(n) & IPLEAF != 0 && self.hot_leaf(n) {
                    match depth + 1 {
                        4 => out.push(format!("{}.{}.{}.{}", path[0], path[1], path[2], path[3])),
                        16 => {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(&path);
                            out.push(std::net::Ipv6Addr::from(a).to_string());
                        }
                        _ => {}
                    }
                }
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(cap: u32) -> Tree {
        let _ = shm::init(8 << 20);
        Tree::new(cap, 30, 120).expect("shm")
    }

    #[test]
    fn flood_turns_red_and_neighbour_stays_green() {
        let t = tree(64);
        let flood = [127, 0, 0, 2];
        let mut first_red = None;
        for i in 0..2000 {
            if t.mark(&flood, 1000) == Mark::Red && first_red.is_none() {
                first_red = Some(i);
            }
            if i % 100 == 0 {
                assert_eq!(t.mark(&[127, 0, 0, 3], 1000), Mark::Ok, "at {i}");
            }
        }
        let r = first_red.expect("the flood is detected");
        assert!(r < 3 * 30 + 4 * 30, "red after {r} requests");
        assert_eq!(t.red_ips(), vec!["127.0.0.2".to_string()]);
        // two quiet sampling units: green again
        t.swap();
        t.swap();
        assert!(t.red_ips().is_empty());
        assert_eq!(t.mark(&flood, 1001), Mark::Ok);
        // after remove_latency everything goes, leaves first, then the prefixes
        let mut now = 1001 + 120;
        while t.nodes() > 0 && now < 1001 + 10 * 121 {
            t.clean(now);
            now += 1;
        }
        assert_eq!(t.nodes(), 0);
    }

    #[test]
    fn ipv6_and_a_full_pool() {
        let t = tree(3);
        let a: [u8; 16] = std::net::Ipv6Addr::LOCALHOST.octets();
        for _ in 0..200 {
            let _ = t.mark(&a, 5);
        }
        assert_eq!(t.nodes(), 3);
        assert_eq!(t.mark(&[10, 0, 0, 1], 5), Mark::NoRoom);
        let mut now = 5 + 120;
        while t.nodes() > 0 && now < 2000 {
            t.clean(now);
            now += 1;
        }
        assert_eq!(t.nodes(), 0);
        // the pool is whole again
        for b in 0..3u8 {
            assert_eq!(t.mark(&[b, 1, 1, 1], 9), Mark::Ok);
        }
        assert_eq!(t.nodes(), 3);
    }

    #[test]
    fn repair_branch_cuts_bad_links_and_keeps_the_rest() {
        let t = tree(64);
        // Grow 10.1.x.y deep enough to have children.
        for _ in 0..200 {
            t.mark(&[10, 1, 2, 3], 1000);
            t.mark(&[10, 1, 2, 4], 1000);
        }
        let before = t.nodes();
        assert!(before >= 5, "{before} nodes");
        let b = 10usize;
        assert!(
            t.repair_branch(b).is_empty(),
            "a sound branch is left alone"
        );
        let root = t.roots[b].load(Ordering::Relaxed);
        let kid = t.get(root, KIDS);
        assert_ne!(kid, 0);
        // A half-written link: the child's sibling link points outside the pool.
        t.set(kid, NEXT, 10_000);
        let done = t.repair_branch(b);
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].contains("not a node of the pool"), "{done:?}");
        assert_eq!(t.get(kid, NEXT), 0);
        // A loop back to the root.
        t.set(kid, NEXT, root);
        let done = t.repair_branch(b);
        assert!(done[0].contains("a node reached twice"), "{done:?}");
        // What is left still counts and serves.
        assert!(t.repair_branch(b).is_empty());
        assert_ne!(t.mark(&[10, 1, 2, 3], 1000), Mark::NoRoom);
    }

    #[test]
    fn repair_pool_cuts_a_broken_free_list() {
        let t = tree(16);
        t.mark(&[192, 0, 2, 1], 1000);
        assert!(t.repair_pool().is_empty());
        let head = t.free_head.load(Ordering::Relaxed);
        t.set(head, NEXT, head);
        let done = t.repair_pool();
        assert!(
            done[0].contains("free list cut after 1 node(s)"),
            "{done:?}"
        );
        assert!(
            done.iter().any(|l| l.contains("15 node(s) in use")),
            "{done:?}"
        );
        assert_eq!(t.nodes(), 15);
        // Allocation goes on from what is left.
        assert_eq!(t.mark(&[198, 51, 100, 1], 1000), Mark::Ok);
    }
}

//! Fork stress: 4 processes x 100,000 iterations over one FastLock-protected plain counter
//! in shm, plus alloc/free of random sizes on the global heap. One test per binary, so the
//! global segment is this binary's own and no other test thread runs while we fork.
#![allow(unsafe_code)] // exercises shm through raw pointers, each block argued

use std::cell::UnsafeCell;
use std::ptr::NonNull;

use shm::{FastLock, ShmSafe};

const PROCS: usize = 4;
const ITERS: u64 = 100_000;

#[repr(C)]
struct Shared {
    lock: FastLock,
    counter: UnsafeCell<u64>,
}

// SAFETY: #[repr(C)] plain data (a FastLock and a u64); all-zero is valid.
unsafe impl ShmSafe for Shared {}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Child body; returns the exit code.
fn child(shared: &Shared, seed: u64) -> i32 {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::with_capacity(32);
    for i in 0..ITERS {
        {
            let _g = shared.lock.lock();
            // SAFETY: the counter is only touched with `shared.lock` held.
            unsafe { *shared.counter.get() += 1 };
        }
        let r = rng.next();
        if live.len() < 32 && (r & 1 == 0 || live.is_empty()) {
            let size = if r & 0xF0 == 0 {
                1 + (r >> 8) as usize % 20_000
            } else {
                1 + (r >> 8) as usize % 512
            };
            let Some(p) = shm::alloc_bytes(size) else {
                return 3;
            };
            let tag = i as u8;
            // SAFETY: fresh allocation of `size` bytes.
            unsafe { std::ptr::write_bytes(p.as_ptr(), tag, size) };
            live.push((p, size, tag));
        } else {
            let (p, size, tag) = live.swap_remove((r >> 8) as usize % live.len());
            // SAFETY: live allocation of `size` bytes filled with `tag`, private to this
            // process (no other process has its address).
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
            if !bytes.iter().all(|&b| b == tag) {
                return 2;
            }
            // SAFETY: `p` is live, removed from `live` so freed once, and `bytes` is no
            // longer used.
            unsafe { shm::free_bytes(p) };
        }
    }
    for (p, _, _) in live {
        // SAFETY: each remaining allocation is live and freed once.
        unsafe { shm::free_bytes(p) };
    }
    0
}

#[test]
fn four_processes_share_lock_counter_and_heap() {
    shm::init(32 << 20).unwrap();
    let start = shm::stats();
    let shared = shm::alloc_zeroed_array::<Shared>(1).unwrap();
    let mut pids = Vec::new();
    for k in 0..PROCS {
        // SAFETY: this binary has a single test, so no other thread holds a lock or the heap
        // at fork time; the child runs only `child` and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            shm::set_process_slot(k + 1);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                child(shared.as_ref(), 0x9E37_79B9 * (k as u64 + 1))
            }))
            .unwrap_or(4);
            // SAFETY: leave the child without running the test harness's code.
            unsafe { libc::_exit(code) };
        }
        pids.push(pid);
    }
    for (k, pid) in pids.into_iter().enumerate() {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child {k}: status {status:#x}"
        );
        assert_eq!(
            shm::force_unlock_dead(k + 1, pid as u32),
            0,
            "a normally exited child holds no lock"
        );
    }
    // SAFETY: all children are gone; we are the only user of the counter.
    let counter = unsafe { *shared.as_ref().counter.get() };
    assert_eq!(counter, PROCS as u64 * ITERS);
    assert!(!shared.as_ref().lock.is_locked());
    let heap = shm::global::heap().unwrap();
    heap.check().unwrap();
    // SAFETY: allocated above, no longer used.
    unsafe { shm::free(shared) };
    heap.check().unwrap();
    let end = shm::stats();
    assert_eq!(end.used, start.used);
    assert_eq!(end.real_used, start.real_used);
    assert_eq!(end.fragments, 1, "{}", shm::status_dump());
    assert!(end.max_used > start.real_used);
}

//! `repair_dead`: a child SIGKILLed while holding locks (and the heap lock); the
//! attendant takes each lock over, runs the hook registered for its address, checks the
//! heap, and refuses to touch the locks of a process that still exists. A corrupted heap
//! makes the report inconsistent and no hook runs on it.
#![allow(unsafe_code)] // exercises shm through raw pointers, each block argued

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shm::{FastLock, FastLockGuard, ShmSafe};

#[repr(C)]
struct Shared {
    a: FastLock,
    b: FastLock,
    flag: AtomicU32,
}

// SAFETY: #[repr(C)] plain data; all-zero is valid.
unsafe impl ShmSafe for Shared {}

static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);
static DEAD_CALLS: AtomicUsize = AtomicUsize::new(0);

fn hook(lock: usize, held: FastLockGuard<'static>) -> Result<Vec<String>, String> {
    HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    // The attendant (this process) holds the lock while the hook runs.
    assert_eq!(held.lock_ref() as *const FastLock as usize, lock);
    assert_eq!(held.lock_ref().owner(), std::process::id());
    Ok(vec!["record X".into()])
}

fn dead_hook(slot: usize) -> Result<Vec<String>, String> {
    DEAD_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(vec![format!("slot {slot}")])
}

fn wait_status(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    status
}

/// A child in `slot` that takes both locks and the heap lock; if `corrupt`, it also
/// smashes the header of the block at `victim` before raising the flag.
fn spawn_holder(sh: &Shared, slot: usize, corrupt: Option<usize>) -> libc::pid_t {
    // SAFETY: single-test binary: no other thread holds anything at fork; the child never
    // returns into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        shm::set_process_slot(slot);
        let _a = sh.a.lock();
        let _b = sh.b.lock();
        let _h = shm::global::heap().unwrap().lock_ref().lock();
        if let Some(v) = corrupt {
            // SAFETY: `v` is a live allocation of the heap; the 16 bytes before it are its
            // block header (prev_size, size), which this test deliberately corrupts.
            unsafe { std::ptr::write_bytes((v - 16) as *mut u8, 0x5a, 16) };
        }
        sh.flag.store(1, Ordering::Release);
        loop {
            // SAFETY: plain sleep; the parent kills us.
            unsafe { libc::sleep(1) };
        }
    }
    let t = Instant::now();
    while sh.flag.load(Ordering::Acquire) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "child never took the locks"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    sh.flag.store(0, Ordering::Release);
    pid
}

fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: killing our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(libc::WIFSIGNALED(wait_status(pid)));
}

#[test]
fn repair_dead_takes_over_runs_hooks_and_checks_the_heap() {
    shm::init(8 << 20).unwrap();
    let p = shm::alloc_zeroed_array::<Shared>(1).unwrap();
    let sh = p.as_ref();
    // A hook for lock `a` only; `b` is released as is.
    shm::register_repair(&sh.a as *const FastLock as usize, 4, "test struct", hook);
    shm::register_dead_hook("test refs", dead_hook);

    let pid = spawn_holder(sh, 3, None);
    // Not reaped yet (a zombie still exists, or the child lives): nothing is done.
    let early = shm::repair_dead(3, pid as u32);
    assert!(!early.reaped && early.locks.is_empty());
    assert!(sh.a.is_locked());
    kill_and_reap(pid);

    let rep = shm::repair_dead(3, pid as u32);
    assert!(rep.reaped);
    assert!(matches!(rep.heap, Some(Ok(()))), "{:?}", rep.heap);
    assert!(rep.consistent());
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(DEAD_CALLS.load(Ordering::SeqCst), 1);
    let what: Vec<&str> = rep.locks.iter().map(|r| r.what).collect();
    assert_eq!(
        what,
        ["test struct", "unregistered", "test refs"],
        "{rep:?}"
    );
    assert_eq!(
        rep.locks[0].outcome.as_deref(),
        Ok(&["record X".to_string()][..])
    );
    assert!(!sh.a.is_locked() && !sh.b.is_locked());
    assert!(!shm::global::heap().unwrap().lock_ref().is_locked());
    // The row is clean: a second pass finds nothing.
    let again = shm::repair_dead(3, pid as u32);
    assert!(again.locks.iter().all(|r| r.lock == 0) && again.heap.is_none());

    // A corrupt heap: reported, inconsistent, and the hook does not run on it.
    let victim = shm::alloc_bytes(64).unwrap().as_ptr() as usize;
    let pid = spawn_holder(sh, 4, Some(victim));
    kill_and_reap(pid);
    let rep = shm::repair_dead(4, pid as u32);
    assert!(matches!(rep.heap, Some(Err(_))), "{:?}", rep.heap);
    assert!(!rep.consistent());
    assert_eq!(
        HOOK_CALLS.load(Ordering::SeqCst),
        1,
        "no hook on a corrupt heap"
    );
    assert!(rep.locks[0].outcome.is_err());
    assert!(!sh.a.is_locked() && !sh.b.is_locked());
}

//! A child SIGKILLed while holding locks: the attendant's `force_unlock_dead` releases them.
#![allow(unsafe_code)] // exercises shm through raw pointers, each block argued

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shm::{FastLock, ShmSafe};

#[repr(C)]
struct Shared {
    lock: FastLock,
    flag: AtomicU32,
}

// SAFETY: #[repr(C)] plain data; all-zero is valid.
unsafe impl ShmSafe for Shared {}

fn wait_status(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    status
}

/// Forks a child in `slot` that takes `lock` (and the heap lock if `heap_too`), raises the
/// flag and sleeps until killed.
fn spawn_holder(sh: &Shared, slot: usize, heap_too: bool) -> libc::pid_t {
    // SAFETY: single-test binary: no other thread holds anything at fork; the child never
    // returns into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        shm::set_process_slot(slot);
        let _g = sh.lock.lock();
        let _h = heap_too.then(|| shm::global::heap().unwrap().lock_ref().lock());
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
            "child never took the lock"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    pid
}

#[test]
fn killed_owner_locks_are_force_released() {
    shm::init(8 << 20).unwrap();
    let p = shm::alloc_zeroed_array::<Shared>(1).unwrap();
    let sh = p.as_ref();

    // 1. A child holding one lock.
    let pid = spawn_holder(sh, 3, false);
    assert_eq!(sh.lock.owner(), pid as u32);
    assert!(sh.lock.try_lock().is_none());
    // SAFETY: killing our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let st = wait_status(pid);
    assert!(libc::WIFSIGNALED(st));
    assert!(
        sh.lock.is_locked(),
        "a dead owner's lock stays held until force-released"
    );
    assert_eq!(
        shm::force_unlock_dead(2, pid as u32),
        0,
        "wrong slot releases nothing"
    );
    assert!(shm::force_unlock_dead(3, pid as u32) >= 1);
    assert!(!sh.lock.is_locked());
    drop(sh.lock.try_lock().expect("parent takes the released lock"));

    // Another child can take it too.
    // SAFETY: as in spawn_holder.
    let pid2 = unsafe { libc::fork() };
    assert!(pid2 >= 0);
    if pid2 == 0 {
        shm::set_process_slot(4);
        let t = Instant::now();
        let code = loop {
            if let Some(g) = sh.lock.try_lock() {
                let ok = sh.lock.owner() == std::process::id();
                drop(g);
                break if ok { 0 } else { 2 };
            }
            if t.elapsed() > Duration::from_secs(5) {
                break 1;
            }
        };
        // SAFETY: leave the child without running the harness.
        unsafe { libc::_exit(code) };
    }
    let st = wait_status(pid2);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "status {st:#x}"
    );

    // 2. A child dying while holding the heap lock as well.
    sh.flag.store(0, Ordering::Release);
    let pid3 = spawn_holder(sh, 5, true);
    let heap = shm::global::heap().unwrap();
    assert_eq!(heap.lock_ref().owner(), pid3 as u32);
    // SAFETY: killing our own child.
    assert_eq!(unsafe { libc::kill(pid3, libc::SIGKILL) }, 0);
    wait_status(pid3);
    assert_eq!(shm::force_unlock_dead(5, pid3 as u32), 2);
    assert!(!heap.lock_ref().is_locked());
    let q = shm::alloc_bytes(100).expect("heap usable again");
    // SAFETY: allocated just above.
    unsafe { shm::free_bytes(q) };
    heap.check().unwrap();
    // SAFETY: no longer used.
    unsafe { shm::free(p) };
}

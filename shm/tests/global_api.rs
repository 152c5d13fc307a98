//! The global API in one process (one test: the segment is per binary).
#![allow(unsafe_code)] // exercises shm through raw pointers, each block argued

use std::sync::atomic::{AtomicU64, Ordering};

use shm::{LockSet, MemStats, ShmPtr, ShmSafe, ShmStr};

#[repr(C)]
struct Pair {
    a: AtomicU64,
    next: ShmPtr<Pair>,
    name: ShmStr,
}

// SAFETY: #[repr(C)] plain data: an atomic, a shm pointer and a shm string.
unsafe impl ShmSafe for Pair {}

#[test]
fn global_api() {
    assert!(!shm::is_initialized());
    assert_eq!(shm::stats(), MemStats::default());
    assert!(shm::alloc_bytes(10).is_none());
    assert!(ShmStr::new(b"x").is_none());
    assert!(LockSet::new(4).is_none());
    assert_eq!(shm::force_unlock_dead(1, 1), 0);
    assert!(shm::status_dump().contains("not initialised"));

    shm::init(4 << 20).unwrap();
    assert!(shm::is_initialized());
    assert_eq!(
        shm::init(4 << 20).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    let s0 = shm::stats();
    assert!(s0.total > (4 << 20) - 64 * 1024 && s0.fragments == 1 && s0.used == 0);
    assert_eq!(s0.free, s0.total - s0.real_used);

    // Strings.
    let s = ShmStr::new(b"sip:alice@example.com").unwrap();
    assert_eq!(s.as_bytes(), b"sip:alice@example.com");
    assert_eq!(s.len(), 21);
    assert!(!s.is_empty());
    assert!(shm::global::contains(s.as_ptr().addr()));
    let e = ShmStr::new(b"").unwrap();
    assert!(e.is_empty() && e.as_bytes().is_empty() && e == ShmStr::empty());
    e.free();

    // Typed values.
    let p = shm::alloc(Pair {
        a: AtomicU64::new(7),
        next: ShmPtr::null(),
        name: s,
    })
    .unwrap();
    assert_eq!(p.as_ref().a.load(Ordering::Relaxed), 7);
    assert!(p.as_ref().next.is_null() && p.as_ref().next.get().is_none());
    assert_eq!(p.as_ref().name.as_bytes(), b"sip:alice@example.com");
    assert_eq!(p.as_ptr() as usize % 16, 0);

    let arr = shm::alloc_zeroed_array::<Pair>(100).unwrap();
    // SAFETY: 100 zeroed Pairs (zero is valid: atomics, null pointer, empty string).
    let items = unsafe { std::slice::from_raw_parts(arr.as_ptr(), 100) };
    assert!(
        items
            .iter()
            .all(|x| x.a.load(Ordering::Relaxed) == 0 && x.next.is_null() && x.name.is_empty())
    );
    assert!(shm::alloc_zeroed_array::<u64>(usize::MAX).is_none());

    // Lock sets and the held-lock record of slot 0 (this process).
    let set = LockSet::new(8).unwrap();
    let ls = set.as_ref();
    assert_eq!(ls.len(), 8);
    assert!(std::ptr::eq(ls.get(3), ls.get(11)));
    {
        let _g = ls.get(1).lock();
        let _g2 = ls.get(2).lock();
        assert!(ls.get(1).try_lock().is_none());
        // A live process's locks are never force-released (nor repaired).
        assert_eq!(shm::force_unlock_dead(0, std::process::id()), 0);
        assert!(!shm::repair_dead(0, std::process::id()).reaped);
        assert!(ls.get(1).is_locked() && ls.get(2).is_locked());
    }
    // Guards dropped: free, and the record is clean.
    assert!(!ls.get(1).is_locked());
    assert_eq!(shm::force_unlock_dead(0, std::process::id()), 0);
    // More than HELD_PER_PROC nested locks: the extra ones are simply not recorded.
    {
        let set16 = LockSet::new(16).unwrap();
        let guards: Vec<_> = (0..16).map(|i| set16.as_ref().get(i).lock()).collect();
        assert_eq!(
            shm::global::held_overflow(),
            16 - shm::global::HELD_PER_PROC
        );
        drop(guards);
        // SAFETY: no lock of the set is held; not used afterwards.
        unsafe { LockSet::destroy(set16) };
    }

    // Exhaustion of the global heap: None, never a panic.
    let mut blocks = Vec::new();
    while let Some(b) = shm::alloc_bytes(100_000) {
        blocks.push(b);
    }
    while let Some(b) = shm::alloc_bytes(16) {
        blocks.push(b);
    }
    assert!(ShmStr::new(b"no room").is_none());
    assert!(shm::alloc(0u64).is_none());
    assert!(shm::stats().free < 64);
    for b in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { shm::free_bytes(b) };
    }

    // Realloc through the global API.
    let r = shm::alloc_bytes(10).unwrap();
    // SAFETY: live allocation from the global heap.
    let r = unsafe { shm::global::realloc_bytes(r, 50_000) }.unwrap();
    // SAFETY: freed once.
    unsafe { shm::free_bytes(r) };

    let dump = shm::status_dump();
    assert!(
        dump.contains("heap size=") && dump.contains("TOTAL:"),
        "{dump}"
    );

    // Free everything: back to the start.
    // SAFETY: `set` comes from LockSet::new, no lock of it is held (the guards above were
    // dropped) and neither it nor `ls` is used afterwards.
    unsafe { LockSet::destroy(set) };
    // SAFETY: `arr` comes from alloc_zeroed_array, is freed once, and `items` (the only
    // borrow of it) is no longer used.
    unsafe { shm::free(arr) };
    // SAFETY: `p` comes from alloc and is freed once; the string it holds (`s`) is a
    // separate allocation, freed below.
    unsafe { shm::free(p) };
    s.free();
    shm::global::heap().unwrap().check().unwrap();
    let s1 = shm::stats();
    assert_eq!(s1.used, 0);
    assert_eq!(s1.real_used, s0.real_used);
    assert_eq!(s1.fragments, 1);
    assert_eq!(s1.largest_free, s0.largest_free);
    assert!(s1.max_used >= s0.total - 64);
}

//! shm hot paths: allocator alloc+free, FastLock uncontended and contended by a second
//! process (a forked child hammering the same lock while criterion measures).
#![allow(unsafe_code)] // exercises shm through raw pointers, each block argued

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use shm::{FastLock, ShmSafe};

#[repr(C)]
struct Contended {
    lock: FastLock,
    stop: AtomicU32,
    ready: AtomicU32,
}

// SAFETY: #[repr(C)] plain data; all-zero is valid.
unsafe impl ShmSafe for Contended {}

fn ensure_init() {
    if !shm::is_initialized() {
        shm::init(64 << 20).expect("shm init");
    }
}

fn alloc_free(c: &mut Criterion) {
    ensure_init();
    let mut g = c.benchmark_group("alloc_free");
    for size in [64usize, 1024] {
        g.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                let p = shm::alloc_bytes(black_box(size)).unwrap();
                // SAFETY: freed once right after allocation.
                unsafe { shm::free_bytes(p) };
            })
        });
    }
    // Mixed sizes with a window of 64 live blocks, so the heap has real fragmentation.
    g.bench_function("mixed_window64", |b| {
        let sizes = [
            24usize, 64, 100, 200, 512, 1500, 4000, 33, 9000, 300, 48, 20_000,
        ];
        let mut live = [None; 64];
        let mut i = 0usize;
        b.iter(|| {
            let slot = (i * 7) % live.len();
            if let Some(p) = live[slot].take() {
                // SAFETY: a live block from this loop, freed once.
                unsafe { shm::free_bytes(p) };
            }
            live[slot] = shm::alloc_bytes(sizes[i % sizes.len()]);
            i = i.wrapping_add(1);
        });
        for p in live.into_iter().flatten() {
            // SAFETY: remaining live blocks, freed once.
            unsafe { shm::free_bytes(p) };
        }
    });
    g.finish();
}

fn locks(c: &mut Criterion) {
    ensure_init();
    let mut g = c.benchmark_group("fastlock");
    let private = FastLock::new();
    g.bench_function("uncontended_private", |b| {
        b.iter(|| drop(black_box(&private).lock()))
    });
    let shared = shm::alloc_zeroed_array::<Contended>(1).unwrap();
    let sh = shared.as_ref();
    g.bench_function("uncontended_shm_recorded", |b| {
        b.iter(|| drop(black_box(&sh.lock).lock()))
    });

    // SAFETY: criterion runs benches on this thread only; the child only hammers the lock
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        shm::set_process_slot(1);
        sh.ready.store(1, Ordering::Release);
        while sh.stop.load(Ordering::Relaxed) == 0 {
            let g = sh.lock.lock();
            std::hint::black_box(&g);
            drop(g);
        }
        // SAFETY: leave without running the parent's code.
        unsafe { libc::_exit(0) };
    }
    while sh.ready.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    g.bench_function("contended_2proc", |b| {
        b.iter(|| drop(black_box(&sh.lock).lock()))
    });
    sh.stop.store(1, Ordering::Relaxed);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    g.finish();
}

criterion_group!(benches, alloc_free, locks);
criterion_main!(benches);

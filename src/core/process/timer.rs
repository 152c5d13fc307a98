//! The timer process: one process runs a 1 s tick list and a 100 ms tick list.
//! Modules register their timer functions before forking (the registry is private
//! memory inherited by the timer process); the tick counters are in shared memory so
//! every process reads the same time base.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A timer function; gets the current tick (seconds for the 1 s list, 100 ms units
/// for the fast list).
pub type TimerFn = fn(ticks: u64);

#[derive(Clone)]
struct Timer {
    name: String,
    interval: u64,
    f: TimerFn,
}

static SLOW: Mutex<Vec<Timer>> = Mutex::new(Vec::new());
static FAST: Mutex<Vec<Timer>> = Mutex::new(Vec::new());
static TICKS: OnceLock<(&'static AtomicU64, &'static AtomicU64)> = OnceLock::new();

/// Register `f` to run every `interval_s` seconds in the timer process.
pub fn register_timer(name: &str, interval_s: u32, f: TimerFn) {
    SLOW.lock().unwrap_or_else(|e| e.into_inner()).push(Timer {
        name: name.into(),
        interval: interval_s.max(1) as u64,
        f,
    });
}

/// Register `f` to run every `interval_ms` (rounded up to 100 ms units).
pub fn register_utimer(name: &str, interval_ms: u32, f: TimerFn) {
    let units = interval_ms.div_ceil(100).max(1) as u64;
    FAST.lock().unwrap_or_else(|e| e.into_inner()).push(Timer {
        name: name.into(),
        interval: units,
        f,
    });
}

pub fn has_timers() -> bool {
    !SLOW.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
        || !FAST.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
}

/// Create the shared tick counters (attendant, after `shm::init`).
pub fn init() -> Result<(), String> {
    if TICKS.get().is_some() {
        return Ok(());
    }
    let (a, b) = if shm::is_initialized() {
        (
            shm::alloc_static(AtomicU64::new(0)).ok_or("no shm for the timer")?,
            shm::alloc_static(AtomicU64::new(0)).ok_or("no shm for the timer")?,
        )
    } else {
        (
            &*Box::leak(Box::new(AtomicU64::new(0))),
            &*Box::leak(Box::new(AtomicU64::new(0))),
        )
    };
    let _ = TICKS.set((a, b));
    Ok(())
}

/// Seconds since the timer started (OpenSER's `get_ticks()`).
pub fn get_ticks() -> u64 {
    TICKS
        .get()
        .map(|t| t.0.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// 100 ms units since the timer started.
pub fn get_uticks() -> u64 {
    TICKS
        .get()
        .map(|t| t.1.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// The timer process's loop; returns only through `signals::child_check` exiting.
pub fn timer_loop() -> ! {
    let slow = SLOW.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let fast = FAST.lock().unwrap_or_else(|e| e.into_inner()).clone();
    crate::log_dbg!(
        "DBG:core:timer: {} timers of 1 s and {} of 100 ms registered",
        slow.len(),
        fast.len()
    );
    let start = Instant::now();
    let mut uticks: u64 = 0;
    loop {
        super::signals::child_check();
        uticks += 1;
        let next = start + Duration::from_millis(100 * uticks);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        if let Some(t) = TICKS.get() {
            t.1.store(uticks, Ordering::Relaxed);
        }
        for t in &fast {
            if uticks.is_multiple_of(t.interval) {
                (t.f)(uticks);
            }
        }
        if uticks.is_multiple_of(10) {
            let secs = uticks / 10;
            if let Some(t) = TICKS.get() {
                t.0.store(secs, Ordering::Relaxed);
            }
            for t in &slow {
                if secs.is_multiple_of(t.interval) {
                    crate::log_dbg!("DBG:core:timer: running {}", t.name);
                    (t.f)(secs);
                }
            }
        }
    }
}

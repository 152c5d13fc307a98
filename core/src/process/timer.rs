//! The timer process: one process runs a 1 s tick list and a 100 ms tick list, built
//! from the loaded modules' declared timers (and the script's `timer_route`s) when the
//! process starts. The tick counters are in shared memory so every process reads the
//! same time base.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::module::{self, Every, TimerFn};

struct Timer {
    name: &'static str,
    interval: u64,
    f: TimerFn,
}

static TICKS: OnceLock<(&'static AtomicU64, &'static AtomicU64)> = OnceLock::new();

/// The timers of the loaded modules and the script: (1 s list, 100 ms list).
fn timer_lists() -> (Vec<Timer>, Vec<Timer>) {
    let (mut slow, mut fast) = (Vec::new(), Vec::new());
    for t in module::loaded().iter().flat_map(|m| m.timers.iter()) {
        let (list, interval) = match &t.every {
            Every::Secs(s) => (&mut slow, u64::from(*s)),
            Every::SecsParam(p) => (&mut slow, p.get().max(1) as u64),
            Every::Millis(ms) => (&mut fast, u64::from(ms.div_ceil(100))),
        };
        list.push(Timer {
            name: t.name,
            interval: interval.max(1),
            f: t.f,
        });
    }
    if crate::script::has_timer_routes() {
        slow.push(Timer {
            name: "script timer routes",
            interval: 1,
            f: crate::script::timer_routes_tick,
        });
    }
    (slow, fast)
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
    let (slow, fast) = timer_lists();
    crate::log_dbg!(
        "{} timers of 1 s and {} of 100 ms registered",
        slow.len(),
        fast.len()
    );
    let start = Instant::now();
    let mut uticks: u64 = 0;
    let mut turns_seen = Vec::new();
    let mut shm_watch = ShmWatch::default();
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
        crate::transport::turn::watchdog(&mut turns_seen);
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
            shm_watch.tick(secs);
            for t in &slow {
                if secs.is_multiple_of(t.interval) {
                    crate::log_dbg!("running {}", t.name);
                    (t.f)(secs);
                }
            }
        }
    }
}

/// Seconds between two "shm exhausted" log lines (the failures in between are counted).
pub const SHM_LOG_INTERVAL: u64 = 10;

/// The timer's watch over shm allocation failures: one log line per
/// [`SHM_LOG_INTERVAL`] while allocations fail, with their count, and one line when
/// none failed for a whole interval after that (service is back). The requests whose
/// allocation failed were answered where they failed (500); this tells the operator why.
#[derive(Default)]
struct ShmWatch {
    /// Failures counted when the last line was written.
    logged: u64,
    /// When (timer seconds) the last "exhausted" line was written; `None` before any.
    last_line: Option<u64>,
    /// Failures seen at the previous tick, and since when the count has not moved.
    seen: u64,
    quiet_since: u64,
    exhausted: bool,
}

impl ShmWatch {
    fn tick(&mut self, secs: u64) {
        let total = shm::alloc_failures();
        if total != self.seen {
            self.seen = total;
            self.quiet_since = secs;
        }
        let due = self
            .last_line
            .is_none_or(|t| secs.saturating_sub(t) >= SHM_LOG_INTERVAL);
        if total > self.logged && due {
            let st = shm::stats();
            let since = self
                .last_line
                .map_or_else(|| "start".to_string(), |t| format!("{} s", secs - t));
            crate::log_warn!(
                "shared memory exhausted: {} allocation(s) failed in the last {since} ({total} \
                 since start); {} of {} bytes in use, largest free block {} bytes; the requests \
                 concerned were refused (500)",
                total - self.logged,
                st.real_used,
                st.total,
                st.largest_free
            );
            self.logged = total;
            self.last_line = Some(secs);
            self.exhausted = true;
        } else if self.exhausted && secs.saturating_sub(self.quiet_since) >= SHM_LOG_INTERVAL {
            let st = shm::stats();
            crate::log_notice!(
                "shared memory: no allocation failed for {SHM_LOG_INTERVAL} s ({} failure(s) \
                 since start); {} of {} bytes in use",
                total,
                st.real_used,
                st.total
            );
            self.logged = total;
            self.exhausted = false;
        }
    }
}

//! The process table: what every process is (description and rank, computed by the
//! attendant before forking and inherited) and its pid (in shared memory, written by
//! the attendant after each fork, readable by every process — MI `ps` reads it).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

pub const PROC_MAIN: i32 = 0;
pub const PROC_TIMER: i32 = -1;
pub const PROC_FIFO: i32 = -2;
pub const PROC_TCP_MAIN: i32 = -4;

/// One row of the table.
#[derive(Debug, Clone)]
pub struct ProcDesc {
    pub desc: String,
    pub rank: i32,
}

static TABLE: OnceLock<Vec<ProcDesc>> = OnceLock::new();
static PIDS: OnceLock<&'static [AtomicI32]> = OnceLock::new();
static MY_INDEX: AtomicUsize = AtomicUsize::new(0);

/// Create the table (attendant, after `shm::init`, before forking).
pub fn init(rows: Vec<ProcDesc>) -> Result<(), String> {
    let n = rows.len();
    let pids: &'static [AtomicI32] = if shm::is_initialized() {
        shm::alloc_static_slice_with(n, |_| AtomicI32::new(0))
            .ok_or_else(|| "no shm left for the process table".to_string())?
    } else {
        Box::leak(
            (0..n)
                .map(|_| AtomicI32::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    };
    pids[0].store(crate::sys::getpid(), Ordering::Relaxed);
    TABLE
        .set(rows)
        .map_err(|_| "process table already created".to_string())?;
    let _ = PIDS.set(pids);
    Ok(())
}

pub fn len() -> usize {
    TABLE.get().map(|t| t.len()).unwrap_or(0)
}

pub fn desc(i: usize) -> &'static str {
    TABLE
        .get()
        .and_then(|t| t.get(i))
        .map(|d| d.desc.as_str())
        .unwrap_or("")
}

pub fn rank(i: usize) -> i32 {
    TABLE
        .get()
        .and_then(|t| t.get(i))
        .map(|d| d.rank)
        .unwrap_or(PROC_MAIN)
}

pub fn set_pid(i: usize, pid: i32) {
    if let Some(p) = PIDS.get().and_then(|p| p.get(i)) {
        p.store(pid, Ordering::Relaxed);
    }
}

pub fn pid(i: usize) -> i32 {
    PIDS.get()
        .and_then(|p| p.get(i))
        .map(|p| p.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// Index of the process with this pid.
pub fn find_pid(pid: i32) -> Option<usize> {
    (0..len()).find(|&i| self::pid(i) == pid)
}

/// This process's index (0 in the attendant).
pub fn my_index() -> usize {
    MY_INDEX.load(Ordering::Relaxed)
}

/// Called in a child right after fork.
pub fn set_my_index(i: usize) {
    MY_INDEX.store(i, Ordering::Relaxed);
    crate::log::set_process(i as i32);
    shm::set_process_slot(i);
}

/// (index, pid, description) of every started process, for MI `ps`.
pub fn list() -> Vec<(usize, i32, String)> {
    (0..len())
        .filter(|&i| pid(i) != 0)
        .map(|i| (i, pid(i), desc(i).to_string()))
        .collect()
}

//! Processes: supervisor (attendant), forking, signals, daemonising, process table, timer.

/// Entry point of the `openser` binary; returns the exit status.
pub fn main_entry() -> i32 {
    0
}

//! Processes: supervisor (attendant), forking, signals, daemonising, process table, timer.

pub mod daemon;
pub mod pt;
pub mod signals;
pub mod supervisor;
pub mod timer;

pub use supervisor::main_entry;

//! Logging with OpenSER 1.2's levels and output formats.
//!
//! A message at `level` is emitted when `debug >= level`. On stderr each line is
//! `"%2d(%d) "` (process index, pid) followed by the text, as 1.2 prints it; otherwise
//! it goes to syslog with the level's priority and the configured facility. By
//! convention module messages start with `ERROR:module:function: ` and the like.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

pub const L_ALERT: i32 = -3;
pub const L_CRIT: i32 = -2;
pub const L_ERR: i32 = -1;
pub const L_WARN: i32 = 1;
pub const L_NOTICE: i32 = 2;
pub const L_INFO: i32 = 3;
pub const L_DBG: i32 = 4;

static DEBUG: AtomicI32 = AtomicI32::new(L_NOTICE);
static TO_STDERR: AtomicBool = AtomicBool::new(true);
static PROC_NO: AtomicI32 = AtomicI32::new(0);
static MY_PID: AtomicI32 = AtomicI32::new(0);

/// The current `debug` threshold.
pub fn debug_level() -> i32 {
    DEBUG.load(Ordering::Relaxed)
}

pub fn set_debug_level(level: i32) {
    DEBUG.store(level, Ordering::Relaxed);
}

/// Whether a message at `level` would be emitted.
#[inline]
pub fn enabled(level: i32) -> bool {
    DEBUG.load(Ordering::Relaxed) >= level
}

pub fn set_stderr(on: bool) {
    TO_STDERR.store(on, Ordering::Relaxed);
}

pub fn to_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

/// Record this process's index in the process table (the `N` of ` N(pid)`) and pid.
/// Called by every process right after it is forked.
pub fn set_process(index: i32) {
    PROC_NO.store(index, Ordering::Relaxed);
    MY_PID.store(std::process::id() as i32, Ordering::Relaxed);
}

/// Syslog priority of an OpenSER level.
pub fn syslog_priority(level: i32) -> i32 {
    match level {
        i32::MIN..=L_ALERT => libc::LOG_ALERT,
        L_CRIT => libc::LOG_CRIT,
        L_ERR => libc::LOG_ERR,
        0 | L_WARN => libc::LOG_WARNING,
        L_NOTICE => libc::LOG_NOTICE,
        L_INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    }
}

/// Emit `text` at `level` (the threshold must already have been checked, or is
/// checked here again; cheap either way).
pub fn emit(level: i32, text: &str) {
    if !enabled(level) {
        return;
    }
    if TO_STDERR.load(Ordering::Relaxed) {
        let mut pid = MY_PID.load(Ordering::Relaxed);
        if pid == 0 {
            pid = std::process::id() as i32;
        }
        let mut line = format!("{:2}({}) {}", PROC_NO.load(Ordering::Relaxed), pid, text);
        if !line.ends_with('\n') {
            line.push('\n');
        }
        // One write per line so lines of different processes do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    } else {
        crate::core::sys::syslog(syslog_priority(level), text);
    }
}

/// Log at an explicit level with `format!` arguments: `log_at!(L_ERR, "x={}", x)`.
#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $($arg:tt)+) => {{
        let lvl: i32 = $lvl;
        if $crate::core::log::enabled(lvl) {
            $crate::core::log::emit(lvl, &format!($($arg)+));
        }
    }};
}
#[macro_export]
macro_rules! log_alert { ($($arg:tt)+) => { $crate::log_at!($crate::core::log::L_ALERT, $($arg)+) }; }
#[macro_export]
macro_rules! log_crit { ($($arg:tt)+) => { $crate::log_at!($crate::core::log::L_CRIT, $($arg)+) }; }
#[macro_export]
macro_rules! log_err { ($($arg:tt)+) => { $crate::log_at!($crate::core::log::L_ERR, $($arg)+) }; }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)+) => { $crate::log_at!($crate::core::log::L_WARN, $($arg)+) }; }
#[macro_export]
macro_rules! log_notice { ($($arg:tt)+) => { $crate::log_at!($crate::core::log::L_NOTICE, $($arg)+) }; }
#[macro_export]
macro_rules! log_info { ($($arg:tt)+) => { $crate::log_at!($crate::core::log::L_INFO, $($arg)+) }; }
#[macro_export]
macro_rules! log_dbg { ($($arg:tt)+) => { $crate::log_at!($crate::core::log::L_DBG, $($arg)+) }; }

/// Parse a level name as `xlog` does (`L_ERR`, …; only the third character counts)
/// or a number.
pub fn parse_level(s: &str) -> Option<i32> {
    if let Ok(n) = s.trim().parse::<i32>() {
        return Some(n);
    }
    let b = s.as_bytes();
    if b.len() < 3 || !s.starts_with("L_") {
        return None;
    }
    match b[2] {
        b'A' => Some(L_ALERT),
        b'C' => Some(L_CRIT),
        b'E' => Some(L_ERR),
        b'W' => Some(L_WARN),
        b'N' => Some(L_NOTICE),
        b'I' => Some(L_INFO),
        b'D' => Some(L_DBG),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlog_level_names_use_third_char() {
        assert_eq!(parse_level("L_ERR"), Some(L_ERR));
        assert_eq!(parse_level("L_DBG"), Some(L_DBG));
        assert_eq!(parse_level("L_Nxyz"), Some(L_NOTICE));
        assert_eq!(parse_level("3"), Some(3));
        assert_eq!(parse_level("X"), None);
    }

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(L_ALERT), libc::LOG_ALERT);
        assert_eq!(syslog_priority(L_WARN), libc::LOG_WARNING);
        assert_eq!(syslog_priority(9), libc::LOG_DEBUG);
    }
}

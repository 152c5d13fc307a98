//! Logging with OpenSER 1.2's levels and output formats.
//!
//! A message at `level` is emitted when `debug >= level`. On stderr each line is
//! `"%2d(%d) "` (process index, pid) followed by the text, as 1.2 prints it; otherwise
//! it goes to syslog with the level's priority and the configured facility.
//!
//! The `log_*!` macros put 1.2's prefix in front of every message, `ERROR:tm:t_relay: `
//! (level, module, function), so no message types it by hand; the core's module name
//! is `core`. Start-up and shutdown announcements use the `plain:` form (`INFO: listening
//! on …`). `xlog` and the script's `log()` emit their text as it is.

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

/// Record this process's index in the process table (the `N` of ` N(pid)`; the pid
/// is `sys::getpid`'s). Called by every process right after it is forked.
pub fn set_process(index: i32) {
    PROC_NO.store(index, Ordering::Relaxed);
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
        let pid = crate::sys::getpid();
        let mut line = format!("{:2}({}) {}", PROC_NO.load(Ordering::Relaxed), pid, text);
        if !line.ends_with('\n') {
            line.push('\n');
        }
        // One write per line so lines of different processes do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    } else {
        crate::sys::syslog(syslog_priority(level), text);
    }
}

/// The level's name as 1.2/1.3 print it in front of a message (`ERROR`, …).
pub fn level_name(level: i32) -> &'static str {
    match level {
        i32::MIN..=L_ALERT => "ALERT",
        L_CRIT => "CRITICAL",
        L_ERR => "ERROR",
        0 | L_WARN => "WARNING",
        L_NOTICE => "NOTICE",
        L_INFO => "INFO",
        _ => "DBG",
    }
}

/// The `module:function` a log macro was called from: `module_path!()`'s crate (the
/// core's crate is `core`) and the enclosing function, from the type name of a
/// function item declared inside it (`tm::fwd::t_relay::here`; closures are skipped).
pub fn location(module_path: &'static str, here: &'static str) -> (&'static str, &'static str) {
    let krate = module_path.split("::").next().unwrap_or(module_path);
    let module = if krate == "openser_core" {
        "core"
    } else {
        krate
    };
    let func = here
        .strip_suffix("::here")
        .unwrap_or(here)
        .rsplit("::")
        .find(|s| !s.starts_with("{{"))
        .unwrap_or("");
    (module, func)
}

/// Emit a message with the 1.2 prefix `LEVEL:module:function: ` (what the log macros
/// call; 1.2's modules typed this prefix into every message by hand).
pub fn emit_from(
    level: i32,
    module_path: &'static str,
    here: &'static str,
    args: std::fmt::Arguments<'_>,
) {
    let (module, func) = location(module_path, here);
    emit(
        level,
        &format!("{}:{module}:{func}: {args}", level_name(level)),
    );
}

/// A start-up error line as 1.2 prints it to the terminal before logging is set up
/// (`ERROR: bad config file (1 errors)`).
pub fn error_line(text: impl std::fmt::Display) -> String {
    format!("{}: {text}", level_name(L_ERR))
}

/// Emit an announcement with only the level in front (`INFO: listening on …`), as
/// 1.2's core prints its start-up and shutdown lines.
pub fn emit_plain(level: i32, args: std::fmt::Arguments<'_>) {
    emit(level, &format!("{}: {args}", level_name(level)));
}

/// Log at an explicit level with `format!` arguments: `log_at!(L_ERR, "x={}", x)`.
/// The level name and `module:function:` are added: never type them into the text.
/// `log_at!(L_INFO, plain: "…")` leaves out the location (start-up announcements);
/// `log_at!(L_ERR, module: m, "…")` names module path `m` instead of the caller's (an
/// engine's error logged from core under the engine module's name).
#[macro_export]
macro_rules! log_at {
    ($lvl:expr, plain: $($arg:tt)+) => {{
        let lvl: i32 = $lvl;
        if $crate::log::enabled(lvl) {
            $crate::log::emit_plain(lvl, format_args!($($arg)+));
        }
    }};
    ($lvl:expr, module: $module:expr, $($arg:tt)+) => {{
        let lvl: i32 = $lvl;
        if $crate::log::enabled(lvl) {
            fn here() {}
            $crate::log::emit_from(
                lvl,
                $module,
                ::std::any::type_name_of_val(&here),
                format_args!($($arg)+),
            );
        }
    }};
    ($lvl:expr, $($arg:tt)+) => {
        $crate::log_at!($lvl, module: module_path!(), $($arg)+)
    };
}
#[macro_export]
macro_rules! log_alert { ($($arg:tt)+) => { $crate::log_at!($crate::log::L_ALERT, $($arg)+) }; }
#[macro_export]
macro_rules! log_crit { ($($arg:tt)+) => { $crate::log_at!($crate::log::L_CRIT, $($arg)+) }; }
#[macro_export]
macro_rules! log_err { ($($arg:tt)+) => { $crate::log_at!($crate::log::L_ERR, $($arg)+) }; }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)+) => { $crate::log_at!($crate::log::L_WARN, $($arg)+) }; }
#[macro_export]
macro_rules! log_notice { ($($arg:tt)+) => { $crate::log_at!($crate::log::L_NOTICE, $($arg)+) }; }
#[macro_export]
macro_rules! log_info { ($($arg:tt)+) => { $crate::log_at!($crate::log::L_INFO, $($arg)+) }; }
#[macro_export]
macro_rules! log_dbg { ($($arg:tt)+) => { $crate::log_at!($crate::log::L_DBG, $($arg)+) }; }

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
    fn location_is_crate_and_function() {
        assert_eq!(
            location(
                "openser_core::transport::forward",
                "openser_core::transport::forward::forward_reply::here"
            ),
            ("core", "forward_reply")
        );
        assert_eq!(
            location(
                "tm::h_table",
                "tm::h_table::Cell::lock_state::{{closure}}::here"
            ),
            ("tm", "lock_state")
        );
        assert_eq!(
            location(
                "auth::api",
                "<auth::api::X as auth::api::T>::pre_auth::here"
            ),
            ("auth", "pre_auth")
        );
        assert_eq!(level_name(L_ERR), "ERROR");
        assert_eq!(level_name(L_DBG), "DBG");
    }

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(L_ALERT), libc::LOG_ALERT);
        assert_eq!(syslog_priority(L_WARN), libc::LOG_WARNING);
        assert_eq!(syslog_priority(9), libc::LOG_DEBUG);
    }
}

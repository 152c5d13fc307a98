//! Signal handling. Handlers only store atomics (invariant 6); the attendant blocks
//! the signals, waits in `sigsuspend` and acts on the flags; children look at the
//! flags when a blocking call returns EINTR.

use crate::sys;
use std::sync::atomic::{AtomicBool, Ordering};

pub static TERM: AtomicBool = AtomicBool::new(false);
pub static CHLD: AtomicBool = AtomicBool::new(false);
pub static USR1: AtomicBool = AtomicBool::new(false);
pub static USR2: AtomicBool = AtomicBool::new(false);
pub static HUP: AtomicBool = AtomicBool::new(false);
pub static ALRM: AtomicBool = AtomicBool::new(false);
pub static PIPE: AtomicBool = AtomicBool::new(false);
/// The last terminating signal number (SIGTERM or SIGINT).
pub static TERM_SIG: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let flag = match sig {
        libc::SIGTERM | libc::SIGINT => {
            TERM_SIG.store(sig, Ordering::Relaxed);
            &TERM
        }
        libc::SIGCHLD => &CHLD,
        libc::SIGUSR1 => &USR1,
        libc::SIGUSR2 => &USR2,
        libc::SIGHUP => &HUP,
        libc::SIGALRM => &ALRM,
        _ => &PIPE,
    };
    flag.store(true, Ordering::SeqCst);
}

pub const HANDLED: &[i32] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGCHLD,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGHUP,
    libc::SIGALRM,
    libc::SIGPIPE,
];

/// Attendant: install the flag-setting handlers for every handled signal.
pub fn install_handlers() -> std::io::Result<()> {
    for &s in HANDLED {
        sys::set_handler(s, on_signal)?;
    }
    Ok(())
}

/// Child: reset to the child's behaviour: SIGTERM/SIGINT/SIGUSR1 set flags,
/// SIGHUP/SIGUSR2/SIGPIPE ignored, SIGCHLD default; unblock everything; and die with
/// the attendant if it is killed outright.
pub fn child_setup() {
    for f in [&TERM, &CHLD, &USR1, &USR2, &HUP, &ALRM, &PIPE] {
        f.store(false, Ordering::Relaxed);
    }
    let _ = sys::set_handler(libc::SIGTERM, on_signal);
    let _ = sys::set_handler(libc::SIGINT, on_signal);
    let _ = sys::set_handler(libc::SIGUSR1, on_signal);
    let _ = sys::set_disposition(libc::SIGHUP, true);
    let _ = sys::set_disposition(libc::SIGUSR2, true);
    let _ = sys::set_disposition(libc::SIGPIPE, true);
    let _ = sys::set_disposition(libc::SIGCHLD, false);
    let _ = sys::set_disposition(libc::SIGALRM, false);
    sys::set_parent_death_signal(libc::SIGTERM);
    sys::unblock_all_signals();
}

/// Take (read and clear) a flag.
#[inline]
pub fn take(flag: &AtomicBool) -> bool {
    flag.swap(false, Ordering::SeqCst)
}

/// In a child: leave if a terminating signal arrived (OpenSER's children log and
/// exit(0), no module destroy).
pub fn child_check() {
    if super::supervisor::is_attendant() {
        // fork=no: the attendant is the receiver and does its own supervision.
        super::supervisor::handle_signals_attendant();
        return;
    }
    if TERM.load(Ordering::Relaxed) {
        crate::log_info!(plain: "signal {} received", TERM_SIG.load(Ordering::Relaxed));
        std::process::exit(0);
    }
    if take(&USR1) {
        crate::log_at!(
            crate::globals::get().memlog,
            "Memory status (shm):\n{}",
            shm::status_dump()
        );
    }
}

//! Daemonising (reference §2.4) and pid/pgid files.

use crate::sys::{self, ForkResult};
use std::io::Write;

/// Write `pid\n` to `path`, refusing when it names a live process.
pub fn write_pid_file(path: &str, pid: i32) -> Result<(), String> {
    if let Ok(old) = std::fs::read_to_string(path)
        && let Ok(p) = old.trim().parse::<i32>()
    {
        if p != pid && sys::process_alive(p) {
            return Err(format!("running process found in the pid file {path}"));
        }
        crate::log_warn!(plain: "pid file {path} contains stale pid {p}, overwriting");
    }
    let mut f = std::fs::File::create(path)
        .map_err(|e| format!("unable to create pid file {path}: {e}"))?;
    writeln!(f, "{pid}").map_err(|e| format!("unable to write pid file {path}: {e}"))?;
    Ok(())
}

/// Detach from the terminal: chroot, chdir, fork (parent exits 0), setsid, fork
/// again. Returns in the grandchild only. `own_pgrp` tells whether setsid worked.
pub fn daemonize(wdir: &str, chroot: Option<&str>) -> Result<bool, String> {
    if let Some(root) = chroot {
        sys::chroot(root).map_err(|e| format!("cannot chroot to {root}: {e}"))?;
    }
    sys::chdir(wdir).map_err(|e| format!("cannot chdir to {wdir}: {e}"))?;
    match sys::fork().map_err(|e| format!("fork failed: {e}"))? {
        ForkResult::Parent(_) => std::process::exit(0),
        ForkResult::Child => {}
    }
    let own_pgrp = match sys::setsid() {
        Ok(_) => true,
        Err(e) => {
            crate::log_warn!(plain: "setsid failed: {e}");
            false
        }
    };
    match sys::fork().map_err(|e| format!("second fork failed: {e}"))? {
        ForkResult::Parent(_) => std::process::exit(0),
        ForkResult::Child => {}
    }
    sys::set_dumpable(true);
    Ok(own_pgrp)
}

//! Thin wrappers over raw OS calls. One of the few places with `unsafe` in the root
//! crate: each block states why it holds.
#![allow(unsafe_code)]

use std::ffi::CString;

/// `syslog(priority | facility, "%s", text)`; the facility was given to `openlog`.
pub fn syslog(priority: i32, text: &str) {
    let c = match CString::new(text.replace('\0', " ")) {
        Ok(c) => c,
        Err(_) => return,
    };
    // SAFETY: the format is a static NUL-terminated "%s" and the single vararg is a
    // valid NUL-terminated C string that lives until the call returns.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
}

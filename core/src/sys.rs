//! Thin wrappers over raw OS calls (fork, signals, daemonising, privileges, socket
//! options, syslog). One of the few places with `unsafe` in the root crate: every
//! block states why it holds. Everything here is a direct libc call with checked
//! arguments; policy lives in `core::process`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `syslog(priority, "%s", text)`; the facility was given to [`openlog`].
pub fn syslog(priority: i32, text: &str) {
    let c = match CString::new(text.replace('\0', " ")) {
        Ok(c) => c,
        Err(_) => return,
    };
    // SAFETY: the format is a static NUL-terminated "%s" and the single vararg is a
    // valid NUL-terminated C string that lives until the call returns.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
}

/// `openlog(ident, LOG_PID|LOG_CONS, facility)`. glibc keeps the ident pointer, so
/// the string is leaked on purpose (once per process start).
pub fn openlog(ident: &str, facility: i32) {
    let c = CString::new(ident.replace('\0', "")).unwrap_or_else(|_| c"openser".into());
    let leaked: &'static CStr = Box::leak(c.into_boxed_c_str());
    // SAFETY: `leaked` is NUL-terminated and lives for the rest of the process, as
    // openlog requires of its ident argument.
    unsafe { libc::openlog(leaked.as_ptr(), libc::LOG_PID | libc::LOG_CONS, facility) };
}

pub fn closelog() {
    // SAFETY: closelog has no preconditions.
    unsafe { libc::closelog() };
}

pub enum ForkResult {
    Parent(i32),
    Child,
}

/// `fork()`. The server has no threads, so the child is a faithful copy.
pub fn fork() -> io::Result<ForkResult> {
    // SAFETY: the process is single-threaded (invariant 1: no threads anywhere), so
    // the child may continue running arbitrary Rust code after fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(ForkResult::Child),
        p => Ok(ForkResult::Parent(p)),
    }
}

/// `_exit()`: end a forked helper child at once, without the parent's atexit
/// handlers or a second flush of the stdio buffers it inherited.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it ends the process.
    unsafe { libc::_exit(code) }
}

/// This process's pid. Cached by `shm::current_pid` (cleared in the child by an
/// atfork handler), so the receivers' per-batch socket-turn checks cost no syscall:
/// glibc no longer caches getpid, and on some hosts a syscall costs a microsecond.
pub fn getpid() -> i32 {
    shm::current_pid() as i32
}

pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

pub fn setsid() -> io::Result<i32> {
    // SAFETY: setsid has no memory-safety preconditions.
    cvt(unsafe { libc::setsid() })
}

pub fn getpgid() -> i32 {
    // SAFETY: getpgid(0) queries the calling process; no preconditions.
    unsafe { libc::getpgid(0) }
}

pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, sig) }).map(|_| ())
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    Exited(i32),
    Signaled { sig: i32, core: bool },
}

impl std::fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildStatus::Exited(c) => write!(f, "exited normally, status={c}"),
            ChildStatus::Signaled { sig, core } => write!(
                f,
                "exited by a signal {sig} ({}){}",
                signal_name(*sig),
                if *core { ", core dumped" } else { "" }
            ),
        }
    }
}

/// `waitpid(pid, WNOHANG or 0)`: `Ok(None)` when nothing (more) to reap.
pub fn waitpid(pid: i32, nohang: bool) -> io::Result<Option<(i32, ChildStatus)>> {
    let mut status: libc::c_int = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: `status` is a valid, writable c_int for the duration of the call.
    let r = unsafe { libc::waitpid(pid, &mut status, flags) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ECHILD) {
            return Ok(None);
        }
        return Err(e);
    }
    if r == 0 {
        return Ok(None);
    }
    let st = if libc::WIFSIGNALED(status) {
        ChildStatus::Signaled {
            sig: libc::WTERMSIG(status),
            core: libc::WCOREDUMP(status),
        }
    } else {
        ChildStatus::Exited(libc::WEXITSTATUS(status))
    };
    Ok(Some((r, st)))
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        _ => "signal",
    }
}

/// Install `handler` for `sig` (no SA_RESTART, so blocking calls return EINTR and the
/// caller's loop can look at its flags). `handler` must only store atomics.
pub fn set_handler(sig: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: `libc::sigaction` is plain C data (a handler address, a signal set, integer
    // flags, a nullable restorer pointer); a zeroed one is a valid starting value, which we
    // then fill with the handler and an empty mask.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    // SAFETY: `sa.sa_mask` is a valid, writable sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    sa.sa_flags = 0;
    // SAFETY: `sa` is initialised and outlives the call; the old action is not requested
    // (null). `handler` is an extern "C" fn that only stores atomics (this function's
    // documented rule), which is async-signal-safe.
    cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    Ok(())
}

/// Set `sig` to SIG_IGN or SIG_DFL.
pub fn set_disposition(sig: i32, ignore: bool) -> io::Result<()> {
    // SAFETY: `libc::sigaction` is plain C data; a zeroed one is a valid starting value
    // (flags 0, as in set_handler).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: `sa.sa_mask` is a valid, writable sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: `sa` is initialised and outlives the call; the old action is not requested
    // (null). SIG_IGN/SIG_DFL are the special dispositions, not code to run.
    cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    Ok(())
}

fn sigset_of(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: `sigset_t` is a plain array of integers; all-zero is a valid value (and
    // sigemptyset initialises it properly next).
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in sigs {
        // SAFETY: `set` is the local set initialised above; an invalid signal number only
        // makes sigaddset fail with EINVAL.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Block `sigs` in this process (returns the previous mask).
pub fn block_signals(sigs: &[i32]) -> libc::sigset_t {
    let set = sigset_of(sigs);
    // SAFETY: `sigset_t` is a plain array of integers; all-zero is a valid value.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to valid sigset_t values owned by this frame.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) };
    old
}

/// Unblock every signal.
pub fn unblock_all_signals() {
    let set = sigset_of(&[]);
    // SAFETY: `set` is a valid empty sigset_t; the old mask is not requested.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
}

/// Wait for any signal with an empty mask (the attendant's idle loop).
pub fn sigsuspend_all() {
    let set = sigset_of(&[]);
    // SAFETY: `set` is a valid sigset_t; sigsuspend always returns -1/EINTR.
    unsafe { libc::sigsuspend(&set) };
}

/// `alarm(secs)`.
pub fn alarm(secs: u32) {
    // SAFETY: alarm has no preconditions.
    unsafe { libc::alarm(secs) };
}

pub fn chdir(dir: &str) -> io::Result<()> {
    std::env::set_current_dir(dir)
}

pub fn chroot(dir: &str) -> io::Result<()> {
    let c = CString::new(dir).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    cvt(unsafe { libc::chroot(c.as_ptr()) }).map(|_| ())
}

/// Point fd 0/1 (and 2 if `stderr_too`) at /dev/null.
pub fn stdio_to_devnull(stderr_too: bool) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let targets: &[RawFd] = if stderr_too { &[0, 1, 2] } else { &[0, 1] };
    for &t in targets {
        // SAFETY: `fd` is an open descriptor owned by `f` for the duration of the call;
        // dup2 atomically replaces `t`.
        cvt(unsafe { libc::dup2(fd, t) })?;
    }
    Ok(())
}

/// Set PR_SET_DUMPABLE (core dumps after privilege changes).
pub fn set_dumpable(on: bool) {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0|1) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, if on { 1 } else { 0 }, 0, 0, 0) };
}

/// Ask the kernel to send `sig` to this process when its parent dies.
pub fn set_parent_death_signal(sig: i32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
}

/// Resolve a user name or numeric uid: (uid, primary gid).
pub fn lookup_user(name: &str) -> io::Result<(u32, u32)> {
    if let Ok(uid) = name.parse::<u32>() {
        // SAFETY: getpwuid returns NULL or a pointer to static storage that we read
        // immediately, before any other passwd call (single thread).
        let pw = unsafe { libc::getpwuid(uid) };
        let gid = if pw.is_null() {
            uid
        } else {
            // SAFETY: pw is non-null and points to a valid passwd record.
            unsafe { (*pw).pw_gid }
        };
        return Ok((uid, gid));
    }
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated; the result is NULL or static storage read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("bad user name/uid number: {name}"),
        ));
    }
    // SAFETY: pw is non-null and points to a valid passwd record in static storage, read
    // at once, before any other passwd call (single thread).
    let pw = unsafe { &*pw };
    Ok((pw.pw_uid, pw.pw_gid))
}

/// Resolve a group name or numeric gid.
pub fn lookup_group(name: &str) -> io::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated; the result is NULL or static storage read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("bad group name/gid number: {name}"),
        ));
    }
    // SAFETY: gr is non-null and points to a valid group record.
    Ok(unsafe { (*gr).gr_gid })
}

/// Drop the supplementary groups (to `gid` alone) and set the group id. As root a
/// failed `setgroups` is an error (the old groups would survive the drop); without
/// root it is expected (EPERM) and only `setgid` decides.
pub fn setgid(gid: u32) -> io::Result<()> {
    let g = gid as libc::gid_t;
    // SAFETY: the list pointer refers to one valid gid_t local, matching the count 1.
    let r = unsafe { libc::setgroups(1, &g) };
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if r == -1 && root {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setgid takes a plain integer.
    cvt(unsafe { libc::setgid(g) })?;
    Ok(())
}

pub fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: setuid takes a plain integer.
    cvt(unsafe { libc::setuid(uid as libc::uid_t) }).map(|_| ())
}

/// Set an integer socket option.
pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value points to a live c_int of the size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Read an integer socket option.
pub fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid writable locals of the sizes declared.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut v as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(v)
}

/// Raise RLIMIT_CORE / RLIMIT_NOFILE.
pub fn set_rlimit(resource: i32, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit; the resource id comes from libc constants.
    cvt(unsafe { libc::setrlimit(resource as _, &lim) }).map(|_| ())
}

pub fn sched_yield() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// Hostname of this machine.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its full length; gethostname NUL-terminates within it
    // (we also force the last byte to 0).
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len() - 1) };
    if r != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Sleep while the shared-memory word `word` holds `expected`, at most `timeout`
/// (FUTEX_WAIT on a shared mapping: processes, not threads). Returns when woken, when
/// the word differs already (EAGAIN), on a signal (EINTR) or on the timeout; the caller
/// looks at the word again in every case.
pub fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: std::time::Duration,
) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 (AtomicU32 has u32's layout) for the whole
    // call; `ts` outlives it; the unused arguments of FUTEX_WAIT are null/0.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wake at most `n` processes sleeping in [`futex_wait`] on `word`.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only reads the address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Bytes waiting in a socket's receive queue (FIONREAD; for UDP the size of the first
/// datagram, so non-zero means something is queued).
pub fn pending_bytes(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is live.
    cvt(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) })?;
    Ok(n.max(0) as usize)
}

/// Whether a process with `pid` exists (kill(pid, 0): ESRCH means no; EPERM means yes).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// (interface name, address) for every configured IPv4/IPv6 address.
fn getifaddrs_list() -> Vec<(String, std::net::IpAddr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`, a valid writable local.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    // On success we walk the list, reading only fields getifaddrs filled in, and free it
    // exactly once, after the last read.
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is `head` or an `ifa_next` link of the list getifaddrs built, which
        // stays allocated until `freeifaddrs` below; it is non-null (loop condition).
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
            // SAFETY: a non-null `ifa_name` is a NUL-terminated interface name owned by the
            // list; it is copied out before the list is freed.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: a non-null `ifa_addr` points to a socket address owned by the list,
            // which starts with the common `sockaddr` header holding the family.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            match family as i32 {
                libc::AF_INET => {
                    // SAFETY: for AF_INET the address is a whole, suitably aligned
                    // `sockaddr_in` owned by the list, read before it is freed.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    out.push((name, std::net::IpAddr::V4(ip)));
                }
                libc::AF_INET6 => {
                    // SAFETY: for AF_INET6 the address is a whole, suitably aligned
                    // `sockaddr_in6` owned by the list, read before it is freed.
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    // Link-local addresses need a scope id; skip them.
                    if ip.segments()[0] & 0xffc0 != 0xfe80 {
                        out.push((name, std::net::IpAddr::V6(ip)));
                    }
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; no
    // reference into the list (`ifa`, `sin`, `sin6`) outlives the loop above.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Every local IPv4 address (the default listen set).
pub fn interface_addrs() -> Vec<std::net::IpAddr> {
    getifaddrs_list()
        .into_iter()
        .map(|(_, ip)| ip)
        .filter(|ip| ip.is_ipv4())
        .collect()
}

/// The addresses of interface `name`, if such an interface exists.
pub fn interface_addrs_of(name: &str) -> Option<Vec<std::net::IpAddr>> {
    let v: Vec<_> = getifaddrs_list()
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, ip)| ip)
        .collect();
    if v.is_empty() { None } else { Some(v) }
}

/// `ctime()` text without the trailing newline (24 characters).
pub fn ctime(secs: u64) -> String {
    let t = secs as libc::time_t;
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: ctime_r writes at most 26 bytes into the 64-byte buffer we own and
    // returns NULL or a pointer into it; `t` is a valid time_t.
    let p = unsafe { libc::ctime_r(&t, buf.as_mut_ptr()) };
    if p.is_null() {
        return secs.to_string();
    }
    // SAFETY: on success the buffer holds a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    s.to_string_lossy().trim_end().to_string()
}

/// `mkfifo(path, mode)`.
pub fn mkfifo(path: &str, mode: u32) -> io::Result<()> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) }).map(|_| ())
}

/// `chown(path, uid, gid)`; `u32::MAX` leaves a field unchanged.
pub fn chown(path: &str, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(
        path,
        (uid != u32::MAX).then_some(uid),
        (gid != u32::MAX).then_some(gid),
    )
}

/// Clear O_NONBLOCK on `fd`.
pub fn set_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL takes no pointer argument; a bad descriptor gives EBADF.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: fcntl F_SETFL takes an integer argument (the flags just read, minus
    // O_NONBLOCK); a bad descriptor gives EBADF.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) })?;
    Ok(())
}

/// Broken-down local time of `secs` (`localtime_r`): year, month 1..=12, day, hour,
/// minute, second. `None` when the C library cannot represent it.
pub fn local_time(secs: i64) -> Option<(i32, u32, u32, u32, u32, u32)> {
    let t = secs as libc::time_t;
    // SAFETY: `libc::tm` is plain data (integers and a nullable pointer); all-zero is a
    // valid value for it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals; localtime_r writes only into `tm`.
    let p = unsafe { libc::localtime_r(&t, &mut tm) };
    if p.is_null() {
        return None;
    }
    Some((
        tm.tm_year + 1900,
        (tm.tm_mon + 1) as u32,
        tm.tm_mday as u32,
        tm.tm_hour as u32,
        tm.tm_min as u32,
        tm.tm_sec as u32,
    ))
}

/// Seconds since the epoch of a local broken-down time (`mktime`, daylight saving time
/// decided by the C library). `None` when `mktime` fails.
pub fn local_mktime(year: i32, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Option<i64> {
    // SAFETY: `libc::tm` is plain data; all-zero is a valid value for it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = year - 1900;
    tm.tm_mon = month as i32 - 1;
    tm.tm_mday = day as i32;
    tm.tm_hour = hour as i32;
    tm.tm_min = min as i32;
    tm.tm_sec = sec as i32;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a live, initialised local; mktime reads and normalises it.
    let t = unsafe { libc::mktime(&mut tm) };
    if t == -1 && !(year == 1969 && month == 12 && day == 31) {
        return None;
    }
    Some(t as i64)
}

/// Buffers for [`recvmmsg`]: `n` datagram buffers of `size` bytes each, and the kernel
/// structures that point into them (built once per receiver process).
pub struct MmsgBufs {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl MmsgBufs {
    pub fn new(n: usize, size: usize) -> MmsgBufs {
        let n = n.max(1);
        MmsgBufs {
            bufs: (0..n).map(|_| vec![0u8; size]).collect(),
            // SAFETY: sockaddr_storage is plain old data; all-zero bytes are a valid value.
            addrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iovs: Vec::with_capacity(n),
            // SAFETY: mmsghdr is plain old data; all-zero bytes are a valid value (null
            // pointers, zero lengths), and every field used is set before each call.
            hdrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// Datagram `i` of the last [`recvmmsg`]: its bytes and source.
    pub fn get(&self, i: usize, len: usize) -> (&[u8], Option<std::net::SocketAddr>) {
        let data = &self.bufs[i][..len.min(self.bufs[i].len())];
        (data, sockaddr_to_std(&self.addrs[i]))
    }

    /// Buffer size (a datagram of this length or more was truncated).
    pub fn size(&self) -> usize {
        self.bufs.first().map_or(0, Vec::len)
    }
}

/// `recvmmsg(fd, …, MSG_WAITFORONE)`: blocks until one datagram is there, then takes
/// as many already queued ones as `b` holds, in one system call. Returns the length of
/// each (`lens`, cleared first).
pub fn recvmmsg(fd: RawFd, b: &mut MmsgBufs, lens: &mut Vec<usize>) -> io::Result<usize> {
    lens.clear();
    let n = b.bufs.len();
    b.iovs.clear();
    for buf in b.bufs.iter_mut() {
        b.iovs.push(libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        });
    }
    for i in 0..n {
        let h = &mut b.hdrs[i].msg_hdr;
        h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut b.iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        h.msg_flags = 0;
        b.hdrs[i].msg_len = 0;
    }
    // SAFETY: `hdrs` holds `n` initialised mmsghdr whose name and iovec pointers refer to
    // `addrs[i]` and `iovs[i]` (each describing the live buffer `bufs[i]` of its full
    // length); all stay alive and unmoved during the call; a null timeout blocks.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            b.hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    let got = cvt(r)? as usize;
    for h in &b.hdrs[..got] {
        let trunc = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        lens.push(if trunc { b.size() } else { h.msg_len as usize });
    }
    Ok(got)
}

/// A socket address the kernel filled in.
fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which fits in
            // and is less aligned than sockaddr_storage.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which fits in
            // and is less aligned than sockaddr_storage.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// TCP transport: socket pairs with descriptor passing, epoll, non-blocking connect.

/// A connected pair of Unix `SOCK_SEQPACKET` sockets (message boundaries kept, peer
/// death seen as end of file): how the tcp main process and the other processes talk,
/// descriptors passed along with a message ([`send_fd`], [`recv_fd`]).
pub fn seqpacket_pair() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: `fds` is a live array of two ints the kernel fills on success.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded: fds[0] is a new descriptor nobody else owns.
    let a = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for fds[1].
    let b = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) };
    Ok((a, b))
}

/// Space for one descriptor's control message (`CMSG_SPACE(sizeof(int))`), as u64s
/// so the buffer is aligned for `cmsghdr`.
const FD_CMSG_WORDS: usize = 4;

/// Send one message on a Unix socket, with descriptor `fd` attached (SCM_RIGHTS)
/// when given. `MSG_NOSIGNAL`: a dead peer is an error, not SIGPIPE. Blocks at most
/// the socket's `SO_SNDTIMEO`.
pub fn send_fd(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = [0u64; FD_CMSG_WORDS];
    // SAFETY: msghdr is plain old data; all-zero is a valid value (null pointers).
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    if let Some(fd) = fd {
        let int = std::mem::size_of::<libc::c_int>() as libc::c_uint;
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(int) } as usize;
        if space > std::mem::size_of_val(&cbuf) {
            return Err(io::Error::other("control buffer too small"));
        }
        h.msg_control = cbuf.as_mut_ptr().cast();
        h.msg_controllen = space as _;
        // SAFETY: msg_control points to `cbuf` (live, aligned for cmsghdr, `space`
        // bytes long, set just above), so the first header is inside it.
        let c = unsafe { libc::CMSG_FIRSTHDR(&h) };
        if c.is_null() {
            return Err(io::Error::other("no room for the control message"));
        }
        // SAFETY: CMSG_LEN is arithmetic on its argument.
        let len = unsafe { libc::CMSG_LEN(int) } as usize;
        // SAFETY: `c` points to the first cmsghdr inside `cbuf` (checked non-null); we
        // write its plain fields.
        unsafe {
            *c = libc::cmsghdr {
                cmsg_len: len as _,
                cmsg_level: libc::SOL_SOCKET,
                cmsg_type: libc::SCM_RIGHTS,
            }
        };
        // SAFETY: `c` is a valid cmsghdr inside `cbuf`; its data area holds one int
        // (CMSG_SPACE(sizeof(int)) bytes were reserved).
        let data_ptr = unsafe { libc::CMSG_DATA(c) };
        // SAFETY: `data_ptr` points into `cbuf` with room for one (unaligned) int.
        unsafe { std::ptr::write_unaligned(data_ptr.cast::<libc::c_int>(), fd) };
    }
    loop {
        // SAFETY: `h` points to `iov` (describing `data`, live for the call) and, when
        // set, to `cbuf` with one well-formed SCM_RIGHTS header; all live during the call.
        let r = unsafe { libc::sendmsg(sock, &h, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one message on a Unix socket into `buf`, with the descriptor passed along
/// with it, if any (extra descriptors, which our processes never send, are closed).
/// `Ok((0, None))` is end of file. `nonblock`: `MSG_DONTWAIT`.
pub fn recv_fd(
    sock: RawFd,
    buf: &mut [u8],
    nonblock: bool,
) -> io::Result<(usize, Option<std::os::fd::OwnedFd>)> {
    use std::os::fd::FromRawFd;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; FD_CMSG_WORDS * 4];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = cbuf.as_mut_ptr().cast();
    h.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let flags = libc::MSG_CMSG_CLOEXEC | if nonblock { libc::MSG_DONTWAIT } else { 0 };
    let n = loop {
        // SAFETY: `h` points to `iov` (describing the live `buf`) and to `cbuf` (live,
        // aligned, its full length given); the kernel writes only inside them.
        let r = unsafe { libc::recvmsg(sock, &mut h, flags) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut got: Option<std::os::fd::OwnedFd> = None;
    // SAFETY: `h` was filled by recvmsg; CMSG_FIRSTHDR reads its control fields.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&h) };
    while !c.is_null() {
        // SAFETY: `c` is non-null and was produced by CMSG_FIRSTHDR/CMSG_NXTHDR over
        // `h`, so it points to a cmsghdr inside `cbuf`.
        let hdr = unsafe { std::ptr::read_unaligned(c) };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN is arithmetic on its argument.
            let base = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = to_usize(hdr.cmsg_len).saturating_sub(base) / 4;
            // SAFETY: `c` points to a valid SCM_RIGHTS header inside `cbuf`.
            let data = unsafe { libc::CMSG_DATA(c) };
            for i in 0..count {
                // SAFETY: the kernel wrote `count` ints after the header, inside `cbuf`.
                let p = unsafe { data.add(i * 4) };
                // SAFETY: `p` points to one of those ints (maybe unaligned).
                let fd = unsafe { std::ptr::read_unaligned(p.cast::<libc::c_int>()) };
                // SAFETY: the kernel installed `fd` in this process for us: we own it.
                let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
        // SAFETY: `h` and `c` are valid as above; CMSG_NXTHDR returns null at the end.
        c = unsafe { libc::CMSG_NXTHDR(&h, c) };
    }
    Ok((n, got))
}

/// A limit of whatever integer type the C library gives it, as u64.
fn to_u64<T: TryInto<u64>>(v: T) -> u64 {
    v.try_into().unwrap_or(u64::MAX)
}

/// A length field of whatever integer type the C library gives it, as usize.
fn to_usize<T: TryInto<usize>>(v: T) -> usize {
    v.try_into().unwrap_or(0)
}

/// Set a socket's send timeout (`SO_SNDTIMEO`) — a blocking send waits at most this.
pub fn set_send_timeout(fd: RawFd, t: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a live timeval and its exact size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Set O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL takes no pointer argument; a bad descriptor gives EBADF.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: fcntl F_SETFL takes an integer argument; a bad descriptor gives EBADF.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Start a non-blocking TCP connect to `to`: the socket is returned at once, connected
/// or with the connect in progress (it becomes writable when done; then
/// [`socket_error`] tells how it went).
pub fn tcp_connect_start(to: std::net::SocketAddr) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let fam = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket() takes no pointers.
    let s = cvt(unsafe {
        libc::socket(
            fam,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: socket() succeeded: `s` is a new descriptor nobody else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(s) };
    let (ss, len) = std_to_sockaddr(&to);
    // SAFETY: `ss` is a live sockaddr_storage holding a sockaddr of `len` bytes.
    let r = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(owned)
}

/// A socket's pending error (`SO_ERROR`): 0 once a non-blocking connect succeeded.
pub fn socket_error(fd: RawFd) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

fn std_to_sockaddr(a: &std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in (and is less aligned than) sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in (and is less aligned than) sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// An epoll instance (level-triggered). Each registered descriptor carries a `u64`
/// token that [`Epoll::wait`] gives back.
pub struct Epoll {
    fd: std::os::fd::OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 takes no pointers.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 succeeded: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event; the kernel only reads it.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watch `fd` for `events` (`libc::EPOLLIN` …).
    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Change what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Stop watching `fd` (closing it does that too).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Wait at most `timeout_ms` for events; returns (token, events) of each ready one.
    /// A signal returns an empty list.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<Vec<(u64, u32)>> {
        use std::os::fd::AsRawFd;
        // SAFETY: `events` is a live buffer of exactly `len` epoll_event; the kernel
        // writes at most that many.
        let r = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(e);
        }
        Ok(self.events[..r as usize]
            .iter()
            .map(|e| (e.u64, e.events))
            .collect())
    }
}

/// `SO_LINGER` with a zero timeout: closing the socket then sends a reset (RST)
/// instead of an orderly end of stream (tests of a peer that resets).
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `l` is a live linger struct and its exact size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Raise the soft limit of open descriptors towards `want` (never above the hard
/// limit); returns the soft limit now in force.
pub fn raise_nofile_soft(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit the call fills.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if to_u64(lim.rlim_cur) < want {
        lim.rlim_cur = (want as libc::rlim_t).min(lim.rlim_max);
        // SAFETY: `lim` is a valid rlimit (soft not above hard).
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(to_u64(lim.rlim_cur))
}

/// How many descriptors this process has open (`/proc/self/fd`).
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[cfg(test)]
mod tcp_tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn descriptor_travels_over_a_seqpacket_pair() {
        let (a, b) = seqpacket_pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (srv, _) = l.accept().unwrap();
        assert_eq!(
            send_fd(a.as_raw_fd(), b"hand", Some(srv.as_raw_fd())).unwrap(),
            4
        );
        drop(srv);
        let mut buf = [0u8; 16];
        let (n, fd) = recv_fd(b.as_raw_fd(), &mut buf, false).unwrap();
        assert_eq!(&buf[..n], b"hand");
        let mut got = std::net::TcpStream::from(fd.expect("a descriptor"));
        c.write_all(b"ping").unwrap();
        let mut four = [0u8; 4];
        got.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"ping");
        // a message without a descriptor; then none waiting
        send_fd(a.as_raw_fd(), b"x", None).unwrap();
        let (n, fd) = recv_fd(b.as_raw_fd(), &mut buf, false).unwrap();
        assert_eq!((n, fd.is_none()), (1, true));
        assert!(recv_fd(b.as_raw_fd(), &mut buf, true).is_err());
        drop(a);
        let (n, fd) = recv_fd(b.as_raw_fd(), &mut buf, false).unwrap();
        assert_eq!((n, fd.is_none()), (0, true), "end of file");
    }

    #[test]
    fn epoll_and_nonblocking_connect() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = tcp_connect_start(l.local_addr().unwrap()).unwrap();
        let mut ep = Epoll::new(8).unwrap();
        ep.add(s.as_raw_fd(), libc::EPOLLOUT as u32, 7).unwrap();
        let ev = ep.wait(5000).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].0, 7);
        assert_eq!(socket_error(s.as_raw_fd()).unwrap(), 0);
        ep.delete(s.as_raw_fd()).unwrap();
        assert!(ep.wait(0).unwrap().is_empty());
        // refused: nothing listens on the port of a closed listener
        let port = l.local_addr().unwrap().port();
        drop(l);
        let s = tcp_connect_start(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        if let Ok(s) = s {
            ep.add(s.as_raw_fd(), libc::EPOLLOUT as u32, 8).unwrap();
            let ev = ep.wait(5000).unwrap();
            assert_eq!(ev.len(), 1);
            assert_ne!(socket_error(s.as_raw_fd()).unwrap(), 0);
        }
    }
}

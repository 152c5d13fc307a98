//! The attendant: start-up sequence, forking of the receivers, the timer and extra
//! processes, and the signal loop that supervises them (reference §2).
//!
//! Start-up: command line → config (globals, modules, routes, fixups) → command line
//! over the config → `-c` stops here → shm → statistics, timer, module init → bind
//! sockets → daemonise (unless -D/-DD/fork=no) → pid file → drop privileges → fork
//! children → wait for signals. The attendant never handles SIP after forking,
//! except with fork=no / -D where it is the single receiver.

use super::{pt, signals, timer};
use crate::globals::{self, Globals};
use crate::sys::{self, ForkResult};
use crate::transport::socket::{self, Alias, SocketInfo};
use crate::{args, config, log, module, version};
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set when the attendant itself is the (single) receiver (fork=no / -D).
static STANDALONE: AtomicBool = AtomicBool::new(false);
/// Set in the attendant (and never in children): shutdown must clean up.
static IS_ATTENDANT: AtomicBool = AtomicBool::new(true);
/// Whether setsid gave us our own process group.
static OWN_PGRP: AtomicBool = AtomicBool::new(false);

/// Crash loop: this many deaths of the same process-table row ...
pub const CRASH_LOOP_DEATHS: usize = 5;
/// ... within this window end the server (clean full shutdown, as 1.2 on any death).
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(10);

thread_local! {
    /// Attendant: when each row's process died lately (crash-loop detection).
    static DEATHS: RefCell<Vec<VecDeque<Instant>>> = const { RefCell::new(Vec::new()) };
    /// Attendant: pids it killed itself (tcp receivers after tcp main died): their death
    /// is not counted towards a crash loop.
    static KILLED: RefCell<HashSet<i32>> = RefCell::new(HashSet::new());
}

/// How long children get to exit after SIGTERM before they are SIGKILLed.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

pub fn is_standalone() -> bool {
    STANDALONE.load(Ordering::Relaxed)
}

pub fn is_attendant() -> bool {
    IS_ATTENDANT.load(Ordering::Relaxed)
}

/// Entry point of the `openser` binary, which hands over its built-in modules;
/// returns the exit status.
pub fn main_entry(modules: &'static [&'static module::ModuleExports]) -> i32 {
    module::set_builtin(modules);
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv.first().cloned().unwrap_or_else(|| "openser".into());
    let a = match args::parse(argv.iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("Use -h for help.");
            return 255;
        }
    };
    match a.action {
        args::Action::Version => {
            let names: Vec<&str> = modules.iter().map(|m| m.name).collect();
            print!("{}", version::full_version_with(&names));
            return 0;
        }
        args::Action::Help => {
            print!("{}", args::help_text(&prog));
            return 0;
        }
        args::Action::Run => {}
    }
    // Until the config says otherwise, errors go to the terminal.
    log::set_stderr(true);
    log::set_process(0);

    let mut g = Globals::default();
    let cfg_file = a
        .cfg_file
        .clone()
        .unwrap_or_else(|| version::DEFAULT_CFG_FILE.into());
    g.cfg_file = cfg_file.clone();
    let loaded = match config::load(&cfg_file, &mut g, a.check_routes) {
        Ok(l) => l,
        Err(msg) => {
            eprint!("{msg}");
            if !msg.ends_with('\n') {
                eprintln!();
            }
            return 255;
        }
    };
    if let Err(e) = g.apply_args(&a) {
        eprintln!("{}", log::error_line(&e));
        return 255;
    }
    // `-l` and `-T` may change what is served (the script was checked against the
    // config file's listen lines)
    crate::transport::served::set_from(&g);
    log::set_debug_level(g.debug);

    if g.disable_tcp && g.listen.iter().any(|l| l.proto == globals::Proto::Tcp) {
        eprintln!(
            "{}",
            log::error_line("listen on tcp: TCP is disabled (disable_tcp=yes or -T)")
        );
        return 255;
    }
    if g.tls.disable && g.listen.iter().any(|l| l.proto == globals::Proto::Tls) {
        eprintln!(
            "{}",
            log::error_line("listen on tls: TLS is disabled (disable_tls=yes)")
        );
        return 255;
    }
    if g.disable_tcp && g.listen.iter().any(|l| l.proto == globals::Proto::Tls) {
        eprintln!(
            "{}",
            log::error_line(
                "listen on tls: TLS runs over TCP, which is disabled (disable_tcp=yes or -T)"
            )
        );
        return 255;
    }
    if g.listen.iter().any(|l| l.proto == globals::Proto::Tls)
        && let Err(e) = crate::transport::tls::build(&g.tls, &g.cfg_file)
    {
        eprintln!("{}", log::error_line(&e.msg));
        return 255;
    }
    if !g.forks_children()
        && g.listen
            .iter()
            .any(|l| matches!(l.proto, globals::Proto::Tcp | globals::Proto::Tls))
    {
        eprintln!(
            "{}",
            log::error_line(
                "listen on tcp: TCP needs its own processes, it does not run with fork=no or -D"
            )
        );
        return 255;
    }
    // Listen sockets: resolved now (so `-c` can print them), bound later.
    let addrs = match socket::resolve_listen(&g.listen, g.port, g.tls.port_no) {
        Ok(v) if !v.is_empty() => v,
        Ok(_) => {
            eprintln!("{}", log::error_line("no listening sockets"));
            return 255;
        }
        Err(e) => {
            eprintln!("{}", log::error_line(&e));
            return 255;
        }
    };
    let mut aliases: Vec<Alias> = g
        .alias
        .iter()
        .map(|h| Alias {
            proto: h.proto,
            host: h.host.clone(),
            port: h.port,
        })
        .collect();
    if g.auto_aliases {
        for (p, addr, name) in &addrs {
            if name.parse::<std::net::IpAddr>().is_err()
                && !aliases.iter().any(|al| al.host.eq_ignore_ascii_case(name))
            {
                aliases.push(Alias {
                    proto: *p,
                    host: name.clone(),
                    port: addr.port(),
                });
            }
        }
    }

    if a.check_only {
        // Show the sockets as they would be bound, without binding them.
        let infos: Vec<SocketInfo> = addrs
            .iter()
            .map(|(p, addr, name)| SocketInfo::new(*p, *addr, name.clone(), None, 0))
            .collect();
        socket::set_sockets(infos, aliases);
        print!("{}", socket::listening_text());
        eprintln!("config file ok, exiting...");
        return 0;
    }

    log::set_stderr(g.log_stderror);
    if !g.log_stderror {
        sys::openlog(g.log_name.as_deref().unwrap_or(&prog), g.log_facility);
    }

    match run(g, loaded, addrs, aliases) {
        Ok(()) => 0,
        Err(e) => {
            crate::log_crit!(plain: "{e}");
            if !log::to_stderr() {
                eprintln!("{}", log::error_line(&e));
            }
            255
        }
    }
}

fn run(
    g: Globals,
    loaded: config::Loaded,
    addrs: Vec<(globals::Proto, std::net::SocketAddr, String)>,
    aliases: Vec<Alias>,
) -> Result<(), String> {
    shm::init(g.shm_size).map_err(|e| {
        format!(
            "could not initialize shared memory ({} bytes): {e}",
            g.shm_size
        )
    })?;
    crate::stats::init_core();
    crate::mi::init_core();
    timer::init()?;

    let mut socks = Vec::new();
    for (p, addr, name) in addrs {
        socks.push(match p {
            globals::Proto::Tcp | globals::Proto::Tls => socket::bind_stream(p, addr, name)?,
            _ => socket::bind_udp(addr, name, g.maxbuffer)?,
        });
    }
    socket::set_sockets(socks, aliases);
    crate::transport::turn::init(socket::sockets().len())?;
    for s in socket::sockets() {
        if s.udp.is_some() {
            crate::log_info!(
                plain: "listening on udp:{} (receive buffer {} bytes)",
                s.hostport(),
                s.rcvbuf
            );
        } else {
            crate::log_info!(plain: "listening on {}:{}", s.proto.as_str(), s.hostport());
        }
    }
    let tcp_receivers = if socket::sockets().iter().any(|s| s.tcp.is_some()) {
        let n = g.tcp_children.unwrap_or(g.children).max(1) as usize;
        crate::transport::tcp::init(
            g.tcp_max_connections as usize,
            n,
            Duration::from_secs(g.tcp_send_timeout.max(1) as u64),
        )?;
        n
    } else {
        0
    };

    if !g.disable_core_dump {
        let _ = sys::set_rlimit(libc::RLIMIT_CORE as i32, (g.shm_size as u64) + (8 << 20));
    }
    if g.open_files_limit > 0 {
        sys::set_rlimit(libc::RLIMIT_NOFILE as i32, g.open_files_limit as u64).map_err(|e| {
            format!(
                "cannot raise open files limit to {}: {e}",
                g.open_files_limit
            )
        })?;
    }

    // Freeze the globals before anything forks.
    globals::set(g);
    let g = globals::get();
    crate::dns::init()?;

    config::init_modules(&loaded)?;

    if g.daemonize() {
        let own = daemon::daemonize(&g.wdir, g.chroot.as_deref())?;
        OWN_PGRP.store(own, Ordering::Relaxed);
        sys::stdio_to_devnull(!g.log_stderror)
            .map_err(|e| format!("cannot redirect stdio: {e}"))?;
    }
    let me = sys::getpid();
    if let Some(p) = &g.pid_file {
        daemon::write_pid_file(p, me)?;
    }
    if let Some(p) = &g.pgid_file {
        if OWN_PGRP.load(Ordering::Relaxed) {
            daemon::write_pid_file(p, sys::getpgid())?;
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
    drop_privileges(g)?;

    let standalone = !g.forks_children();
    STANDALONE.store(standalone, Ordering::Relaxed);
    let socks = socket::sockets();
    let mut rows = Vec::new();
    let mut run_as: Vec<Role> = Vec::new();
    if standalone {
        if socks.len() > 1 {
            crate::log_warn!(plain: "using only the first listen address (no fork)");
        }
        rows.push(pt::ProcDesc {
            desc: format!("stand-alone receiver @ {}", socks[0].hostport()),
            rank: 1,
        });
        run_as.push(Role::Main);
    } else {
        rows.push(pt::ProcDesc {
            desc: "attendant".into(),
            rank: pt::PROC_MAIN,
        });
        run_as.push(Role::Main);
        let mut rank = 1;
        for (si, s) in socks.iter().enumerate() {
            if s.udp.is_none() {
                continue;
            }
            for c in 0..g.children {
                rows.push(pt::ProcDesc {
                    desc: format!("receiver child={c} sock= {}", s.hostport()),
                    rank,
                });
                run_as.push(Role::Receiver(si));
                rank += 1;
            }
        }
    }
    if !standalone && tcp_receivers > 0 {
        // 1.2's order and descriptions: the tcp receivers, then tcp main
        let first = rows.len();
        for i in 0..tcp_receivers {
            rows.push(pt::ProcDesc {
                desc: "tcp receiver".into(),
                rank: (first + i) as i32,
            });
            run_as.push(Role::TcpReceiver(i));
        }
        rows.push(pt::ProcDesc {
            desc: "tcp main process".into(),
            rank: pt::PROC_TCP_MAIN,
        });
        run_as.push(Role::TcpMain);
    }
    rows.push(pt::ProcDesc {
        desc: "timer".into(),
        rank: pt::PROC_TIMER,
    });
    run_as.push(Role::Timer);
    for p in module::loaded().iter().flat_map(|m| m.procs.iter()) {
        if (p.wanted)() {
            rows.push(pt::ProcDesc {
                desc: p.desc.into(),
                rank: p.rank,
            });
            run_as.push(Role::Extra(p.main));
        }
    }
    pt::init(rows)?;

    // Block the handled signals before forking: the attendant only takes them in
    // sigsuspend, children unblock them in child_setup.
    sys::block_signals(signals::HANDLED);
    signals::install_handlers().map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let _ = ROLES.set(run_as);
    for idx in 1..pt::len() {
        spawn(idx)?;
    }
    // Children forked from now on are respawns: no event_route[core:worker-one-init].
    FORKED_ALL.store(true, Ordering::Relaxed);

    if standalone {
        run_child_init(1).map_err(|e| format!("init_child(1) failed: {e}"))?;
        crate::script::run_worker_one_init();
        sys::unblock_all_signals();
        crate::transport::udp::rcv_loop(0);
    }
    attendant_loop()
}

/// Set by the attendant once the start-up forks are done (children inherit the value
/// of the moment they were forked).
static FORKED_ALL: AtomicBool = AtomicBool::new(false);

/// What each process-table row runs (attendant only, set before the first fork).
static ROLES: OnceLock<Vec<Role>> = OnceLock::new();

/// Forks the process of table row `idx` (at start-up, and again when it died): the child
/// runs every module's `child_init(rank)` and then its loop; the parent records its pid.
fn spawn(idx: usize) -> Result<i32, String> {
    let role = ROLES
        .get()
        .and_then(|r| r.get(idx))
        .copied()
        .ok_or_else(|| format!("no process {idx} in the table"))?;
    let rank = pt::rank(idx);
    match sys::fork().map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            IS_ATTENDANT.store(false, Ordering::Relaxed);
            pt::set_my_index(idx);
            signals::child_setup();
            if let Err(e) = run_child_init(rank) {
                crate::log_err!(plain: "init_child failed for {}: {e}", pt::desc(idx));
                std::process::exit(1);
            }
            // The first SIP worker, at start-up only (SIP Router's worker-one-init).
            if rank == 1 && !FORKED_ALL.load(Ordering::Relaxed) {
                crate::script::run_worker_one_init();
            }
            match role {
                Role::Receiver(si) => crate::transport::udp::rcv_loop(si),
                Role::TcpReceiver(i) => crate::transport::tcp_read::tcp_rcv_loop(i),
                Role::TcpMain => crate::transport::tcp_main::tcp_main_loop(),
                Role::Timer => timer::timer_loop(),
                Role::Extra(f) => f(),
                Role::Main => std::process::exit(0),
            }
        }
        ForkResult::Parent(pid) => {
            pt::set_pid(idx, pid);
            Ok(pid)
        }
    }
}

/// Every loaded module's `child_init(rank)`, in load order (each new process).
fn run_child_init(rank: i32) -> Result<(), String> {
    for m in module::loaded() {
        if let Some(f) = m.child_init {
            f(rank).map_err(|e| format!("{}: {e}", m.name))?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Role {
    Main,
    Receiver(usize),
    TcpReceiver(usize),
    TcpMain,
    Timer,
    Extra(fn() -> !),
}

fn drop_privileges(g: &Globals) -> Result<(), String> {
    let mut gid = None;
    let mut uid = None;
    if let Some(u) = &g.user {
        let (u, pg) = sys::lookup_user(u).map_err(|e| e.to_string())?;
        uid = Some(u);
        gid = Some(pg);
    }
    if let Some(gr) = &g.group {
        gid = Some(sys::lookup_group(gr).map_err(|e| e.to_string())?);
    }
    if let Some(gid) = gid {
        sys::setgid(gid).map_err(|e| format!("cannot change gid to {gid}: {e}"))?;
    }
    if let Some(uid) = uid {
        sys::setuid(uid).map_err(|e| format!("cannot change uid to {uid}: {e}"))?;
        if !g.disable_core_dump {
            sys::set_dumpable(true);
        }
    }
    Ok(())
}

fn attendant_loop() -> ! {
    loop {
        sys::sigsuspend_all();
        handle_signals_attendant();
    }
}

/// Act on pending signal flags in the attendant (also called from the receive loop
/// of a stand-alone receiver).
pub fn handle_signals_attendant() {
    if signals::take(&signals::TERM) {
        crate::log_notice!(
            plain: "signal {} received, shutting down",
            signals::TERM_SIG.load(Ordering::Relaxed)
        );
        shutdown(0);
    }
    if signals::take(&signals::CHLD) {
        reap_children();
    }
    if signals::take(&signals::USR1) {
        crate::log_at!(
            globals::get().memlog,
            "Memory status (shm):\n{}",
            shm::status_dump()
        );
    }
    if signals::take(&signals::HUP) {
        crate::log_dbg!(plain: "SIGHUP received, ignoring it");
    }
    if signals::take(&signals::USR2) {
        crate::log_warn!(plain: "unhandled signal {}", libc::SIGUSR2);
    }
    if signals::take(&signals::PIPE) {
        crate::log_warn!(plain: "SIGPIPE received and ignored");
    }
    signals::take(&signals::ALRM);
}

/// Reaps every dead child: logs it, releases and repairs what it held, and forks its
/// replacement (or shuts the server down: `respawn_children=no`, a crash loop, shared
/// memory that cannot be proven consistent).
fn reap_children() {
    let mut died = false;
    let mut again = Vec::new();
    let mut fatal: Option<String> = None;
    while let Ok(Some((pid, st))) = sys::waitpid(-1, true) {
        died = true;
        let idx = pt::find_pid(pid);
        let desc = idx.map(pt::desc).unwrap_or("unknown process");
        crate::log_err!(plain: "child process {pid} ({desc}) {st}");
        let Some(i) = idx else { continue };
        pt::set_pid(i, 0);
        crate::transport::turn::release_dead(pid);
        let rep = shm::repair_dead(i, pid as u32);
        log_repairs(pid, &rep);
        if !rep.consistent() {
            fatal = Some(format!(
                "shared memory left by process {pid} could not be proven consistent, \
                 restarting (exit code 1)"
            ));
            continue;
        }
        let expected = KILLED.with(|k| k.borrow_mut().remove(&pid));
        if !expected && crash_loop(i) {
            fatal.get_or_insert_with(|| {
                format!(
                    "{desc} died {CRASH_LOOP_DEATHS} times in {} s: crash loop, shutting down",
                    CRASH_LOOP_WINDOW.as_secs()
                )
            });
        }
        again.push(i);
    }
    if !died {
        return;
    }
    if is_standalone() {
        crate::log_info!(plain: "dont_fork turned on, living on");
        return;
    }
    if !globals::get().respawn_children {
        crate::log_notice!(plain: "terminating due to SIGCHLD");
        shutdown(1);
    }
    if let Some(why) = fatal {
        crate::log_crit!(plain: "{why}");
        shutdown(1);
    }
    // tcp main's death closes every TCP connection (their fds lived in it): the
    // connection table is emptied and the tcp receivers, which may hold connections
    // of the old table, are replaced too.
    if again
        .iter()
        .any(|&i| matches!(ROLES.get().and_then(|r| r.get(i)), Some(Role::TcpMain)))
    {
        let n = crate::transport::tcp::reset_table();
        crate::log_warn!(plain: "tcp main died: {n} TCP connection(s) dropped, tcp receivers restarted");
        for (i, role) in ROLES.get().into_iter().flatten().enumerate() {
            let p = pt::pid(i);
            if matches!(role, Role::TcpReceiver(_)) && p > 0 {
                KILLED.with(|k| k.borrow_mut().insert(p));
                let _ = sys::kill(p, libc::SIGKILL);
            }
        }
    }
    for i in again {
        match spawn(i) {
            Ok(pid) => {
                crate::stats::core().respawned_children.inc();
                crate::log_notice!(plain: "respawned {} as process {pid}", pt::desc(i));
            }
            Err(e) => {
                crate::log_crit!(plain: "cannot respawn {}: {e}", pt::desc(i));
                shutdown(1);
            }
        }
    }
}

/// Records a death of row `i`; true when it makes a crash loop.
fn crash_loop(i: usize) -> bool {
    let now = Instant::now();
    DEATHS.with(|d| {
        let mut d = d.borrow_mut();
        if d.len() <= i {
            d.resize_with(i + 1, VecDeque::new);
        }
        let q = &mut d[i];
        q.push_back(now);
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_LOOP_WINDOW)
        {
            q.pop_front();
        }
        q.len() >= CRASH_LOOP_DEATHS
    })
}

fn log_repairs(pid: i32, rep: &shm::DeadReport) {
    match &rep.heap {
        Some(Ok(())) => {
            crate::log_warn!(plain: "process {pid} died holding the shm heap lock: heap checked, consistent")
        }
        Some(Err(e)) => {
            crate::log_crit!(plain: "process {pid} died holding the shm heap lock: heap corrupt: {e}")
        }
        None => {}
    }
    for r in &rep.locks {
        match &r.outcome {
            Ok(dropped) if dropped.is_empty() => {
                crate::log_warn!(plain: "released a lock of {} held by dead process {pid}: consistent", r.what)
            }
            Ok(dropped) => {
                for d in dropped {
                    crate::log_warn!(plain: "repaired {} left by dead process {pid}: dropped {d}", r.what);
                }
            }
            Err(e) => {
                crate::log_crit!(plain: "{} left by dead process {pid} is inconsistent: {e}", r.what)
            }
        }
    }
}

/// Orderly shutdown (reference §2.6): children first, then module destroy in reverse
/// load order, then the pid files.
pub fn shutdown(code: i32) -> ! {
    let me = sys::getpid();
    for i in 0..pt::len() {
        let pid = pt::pid(i);
        if pid > 0 && pid != me {
            let _ = sys::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    let alive = |i: usize| pt::pid(i) > 0 && pt::pid(i) != me;
    loop {
        while let Ok(Some((pid, st))) = sys::waitpid(-1, true) {
            if let Some(i) = pt::find_pid(pid) {
                crate::log_dbg!(plain: "{} ({pid}) {st}", pt::desc(i));
                shm::force_unlock_dead(i, pid as u32);
                pt::set_pid(i, 0);
            }
        }
        if !(0..pt::len()).any(alive) {
            break;
        }
        if Instant::now() >= deadline {
            for i in (0..pt::len()).filter(|&i| alive(i)) {
                crate::log_warn!(
                    plain: "{} ({}) did not exit, killing it",
                    pt::desc(i),
                    pt::pid(i)
                );
                let _ = sys::kill(pt::pid(i), libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
            while let Ok(Some((pid, _))) = sys::waitpid(-1, true) {
                if let Some(i) = pt::find_pid(pid) {
                    shm::force_unlock_dead(i, pid as u32);
                    pt::set_pid(i, 0);
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Module destroy hooks, reverse load order (usrloc writes back here).
    for m in module::loaded().iter().rev() {
        if let Some(f) = m.destroy {
            f();
        }
    }
    let g = globals::get();
    crate::log_at!(g.memlog, "Memory status (shm):\n{}", shm::status_dump());
    if let Some(p) = &g.pid_file {
        let _ = std::fs::remove_file(p);
    }
    if let Some(p) = &g.pgid_file {
        let _ = std::fs::remove_file(p);
    }
    if log::to_stderr() {
        eprintln!("Thank you for flying openser");
    }
    std::process::exit(code)
}

use super::daemon;

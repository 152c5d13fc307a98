//! Test harness: start the real `openser` binary on a free 127.0.0.1 port, talk SIP
//! to it over UDP, stop it, and check its log.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod digest;
pub mod dnsmasq;
pub mod engines;
pub mod galera;
pub mod kemi;
pub mod mariadb;
pub mod netns;
pub mod postgres;
pub mod radius;
pub mod slapd;
pub mod tls;

pub const BIN: &str = env!("CARGO_BIN_EXE_openser");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A [`Command`] for a long-lived process a test owns (the server, SIPp, a database,
/// a DNS server): run under `setpriv --pdeathsig KILL` where util-linux's `setpriv` is
/// there, so that it dies with the test if the test binary is killed (a timeout, ^C)
/// instead of living on as an orphan holding its ports and a core. `setpriv` execs the
/// program, so the child's pid is the program's. The signal follows the *thread* that
/// spawned the process: start such processes from the test's own thread.
pub fn owned(program: impl AsRef<std::ffi::OsStr>) -> Command {
    static SETPRIV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *SETPRIV.get_or_init(|| have("setpriv")) {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A private temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("openser-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port on 127.0.0.1 that was free a moment ago, over UDP and TCP both. It is taken
/// below the kernel's ephemeral range (32768–60999 by default), so that no client
/// socket of a parallel test — one of them opens 10,000 TCP connections — gets it
/// between this check and the server's bind.
pub fn free_udp_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0)
        ^ (std::process::id() as usize) << 8;
    for _ in 0..2000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = 20000 + ((seed.wrapping_add(k.wrapping_mul(7919))) % 12700) as u16;
        if UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port");
}

/// Wait until something is bound on udp 127.0.0.1:`port`.
pub fn wait_udp_bound(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run openser");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Start the server on `cfg` (`-DD -E`) expecting it to refuse: it must exit, with a
/// failure status, within 10 s (else it is killed and the test fails). Its stderr.
pub fn start_refused(cfg: &Path) -> String {
    let dir = TempDir::new("refused");
    let log_path = dir.file("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = owned(BIN)
        .arg("-f")
        .arg(cfg)
        .args(["-DD", "-E"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn openser");
    let st = wait_child(&mut child, Duration::from_secs(10));
    if st.is_none() {
        stop_child(&mut child, 9, Duration::from_secs(1));
    }
    let err = std::fs::read_to_string(&log_path).unwrap_or_default();
    let st = st.unwrap_or_else(|| panic!("the server started with {}:\n{err}", cfg.display()));
    assert!(!st.success(), "exit status {st}:\n{err}");
    err
}

/// A running server.
pub struct Server {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub port: u16,
    pub log_path: PathBuf,
    pub cfg_path: PathBuf,
}

/// Substitutions in config templates: `{PORT}` is the server's port, `{DIR}` its
/// temp dir.
pub fn expand(cfg: &str, port: u16, dir: &Path) -> String {
    cfg.replace("{PORT}", &port.to_string())
        .replace("{DIR}", &dir.display().to_string())
}

impl Server {
    /// Start with `cfg` (templated) and extra args (default `-DD -E`), wait until it
    /// listens on the port.
    ///
    /// The port is chosen here, so a port taken between the choice and the server's
    /// bind (by another suite running on the machine) is not the test's failure: the
    /// start is tried again on another port, at most three times.
    pub fn start(cfg: &str, args: &[&str]) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start_on_env(free_udp_port(), cfg, args, &[]) {
                Ok(s) => return s,
                Err((port, log)) if log.contains("Address already in use") => {
                    last = format!("port {port} taken: {log}");
                }
                Err((port, log)) => panic!("server did not start listening on {port}; log:\n{log}"),
            }
        }
        panic!("server did not start on three free ports; last: {last}");
    }

    pub fn start_on(port: u16, cfg: &str, args: &[&str]) -> Server {
        Self::start_on_env(port, cfg, args, &[])
    }

    /// [`Server::start_on`] with extra environment variables for the server.
    pub fn start_on_env(port: u16, cfg: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        match Self::try_start_on_env(port, cfg, args, env) {
            Ok(s) => s,
            Err((port, log)) => panic!("server did not start listening on {port}; log:\n{log}"),
        }
    }

    /// Start and wait until it listens; on failure the server is stopped and its
    /// port and log returned.
    fn try_start_on_env(
        port: u16,
        cfg: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, (u16, String)> {
        let dir = TempDir::new("srv");
        let cfg_path = dir.file("openser.cfg");
        std::fs::write(&cfg_path, expand(cfg, port, dir.path())).unwrap();
        let log_path = dir.file("stderr.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut argv: Vec<String> = vec!["-f".into(), cfg_path.display().to_string()];
        if args.is_empty() {
            argv.extend(["-DD".to_string(), "-E".to_string()]);
        } else {
            argv.extend(args.iter().map(|s| s.to_string()));
        }
        let child = owned(BIN)
            .args(&argv)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn openser");
        let mut s = Server {
            child: Some(child),
            dir,
            port,
            log_path,
            cfg_path,
        };
        if !wait_udp_bound(port, Duration::from_secs(10)) {
            let log = s.log();
            s.kill();
            return Err((port, log));
        }
        // Give the receivers a moment to be forked.
        std::thread::sleep(Duration::from_millis(100));
        Ok(s)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, sig: i32) {
        signal_pid(self.pid() as u32, sig);
    }

    /// SIGTERM, wait for exit (10 s), return the status. Panics on a log line at
    /// L_ALERT/L_CRIT or a Rust panic.
    pub fn stop(&mut self) -> ExitStatus {
        let st = self.stop_unchecked();
        let log = self.log();
        for bad in ["CRITICAL", "ALERT:", "panicked at"] {
            assert!(!log.contains(bad), "server log has a `{bad}` line:\n{log}");
        }
        st
    }

    pub fn stop_unchecked(&mut self) -> ExitStatus {
        self.signal(15);
        self.wait_exit(Duration::from_secs(10))
            .expect("server did not exit after SIGTERM")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = wait_child(self.child.as_mut()?, timeout)?;
        self.child = None;
        Some(st)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(15);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                self.kill();
            }
        }
    }
}

/// Pids of the children of `pid` (from /proc).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // Field 4 (after the parenthesised command) is the ppid.
                if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    if f.get(1).and_then(|x| x.parse::<i32>().ok()) == Some(pid) {
                        v.push(p);
                    }
                }
            }
        }
    }
    v.sort();
    v
}

pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
                    .unwrap_or(false)
            })
            .unwrap_or(true)
}

/// Send signal `sig` to a process a test started, by its PID (kill(1): the tests carry
/// no unsafe code).
pub fn signal_pid(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Wait at most `t` for a child to exit; its status, or `None` if it still runs.
pub fn wait_child(c: &mut Child, t: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + t;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stop a child a test started: `sig` to its PID, up to `grace` to exit, then SIGKILL.
pub fn stop_child(c: &mut Child, sig: i32, grace: Duration) {
    signal_pid(c.id(), sig);
    if wait_child(c, grace).is_none() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A tiny SIP-over-UDP client.
/// `recv_from` that carries on when the call is interrupted. With a read timeout set,
/// Linux does not restart the call after the process was stopped and continued (a
/// frozen CI container, a debugger): it returns EINTR, which is no answer from the
/// server. Each retry waits the socket's whole timeout again.
pub fn recv_from(s: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        match s.recv_from(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// `read` that carries on when interrupted (see [`recv_from`]).
pub fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

pub struct Client {
    pub sock: UdpSocket,
}

impl Client {
    pub fn new() -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Client { sock }
    }
    pub fn bind(port: u16) -> Client {
        let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Client { sock }
    }
    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }
    pub fn send(&self, to: SocketAddr, msg: &str) {
        self.sock.send_to(msg.as_bytes(), to).unwrap();
    }
    pub fn send_bytes(&self, to: SocketAddr, msg: &[u8]) {
        self.sock.send_to(msg, to).unwrap();
    }
    /// Receive one datagram (None on timeout).
    pub fn recv(&self) -> Option<(String, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        match recv_from(&self.sock, &mut buf) {
            Ok((n, from)) => Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from)),
            Err(_) => None,
        }
    }
    pub fn recv_timeout(&self, t: Duration) -> Option<(String, SocketAddr)> {
        self.sock.set_read_timeout(Some(t)).unwrap();
        let r = self.recv();
        self.sock
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        r
    }
    /// Receive until a message whose first line contains `needle` (skipping others).
    pub fn recv_matching(&self, needle: &str) -> Option<String> {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let (m, _) = self.recv()?;
            if m.lines().next().unwrap_or("").contains(needle) {
                return Some(m);
            }
        }
        None
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// A header's value from a message text (first match, case-insensitive name).
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            if n.trim().eq_ignore_ascii_case(name) {
                Some(v.trim())
            } else {
                None
            }
        })
}

/// Every value of a header.
pub fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            if n.trim().eq_ignore_ascii_case(name) {
                Some(v.trim())
            } else {
                None
            }
        })
        .collect()
}

/// A simple request with the mandatory headers.
pub fn request(
    method: &str,
    ruri: &str,
    client_port: u16,
    callid: &str,
    cseq: u32,
    extra: &str,
) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{client_port};branch=z9hG4bK{callid}{cseq}\r\n\
         From: <sip:alice@127.0.0.1>;tag=a{callid}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {callid}\r\n\
         CSeq: {cseq} {method}\r\n\
         Max-Forwards: 70\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
}

/// Is `sipp` installed?
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Skip (loudly) outside CI, fail in CI, when a tool is missing.
pub fn require(cmd: &str) -> bool {
    if have(cmd) {
        return true;
    }
    skip(&format!("`{cmd}` is not installed"));
    false
}

/// Where skipped tests are listed; `make test` prints the list at the end (cargo
/// hides the output of tests that pass, so a skip would otherwise go unseen).
pub const SKIP_LIST: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped-tests.txt");

/// The calling test cannot run here because `why`: a failure with `CI=true`, else a
/// line on stderr and in [`SKIP_LIST`].
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{test}: {why} (required in CI)");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(SKIP_LIST)
    {
        let _ = writeln!(f, "{test}: {why}");
    }
}

/// One MI request through the server's FIFO (`dir/openser_fifo`, replies in `dir`);
/// returns the reply text.
pub fn mi(dir: &Path, cmd: &str, args: &[&str]) -> String {
    use std::io::Write;
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "mi_reply_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let reply = dir.join(&name);
    let st = Command::new("mkfifo").arg(&reply).status().expect("mkfifo");
    assert!(st.success());
    let mut req = format!(":{cmd}:{name}\n");
    for a in args {
        req.push_str(a);
        req.push('\n');
    }
    req.push('\n');
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("openser_fifo"))
        .expect("open the MI FIFO")
        .write_all(req.as_bytes())
        .expect("write the MI request");
    // Opening the reply FIFO blocks until the server opens it for writing.
    let mut out = String::new();
    std::fs::File::open(&reply)
        .expect("open reply fifo")
        .read_to_string(&mut out)
        .expect("read reply");
    let _ = std::fs::remove_file(&reply);
    out
}

/// Wait until the server has created its MI FIFO in `dir`.
pub fn wait_fifo(dir: &Path) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if dir.join("openser_fifo").exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A background SIPp, killed when dropped (also when a test fails half-way).
pub struct Sipp(pub Child);

impl Sipp {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Start SIPp in the background (its output discarded).
pub fn sipp_spawn(dir: &Path, args: &[String]) -> Sipp {
    Sipp(
        owned("sipp")
            .args(args)
            .arg("-nostdin")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp"),
    )
}

/// A SIPp UAS (tests/data/sipp/uas.xml) on a free 127.0.0.1 port, bound before this
/// returns; killed on drop. Returns it and its port.
pub fn sipp_uas(dir: &Path) -> (Sipp, u16) {
    sipp_uas_with(dir, "uas.xml", &[])
}

/// [`sipp_uas`] with another scenario of tests/data/sipp.
pub fn sipp_uas_file(dir: &Path, file: &str) -> (Sipp, u16) {
    sipp_uas_with(dir, file, &[])
}

/// A SIPp UAS running `file` (tests/data/sipp) with `extra` SIPp arguments (e.g.
/// `-m 2`), on a free 127.0.0.1 port, bound before this returns; killed on drop.
pub fn sipp_uas_with(dir: &Path, file: &str, extra: &[&str]) -> (Sipp, u16) {
    let port = free_udp_port();
    let mut args: Vec<String> = vec![
        "-sf".into(),
        scenario(file),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let uas = sipp_spawn(dir, &args);
    assert!(
        wait_udp_bound(port, Duration::from_secs(20)),
        "SIPp UAS did not bind 127.0.0.1:{port}"
    );
    (uas, port)
}

/// Run SIPp to completion (30 s call timeout counts as an error).
pub fn sipp_run(dir: &Path, args: &[String]) -> std::process::Output {
    owned("sipp")
        .args(args)
        .args(["-nostdin", "-timeout", "30", "-timeout_error"])
        .current_dir(dir)
        .output()
        .expect("run sipp")
}

/// One run (`-m 1`) of the project's SIPp scenario `file` (tests/data/sipp) against
/// the server on `port`, from a free local port, with `extra` arguments (`-s user`,
/// `-key …`, `-au …`).
pub fn sipp_once(dir: &Path, file: &str, port: u16, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["-sf".into(), scenario(file), format!("127.0.0.1:{port}")];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend([
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_udp_port().to_string(),
        "-m".into(),
        "1".into(),
    ]);
    sipp_run(dir, &args)
}

/// A SIPp scenario file of the project (tests/data/sipp).
/// `calls` SIPp calls (tests/data/sipp/uac.xml: INVITE/180/200/ACK/BYE) to `user`
/// through the server on `port`, at 10 per second; asserts SIPp's own statistics say
/// every call succeeded and none failed.
pub fn sipp_calls(dir: &Path, port: u16, user: &str, calls: u64) {
    sipp_calls_with(dir, port, user, calls, &[]);
}

/// [`sipp_calls`] with extra SIPp options (e.g. `-t tn` for TCP).
pub fn sipp_calls_with(dir: &Path, port: u16, user: &str, calls: u64, extra: &[&str]) {
    let stf = dir.join(format!("uac-{}.csv", free_udp_port()));
    let mut args: Vec<String> = vec![
        "-sf".into(),
        scenario("uac.xml"),
        format!("127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let uac = sipp_run(
        dir,
        &[
            args,
            vec![
                "-s".into(),
                user.into(),
                "-i".into(),
                "127.0.0.1".into(),
                "-p".into(),
                free_udp_port().to_string(),
                "-m".into(),
                calls.to_string(),
                "-r".into(),
                "10".into(),
                "-trace_stat".into(),
                "-stf".into(),
                stf.display().to_string(),
            ],
        ]
        .concat(),
    );
    let stat = std::fs::read_to_string(&stf).unwrap_or_default();
    assert!(
        uac.status.success(),
        "calls failed: {}\n{stat}",
        String::from_utf8_lossy(&uac.stdout)
    );
    assert_eq!(sipp_stat(&stat, "SuccessfulCall(C)"), Some(calls), "{stat}");
    assert_eq!(sipp_stat(&stat, "FailedCall(C)"), Some(0), "{stat}");
}

/// A counter of the last row of a SIPp `-trace_stat` file (`;`-separated, a header row
/// naming the columns, e.g. `SuccessfulCall(C)`); `None` if the column or value is missing.
pub fn sipp_stat(csv: &str, name: &str) -> Option<u64> {
    let header = csv.lines().next()?.split(';');
    let last: Vec<&str> = csv.lines().last()?.split(';').collect();
    let i = header.into_iter().position(|h| h == name)?;
    last.get(i)?.parse().ok()
}

pub fn scenario(name: &str) -> String {
    format!("{}/tests/data/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The `*.cfg` files of `tests/data/cfg/<sub>` (e.g. `good`, `fixup/bad`), sorted.
pub fn cfg_corpus(sub: &str) -> Vec<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cfg")
        .join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    v.sort();
    v
}

/// What a bad corpus config expects, from its first lines: `# expect: LINE:COL text`
/// and an optional `# args: FLAG`. Returns ("LINE:COL", text, flag).
pub fn cfg_expectation(p: &Path) -> Option<(String, String, Option<String>)> {
    let text = std::fs::read_to_string(p).ok()?;
    let mut lines = text.lines();
    let spec = lines.next()?.strip_prefix("# expect: ")?;
    let flag = lines
        .next()
        .and_then(|l| l.strip_prefix("# args: "))
        .map(|a| a.trim().to_string());
    let (pos, want) = spec.split_once(' ').unwrap_or((spec, ""));
    Some((pos.to_string(), want.trim().to_string(), flag))
}

/// Poll `f` until it returns true or `t` passes.
pub fn wait_until(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// One statistic over the MI FIFO (`get_statistics group:name`); `None` if absent.
pub fn mi_stat(dir: &Path, name: &str) -> Option<u64> {
    let out = mi(dir, "get_statistics", &[name]);
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
        .and_then(|v| v.trim().parse().ok())
}

/// [`mi_stat`] for a statistic that must be there.
pub fn stat(dir: &Path, name: &str) -> u64 {
    mi_stat(dir, name).unwrap_or_else(|| panic!("no {name} in get_statistics {name}"))
}

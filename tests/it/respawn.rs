//! Worker death contained and respawned (issue 18): a dead child is logged, its locks
//! released and repaired, and a replacement with the same rank and description serves
//! on; `respawn_children=no` keeps 1.2's shutdown; a crash loop shuts down cleanly.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// UDP with four receivers, the MI FIFO, and an OPTIONS answered statelessly.
const CFG: &str = "listen=udp:127.0.0.1:{PORT}\nchildren=4\n\
    loadmodule \"sl.so\"\nloadmodule \"mi_fifo.so\"\n\
    modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
    modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")\n\
    route { sl_send_reply(\"200\", \"OK\"); }\n";

fn kill9(pid: i32) {
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -9 {pid}");
}

/// The pid MI `ps` lists for the process whose type starts with `ty`.
fn ps_pid(dir: &Path, ty: &str) -> Option<i32> {
    let ps = mi(dir, "ps", &[]);
    ps.lines()
        .find(|l| l.contains(&format!("Type={ty}")))
        .and_then(|l| {
            l.split("PID=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

/// Waits until `ps` lists a process of type `ty` with a pid other than `old`.
fn replacement(dir: &Path, ty: &str, old: i32) -> Option<i32> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Some(p) = ps_pid(dir, ty)
            && p != old
            && p != 0
        {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `n` OPTIONS from one client, each must get its 200.
fn all_answered(s: &Server, n: usize, tag: &str) {
    let c = Client::new();
    for i in 0..n {
        let cid = format!("{tag}-{i}");
        c.send(
            s.addr(),
            &request("OPTIONS", "sip:a@127.0.0.1", c.port(), &cid, 1, ""),
        );
        let end = Instant::now() + Duration::from_secs(5);
        let mut r = None;
        while r.is_none() && Instant::now() < end {
            match c.recv() {
                Some((m, _)) if m.contains(&format!("Call-ID: {cid}\r\n")) => r = Some(m),
                Some(_) => {}
                None => break,
            }
        }
        assert!(
            r.as_deref()
                .is_some_and(|r| r.starts_with("SIP/2.0 200 OK")),
            "OPTIONS {cid} not answered: {r:?}\n{}",
            s.log()
        );
    }
}

#[test]
fn killed_receiver_and_timer_are_respawned() {
    let mut s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let before = children_of(s.pid());
    all_answered(&s, 5, "before");
    let victim = ps_pid(&dir, "receiver child=0").expect("receiver 0 in ps");
    kill9(victim);
    let new = replacement(&dir, "receiver child=0", victim)
        .unwrap_or_else(|| panic!("receiver 0 not respawned\n{}", s.log()));
    assert!(alive(new) && !alive(victim));
    // The new process can show in MI `ps` before the attendant has logged the
    // respawn: wait for the line (bounded), then check both.
    let respawned = format!(
        "respawned receiver child=0 sock= 127.0.0.1:{} as process {new}",
        s.port
    );
    s.wait_log(&respawned, Duration::from_secs(5));
    let log = s.log();
    assert!(
        log.contains(&format!(
            "child process {victim} (receiver child=0 sock= 127.0.0.1:{})",
            s.port
        )) && log.contains("signal 9"),
        "the death must be logged with the process's description:\n{log}"
    );
    assert!(log.contains(&respawned), "{log}");
    // Same number of children, and the server answers every request (each receiver,
    // the new one included, reads the socket in turn).
    assert_eq!(children_of(s.pid()).len(), before.len(), "{}", s.log());
    all_answered(&s, 40, "after");

    // The timer too (it drives the MI FIFO's neighbours' timers and the turn watchdog).
    let timer = ps_pid(&dir, "timer").expect("timer in ps");
    kill9(timer);
    let t2 = replacement(&dir, "timer", timer)
        .unwrap_or_else(|| panic!("timer not respawned\n{}", s.log()));
    assert!(alive(t2));
    // And the MI FIFO process itself: the next request is served by its replacement.
    let fifo = ps_pid(&dir, "MI FIFO").expect("MI FIFO in ps");
    kill9(fifo);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .log()
            .contains("respawned MI FIFO")),
        "{}",
        s.log()
    );
    assert!(wait_fifo(&dir));
    assert_eq!(stat(&dir, "core:respawned_children"), 3, "{}", s.log());
    all_answered(&s, 10, "end");
    let st = s.stop();
    assert!(
        st.success(),
        "a clean stop after respawns: {st:?}\n{}",
        s.log()
    );
}

#[test]
fn a_crash_loop_shuts_the_server_down() {
    let mut s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let kids = children_of(s.pid());
    // The same row dies five times in a row (well within the 10 s window).
    let mut victim = ps_pid(&dir, "receiver child=1").expect("receiver 1");
    for round in 0..5 {
        kill9(victim);
        if round == 4 {
            break;
        }
        victim = replacement(&dir, "receiver child=1", victim)
            .unwrap_or_else(|| panic!("not respawned in round {round}\n{}", s.log()));
    }
    let st = s
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no shutdown after a crash loop\n{}", s.log()));
    assert!(!st.success(), "{st:?}");
    let log = s.log();
    assert!(
        log.contains("died 5 times in 10 s: crash loop, shutting down"),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(100));
    for k in kids {
        assert!(!alive(k), "child {k} survived");
    }
}

fn options_tcp(port: u16, callid: &str) -> Option<String> {
    let mut t = TcpStream::connect(("127.0.0.1", port)).ok()?;
    t.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let me = t.local_addr().ok()?;
    let m = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK{callid}\r\n\
         From: <sip:a@127.0.0.1>;tag=t{callid}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: {callid}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    t.write_all(m.as_bytes()).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = t.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn tcp_main_and_tcp_receivers_are_respawned() {
    let cfg = "listen=udp:127.0.0.1:{PORT}\nlisten=tcp:127.0.0.1:{PORT}\nchildren=1\n\
        tcp_children=2\nloadmodule \"sl.so\"\nloadmodule \"mi_fifo.so\"\n\
        modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
        modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")\n\
        route { sl_send_reply(\"200\", \"OK\"); }\n";
    let mut s = Server::start(cfg, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let r = options_tcp(s.port, "tcp-before").expect("TCP answer before");
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");

    let recv = ps_pid(&dir, "tcp receiver").expect("a tcp receiver");
    kill9(recv);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .log()
            .contains("respawned tcp receiver")),
        "{}",
        s.log()
    );
    for i in 0..4 {
        let r = options_tcp(s.port, &format!("tcp-r{i}"))
            .expect("TCP answer after a tcp receiver died");
        assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    }

    let main = ps_pid(&dir, "tcp main process").expect("tcp main");
    kill9(main);
    let new = replacement(&dir, "tcp main process", main)
        .unwrap_or_else(|| panic!("tcp main not respawned\n{}", s.log()));
    assert!(alive(new));
    assert!(s.log().contains("tcp main died:"), "{}", s.log());
    for i in 0..4 {
        let r = options_tcp(s.port, &format!("tcp-m{i}"))
            .unwrap_or_else(|| panic!("no TCP answer after tcp main was respawned\n{}", s.log()));
        assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    }
    // Only the tcp main's death and the one tcp receiver count: the tcp receivers the
    // attendant itself replaced after tcp main died are counted too (they were respawned),
    // so the counter is 1 + 1 + tcp_children.
    assert_eq!(stat(&dir, "core:respawned_children"), 4, "{}", s.log());
    assert!(s.stop().success(), "{}", s.log());
}

/// usrloc's slot of an AOR (its `ul_hash`: FNV-1a over the lower-cased bytes, then the
/// murmur3 finaliser), for a table of `slots` slots.
fn ul_slot(aor: &str, slots: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in aor.bytes() {
        h ^= u32::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    (h ^ (h >> 16)) & (slots - 1)
}

fn register_once(s: &Server, c: &Client, user: &str) -> Option<String> {
    let cid = format!("reg-{user}");
    c.send(
        s.addr(),
        &format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{cid}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=f{user}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: {cid}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
             Contact: <sip:{user}@127.0.0.1:{p}>;expires=3600\r\nContent-Length: 0\r\n\r\n",
            p = c.port()
        ),
    );
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        match c.recv_timeout(Duration::from_millis(500)) {
            Some((m, _)) if m.contains(&format!("Call-ID: {cid}\r\n")) => return Some(m),
            _ => {}
        }
    }
    None
}

fn dumped_aors(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = mi(dir, "ul_dump", &[])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("AOR:: "))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn repair_drops_exactly_the_half_written_usrloc_record() {
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=2\n\
        loadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
        loadmodule \"mi_fifo.so\"\nmodparam(\"usrloc\", \"hash_size\", 9)\n\
        modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
        modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")\n\
        route { if (method == \"REGISTER\") { save(\"location\"); exit; } }\n";
    let victim = "victim";
    let slot = ul_slot(victim, 512);
    // Three users sharing the victim's slot, and a few elsewhere.
    let same: Vec<String> = (0..)
        .map(|i| format!("n{i}"))
        .filter(|u| ul_slot(u, 512) == slot)
        .take(4)
        .collect();
    let others = ["alice", "bob", "carol"];
    let mut s = Server::start_on_env(
        free_udp_port(),
        cfg,
        &["-DD", "-E"],
        &[("OPENSER_DEBUG_USRLOC_PAUSE", victim)],
    );
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let c = Client::new();
    for u in same[..3].iter().map(String::as_str).chain(others) {
        let r = register_once(&s, &c, u).unwrap_or_else(|| panic!("no reply for {u}"));
        assert!(r.starts_with("SIP/2.0 200"), "{r}");
    }
    let before = dumped_aors(&dir);
    assert_eq!(before.len(), 6, "{before:?}");

    // The victim's REGISTER stops its receiver inside the slot's critical section.
    assert!(register_once(&s, &c, victim).is_none());
    let needle = format!("paused in usrloc slot {slot} inserting {victim}");
    assert!(
        wait_until(Duration::from_secs(5), || s.log().contains(&needle)),
        "{}",
        s.log()
    );
    let log = s.log();
    let line = log.lines().find(|l| l.contains(&needle)).unwrap();
    let pid: i32 = line
        .split("debug: process ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"));
    kill9(pid);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .log()
            .contains("respawned receiver")),
        "{}",
        s.log()
    );
    let log = s.log();
    let dropped: Vec<&str> = log.lines().filter(|l| l.contains("dropped ")).collect();
    assert_eq!(dropped.len(), 1, "exactly one repair line expected:\n{log}");
    assert!(
        dropped[0].contains(&format!(
            "repaired usrloc slot left by dead process {pid}: dropped location: \
             half-written usrloc record of AOR {victim} (no contact yet)"
        )),
        "{log}"
    );
    // Everything else is intact, and the slot works: a new user of the same slot, and a
    // refresh of one already there.
    assert_eq!(dumped_aors(&dir), before);
    for u in [same[3].as_str(), same[0].as_str()] {
        let r = register_once(&s, &c, u).unwrap_or_else(|| panic!("no reply for {u}\n{}", s.log()));
        assert!(r.starts_with("SIP/2.0 200"), "{r}");
    }
    let after = dumped_aors(&dir);
    assert_eq!(after.len(), 7, "{after:?}");
    assert!(after.contains(&same[3]) && !after.iter().any(|a| a == victim));
    let st = mi(&dir, "get_statistics", &["usrloc:location-users"]);
    assert!(st.contains("usrloc:location-users = 7"), "{st}");
    assert!(s.stop().success(), "{}", s.log());
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One REGISTER refresh as a UA sends it: retransmitted every 500 ms until answered
/// (at most 8 times). The final code, 0 if never answered.
fn refresh(s: &Server, c: &Client, user: &str, cseq: u32) -> u16 {
    refresh_to(s.addr(), c, user, cseq)
}

/// Chaos under load: SIPp stateful calls plus REGISTER refreshes while a random
/// worker (UDP receiver, timer, tcp receiver) is SIGKILLed every 2 s. In-suite: 10 s,
/// 200 calls/s, 200 users; `make soak` runs it with CHAOS_SECS=60 CHAOS_RATE=1000
/// CHAOS_USERS=1000.
#[test]
fn chaos_calls_and_registrations_survive_killed_workers() {
    if !require("sipp") {
        return;
    }
    let secs = env_num("CHAOS_SECS", 10);
    let rate = env_num("CHAOS_RATE", 200);
    let nusers = env_num("CHAOS_USERS", 200) as usize;
    let dir = TempDir::new("chaos");
    let (mut uas, uas_port) = sipp_uas(dir.path());
    let cfg = format!(
        "listen=udp:127.0.0.1:{{PORT}}\nlisten=tcp:127.0.0.1:{{PORT}}\nchildren=4\n\
         tcp_children=2\nloadmodule \"sl.so\"\nloadmodule \"tm.so\"\nloadmodule \"rr.so\"\n\
         loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nloadmodule \"mi_fifo.so\"\n\
         modparam(\"tm\", \"wt_timer\", 1)\n\
         modparam(\"mi_fifo\", \"fifo_name\", \"{{DIR}}/openser_fifo\")\n\
         modparam(\"mi_fifo\", \"reply_dir\", \"{{DIR}}/\")\n\
         route {{\n\
           if (method == \"REGISTER\") {{ save(\"location\"); exit; }}\n\
           if ($tt != null) {{ if (loose_route()) {{ t_relay(); }} exit; }}\n\
           record_route();\n\
           rewritehostport(\"127.0.0.1:{uas_port}\");\n\
           if (!t_relay()) {{ sl_reply_error(); }}\n\
         }}\n"
    );
    let shm_mb = env_num("CHAOS_SHM_MB", 64).to_string();
    let mut s = Server::start(&cfg, &["-DD", "-E", "-m", &shm_mb]);
    let sdir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&sdir), "{}", s.log());
    let users: Vec<String> = (0..nusers).map(|i| format!("chaos{i}")).collect();
    let c = Client::new();
    for u in &users {
        assert_eq!(refresh(&s, &c, u, 1), 200, "{u}\n{}", s.log());
    }
    let before = dumped_aors(&sdir);
    assert_eq!(before.len(), nusers);
    let idle = stat(&sdir, "shmem:real_used_size");

    // SIPp: rate × secs calls.
    let calls = rate * secs;
    let stf = dir.file("chaos.csv");
    let mut uac = owned("sipp")
        .args([
            "-sf",
            &scenario("uac.xml"),
            &format!("127.0.0.1:{}", s.port),
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
            "-r",
            &rate.to_string(),
            "-m",
            &calls.to_string(),
            "-nostdin",
            "-timeout",
            &(secs + 120).to_string(),
            "-trace_stat",
            "-stf",
            &stf.display().to_string(),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp uac");

    // REGISTER refreshes, all users in turn, until the calls are done.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresher = {
        let stop = stop.clone();
        let users = users.clone();
        let addr = s.addr();
        std::thread::spawn(move || {
            let c = Client::new();
            let (mut ok, mut failed, mut cseq) = (0u64, Vec::new(), 2u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // One pass over the users per second at most (a refresh storm, not a
                // flood).
                let pass = Instant::now();
                for u in &users {
                    match refresh_to(addr, &c, u, cseq) {
                        200 => ok += 1,
                        code => failed.push((u.clone(), code)),
                    }
                }
                cseq += 1;
                if let Some(rest) = Duration::from_secs(1).checked_sub(pass.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            (ok, failed)
        })
    };

    // The killer: a random worker every 2 s.
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut kills = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(2));
        if start.elapsed() >= Duration::from_secs(secs) {
            break;
        }
        let ps = mi(&sdir, "ps", &[]);
        let victims: Vec<(i32, String)> = ps
            .lines()
            .filter(|l| {
                l.contains("Type=receiver child=")
                    || l.contains("Type=timer")
                    || l.contains("Type=tcp receiver")
            })
            .filter_map(|l| {
                let pid = l.split("PID=").nth(1)?.split(' ').next()?.parse().ok()?;
                Some((pid, l.split("Type=").nth(1)?.to_string()))
            })
            .collect();
        assert!(!victims.is_empty(), "{ps}");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (pid, ty) = &victims[(seed % victims.len() as u64) as usize];
        kill9(*pid);
        kills.push(ty.clone());
    }
    // SIPp's own -timeout (secs + 120) should end it; once (2026-12-06, a machine at
    // load 12) it did not and the suite hung for 17 minutes. Bounded here: past its
    // timeout and a minute more, SIPp is stopped and the test fails saying so.
    let Some(st) = wait_child(&mut uac, Duration::from_secs(secs + 180)) else {
        stop_child(&mut uac, 15, Duration::from_secs(5));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = refresher.join();
        uas.kill();
        panic!("SIPp did not end within its -timeout of {} s", secs + 120);
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reg_ok, reg_failed) = refresher.join().unwrap();
    uas.kill();
    let stat_csv = std::fs::read_to_string(&stf).unwrap_or_default();
    let col = |name: &str| sipp_stat(&stat_csv, name).unwrap_or(0);
    let (ok, failed) = (col("SuccessfulCall(C)"), col("FailedCall(C)"));
    eprintln!(
        "chaos: {secs} s, {rate} cps: {ok} calls completed, {failed} failed of {calls} \
         (sipp exit {st:?}); {} kills {kills:?}; {reg_ok} refreshes ok, {} failed {:?}",
        kills.len(),
        reg_failed.len(),
        &reg_failed[..reg_failed.len().min(10)]
    );
    assert!(
        s.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "server died\n{}",
        s.log()
    );
    assert!(
        ok * 1000 >= calls * 999,
        "{ok} of {calls} calls completed ({failed} failed)\n{stat_csv}\n{}",
        s.log()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("CRIT") || l.contains("exhausted"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        stat(&sdir, "core:respawned_children"),
        kills.len() as u64,
        "{}",
        s.log()
    );
    // No registration lost.
    assert_eq!(dumped_aors(&sdir), before, "{}", s.log());
    // Transactions drained, shm back to idle. Tolerance: a killed process may leave
    // what it was building and had not linked anywhere yet (a transaction being
    // created, a message clone): at most one such set per kill, a few KiB each; 16 KiB
    // per kill covers it, and anything per call (2,000+ calls) would exceed it.
    assert!(
        wait_until(Duration::from_secs(30), || stat(
            &sdir,
            "tm:inuse_transactions"
        ) == 0),
        "inuse_transactions {}",
        stat(&sdir, "tm:inuse_transactions")
    );
    let tolerance = 16 * 1024 * kills.len() as u64;
    let ok_shm = wait_until(Duration::from_secs(10), || {
        stat(&sdir, "shmem:real_used_size") <= idle + tolerance
    });
    let now = stat(&sdir, "shmem:real_used_size");
    eprintln!("chaos: shm idle {idle}, after {now} (tolerance {tolerance})");
    assert!(ok_shm, "shm not back to idle: {idle} -> {now}");
    assert!(s.stop().success(), "{}", s.log());
}

/// [`refresh`] to an address (for the refresher thread, which has no `Server`).
fn refresh_to(addr: std::net::SocketAddr, c: &Client, user: &str, cseq: u32) -> u16 {
    let cid = format!("chaos-{user}");
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{cid}-{cseq}\r\n\
         From: <sip:{user}@127.0.0.1>;tag=f{user}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n\
         Contact: <sip:{user}@127.0.0.1:{p}>;expires=3600\r\nContent-Length: 0\r\n\r\n",
        p = c.port()
    );
    let want = format!("CSeq: {cseq} REGISTER\r\n");
    for _ in 0..8 {
        c.send(addr, &msg);
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            match c.recv_timeout(Duration::from_millis(100)) {
                Some((m, _)) if m.contains(&format!("Call-ID: {cid}\r\n")) && m.contains(&want) => {
                    return m
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    0
}

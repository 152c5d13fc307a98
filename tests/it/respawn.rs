//! Worker death contained and respawned (issue 18): a dead child is logged, its locks
//! released and repaired, and a replacement with the same rank and description serves
//! on; `respawn_children=no` keeps 1.2's shutdown; a crash loop shuts down cleanly.

use crate::harness::netns::wait_until;
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

fn stat(dir: &Path, name: &str) -> u64 {
    let r = mi(dir, "get_statistics", &[name]);
    r.lines()
        .find_map(|l| l.split(" = ").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {r}"))
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
    let log = s.log();
    assert!(
        log.contains(&format!(
            "child process {victim} (receiver child=0 sock= 127.0.0.1:{})",
            s.port
        )) && log.contains("signal 9"),
        "the death must be logged with the process's description:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "respawned receiver child=0 sock= 127.0.0.1:{} as process {new}",
            s.port
        )),
        "{log}"
    );
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

//! Bounded loss across a crash of the whole server (issue 18, item 4): REGISTERs of
//! distinct users at a few hundred per second, the 200s recorded as they arrive, then
//! `kill -9` of every openser process (the attendant and each of its children, by
//! PID). The private MariaDB's `location` table is then compared with the list of
//! acknowledged REGISTERs:
//! - `db_mode` 1 (write-through): every acknowledged binding is in the table (the row
//!   is written before the 200 goes out);
//! - `db_mode` 2 (write-back): only bindings acknowledged in the last `timer_interval`
//!   (plus the time one write-back pass takes) may be missing.
//!
//! A server started again on the same database lists exactly the table's bindings in
//! `ul_dump` (loaded at start-up).

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::harness::mariadb::MariaDb;
use crate::harness::*;

fn cfg(db: &MariaDb, mode_params: &str) -> String {
    format!(
        "debug=3\nlisten=udp:127.0.0.1:{{PORT}}\nchildren=4\n\
         loadmodule \"mysql.so\"\nloadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\n\
         loadmodule \"registrar.so\"\nloadmodule \"mi_fifo.so\"\n\
         modparam(\"mi_fifo\", \"fifo_name\", \"{{DIR}}/openser_fifo\")\n\
         modparam(\"mi_fifo\", \"reply_dir\", \"{{DIR}}/\")\n\
         modparam(\"usrloc\", \"db_url\", \"mysql://openser:openserrw@127.0.0.1:{}/openser\")\n\
         {mode_params}\n\
         route {{\n  if (method == \"REGISTER\") {{ save(\"location\"); exit; }}\n  \
         sl_send_reply(\"404\", \"Not here\");\n}}\n",
        db.port()
    )
}

/// Every process of the server: the attendant first, then its descendants.
fn process_tree(root: i32) -> Vec<i32> {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        all.extend(children_of(all[i]));
        i += 1;
    }
    all
}

/// The users whose REGISTER was answered 200, each with the time its 200 arrived.
struct Load {
    acked: BTreeMap<String, Instant>,
    sent: usize,
}

/// REGISTERs of users `u0`, `u1`, … at about `rate` per second for `secs`, from one
/// socket; a second handle of the socket reads the answers meanwhile. Then every
/// process of `s` is killed with SIGKILL at once (still under load); returns the
/// acknowledged set and the time of the kill.
fn load_then_kill(s: &mut Server, rate: u32, secs: f64) -> (Load, Instant) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lport = sock.local_addr().unwrap().port();
    let rx = sock.try_clone().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut acked = BTreeMap::new();
        let mut buf = vec![0u8; 65536];
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((n, _)) = recv_from(&rx, &mut buf) else {
                continue;
            };
            let now = Instant::now();
            let m = String::from_utf8_lossy(&buf[..n]);
            if m.starts_with("SIP/2.0 200")
                && let Some(cid) = header(&m, "Call-ID")
                && let Some(u) = cid.strip_prefix("crashloss-")
            {
                acked.entry(u.to_string()).or_insert(now);
            }
        }
        acked
    });
    let addr = s.addr();
    let sp = s.port;
    let total = (f64::from(rate) * secs) as usize;
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let u = format!("u{i}");
        let msg = format!(
            "REGISTER sip:127.0.0.1:{sp} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bKcl{i}\r\n\
             From: <sip:{u}@127.0.0.1>;tag=cl{i}\r\n\
             To: <sip:{u}@127.0.0.1>\r\n\
             Call-ID: crashloss-{u}\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:{u}@127.0.0.1:{lport}>\r\n\
             Expires: 3600\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), addr).unwrap();
    }
    // Under load to the end: the kill follows the last REGISTER at once.
    let tree = process_tree(s.pid());
    assert!(
        tree.len() >= 5,
        "attendant + 4 receivers expected: {tree:?}"
    );
    let killed_at = Instant::now();
    let mut cmd = std::process::Command::new("kill");
    cmd.arg("-9");
    for p in &tree {
        cmd.arg(p.to_string());
    }
    assert!(cmd.status().unwrap().success(), "kill -9 {tree:?}");
    let end = Instant::now() + Duration::from_secs(5);
    while tree.iter().any(|&p| alive(p)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = tree.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still alive after kill -9: {left:?}");
    // Replies already queued on the socket are read before the reader stops.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = reader.join().unwrap();
    let _ = s.wait_exit(Duration::from_secs(2));
    (Load { acked, sent: total }, killed_at)
}

fn db_users(db: &MariaDb) -> BTreeSet<String> {
    db.sql(Some("openser"), "SELECT username FROM location")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The AORs `ul_dump` lists.
fn dump_users(dir: &std::path::Path) -> BTreeSet<String> {
    let d = mi(dir, "ul_dump", &[]);
    assert!(d.starts_with("200 OK\n"), "{d}");
    d.lines()
        .filter_map(|l| l.trim().strip_prefix("AOR:: "))
        .map(str::to_string)
        .collect()
}

/// Restart on the same database: the bindings loaded at start-up are the table's.
fn restart_and_check(cfg: &str, want: &BTreeSet<String>) {
    let mut s = Server::start(cfg, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(
        s.wait_log(
            &format!("loaded {} contact(s) of table location", want.len()),
            Duration::from_secs(10)
        ),
        "{}",
        s.log()
    );
    assert!(wait_fifo(&dir), "no MI FIFO\n{}", s.log());
    let got = dump_users(&dir);
    assert_eq!(&got, want, "ul_dump after restart differs from the table");
    assert!(s.stop().success(), "{}", s.log());
}

fn database() -> Option<MariaDb> {
    let db = MariaDb::start()?;
    db.create_openser_db();
    Some(db)
}

/// `db_mode` 1: not one acknowledged REGISTER is missing from the table after the crash.
#[test]
fn crash_loss_write_through_loses_nothing() {
    let Some(db) = database() else { return };
    let cfg = cfg(&db, "modparam(\"usrloc\", \"db_mode\", 1)");
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let (load, _) = load_then_kill(&mut s, 300, 3.0);
    let rows = db_users(&db);
    // Most REGISTERs were answered (it is not a test of an idle server).
    assert!(
        load.acked.len() * 2 > load.sent,
        "only {} of {} REGISTERs answered\n{}",
        load.acked.len(),
        load.sent,
        s.log()
    );
    let lost: Vec<&String> = load.acked.keys().filter(|u| !rows.contains(*u)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged REGISTER(s) lost with db_mode 1: {lost:?}",
        lost.len()
    );
    eprintln!(
        "db_mode 1: sent {}, acknowledged {}, rows {}, lost 0",
        load.sent,
        load.acked.len(),
        rows.len()
    );
    restart_and_check(&cfg, &rows);
}

/// `db_mode` 2 with `timer_interval` 2: what the table misses after the crash was all
/// acknowledged in the last `timer_interval` (+1 s for the write-back pass itself and
/// the timer's one-second tick) before the kill; everything older is there.
#[test]
fn crash_loss_write_back_bounded_by_timer_interval() {
    let Some(db) = database() else { return };
    let interval = 2u64;
    let cfg = cfg(
        &db,
        &format!(
            "modparam(\"usrloc\", \"db_mode\", 2)\nmodparam(\"usrloc\", \"timer_interval\", {interval})"
        ),
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let (load, killed_at) = load_then_kill(&mut s, 300, 5.0);
    let rows = db_users(&db);
    assert!(
        load.acked.len() * 2 > load.sent,
        "only {} of {} REGISTERs answered\n{}",
        load.acked.len(),
        load.sent,
        s.log()
    );
    let bound = Duration::from_secs(interval + 1);
    let window_start = killed_at - bound;
    let lost: Vec<(&String, &Instant)> = load
        .acked
        .iter()
        .filter(|(u, _)| !rows.contains(*u))
        .collect();
    let too_old: Vec<(&String, Duration)> = lost
        .iter()
        .filter(|(_, t)| **t < window_start)
        .map(|(u, t)| (*u, killed_at - **t))
        .collect();
    assert!(
        too_old.is_empty(),
        "{} binding(s) acknowledged more than {bound:?} before the kill are missing: {too_old:?}",
        too_old.len()
    );
    // The write-back ran during the load: the table is not empty, and the older
    // acknowledged REGISTERs (the first seconds of the load) are in it.
    let old = load.acked.values().filter(|t| **t < window_start).count();
    assert!(old > 0, "no REGISTER acknowledged before the loss window");
    assert!(
        rows.len() >= old,
        "{} rows, {old} REGISTERs older than the window",
        rows.len()
    );
    let in_window = load.acked.len() - old;
    eprintln!(
        "db_mode 2 (timer_interval {interval}): sent {}, acknowledged {}, rows {}, lost {} (all within the last {bound:?}; {in_window} acknowledged in that window)",
        load.sent,
        load.acked.len(),
        rows.len(),
        lost.len()
    );
    restart_and_check(&cfg, &rows);
}

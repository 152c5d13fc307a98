//! dispatcher (issue 15): destination sets from a list file and from MariaDB, the
//! algorithms (round-robin over three SIPp UASs, Call-ID hash, weights), failover on
//! 503 and on timeout with `ds_next_dst`, probing through tm's local requests, the MI
//! commands.

use crate::harness::*;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `n` SIPp calls (uac.xml) to `user` through the server at `rate` calls/s; every one
/// must succeed.
pub fn calls_at(dir: &std::path::Path, port: u16, user: &str, n: u64, rate: u32) {
    let stf = dir.join(format!("uac-{}.csv", free_udp_port()));
    let out = sipp_run(
        dir,
        &[
            "-sf".into(),
            scenario("uac.xml"),
            format!("127.0.0.1:{port}"),
            "-s".into(),
            user.into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            n.to_string(),
            "-r".into(),
            rate.to_string(),
            "-trace_stat".into(),
            "-stf".into(),
            stf.display().to_string(),
        ],
    );
    let stat = std::fs::read_to_string(&stf).unwrap_or_default();
    assert!(
        out.status.success(),
        "calls failed: {}\n{stat}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Count the log lines `DS-SELECT <uri>` per URI.
fn selected(log: &str, uri: &str) -> usize {
    let needle = format!("DS-SELECT {uri}\n");
    log.matches(&needle).count()
}

const BASE: &str = r#"listen=udp:127.0.0.1:{PORT}
children=3
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "mi_fifo.so"
loadmodule "dispatcher.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("tm", "fr_timer", 2)
modparam("tm", "wt_timer", 1)
"#;

#[test]
fn round_robin_splits_300_calls_over_three_uases() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("ds-rr");
    let (_u1, p1) = sipp_uas_file(dir.path(), "uas.xml");
    let (_u2, p2) = sipp_uas_file(dir.path(), "uas.xml");
    let (_u3, p3) = sipp_uas_file(dir.path(), "uas.xml");
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        format!(
            "# three media servers\n1 sip:127.0.0.1:{p1}\n1 sip:127.0.0.1:{p2}\n1 sip:127.0.0.1:{p3}\n"
        ),
    )
    .unwrap();
    let cfg = format!(
        r#"{BASE}modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "ds_ping_interval", 0)
route {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
        if (!ds_select_dst("1", "4")) {{
            sl_send_reply("503", "No destination");
            exit;
        }}
        xlog("L_INFO", "DS-SELECT $du\n");
    }}
    t_relay();
}}
"#,
        list.display()
    );
    let mut s = Server::start(&cfg, &[]);
    calls_at(dir.path(), s.port, "media", 300, 150);
    let log = s.log();
    let counts: Vec<usize> = [p1, p2, p3]
        .iter()
        .map(|p| selected(&log, &format!("sip:127.0.0.1:{p}")))
        .collect();
    assert_eq!(counts, vec![100, 100, 100], "{log}");
    assert!(s.stop().success());
}

#[test]
fn weights_3_to_1_split_1000_calls() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("ds-w");
    let (_u1, p1) = sipp_uas_file(dir.path(), "uas.xml");
    let (_u2, p2) = sipp_uas_file(dir.path(), "uas.xml");
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        format!("7 sip:127.0.0.1:{p1} 0 weight=3\n7 sip:127.0.0.1:{p2} 0 weight=1\n"),
    )
    .unwrap();
    let cfg = format!(
        r#"{BASE}modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "ds_ping_interval", 0)
route {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
        if (!ds_select_dst("7", "9")) {{
            sl_send_reply("503", "No destination");
            exit;
        }}
        xlog("L_INFO", "DS-SELECT $du\n");
    }}
    t_relay();
}}
"#,
        list.display()
    );
    let mut s = Server::start(&cfg, &[]);
    calls_at(dir.path(), s.port, "weighted", 1000, 200);
    let log = s.log();
    let heavy = selected(&log, &format!("sip:127.0.0.1:{p1}"));
    let light = selected(&log, &format!("sip:127.0.0.1:{p2}"));
    assert_eq!(heavy + light, 1000, "{log}");
    // 3:1 within 5 % of the 1,000 calls (the weighted order makes it exact: 750/250)
    assert!((700..=800).contains(&heavy), "{heavy} / {light}");
    assert!(s.stop().success());
}

/// A config answering every request statelessly with the destination chosen for it
/// (`X-Dst`) and whether it came from a listed address (`X-From`).
fn sl_cfg(list: &std::path::Path, extra: &str) -> String {
    format!(
        r#"{BASE}modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "ds_ping_interval", 0)
{extra}
route {{
    if ($rU == "hash") {{
        ds_select_dst("1", "0");
    }} else if ($rU == "weight") {{
        ds_select_dst("2", "9");
    }} else if ($rU == "rr") {{
        ds_select_dst("1", "4");
    }} else if ($rU == "domain") {{
        ds_select_domain("1", "8");
        append_to_reply("X-Ruri: $ru\r\n");
    }}
    if (ds_is_from_list("3")) {{
        append_to_reply("X-From: listed\r\n");
    }}
    append_to_reply("X-Dst: $du\r\n");
    sl_send_reply("200", "OK");
}}
"#,
        list.display()
    )
}

fn ask(c: &Client, port: u16, user: &str, callid: &str) -> (String, String) {
    c.send(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        &request(
            "MESSAGE",
            &format!("sip:{user}@127.0.0.1:{port}"),
            c.port(),
            callid,
            1,
            "",
        ),
    );
    let r = c.recv_matching("200").expect("a 200 reply");
    (
        header(&r, "X-Dst").unwrap_or("").to_string(),
        header(&r, "X-From").unwrap_or("").to_string(),
    )
}

#[test]
fn hash_weights_mi_state_and_from_list() {
    let dir = TempDir::new("ds-sl");
    let c = Client::new();
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        format!(
            "1 sip:127.0.0.1:7001\n1 sip:127.0.0.1:7002\n1 sip:127.0.0.1:7003\n\
             2 sip:127.0.0.1:7101 0 weight=3\n2 sip:127.0.0.1:7102 0 weight=1\n\
             3 sip:127.0.0.1:{}\n",
            c.port()
        ),
    )
    .unwrap();
    let mut s = Server::start(&sl_cfg(&list, ""), &[]);
    assert!(wait_fifo(s.dir.path()));
    // Hash over Call-ID: the same call always goes to the same place; calls spread.
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let cid = format!("hash-call-{i}");
        let (a, _) = ask(&c, s.port, "hash", &cid);
        let (b, _) = ask(&c, s.port, "hash", &cid);
        assert!(a.starts_with("sip:127.0.0.1:700"), "{a}");
        assert_eq!(a, b, "Call-ID {cid} moved");
        seen.insert(a);
    }
    assert!(seen.len() >= 2, "{seen:?}");
    // Weights 3:1 over 1,000 requests: within 5 %.
    let mut first = 0;
    for i in 0..1000 {
        let (d, _) = ask(&c, s.port, "weight", &format!("w-{i}"));
        match d.as_str() {
            "sip:127.0.0.1:7101" => first += 1,
            "sip:127.0.0.1:7102" => {}
            other => panic!("weight picked {other}"),
        }
    }
    assert!((712..=787).contains(&first), "{first} of 1000 to weight 3");
    // The request comes from a destination of set 3.
    let (_, from) = ask(&c, s.port, "none", "from-1");
    assert_eq!(from, "listed");
    // ds_select_domain rewrites the R-URI's host and port (alg 8: the first).
    c.send(
        s.addr(),
        &request(
            "MESSAGE",
            "sip:domain@example.com",
            c.port(),
            "dom-1",
            1,
            "",
        ),
    );
    let r = c.recv_matching("200").unwrap();
    assert_eq!(
        header(&r, "X-Ruri"),
        Some("sip:domain@127.0.0.1:7001"),
        "{r}"
    );
    // MI: one destination inactive by hand: round-robin skips it; active again.
    let r = mi(
        s.dir.path(),
        "ds_set_state",
        &["i", "1", "sip:127.0.0.1:7002"],
    );
    assert!(r.starts_with("200"), "{r}");
    let l = mi(s.dir.path(), "ds_list", &[]);
    assert!(
        l.contains("sip:127.0.0.1:7002") && l.contains("flags=I"),
        "{l}"
    );
    for i in 0..12 {
        let (d, _) = ask(&c, s.port, "rr", &format!("rr-{i}"));
        assert_ne!(d, "sip:127.0.0.1:7002");
    }
    let r = mi(
        s.dir.path(),
        "ds_set_state",
        &["a", "1", "sip:127.0.0.1:7002"],
    );
    assert!(r.starts_with("200"), "{r}");
    let mut hit = false;
    for i in 0..6 {
        let (d, _) = ask(&c, s.port, "rr", &format!("rr2-{i}"));
        hit |= d == "sip:127.0.0.1:7002";
    }
    assert!(hit);
    let r = mi(
        s.dir.path(),
        "ds_set_state",
        &["i", "9", "sip:127.0.0.1:7002"],
    );
    assert!(r.starts_with("404"), "{r}");
    // ds_reload picks up an edited list file; states of kept destinations stay.
    mi(
        s.dir.path(),
        "ds_set_state",
        &["i", "1", "sip:127.0.0.1:7001"],
    );
    std::fs::write(
        &list,
        "1 sip:127.0.0.1:7001\n1 sip:127.0.0.1:7004\n2 sip:127.0.0.1:7101\n",
    )
    .unwrap();
    let r = mi(s.dir.path(), "ds_reload", &[]);
    assert!(r.starts_with("200"), "{r}");
    let l = mi(s.dir.path(), "ds_list", &[]);
    assert!(
        l.contains("sip:127.0.0.1:7004") && !l.contains("7002"),
        "{l}"
    );
    for i in 0..4 {
        let (d, _) = ask(&c, s.port, "rr", &format!("rr3-{i}"));
        assert_eq!(d, "sip:127.0.0.1:7004", "7001 stays inactive");
    }
    // A broken list file: the reload fails, the old sets stay.
    std::fs::write(&list, "1 sip:127.0.0.1:7001\nx y\n").unwrap();
    let r = mi(s.dir.path(), "ds_reload", &[]);
    assert!(r.starts_with("500"), "{r}");
    let (d, _) = ask(&c, s.port, "rr", "rr4");
    assert_eq!(d, "sip:127.0.0.1:7004");
    assert!(s.stop().success());
}

#[test]
fn failover_on_503_and_timeout_with_ds_next_dst() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("ds-fo");
    let (_bad, p503) = sipp_uas_file(dir.path(), "uas_503.xml");
    let (_good, pok) = sipp_uas_file(dir.path(), "uas.xml");
    // A destination that never answers: bound, so no ICMP either.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let psil = silent.local_addr().unwrap().port();
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        format!("1 sip:127.0.0.1:{p503}\n1 sip:127.0.0.1:{psil}\n1 sip:127.0.0.1:{pok}\n"),
    )
    .unwrap();
    let cfg = format!(
        r#"{BASE}modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "ds_ping_interval", 0)
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "dst_avp", "$avp(i:271)")
modparam("dispatcher", "grp_avp", "$avp(i:272)")
modparam("dispatcher", "cnt_avp", "$avp(i:273)")
modparam("dispatcher", "ds_probing_threshhold", 1)
route {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
        if (!ds_select_dst("1", "4")) {{
            sl_send_reply("503", "No destination");
            exit;
        }}
        xlog("L_INFO", "DS-TRY $du of $avp(i:273)\n");
        t_on_failure("1");
    }}
    t_relay();
}}
failure_route[1] {{
    if (t_check_status("503|408")) {{
        ds_mark_dst("p");
        if (ds_next_dst()) {{
            xlog("L_INFO", "DS-TRY $du after $T_reply_code\n");
            t_on_failure("1");
            t_relay();
        }}
    }}
}}
"#,
        list.display()
    );
    let mut s = Server::start(&cfg, &[]);
    calls_at(dir.path(), s.port, "fo", 1, 1);
    let mut buf = [0u8; 4096];
    let got = silent
        .recv_from(&mut buf)
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
        .unwrap_or_default();
    assert!(
        got.starts_with("INVITE "),
        "the silent destination was tried"
    );
    let log = s.log();
    let tries: Vec<&str> = log.lines().filter(|l| l.contains("DS-TRY")).collect();
    assert_eq!(tries.len(), 3, "{log}");
    assert!(
        tries[0].contains(&format!("DS-TRY sip:127.0.0.1:{p503} of 3")),
        "{log}"
    );
    assert!(
        tries[1].contains(&format!("DS-TRY sip:127.0.0.1:{psil} after 503")),
        "{log}"
    );
    assert!(
        tries[2].contains(&format!("DS-TRY sip:127.0.0.1:{pok} after 408")),
        "{log}"
    );
    // ds_mark_dst("p") with threshhold 1: both failed destinations are now probing
    // (no probes: ds_ping_interval 0), the one that answered stays active.
    let l = mi(s.dir.path(), "ds_list", &[]);
    let flag_of = |port: u16| {
        l.lines()
            .find(|x| x.contains(&format!("sip:127.0.0.1:{port}")))
            .and_then(|x| x.split("flags=").nth(1))
            .map(|f| f.chars().next().unwrap_or(' '))
    };
    assert_eq!(
        (flag_of(p503), flag_of(psil), flag_of(pok)),
        (Some('P'), Some('P'), Some('A')),
        "{l}"
    );
    assert!(s.stop().success());
}

/// Wait until `ds_list` shows `uri` with `flag` (A, I, P).
fn wait_state(dir: &std::path::Path, uri: &str, flag: &str, within: Duration) -> String {
    let end = Instant::now() + within;
    loop {
        let l = mi(dir, "ds_list", &[]);
        let line = l
            .lines()
            .find(|x| x.contains(uri))
            .unwrap_or("")
            .to_string();
        if line.contains(&format!("flags={flag}")) || Instant::now() > end {
            return l;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn probing_marks_silent_inactive_and_active_again() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("ds-probe");
    let (_uas, pok) = sipp_uas_file(dir.path(), "uas_options.xml");
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let psil = silent.local_addr().unwrap().port();
    // The "silent" destination: counts the probes, answers only once told to.
    let answer = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicUsize::new(0));
    let responder = {
        let (answer, stop, probes) = (answer.clone(), stop.clone(), probes.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = recv_from(&silent, &mut buf) else {
                    continue;
                };
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !m.starts_with("OPTIONS ") {
                    continue;
                }
                probes.fetch_add(1, Ordering::SeqCst);
                if answer.load(Ordering::SeqCst) {
                    let mut r = String::from("SIP/2.0 200 OK\r\n");
                    for n in ["Via", "From", "Call-ID", "CSeq"] {
                        if let Some(v) = header(&m, n) {
                            r.push_str(&format!("{n}: {v}\r\n"));
                        }
                    }
                    r.push_str(&format!(
                        "To: {};tag=up\r\nContent-Length: 0\r\n\r\n",
                        header(&m, "To").unwrap_or("")
                    ));
                    let _ = silent.send_to(r.as_bytes(), from);
                }
            }
        })
    };
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        format!("1 sip:127.0.0.1:{pok}\n1 sip:127.0.0.1:{psil}\n"),
    )
    .unwrap();
    let cfg = format!(
        r#"{BASE}modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_threshhold", 2)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_ping_from", "sip:prober@127.0.0.1")
route {{
    sl_send_reply("404", "Not here");
}}
"#,
        list.display()
    )
    .replace(
        "modparam(\"tm\", \"fr_timer\", 2)",
        "modparam(\"tm\", \"fr_timer\", 1)",
    )
    .replace("debug=3", "debug=4");
    let mut s = Server::start(&cfg, &[]);
    assert!(wait_fifo(s.dir.path()));
    let silent_uri = format!("sip:127.0.0.1:{psil}");
    let l = wait_state(s.dir.path(), &silent_uri, "P", Duration::from_secs(30));
    let line = l.lines().find(|x| x.contains(&silent_uri)).unwrap_or("");
    assert!(
        line.contains("flags=P"),
        "silent destination not probing:\n{l}"
    );
    assert!(probes.load(Ordering::SeqCst) >= 2);
    // tm's local request timed out: the callback got a local 408 (slot 1: the silent one)
    assert!(s.log().contains("probe of slot 1: 408"), "{}", s.log());
    // The SIPp UAS answered every probe: still active.
    let ok_line = l
        .lines()
        .find(|x| x.contains(&format!("sip:127.0.0.1:{pok}")))
        .unwrap_or("");
    assert!(ok_line.contains("flags=A"), "{l}");
    // It answers now: active again.
    answer.store(true, Ordering::SeqCst);
    let l = wait_state(s.dir.path(), &silent_uri, "A", Duration::from_secs(30));
    let line = l.lines().find(|x| x.contains(&silent_uri)).unwrap_or("");
    assert!(line.contains("flags=A"), "not reactivated:\n{l}");
    stop.store(true, Ordering::SeqCst);
    responder.join().unwrap();
    let log = s.log();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(s.stop().success());
}

#[test]
fn sets_from_mariadb_and_reload() {
    let Some(db) = mariadb::MariaDb::start() else {
        return;
    };
    db.create_openser_db();
    db.sql(
        Some("openser"),
        "INSERT INTO dispatcher (setid, destination, description) VALUES \
         (1, 'sip:127.0.0.1:7201', 'a'), (1, 'sip:127.0.0.1:7202', 'b')",
    );
    let dir = TempDir::new("ds-db");
    let list = dir.file("unused.list");
    std::fs::write(&list, "").unwrap();
    let url = db.url("openser", "openserrw", "openser");
    let cfg = sl_cfg(
        &list,
        &format!("loadmodule \"mysql.so\"\nmodparam(\"dispatcher\", \"db_url\", \"{url}\")\n"),
    );
    let mut s = Server::start(&cfg, &[]);
    assert!(wait_fifo(s.dir.path()));
    let c = Client::new();
    let a: Vec<String> = (0..4)
        .map(|i| ask(&c, s.port, "rr", &format!("db-{i}")).0)
        .collect();
    assert_eq!(
        a,
        [
            "sip:127.0.0.1:7201",
            "sip:127.0.0.1:7202",
            "sip:127.0.0.1:7201",
            "sip:127.0.0.1:7202"
        ]
    );
    db.sql(
        Some("openser"),
        "INSERT INTO dispatcher (setid, destination, description) VALUES (1, 'sip:127.0.0.1:7203', 'c')",
    );
    let r = mi(s.dir.path(), "ds_reload", &[]);
    assert!(r.starts_with("200"), "{r}");
    let l = mi(s.dir.path(), "ds_list", &[]);
    assert!(l.contains("sip:127.0.0.1:7203"), "{l}");
    assert!(s.stop().success());
}

/// A 200 for `req` (every Via, From, To with a tag, Call-ID, CSeq).
fn ok_for(req: &str, tag: &str) -> String {
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, n) {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    s.push_str(&format!(
        "To: {};tag={tag}\r\nContent-Length: 0\r\n\r\n",
        header(req, "To").unwrap_or("")
    ));
    s
}

#[test]
fn call_load_picks_the_least_busy_destination() {
    let dir = TempDir::new("ds-load");
    let uas = [Client::new(), Client::new()];
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        format!(
            "2 sip:127.0.0.1:{}\n2 sip:127.0.0.1:{}\n",
            uas[0].port(),
            uas[1].port()
        ),
    )
    .unwrap();
    let cfg = format!(
        r#"{BASE}modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "ds_ping_interval", 0)
modparam("dispatcher", "call_load_flag", 9)
route {{
    if ($tt != null) {{
        t_relay();
        exit;
    }}
    if (!ds_select_dst("2", "10")) {{
        sl_send_reply("503", "No destination");
        exit;
    }}
    t_relay();
}}
"#,
        list.display()
    );
    let mut s = Server::start(&cfg, &[]);
    assert!(wait_fifo(s.dir.path()));
    let caller = Client::new();
    // An answered call; returns the index of the UAS that took it.
    let call = |id: &str| -> usize {
        caller.send(
            s.addr(),
            &request("INVITE", "sip:load@127.0.0.1", caller.port(), id, 1, ""),
        );
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < end, "INVITE {id} reached no UAS");
            for (k, u) in uas.iter().enumerate() {
                if let Some((m, from)) = u.recv_timeout(Duration::from_millis(50))
                    && m.starts_with("INVITE ")
                {
                    u.send(from, &ok_for(&m, &format!("t{id}")));
                    assert!(caller.recv_matching("200").is_some());
                    return k;
                }
            }
        }
    };
    let a = call("load-a");
    let b = call("load-b");
    assert_ne!(a, b, "the second call goes to the idle destination");
    // The 2xx are counted (by the tm callback, right after the 200 went out).
    let both_busy = |what: &str| {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let l = mi(s.dir.path(), "ds_list", &[]);
            if l.matches("load=1").count() == 2 {
                return;
            }
            assert!(Instant::now() < end, "{what}: {l}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    both_busy("two calls, one each");
    // A hangs up: its destination is the least busy again.
    let ruri = format!("sip:127.0.0.1:{}", uas[a].port());
    let bye = request("BYE", &ruri, caller.port(), "load-a", 2, "").replace(
        &format!("To: <{ruri}>"),
        &format!("To: <{ruri}>;tag=tload-a"),
    );
    caller.send(s.addr(), &bye);
    let end = Instant::now() + Duration::from_secs(5);
    while !mi(s.dir.path(), "ds_list", &[]).contains("load=0") {
        assert!(Instant::now() < end, "BYE did not end the call");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = call("load-c");
    assert_eq!(c, a, "the third call goes where the first one ended");
    both_busy("after the third call");
    assert!(s.stop().success());
}

#[test]
fn probing_mode_0_probes_only_destinations_in_probing_state() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("ds-probe0");
    let (_uas, pok) = sipp_uas_file(dir.path(), "uas_options.xml");
    // A destination that would count probes if any came.
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let pq = quiet.local_addr().unwrap().port();
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        format!("1 sip:127.0.0.1:{pok}\n1 sip:127.0.0.1:{pq}\n"),
    )
    .unwrap();
    let cfg = format!(
        r#"{BASE}modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_mode", 0)
route {{
    sl_send_reply("404", "Not here");
}}
"#,
        list.display()
    );
    let mut s = Server::start(&cfg, &[]);
    assert!(wait_fifo(s.dir.path()));
    // Set to probing by hand: the probe's 200 makes it active again.
    let uri = format!("sip:127.0.0.1:{pok}");
    let r = mi(s.dir.path(), "ds_set_state", &["p", "1", &uri]);
    assert!(r.starts_with("200"), "{r}");
    let l = mi(s.dir.path(), "ds_list", &[]);
    assert!(
        l.lines().any(|x| x.contains(&uri) && x.contains("flags=P")),
        "{l}"
    );
    let l = wait_state(s.dir.path(), &uri, "A", Duration::from_secs(20));
    assert!(
        l.lines().any(|x| x.contains(&uri) && x.contains("flags=A")),
        "not reactivated by its probe:\n{l}"
    );
    // The active one was never probed (mode 0).
    let mut buf = [0u8; 2048];
    assert!(
        recv_from(&quiet, &mut buf).is_err(),
        "an active destination got a probe"
    );
    assert!(s.stop().success());
}

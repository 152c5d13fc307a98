//! Several openser instances behind a dispatcher, sharing a MariaDB Galera cluster
//! (issue 20): three registrar/proxy instances with usrloc `db_mode` 3, each on its
//! own Galera node, and one front running dispatcher with probing and failover.
//!
//! The DB-health mechanism under test: an instance answers the front's OPTIONS probe
//! with a `lookup()` of a fixed AOR; when that lookup returns −3 (the location table
//! could not be read) it replies 503, which the front's probing counts as a failure
//! (only 200 and 501 keep a destination up), so after `ds_probing_threshhold` probes
//! the instance is out of rotation, and back once its node answers again.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::galera::Galera;
use crate::harness::*;

/// An instance: registrar and proxy, bindings only in the database (`db_mode` 3).
fn instance_cfg(db_url: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "xlog.so"
loadmodule "maxfwd.so"
loadmodule "mysql.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "rr.so"
modparam("usrloc", "db_mode", 3)
modparam("usrloc", "db_url", "{db_url}")
modparam("mysql", "connect_timeout", 2)
modparam("mysql", "rw_timeout", 3)
modparam("mysql", "reconnect_max_delay", 1)
route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (method == "OPTIONS") {{
        # DB health for the front's probe: reading a (never registered) AOR fails
        # with -3 when the location table cannot be read.
        rewriteuser("dbcheck");
        lookup("location");
        if ($rc == -3) {{
            sl_send_reply("503", "Location database unavailable");
            exit;
        }}
        sl_send_reply("200", "OK");
        exit;
    }}
    # in-dialog requests follow the route set (see the front)
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "REGISTER") {{
        xlog("L_INFO", "INSTANCE-REGISTER $tu\n");
        save("location");
        exit;
    }}
    if (method == "INVITE") {{
        if (!lookup("location")) {{
            # $rc is lookup's: -3 when the database could not be read.
            if ($rc == -3) {{
                sl_send_reply("500", "Server Internal Error");
            }} else {{
                sl_send_reply("404", "Not Found");
            }}
            exit;
        }}
        xlog("L_INFO", "INSTANCE-CALL $ru\n");
        record_route();
    }}
    t_relay();
}}
"#
    )
}

/// The front: dispatcher over the instances, round-robin, probing every second
/// (2 failures in a row = out), failover to the next instance on 5xx or timeout.
fn front_cfg(list: &std::path::Path) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=4
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "xlog.so"
loadmodule "mi_fifo.so"
loadmodule "maxfwd.so"
loadmodule "dispatcher.so"
loadmodule "rr.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("tm", "fr_timer", 2)
modparam("tm", "fr_inv_timer", 5)
modparam("tm", "wt_timer", 1)
modparam("dispatcher", "list_file", "{}")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "dst_avp", "$avp(i:271)")
modparam("dispatcher", "grp_avp", "$avp(i:272)")
modparam("dispatcher", "cnt_avp", "$avp(i:273)")
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_threshhold", 2)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_ping_from", "sip:front@127.0.0.1")
route {{
    # loop protection, as 1.2's sample config (a request whose R-URI names the front
    # would otherwise travel front -> instance -> front until it outgrows a datagram)
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    # In-dialog requests follow the route set, so ACK and BYE reach the instance that
    # relayed the INVITE: dispatched afresh, a BYE could take another instance, and
    # SIPp's UAS answers it to the INVITE's instance, which is not in its Via path.
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "ACK" || method == "CANCEL") {{
        t_relay();
        exit;
    }}
    if (!ds_select_dst("1", "4")) {{
        sl_send_reply("503", "No instance available");
        exit;
    }}
    xlog("L_INFO", "FRONT $rm $du\n");
    if (method == "INVITE") {{
        record_route();
    }}
    t_on_failure("1");
    t_relay();
}}
failure_route[1] {{
    if (t_check_status("5[0-9][0-9]|408")) {{
        xlog("L_INFO", "FRONT-FAILOVER $avp(i:271) $T_reply_code\n");
        ds_mark_dst("p");
        if (ds_next_dst()) {{
            xlog("L_INFO", "FRONT $rm $du\n");
            t_on_failure("1");
            t_relay();
        }}
    }}
}}
"#,
        list.display()
    )
}

/// The `ds_list` line of `uri`.
fn ds_line(dir: &std::path::Path, uri: &str) -> String {
    mi(dir, "ds_list", &[])
        .lines()
        .find(|l| l.contains(uri))
        .unwrap_or("")
        .to_string()
}

/// Wait (up to `within`) until `uri`'s state in `ds_list` is active (`up`) or not.
fn wait_active(dir: &std::path::Path, uri: &str, up: bool, within: Duration) -> String {
    let end = Instant::now() + within;
    loop {
        let l = ds_line(dir, uri);
        if l.contains("flags=A") == up || Instant::now() > end {
            return l;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send a REGISTER for `user` (contact `contact`) through the front; the reply code
/// (0 when none came).
fn register(c: &Client, front: std::net::SocketAddr, user: &str, contact: &str) -> u16 {
    let callid = format!("reg-{user}-{}", c.port());
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{callid}\r\n\
         From: <sip:{user}@127.0.0.1>;tag={user}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {callid}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <{contact}>\r\n\
         Expires: 3600\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        p = c.port()
    );
    c.send(front, &msg);
    let end = Instant::now() + Duration::from_secs(12);
    while Instant::now() < end {
        let Some((m, _)) = c.recv_timeout(Duration::from_secs(12)) else {
            break;
        };
        if !m.contains(&callid) {
            continue;
        }
        let code: u16 = m
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if code >= 200 {
            return code;
        }
    }
    0
}

/// The usernames in node `i`'s location table.
fn users_on(g: &Galera, i: usize) -> std::collections::BTreeSet<String> {
    g.sql(i, "SELECT username FROM openser.location")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The whole deployment: front + three instances + three Galera nodes.
///
/// 1. A phone registers through the front and lands on one instance; a call from
///    another phone through the front lands on another one, which finds the binding in
///    the shared database and completes the call.
/// 2. Galera node 2 stops under REGISTER load: its instance answers 500 (the front
///    fails over and counts it), the probes get 503 and the front takes the instance
///    out of rotation; every REGISTER answered 200 is in the surviving nodes; node 2
///    rejoins, catches up (row counts equal) and its instance comes back.
/// 3. Instance 1 is SIGKILLed under 50 calls/s: the front's probing marks it inactive,
///    at most one probe interval's worth of calls fail, then all calls succeed
///    through instances 2 and 3.
#[test]
fn instances_behind_a_dispatcher_share_a_galera_cluster() {
    if !require("sipp") {
        return;
    }
    let t0 = Instant::now();
    let Some(mut g) = Galera::start(3) else {
        return;
    };
    eprintln!("galera: 3 nodes synced in {:?}", g.startup);
    let dir = TempDir::new("galera-sip");
    let mut inst: Vec<Server> = (0..3)
        .map(|i| Server::start(&instance_cfg(&g.openser_url(i)), &[]))
        .collect();
    let uris: Vec<String> = inst
        .iter()
        .map(|s| format!("sip:127.0.0.1:{}", s.port))
        .collect();
    let list = dir.file("dispatcher.list");
    std::fs::write(
        &list,
        uris.iter().map(|u| format!("1 {u}\n")).collect::<String>(),
    )
    .unwrap();
    let mut front = Server::start(&front_cfg(&list), &[]);
    assert!(wait_fifo(front.dir.path()));
    let fdir = front.dir.path().to_path_buf();
    for u in &uris {
        let l = wait_active(&fdir, u, true, Duration::from_secs(10));
        assert!(l.contains("flags=A"), "{u} not active: {l}");
    }

    // 1. Register on one instance, call through another.
    let (_uas, uas_port) = sipp_uas(dir.path());
    let phone = Client::new();
    let contact = format!("sip:callee@127.0.0.1:{uas_port}");
    assert_eq!(register(&phone, front.addr(), "callee", &contact), 200);
    let reg_on: Vec<usize> = (0..3)
        .filter(|&i| {
            inst[i]
                .log()
                .contains("INSTANCE-REGISTER sip:callee@127.0.0.1")
        })
        .collect();
    assert_eq!(reg_on.len(), 1, "REGISTER handled by exactly one instance");
    for i in 0..3 {
        g.wait_for(
            i,
            "SELECT COUNT(*) FROM openser.location WHERE username='callee'",
            "1",
        );
    }
    let out = sipp_once(dir.path(), "uac.xml", front.port, &["-s", "callee"]);
    assert!(
        out.status.success(),
        "call failed: {}\nfront:\n{}\ninstances:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        front.log(),
        inst[0].log(),
        inst[1].log(),
        inst[2].log()
    );
    let call_on: Vec<usize> = (0..3)
        .filter(|&i| inst[i].log().contains(&format!("INSTANCE-CALL {contact}")))
        .collect();
    assert_eq!(
        call_on.len(),
        1,
        "the call went through exactly one instance"
    );
    assert_ne!(
        reg_on[0], call_on[0],
        "the call landed on another instance than the REGISTER"
    );

    // 2. Galera node 2 (instance 2's database) stops under REGISTER load.
    let n = 120;
    let mut acked = Vec::new();
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for k in 0..n {
        if k == 30 {
            g.begin_stop(1);
        }
        let user = format!("r{k}");
        let code = register(
            &phone,
            front.addr(),
            &user,
            &format!("sip:{user}@127.0.0.1:9"),
        );
        *codes.entry(code).or_default() += 1;
        if code == 200 {
            acked.push(user);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    g.stop_node(1);
    let l = wait_active(&fdir, &uris[1], false, Duration::from_secs(15));
    assert!(
        !l.contains("flags=A"),
        "instance 2 still in rotation without its database: {l}"
    );
    let flog = front.log();
    assert!(
        flog.contains(&format!("FRONT-FAILOVER {} 500", uris[1])),
        "instance 2 never answered 500 while its database was down (codes {codes:?}):\n{}\nfront:\n{flog}",
        inst[1].log()
    );
    assert!(inst[1].log().contains("cannot read"), "{}", inst[1].log());
    eprintln!("REGISTER replies through the front: {codes:?}");
    assert!(
        acked.len() >= n / 2,
        "too few REGISTERs acknowledged: {codes:?}"
    );
    for i in [0, 2] {
        let have = users_on(&g, i);
        let missing: Vec<&String> = acked.iter().filter(|u| !have.contains(*u)).collect();
        assert!(
            missing.is_empty(),
            "node {}: acknowledged REGISTERs missing: {missing:?}",
            i + 1
        );
    }
    // While out of rotation nothing goes to instance 2.
    let before = front
        .log()
        .matches(&format!("FRONT REGISTER {}", uris[1]))
        .count();
    for k in 0..6 {
        let user = format!("s{k}");
        assert_eq!(
            register(
                &phone,
                front.addr(),
                &user,
                &format!("sip:{user}@127.0.0.1:9")
            ),
            200
        );
    }
    let after = front
        .log()
        .matches(&format!("FRONT REGISTER {}", uris[1]))
        .count();
    assert_eq!(
        before, after,
        "REGISTERs sent to the instance without database"
    );
    // Node 2 rejoins and catches up; its instance comes back into rotation.
    g.restart_node(1);
    let count = g.sql(0, "SELECT COUNT(*) FROM openser.location");
    g.wait_for(1, "SELECT COUNT(*) FROM openser.location", count.trim());
    assert_eq!(users_on(&g, 1), users_on(&g, 0));
    assert_eq!(users_on(&g, 2), users_on(&g, 0));
    let l = wait_active(&fdir, &uris[1], true, Duration::from_secs(20));
    assert!(l.contains("flags=A"), "instance 2 not back: {l}");

    // 3. SIGKILL instance 1 under 50 calls/s.
    let calls = 400u64;
    let stf = dir.file("load.csv");
    let mut load = owned("sipp")
        .args([
            "-sf".to_string(),
            scenario("uac.xml"),
            format!("127.0.0.1:{}", front.port),
            "-s".into(),
            "callee".into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            calls.to_string(),
            "-r".into(),
            "50".into(),
            "-trace_stat".into(),
            "-fd".into(),
            "1".into(),
            "-stf".into(),
            stf.display().to_string(),
            "-nostdin".into(),
            "-timeout".into(),
            "60".into(),
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    std::thread::sleep(Duration::from_secs(3));
    inst[0].signal(9);
    assert!(inst[0].wait_exit(Duration::from_secs(5)).is_some());
    let l = wait_active(&fdir, &uris[0], false, Duration::from_secs(10));
    assert!(!l.contains("flags=A"), "killed instance still active: {l}");
    let end = Instant::now() + Duration::from_secs(90);
    let st = loop {
        if let Ok(Some(st)) = load.try_wait() {
            break st;
        }
        if Instant::now() > end {
            let _ = load.kill();
            let _ = load.wait();
            panic!("SIPp load did not finish");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stat = std::fs::read_to_string(&stf).unwrap_or_default();
    let col = |name: &str| {
        sipp_stat(&stat, name).unwrap_or_else(|| panic!("no {name} in SIPp statistics:\n{stat}"))
    };
    let (ok, failed) = (col("SuccessfulCall(C)"), col("FailedCall(C)"));
    eprintln!("50 cps, instance 1 killed: {ok} calls succeeded, {failed} failed ({st})");
    assert_eq!(ok + failed, calls, "{stat}");
    // One probe interval (1 s) of calls at 50/s.
    assert!(failed <= 50, "{failed} calls failed:\n{stat}");
    // Afterwards every call succeeds, through instances 2 and 3 only.
    let c1 = inst[1].log().matches("INSTANCE-CALL").count();
    let c2 = inst[2].log().matches("INSTANCE-CALL").count();
    sipp_calls(dir.path(), front.port, "callee", 20);
    let d1 = inst[1].log().matches("INSTANCE-CALL").count() - c1;
    let d2 = inst[2].log().matches("INSTANCE-CALL").count() - c2;
    assert_eq!(d1 + d2, 20);
    assert!(d1 > 0 && d2 > 0, "both survivors take calls: {d1} / {d2}");

    assert!(front.stop().success());
    for s in inst.iter_mut().skip(1) {
        assert!(s.stop().success());
    }
    eprintln!("galera deployment test: {:?} in all", t0.elapsed());
}

/// One instance on a plain MariaDB (no cluster, no front): with its database stopped,
/// REGISTER is answered 500 (nothing acknowledged that is not stored), INVITE to a
/// registered user 500 (lookup −3), the OPTIONS health probe 503; the mysql driver does
/// not retry on every request (its backoff); once the server is back, all recover
/// without a restart of openser.
#[test]
fn db_mode_3_instance_answers_500_and_503_while_its_database_is_down() {
    use crate::harness::mariadb::MariaDb;
    let Some(mut m) = MariaDb::start() else {
        return;
    };
    m.create_openser_db();
    let s = Server::start(
        &instance_cfg(&m.url("openser", "openserrw", "openser")),
        &[],
    );
    let c = Client::new();
    let reg = |user: &str| register(&c, s.addr(), user, &format!("sip:{user}@127.0.0.1:9"));
    let probe = |n: u32| {
        let callid = format!("probe-{n}");
        c.send(
            s.addr(),
            &request(
                "OPTIONS",
                &format!("sip:127.0.0.1:{}", s.port),
                c.port(),
                &callid,
                1,
                "",
            ),
        );
        c.recv_matching("SIP/2.0")
            .filter(|m| m.contains(&callid))
            .and_then(|m| m.split_whitespace().nth(1).map(str::to_string))
            .unwrap_or_default()
    };
    let invite = |n: u32, user: &str| {
        let callid = format!("inv-{n}");
        c.send(
            s.addr(),
            &request(
                "INVITE",
                &format!("sip:{user}@127.0.0.1"),
                c.port(),
                &callid,
                1,
                "",
            ),
        );
        loop {
            let Some(m) = c.recv_matching("SIP/2.0") else {
                return String::new();
            };
            let code = m.split_whitespace().nth(1).unwrap_or("").to_string();
            if m.contains(&callid) && code.as_str() >= "200" {
                return code;
            }
        }
    };
    assert_eq!(reg("bob"), 200);
    assert_eq!(probe(1), "200");
    assert_eq!(
        m.sql(Some("openser"), "SELECT COUNT(*) FROM location")
            .trim(),
        "1"
    );

    m.stop();
    assert_eq!(reg("carol"), 500, "REGISTER while the database is down");
    assert_eq!(invite(1, "bob"), "500", "INVITE while the database is down");
    assert_eq!(probe(2), "503", "health probe while the database is down");
    let log = s.log();
    assert!(
        log.contains("cannot read carol from table location"),
        "{log}"
    );
    // Backoff: within the reconnect delay a process fails without trying to connect
    // (the driver's delay, or core's retry pause for a process that never connected).
    assert!(
        log.contains("next reconnect in") || log.contains("retried shortly"),
        "{log}"
    );

    m.start_again();
    let end = Instant::now() + Duration::from_secs(15);
    while probe(3) != "200" {
        assert!(
            Instant::now() < end,
            "instance did not recover:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(reg("carol"), 200);
    assert_eq!(invite(2, "nobody"), "404", "database read again: not found");
    assert_eq!(
        m.sql(Some("openser"), "SELECT COUNT(*) FROM location")
            .trim(),
        "2"
    );
}

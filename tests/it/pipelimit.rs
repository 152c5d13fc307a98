//! pipelimit and ratelimit: a 200 requests/s SIPp load against a 100 requests/s
//! TAILDROP pipe (windows of 1 s) gets about half its requests refused with 503 and
//! Retry-After; ratelimit's per-second limit over a burst; pipes from the database.
//!
//! The assertions are on counts, not on time: SIPp sends 2,000 OPTIONS at 200/s, so
//! about 10 windows of the module's timer see 200 requests each, of which exactly 100
//! pass; the first and last windows are partial, so the 200s are 1,000 to 1,100 when
//! SIPp keeps its rate (checked: ±10 % of 1,000).

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "pipelimit.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("pipelimit", "timer_interval", 1)
route {
    if (!pl_check("opt", "TAILDROP", 100)) {
        pl_drop("5");
        exit;
    }
    sl_send_reply("200", "OK");
}
"#;

/// A number attribute of an MI node line (`name=value`).
fn attr(text: &str, name: &str) -> Option<u64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
}

fn windows(dir: &std::path::Path) -> u64 {
    let st = mi(dir, "pl_stats", &[]);
    st.lines()
        .find_map(|l| l.strip_prefix("windows:: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{st}"))
}

#[test]
fn taildrop_pipe_refuses_above_100_per_second_of_200() {
    if !require("sipp") {
        return;
    }
    let s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    // one request creates the pipe; a 503 carries Retry-After
    let c = Client::new();
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:x@127.0.0.1", c.port(), "pl0", 1, ""),
    );
    assert!(c.recv().expect("reply").0.starts_with("SIP/2.0 200"));
    // start the load right after a window ends, so the first window is nearly whole
    let w0 = windows(&dir);
    assert!(
        wait_until(Duration::from_secs(3), || windows(&dir) > w0),
        "the windows do not move: {}",
        s.log()
    );
    let before = mi(&dir, "pl_list", &["opt"]);
    let stf = dir.join("pl.csv");
    let out = sipp_run(
        &dir,
        &[
            "-sf".into(),
            scenario("pl_options.xml"),
            format!("127.0.0.1:{}", s.port),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            "2000".into(),
            "-r".into(),
            "200".into(),
            "-nd".into(),
            "-trace_stat".into(),
            "-stf".into(),
            stf.display().to_string(),
        ],
    );
    let st = std::fs::read_to_string(&stf).unwrap_or_default();
    let ok = sipp_stat(&st, "SuccessfulCall(C)").unwrap_or_else(|| panic!("{st}\n{out:?}"));
    let refused = sipp_stat(&st, "FailedCall(C)").unwrap();
    eprintln!("pipelimit at 200/s against 100/s: {ok} passed, {refused} refused");
    assert_eq!(ok + refused, 2000, "{st}");
    assert!(
        (900..=1100).contains(&ok),
        "{ok} of 2000 passed at 200/s against 100/s: {st}"
    );
    // the server counted the same
    let after = mi(&dir, "pl_list", &["opt"]);
    let delta = |n| attr(&after, n).unwrap() - attr(&before, n).unwrap();
    assert_eq!(
        (delta("accepted"), delta("dropped")),
        (ok, refused),
        "{after}"
    );
    assert!(after.contains("algorithm=TAILDROP limit=100"), "{after}");
    // a refused request's reply: 503 with Retry-After
    for i in 0..300 {
        c.send(
            s.addr(),
            &request(
                "OPTIONS",
                "sip:x@127.0.0.1",
                c.port(),
                &format!("plb{i}"),
                1,
                "",
            ),
        );
    }
    let mut saw = None;
    for _ in 0..300 {
        let Some((m, _)) = c.recv_timeout(Duration::from_secs(2)) else {
            break;
        };
        if m.starts_with("SIP/2.0 503") {
            saw = Some(m);
        }
    }
    let m = saw.expect("a 503 among 300 requests sent at once");
    assert!(m.starts_with("SIP/2.0 503 Server Unavailable\r\n"), "{m}");
    assert_eq!(header(&m, "Retry-After"), Some("5"), "{m}");
}

const RL_CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=1
loadmodule "sl.so"
loadmodule "ratelimit.so"
loadmodule "textops.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("ratelimit", "timer_interval", 10)
route {
    if (!rl_check("burst", 5)) {
        rl_drop("1", "3");
        exit;
    }
    append_to_reply("X-Count: $rl_count(burst)\r\n");
    sl_send_reply("200", "OK");
}
"#;

#[test]
fn ratelimit_per_second_limit_over_a_burst() {
    let s = Server::start(RL_CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let c = Client::new();
    for i in 0..80 {
        c.send(
            s.addr(),
            &request(
                "OPTIONS",
                "sip:x@127.0.0.1",
                c.port(),
                &format!("rl{i}"),
                1,
                "",
            ),
        );
    }
    let (mut ok, mut refused) = (0u64, 0u64);
    let mut counts = Vec::new();
    for _ in 0..80 {
        let (m, _) = c
            .recv_timeout(Duration::from_secs(5))
            .expect("a reply per request");
        if m.starts_with("SIP/2.0 200") {
            ok += 1;
            counts.push(header(&m, "X-Count").unwrap().parse::<u64>().unwrap());
        } else {
            assert!(m.starts_with("SIP/2.0 503 Server Unavailable"), "{m}");
            let ra: u64 = header(&m, "Retry-After").unwrap().parse().unwrap();
            assert!((1..=3).contains(&ra), "{m}");
            refused += 1;
        }
    }
    let l = mi(&dir, "rl_list", &["burst"]);
    assert_eq!(
        (attr(&l, "accepted"), attr(&l, "dropped")),
        (Some(ok), Some(refused)),
        "{l}"
    );
    assert!(l.contains("limit=50"), "5/s over windows of 10 s: {l}");
    if attr(&l, "counter") == Some(80) {
        // no window ended during the burst: exactly the limit passed, and
        // $rl_count saw them count 1..=50 (one worker: in order)
        assert_eq!(ok, 50, "{l}");
        counts.sort_unstable();
        assert_eq!(counts, (1..=50).collect::<Vec<u64>>());
    } else {
        assert!(
            (50..=100).contains(&ok),
            "a window ended mid-burst: {ok}\n{l}"
        );
    }
}

#[test]
fn pipes_from_the_database() {
    let Some(db) = Engine::start(Kind::Sqlite) else {
        return;
    };
    let out = std::process::Command::new("sqlite3")
        .arg(db.path())
        .arg("INSERT INTO pl_pipes (pipeid, algorithm, plimit) VALUES ('trunk', 'TAILDROP', 3), ('free', 'NOP', 0);")
        .output()
        .expect("sqlite3");
    assert!(out.status.success());
    let cfg = format!(
        "{}\nloadmodule \"db_sqlite.so\"\nmodparam(\"pipelimit\", \"db_url\", \"{}\")\nmodparam(\"pipelimit\", \"timer_interval\", 60)\n",
        CFG.split("route {")
            .next()
            .unwrap()
            .replace("modparam(\"pipelimit\", \"timer_interval\", 1)\n", ""),
        db.url()
    ) + r#"
route {
    pl_check("$rU");
    switch ($rc) {
        case 2:
            sl_send_reply("200", "free");
            exit;
        case -2:
            sl_send_reply("404", "no pipe");
            exit;
        case -1:
            pl_drop();
            exit;
    }
    sl_send_reply("200", "OK");
}
"#;
    let s = Server::start(&cfg, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let c = Client::new();
    let ask = |user: &str, id: &str| {
        c.send(
            s.addr(),
            &request(
                "OPTIONS",
                &format!("sip:{user}@127.0.0.1"),
                c.port(),
                id,
                1,
                "",
            ),
        );
        let (m, _) = c.recv().expect("reply");
        assert!(header(&m, "Retry-After").is_none(), "{m}");
        m.lines().next().unwrap().to_string()
    };
    let got: Vec<String> = (0..5).map(|i| ask("trunk", &format!("db{i}"))).collect();
    assert_eq!(got[..3], ["SIP/2.0 200 OK"; 3], "{got:?}");
    assert_eq!(got[3..], ["SIP/2.0 503 Server Unavailable"; 2], "{got:?}");
    assert_eq!(ask("free", "dbf"), "SIP/2.0 200 free");
    assert_eq!(ask("other", "dbo"), "SIP/2.0 404 no pipe");
    // MI pl_set_pipe raises the limit at once
    assert!(mi(&dir, "pl_set_pipe", &["trunk", "TAILDROP", "10"]).starts_with("200"));
    assert_eq!(ask("trunk", "db9"), "SIP/2.0 200 OK");
    let l = mi(&dir, "pl_list", &[]);
    assert!(l.contains("id=free algorithm=NOP"), "{l}");
    assert!(
        l.contains("id=trunk algorithm=TAILDROP limit=10 counter=6"),
        "{l}"
    );
}

//! registrar + usrloc black-box tests (issue 6): the real binary, `-DD -E`, 4 receivers.

use crate::harness::*;
use std::time::Duration;

fn cfg(extra_params: &str) -> String {
    format!(
        "listen=udp:127.0.0.1:{{PORT}}\nchildren=4\n\
         loadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
         {extra_params}\n\
         route {{\n\
           if (method==\"REGISTER\") {{ save(\"location\"); exit; }};\n\
           if (!lookup(\"location\")) {{ sl_send_reply(\"404\", \"Not Found\"); exit; }};\n\
           forward();\n\
         }}\n"
    )
}

/// Send a REGISTER for `user` and wait for its final reply.
fn register(s: &Server, c: &Client, user: &str, callid: &str, cseq: u32, extra: &str) -> String {
    let m = request(
        "REGISTER",
        &format!("sip:{user}@example.com"),
        c.port(),
        callid,
        cseq,
        extra,
    );
    c.send(s.addr(), &m);
    c.recv_matching("SIP/2.0")
        .unwrap_or_else(|| panic!("no reply to REGISTER\n{}", s.log()))
}

fn code(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn register_refresh_unregister() {
    let mut s = Server::start(&cfg(""), &[]);
    let c = Client::new();
    let ct = format!("Contact: <sip:alice@127.0.0.1:{}>\r\n", c.port());
    let r = register(&s, &c, "alice", "reg1", 1, &ct);
    assert_eq!(code(&r), 200, "{r}");
    assert_eq!(
        header(&r, "Contact"),
        Some(format!("<sip:alice@127.0.0.1:{}>;expires=3600", c.port()).as_str()),
        "{r}"
    );
    assert!(header(&r, "To").unwrap().contains(";tag="), "{r}");
    // Refresh with Expires: 300.
    let r = register(&s, &c, "alice", "reg1", 2, &format!("{ct}Expires: 300\r\n"));
    assert_eq!(code(&r), 200, "{r}");
    assert!(
        header(&r, "Contact").unwrap().ends_with(";expires=300"),
        "{r}"
    );
    // Unregister with Expires: 0.
    let r = register(&s, &c, "alice", "reg1", 3, &format!("{ct}Expires: 0\r\n"));
    assert_eq!(code(&r), 200, "{r}");
    assert_eq!(header(&r, "Contact"), None, "{r}");
    // Register again, then `Contact: *` without Expires -> 400, with Expires: 0 -> gone.
    register(&s, &c, "alice", "reg1", 4, &ct);
    let r = register(&s, &c, "alice", "reg1", 5, "Contact: *\r\n");
    assert_eq!(code(&r), 400, "{r}");
    assert_eq!(
        header(&r, "P-Registrar-Error"),
        Some("* used in contact and expires is not zero"),
        "{r}"
    );
    let r = register(&s, &c, "alice", "reg1", 6, "Contact: *\r\nExpires: 0\r\n");
    assert_eq!(code(&r), 200, "{r}");
    assert_eq!(header(&r, "Contact"), None, "{r}");
    // A query (no Contact) lists nothing.
    let r = register(&s, &c, "alice", "reg1", 7, "");
    assert_eq!((code(&r), header(&r, "Contact")), (200, None), "{r}");
    assert!(s.stop().success());
}

#[test]
fn two_contacts_lookup_forwards_to_highest_q_and_404_for_unknown() {
    let mut s = Server::start(&cfg(""), &[]);
    let c = Client::new();
    let low = Client::new();
    let high = Client::new();
    let ct = format!(
        "Contact: <sip:bob@127.0.0.1:{}>;q=0.3, <sip:bob@127.0.0.1:{}>;q=0.7\r\n",
        low.port(),
        high.port()
    );
    let r = register(&s, &c, "bob", "reg2", 1, &ct);
    assert_eq!(code(&r), 200, "{r}");
    assert_eq!(
        header(&r, "Contact").unwrap(),
        format!(
            "<sip:bob@127.0.0.1:{}>;q=0.7;expires=3600, <sip:bob@127.0.0.1:{}>;q=0.3;expires=3600",
            high.port(),
            low.port()
        ),
        "{r}"
    );
    let inv = request("INVITE", "sip:bob@example.com", c.port(), "inv2", 1, "");
    c.send(s.addr(), &inv);
    let fwd = high
        .recv_matching("INVITE")
        .unwrap_or_else(|| panic!("INVITE not forwarded to the q=0.7 contact\n{}", s.log()));
    assert!(
        fwd.starts_with(&format!("INVITE sip:bob@127.0.0.1:{} SIP/2.0", high.port())),
        "{fwd}"
    );
    // Unknown user -> 404 from the script.
    let inv = request("INVITE", "sip:nobody@example.com", c.port(), "inv3", 1, "");
    c.send(s.addr(), &inv);
    let r = c.recv_matching("SIP/2.0").expect("reply");
    assert_eq!(code(&r), 404, "{r}");
    assert!(s.stop().success());
}

#[test]
fn contacts_expire_by_timer() {
    let p =
        "modparam(\"usrloc\", \"timer_interval\", 1)\nmodparam(\"registrar\", \"min_expires\", 1)";
    let mut s = Server::start(&cfg(p), &[]);
    let c = Client::new();
    let ct = format!("Contact: <sip:carol@127.0.0.1:{}>;expires=2\r\n", c.port());
    let r = register(&s, &c, "carol", "reg3", 1, &ct);
    assert!(
        header(&r, "Contact").unwrap().ends_with(";expires=2"),
        "{r}"
    );
    std::thread::sleep(Duration::from_millis(3500));
    let r = register(&s, &c, "carol", "reg3", 2, "");
    assert_eq!((code(&r), header(&r, "Contact")), (200, None), "{r}");
    let inv = request("INVITE", "sip:carol@example.com", c.port(), "inv4", 1, "");
    c.send(s.addr(), &inv);
    let r = c.recv_matching("SIP/2.0").expect("reply");
    assert_eq!(code(&r), 404, "{r}");
    assert!(s.stop().success());
}

#[test]
fn cseq_ordering_min_expires_and_max_contacts() {
    let p = "modparam(\"registrar\", \"max_contacts\", 2)\nmodparam(\"registrar\", \"retry_after\", 30)";
    let mut s = Server::start(&cfg(p), &[]);
    let c = Client::new();
    let ct = "Contact: <sip:dave@192.0.2.1>\r\n";
    assert_eq!(code(&register(&s, &c, "dave", "reg4", 5, ct)), 200);
    // Lower CSeq, same Call-ID -> 400.
    let r = register(&s, &c, "dave", "reg4", 4, ct);
    assert_eq!(code(&r), 400, "{r}");
    assert_eq!(header(&r, "P-Registrar-Error"), Some("Invalid CSeq number"));
    // Short expiry is raised to min_expires (60), not 423.
    let r = register(&s, &c, "dave", "reg4", 6, &format!("{ct}Expires: 10\r\n"));
    assert_eq!(code(&r), 200, "{r}");
    assert!(
        header(&r, "Contact").unwrap().ends_with(";expires=60"),
        "{r}"
    );
    // A second contact is fine, a third -> 503 with Retry-After.
    let r = register(
        &s,
        &c,
        "dave",
        "reg4b",
        1,
        "Contact: <sip:dave@192.0.2.2>\r\n",
    );
    assert_eq!(code(&r), 200, "{r}");
    let r = register(
        &s,
        &c,
        "dave",
        "reg4c",
        1,
        "Contact: <sip:dave@192.0.2.3>\r\n",
    );
    assert_eq!(code(&r), 503, "{r}");
    assert_eq!(
        header(&r, "P-Registrar-Error"),
        Some("Too many registered contacts")
    );
    assert_eq!(header(&r, "Retry-After"), Some("30"));
    assert!(s.stop().success());
}

/// `db_mode` 1–3 need their driver module loaded; other values are refused: start-up
/// errors.
#[test]
fn db_mode_startup_errors() {
    for (mode, want) in [
        (1, "needs module \"mysql\", which is not loaded"),
        (2, "needs module \"mysql\", which is not loaded"),
        (3, "needs module \"mysql\", which is not loaded"),
        (4, "usrloc: invalid db_mode 4"),
    ] {
        let dir = TempDir::new("regdb");
        let path = dir.file("openser.cfg");
        let text = expand(
            &cfg(&format!("modparam(\"usrloc\", \"db_mode\", {mode})")),
            free_udp_port(),
            dir.path(),
        );
        std::fs::write(&path, text).unwrap();
        let (rc, _, err) = run(&["-f", path.to_str().unwrap(), "-DD", "-E"]);
        assert_ne!(rc, 0, "{err}");
        assert!(err.contains(want), "db_mode {mode}: {err}");
    }
}

/// 10,000 AORs through registrar's save() into a module-registered domain: the slots
/// of the 512-slot table are evenly used (in-process; shm of the test binary).
#[test]
fn ten_thousand_aors_spread_over_slots() {
    use openser_core::parser::SipMsg;
    use registrar::{RegParams, save};
    let _ = shm::init(128 << 20);
    // 1.2's 512 slots (the default now sizes the table from the segment).
    let params = usrloc::UsrlocParams {
        hash_size: 9,
        ..usrloc::params()
    };
    let d = usrloc::register_udomain_with("it_spread", &params).expect("domain");
    let p = RegParams::default();
    for i in 0..10_000 {
        let m = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{i}\r\n\
             From: <sip:user{i}@example.com>;tag=1\r\nTo: <sip:user{i}@example.com>\r\n\
             Call-ID: c{i}\r\nCSeq: 1 REGISTER\r\nContact: <sip:user{i}@10.0.0.1:5060>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let m = SipMsg::parse(m.as_bytes()).expect("parse");
        save::save(&m, d, &p, &save::SaveInput::default(), 1_000_000).expect("save");
    }
    let counts = d.slot_counts();
    assert_eq!(counts.len(), 512);
    assert_eq!(counts.iter().map(|&n| u64::from(n)).sum::<u64>(), 10_000);
    assert_eq!(d.users(), 10_000);
    let mean = 10_000.0 / 512.0;
    let max = *counts.iter().max().unwrap();
    let min = *counts.iter().min().unwrap();
    let var = counts
        .iter()
        .map(|&n| (f64::from(n) - mean).powi(2))
        .sum::<f64>()
        / 512.0;
    // Poisson-like spread: variance ≈ mean; no empty slot, no slot over 2.5× the mean.
    assert!(min > 0, "empty slot: {counts:?}");
    assert!(f64::from(max) < mean * 2.5, "max {max}");
    assert!(var < mean * 2.0, "variance {var} (mean {mean})");
}

/// shm bytes per contact through save() (SIPp reg.xml-like REGISTERs): issue 6 asks
/// for at most 575 (Kamailio ~1,150). `OPENSER_REG_N` sets the count (bench/reg_bench.sh
/// uses 100,000; the default keeps the test quick).
#[test]
fn reg_shm_bytes_per_contact() {
    use openser_core::parser::SipMsg;
    use registrar::{RegParams, save};
    let _ = shm::init(512 << 20);
    let d = usrloc::register_udomain("it_mem").expect("domain");
    let p = RegParams::default();
    let n: usize = std::env::var("OPENSER_REG_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let before = shm::stats().real_used;
    for i in 0..n {
        let m = format!(
            "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-12345-{i}-0\r\n\
             From: <sip:user{i}@127.0.0.1:5060>;tag=12345SIPpTag00{i}\r\n\
             To: <sip:user{i}@127.0.0.1:5060>\r\n\
             Call-ID: {i}-12345@127.0.0.1\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:user{i}@127.0.0.1:5070>\r\nExpires: 3600\r\n\
             Max-Forwards: 70\r\nUser-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n"
        );
        let m = SipMsg::parse(m.as_bytes()).expect("parse");
        save::save(&m, d, &p, &save::SaveInput::default(), 1_000_000).expect("save");
    }
    let after = shm::stats().real_used;
    assert_eq!(d.contacts(), n as u64);
    let per = (after - before) as f64 / n as f64;
    println!(
        "reg_shm_bytes_per_contact: {per:.1} bytes of shm per contact ({n} contacts, real_used +{} bytes)",
        after - before
    );
    assert!(per <= 575.0, "{per} bytes per contact");
}

/// With tm: lookup() + t_relay() forks to every registered contact (parallel forking
/// over the R-URI branch and the appended branch).
#[test]
fn lookup_t_relay_forks_to_all_contacts() {
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=4\n\
               loadmodule \"sl.so\"\nloadmodule \"tm.so\"\n\
               loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
               route {\n\
                 if (method==\"REGISTER\") { save(\"location\"); exit; };\n\
                 if (!lookup(\"location\")) { sl_send_reply(\"404\", \"Not Found\"); exit; };\n\
                 t_relay();\n\
               }\n";
    let mut s = Server::start(cfg, &[]);
    let c = Client::new();
    let a = Client::new();
    let b = Client::new();
    let ct = format!(
        "Contact: <sip:erin@127.0.0.1:{}>;q=0.4, <sip:erin@127.0.0.1:{}>;q=0.6\r\n",
        a.port(),
        b.port()
    );
    assert_eq!(code(&register(&s, &c, "erin", "reg5", 1, &ct)), 200);
    let inv = request("INVITE", "sip:erin@example.com", c.port(), "inv5", 1, "");
    c.send(s.addr(), &inv);
    for (cl, name) in [(&b, "q=0.6"), (&a, "q=0.4")] {
        let m = cl
            .recv_matching("INVITE")
            .unwrap_or_else(|| panic!("INVITE not forked to the {name} contact\n{}", s.log()));
        assert!(
            m.starts_with(&format!("INVITE sip:erin@127.0.0.1:{} SIP/2.0", cl.port())),
            "{m}"
        );
    }
    assert!(s.stop().success());
}

#[test]
fn statistics_and_usrloc_mi_commands() {
    let p = "loadmodule \"mi_fifo.so\"\n\
             modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
             modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")\n\
             modparam(\"usrloc\", \"timer_interval\", 1)\n\
             modparam(\"usrloc\", \"hash_size\", 9)\n\
             modparam(\"registrar\", \"min_expires\", 1)\n\
             modparam(\"registrar\", \"max_expires\", 7200)";
    let mut s = Server::start(&cfg(p), &[]);
    let dir = s.dir.path().to_path_buf();
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !dir.join("openser_fifo").exists() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = Client::new();
    let two = "Contact: <sip:fay@192.0.2.1>;q=0.5, <sip:fay@192.0.2.2>;expires=1\r\n";
    assert_eq!(code(&register(&s, &c, "fay", "st1", 1, two)), 200);
    assert_eq!(code(&register(&s, &c, "fay", "st1", 0, two)), 400);
    let st = mi(&dir, "get_statistics", &["registrar:", "usrloc:"]);
    for want in [
        "registrar:accepted_regs = 1",
        "registrar:rejected_regs = 1",
        "registrar:max_expires = 7200",
        "registrar:default_expire = 3600",
        "registrar:max_contacts = 0",
        "usrloc:registered_users = 1",
        "usrloc:location-users = 1",
        "usrloc:location-contacts = 2",
    ] {
        assert!(st.contains(want), "missing {want}:\n{st}");
    }
    let dump = mi(&dir, "ul_dump", &[]);
    assert!(dump.starts_with("200 OK\n"), "{dump}");
    assert!(
        dump.contains("Domain:: location table=512 records=1"),
        "{dump}"
    );
    assert!(dump.contains("AOR:: fay"), "{dump}");
    assert!(
        dump.contains("Contact:: sip:fay@192.0.2.1 Q=0.50"),
        "{dump}"
    );
    let show = mi(&dir, "ul_show_contact", &["location", "fay"]);
    assert!(
        show.contains("Contact:: <sip:fay@192.0.2.1>;q=0.50;expires="),
        "{show}"
    );
    // The timer removes the 1 s contact.
    std::thread::sleep(Duration::from_millis(2500));
    let st = mi(&dir, "get_statistics", &["usrloc:"]);
    assert!(st.contains("usrloc:location-contacts = 1"), "{st}");
    assert!(st.contains("usrloc:location-expires = 1"), "{st}");
    // ul_add / ul_rm_contact / ul_rm.
    let r = mi(
        &dir,
        "ul_add",
        &[
            "location",
            "gus",
            "sip:gus@192.0.2.9",
            "0",
            "1",
            "0",
            "0",
            "0",
            "0",
        ],
    );
    assert!(r.starts_with("200"), "{r}");
    assert_eq!(code(&register(&s, &c, "gus", "st2", 1, "")), 200);
    let q = register(&s, &c, "gus", "st2", 2, "");
    assert_eq!(
        header(&q, "Contact"),
        Some("<sip:gus@192.0.2.9>;q=1;expires=0"),
        "{q}"
    );
    assert!(mi(&dir, "ul_rm_contact", &["location", "gus", "sip:x@y"]).starts_with("404"));
    assert!(
        mi(
            &dir,
            "ul_rm_contact",
            &["location", "gus", "sip:gus@192.0.2.9"]
        )
        .starts_with("200")
    );
    assert!(mi(&dir, "ul_rm", &["location", "fay"]).starts_with("200"));
    assert!(mi(&dir, "ul_show_contact", &["location", "fay"]).starts_with("404"));
    assert!(mi(&dir, "ul_rm", &["nosuch", "fay"]).starts_with("404 Table not found"));
    let st = mi(&dir, "get_statistics", &["usrloc:registered_users"]);
    assert!(st.contains("usrloc:registered_users = 0"), "{st}");
    assert!(s.stop().success());
}

/// `expires_range` (issue 22): 1,000 SIPp REGISTERs asking for 3600 s, each for a user
/// of its own, get expiries within [2880, 3600] (20 %), and not all the same; a user
/// without an Expires gets `default_expires` shortened by at most
/// `default_expires_range`; `registered()` with `reg_callid_avp` counts only the
/// bindings of that Call-ID.
#[test]
fn expires_randomised_within_range_over_1000_registers() {
    if !require("sipp") {
        return;
    }
    let mut s = Server::start(
        "listen=udp:127.0.0.1:{PORT}\nchildren=4\n\
         loadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
         loadmodule \"textops.so\"\n\
         modparam(\"registrar\", \"expires_range\", 20)\n\
         modparam(\"registrar\", \"default_expires\", 1000)\n\
         modparam(\"registrar\", \"default_expires_range\", 50)\n\
         modparam(\"registrar\", \"reg_callid_avp\", \"$avp(s:cid)\")\n\
         route {\n\
           if (method==\"REGISTER\") { save(\"location\"); exit; };\n\
           if (is_present_hf(\"X-Cid\")) { $avp(s:cid) = $hdr(X-Cid); };\n\
           if (registered(\"location\")) { sl_send_reply(\"200\", \"Registered\"); }\n\
           else { sl_send_reply(\"404\", \"Not Registered\"); };\n\
         }\n",
        &[],
    );
    let dir = TempDir::new("reg-range");
    let out = sipp_run(
        dir.path(),
        &[
            "-sf".into(),
            scenario("reg_expires.xml"),
            format!("127.0.0.1:{}", s.port),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            "1000".into(),
            "-r".into(),
            "500".into(),
            "-trace_logs".into(),
        ],
    );
    assert!(
        out.status.success(),
        "SIPp: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut granted = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with("_logs.log") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            for l in text.lines() {
                if let Some(rest) = l.split("GRANTED ").nth(1) {
                    let n: u32 = rest.split(' ').next().unwrap().parse().unwrap();
                    granted.push(n);
                }
            }
        }
    }
    assert_eq!(granted.len(), 1000, "one granted expiry per REGISTER");
    // (the reply says what is left at that second: 3600 or one less)
    assert!(
        granted.iter().all(|e| (2879..=3600).contains(e)),
        "{:?}",
        granted
            .iter()
            .filter(|e| !(2879..=3600).contains(*e))
            .collect::<Vec<_>>()
    );
    let distinct: std::collections::BTreeSet<_> = granted.iter().collect();
    assert!(distinct.len() > 100, "{} distinct expiries", distinct.len());
    assert!(granted.iter().any(|&e| e < 3000) && granted.iter().any(|&e| e > 3480));

    // No Expires at all: default_expires (1000) less up to 50 %.
    let c = Client::new();
    let r = register(
        &s,
        &c,
        "nodefault",
        "cid-default",
        1,
        "Contact: <sip:nd@127.0.0.1:5999>\r\n",
    );
    assert_eq!(code(&r), 200, "{r}");
    let exp: u32 = header(&r, "Contact")
        .and_then(|h| h.split("expires=").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    assert!((499..=1000).contains(&exp), "{exp}");

    // registered() with reg_callid_avp.
    let ask = |cid: &str| {
        let m = request(
            "OPTIONS",
            "sip:nodefault@example.com",
            c.port(),
            &format!("q-{cid}"),
            1,
            &format!("X-Cid: {cid}\r\n"),
        );
        c.send(s.addr(), &m);
        code(&c.recv_matching("SIP/2.0").expect("reply"))
    };
    assert_eq!(ask("cid-default"), 200);
    assert_eq!(ask("another-call"), 404);
    s.stop();
}

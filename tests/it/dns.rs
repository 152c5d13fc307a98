//! DNS (issue 17): RFC 3263 selection through a real dnsmasq (own zone data, own
//! port, reached through a private resolv.conf given by `dns_resolv_conf`), the shm
//! DNS cache and its TTLs, tm's DNS failover and the dynamic blacklist, a dead name
//! server, the static `dst_blacklist` lists, ENUM.

use crate::harness::dnsmasq::Dnsmasq;
use crate::harness::*;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

/// A proxy relaying every request statefully to its R-URI; INVITE replies are
/// logged with their source (`REPLY-FROM ip:port code`).
fn proxy_cfg(resolv: &std::path::Path, globals: &str, route_extra: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
dns_resolv_conf="{}"
{globals}
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "xlog.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("tm", "fr_timer", 2)
modparam("tm", "wt_timer", 1)
route {{
    if (loose_route()) {{
        t_relay();
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
        t_on_reply("1");
    }}
    {route_extra}
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}
onreply_route[1] {{
    xlog("L_INFO", "REPLY-FROM $si:$sp $rs\n");
}}
"#,
        resolv.display()
    )
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// `n` SIPp calls (uac.xml) through the server at `rate`/s; all must succeed.
fn calls(dir: &std::path::Path, port: u16, n: u64, rate: u32) {
    crate::it::dispatcher::calls_at(dir, port, "callee", n, rate);
}

/// A SIPp UAS running `file` on 127.0.0.1 at a free port.
fn uas(dir: &std::path::Path, file: &str) -> (Sipp, u16) {
    sipp_uas_file(dir, file)
}

/// Wait up to `within` for a datagram on `s` containing `needle`.
fn got(s: &UdpSocket, needle: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    let mut b = [0u8; 65535];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        match s.recv(&mut b) {
            Ok(n) if String::from_utf8_lossy(&b[..n]).contains(needle) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// A MESSAGE to `ruri` with Call-ID `cid`.
fn message(c: &Client, port: u16, ruri: &str, cid: &str) {
    let lp = c.port();
    c.send(
        ([127, 0, 0, 1], port).into(),
        &format!(
            "MESSAGE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{cid}\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: {cid}\r\nCSeq: 1 MESSAGE\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ),
    );
}

fn cfg_path(d: &Dnsmasq) -> &std::path::Path {
    &d.resolv_conf
}

#[test]
fn srv_weights_3_to_1_split_1000_calls() {
    if !require("sipp") || !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-w");
    let (_u1, p1) = uas(dir.path(), "uas.xml");
    let (_u2, p2) = uas(dir.path(), "uas.xml");
    let d = Dnsmasq::start(
        dir.path(),
        60,
        &[
            "--local=/test/".into(),
            format!("--srv-host=_sip._udp.w.test,a.w.test,{p1},0,3"),
            format!("--srv-host=_sip._udp.w.test,b.w.test,{p2},0,1"),
            "--host-record=a.w.test,127.0.0.1".into(),
            "--host-record=b.w.test,127.0.0.1".into(),
        ],
        "",
        "timeout:2 attempts:2",
    );
    let cfg = proxy_cfg(
        cfg_path(&d),
        "",
        r#"if (method == "INVITE") { rewriteuri("sip:callee@w.test"); }"#,
    );
    let mut s = Server::start(&cfg, &[]);
    calls(dir.path(), s.port, 1000, 200);
    let log = s.log();
    let heavy = count(&log, &format!("REPLY-FROM 127.0.0.1:{p1} 200"));
    let light = count(&log, &format!("REPLY-FROM 127.0.0.1:{p2} 200"));
    assert_eq!(heavy + light, 1000, "{heavy} / {light}");
    // 3:1 within ±5 % of the 1,000 calls
    assert!((700..=800).contains(&heavy), "{heavy} / {light}");
    // The cache is shared and used: the MI view shows the SRV set.
    let view = mi(s.dir.path(), "dns_cache_view", &[]);
    assert!(view.contains("_sip._udp.w.test SRV"), "{view}");
    assert!(s.stop().success());
}

#[test]
fn srv_priority_failover_on_timeout_then_blacklist() {
    if !require("sipp") || !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-fo");
    // f.test: priority 0 is silent, priority 1 answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p0 = silent.local_addr().unwrap().port();
    let (_live, p1) = uas(dir.path(), "uas.xml");
    let d = Dnsmasq::start(
        dir.path(),
        60,
        &[
            "--local=/test/".into(),
            format!("--srv-host=_sip._udp.f.test,s.f.test,{p0},0,0"),
            format!("--srv-host=_sip._udp.f.test,l.f.test,{p1},1,0"),
            "--host-record=s.f.test,127.0.0.1".into(),
            "--host-record=l.f.test,127.0.0.1".into(),
        ],
        "",
        "timeout:2 attempts:2",
    );
    let cfg = proxy_cfg(
        cfg_path(&d),
        "",
        r#"if (method == "INVITE") { rewriteuri("sip:callee@f.test"); }"#,
    );
    let mut s = Server::start(&cfg, &[]);
    // 1. The silent priority-0 target gets the INVITE; after fr_timer the call
    //    completes through priority 1.
    calls(dir.path(), s.port, 1, 1);
    assert!(got(
        &silent,
        "INVITE sip:callee@f.test",
        Duration::from_secs(1)
    ));
    let log = s.log();
    assert_eq!(
        count(&log, &format!("REPLY-FROM 127.0.0.1:{p1} 200")),
        1,
        "{log}"
    );
    assert!(log.contains("DNS failover"), "{log}");
    // 2. The silent target is now on the dynamic blacklist: the next calls go
    //    straight to priority 1, the silent one sees nothing.
    while got(&silent, "INVITE", Duration::from_millis(100)) {}
    calls(dir.path(), s.port, 3, 10);
    let mut b = [0u8; 4096];
    silent
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    if let Ok(n) = silent.recv(&mut b) {
        panic!(
            "the blacklisted target got:\n{}\nlog:\n{}",
            String::from_utf8_lossy(&b[..n]),
            s.log()
        );
    }
    let log = s.log();
    assert_eq!(
        count(&log, &format!("REPLY-FROM 127.0.0.1:{p1} 200")),
        4,
        "{log}"
    );
    assert_eq!(count(&log, "DNS failover"), 1, "{log}");
    let bl = mi(s.dir.path(), "list_blacklists", &[]);
    assert!(bl.contains(&format!("udp:127.0.0.1:{p0}")), "{bl}");
    assert!(s.stop().success());
}

#[test]
fn srv_failover_on_503_and_not_with_flag_0x04() {
    if !require("sipp") || !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-503");
    let (_busy, p0) = uas(dir.path(), "uas_503.xml");
    let (_live, p1) = uas(dir.path(), "uas.xml");
    let d = Dnsmasq::start(
        dir.path(),
        60,
        &[
            "--local=/test/".into(),
            format!("--srv-host=_sip._udp.g.test,s.g.test,{p0},0,0"),
            format!("--srv-host=_sip._udp.g.test,l.g.test,{p1},1,0"),
            "--host-record=s.g.test,127.0.0.1".into(),
            "--host-record=l.g.test,127.0.0.1".into(),
        ],
        "",
        "timeout:2 attempts:2",
    );
    let cfg = proxy_cfg(
        cfg_path(&d),
        "dst_blacklist_expire=0",
        r#"if (method == "INVITE") { rewriteuri("sip:callee@g.test"); }"#,
    );
    let mut s = Server::start(&cfg, &[]);
    // The 503 of priority 0 makes tm try priority 1 at once (no fr_timer wait).
    calls(dir.path(), s.port, 2, 10);
    let log = s.log();
    assert_eq!(
        count(&log, &format!("REPLY-FROM 127.0.0.1:{p0} 503")),
        2,
        "{log}"
    );
    assert_eq!(
        count(&log, &format!("REPLY-FROM 127.0.0.1:{p1} 200")),
        2,
        "{log}"
    );
    assert_eq!(count(&log, "DNS failover"), 2, "{log}");
    assert!(s.stop().success());
    // t_relay("0x04"): no DNS failover, the caller gets the 503.
    let cfg = proxy_cfg(
        cfg_path(&d),
        "",
        r#"if (method == "INVITE") {
        rewriteuri("sip:callee@g.test");
        t_relay("0x04");
        exit;
    }"#,
    );
    let mut s = Server::start(&cfg, &[]);
    let out = sipp_once(dir.path(), "uac.xml", s.port, &["-s", "callee"]);
    assert!(!out.status.success());
    let log = s.log();
    assert_eq!(
        count(&log, &format!("REPLY-FROM 127.0.0.1:{p0} 503")),
        1,
        "{log}"
    );
    assert_eq!(count(&log, "DNS failover"), 0, "{log}");
    assert!(s.stop().success());
}

#[test]
fn naptr_selecting_tcp_sends_over_tcp() {
    if !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-naptr");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let pt = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pu = udp.local_addr().unwrap().port();
    let d = Dnsmasq::start(
        dir.path(),
        60,
        &[
            "--local=/test/".into(),
            "--naptr-record=n.test,10,10,s,SIP+D2T,,_sip._tcp.n.test".into(),
            "--naptr-record=n.test,20,10,s,SIP+D2U,,_sip._udp.n.test".into(),
            format!("--srv-host=_sip._tcp.n.test,t.n.test,{pt},0,0"),
            format!("--srv-host=_sip._udp.n.test,t.n.test,{pu},0,0"),
            "--host-record=t.n.test,127.0.0.1".into(),
        ],
        "",
        "timeout:2 attempts:2",
    );
    // TCP served too (NAPTR records of unserved transports are skipped), on a port
    // free for both.
    let cfg = proxy_cfg(cfg_path(&d), "listen=tcp:127.0.0.1:{PORT}", "");
    let mut s = Server::start_on(crate::harness::dnsmasq::free_port(), &cfg, &[]);
    let c = Client::new();
    message(&c, s.port, "sip:x@n.test", "naptr-1");
    tcp.set_nonblocking(true).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match tcp.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("no TCP connection: {e}\n{}", s.log()),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 4096];
    let n = conn.read(&mut b).unwrap();
    let req = String::from_utf8_lossy(&b[..n]);
    assert!(req.starts_with("MESSAGE sip:x@n.test SIP/2.0"), "{req}");
    assert!(req.contains("SIP/2.0/TCP"), "{req}");
    assert!(!got(&udp, "MESSAGE", Duration::from_millis(200)));
    assert!(s.stop().success());
}

#[test]
fn a_changed_record_takes_effect_after_its_ttl() {
    if !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-ttl");
    let one = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = one.local_addr().unwrap().port();
    let two = UdpSocket::bind(("127.0.0.2", p)).unwrap();
    let d = Dnsmasq::start(
        dir.path(),
        5,
        &["--local=/test/".into()],
        "127.0.0.1 t.test\n",
        "timeout:2 attempts:2",
    );
    let mut s = Server::start(&proxy_cfg(cfg_path(&d), "", ""), &[]);
    let c = Client::new();
    let ruri = format!("sip:x@t.test:{p}");
    message(&c, s.port, &ruri, "ttl-1");
    assert!(got(&one, "ttl-1", Duration::from_secs(5)));
    let changed = Instant::now();
    d.set_hosts("127.0.0.2 t.test\n");
    // Within the TTL: the cached address.
    message(&c, s.port, &ruri, "ttl-2");
    assert!(got(&one, "ttl-2", Duration::from_secs(5)));
    assert!(
        changed.elapsed() < Duration::from_secs(4),
        "too slow to check the TTL"
    );
    // After it: the new one.
    std::thread::sleep(Duration::from_secs(6));
    message(&c, s.port, &ruri, "ttl-3");
    assert!(got(&two, "ttl-3", Duration::from_secs(5)));
    assert!(s.stop().success());
}

#[test]
fn dead_name_server_error_reply_and_numeric_calls_unaffected() {
    if !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-down");
    let mut d = Dnsmasq::start(
        dir.path(),
        60,
        &["--local=/test/".into()],
        "",
        "timeout:1 attempts:2",
    );
    d.stop();
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pt = target.local_addr().unwrap().port();
    let mut s = Server::start(&proxy_cfg(cfg_path(&d), "", ""), &[]);
    let c = Client::new();
    let started = Instant::now();
    message(&c, s.port, "sip:x@nowhere.test", "down-1");
    std::thread::sleep(Duration::from_millis(100));
    // A request to a numeric IP is relayed while the other worker waits for DNS.
    message(&c, s.port, &format!("sip:y@127.0.0.1:{pt}"), "down-2");
    assert!(got(&target, "down-2", Duration::from_secs(5)));
    let reply = loop {
        let (r, _) = c
            .recv_timeout(Duration::from_secs(15))
            .expect("an error reply");
        if r.contains("Call-ID: down-1") {
            break r;
        }
    };
    let waited = started.elapsed();
    let code: u16 = reply[8..11].parse().unwrap();
    assert!(code >= 400, "{reply}");
    assert!(reply.contains("Call-ID: down-1"), "{reply}");
    // timeout 1 s × 2 attempts for the whole resolution; generous upper bound.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(s.stop().success());
}

#[test]
fn use_blacklist_static_list_drops_a_matching_destination() {
    if !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-bl");
    let bad = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pb = bad.local_addr().unwrap().port();
    let good = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pg = good.local_addr().unwrap().port();
    let d = Dnsmasq::start(
        dir.path(),
        60,
        &["--local=/test/".into()],
        "",
        "timeout:1 attempts:1",
    );
    let cfg = proxy_cfg(
        cfg_path(&d),
        &format!(
            r#"dst_blacklist = voip:{{ (udp, 127.0.0.1, {pb}, ""), (any, 10.0.0.0/8, 0, "") }}"#
        ),
        r#"use_blacklist("voip");"#,
    );
    let mut s = Server::start(&cfg, &[]);
    let c = Client::new();
    message(&c, s.port, &format!("sip:x@127.0.0.1:{pb}"), "bl-1");
    let (reply, _) = c
        .recv_timeout(Duration::from_secs(10))
        .expect("an error reply");
    assert!(reply[8..11].parse::<u16>().unwrap() >= 400, "{reply}");
    assert!(!got(&bad, "bl-1", Duration::from_millis(300)));
    message(&c, s.port, &format!("sip:x@127.0.0.1:{pg}"), "bl-2");
    assert!(got(&good, "bl-2", Duration::from_secs(5)));
    let bl = mi(s.dir.path(), "list_blacklists", &[]);
    assert!(bl.contains("voip"), "{bl}");
    assert!(s.stop().success());
}

#[test]
fn enum_query_rewrites_an_e164_ruri() {
    if !require("dnsmasq") {
        return;
    }
    let dir = TempDir::new("dns-enum");
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pt = target.local_addr().unwrap().port();
    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p2 = second.local_addr().unwrap().port();
    let port = free_udp_port();
    let d = Dnsmasq::start(
        dir.path(),
        60,
        &[
            "--local=/e164.arpa/".into(),
            // +4412345: two URIs, the better one first
            format!(
                "--naptr-record=5.4.3.2.1.4.4.e164.arpa,100,10,u,E2U+sip,!^\\+44(.*)$!sip:\\1@127.0.0.1:{pt}!"
            ),
            format!(
                "--naptr-record=5.4.3.2.1.4.4.e164.arpa,100,20,u,E2U+sip,!^.*$!sip:backup@127.0.0.1:{p2}!"
            ),
            // a record of another service is ignored
            "--naptr-record=5.4.3.2.1.4.4.e164.arpa,50,10,u,E2U+email:mailto,!^.*$!mailto:a@b!"
                .into(),
            // +4499 (the caller) is served here
            format!(
                "--naptr-record=9.9.4.4.e164.arpa,100,10,u,E2U+sip,!^.*$!sip:me@127.0.0.1:{port}!"
            ),
        ],
        "",
        "timeout:2 attempts:2",
    );
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
dns_resolv_conf="{}"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "xlog.so"
loadmodule "enum.so"
modparam("tm", "fr_timer", 2)
route {{
    if (is_from_user_enum()) {{
        xlog("L_INFO", "FROM-ENUM yes\n");
    }} else {{
        xlog("L_INFO", "FROM-ENUM no\n");
    }}
    if (!enum_query()) {{
        sl_send_reply("404", "No ENUM");
        exit;
    }}
    xlog("L_INFO", "ENUM $ru\n");
    t_relay();
}}
"#,
        d.resolv_conf.display()
    );
    let mut s = Server::start_on(port, &cfg, &[]);
    let c = Client::new();
    let lp = c.port();
    let send = |from: &str, ruri: &str, cid: &str| {
        c.send(
            ([127, 0, 0, 1], port).into(),
            &format!(
                "MESSAGE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{cid}\r\n\
                 From: <sip:{from}@127.0.0.1>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: {cid}\r\nCSeq: 1 MESSAGE\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ),
        )
    };
    send("+4499", &format!("sip:+4412345@127.0.0.1:{port}"), "enum-1");
    assert!(got(
        &target,
        &format!("MESSAGE sip:12345@127.0.0.1:{pt} SIP/2.0"),
        Duration::from_secs(5)
    ));
    assert!(got(
        &second,
        &format!("MESSAGE sip:backup@127.0.0.1:{p2} SIP/2.0"),
        Duration::from_secs(5)
    ));
    // A number without a record: enum_query fails, the script answers 404.
    send("alice", &format!("sip:+4400000@127.0.0.1:{port}"), "enum-2");
    let r = loop {
        let (r, _) = c.recv_timeout(Duration::from_secs(10)).expect("a reply");
        if r.contains("Call-ID: enum-2") {
            break r;
        }
    };
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    let log = s.log();
    assert!(
        log.contains(&format!("ENUM sip:12345@127.0.0.1:{pt}")),
        "{log}"
    );
    assert_eq!(count(&log, "FROM-ENUM yes"), 1, "{log}");
    assert_eq!(count(&log, "FROM-ENUM no"), 1, "{log}");
    assert!(s.stop().success());
}

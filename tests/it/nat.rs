//! NAT traversal through a real NAT: nathelper and rtpengine with a real media relay.
//!
//! Each test builds its own LAN / NAT / WAN network namespaces (`harness::netns`, an
//! nftables masquerading router with a short UDP conntrack timeout), starts
//! `rtpengine` (Debian's rtpengine-daemon, userspace, `--table=-1`) and the server in
//! the WAN namespace, and runs the two phones as helper processes: this test binary
//! re-run inside a namespace (`ip netns exec … <test binary> --ignored nat_helper`)
//! with the role in `NH_ROLE`. The helpers are small SIP user agents over UDP that also
//! send and count RTP and count the NAT pings that reach the phone; they report on
//! stdout (`KEY value` lines), which the test reads.

use crate::harness::netns::{self, CALLER_IP, NAT_WAN_IP, NsProc, PHONE_IP, PROXY_IP, Topo};
use crate::harness::{self, TempDir, wait_until};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

const PHONE_SIP_PORT: u16 = 5070;
const PHONE_RTP_PORT: u16 = 40000;
const CALLER_SIP_PORT: u16 = 5080;
const CALLER_RTP_PORT: u16 = 42000;
const RTPP_PORT: u16 = 22222;
const NG_PORT: u16 = 22223;
const CLI_PORT: u16 = 22224;
const RELAY_PORT_MIN: u16 = 30000;
const RELAY_PORT_MAX: u16 = 30200;
const RTP_PACKETS: usize = 50;

/// The NAT config: the standard 1.2 layout (nat_uac_test on REGISTER and INVITE,
/// fix_nated_register, the NAT branch flag for pings, the relay on offer and answer,
/// released on BYE/CANCEL/failure). `{OFFER}`, `{ANSWER}`, `{DELETE}` are the relay
/// calls of the variant under test.
const CFG: &str = r#"
debug=3
log_stderror=yes
children=2
listen=udp:203.0.113.2:5060
alias=example.com

loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "uri.so"
loadmodule "xlog.so"
loadmodule "mi_fifo.so"
loadmodule "nathelper.so"
{LOAD}

modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("usrloc", "nat_bflag", 6)
modparam("registrar", "received_avp", "$avp(i:42)")
modparam("nathelper", "received_avp", "$avp(i:42)")
modparam("nathelper", "natping_interval", {PING})
modparam("nathelper", "ping_nated_only", 1)
modparam("nathelper", "sipping_bflag", 7)
modparam("nathelper", "sipping_from", "sip:pinger@example.com")
modparam("nathelper", "rtpproxy_sock", "udp:203.0.113.2:22222")
modparam("nathelper", "rtpproxy_disable", {RTPP_DISABLE})
modparam("nathelper", "rtpproxy_tout", 1)
modparam("nathelper", "rtpproxy_retr", 2)
modparam("nathelper", "rtpproxy_disable_tout", 3)
modparam("tm", "fr_timer", 4)
{PARAMS}

route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (method == "REGISTER") {
        if (nat_uac_test("19")) {
            fix_nated_register();
            setbflag(6);
            {SIPPING}
        }
        if (!save("location")) {
            sl_reply_error();
        }
        exit;
    }
    if (nat_uac_test("3")) {
        force_rport();
        fix_nated_contact();
    }
    if (has_totag()) {
        if (loose_route()) {
            if (method == "BYE") {
                {DELETE}
            }
            t_on_reply("1");
            t_relay();
            exit;
        }
        if (method == "ACK") {
            t_relay();
            exit;
        }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (method == "CANCEL") {
        {DELETE}
        t_relay();
        exit;
    }
    record_route();
    if (method == "INVITE") {
        if (!lookup("location")) {
            sl_send_reply("404", "Not Found");
            exit;
        }
        if ({OFFER}) {
            xlog("L_INFO", "RELAY-OFFER-OK $ci\n");
        } else {
            xlog("L_INFO", "RELAY-OFFER-FAILED $ci\n");
        }
        t_on_reply("1");
        t_on_failure("1");
    }
    if (!t_relay()) {
        sl_reply_error();
    }
}

onreply_route[1] {
    if (status =~ "(180)|(183)|(2[0-9][0-9])") {
        if (nat_uac_test("1")) {
            fix_nated_contact();
        }
        if (is_present_hf("Content-Type")) {
            {ANSWER};
        }
    }
}

failure_route[1] {
    {DELETE}
}
"#;

/// Which relay control the config uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Relay {
    /// nathelper's rtpproxy protocol (rtpengine's `--listen-udp`)
    Rtpproxy,
    /// the rtpengine module's ng protocol
    Ng,
    /// none configured (ping tests)
    None,
}

fn config(relay: Relay, ping_interval: u32, sipping: bool) -> String {
    let (load, params, offer, answer, delete, disable) = match relay {
        Relay::Rtpproxy => (
            "",
            "",
            " force_rtp_proxy()",
            " force_rtp_proxy()",
            "unforce_rtp_proxy();",
            "0",
        ),
        Relay::Ng => (
            "loadmodule \"rtpengine.so\"",
            "modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:203.0.113.2:22223\")\n\
             modparam(\"rtpengine\", \"rtpengine_tout_ms\", 1000)\n\
             modparam(\"rtpengine\", \"rtpengine_retr\", 2)",
            "rtpengine_manage(\"replace-origin replace-session-connection\")",
            "rtpengine_manage(\"replace-origin replace-session-connection\")",
            "rtpengine_manage();",
            "1",
        ),
        Relay::None => (
            "",
            "",
            " force_rtp_proxy()",
            " force_rtp_proxy()",
            "xlog(\"L_DBG\", \"no relay\\n\");",
            "1",
        ),
    };
    CFG.replace("{LOAD}", load)
        .replace("{PARAMS}", params)
        .replace("{OFFER}", offer)
        .replace("{ANSWER}", answer)
        .replace("{DELETE}", delete)
        .replace("{RTPP_DISABLE}", disable)
        .replace("{PING}", &ping_interval.to_string())
        .replace("{SIPPING}", if sipping { "setbflag(7);" } else { "" })
}

// ------------------------------------------------------------------ the phones

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

fn out(k: &str, v: impl std::fmt::Display) {
    println!("{k} {v}");
}

fn hdr<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    harness::header(m, name)
}

/// c= address and m= port of an SDP in `m`.
fn sdp_media(m: &str) -> Option<(String, u16)> {
    let body = m.split_once("\r\n\r\n")?.1;
    let c = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .to_string();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((c, port))
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// A reply to request `req` with the given extra headers and body.
fn reply(req: &str, code: u16, reason: &str, to_tag: &str, extra: &str, body: &str) -> String {
    let mut r = format!("SIP/2.0 {code} {reason}\r\n");
    for v in harness::headers(req, "Via") {
        r.push_str(&format!("Via: {v}\r\n"));
    }
    for name in ["Record-Route"] {
        for v in harness::headers(req, name) {
            r.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    let to = hdr(req, "To").unwrap_or("");
    let to = if to.contains("tag=") || to_tag.is_empty() {
        to.to_string()
    } else {
        format!("{to};tag={to_tag}")
    };
    r.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
        hdr(req, "From").unwrap_or(""),
        hdr(req, "Call-ID").unwrap_or(""),
        hdr(req, "CSeq").unwrap_or("")
    ));
    if !body.is_empty() {
        r.push_str("Content-Type: application/sdp\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r
}

fn rtp_packet(seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p
}

/// Send RTP_PACKETS packets to `to` every 20 ms and count what arrives meanwhile
/// (and for a second after the last one). Every packet is sent whatever the load:
/// the receiving between two sends is bounded by the 20 ms tick, not by a silence.
fn rtp_exchange(rtp: &UdpSocket, to: SocketAddr) -> (usize, usize) {
    let mut buf = [0u8; 2048];
    let (mut tx, mut rx) = (0, 0);
    let mut count = |until: Instant| {
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            rtp.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok((n, _)) = crate::harness::recv_from(rtp, &mut buf)
                && n >= 12
                && buf[0] == 0x80
            {
                rx += 1;
            }
        }
    };
    // (a send that fails is counted as not sent, and tried again, twice over at most)
    for _ in 0..2 * RTP_PACKETS {
        if tx == RTP_PACKETS {
            break;
        }
        let tick = Instant::now() + Duration::from_millis(20);
        if rtp.send_to(&rtp_packet(tx as u16), to).is_ok() {
            tx += 1;
        }
        count(tick);
    }
    count(Instant::now() + Duration::from_secs(1));
    (tx, rx)
}

/// The phone behind the NAT: register, then serve until BYE/CANCEL or NH_LIFETIME.
fn phone() {
    let proxy: SocketAddr = format!("{PROXY_IP}:5060").parse().unwrap();
    let sip = UdpSocket::bind((PHONE_IP, PHONE_SIP_PORT)).expect("phone sip socket");
    let rtp = UdpSocket::bind((PHONE_IP, PHONE_RTP_PORT)).expect("phone rtp socket");
    let lifetime: u64 = env("NH_LIFETIME").parse().unwrap_or(30);
    let answer = env("NH_MODE") != "ring";
    sip.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let reg = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PHONE_IP}:{PHONE_SIP_PORT};branch=z9hG4bKreg{}\r\n\
         From: <sip:phone@example.com>;tag=r1\r\nTo: <sip:phone@example.com>\r\n\
         Call-ID: reg-{}@{PHONE_IP}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
         Contact: <sip:phone@{PHONE_IP}:{PHONE_SIP_PORT}>\r\nExpires: 600\r\n\
         Content-Length: 0\r\n\r\n",
        std::process::id(),
        std::process::id()
    );
    let mut buf = vec![0u8; 65536];
    let mut registered = false;
    for _ in 0..5 {
        sip.send_to(reg.as_bytes(), proxy).unwrap();
        let end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < end {
            if let Ok((n, _)) = crate::harness::recv_from(&sip, &mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]);
                if m.starts_with("SIP/2.0 200") {
                    registered = true;
                    out("REGISTERED_CONTACT", hdr(&m, "Contact").unwrap_or("-"));
                    break;
                }
            }
        }
        if registered {
            break;
        }
    }
    if !registered {
        out("REGISTER_FAILED", 1);
        return;
    }
    out("REGISTERED", 1);
    let (mut pings, mut sip_pings) = (0, 0);
    let mut invite: Option<String> = None;
    let mut last_reply = String::new();
    let mut from_proxy = proxy;
    let end = Instant::now() + Duration::from_secs(lifetime);
    let mut done = false;
    while Instant::now() < end && !done {
        let Ok((n, src)) = crate::harness::recv_from(&sip, &mut buf) else {
            continue;
        };
        if n == 4 && buf[..4] == [0, 0, 0, 0] {
            pings += 1;
            continue;
        }
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        let method = m.split(' ').next().unwrap_or("").to_string();
        match method.as_str() {
            "OPTIONS" => {
                sip_pings += 1;
                let r = reply(&m, 200, "OK", "p1", "", "");
                sip.send_to(r.as_bytes(), src).unwrap();
            }
            "INVITE" => {
                if invite.is_some() {
                    sip.send_to(last_reply.as_bytes(), src).unwrap();
                    continue;
                }
                from_proxy = src;
                if let Some((c, p)) = sdp_media(&m) {
                    out("INVITE_SDP", format!("{c}:{p}"));
                }
                out("INVITE_FROM", src);
                let ringing = reply(&m, 180, "Ringing", "ph1", "", "");
                sip.send_to(ringing.as_bytes(), src).unwrap();
                last_reply = ringing;
                if answer {
                    let contact = format!("Contact: <sip:phone@{PHONE_IP}:{PHONE_SIP_PORT}>\r\n");
                    let ok = reply(
                        &m,
                        200,
                        "OK",
                        "ph1",
                        &contact,
                        &sdp(PHONE_IP, PHONE_RTP_PORT),
                    );
                    sip.send_to(ok.as_bytes(), src).unwrap();
                    last_reply = ok;
                }
                invite = Some(m);
            }
            "ACK" => {
                if let Some((c, p)) = invite.as_deref().and_then(sdp_media) {
                    let to: SocketAddr = format!("{c}:{p}").parse().unwrap();
                    let (tx, rx) = rtp_exchange(&rtp, to);
                    out("RTP_TX", tx);
                    out("RTP_RX", rx);
                }
            }
            "CANCEL" => {
                let ok = reply(&m, 200, "OK", "ph1", "", "");
                sip.send_to(ok.as_bytes(), src).unwrap();
                if let Some(inv) = &invite {
                    let r = reply(inv, 487, "Request Terminated", "ph1", "", "");
                    sip.send_to(r.as_bytes(), from_proxy).unwrap();
                }
                out("CANCELLED", 1);
                done = true;
            }
            "BYE" => {
                let ok = reply(&m, 200, "OK", "", "", "");
                sip.send_to(ok.as_bytes(), src).unwrap();
                out("BYE", 1);
                // Stay a moment for retransmissions and a 487's ACK.
                done = true;
            }
            _ => {}
        }
    }
    out("PINGS", pings);
    out("SIP_PINGS", sip_pings);
}

/// The caller on the WAN side: INVITE phone@example.com through the proxy.
fn caller() {
    let proxy: SocketAddr = format!("{PROXY_IP}:5060").parse().unwrap();
    let sip = UdpSocket::bind((CALLER_IP, CALLER_SIP_PORT)).expect("caller sip socket");
    let rtp = UdpSocket::bind((CALLER_IP, CALLER_RTP_PORT)).expect("caller rtp socket");
    sip.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let cancel = env("NH_MODE") == "cancel";
    let dir = env("NH_DIR");
    let id = format!("{}-{}", std::process::id(), env("NH_CALL"));
    let body = sdp(CALLER_IP, CALLER_RTP_PORT);
    let via = format!("Via: SIP/2.0/UDP {CALLER_IP}:{CALLER_SIP_PORT};branch=z9hG4bKinv{id}");
    let from = format!("From: <sip:caller@example.com>;tag=c{id}");
    let callid = format!("Call-ID: call-{id}@{CALLER_IP}");
    let invite = format!(
        "INVITE sip:phone@example.com SIP/2.0\r\n{via}\r\n{from}\r\n\
         To: <sip:phone@example.com>\r\n{callid}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:caller@{CALLER_IP}:{CALLER_SIP_PORT}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    sip.send_to(invite.as_bytes(), proxy).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut provisional = false;
    let mut last_send = Instant::now();
    let end = Instant::now() + Duration::from_secs(20);
    let mut final_msg: Option<String> = None;
    while Instant::now() < end {
        if !provisional && last_send.elapsed() > Duration::from_millis(500) {
            sip.send_to(invite.as_bytes(), proxy).unwrap();
            last_send = Instant::now();
        }
        let Ok((n, _)) = crate::harness::recv_from(&sip, &mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        let Some(code) = m
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
        else {
            continue;
        };
        if !hdr(&m, "CSeq").unwrap_or("").contains("INVITE") {
            continue;
        }
        provisional = true;
        if code == 180 && !cancel {
            out("RINGING_AFTER_MS", started.elapsed().as_millis());
        }
        if code == 180 && cancel && final_msg.is_none() {
            out("RINGING", 1);
            let go = Path::new(&dir).join("go-cancel");
            let t = Instant::now();
            while !go.exists() && t.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let c = format!(
                "CANCEL sip:phone@example.com SIP/2.0\r\n{via}\r\n{from}\r\n\
                 To: <sip:phone@example.com>\r\n{callid}\r\nCSeq: 1 CANCEL\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            sip.send_to(c.as_bytes(), proxy).unwrap();
        }
        if code >= 200 {
            out("FINAL", code);
            final_msg = Some(m);
            break;
        }
    }
    let Some(fin) = final_msg else {
        out("FINAL", 0);
        return;
    };
    let to = hdr(&fin, "To").unwrap_or("").to_string();
    if !fin.starts_with("SIP/2.0 200") {
        // ACK for a negative final reply: same branch, to the proxy.
        let ack = format!(
            "ACK sip:phone@example.com SIP/2.0\r\n{via}\r\n{from}\r\nTo: {to}\r\n{callid}\r\n\
             CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sip.send_to(ack.as_bytes(), proxy).unwrap();
        return;
    }
    if let Some((c, p)) = sdp_media(&fin) {
        out("ANSWER_SDP", format!("{c}:{p}"));
    }
    let target = hdr(&fin, "Contact")
        .unwrap_or("")
        .trim_matches(|c| c == '<' || c == '>')
        .to_string();
    out("PHONE_CONTACT", &target);
    let routes: Vec<String> = harness::headers(&fin, "Record-Route")
        .iter()
        .map(|s| s.to_string())
        .collect();
    let route = if routes.is_empty() {
        String::new()
    } else {
        format!("Route: {}\r\n", routes.join(", "))
    };
    let ack = format!(
        "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER_IP}:{CALLER_SIP_PORT};branch=z9hG4bKack{id}\r\n\
         {route}{from}\r\nTo: {to}\r\n{callid}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sip.send_to(ack.as_bytes(), proxy).unwrap();
    if let Some((c, p)) = sdp_media(&fin) {
        let to: SocketAddr = format!("{c}:{p}").parse().unwrap();
        let (tx, rx) = rtp_exchange(&rtp, to);
        out("RTP_TX", tx);
        out("RTP_RX", rx);
    }
    let bye = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER_IP}:{CALLER_SIP_PORT};branch=z9hG4bKbye{id}\r\n\
         {route}{from}\r\nTo: {to}\r\n{callid}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    for _ in 0..4 {
        sip.send_to(bye.as_bytes(), proxy).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(800) {
            if let Ok((n, _)) = crate::harness::recv_from(&sip, &mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]);
                if hdr(&m, "CSeq").unwrap_or("").contains("BYE") && m.starts_with("SIP/2.0 ") {
                    out("BYE_REPLY", &m[8..11]);
                    return;
                }
            }
        }
    }
    out("BYE_REPLY", 0);
}

/// The helper entry: does nothing unless started by a test with `NH_ROLE` set.
#[test]
#[ignore = "helper run by the NAT tests inside a network namespace"]
fn nat_helper() {
    // Start the report on a line of its own (after libtest's "test … ").
    println!();
    match env("NH_ROLE").as_str() {
        "phone" => phone(),
        "caller" => caller(),
        _ => {}
    }
}

// ------------------------------------------------------------------ orchestration

/// A helper started in a namespace, with its report.
struct Helper {
    proc: NsProc,
    log: std::path::PathBuf,
}

impl Helper {
    fn start(ns: &str, dir: &Path, role: &str, name: &str, vars: &[(&str, String)]) -> Helper {
        let exe = std::env::current_exe().expect("test binary");
        let log = dir.join(format!("{name}.out"));
        let exe_s = exe.display().to_string();
        let mut env: Vec<(&str, String)> = vec![
            ("NH_ROLE", role.to_string()),
            ("NH_DIR", dir.display().to_string()),
        ];
        env.extend(vars.iter().cloned());
        let proc = NsProc::spawn(
            ns,
            &[
                &exe_s,
                "--ignored",
                "--exact",
                "it::nat::nat_helper",
                "--nocapture",
                "--test-threads=1",
            ],
            &env,
            &log,
            name,
        );
        Helper { proc, log }
    }
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// The report's `KEY value` lines.
    fn report(&self) -> HashMap<String, String> {
        self.text()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !k.is_empty())
                    .then(|| (k.to_string(), v.to_string()))
            })
            .collect()
    }
    fn has(&self, key: &str) -> bool {
        self.report().contains_key(key)
    }
    fn wait_key(&self, key: &str, t: Duration) -> bool {
        wait_until(t, || self.has(key))
    }
    fn finish(&mut self, t: Duration) -> HashMap<String, String> {
        self.proc.wait(t);
        self.report()
    }
}

fn num(r: &HashMap<String, String>, k: &str) -> i64 {
    r.get(k).and_then(|v| v.trim().parse().ok()).unwrap_or(-1)
}

/// rtpengine in the WAN namespace: legacy control on udp 22222, ng on 22223, CLI on
/// 127.0.0.1:22224, media on 203.0.113.2, sessions deleted at once.
fn start_rtpengine(t: &Topo, dir: &Path) -> NsProc {
    let args = [
        "rtpengine".to_string(),
        "--config-file=none".into(),
        "--table=-1".into(),
        "--foreground".into(),
        "--log-stderr".into(),
        format!("--interface={PROXY_IP}"),
        format!("--listen-udp={PROXY_IP}:{RTPP_PORT}"),
        format!("--listen-ng={PROXY_IP}:{NG_PORT}"),
        format!("--listen-cli=127.0.0.1:{CLI_PORT}"),
        format!("--port-min={RELAY_PORT_MIN}"),
        format!("--port-max={RELAY_PORT_MAX}"),
        "--delete-delay=0".into(),
        format!("--pidfile={}", dir.join("rtpengine.pid").display()),
    ];
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = NsProc::spawn(&t.wan, &a, &[], &dir.join("rtpengine.log"), "rtpengine");
    let ok = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("rtpengine.log"))
            .unwrap_or_default()
            .contains("Startup complete")
    });
    assert!(
        ok,
        "rtpengine did not start:\n{}",
        std::fs::read_to_string(dir.join("rtpengine.log")).unwrap_or_default()
    );
    p
}

/// Sessions rtpengine holds now (its CLI).
fn relay_sessions(t: &Topo) -> i64 {
    let o = netns::ns_run(
        &t.wan,
        &[
            "rtpengine-ctl",
            "-ip",
            &format!("127.0.0.1:{CLI_PORT}"),
            "list",
            "numsessions",
        ],
    );
    let s = String::from_utf8_lossy(&o.stdout);
    s.lines()
        .find_map(|l| l.strip_prefix("Current sessions total:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// The server in the WAN namespace, ready when its MI FIFO exists.
struct Proxy {
    proc: NsProc,
    dir: TempDir,
}

impl Proxy {
    fn start(t: &Topo, cfg: &str) -> Proxy {
        let dir = TempDir::new("nat");
        let cfg_path = dir.file("openser.cfg");
        std::fs::write(&cfg_path, harness::expand(cfg, 5060, dir.path())).unwrap();
        let cp = cfg_path.display().to_string();
        let proc = NsProc::spawn(
            &t.wan,
            &[harness::BIN, "-f", &cp, "-DD", "-E"],
            &[],
            &dir.file("stderr.log"),
            "openser",
        );
        let p = Proxy { proc, dir };
        if !harness::wait_fifo(p.dir.path()) {
            panic!("openser did not start; log:\n{}", p.log());
        }
        std::thread::sleep(Duration::from_millis(300));
        p
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.file("stderr.log")).unwrap_or_default()
    }
    fn mi(&self, cmd: &str, args: &[&str]) -> String {
        harness::mi(self.dir.path(), cmd, args)
    }
    /// Stop it and check the log has no crash.
    fn stop(mut self) {
        self.proc.stop();
        let log = self.log();
        for bad in ["CRITICAL", "ALERT:", "panicked at"] {
            assert!(!log.contains(bad), "server log has a `{bad}` line:\n{log}");
        }
    }
}

/// Root, ip, nft and rtpengine (when `relay`): else skip (a failure in CI).
fn prerequisites(relay: bool) -> bool {
    if let Err(why) = netns::available() {
        harness::skip(&why);
        return false;
    }
    if relay && !(harness::require("rtpengine") && harness::require("rtpengine-ctl")) {
        return false;
    }
    true
}

fn register_phone(t: &Topo, dir: &Path, lifetime: u64, mode: &str) -> Helper {
    let ph = Helper::start(
        &t.lan,
        dir,
        "phone",
        "phone",
        &[
            ("NH_LIFETIME", lifetime.to_string()),
            ("NH_MODE", mode.to_string()),
        ],
    );
    assert!(
        ph.wait_key("REGISTERED", Duration::from_secs(10)),
        "phone did not register: {}",
        ph.text()
    );
    ph
}

/// Register through the NAT and call in; media through the relay; sessions freed
/// after BYE and after a CANCELled call.
fn call_through_nat(relay: Relay) {
    if !prerequisites(true) {
        return;
    }
    let topo = Topo::new(10).expect("build the namespaces");
    let work = TempDir::new("natw");
    let _rtpe = start_rtpengine(&topo, work.path());
    let proxy = Proxy::start(&topo, &config(relay, 0, false));

    // 1. REGISTER from behind the NAT: the saved contact carries the NAT's address.
    let mut ph = register_phone(&topo, work.path(), 30, "answer");
    let ul = proxy.mi("ul_show_contact", &["location", "phone"]);
    assert!(
        ul.contains(&format!("sip:phone@{PHONE_IP}:{PHONE_SIP_PORT}")),
        "{ul}"
    );
    let received = format!("sip:{NAT_WAN_IP}:");
    assert!(
        proxy.mi("ul_dump", &[]).contains(&received),
        "received address is the NAT's public side: {}",
        proxy.mi("ul_dump", &[])
    );

    // 2. A call from the WAN side reaches the phone through the NAT mapping.
    let mut ca = Helper::start(
        &topo.wan,
        work.path(),
        "caller",
        "caller1",
        &[("NH_CALL", "1".into())],
    );
    let cr = ca.finish(Duration::from_secs(30));
    let pr = ph.finish(Duration::from_secs(10));
    let log = proxy.log();
    eprintln!("caller: {cr:?}\nphone: {pr:?}");
    assert_eq!(
        num(&cr, "FINAL"),
        200,
        "caller: {cr:?}\nphone: {pr:?}\n{log}"
    );
    assert_eq!(
        num(&cr, "BYE_REPLY"),
        200,
        "caller: {cr:?}\nphone: {pr:?}\n{log}"
    );
    assert!(pr.contains_key("BYE"), "phone got the BYE: {pr:?}");
    let from = pr.get("INVITE_FROM").cloned().unwrap_or_default();
    assert!(
        from.starts_with(PROXY_IP),
        "INVITE came from the proxy: {from}"
    );
    assert!(
        cr.get("PHONE_CONTACT")
            .is_some_and(|c| c.contains(NAT_WAN_IP)),
        "the 200's Contact was fixed to the NAT address: {cr:?}"
    );

    // 3. Both SDPs name the relay, and RTP flows through it both ways.
    for (who, r, key) in [("phone", &pr, "INVITE_SDP"), ("caller", &cr, "ANSWER_SDP")] {
        let sdp = r.get(key).cloned().unwrap_or_default();
        let (ip, port) = sdp.rsplit_once(':').unwrap_or(("", "0"));
        let port: u16 = port.parse().unwrap_or(0);
        assert_eq!(ip, PROXY_IP, "{who} sees the relay's address: {sdp}");
        assert!(
            (RELAY_PORT_MIN..=RELAY_PORT_MAX).contains(&port),
            "{who} sees a relay port: {sdp}"
        );
    }
    assert_eq!(num(&pr, "RTP_TX"), RTP_PACKETS as i64);
    assert_eq!(num(&cr, "RTP_TX"), RTP_PACKETS as i64);
    // The first packets may be lost while the relay learns the phone's NAT address.
    assert!(num(&pr, "RTP_RX") >= 10, "phone received RTP: {pr:?}");
    assert!(num(&cr, "RTP_RX") >= 10, "caller received RTP: {cr:?}");

    // 4. After the BYE the relay has no session left.
    assert!(
        wait_until(Duration::from_secs(5), || relay_sessions(&topo) == 0),
        "relay sessions after BYE: {}",
        relay_sessions(&topo)
    );

    // 5. A CANCELled call leaves nothing behind either.
    let mut ph = register_phone(&topo, work.path(), 30, "ring");
    let mut ca = Helper::start(
        &topo.wan,
        work.path(),
        "caller",
        "caller2",
        &[("NH_CALL", "2".into()), ("NH_MODE", "cancel".into())],
    );
    assert!(
        ca.wait_key("RINGING", Duration::from_secs(10)),
        "{}",
        ca.text()
    );
    assert_eq!(
        relay_sessions(&topo),
        1,
        "the ringing call has a relay session"
    );
    std::fs::write(work.path().join("go-cancel"), "").unwrap();
    let cr = ca.finish(Duration::from_secs(20));
    assert_eq!(num(&cr, "FINAL"), 487, "caller: {cr:?}\n{}", proxy.log());
    let pr = ph.finish(Duration::from_secs(5));
    assert!(pr.contains_key("CANCELLED"), "{pr:?}");
    assert!(
        wait_until(Duration::from_secs(5), || relay_sessions(&topo) == 0),
        "relay sessions after CANCEL: {}",
        relay_sessions(&topo)
    );
    proxy.stop();
}

#[test]
fn nat_call_rtpproxy_protocol() {
    call_through_nat(Relay::Rtpproxy);
}

#[test]
fn nat_call_rtpengine_ng() {
    call_through_nat(Relay::Ng);
}

/// With pings every 2 s the mapping outlives 3 × the conntrack timeout (4 s); without
/// them the same call cannot reach the phone.
fn pings(on: bool) {
    if !prerequisites(false) {
        return;
    }
    const CT: u64 = 4;
    let topo = Topo::new(CT as u32).expect("build the namespaces");
    let work = TempDir::new("natp");
    let proxy = Proxy::start(&topo, &config(Relay::None, if on { 2 } else { 0 }, false));
    let mut ph = register_phone(&topo, work.path(), 3 * CT + 8, "answer");
    std::thread::sleep(Duration::from_secs(3 * CT));
    let mut ca = Helper::start(
        &topo.wan,
        work.path(),
        "caller",
        "caller",
        &[("NH_CALL", "1".into())],
    );
    let cr = ca.finish(Duration::from_secs(30));
    // The phone reports when it ends (BYE) or its lifetime is over.
    let pr = ph.finish(Duration::from_secs(3 * CT + 20));
    let pings = num(&pr, "PINGS");
    eprintln!("pings {on}: caller {cr:?}\nphone {pr:?}");
    if on {
        assert_eq!(
            num(&cr, "FINAL"),
            200,
            "caller: {cr:?}\nphone: {pr:?}\n{}",
            proxy.log()
        );
        assert!(pr.contains_key("BYE"), "{pr:?}");
        // 12 s at one ping per 2 s: at least 4 reached the phone through the NAT.
        assert!(pings >= 4, "pings counted at the phone: {pr:?}");
        assert!(proxy.mi("nh_enable_ping", &[]).contains("Status:: 1"));
    } else {
        assert_ne!(num(&cr, "FINAL"), 200, "caller: {cr:?}\nphone: {pr:?}");
        assert!(
            !pr.contains_key("INVITE_FROM"),
            "the INVITE must not reach the phone: {pr:?}"
        );
        assert_eq!(pings, 0, "{pr:?}");
    }
    proxy.stop();
}

#[test]
fn nat_pings_keep_the_mapping() {
    pings(true);
}

#[test]
fn nat_no_pings_mapping_expires() {
    pings(false);
}

/// SIP pings (sipping_bflag): OPTIONS reach the phone, its 200s are absorbed.
#[test]
fn nat_sip_pings() {
    if !prerequisites(false) {
        return;
    }
    let topo = Topo::new(10).expect("build the namespaces");
    let work = TempDir::new("nats");
    let proxy = Proxy::start(&topo, &config(Relay::None, 1, true));
    let mut ph = register_phone(&topo, work.path(), 4, "answer");
    let pr = ph.finish(Duration::from_secs(10));
    assert!(num(&pr, "SIP_PINGS") >= 2, "{pr:?}");
    assert_eq!(num(&pr, "PINGS"), 0, "{pr:?}");
    let log = proxy.log();
    assert!(!log.contains("ERROR"), "{log}");
    proxy.stop();
}

/// The relay stops answering: the offer fails after rtpproxy_tout × rtpproxy_retr,
/// the script's failure branch runs and the call goes on without the relay; the
/// disabled relay costs the next call nothing; after rtpproxy_disable_tout it is
/// tested again and used.
#[test]
fn nat_relay_down() {
    if !prerequisites(true) {
        return;
    }
    // No pings here: a long conntrack timeout, so that a slow (loaded) machine cannot
    // lose the phone's mapping between its REGISTER and the end of a call.
    let topo = Topo::new(60).expect("build the namespaces");
    let work = TempDir::new("natd");
    let rtpe = start_rtpengine(&topo, work.path());
    let proxy = Proxy::start(&topo, &config(Relay::Rtpproxy, 0, false));
    rtpe.signal(19); // SIGSTOP: alive, bound, silent

    let call = |n: u32| -> (HashMap<String, String>, HashMap<String, String>) {
        let mut ph = register_phone(&topo, work.path(), 30, "answer");
        let mut ca = Helper::start(
            &topo.wan,
            work.path(),
            "caller",
            &format!("caller{n}"),
            &[("NH_CALL", n.to_string())],
        );
        let cr = ca.finish(Duration::from_secs(30));
        let pr = ph.finish(Duration::from_secs(10));
        (cr, pr)
    };

    let (cr, pr) = call(1);
    eprintln!("relay down: caller {cr:?}\nphone {pr:?}");
    let log = proxy.log();
    assert!(log.contains("RELAY-OFFER-FAILED"), "{log}");
    assert!(
        log.contains("timeout waiting reply from a RTP proxy"),
        "{log}"
    );
    assert_eq!(
        num(&cr, "FINAL"),
        200,
        "call proceeds without the relay: {cr:?}\n{log}"
    );
    assert_eq!(
        pr.get("INVITE_SDP").map(String::as_str),
        Some(format!("{CALLER_IP}:{CALLER_RTP_PORT}").as_str()),
        "SDP untouched: {pr:?}"
    );
    // The worker waited for the relay no longer than tout × retr = 2 s (plus the time
    // the call setup itself takes, with a wide margin for a loaded machine).
    let ring_ms = num(&cr, "RINGING_AFTER_MS");
    assert!(
        ring_ms >= 1900,
        "the offer did wait for the relay: {ring_ms} ms"
    );
    assert!(
        ring_ms < 2000 + 5000,
        "no longer than tout × retr: {ring_ms} ms"
    );
    assert!(proxy.mi("nh_show_rtpp", &[]).contains("disabled=1"));

    // Disabled: the next call does not wait for the relay at all.
    let (cr, _) = call(2);
    assert_eq!(num(&cr, "FINAL"), 200);
    assert!(num(&cr, "RINGING_AFTER_MS") < 1900, "{cr:?}");
    assert!(proxy.log().contains("no available proxies"));

    // The relay is back; after rtpproxy_disable_tout (3 s) it is tested and used.
    rtpe.signal(18); // SIGCONT
    std::thread::sleep(Duration::from_secs(4));
    let (cr, pr) = call(3);
    assert_eq!(num(&cr, "FINAL"), 200, "{cr:?}");
    let sdp = pr.get("INVITE_SDP").cloned().unwrap_or_default();
    assert!(
        sdp.starts_with(PROXY_IP),
        "relayed again: {pr:?}\n{}",
        proxy.log()
    );
    assert!(proxy.log().contains("re-enabled"), "{}", proxy.log());
    assert!(proxy.mi("nh_show_rtpp", &[]).contains("disabled=0"));
    // MI switches the proxy off and on again.
    let url = format!("udp:{PROXY_IP}:{RTPP_PORT}");
    proxy.mi("nh_enable_rtpp", &[&url, "0"]);
    assert!(proxy.mi("nh_show_rtpp", &[]).contains("disabled=1"));
    proxy.mi("nh_enable_rtpp", &[&url, "1"]);
    assert!(proxy.mi("nh_show_rtpp", &[]).contains("disabled=0"));
    proxy.stop();
}

/// The sample NAT config (etc/examples/nathelper.cfg, the standard 1.2 layout) passes
/// `-c`; a NAT config with a bad nathelper call is rejected with its position.
#[test]
fn nat_example_config_checks() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/examples/nathelper.cfg");
    let (rc, _, err) = harness::run(&["-c", "-f", p]);
    assert_eq!(rc, 0, "{err}");
    let dir = TempDir::new("natc");
    let bad = std::fs::read_to_string(p).unwrap().replacen(
        " force_rtp_proxy()",
        " force_rtp_proxy(\"xq\")",
        1,
    );
    let f = dir.file("bad.cfg");
    std::fs::write(&f, bad).unwrap();
    let (rc, _, err) = harness::run(&["-c", "-f", &f.display().to_string()]);
    assert_ne!(rc, 0);
    assert!(
        err.contains("bad.cfg:") && err.contains("unknown option"),
        "{err}"
    );
    // fix_nated_register() without received_avp is a config error, as in 1.2.
    let no_avp = std::fs::read_to_string(p).unwrap().replace(
        "modparam(\"nathelper\", \"received_avp\", \"$avp(i:42)\")",
        "",
    );
    std::fs::write(&f, no_avp).unwrap();
    let (rc, _, err) = harness::run(&["-c", "-f", &f.display().to_string()]);
    assert_ne!(rc, 0);
    assert!(err.contains("received_avp"), "{err}");
    // A proxy without a registrar may use nathelper (usrloc is needed for pinging only).
    let no_usrloc = "loadmodule \"sl.so\"\nloadmodule \"nathelper.so\"\n\
        modparam(\"nathelper\", \"rtpproxy_sock\", \"udp:127.0.0.1:22222\")\n\
        route { if (nat_uac_test(\"19\")) { fix_nated_contact(); force_rtp_proxy(\"co\"); } }\n";
    std::fs::write(&f, no_usrloc).unwrap();
    let (rc, _, err) = harness::run(&["-c", "-f", &f.display().to_string()]);
    assert_eq!(rc, 0, "{err}");
}

//! sipload: the project's own load client of the benchmarks (`bench/stream_bench.sh`).
//! SIPp as packaged by Debian has no TLS, so TCP and TLS calls are driven by this one
//! client against both openser-rs and Kamailio; over UDP it is the lighter driver of
//! the runs where SIPp's own CPU is the ceiling of this machine (the dispatcher runs).
//!
//! One process plays both ends of a stateful call through the proxy: a UAS that
//! listens on `--uas` (TCP, TLS or UDP; repeat `--uas` for several, e.g. dispatcher
//! destinations) and answers INVITE with 180 and 200 and BYE with 200, and a UAC that
//! opens `--conns` connections (UDP: sockets) to `--proxy` and places `--calls` calls
//! at `--rate` calls/s (INVITE, 200, ACK, BYE, 200; the ACK and BYE follow the
//! Record-Route set), at most `--window` calls in progress per connection. A call not
//! finished within 5 s is a failure (UDP: nothing is retransmitted, so one lost
//! datagram fails its call — the same zero-retransmission bar as the SIPp runs).
//! Prints one line: `calls=N ok=K failed=F wall=S cps=X`, and exits 1 on any failure.
//!
//! Test and benchmark tool only (threads: one per connection); loopback addresses.
//!
//!     sipload --transport tls --proxy 127.0.0.1:5061 --uas 127.0.0.1:5070 \
//!         --cert server.pem --key server.key --rate 500 --calls 10000

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

enum Stream {
    Tcp(TcpStream),
    TlsC(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    TlsS(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::TlsC(s) => s.read(b),
            Stream::TlsS(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::TlsC(s) => s.write(b),
            Stream::TlsS(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::TlsC(s) => s.flush(),
            Stream::TlsS(s) => s.flush(),
        }
    }
}

/// Framing by Content-Length; leading CRLFs are dropped.
struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    fn next(&mut self) -> Option<String> {
        let lead = self
            .buf
            .iter()
            .take_while(|&&c| c == b'\r' || c == b'\n')
            .count();
        self.buf.drain(..lead);
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let cl = hdr(&head, "Content-Length")
            .or_else(|| hdr(&head, "l"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if self.buf.len() < end + cl {
            return None;
        }
        let m = String::from_utf8_lossy(&self.buf[..end + cl]).into_owned();
        self.buf.drain(..end + cl);
        Some(m)
    }

    /// Read what is there (`Ok(false)`: end of file).
    fn fill(&mut self, s: &mut Stream) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16384];
        match s.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// `SIPLOAD_DEBUG=1`: print every message received.
fn debug(who: &str, m: &str) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("SIPLOAD_DEBUG").is_some()) {
        eprintln!("--- {who} got:\n{m}");
    }
}

fn hdr<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    m.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn hdrs<'a>(m: &'a str, name: &str) -> Vec<&'a str> {
    m.split("\r\n")
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

struct Opts {
    /// "tcp", "tls" or "udp"
    tr: &'static str,
    proxy: SocketAddr,
    /// the UAS addresses (the first is the INVITEs' Request-URI)
    uas: Vec<SocketAddr>,
    cert: String,
    key: String,
    rate: f64,
    calls: u64,
    conns: u64,
    window: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        tr: "tcp",
        proxy: "127.0.0.1:5060".parse().unwrap(),
        uas: Vec::new(),
        cert: String::new(),
        key: String::new(),
        rate: 100.0,
        calls: 1000,
        conns: 4,
        window: 200,
    };
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < a.len() {
        let v = a.get(i + 1).cloned().unwrap_or_default();
        match a[i].as_str() {
            "--transport" => {
                o.tr = match v.to_ascii_lowercase().as_str() {
                    "tls" => "tls",
                    "udp" => "udp",
                    _ => "tcp",
                }
            }
            "--proxy" => o.proxy = v.parse().expect("--proxy ip:port"),
            "--uas" => o.uas.push(v.parse().expect("--uas ip:port")),
            "--cert" => o.cert = v,
            "--key" => o.key = v,
            "--rate" => o.rate = v.parse().expect("--rate"),
            "--calls" => o.calls = v.parse().expect("--calls"),
            "--conns" => o.conns = v.parse::<u64>().expect("--conns").max(1),
            "--window" => o.window = v.parse().expect("--window"),
            x => {
                eprintln!("sipload: unknown option {x}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    if o.uas.is_empty() {
        o.uas.push("127.0.0.1:5070".parse().unwrap());
    }
    assert!(
        o.proxy.ip().is_loopback() && o.uas.iter().all(|u| u.ip().is_loopback()),
        "loopback only"
    );
    o
}

#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The UAS: accept the proxy's connections, answer each one's requests.
fn uas(o: Arc<Opts>, l: TcpListener, stop: Arc<AtomicBool>) {
    let contact = format!(
        "Contact: <sip:uas@{};transport={}>\r\n",
        l.local_addr().unwrap(),
        o.tr
    );
    let scfg = if o.tr == "tls" {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&o.cert)
            .expect("--cert")
            .map(|c| c.expect("certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&o.key).expect("--key");
        Some(Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("certificate and key"),
        ))
    } else {
        None
    };
    l.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let t = match l.accept() {
            Ok((t, _)) => t,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        t.set_nonblocking(false).unwrap();
        let _ = t.set_nodelay(true);
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let s = match &scfg {
            Some(c) => {
                let mut st =
                    rustls::StreamOwned::new(rustls::ServerConnection::new(c.clone()).unwrap(), t);
                let mut ok = true;
                while ok && st.conn.is_handshaking() {
                    ok = st.conn.complete_io(&mut st.sock).is_ok();
                }
                if !ok {
                    eprintln!("sipload: the UAS's TLS handshake failed");
                    continue;
                }
                st.sock
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                Stream::TlsS(Box::new(st))
            }
            None => {
                t.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                Stream::Tcp(t)
            }
        };
        let (contact, stop) = (contact.clone(), stop.clone());
        std::thread::spawn(move || uas_conn(&contact, s, &stop));
    }
}

fn reply(req: &str, code: &str, contact: &str, tag: &str) -> String {
    let mut r = format!("SIP/2.0 {code}\r\n");
    for v in hdrs(req, "Via") {
        r.push_str(&format!("Via: {v}\r\n"));
    }
    for v in hdrs(req, "Record-Route") {
        r.push_str(&format!("Record-Route: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        r.push_str(&format!("{n}: {}\r\n", hdr(req, n).unwrap_or_default()));
    }
    let to = hdr(req, "To").unwrap_or_default();
    if to.contains("tag=") {
        r.push_str(&format!("To: {to}\r\n"));
    } else {
        r.push_str(&format!("To: {to};tag={tag}\r\n"));
    }
    r.push_str(contact);
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

/// The UAS's answers to one request: 180 and 200 to an INVITE, 200 to a BYE.
fn answer(m: &str, contact: &str, out: &mut Vec<String>) {
    debug("uas", m);
    let tag = hdr(m, "Call-ID").unwrap_or("x").replace(['@', '.'], "");
    if m.starts_with("INVITE ") {
        out.push(reply(m, "180 Ringing", contact, &tag));
        out.push(reply(m, "200 OK", contact, &tag));
    } else if m.starts_with("BYE ") {
        out.push(reply(m, "200 OK", "", &tag));
    }
}

fn uas_conn(contact: &str, mut s: Stream, stop: &AtomicBool) {
    let mut f = Framer { buf: Vec::new() };
    while !stop.load(Ordering::Relaxed) {
        match f.fill(&mut s) {
            Ok(true) => {}
            _ => return,
        }
        let mut out = Vec::new();
        while let Some(m) = f.next() {
            answer(&m, contact, &mut out);
        }
        if !out.is_empty()
            && s.write_all(out.concat().as_bytes())
                .and_then(|_| s.flush())
                .is_err()
        {
            return;
        }
    }
}

/// A UDP UAS: answers every request datagram to where it came from (the proxy).
fn uas_udp(sock: UdpSocket, stop: Arc<AtomicBool>) {
    let contact = format!(
        "Contact: <sip:uas@{};transport=udp>\r\n",
        sock.local_addr().unwrap()
    );
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        answer(&String::from_utf8_lossy(&buf[..n]), &contact, &mut out);
        for r in out.drain(..) {
            let _ = sock.send_to(r.as_bytes(), from);
        }
    }
}

/// The UAC's side of one connection (UDP: one socket talking to the proxy).
enum Link {
    Stream(Stream, Framer),
    Udp(UdpSocket, Vec<u8>),
}

impl Link {
    fn send(&mut self, out: &[String]) -> std::io::Result<()> {
        match self {
            Link::Stream(s, _) => s.write_all(out.concat().as_bytes()).and_then(|_| s.flush()),
            Link::Udp(u, _) => out.iter().try_for_each(|m| u.send(m.as_bytes()).map(drop)),
        }
    }

    /// Wait a little for input; the whole messages received go to `msgs`
    /// (`Ok(false)`: the connection was closed).
    fn recv(&mut self, msgs: &mut Vec<String>) -> std::io::Result<bool> {
        match self {
            Link::Stream(s, f) => {
                let open = f.fill(s)?;
                while let Some(m) = f.next() {
                    msgs.push(m);
                }
                Ok(open)
            }
            Link::Udp(u, buf) => {
                match u.recv(buf) {
                    Ok(n) => msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e),
                }
                Ok(true)
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Open one UAC connection to the proxy (UDP: a socket of its own); its local address.
fn connect(o: &Opts) -> Result<(Link, SocketAddr), String> {
    if o.tr == "udp" {
        let u = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        u.connect(o.proxy).map_err(|e| format!("connect: {e}"))?;
        u.set_read_timeout(Some(Duration::from_millis(2)))
            .map_err(|e| e.to_string())?;
        let me = u.local_addr().map_err(|e| e.to_string())?;
        return Ok((Link::Udp(u, vec![0u8; 65536]), me));
    }
    let t = TcpStream::connect_timeout(&o.proxy, Duration::from_secs(5))
        .map_err(|e| format!("connect to {}: {e}", o.proxy))?;
    let _ = t.set_nodelay(true);
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = t.local_addr().unwrap();
    let s = if o.tr == "tls" {
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(openser_core::transport::tls::any_server_verifier(
                &provider(),
            ))
            .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            Arc::new(cfg),
            ServerName::IpAddress(o.proxy.ip().into()),
        )
        .unwrap();
        let mut st = rustls::StreamOwned::new(conn, t);
        while st.conn.is_handshaking() {
            st.conn
                .complete_io(&mut st.sock)
                .map_err(|e| format!("TLS handshake with {}: {e}", o.proxy))?;
        }
        st.sock
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        Stream::TlsC(Box::new(st))
    } else {
        t.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
        Stream::Tcp(t)
    };
    Ok((Link::Stream(s, Framer { buf: Vec::new() }), me))
}

/// One UAC connection: `n` calls at `rate`.
fn uac_conn(o: &Opts, idx: u64, n: u64, rate: f64, c: &Counts) {
    let (mut link, me) = match connect(o) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sipload: {e}");
            c.failed.fetch_add(n, Ordering::Relaxed);
            return;
        }
    };
    let p = o.tr.to_ascii_uppercase();
    let pid = std::process::id();
    let mut msgs: Vec<String> = Vec::new();
    // call-id → (started, state: 0 INVITE sent, 1 BYE sent)
    let mut calls: HashMap<String, (Instant, u8)> = HashMap::new();
    let start = Instant::now();
    let mut sent = 0u64;
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    while sent < n || !calls.is_empty() {
        let mut out = Vec::new();
        while sent < n
            && calls.len() < o.window
            && start + gap.mul_f64(sent as f64) <= Instant::now()
        {
            let cid = format!("{idx}-{sent}-{pid}@sipload");
            out.push(format!(
                "INVITE sip:uas@{uas} SIP/2.0\r\n\
                 Via: SIP/2.0/{p} {me};branch=z9hG4bK{idx}x{sent}i;rport\r\n\
                 From: <sip:uac@127.0.0.1>;tag=f{idx}x{sent}\r\nTo: <sip:uas@{uas}>\r\n\
                 Call-ID: {cid}\r\nCSeq: 1 INVITE\r\n\
                 Contact: <sip:uac@{me};transport={t}>\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n",
                uas = o.uas[0],
                t = o.tr
            ));
            calls.insert(cid, (Instant::now(), 0));
            sent += 1;
        }
        for m in msgs.drain(..) {
            debug("uac", &m);
            let Some(cid) = hdr(&m, "Call-ID").map(str::to_string) else {
                continue;
            };
            let cseq = hdr(&m, "CSeq").unwrap_or_default();
            let Some(st) = calls.get_mut(&cid) else {
                continue;
            };
            if m.starts_with("SIP/2.0 200") && cseq.ends_with("INVITE") && st.1 == 0 {
                st.1 = 1;
                let target = hdr(&m, "Contact")
                    .and_then(|c| c.split('<').nth(1))
                    .and_then(|c| c.split('>').next())
                    .unwrap_or_default()
                    .to_string();
                let mut rr = hdrs(&m, "Record-Route");
                rr.reverse();
                let route = if rr.is_empty() {
                    String::new()
                } else {
                    format!("Route: {}\r\n", rr.join(", "))
                };
                let from = hdr(&m, "From").unwrap_or_default();
                let to = hdr(&m, "To").unwrap_or_default();
                for (method, num, b) in [("ACK", 1, "a"), ("BYE", 2, "b")] {
                    out.push(format!(
                        "{method} {target} SIP/2.0\r\n\
                         Via: SIP/2.0/{p} {me};branch=z9hG4bK{br}{b};rport\r\n\
                         {route}From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
                         CSeq: {num} {method}\r\nMax-Forwards: 70\r\n\
                         Content-Length: 0\r\n\r\n",
                        br = cid.replace(['@', '.'], "")
                    ));
                }
            } else if m.starts_with("SIP/2.0 200") && cseq.ends_with("BYE") {
                calls.remove(&cid);
                c.ok.fetch_add(1, Ordering::Relaxed);
            } else if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
                calls.remove(&cid);
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !out.is_empty() && link.send(&out).is_err() {
            eprintln!("sipload: write failed");
            break;
        }
        let now = Instant::now();
        let before = calls.len();
        calls.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(5));
        c.failed
            .fetch_add((before - calls.len()) as u64, Ordering::Relaxed);
        match link.recv(&mut msgs) {
            Ok(true) => {}
            _ => {
                eprintln!("sipload: connection to the proxy closed");
                break;
            }
        }
    }
    let left = (n - sent) + calls.len() as u64;
    c.failed.fetch_add(left, Ordering::Relaxed);
}

fn main() {
    let o = Arc::new(opts());
    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<_> = o
        .uas
        .iter()
        .map(|&a| {
            let (o, stop) = (o.clone(), stop.clone());
            if o.tr == "udp" {
                let u = UdpSocket::bind(a).expect("bind the UAS");
                std::thread::spawn(move || uas_udp(u, stop))
            } else {
                let l = TcpListener::bind(a).expect("bind the UAS");
                std::thread::spawn(move || uas(o, l, stop))
            }
        })
        .collect();
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let mut th = Vec::new();
    for i in 0..o.conns {
        let n = o.calls / o.conns + u64::from(i < o.calls % o.conns);
        let (o, c) = (o.clone(), counts.clone());
        let rate = o.rate / o.conns as f64;
        th.push(std::thread::spawn(move || uac_conn(&o, i, n, rate, &c)));
    }
    for t in th {
        let _ = t.join();
    }
    let wall = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for u in servers {
        let _ = u.join();
    }
    let ok = counts.ok.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    println!(
        "calls={} ok={ok} failed={failed} wall={wall:.2} cps={:.0}",
        o.calls,
        ok as f64 / wall
    );
    std::process::exit(i32::from(failed > 0 || ok != o.calls));
}

//! TLS (issue 12, stage 3): rustls inside the TCP machinery, 1.2's `tls_*` globals,
//! relaying over TLS, and tlsops. Certificates are made by the tests (`openssl`);
//! the SIP peers are the harness's rustls client (which verifies the server against
//! the test CA, name included) and `openssl s_client`.

use crate::harness::tls::{Pki, TlsClient, client_config};
use crate::harness::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// UDP and TLS on the same port number, the test PKI, `extra` globals and `route`.
fn tls_cfg(pki: &Pki, extra: &str, route: &str) -> String {
    format!(
        "listen=udp:127.0.0.1:{{PORT}}\nlisten=tls:127.0.0.1:{{PORT}}\nchildren=1\n\
         tcp_children=2\n\
         tls_certificate=\"{}\"\ntls_private_key=\"{}\"\ntls_ca_list=\"{}\"\n{extra}\n\
         loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nloadmodule \"rr.so\"\n\
         loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nloadmodule \"tlsops.so\"\n\
         modparam(\"usrloc\", \"db_mode\", 0)\n{route}\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    )
}

/// The script: REGISTER only from a verified peer; OPTIONS answered according to
/// the tlsops variables; the rest routed (registrar lookup, record-routing).
const ROUTE: &str = "route {\n\
    if (method == \"REGISTER\") {\n\
        if (is_peer_verified()) { save(\"location\"); exit; }\n\
        sl_send_reply(\"403\", \"Verified certificate required\"); exit;\n\
    }\n\
    if (method == \"OPTIONS\" && uri == myself) {\n\
        if ($tls_peer_verified == 1 && $tls_peer_subject_cn == \"alice\") {\n\
            sl_send_reply(\"200\", \"OK alice\"); exit;\n\
        }\n\
        if ($tls_version == \"TLSv1.3\" || $tls_version == \"TLSv1.2\") {\n\
            sl_send_reply(\"200\", \"OK anonymous TLS\"); exit;\n\
        }\n\
        sl_send_reply(\"200\", \"OK not TLS\"); exit;\n\
    }\n\
    if (loose_route()) { t_relay(); exit; }\n\
    if (method == \"INVITE\") { record_route(); }\n\
    if (uri == myself) {\n\
        if (!lookup(\"location\")) { sl_send_reply(\"404\", \"Not Found\"); exit; }\n\
    }\n\
    t_relay();\n\
}";

thread_local! {
    /// The port of the server the test talks to (each test runs on its own thread).
    static PORT: std::cell::Cell<u16> = const { std::cell::Cell::new(5060) };
}

fn start(pki: &Pki, extra: &str) -> Server {
    let s = Server::start(&tls_cfg(pki, extra, ROUTE), &[]);
    PORT.with(|p| p.set(s.port));
    assert!(
        eventually(20, || TcpStream::connect(s.addr()).is_ok()),
        "not listening on TLS\n{}",
        s.log()
    );
    s
}

/// An OPTIONS to the server (`port`) from `me`.
fn options(me: SocketAddr, callid: &str) -> String {
    let port = PORT.with(|p| p.get());
    format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {me};branch=z9hG4bK{callid}\r\n\
         From: <sip:a@127.0.0.1>;tag=t{callid}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: {callid}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn status(m: &str) -> &str {
    m.lines().next().unwrap_or_default()
}

/// A reply to `req` as a UAS writes it.
fn stream_reply(req: &str, code: u16, reason: &str, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for v in headers(req, "Record-Route") {
        s.push_str(&format!("Record-Route: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, n) {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    let to = header(req, "To").unwrap_or("");
    if to.contains("tag=") {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!("To: {to};tag=callee1\r\n"));
    }
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// Close `fd` with a reset (SO_LINGER 0) when it is dropped.
fn set_reset_on_close(fd: i32) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a linger struct of the right size.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

/// The phone registers over TLS with a certificate the server verifies (and it
/// verifies the server's against the test CA, name included); a caller on UDP calls
/// it: the INVITE reaches it over its registered TLS connection (`lookup`), and the
/// call completes — 200, ACK, BYE, 200. The tlsops variables decide the OPTIONS
/// replies; `is_peer_verified()` the REGISTER.
#[test]
fn register_over_tls_call_over_udp() {
    let pd = TempDir::new("tls-pki");
    let pki = Pki::new(pd.path());
    let mut s = start(
        &pki,
        "tls_verify_client=1\ntls_require_client_certificate=0",
    );
    let alice = client_config(
        Some(&pki.path("ca.pem")),
        Some((&pki.path("alice.pem"), &pki.path("alice.key"))),
    );
    let mut callee = TlsClient::connect(s.addr(), alice).expect("TLS handshake");
    let me = callee.local_addr();
    callee.send(&options(me, "o1")).unwrap();
    let r = callee.recv().unwrap_or_default();
    assert_eq!(status(&r), "SIP/2.0 200 OK alice", "{r}\n{}", s.log());

    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TLS {me};branch=z9hG4bKreg1\r\n\
         From: <sip:bob@127.0.0.1>;tag=r1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
         Contact: <sip:bob@{me};transport=tls>\r\nExpires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    callee.send(&reg).unwrap();
    let r = callee.recv().unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());

    let caller = Client::new();
    let cp = caller.port();
    let port = s.port;
    let invite = request(
        "INVITE",
        &format!("sip:bob@127.0.0.1:{port}"),
        cp,
        "tcall1",
        1,
        &format!("Contact: <sip:alice@127.0.0.1:{cp}>\r\n"),
    );
    caller.send(s.addr(), &invite);
    let inv = callee.recv().unwrap_or_default();
    assert!(
        inv.starts_with(&format!("INVITE sip:bob@{me};transport=tls SIP/2.0")),
        "{inv}\n{}",
        s.log()
    );
    let top_via = header(&inv, "Via").unwrap_or_default();
    assert!(top_via.starts_with("SIP/2.0/TLS 127.0.0.1:"), "{inv}");
    let rrs = headers(&inv, "Record-Route");
    assert!(rrs.iter().any(|r| r.contains("transport=tls")), "{rrs:?}");
    let ok = stream_reply(
        &inv,
        200,
        "OK",
        &format!("Contact: <sip:bob@{me};transport=tls>\r\n"),
    );
    callee.send(&ok).unwrap();
    let r = caller.recv_matching("SIP/2.0 200").unwrap_or_default();
    assert!(r.contains("CSeq: 1 INVITE"), "{r}");
    let route: Vec<&str> = headers(&r, "Record-Route").into_iter().rev().collect();
    let route = route.join(", ");
    let to = header(&r, "To").unwrap_or_default().to_string();
    let ack = format!(
        "ACK sip:bob@{me};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bKtcall1ack\r\n\
         Route: {route}\r\nFrom: <sip:alice@127.0.0.1>;tag=atcall1\r\nTo: {to}\r\n\
         Call-ID: tcall1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.send(s.addr(), &ack);
    let got = callee.recv().unwrap_or_default();
    assert!(got.starts_with("ACK sip:bob@"), "{got}\n{}", s.log());
    let bye = ack
        .replace("ACK sip:", "BYE sip:")
        .replace("tcall1ack", "tcall1bye")
        .replace("CSeq: 1 ACK", "CSeq: 2 BYE");
    caller.send(s.addr(), &bye);
    let got = callee.recv().unwrap_or_default();
    assert!(got.starts_with("BYE sip:bob@"), "{got}\n{}", s.log());
    callee.send(&stream_reply(&got, 200, "OK", "")).unwrap();
    let r = caller.recv_matching("SIP/2.0 200").unwrap_or_default();
    assert!(r.contains("CSeq: 2 BYE"), "{r}");

    // a client without a certificate: TLS, but not verified
    let anon = client_config(Some(&pki.path("ca.pem")), None);
    let mut c = TlsClient::connect(s.addr(), anon).expect("TLS handshake without certificate");
    c.send(&options(c.local_addr(), "o2")).unwrap();
    let r = c.recv().unwrap_or_default();
    assert_eq!(status(&r), "SIP/2.0 200 OK anonymous TLS", "{r}");
    c.send(&reg.replace("reg1", "reg2")).unwrap();
    let r = c.recv().unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    // a certificate the CA did not sign is refused in the handshake
    let mallory = client_config(
        Some(&pki.path("ca.pem")),
        Some((&pki.path("mallory.pem"), &pki.path("mallory.key"))),
    );
    let refused = match TlsClient::connect(s.addr(), mallory) {
        Err(_) => true,
        Ok(mut m) => {
            let me = m.local_addr();
            let _ = m.send(&options(me, "o3"));
            m.closed()
        }
    };
    assert!(refused, "an untrusted client certificate was accepted");
    // and over UDP the variables are null
    let u = Client::new();
    let ruri = format!("sip:127.0.0.1:{port}");
    u.send(s.addr(), &request("OPTIONS", &ruri, u.port(), "o4", 1, ""));
    let r = u.recv_matching("SIP/2.0").unwrap_or_default();
    assert_eq!(status(&r), "SIP/2.0 200 OK not TLS", "{r}");
    assert!(s.stop().success());
}

/// `tls_require_client_certificate=1`: a client without a certificate is refused;
/// one with a certificate of the CA is served. `openssl s_client` verifies the
/// server's certificate against the test CA, and fails against another CA.
#[test]
fn required_client_certificate_and_s_client() {
    let pd = TempDir::new("tls-pki");
    let pki = Pki::new(pd.path());
    let mut s = start(
        &pki,
        "tls_verify_client=1\ntls_require_client_certificate=1",
    );
    let anon = client_config(Some(&pki.path("ca.pem")), None);
    let refused = match TlsClient::connect(s.addr(), anon) {
        Err(_) => true,
        Ok(mut c) => {
            let me = c.local_addr();
            let _ = c.send(&options(me, "r1"));
            c.closed()
        }
    };
    assert!(
        refused,
        "a client without a certificate was served\n{}",
        s.log()
    );
    let alice = client_config(
        Some(&pki.path("ca.pem")),
        Some((&pki.path("alice.pem"), &pki.path("alice.key"))),
    );
    let mut c = TlsClient::connect(s.addr(), alice).expect("handshake with a certificate");
    c.send(&options(c.local_addr(), "r2")).unwrap();
    let r = c.recv().unwrap_or_default();
    assert_eq!(status(&r), "SIP/2.0 200 OK alice", "{r}\n{}", s.log());

    if require("openssl") {
        let connect = format!("127.0.0.1:{}", s.port);
        let run = |ca: &str| {
            let out = std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &connect,
                    "-CAfile",
                    ca,
                    "-verify_return_error",
                    "-cert",
                    &pki.path("alice.pem"),
                    "-key",
                    &pki.path("alice.key"),
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl s_client");
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let out = run(&pki.path("ca.pem"));
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(
            out.contains("CN = 127.0.0.1") || out.contains("CN=127.0.0.1"),
            "{out}"
        );
        let out = run(&pki.path("mallory.pem"));
        assert!(!out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(out.contains("verify error"), "{out}");
    }
    assert!(s.stop().success());
}

/// Bad input over TLS: garbage instead of a handshake, a reset in the middle of the
/// handshake and in the middle of a message, a message that never completes, a
/// half-closed connection (its message is still answered) — and the server keeps
/// serving.
#[test]
fn tls_bad_input_keeps_serving() {
    let pd = TempDir::new("tls-pki");
    let pki = Pki::new(pd.path());
    let mut s = start(&pki, "tls_verify_client=0\ntcp_msg_read_timeout=2");
    let cfg = client_config(Some(&pki.path("ca.pem")), None);

    // garbage instead of a ClientHello: closed
    let mut t = TcpStream::connect(s.addr()).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n")
        .unwrap();
    let mut b = [0u8; 1024];
    let mut closed = false;
    for _ in 0..10 {
        match read_some(&mut t, &mut b) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => continue, // an alert
        }
    }
    assert!(closed, "garbage handshake not closed");

    // a reset in the middle of the handshake: a record header, then RST
    let mut t = TcpStream::connect(s.addr()).unwrap();
    t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    set_reset_on_close(t.as_raw_fd());
    drop(t);

    // a reset in the middle of a message
    let mut c = TlsClient::connect(s.addr(), cfg.clone()).unwrap();
    let m = options(c.local_addr(), "b1");
    c.send(&m[..m.len() / 2]).unwrap();
    set_reset_on_close(c.s.sock.as_raw_fd());
    drop(c);

    // a message that never completes: closed after tcp_msg_read_timeout
    let mut c = TlsClient::connect(s.addr(), cfg.clone()).unwrap();
    let m = options(c.local_addr(), "b2");
    c.send(&m[..40]).unwrap();
    assert!(c.closed(), "an incomplete message kept the connection open");

    // a half-closed connection: the message before the half-close is answered
    let mut c = TlsClient::connect(s.addr(), cfg.clone()).unwrap();
    c.send(&options(c.local_addr(), "b3")).unwrap();
    c.s.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let r = c.recv().unwrap_or_default();
    assert_eq!(
        status(&r),
        "SIP/2.0 200 OK anonymous TLS",
        "{r}\n{}",
        s.log()
    );

    // a keep-alive is answered, and a normal client is served
    let mut c = TlsClient::connect(s.addr(), cfg).unwrap();
    c.send("\r\n\r\n").unwrap();
    c.send(&options(c.local_addr(), "b4")).unwrap();
    let r = c.recv().unwrap_or_default();
    assert_eq!(
        status(&r),
        "SIP/2.0 200 OK anonymous TLS",
        "{r}\n{}",
        s.log()
    );
    assert_eq!(c.crlfs, 1, "the double-CRLF ping is answered with one CRLF");
    assert!(s.stop().success());
}

/// TLS configuration errors stop the server with `file:line:col` (the unserved
/// cases are in the `fixup/bad` corpus: `tls-*.cfg`).
#[test]
fn tls_config_checks() {
    let pd = TempDir::new("tls-pki");
    let pki = Pki::new(pd.path());
    let dir = TempDir::new("tls-cfg");
    let cfg = dir.file("openser.cfg");
    let base = format!(
        "listen=tls:127.0.0.1:5061\ntls_certificate=\"{}\"\ntls_private_key=\"{}\"\n\
         tls_ca_list=\"{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    );
    let check = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        run(&["-c", "-f", &cfg.display().to_string()])
    };
    let (rc, out, err) = check(&format!("{base}route {{ exit; }}\n"));
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("tls: 127.0.0.1"), "{out}");
    // a domain block, 1.2's grammar
    let (rc, out, err) = check(&format!(
        "{base}tls_server_domain[127.0.0.1:5061] {{\n    tls_verify_client = 0\n    \
         tls_method = TLSv1\n}}\ntls_client_domain[127.0.0.1:5071] {{\n    \
         tls_verify_server = 0\n}}\nroute {{ exit; }}\n"
    ));
    assert_eq!(rc, 0, "{out}{err}");
    // the key of another certificate
    let (rc, _, err) = check(&format!(
        "{base}tls_private_key=\"{}\"\nroute {{ exit; }}\n",
        pki.path("alice.key")
    ));
    assert_ne!(rc, 0);
    assert!(
        err.contains(":5:17:") && err.contains("does not fit"),
        "{err}"
    );
    // verification without a CA list
    let (rc, _, err) = check(&format!(
        "listen=tls:127.0.0.1:5061\ntls_certificate=\"{}\"\ntls_private_key=\"{}\"\n\
         route {{ exit; }}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    ));
    assert_ne!(rc, 0);
    assert!(err.contains("no tls_ca_list"), "{err}");
    // a setting a server domain does not take
    let (rc, _, err) = check(&format!(
        "{base}tls_server_domain[127.0.0.1:5061] {{\n    tls_verify_server = 0\n}}\n\
         route {{ exit; }}\n"
    ));
    assert_ne!(rc, 0);
    assert!(
        err.contains(":6:25:") && err.contains("not allowed"),
        "{err}"
    );
    // TLS disabled, or TCP under it
    for off in ["disable_tls=yes", "disable_tcp=yes"] {
        let (rc, _, err) = check(&format!("{base}{off}\nroute {{ exit; }}\n"));
        assert_ne!(rc, 0, "{off}");
        assert!(err.contains("listen on tls: TLS"), "{off}: {err}");
    }
}

/// Relaying over TLS: a `sips:` R-URI, `;transport=tls`, `t_relay_to_tls` and
/// `forward_tls` reach a TLS UAS over one connection the proxy opens (verifying the
/// UAS's certificate against `tls_ca_list`, presenting its own), with the Via and
/// replies right; a UAS whose certificate the CA did not sign is refused in the
/// handshake (logged), and the transaction times out.
#[test]
fn relay_over_tls() {
    use crate::harness::tls::TlsServer;
    let pd = TempDir::new("tls-pki");
    let pki = Pki::new(pd.path());
    let uas = TlsServer::new(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        Some(&pki.path("ca.pem")),
    );
    let up = uas.port();
    // a self-signed certificate (made for client use): not to be trusted as a server
    let bad = TlsServer::new(&pki.path("mallory.pem"), &pki.path("mallory.key"), None);
    let bp = bad.port();
    let route = format!(
        "route {{\n\
            if ($rU == \"relayto\") {{ t_relay_to_tls(\"127.0.0.1\", \"{up}\"); exit; }}\n\
            if ($rU == \"fwd\") {{ forward_tls(\"127.0.0.1:{up}\"); exit; }}\n\
            t_relay();\n\
        }}"
    );
    let cfg = tls_cfg(
        &pki,
        "tls_verify_client=0\ntls_verify_server=1",
        &format!("modparam(\"tm\", \"fr_timer\", 2)\n{route}"),
    );
    let mut s = Server::start(&cfg, &[]);
    assert!(eventually(20, || TcpStream::connect(s.addr()).is_ok()));
    let c = Client::new();
    let cases = [
        ("c1", format!("sips:bob@127.0.0.1:{up}")),
        ("c2", format!("sip:bob@127.0.0.1:{up};transport=tls")),
        ("c3", format!("sip:relayto@127.0.0.1:{}", s.port)),
        ("c4", format!("sip:fwd@127.0.0.1:{}", s.port)),
    ];
    let mut peer = None;
    for (call, ruri) in &cases {
        c.send(s.addr(), &request("MESSAGE", ruri, c.port(), call, 1, ""));
        if peer.is_none() {
            peer = uas.accept(Duration::from_secs(10));
            assert!(
                peer.is_some(),
                "the proxy did not connect over TLS\n{}",
                s.log()
            );
        }
        let p = peer.as_mut().unwrap();
        let m = p.recv().unwrap_or_default();
        assert!(m.starts_with("MESSAGE "), "{call}: {m}\n{}", s.log());
        assert!(m.contains(&format!("Call-ID: {call}")), "{m}");
        let via = header(&m, "Via").unwrap_or_default();
        assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:"), "{via}");
        p.send(&stream_reply(&m, 200, "OK", "")).unwrap();
        let r = c.recv_matching("SIP/2.0 ").unwrap_or_default();
        assert!(
            r.starts_with("SIP/2.0 200") && r.contains(&format!("Call-ID: {call}")),
            "{call}: {r}\n{}",
            s.log()
        );
    }
    // one connection served them all, and the proxy presented its certificate
    assert!(
        uas.accept(Duration::from_millis(200)).is_none(),
        "a second connection"
    );
    assert!(peer.as_ref().unwrap().peer_presented_cert());

    // the untrusted UAS: the handshake fails on the proxy's side, nothing is relayed
    c.send(
        s.addr(),
        &request(
            "MESSAGE",
            &format!("sips:bob@127.0.0.1:{bp}"),
            c.port(),
            "c5",
            1,
            "",
        ),
    );
    assert!(
        bad.accept(Duration::from_secs(10)).is_none(),
        "handshake with an untrusted UAS"
    );
    let r = c.recv_matching("SIP/2.0 4").unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 408"), "{r}\n{}", s.log());
    assert!(
        s.wait_log("TLS connection to 127.0.0.1", Duration::from_secs(3)),
        "{}",
        s.log()
    );
    assert!(s.stop().success());
}

/// nathelper pings contacts registered over TLS on their own connection: a
/// double-CRLF keep-alive, or (with `sipping_bflag`) an OPTIONS whose Via names TLS;
/// a contact whose connection is gone gets no new connection.
#[test]
fn nat_pings_travel_the_registered_tls_connection() {
    let pd = TempDir::new("tls-pki");
    let pki = Pki::new(pd.path());
    let route = "loadmodule \"nathelper.so\"\n\
        modparam(\"nathelper\", \"natping_interval\", 1)\n\
        modparam(\"nathelper\", \"sipping_bflag\", 7)\n\
        modparam(\"nathelper\", \"sipping_from\", \"sip:pinger@127.0.0.1\")\n\
        route {\n\
            if (method == \"REGISTER\") {\n\
                if ($fU == \"carol\") { setbflag(7); }\n\
                save(\"location\"); exit;\n\
            }\n\
            sl_send_reply(\"404\", \"Not here\");\n\
        }";
    let mut s = Server::start(&tls_cfg(&pki, "tls_verify_client=0", route), &[]);
    assert!(eventually(20, || TcpStream::connect(s.addr()).is_ok()));
    PORT.with(|p| p.set(s.port));
    let cfg = client_config(Some(&pki.path("ca.pem")), None);
    let register = |c: &mut TlsClient, user: &str| {
        let me = c.local_addr();
        c.send(&format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/TLS {me};branch=z9hG4bKr{user}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=r{user}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: r{user}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
             Contact: <sip:{user}@{me};transport=tls>\r\nExpires: 600\r\n\
             Content-Length: 0\r\n\r\n"
        ))
        .unwrap();
        let r = c.recv().unwrap_or_default();
        assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());
    };
    let mut bob = TlsClient::connect(s.addr(), cfg.clone()).unwrap();
    register(&mut bob, "bob");
    let mut carol = TlsClient::connect(s.addr(), cfg.clone()).unwrap();
    register(&mut carol, "carol");
    // carol: an OPTIONS over her connection, answered (and absorbed by nathelper)
    let ping = carol.recv().unwrap_or_default();
    assert!(
        ping.starts_with("OPTIONS sip:carol@"),
        "{ping}\n{}",
        s.log()
    );
    let via = header(&ping, "Via").unwrap_or_default();
    assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:"), "{via}");
    carol.send(&stream_reply(&ping, 200, "OK", "")).unwrap();
    // bob: double-CRLF keep-alives
    assert!(
        bob.wait_crlfs(2, Duration::from_secs(5)),
        "no keep-alive on bob's connection\n{}",
        s.log()
    );
    // bob's connection closes: his next pings open nothing
    let bob_port = bob.local_addr().port();
    drop(bob);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !s.log()
            .contains(&format!("connect to 127.0.0.1:{bob_port}")),
        "{}",
        s.log()
    );
    assert!(s.stop().success());
}

//! IPv6 (issue 12, stage 3): a UDP listen on `[::1]` beside an IPv4 one; requests
//! over IPv6 are answered over IPv6; an IPv4 caller reaches an IPv6 callee through tm,
//! with bracketed addresses in the Via and `af` telling the families apart.

use crate::harness::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A UDP socket on `[::1]`, or a skip (fails under CI=true) when IPv6 is unavailable.
fn v6_socket() -> Option<UdpSocket> {
    match UdpSocket::bind("[::1]:0") {
        Ok(s) => {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Some(s)
        }
        Err(e) => {
            skip(&format!("no IPv6 loopback: {e}"));
            None
        }
    }
}

fn recv(s: &UdpSocket) -> Option<String> {
    let mut b = vec![0u8; 65536];
    let (n, _) = crate::harness::recv_from(s, &mut b).ok()?;
    Some(String::from_utf8_lossy(&b[..n]).into_owned())
}

fn cfg() -> String {
    "listen=udp:127.0.0.1:{PORT}\nlisten=udp:[::1]:{PORT}\nchildren=1\n\
     loadmodule \"sl.so\"\nloadmodule \"tm.so\"\n\
     route {\n\
         if (method == \"OPTIONS\") {\n\
             if (af == INET6) { sl_send_reply(\"200\", \"v6\"); } else { sl_send_reply(\"200\", \"v4\"); }\n\
             exit;\n\
         }\n\
         t_relay();\n\
     }\n"
        .to_string()
}

#[test]
fn ipv6_requests_and_v4_to_v6_relay() {
    let Some(c6) = v6_socket() else { return };
    let mut s = Server::start(&cfg(), &[]);
    let (rc, out, err) = run(&["-c", "-f", &s.cfg_path.display().to_string()]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("[::1]"), "{out}");
    let srv6: SocketAddr = format!("[::1]:{}", s.port).parse().unwrap();
    let me6 = c6.local_addr().unwrap();
    let opt = format!(
        "OPTIONS sip:[::1]:{p} SIP/2.0\r\nVia: SIP/2.0/UDP {me6};branch=z9hG4bKv61\r\n\
         From: <sip:a@[::1]>;tag=v6\r\nTo: <sip:[::1]>\r\nCall-ID: v61\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = s.port
    );
    c6.send_to(opt.as_bytes(), srv6).unwrap();
    let r = recv(&c6).unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 200 v6"), "{r}\n{}", s.log());
    // the same over IPv4
    let c4 = Client::new();
    c4.send(
        s.addr(),
        &request("OPTIONS", "sip:127.0.0.1", c4.port(), "v41", 1, ""),
    );
    assert!(c4.recv_matching("SIP/2.0 200 v4").is_some());

    // an IPv4 caller, an IPv6 callee: tm relays from the [::1] socket
    let callee = v6_socket().unwrap();
    let cport = callee.local_addr().unwrap().port();
    let ruri = format!("sip:bob@[::1]:{cport}");
    c4.send(
        s.addr(),
        &request("MESSAGE", &ruri, c4.port(), "x46", 1, ""),
    );
    let m = recv(&callee).unwrap_or_default();
    assert!(
        m.starts_with(&format!("MESSAGE {ruri} SIP/2.0")),
        "{m}\n{}",
        s.log()
    );
    let via = header(&m, "Via").unwrap_or_default();
    assert_eq!(
        via.split(';').next().unwrap_or_default(),
        format!("SIP/2.0/UDP [::1]:{}", s.port),
        "{m}"
    );
    // the callee answers over IPv6, the caller gets it over IPv4
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for v in headers(&m, "Via") {
        ok.push_str(&format!("Via: {v}\r\n"));
    }
    for n in ["From", "To", "Call-ID", "CSeq"] {
        ok.push_str(&format!("{n}: {}\r\n", header(&m, n).unwrap_or_default()));
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    callee.send_to(ok.as_bytes(), srv6).unwrap();
    let r = c4.recv_matching("SIP/2.0 200").unwrap_or_default();
    assert!(r.contains("CSeq: 1 MESSAGE"), "{r}");
    assert!(s.stop().success());
}

/// `listen=tcp:[::1]` and `listen=tls:[::1]`: requests over IPv6 streams are answered
/// on their connection, `af == INET6` and `proto` tell them apart, and the Vias carry
/// bracketed addresses.
#[test]
fn ipv6_tcp_and_tls_listen() {
    use crate::harness::tls::{Pki, TlsClient, client_config};
    use std::io::Write;
    if v6_socket().is_none() {
        return;
    }
    let pd = TempDir::new("v6-pki");
    let pki = Pki::new(pd.path());
    // TLS on another port of [::1] (a free one)
    let tls_port = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "listen=udp:127.0.0.1:{{PORT}}\nlisten=tcp:[::1]:{{PORT}}\nlisten=tls:[::1]:{tls_port}\n\
         children=1\ntcp_children=1\ntls_certificate=\"{}\"\ntls_private_key=\"{}\"\n\
         tls_ca_list=\"{}\"\ntls_verify_client=0\nloadmodule \"sl.so\"\n\
         route {{\n\
             if (af == INET6 && proto == TLS) {{ sl_send_reply(\"200\", \"v6 tls\"); exit; }}\n\
             if (af == INET6 && proto == TCP) {{ sl_send_reply(\"200\", \"v6 tcp\"); exit; }}\n\
             sl_send_reply(\"200\", \"other\");\n\
         }}\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    );
    let mut s = Server::start(&cfg, &[]);
    let srv6: SocketAddr = format!("[::1]:{}", s.port).parse().unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(srv6).is_err() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let opt = |me: SocketAddr, t: &str| {
        format!(
            "OPTIONS sip:[::1]:{p} SIP/2.0\r\nVia: SIP/2.0/{t} {me};branch=z9hG4bKs{t}\r\n\
             From: <sip:a@[::1]>;tag=s{t}\r\nTo: <sip:[::1]>\r\nCall-ID: s{t}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = s.port
        )
    };
    // TCP
    let mut t = std::net::TcpStream::connect(srv6).expect("connect over TCP/IPv6");
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = t.local_addr().unwrap();
    t.write_all(opt(me, "TCP").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while crate::harness::tls::whole_message(&got).is_none() {
        match read_some(&mut t, &mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let r = String::from_utf8_lossy(&got).into_owned();
    assert!(r.starts_with("SIP/2.0 200 v6 tcp"), "{r}\n{}", s.log());
    assert!(r.contains("Via: SIP/2.0/TCP [::1]:"), "{r}");
    // TLS, the server verified against the CA by its IPv6 address
    let tls6: SocketAddr = format!("[::1]:{tls_port}").parse().unwrap();
    while std::net::TcpStream::connect(tls6).is_err() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = TlsClient::connect(tls6, client_config(Some(&pki.path("ca.pem")), None))
        .expect("TLS handshake over IPv6");
    let me = c.local_addr();
    c.send(&opt(me, "TLS")).unwrap();
    let r = c.recv().unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 200 v6 tls"), "{r}\n{}", s.log());
    assert!(r.contains("Via: SIP/2.0/TLS [::1]:"), "{r}");
    assert!(s.stop().success());
}

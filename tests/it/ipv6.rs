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

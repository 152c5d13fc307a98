//! The client against small in-process UDP servers on loopback.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::client::{SendError, Service, send};
use crate::conf::{ClientConf, Server};
use crate::dict::Dict;
use crate::packet::{self, Attr};

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    use md5::{Digest as _, Md5};
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Answer `n` requests on `sock` with `code` and `attrs` (a correct reply), after
/// first sending `junk` datagrams (garbage and a reply with the wrong id).
fn serve(sock: UdpSocket, secret: &'static [u8], code: u8, attrs: Vec<Attr>, n: usize, junk: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        for _ in 0..n {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let req = packet::parse_packet(&buf[..len]).unwrap();
            let reply = |id: u8| {
                let mut p = vec![code, id, 0, 0];
                p.extend_from_slice(&req.authenticator);
                for a in &attrs {
                    p.push(a.typ);
                    p.push(a.value.len() as u8 + 2);
                    p.extend_from_slice(&a.value);
                }
                let l = (p.len() as u16).to_be_bytes();
                p[2] = l[0];
                p[3] = l[1];
                let auth = md5(&[&p, secret]);
                p[4..20].copy_from_slice(&auth);
                p
            };
            if junk {
                let _ = sock.send_to(b"\x02garbage", from);
                let _ = sock.send_to(&reply(req.id.wrapping_add(1)), from);
            }
            let _ = sock.send_to(&reply(req.id), from);
        }
    });
}

fn conf(auth: Vec<Server>, timeout_ms: u64, retries: u32) -> ClientConf {
    ClientConf {
        acct: auth.clone(),
        auth,
        timeout: Duration::from_millis(timeout_ms),
        retries,
        deadtime: Duration::ZERO,
        bind: None,
        dict: Dict::builtin(),
    }
}

fn server(sock: &UdpSocket, secret: &[u8]) -> Server {
    Server {
        name: "test".into(),
        addr: sock.local_addr().unwrap(),
        secret: secret.to_vec(),
    }
}

#[test]
fn accept_after_junk() {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let srv = server(&s, b"sec");
    serve(
        s,
        b"sec",
        packet::ACCESS_ACCEPT,
        vec![Attr::new(225, b"k:v")],
        1,
        true,
    );
    let c = conf(vec![srv], 5000, 1);
    let r = send(&c, Service::Auth, &[Attr::new(1, b"alice")]).unwrap();
    assert_eq!(r.code, packet::ACCESS_ACCEPT);
    assert_eq!(r.values(225).next(), Some(&b"k:v"[..]));
}

#[test]
fn wrong_secret_is_no_answer() {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let srv = server(&s, b"mine");
    serve(s, b"theirs", packet::ACCESS_ACCEPT, vec![], 1, false);
    let c = conf(vec![srv], 300, 1);
    assert_eq!(
        send(&c, Service::Auth, &[Attr::new(1, b"a")]),
        Err(SendError::NoAnswer)
    );
}

#[test]
fn refused_then_silent_then_failover() {
    // A port nobody listens on: refused at once.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = server(&closed, b"x");
    drop(closed);
    // A server that never answers: the timeout, for each retry.
    let silent_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = server(&silent_sock, b"x");
    let live_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let live = server(&live_sock, b"x");
    serve(
        live_sock,
        b"x",
        packet::ACCOUNTING_RESPONSE,
        vec![],
        1,
        false,
    );

    // (A refusal ends the exchange: were it not seen, this would wait 3 x 30 s.)
    let c = conf(vec![dead.clone()], 30_000, 3);
    assert_eq!(send(&c, Service::Acct, &[]), Err(SendError::NoAnswer));

    let c = conf(vec![silent.clone()], 150, 2);
    let t = Instant::now();
    assert_eq!(send(&c, Service::Acct, &[]), Err(SendError::NoAnswer));
    // Timeouts never fire early: both waits were served in full.
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(300), "waited only {e:?}");
    // The silent server got both sends.
    silent_sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 4096];
    assert!(silent_sock.recv(&mut b).is_ok());
    assert!(silent_sock.recv(&mut b).is_ok());

    let c = conf(vec![dead, silent, live], 150, 1);
    let r = send(&c, Service::Acct, &[Attr::new(40, &1u32.to_be_bytes())]).unwrap();
    assert_eq!(r.code, packet::ACCOUNTING_RESPONSE);
}

#[test]
fn no_server() {
    let mut c = conf(vec![], 100, 1);
    c.acct.clear();
    assert_eq!(send(&c, Service::Auth, &[]), Err(SendError::NoServer));
}

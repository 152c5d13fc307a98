//! Transports (issue 12). Stage 1: a protocol this server does not serve is refused
//! loudly — at start-up with `file:line:col` (the `fixup/bad` corpus: `listen-*.cfg`,
//! `forward-*.cfg`, `send-tcp.cfg`, `t-relay-*.cfg`, `uri-transport-tcp.cfg`,
//! `du-sips.cfg`), on the command line, and at run time for destinations only known
//! then — and never sent over UDP instead.

use crate::harness::*;
use std::time::Duration;

const UDP_ONLY: &str = "listen=udp:127.0.0.1:5060\nroute {\n    exit;\n}\n";

/// `-l` with an unserved protocol stops the server before it starts; the same config
/// with a UDP or TCP `-l` passes. `listen=tcp:` with TCP disabled, or without the
/// processes TCP needs (fork=no), is refused too.
#[test]
fn command_line_listen_on_unserved_protocol_is_refused() {
    let dir = TempDir::new("tcp-cl");
    let cfg = dir.file("openser.cfg");
    std::fs::write(&cfg, UDP_ONLY).unwrap();
    let cfg = cfg.display().to_string();
    for ok in ["udp:127.0.0.1:5062", "tcp:127.0.0.1:5062"] {
        let (rc, out, err) = run(&["-c", "-f", &cfg, "-l", ok]);
        assert_eq!(rc, 0, "-l {ok}: {err}");
        assert!(out.contains(&ok[..4]), "{out}");
    }
    // TLS is served, given a certificate: without one it is a start-up error
    let (rc, out, err) = run(&["-c", "-f", &cfg, "-l", "tls:127.0.0.1:5063"]);
    assert_ne!(rc, 0, "-l tls without a certificate accepted:\n{out}{err}");
    assert!(err.contains("tls_certificate: cannot read"), "{err}");
    {
        let (l, name) = ("sctp:127.0.0.1:5064", "SCTP");
        let (rc, out, err) = run(&["-c", "-f", &cfg, "-l", l]);
        assert_ne!(rc, 0, "-l {l} accepted:\n{out}{err}");
        assert!(
            err.contains(&format!("bad -l address '{l}'"))
                && err.contains(&format!("the {name} transport is not supported")),
            "-l {l}:\n{err}"
        );
        assert!(!out.contains("Listening on"), "{out}");
    }
    let (rc, _out, err) = run(&["-c", "-f", &cfg, "-l", "tcp:127.0.0.1:5062", "-T"]);
    assert_ne!(rc, 0);
    assert!(err.contains("TCP is disabled"), "{err}");
    let (rc, _out, err) = run(&["-c", "-f", &cfg, "-l", "tcp:127.0.0.1:5062", "-D"]);
    assert_ne!(rc, 0);
    assert!(err.contains("does not run with fork=no"), "{err}");
}

/// A config that names only served transports passes `-c` (the forms of the
/// `fixup/bad` corpus, with `udp`).
#[test]
fn served_transport_forms_pass_check() {
    let dir = TempDir::new("tcp-ok");
    let cfg = dir.file("openser.cfg");
    std::fs::write(
        &cfg,
        "listen=udp:127.0.0.1:5060\nloadmodule \"tm.so\"\nroute {\n\
         if ($rU == \"a\") { forward_udp(\"127.0.0.1:5070\"); exit; }\n\
         if ($rU == \"b\") { forward(\"udp:127.0.0.1:5070\"); exit; }\n\
         if ($rU == \"c\") { rewriteuri(\"sip:bob@127.0.0.1;transport=udp\"); }\n\
         if ($rU == \"d\") { $du = \"sip:127.0.0.1:5070;transport=UDP\"; }\n\
         if ($rU == \"e\") { t_relay(\"udp:127.0.0.1:5070\"); exit; }\n\
         t_relay_to_udp(\"127.0.0.1\", \"5070\");\n}\n",
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let (rc, out, err) = run(&["-c", "-f", &cfg]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("udp: 127.0.0.1"), "{out}");
}

/// A destination whose transport is known only at run time (here the R-URI's
/// `;transport=tcp`) fails that one request with a 500 from tm, is logged with the
/// reason, and nothing goes out over UDP to the destination's address.
#[test]
fn runtime_tcp_destination_is_not_sent_over_udp() {
    let dest = Client::new();
    let mut s = Server::start(
        "listen=udp:127.0.0.1:{PORT}\nchildren=1\nloadmodule \"tm.so\"\n\
         route {\n    t_relay();\n}\n",
        &[],
    );
    let c = Client::new();
    let ruri = format!("sip:bob@127.0.0.1:{};transport=tcp", dest.port());
    c.send(s.addr(), &request("MESSAGE", &ruri, c.port(), "rt1", 1, ""));
    let r = c.recv_matching("SIP/2.0 5").unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 500"), "{r}\n{}", s.log());
    // tm sends a branch before it gives up with the 500, so a datagram sent over UDP
    // would be queued at the destination by now.
    assert!(
        dest.recv_timeout(Duration::from_millis(300)).is_none(),
        "the request went out over UDP"
    );
    assert!(
        s.wait_log("transport TCP is not", Duration::from_secs(3)),
        "{}",
        s.log()
    );
    // and the server keeps serving: a UDP destination is relayed
    let ruri = format!("sip:bob@127.0.0.1:{}", dest.port());
    c.send(s.addr(), &request("MESSAGE", &ruri, c.port(), "rt2", 1, ""));
    let (m, _) = dest.recv().expect("relayed over UDP");
    assert!(m.starts_with("MESSAGE sip:bob@127.0.0.1:"), "{m}");
    assert!(s.stop().success());
}

// ---------------------------------------------------------------------------
// Stage 2: TCP in 1.2's process model.

use openser_core::transport::tcp_frame::{Frame, next_frame};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// A config serving UDP and TCP on the same port, with the MI FIFO.
fn tcp_cfg(extra: &str, route: &str) -> String {
    format!(
        "listen=udp:127.0.0.1:{{PORT}}\nlisten=tcp:127.0.0.1:{{PORT}}\nchildren=1\n\
         tcp_children=2\nloadmodule \"sl.so\"\nloadmodule \"mi_fifo.so\"\n\
         modparam(\"mi_fifo\", \"fifo_name\", \"{{DIR}}/openser_fifo\")\n\
         modparam(\"mi_fifo\", \"reply_dir\", \"{{DIR}}/\")\n{extra}\n{route}\n"
    )
}

const OPTIONS_200: &str = "route {\n\
    if (proto == TCP && $pr == \"tcp\" && $proto == \"tcp\") {\n\
        sl_send_reply(\"200\", \"OK tcp\");\n\
    } else {\n\
        sl_send_reply(\"200\", \"OK\");\n\
    }\n}\n";

fn connect(s: &Server) -> TcpStream {
    let t = TcpStream::connect(s.addr()).expect("connect over TCP");
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t
}

/// An OPTIONS with a TCP Via from `t`'s local address.
fn options_over(t: &TcpStream, callid: &str) -> String {
    let me = t.local_addr().unwrap();
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP {me};branch=z9hG4bK{callid}\r\n\
         From: <sip:a@127.0.0.1>;tag=t{callid}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: {callid}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Read from a stream until one whole message (framed by Content-Length) or a
/// keep-alive is there; `None` at end of file, on a reset or after the timeout.
struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    fn new() -> Reader {
        Reader { buf: Vec::new() }
    }
    fn next(&mut self, t: &mut TcpStream) -> Option<String> {
        loop {
            match next_frame(&self.buf, 65535, true) {
                Frame::Msg { len } | Frame::KeepAlive { len, .. } => {
                    let m = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                    self.buf.drain(..len);
                    return Some(m);
                }
                Frame::Incomplete if self.buf == b"\r\n" => {
                    // a pong is a lone CRLF
                    self.buf.clear();
                    return Some("\r\n".into());
                }
                _ => {}
            }
            let mut chunk = [0u8; 8192];
            match crate::harness::read_some(t, &mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Whether the server closed `t`: a read gives end of file or a reset (waits at most
/// the stream's read timeout).
fn closed_by_server(t: &mut TcpStream) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match crate::harness::read_some(t, &mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                );
            }
        }
    }
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// PIDs of tcp main and the tcp receivers.
fn tcp_pids(ps: &str) -> Vec<i32> {
    ps.lines()
        .filter(|l| l.ends_with("Type=tcp main process") || l.ends_with("Type=tcp receiver"))
        .filter_map(|l| l.split("PID=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Descriptors open in the tcp processes together.
fn tcp_fds(pids: &[i32]) -> usize {
    pids.iter().map(|&p| fd_count(p)).sum()
}

/// Wait until `f` holds (at most `secs`).
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The process table shows 1.2's tcp processes; messages over TCP are answered on
/// their connection, several in one segment and one split over several; a double-CRLF
/// keep-alive gets a single CRLF; a message without Content-Length gets a 400 and the
/// connection is closed (and is accepted with `tcp_accept_no_cl`).
#[test]
fn tcp_messages_keepalive_and_process_table() {
    let mut s = Server::start(&tcp_cfg("", OPTIONS_200), &[]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let ps = mi(&dir, "ps", &[]);
    assert_eq!(ps.matches("Type=tcp receiver").count(), 2, "{ps}");
    assert_eq!(ps.matches("Type=tcp main process").count(), 1, "{ps}");
    assert_eq!(ps.matches("Type=receiver child=").count(), 1, "{ps}");

    let mut t = connect(&s);
    let mut r = Reader::new();
    t.write_all(options_over(&t, "k1").as_bytes()).unwrap();
    let m = r.next(&mut t).expect("a reply over TCP");
    // proto == TCP, $pr and $proto say so
    assert!(m.starts_with("SIP/2.0 200 OK tcp\r\n"), "{m}");
    assert!(m.contains("Call-ID: k1"), "{m}");
    // keep-alive
    t.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(r.next(&mut t).as_deref(), Some("\r\n"));
    // two messages in one write, then one in three pieces
    let two = format!("{}{}", options_over(&t, "k2"), options_over(&t, "k3"));
    t.write_all(two.as_bytes()).unwrap();
    let a = r.next(&mut t).unwrap_or_default();
    let b = r.next(&mut t).unwrap_or_default();
    assert!(
        a.contains("Call-ID: k2") && b.contains("Call-ID: k3"),
        "{a}\n{b}"
    );
    let m = options_over(&t, "k4");
    for part in [&m[..10], &m[10..60], &m[60..]] {
        t.write_all(part.as_bytes()).unwrap();
        t.flush().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let m = r.next(&mut t).unwrap_or_default();
    assert!(m.contains("Call-ID: k4"), "{m}");
    // no Content-Length: 400, then the connection is closed
    let no_cl = options_over(&t, "k5").replace("Content-Length: 0\r\n", "");
    t.write_all(no_cl.as_bytes()).unwrap();
    let m = r.next(&mut t).unwrap_or_default();
    assert!(m.starts_with("SIP/2.0 400"), "{m}");
    assert!(closed_by_server(&mut t));
    // and over UDP the server answers as before
    let c = Client::new();
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:127.0.0.1", c.port(), "u1", 1, ""),
    );
    let m = c.recv_matching("SIP/2.0 200").unwrap_or_default();
    assert!(m.starts_with("SIP/2.0 200 OK\r\n"), "{m}");
    assert!(s.stop().success());

    // tcp_accept_no_cl=yes: the same message is taken with an empty body
    let mut s = Server::start(&tcp_cfg("tcp_accept_no_cl=yes", OPTIONS_200), &[]);
    let mut t = connect(&s);
    let mut r = Reader::new();
    let no_cl = options_over(&t, "n1").replace("Content-Length: 0\r\n", "");
    t.write_all(no_cl.as_bytes()).unwrap();
    let m = r.next(&mut t).unwrap_or_default();
    assert!(m.starts_with("SIP/2.0 200"), "{m}");
    assert!(s.stop().success());
}

/// Bad input on one connection never affects another, and the server keeps serving:
/// slowloris, oversize (with and without complete headers), a reset in the middle of a
/// message, a half-close after a whole message. The tcp main process holds as many
/// descriptors afterwards as before.
#[test]
fn tcp_bad_input_keeps_serving() {
    let mut s = Server::start(&tcp_cfg("tcp_msg_read_timeout=2", OPTIONS_200), &[]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let ps = mi(&dir, "ps", &[]);
    let pids = tcp_pids(&ps);
    assert_eq!(pids.len(), 3, "{ps}");
    let fds_before = tcp_fds(&pids);
    assert!(fds_before > 0);

    // a good connection that lives through everything below
    let mut good = connect(&s);
    let mut gr = Reader::new();
    good.write_all(options_over(&good, "g1").as_bytes())
        .unwrap();
    assert!(
        gr.next(&mut good)
            .unwrap_or_default()
            .starts_with("SIP/2.0 200")
    );

    // slowloris: a message that never completes is closed after tcp_msg_read_timeout
    let mut slow = connect(&s);
    let m = options_over(&slow, "s1");
    slow.write_all(&m.as_bytes()[..30]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    slow.write_all(&m.as_bytes()[30..40]).unwrap();
    assert!(
        closed_by_server(&mut slow),
        "slowloris connection not closed"
    );
    assert!(s.log().contains("not complete after 2s"), "{}", s.log());

    // oversize with complete headers: 400, then closed
    let mut big = connect(&s);
    let m = options_over(&big, "b1").replace("Content-Length: 0", "Content-Length: 100000");
    big.write_all(m.as_bytes()).unwrap();
    let mut br = Reader::new();
    let r = br.next(&mut big).unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    assert!(closed_by_server(&mut big));
    // oversize without the end of the headers: closed
    let mut endless = connect(&s);
    let junk = vec![b'a'; 70000];
    let _ = endless.write_all(&junk);
    assert!(closed_by_server(&mut endless));

    // a reset in the middle of a message
    let rst = connect(&s);
    let m = options_over(&rst, "r1");
    (&rst).write_all(&m.as_bytes()[..50]).unwrap();
    openser_core::sys::set_linger_zero(std::os::fd::AsRawFd::as_raw_fd(&rst)).unwrap();
    drop(rst);

    // a half-close after a whole message: the reply still comes, then end of file
    let mut half = connect(&s);
    half.write_all(options_over(&half, "h1").as_bytes())
        .unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    let mut hr = Reader::new();
    let r = hr.next(&mut half).unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(closed_by_server(&mut half));

    // the good connection still works
    good.write_all(options_over(&good, "g2").as_bytes())
        .unwrap();
    let r = gr.next(&mut good).unwrap_or_default();
    assert!(r.contains("Call-ID: g2"), "{r}");
    drop(good);
    // every connection closed: the tcp processes are back to their descriptors
    assert!(
        eventually(15, || tcp_fds(&pids) == fds_before),
        "the tcp processes had {fds_before} descriptors, now {}",
        tcp_fds(&pids)
    );
    assert!(s.stop().success());
}

/// 10,000 connections against tcp_max_connections=2048: those beyond the limit are
/// closed at once, a call on an existing connection is unaffected, and once they are
/// gone tcp main holds as many descriptors as before.
#[test]
fn tcp_max_connections_is_enforced() {
    const FLOOD: usize = 10_000;
    const MAX: usize = 2048;
    let soft = openser_core::sys::raise_nofile_soft(FLOOD as u64 + 1024).unwrap_or(0);
    if soft < FLOOD as u64 + 512 {
        skip(&format!(
            "open files limit {soft} is below {FLOOD} connections"
        ));
        return;
    }
    let mut s = Server::start(
        &tcp_cfg(
            &format!("tcp_max_connections={MAX}\nopen_files_limit={}", MAX + 1024),
            OPTIONS_200,
        ),
        &[],
    );
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let ps = mi(&dir, "ps", &[]);
    let pids = tcp_pids(&ps);
    assert_eq!(pids.len(), 3, "{ps}");
    let fds_before = tcp_fds(&pids);

    let mut good = connect(&s);
    let mut gr = Reader::new();
    good.write_all(options_over(&good, "m1").as_bytes())
        .unwrap();
    assert!(
        gr.next(&mut good)
            .unwrap_or_default()
            .starts_with("SIP/2.0 200")
    );

    let mut flood: Vec<TcpStream> = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        match TcpStream::connect(s.addr()) {
            Ok(t) => flood.push(t),
            Err(e) => panic!("connect #{}: {e}", flood.len()),
        }
    }
    // the kernel completes every handshake; tcp main keeps MAX - 1 of them (the good
    // connection holds one slot) and closes the others
    for t in &flood {
        t.set_nonblocking(true).unwrap();
    }
    let open_count = |flood: &mut Vec<TcpStream>| {
        let mut b = [0u8; 16];
        flood
            .iter_mut()
            .filter(|t| match (&**t).read(&mut b) {
                Ok(0) => false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                _ => false,
            })
            .count()
    };
    assert!(
        eventually(30, || open_count(&mut flood) == MAX - 1),
        "open: {} (expected {})",
        open_count(&mut flood),
        MAX - 1
    );
    assert!(s.log().contains("maximum number of connections exceeded"));
    // the existing connection is unaffected
    good.write_all(options_over(&good, "m2").as_bytes())
        .unwrap();
    let r = gr.next(&mut good).unwrap_or_default();
    assert!(r.contains("Call-ID: m2"), "{r}");
    // once the flood is gone, tcp main holds the good connection's descriptor only
    drop(flood);
    assert!(
        // the good connection: in tcp main, and maybe in a receiver reading it
        eventually(30, || (fds_before + 1..=fds_before + 2)
            .contains(&tcp_fds(&pids))),
        "tcp processes: {} descriptors, {fds_before} before",
        tcp_fds(&pids)
    );
    // and takes new connections again
    let mut again = connect(&s);
    let mut ar = Reader::new();
    again
        .write_all(options_over(&again, "m3").as_bytes())
        .unwrap();
    let r = ar.next(&mut again).unwrap_or_default();
    assert!(r.contains("Call-ID: m3"), "{r}");
    drop(again);
    drop(good);
    assert!(
        eventually(15, || tcp_fds(&pids) == fds_before),
        "tcp processes: {} descriptors, {fds_before} before",
        tcp_fds(&pids)
    );
    assert!(s.stop().success());
}

/// The guide's hello-world routing: the callee registers over TCP (Contact on its
/// connection's own address, as a phone behind NAT does), a caller on UDP calls it,
/// the INVITE reaches the callee over its registered connection with two
/// Record-Routes (rr's `enable_double_rr`: UDP in, TCP out, each with its transport),
/// and the calls complete: 200, ACK, then a BYE from the caller in the first call and
/// from the callee in the second, each routed back over the other transport.
#[test]
fn register_over_tcp_call_over_udp() {
    let cfg = tcp_cfg(
        "loadmodule \"tm.so\"\nloadmodule \"rr.so\"\nloadmodule \"usrloc.so\"\n\
         loadmodule \"registrar.so\"\nmodparam(\"usrloc\", \"db_mode\", 0)",
        "route {\n\
         if (method == \"REGISTER\") { save(\"location\"); exit; }\n\
         if (loose_route()) { t_relay(); exit; }\n\
         if (method == \"INVITE\") { record_route(); }\n\
         if (uri == myself) {\n\
             if (!lookup(\"location\")) { sl_send_reply(\"404\", \"Not Found\"); exit; }\n\
         }\n\
         t_relay();\n}\n",
    );
    let mut s = Server::start(&cfg, &[]);
    let mut callee = connect(&s);
    let me: SocketAddr = callee.local_addr().unwrap();
    let mut cr = Reader::new();
    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP {me};branch=z9hG4bKreg1\r\n\
         From: <sip:bob@127.0.0.1>;tag=r1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
         Contact: <sip:bob@{me};transport=tcp>\r\nExpires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    callee.write_all(reg.as_bytes()).unwrap();
    let r = cr.next(&mut callee).unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", s.log());

    let caller = Client::new();
    let cp = caller.port();
    let port = s.port;
    for (call, bye_from_callee) in [("call1", false), ("call2", true)] {
        let invite = request(
            "INVITE",
            &format!("sip:bob@127.0.0.1:{port}"),
            cp,
            call,
            1,
            &format!("Contact: <sip:alice@127.0.0.1:{cp}>\r\n"),
        );
        caller.send(s.addr(), &invite);
        let inv = cr.next(&mut callee).unwrap_or_default();
        assert!(
            inv.starts_with(&format!("INVITE sip:bob@{me};transport=tcp SIP/2.0")),
            "{inv}\n{}",
            s.log()
        );
        let top_via = header(&inv, "Via").unwrap_or_default();
        assert!(top_via.starts_with("SIP/2.0/TCP 127.0.0.1:"), "{inv}");
        // double Record-Route: the TCP side first (the callee's next hop), then UDP
        let rrs = headers(&inv, "Record-Route");
        assert_eq!(rrs.len(), 2, "{inv}");
        assert!(
            rrs[0].starts_with(&format!("<sip:127.0.0.1:{port};transport=tcp;r2=on;lr"))
                && rrs[1].starts_with(&format!("<sip:127.0.0.1:{port};"))
                && !rrs[1].contains("transport=")
                && rrs[1].contains(";r2=on"),
            "{rrs:?}"
        );
        let ok = stream_reply(
            &inv,
            200,
            "OK",
            &format!("Contact: <sip:bob@{me};transport=tcp>\r\n"),
        );
        callee.write_all(ok.as_bytes()).unwrap();
        let r = caller.recv_matching("SIP/2.0 200").unwrap_or_default();
        assert!(r.contains("CSeq: 1 INVITE"), "{r}");
        assert_eq!(headers(&r, "Record-Route").len(), 2, "{r}");
        // the caller's route set is the Record-Routes in reverse order
        let route: Vec<&str> = headers(&r, "Record-Route").into_iter().rev().collect();
        let route = route.join(", ");
        let to = header(&r, "To").unwrap_or_default().to_string();
        let from = format!("<sip:alice@127.0.0.1>;tag=a{call}");

        let ack = format!(
            "ACK sip:bob@{me};transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bK{call}ack\r\n\
             Route: {route}\r\nFrom: {from}\r\nTo: {to}\r\n\
             Call-ID: {call}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        caller.send(s.addr(), &ack);
        let got = cr.next(&mut callee).unwrap_or_default();
        assert!(got.starts_with("ACK sip:bob@"), "{got}\n{}", s.log());
        assert!(header(&got, "Route").is_none(), "{got}");

        if !bye_from_callee {
            let bye = ack
                .replace("ACK sip:", "BYE sip:")
                .replace(&format!("{call}ack"), &format!("{call}bye"))
                .replace("CSeq: 1 ACK", "CSeq: 2 BYE");
            caller.send(s.addr(), &bye);
            let got = cr.next(&mut callee).unwrap_or_default();
            assert!(got.starts_with("BYE sip:bob@"), "{got}\n{}", s.log());
            callee
                .write_all(stream_reply(&got, 200, "OK", "").as_bytes())
                .unwrap();
            let r = caller.recv_matching("SIP/2.0 200").unwrap_or_default();
            assert!(r.contains("CSeq: 2 BYE"), "{r}");
        } else {
            // the callee's route set is the Record-Routes in their order
            let route = headers(&inv, "Record-Route").join(", ");
            let bye = format!(
                "BYE sip:alice@127.0.0.1:{cp} SIP/2.0\r\n\
                 Via: SIP/2.0/TCP {me};branch=z9hG4bK{call}cbye\r\n\
                 Route: {route}\r\nFrom: {to}\r\nTo: {from}\r\n\
                 Call-ID: {call}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            callee.write_all(bye.as_bytes()).unwrap();
            let got = caller.recv_matching("BYE sip:alice@").unwrap_or_default();
            assert!(got.contains("CSeq: 1 BYE"), "{got}\n{}", s.log());
            assert!(header(&got, "Route").is_none(), "{got}");
            caller.send(s.addr(), &udp_reply(&got, 200, "OK"));
            let r = cr.next(&mut callee).unwrap_or_default();
            assert!(
                r.starts_with("SIP/2.0 200") && r.contains("CSeq: 1 BYE"),
                "{r}"
            );
        }
    }
    assert!(s.stop().success());
}

/// A reply over UDP to `req` (its Vias, From, To, Call-ID, CSeq as they are).
fn udp_reply(req: &str, code: u16, reason: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for n in ["From", "To", "Call-ID", "CSeq"] {
        s.push_str(&format!("{n}: {}\r\n", header(req, n).unwrap_or_default()));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// A reply to `req` as a UAS writes it (all Vias, Record-Routes, From, To with a tag,
/// Call-ID, CSeq).
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

/// Wait until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_tcp_listening(port: u16) -> bool {
    eventually(20, || TcpStream::connect(("127.0.0.1", port)).is_ok())
}

/// SIPp calls over TCP through tm with record-routing: the caller with one
/// connection per call (`-t tn`), the callee on one connection (`-t t1`) that the
/// server opens and then reuses for every INVITE, ACK and BYE.
#[test]
fn sipp_calls_over_tcp() {
    if !require("sipp") {
        return;
    }
    let dir = TempDir::new("tcp-sipp");
    let uport = free_udp_port();
    let _uas = sipp_spawn(
        dir.path(),
        &[
            "-sf".into(),
            scenario("uas.xml"),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            uport.to_string(),
        ],
    );
    assert!(
        wait_tcp_listening(uport),
        "SIPp UAS does not listen on TCP {uport}"
    );
    let cfg = tcp_cfg(
        "loadmodule \"tm.so\"\nloadmodule \"rr.so\"",
        &format!(
            "route {{\n\
             if (loose_route()) {{ t_relay(); exit; }}\n\
             if (method == \"INVITE\") {{ record_route(); }}\n\
             $du = \"sip:127.0.0.1:{uport};transport=tcp\";\n\
             t_relay();\n}}\n"
        ),
    );
    let mut s = Server::start(&cfg, &[]);
    sipp_calls_with(
        dir.path(),
        s.port,
        "bob",
        5,
        &["-t", "tn", "-max_socket", "100"],
    );
    assert!(s.stop().success());
}

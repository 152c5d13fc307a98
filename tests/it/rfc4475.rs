//! RFC 4475 §3.1.2, the invalid messages (issue 18, item 6): each of the RFC's own
//! examples (tests/data/rfc4475/*.sip: the RFC's text with LF line ends, turned into
//! CRLF here, after two `;` lines naming the test and the expectation) is refused
//! before routing: a request with a usable top Via gets a 400, anything else is
//! dropped; none is routed and none is answered by the script.
//!
//! The unit part runs each message through the core parser and the pre-routing checks
//! the receive path applies (`SipMsg::new`, then `check_mandatory` for requests,
//! `check_reply` for replies that could reach a script: with an `onreply_route` or tm
//! loaded). The black-box part sends them all to a server whose script logs and
//! forwards every request to a UDP socket of the test (which must receive nothing) and
//! answers what is left with a 299 (which must never be seen), and whose
//! `onreply_route` logs every reply (no line may appear).

use std::net::UdpSocket;
use std::time::Duration;

use crate::harness::*;
use openser_core::parser::SipMsg;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475");

/// What the server must do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A 400 from the core, before the script.
    Reject400,
    /// Nothing at all.
    Drop,
}

struct Case {
    name: String,
    expect: Expect,
    msg: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(DIR).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "sip") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let mut expect = None;
        let mut body = String::new();
        for l in text.split_inclusive('\n') {
            if body.is_empty()
                && let Some(c) = l.strip_prefix("; ")
            {
                if let Some(x) = c.trim().strip_prefix("expect: ") {
                    expect = Some(match x {
                        "400" => Expect::Reject400,
                        "drop" => Expect::Drop,
                        o => panic!("{}: unknown expectation {o}", p.display()),
                    });
                }
                continue;
            }
            body.push_str(l);
        }
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        v.push(Case {
            expect: expect.unwrap_or_else(|| panic!("{name}: no `; expect:` line")),
            name,
            msg: body.replace('\n', "\r\n").into_bytes(),
        });
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The core's verdict: `Ok` if the message would reach the script.
fn pre_route(msg: &[u8]) -> Result<(), String> {
    let m = SipMsg::parse(msg).map_err(|e| format!("parse: {}", e.what))?;
    if m.is_request() {
        m.check_mandatory()
            .map_err(|e| format!("check_mandatory: {}", e.what))?;
        // A 400 needs a top Via to go back to.
        if m.via1().is_err() {
            return Err("no usable Via".into());
        }
    } else {
        m.check_reply()
            .map_err(|e| format!("check_reply: {}", e.what))?;
    }
    Ok(())
}

#[test]
fn rfc4475_invalid_messages_refused_by_the_parser_and_checks() {
    let cs = cases();
    assert!(cs.len() >= 19, "expected the 19 messages of §3.1.2");
    let mut wrong = Vec::new();
    for c in &cs {
        match pre_route(&c.msg) {
            Ok(()) => wrong.push(format!("{}: accepted", c.name)),
            Err(why) => {
                // Would the core answer it (a request with a usable Via), or drop it?
                let answered =
                    SipMsg::parse(&c.msg).is_ok_and(|m| m.is_request() && m.via1().is_ok());
                let got = if answered {
                    Expect::Reject400
                } else {
                    Expect::Drop
                };
                if got != c.expect {
                    wrong.push(format!(
                        "{}: {got:?}, expected {:?} ({why})",
                        c.name, c.expect
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `msg` with the sent-by of its first Via replaced by the test client's address, so
/// that a 400 (sent to the Via's port) reaches the client; the rest of the Via, and
/// of the message, stays as the RFC has it.
fn to_client(msg: &[u8], port: u16) -> Vec<u8> {
    let text = String::from_utf8_lossy(msg).into_owned();
    let Some(v) = text.find("\r\nVia:").or_else(|| text.find("\r\nv:")) else {
        return msg.to_vec();
    };
    let Some(proto) = text[v..]
        .find("SIP/2.0/")
        .map(|i| v + i + "SIP/2.0/UDP ".len())
    else {
        return msg.to_vec();
    };
    let end = text[proto..]
        .find([';', '\r', ','])
        .map_or(text.len(), |i| proto + i);
    format!("{}127.0.0.1:{port}{}", &text[..proto], &text[end..]).into_bytes()
}

const CFG: &str = "debug=3\nlisten=udp:127.0.0.1:{PORT}\nchildren=1\n\
    loadmodule \"sl.so\"\nloadmodule \"xlog.so\"\n\
    route {\n  xlog(\"L_ERR\", \"ROUTED $ci\\n\");\n  \
    forward(\"127.0.0.1:{SINK}\");\n  \
    sl_send_reply(\"299\", \"Script answered\");\n}\n\
    onreply_route {\n  xlog(\"L_ERR\", \"ROUTED-REPLY $ci\\n\");\n}\n";

#[test]
fn rfc4475_invalid_messages_never_routed() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let cfg = CFG.replace("{SINK}", &sink_port.to_string());
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let c = Client::new();
    // The script does route a valid message: the sink and the 299 are reachable.
    let ok = request(
        "OPTIONS",
        "sip:a@127.0.0.1",
        c.port(),
        "rfc4475-valid",
        1,
        "",
    );
    c.send(s.addr(), &ok);
    let mut buf = vec![0u8; 65536];
    let (n, _) = recv_from(&sink, &mut buf).expect("the valid OPTIONS was not forwarded");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("rfc4475-valid"));
    let (a, _) = c
        .recv_timeout(Duration::from_secs(2))
        .expect("no 299 for the valid OPTIONS");
    assert!(a.starts_with("SIP/2.0 299 "), "{a}");
    // ... and a valid reply reaches onreply_route.
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKvr1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n\
         Call-ID: rfc4475-valid-reply\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        c.port()
    );
    c.send(s.addr(), &reply);
    assert!(
        s.wait_log("ROUTED-REPLY rfc4475-valid-reply", Duration::from_secs(5)),
        "{}",
        s.log()
    );
    for case in cases() {
        c.send_bytes(s.addr(), &to_client(&case.msg, c.port()));
        let answer = c.recv_timeout(Duration::from_millis(500));
        match case.expect {
            Expect::Reject400 => {
                let (a, _) = answer.unwrap_or_else(|| {
                    panic!("{}: no answer, 400 expected\n{}", case.name, s.log())
                });
                assert!(a.starts_with("SIP/2.0 400 "), "{}: {a}", case.name);
            }
            Expect::Drop => {
                assert!(answer.is_none(), "{}: answered {answer:?}", case.name);
            }
        }
        if let Ok((n, _)) = recv_from(&sink, &mut buf) {
            panic!(
                "{} was routed: {}",
                case.name,
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
    let log = s.log();
    let routed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ROUTED") && !l.contains("rfc4475-valid"))
        .collect();
    assert!(routed.is_empty(), "the script ran for: {routed:?}");
    assert!(s.stop().success());
}

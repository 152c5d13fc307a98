//! path and diversion through the real binary. path: an edge proxy adds
//! `Path: …;received=` to a REGISTER it forwards to a registrar (a second server with
//! `use_path`); a call to the user comes back from the registrar with that Path as its
//! Route, and the edge proxy (`use_received`) sends it to the address the REGISTER came
//! from, not to the private Contact. diversion: `add_diversion` headers in the
//! forwarded request.

use super::permissions::{req_from, sock_on};
use crate::harness::*;
use std::net::UdpSocket;
use std::time::Duration;

fn recv_text(s: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    crate::harness::recv_from(s, &mut buf)
        .ok()
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn path_round_trip_through_the_registrar() {
    let reg_port = free_udp_port();
    let reg = Server::start_on(
        reg_port,
        r#"
listen=udp:127.0.0.1:{PORT}
children=1
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("registrar", "use_path", 1)
modparam("registrar", "path_mode", 1)
route {
    if (method == "REGISTER") { save("location"); exit; };
    if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; };
    forward();
}
"#,
        &[],
    );
    let edge = Server::start(
        &format!(
            r#"
listen=udp:127.0.0.1:{{PORT}}
children=1
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "path.so"
modparam("path", "use_received", 1)
route {{
    if (method == "REGISTER") {{
        add_path_received("edge");
        forward("127.0.0.1:{reg_port}");
        exit;
    }};
    loose_route();
    forward();
}}
"#
        ),
        &[],
    );
    // alice is behind a NAT: her Contact is private, her packets come from 127.0.0.6
    let alice = sock_on("127.0.0.6");
    let contact = "Contact: <sip:alice@10.0.0.99:5060>\r\nExpires: 600\r\nSupported: path\r\n";
    let r = req_from(
        &alice,
        "REGISTER",
        "sip:example.com",
        "sip:alice@example.com",
        "p1",
        contact,
    )
    .replace("To: <sip:example.com>", "To: <sip:alice@example.com>");
    alice.send_to(r.as_bytes(), edge.addr()).unwrap();
    let ok = recv_text(&alice).expect("200 for the REGISTER");
    assert!(
        ok.starts_with("SIP/2.0 200"),
        "{ok}\n{}\n{}",
        edge.log(),
        reg.log()
    );
    let alice_addr = alice.local_addr().unwrap();
    let path = header(&ok, "Path").unwrap_or("");
    assert!(
        path.contains(&format!(
            "sip:edge@127.0.0.1:{};lr;received=sip:{alice_addr}",
            edge.port
        )),
        "Path echoed by the registrar: {ok}"
    );

    // bob calls alice at the registrar; the INVITE reaches alice's real address
    let bob = sock_on("127.0.0.7");
    let inv = req_from(
        &bob,
        "INVITE",
        "sip:alice@example.com",
        "sip:bob@example.com",
        "p2",
        "",
    );
    bob.send_to(inv.as_bytes(), reg.addr()).unwrap();
    let got = recv_text(&alice).expect("INVITE at alice's NAT address");
    assert!(
        got.starts_with("INVITE sip:alice@10.0.0.99:5060 SIP/2.0"),
        "{got}"
    );
    assert!(
        header(&got, "Route").is_none(),
        "edge removed its Route: {got}"
    );
}

#[test]
fn add_path_without_received_and_diversion() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let s = Server::start(
        &format!(
            r#"
listen=udp:127.0.0.1:{{PORT}}
children=1
loadmodule "path.so"
loadmodule "diversion.so"
modparam("diversion", "suffix", ";counter=1")
route {{
    if (method == "REGISTER") {{ add_path(); }} else {{
        rewriteuri("sip:voicemail@127.0.0.1");
        add_diversion("user-busy");
        add_diversion("no-answer");
    }};
    forward("127.0.0.1:{sink_port}");
}}
"#
        ),
        &[],
    );
    let c = sock_on("127.0.0.1");
    let r = req_from(
        &c,
        "REGISTER",
        "sip:example.com",
        "sip:a@example.com",
        "d1",
        "Path: <sip:outer.example.com;lr>\r\n",
    );
    c.send_to(r.as_bytes(), s.addr()).unwrap();
    let got = recv_text(&sink).expect("forwarded REGISTER");
    assert_eq!(
        headers(&got, "Path"),
        vec![
            format!("<sip:127.0.0.1:{};lr>", s.port).as_str(),
            "<sip:outer.example.com;lr>"
        ],
        "ours before the existing one: {got}"
    );
    let inv = req_from(
        &c,
        "INVITE",
        "sip:bob@example.com",
        "sip:a@example.com",
        "d2",
        "Diversion: <sip:x@y>;reason=deflection\r\n",
    );
    c.send_to(inv.as_bytes(), s.addr()).unwrap();
    let got = recv_text(&sink).expect("forwarded INVITE");
    assert!(
        got.starts_with("INVITE sip:voicemail@127.0.0.1 SIP/2.0"),
        "{got}"
    );
    assert_eq!(
        headers(&got, "Diversion"),
        vec![
            "<sip:bob@example.com>;reason=user-busy;counter=1",
            "<sip:bob@example.com>;reason=no-answer;counter=1",
            "<sip:x@y>;reason=deflection",
        ],
        "{got}"
    );
}

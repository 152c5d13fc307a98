//! nat_uac_test for every flag, Contact/received rewriting, rtpproxy commands.

use super::*;
use openser_core::parser::msg::RcvInfo;

fn msg_from(text: &str, src: &str) -> SipMsg {
    let rcv = RcvInfo {
        src: src.parse().unwrap(),
        dst: "198.51.100.1:5060".parse().unwrap(),
        proto: Proto::Udp,
        sock_idx: 0,
    };
    SipMsg::new(text.as_bytes(), rcv).expect("test message parses")
}

fn invite(via: &str, contact: &str, c_ip: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {c_ip}\r\ns=-\r\nc=IN IP4 {c_ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    );
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK1\r\n\
         From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: c1@x\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{contact}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

#[test]
fn nat_uac_test_every_flag() {
    // A UA on a public address, seen from that address: no test holds.
    let public = invite("198.51.100.7:5060", "198.51.100.7:5060", "198.51.100.7");
    let m = msg_from(&public, "198.51.100.7:5060");
    for f in [1, 2, 4, 8, 16, 31] {
        assert_eq!(nat_uac_test(&m, f), -1, "flag {f}");
    }
    // 1: private Contact.
    let m = msg_from(
        &invite("198.51.100.7:5060", "10.0.0.2:5060", "198.51.100.7"),
        "198.51.100.7:5060",
    );
    assert_eq!(nat_uac_test(&m, 1), 1);
    assert_eq!(nat_uac_test(&m, 2 | 4 | 8 | 16), -1);
    // 2: Via host is not the source address.
    let m = msg_from(
        &invite("198.51.100.8:5060", "198.51.100.7", "198.51.100.7"),
        "198.51.100.7:5060",
    );
    assert_eq!(nat_uac_test(&m, 2), 1);
    assert_eq!(nat_uac_test(&m, 1 | 4 | 8 | 16), -1);
    // 4: private top Via (which also differs from the source).
    let m = msg_from(
        &invite("192.168.1.2:5060", "198.51.100.7", "198.51.100.7"),
        "198.51.100.7:5060",
    );
    assert_eq!(nat_uac_test(&m, 4), 1);
    assert_eq!(nat_uac_test(&m, 1 | 8 | 16), -1);
    // 8: private SDP.
    let m = msg_from(
        &invite("198.51.100.7:5060", "198.51.100.7", "172.20.1.1"),
        "198.51.100.7:5060",
    );
    assert_eq!(nat_uac_test(&m, 8), 1);
    assert_eq!(nat_uac_test(&m, 1 | 2 | 4 | 16), -1);
    // 16: source port differs from the Via port (5060 when absent).
    let m = msg_from(
        &invite("198.51.100.7", "198.51.100.7", "198.51.100.7"),
        "198.51.100.7:40000",
    );
    assert_eq!(nat_uac_test(&m, 16), 1);
    assert_eq!(nat_uac_test(&m, 1 | 2 | 4 | 8), -1);
    let m = msg_from(
        &invite("198.51.100.7", "198.51.100.7", "198.51.100.7"),
        "198.51.100.7:5060",
    );
    assert_eq!(nat_uac_test(&m, 16), -1);
}

#[test]
fn contact_hostport() {
    assert_eq!(
        hostport_range("sip:alice@10.0.0.2:5070;transport=udp"),
        Some((10, 23))
    );
    assert_eq!(hostport_range("sip:10.0.0.2"), Some((4, 12)));
    assert_eq!(
        hostport_range("sips:a:pw@[2001:db8::1]:5061"),
        Some((10, 28))
    );
    let m = msg_from(
        &invite("10.0.0.2:5060", "10.0.0.2:5060", "10.0.0.2"),
        "203.0.113.1:40001",
    );
    assert_eq!(rcv_uri(&m), "sip:203.0.113.1:40001");
}

#[test]
fn fix_nated_contact_and_add_rcv_param() {
    let text = invite("10.0.0.2:5060", "10.0.0.2:5060", "10.0.0.2");
    let mut m = msg_from(&text, "203.0.113.1:40001");
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    assert_eq!(cmd_fix_nated_contact(&mut ctx, &[]), 1);
    assert_eq!(
        cmd_fix_nated_contact(&mut ctx, &[]),
        -1,
        "second call refused"
    );
    assert_eq!(cmd_add_rcv_param(&mut ctx, &[]), 1);
    let out = String::from_utf8(m.lumps.apply(m.buf())).unwrap();
    assert!(
        out.contains(
            "Contact: <sip:alice@203.0.113.1:40001>;received=\"sip:203.0.113.1:40001\"\r\n"
        ),
        "{out}"
    );
}

#[test]
fn force_flags_and_commands() {
    let f = parse_force_flags("aIfrcos").unwrap();
    assert_eq!(f.opts, "AI");
    assert!(f.asymmetric && f.force && f.real && f.common_ip && f.origin && f.swap);
    assert!(parse_force_flags("x").is_err());
    assert_eq!(
        offer_command(true, "", false, "c1", "203.0.113.1", 4000, "f1", "", 1),
        "U c1 203.0.113.1 4000 f1;1"
    );
    assert_eq!(
        offer_command(false, "A", true, "c1", "::1", 4000, "f1", "t1", 2),
        "LA6 c1 ::1 4000 f1;2 t1;2"
    );
}

#[test]
fn avp_specs() {
    assert_eq!(parse_avp("$avp(i:42)").unwrap(), AvpId::Int(42));
    assert_eq!(parse_avp("s:rcv").unwrap(), AvpId::Str("rcv".into()));
    assert!(parse_avp("$avp(i:x)").is_err());
}

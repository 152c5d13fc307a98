//! Data-driven parser tests over tests/data/sip/*.sip with expectations in *.expect
//! (`key=value` lines; `-` means absent; `<empty>` an empty value), the sl/reply builder
//! checks, a proptest round trip and a random-input no-panic smoke test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use openser_core::msg::{
    BuildError, ViaParams, build_local_reply, build_reply_forward, build_request, is_sl_ack,
    next_via_destination, reply_destination, sl_tag_prefix, sl_totag,
};
use openser_core::parser::{HdrType, Proto, RcvInfo, SipMsg, Span, Uri};

fn opt(msg: &SipMsg, s: Option<Span>) -> String {
    match s {
        None => "-".into(),
        Some(sp) if sp.is_empty() => "<empty>".into(),
        Some(sp) => msg.s(sp).to_string(),
    }
}

fn r<T: ToString>(x: Result<T, openser_core::parser::ParseError>) -> String {
    match x {
        Ok(v) => v.to_string(),
        Err(e) => format!("ERR {:?}", e.kind),
    }
}

/// The value of one fact about `msg`.
fn fact(msg: &SipMsg, key: &str) -> String {
    if let Some(name) = key.strip_prefix("h.") {
        return msg
            .header(name)
            .map(|s| s.replace("\r\n", "\\r\\n"))
            .unwrap_or("-".into());
    }
    if let Some(name) = key.strip_prefix("hn.") {
        return msg.headers_by_name(name).len().to_string();
    }
    let via = |n: usize| msg.vias().ok().and_then(|v| v.get(n).map(|x| (*x).clone()));
    let via_f = |n: usize, f: &str| -> String {
        let Some(v) = via(n) else { return "-".into() };
        match f {
            "host" => msg.s(v.host).into(),
            "port" => v.port.map(|p| p.to_string()).unwrap_or("-".into()),
            "transport" => msg.s(v.transport).into(),
            "branch" => opt(msg, v.branch),
            "received" => opt(msg, v.received),
            "rport" => opt(msg, v.rport),
            "maddr" => opt(msg, v.maddr),
            "params" => v.params(msg.buf()).len().to_string(),
            _ => "?".into(),
        }
    };
    let na = |n: &openser_core::parser::NameAddr, f: &str| -> String {
        match f {
            "uri" => msg.s(n.uri).into(),
            "tag" => opt(msg, n.tag),
            "display" => opt(msg, n.display),
            "q" => opt(msg, n.q),
            "expires" => opt(msg, n.expires),
            "params" => n.params(msg.buf()).len().to_string(),
            _ => "?".into(),
        }
    };
    let (head, field) = key.split_once('.').unwrap_or((key, ""));
    match head {
        "kind" => if msg.is_request() { "request" } else { "reply" }.into(),
        "method" => msg.method_str().into(),
        "ruri" => match field {
            "" => msg.ruri().into(),
            f => match msg.orig_ruri_parsed() {
                Err(e) => format!("ERR {:?}", e.kind),
                Ok(u) => match f {
                    "user" => u.user.clone(),
                    "user_unescaped" => u.user_unescaped(),
                    "host" => u.host.clone(),
                    "port" => u.port.map(|p| p.to_string()).unwrap_or("-".into()),
                    "transport" => u.transport().unwrap_or("-").into(),
                    "user_param" => u.user_param().unwrap_or("-").into(),
                    "lr" => u.lr().to_string(),
                    "display" => u.to_string(),
                    _ => "?".into(),
                },
            },
        },
        "status" => msg.status().map(|s| s.to_string()).unwrap_or("-".into()),
        "reason" => msg.reason().unwrap_or("-").into(),
        "hdr" => msg.hdrs().len().to_string(),
        "via" => r(msg.vias().map(|v| v.len())),
        "via1" => via_f(0, field),
        "via2" => via_f(1, field),
        "via3" => via_f(2, field),
        "from" => msg
            .from()
            .map(|n| na(n, field))
            .unwrap_or_else(|e| format!("ERR {:?}", e.kind)),
        "to" => msg
            .to()
            .map(|n| na(n, field))
            .unwrap_or_else(|e| format!("ERR {:?}", e.kind)),
        "callid" => msg.callid().unwrap_or("-").into(),
        "cseq" => match msg.cseq() {
            Err(e) => format!("ERR {:?}", e.kind),
            Ok(c) => match field {
                "num" => c.num.to_string(),
                "method" => msg.s(c.method_text).into(),
                "m" => format!("{:?}", c.method),
                _ => "?".into(),
            },
        },
        "maxfwd" => r(msg
            .max_forwards()
            .map(|x| x.map(|v| v.to_string()).unwrap_or("-".into()))),
        "expires" => r(msg
            .expires()
            .map(|x| x.map(|v| v.to_string()).unwrap_or("-".into()))),
        "cl" => msg
            .content_length()
            .map(|v| v.to_string())
            .unwrap_or("-".into()),
        "body" => match field {
            "len" => msg.body().len().to_string(),
            _ => String::from_utf8_lossy(msg.body()).replace("\r\n", "\\r\\n"),
        },
        "contacts" => r(msg.contacts().map(|c| c.contacts.len())),
        "contact" => r(msg.contacts().map(|c| c.star)),
        "contact1" | "contact2" | "contact3" => {
            let i = (head.as_bytes()[7] - b'1') as usize;
            match msg.contacts() {
                Err(e) => format!("ERR {:?}", e.kind),
                Ok(c) => c
                    .contacts
                    .get(i)
                    .map(|n| na(n, field))
                    .unwrap_or("-".into()),
            }
        }
        "route" | "rr" => {
            let t = if head == "route" {
                HdrType::Route
            } else {
                HdrType::RecordRoute
            };
            match msg.routes(t) {
                Err(e) => format!("ERR {:?}", e.kind),
                Ok(v) => match field {
                    "count" => v.len().to_string(),
                    f => {
                        let (i, f2) = f.split_once('.').unwrap_or((f, "uri"));
                        let i: usize = i.parse().unwrap_or(0);
                        v.get(i).map(|n| na(n, f2)).unwrap_or("-".into())
                    }
                },
            }
        }
        "auth" | "pauth" | "www" | "pwww" => {
            let t = match head {
                "auth" => HdrType::Authorization,
                "pauth" => HdrType::ProxyAuthorization,
                "www" => HdrType::WwwAuthenticate,
                _ => HdrType::ProxyAuthenticate,
            };
            match msg.auth(t) {
                Err(e) => format!("ERR {:?}", e.kind),
                Ok(None) => "-".into(),
                Ok(Some(d)) => match field {
                    "scheme" => msg.s(d.scheme).into(),
                    "username" => opt(msg, d.username),
                    "realm" => opt(msg, d.realm),
                    "nonce" => opt(msg, d.nonce),
                    "uri" => opt(msg, d.uri),
                    "response" => opt(msg, d.response),
                    "algorithm" => opt(msg, d.algorithm),
                    "cnonce" => opt(msg, d.cnonce),
                    "opaque" => opt(msg, d.opaque),
                    "qop" => opt(msg, d.qop),
                    "nc" => opt(msg, d.nc),
                    "stale" => opt(msg, d.stale),
                    _ => "?".into(),
                },
            }
        }
        "event" => match msg.event() {
            Err(e) => format!("ERR {:?}", e.kind),
            Ok(None) => "-".into(),
            Ok(Some(ev)) => match field {
                "" => msg.s(ev.name).into(),
                p => ev
                    .params
                    .iter()
                    .find(|x| msg.s(x.name) == p)
                    .map(|x| opt(msg, x.value))
                    .unwrap_or("-".into()),
            },
        },
        "tokens" => {
            let t = match field {
                "supported" => HdrType::Supported,
                "require" => HdrType::Require,
                "proxy_require" => HdrType::ProxyRequire,
                "allow" => HdrType::Allow,
                _ => HdrType::Unsupported,
            };
            r(msg.tokens(t).map(|v| v.join(",")))
        }
        "ua" => msg.user_agent().unwrap_or("-").into(),
        "ctype" => match msg.content_type() {
            Err(e) => format!("ERR {:?}", e.kind),
            Ok(None) => "-".into(),
            Ok(Some(c)) => format!("{}/{}", msg.s(c.mtype), msg.s(c.subtype)),
        },
        "mandatory" => match msg.check_mandatory() {
            Ok(()) => "ok".into(),
            Err(e) => format!("{:?}", e.kind),
        },
        "all" => match msg.parse_all() {
            Ok(()) => "ok".into(),
            Err(e) => format!("{:?}", e.kind),
        },
        _ => format!("unknown key {key}"),
    }
}

fn rcv() -> RcvInfo {
    RcvInfo {
        src: "192.0.2.10:5099".parse::<SocketAddr>().unwrap(),
        dst: "192.0.2.1:5060".parse::<SocketAddr>().unwrap(),
        proto: Proto::Udp,
        sock_idx: 0,
    }
}

#[test]
fn corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/sip");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "corpus too small");
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let exp_path = f.with_extension("expect");
        let exp = std::fs::read_to_string(&exp_path)
            .unwrap_or_else(|_| panic!("missing {}", exp_path.display()));
        let mut want = BTreeMap::new();
        for line in exp
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            want.insert(k.trim().to_string(), v.to_string());
        }
        let parsed = SipMsg::new(&data, rcv());
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        match parsed {
            Err(e) => {
                let got = format!("{:?}", e.kind);
                if want.get("parse").map(String::as_str) != Some(got.as_str()) {
                    failures.push(format!(
                        "{name}: parse: want {:?} got {got} ({e})",
                        want.get("parse")
                    ));
                }
            }
            Ok(msg) => {
                if let Some(p) = want.get("parse")
                    && p != "ok"
                {
                    failures.push(format!("{name}: parse: want {p} got ok"));
                }
                for (k, v) in &want {
                    if k == "parse" {
                        continue;
                    }
                    let got = fact(&msg, k);
                    if &got != v {
                        failures.push(format!("{name}: {k}: want {v:?} got {got:?}"));
                    }
                }
                // Building never panics on corpus messages.
                let _ = msg.parse_all();
                if msg.is_request() {
                    let _ = build_request(&msg, &via_params(), &[]);
                    let _ = build_local_reply(
                        &msg,
                        404,
                        "Not Found",
                        Some("abc"),
                        &[],
                        b"",
                        Some("openser"),
                    );
                } else {
                    let _ = build_reply_forward(&msg);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
}

fn via_params() -> ViaParams<'static> {
    ViaParams {
        host: "192.0.2.1",
        port: 5060,
        proto: Proto::Udp,
        branch: "z9hG4bKabc.0",
        rport: false,
        extra_params: "",
    }
}

const INV: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.example.com:5070;branch=z9hG4bK776;rport\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@example.com>;tag=1928\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5099>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn request_build_basic() {
    let mut m = SipMsg::new(INV, rcv()).unwrap();
    m.new_uri = Some("sip:bob@10.0.0.5:5080".into());
    m.add_record_route("Record-Route: <sip:192.0.2.1;lr>");
    m.add_header_after_last("X-Test: 1");
    let out = build_request(&m, &via_params(), &["X-Extra: 2"]).unwrap();
    let s = String::from_utf8(out.clone()).unwrap();
    assert!(
        s.starts_with("INVITE sip:bob@10.0.0.5:5080 SIP/2.0\r\n"),
        "{s}"
    );
    let p = SipMsg::parse(&out).unwrap();
    let vias = p.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(p.s(vias[0].host), "192.0.2.1");
    assert_eq!(p.s(vias[0].branch.unwrap()), "z9hG4bKabc.0");
    assert_eq!(p.s(vias[1].received.unwrap()), "192.0.2.10");
    assert_eq!(p.s(vias[1].rport.unwrap()), "5099");
    assert_eq!(p.header("Record-Route"), Some("<sip:192.0.2.1;lr>"));
    assert_eq!(p.header("X-Test"), Some("1"));
    assert_eq!(p.header("X-Extra"), Some("2"));
    assert_eq!(p.body(), b"v=0\n");
    assert_eq!(p.content_length(), Some(4));
    p.check_mandatory().unwrap();
}

#[test]
fn request_build_body_change_and_removal() {
    let mut m = SipMsg::new(INV, rcv()).unwrap();
    m.set_body(b"v=0\r\no=longer body\r\n");
    let i = m.first_of(HdrType::Contact).unwrap();
    m.remove_header(i);
    m.add_rport = true;
    let out = build_request(&m, &via_params(), &[]).unwrap();
    let p = SipMsg::parse(&out).unwrap();
    assert_eq!(p.body(), b"v=0\r\no=longer body\r\n");
    assert_eq!(p.content_length(), Some(p.body().len() as u32));
    assert!(p.header("Contact").is_none());
}

#[test]
fn local_reply() {
    let mut m = SipMsg::new(INV, rcv()).unwrap();
    m.reply_lumps.push("X-Reply: yes\r\n".into());
    let prefix = sl_tag_prefix("192.0.2.1", 5060);
    let tag = sl_totag(&prefix, &m);
    assert_eq!(tag.len(), 32 + 1 + 4);
    let out = build_local_reply(
        &m,
        486,
        "Busy Here",
        Some(&tag),
        &["Retry-After: 5"],
        b"",
        Some("OpenSER (1.2)"),
    )
    .unwrap();
    let p = SipMsg::parse(&out).unwrap();
    assert_eq!(p.status(), Some(486));
    assert_eq!(p.reason(), Some("Busy Here"));
    let v = p.via1().unwrap();
    assert_eq!(p.s(v.received.unwrap()), "192.0.2.10");
    assert_eq!(p.s(v.rport.unwrap()), "5099");
    assert_eq!(p.s(p.to().unwrap().tag.unwrap()), tag);
    assert_eq!(p.s(p.from().unwrap().tag.unwrap()), "1928");
    assert_eq!(p.callid(), Some("a84b4c76e66710"));
    assert_eq!(p.cseq().unwrap().num, 314159);
    assert_eq!(p.header("X-Reply"), Some("yes"));
    assert_eq!(p.header("Retry-After"), Some("5"));
    assert_eq!(p.header("Server"), Some("OpenSER (1.2)"));
    assert_eq!(p.content_length(), Some(0));
    assert!(p.header("Contact").is_none());
    // 100 Trying gets no tag.
    let out = build_local_reply(&m, 100, "Trying", Some(&tag), &[], b"", None).unwrap();
    let p = SipMsg::parse(&out).unwrap();
    assert!(p.to().unwrap().tag.is_none());
    assert_eq!(reply_destination(&m).unwrap(), ("192.0.2.10".into(), 5099));
    // An ACK to that reply is recognised.
    let ack = format!(
        "ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP client.example.com:5070;branch=z9hG4bK776;rport\r\n\
From: Alice <sip:alice@example.com>;tag=1928\r\nTo: Bob <sip:bob@example.com>;tag={tag}\r\n\
Call-ID: a84b4c76e66710\r\nCSeq: 314159 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    let a = SipMsg::new(ack.as_bytes(), rcv()).unwrap();
    assert!(is_sl_ack(&prefix, &a));
    assert!(!is_sl_ack(&sl_tag_prefix("192.0.2.2", 5060), &a));
}

#[test]
fn reply_dest_rules() {
    let no_rport =
        b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let m = SipMsg::new(no_rport, rcv()).unwrap();
    assert_eq!(reply_destination(&m).unwrap(), ("192.0.2.10".into(), 5070));
    let out = build_local_reply(&m, 200, "OK", Some("t"), &[], b"", None).unwrap();
    let p = SipMsg::parse(&out).unwrap();
    assert!(p.via1().unwrap().received.is_none(), "same IP: no received");
    let maddr = b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h.example;maddr=239.1.1.1;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let m = SipMsg::new(maddr, rcv()).unwrap();
    assert_eq!(reply_destination(&m).unwrap(), ("239.1.1.1".into(), 5060));
    let mut m = SipMsg::new(no_rport, rcv()).unwrap();
    m.add_rport = true;
    assert_eq!(reply_destination(&m).unwrap(), ("192.0.2.10".into(), 5099));
}

#[test]
fn reply_forward() {
    let rep = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc.0, SIP/2.0/UDP c.example.com:5070;branch=z9hG4bK776;received=192.0.2.10;rport=5099\r\n\
Via: SIP/2.0/UDP third.example.com;branch=z9hG4bK3\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let m = SipMsg::new(rep, rcv()).unwrap();
    assert_eq!(
        next_via_destination(&m).unwrap(),
        ("192.0.2.10".into(), 5099)
    );
    let out = build_reply_forward(&m).unwrap();
    let p = SipMsg::parse(&out).unwrap();
    let v = p.vias().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(p.s(v[0].host), "c.example.com");
    assert_eq!(p.s(v[1].host), "third.example.com");
    // Single via in its header: whole header removed.
    let out2 = build_reply_forward(&p).unwrap();
    let p2 = SipMsg::parse(&out2).unwrap();
    assert_eq!(p2.vias().unwrap().len(), 1);
    assert_eq!(p2.headers_by_name("Via").len(), 1);
    assert_eq!(next_via_destination(&p2), Err(BuildError::NoSecondVia));
}

#[test]
fn uri_parse_and_compare() {
    let u = Uri::parse("sip:alice%20b:pw@[2001:db8::1]:5070;transport=tcp;lr;maddr=1.2.3.4?subject=x&priority=urgent").unwrap();
    assert_eq!(u.user, "alice%20b");
    assert_eq!(u.user_unescaped(), "alice b");
    assert_eq!(u.passwd.as_deref(), Some("pw"));
    assert_eq!(u.host, "[2001:db8::1]");
    assert_eq!(u.host_unbracketed(), "2001:db8::1");
    assert_eq!(u.port, Some(5070));
    assert_eq!(u.transport(), Some("tcp"));
    assert!(u.lr());
    assert_eq!(u.maddr(), Some("1.2.3.4"));
    assert_eq!(u.headers.as_deref(), Some("subject=x&priority=urgent"));
    assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
    // RFC 3261 §19.1.4 examples.
    let eq = |a: &str, b: &str| Uri::parse(a).unwrap().rfc_eq(&Uri::parse(b).unwrap());
    assert!(eq(
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    ));
    assert!(eq(
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
    ));
    assert!(!eq(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com;transport=udp"
    ));
    assert!(!eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;security=off"
    ));
    // Fuzz finding: duplicate parameter names must still compare reflexively.
    let d = Uri::parse("sip:x;p=1;p=2").unwrap();
    assert!(d.rfc_eq(&d.clone()));
    let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
    assert_eq!(t.user, "+1-201-555-0123");
    assert_eq!(
        t.to_string(),
        "tel:+1-201-555-0123;phone-context=example.com"
    );
    let mut w = Uri::parse("sip:bob@example.com;user=phone").unwrap();
    w.set_user("carol").unwrap();
    w.set_hostport("10.0.0.1:5080").unwrap();
    assert_eq!(w.to_string(), "sip:carol@10.0.0.1:5080;user=phone");
    w.set_port(None);
    w.set_host("h.example").unwrap();
    assert_eq!(w.to_string(), "sip:carol@h.example;user=phone");
    for bad in [
        "http://x",
        "sip:",
        "sip:a@",
        "sip:a@b:99999",
        "sip:a b@c",
        "sip:a@[::1",
        "sip:%zz@x",
        "sip:x;",
        "sip:x:",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad} should fail");
    }
}

// ---------------------------------------------------------------------------
// Property tests: generated requests survive build → parse with the same fields,
// and arbitrary bytes never panic.

use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,11}"
}
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){1,2}",
        (1u8..=254, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[2001:db8::7]".to_string()),
    ]
}
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("INVITE"),
        Just("REGISTER"),
        Just("OPTIONS"),
        Just("BYE"),
        Just("FOOBAR")
    ]
    .prop_map(String::from)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn roundtrip(m in method(), user in "[a-z0-9]{1,8}", h in host(), port in proptest::option::of(1u16..65535),
                 vhost in host(), branch in token(), ftag in token(), callid in token(), cseq in 0u32..1_000_000,
                 body in "[a-z0-9 =]{0,40}", compact in any::<bool>(), nvias in 1usize..4, display in proptest::option::of("[a-zA-Z]{1,8}")) {
        let ruri = match port { Some(p) => format!("sip:{user}@{h}:{p}"), None => format!("sip:{user}@{h}") };
        let (vn, fnm, tn, cn, ln) = if compact { ("v", "f", "t", "i", "l") } else { ("Via", "From", "To", "Call-ID", "Content-Length") };
        let mut s = format!("{m} {ruri} SIP/2.0\r\n");
        let vias: Vec<String> = (0..nvias).map(|i| format!("SIP/2.0/UDP {vhost}:50{i}0;branch=z9hG4bK{branch}{i}")).collect();
        s += &format!("{vn}: {}\r\n", vias.join(" , "));
        let disp = display.clone().map(|d| format!("\"{d}\" ")).unwrap_or_default();
        s += &format!("{fnm}: {disp}<sip:{user}@{h}>;tag={ftag}\r\n{tn}: <{ruri}>\r\n{cn}: {callid}\r\nCSeq: {cseq} {m}\r\n{ln}: {}\r\n\r\n{body}", body.len());
        let msg = SipMsg::new(s.as_bytes(), rcv()).unwrap();
        msg.check_mandatory().unwrap();
        let out = build_request(&msg, &via_params(), &[]).unwrap();
        let p = SipMsg::parse(&out).unwrap();
        p.check_mandatory().unwrap();
        prop_assert_eq!(p.method_str(), m.as_str());
        prop_assert_eq!(p.ruri(), ruri.as_str());
        let pu = p.orig_ruri_parsed().unwrap();
        prop_assert_eq!(&pu.user, &user);
        prop_assert_eq!(pu.port, port);
        let vs = p.vias().unwrap();
        prop_assert_eq!(vs.len(), nvias + 1);
        prop_assert_eq!(p.s(vs[1].branch.unwrap()), format!("z9hG4bK{branch}0"));
        prop_assert_eq!(p.s(vs[1].host), vhost.as_str());
        prop_assert_eq!(p.s(p.from().unwrap().tag.unwrap()), ftag.as_str());
        let want_disp = display.map(|d| format!("\"{d}\""));
        prop_assert_eq!(p.os(p.from().unwrap().display), want_disp.as_deref());
        prop_assert_eq!(p.s(p.to().unwrap().uri), ruri.as_str());
        prop_assert_eq!(p.callid(), Some(callid.as_str()));
        prop_assert_eq!(p.cseq().unwrap().num, cseq);
        prop_assert_eq!(p.body(), body.as_bytes());
        let rep = build_local_reply(&msg, 404, "Not Found", Some("x"), &[], b"", None).unwrap();
        let rp = SipMsg::parse(&rep).unwrap();
        rp.check_mandatory().unwrap();
        prop_assert_eq!(rp.vias().unwrap().len(), nvias);
    }

    #[test]
    fn no_panic_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        smoke(&data);
    }

    #[test]
    fn no_panic_mutated(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..450) {
        let mut d = INV.to_vec();
        if pos < d.len() { d[pos] = byte; }
        d.truncate(cut.max(1));
        smoke(&d);
        if let Ok(s) = std::str::from_utf8(&d) { let _ = Uri::parse(s); let _ = openser_core::parser::parse_params_str(s); }
    }
}

/// What the fuzz target `parse_msg` does, runnable without libFuzzer.
fn smoke(data: &[u8]) {
    if let Ok(msg) = SipMsg::new(data, rcv()) {
        let _ = msg.parse_all();
        let _ = msg.check_mandatory();
        let _ = msg.vias();
        let _ = msg.contacts();
        let _ = msg.orig_ruri_parsed();
        let _ = build_request(&msg, &via_params(), &["X: y"]);
        let _ = build_local_reply(&msg, 500, "Err", Some("t"), &[], b"x", Some("s"));
        let _ = build_reply_forward(&msg);
        let _ = reply_destination(&msg);
        let _ = next_via_destination(&msg);
    }
}

#[test]
fn build_without_blank_line() {
    let raw =
        b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS";
    let mut m = SipMsg::new(raw, rcv()).unwrap();
    m.add_header_after_last("X-A: 1");
    let out = build_request(&m, &via_params(), &["X-B: 2"]).unwrap();
    let p = SipMsg::parse(&out).unwrap();
    p.check_mandatory().unwrap();
    assert_eq!(p.cseq().unwrap().num, 1);
    assert_eq!(p.header("X-A"), Some("1"));
    assert_eq!(p.header("X-B"), Some("2"));
    assert!(
        out.ends_with(b"\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    m.set_body(b"hello");
    let out = build_request(&m, &via_params(), &[]).unwrap();
    let p = SipMsg::parse(&out).unwrap();
    assert_eq!(p.body(), b"hello");
    assert_eq!(p.content_length(), Some(5));
    assert_eq!(p.header("X-A"), Some("1"));
}

#[test]
fn tcp_gets_content_length() {
    let raw = b"MESSAGE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x1\r\nCSeq: 1 MESSAGE\r\n\r\nabc";
    let m = SipMsg::new(raw, rcv()).unwrap();
    let mut v = via_params();
    v.proto = Proto::Tcp;
    let p = SipMsg::parse(&build_request(&m, &v, &[]).unwrap()).unwrap();
    assert_eq!(p.content_length(), Some(3));
    assert_eq!(p.body(), b"abc");
    let p = SipMsg::parse(&build_request(&m, &via_params(), &[]).unwrap()).unwrap();
    assert_eq!(p.content_length(), None);
}

#[test]
fn header_lumps() {
    let mut m = SipMsg::new(INV, rcv()).unwrap();
    m.add_header_before_first("X-First: 1");
    let cseq = m.first_of(HdrType::CSeq).unwrap();
    m.add_header_after(cseq, "X-After-CSeq: 2");
    m.add_header_before(cseq, "X-Before-CSeq: 3");
    assert_eq!(m.remove_headers_by_name("m"), 1);
    let mf = m.first_of(HdrType::MaxForwards).unwrap();
    let body = m.hdrs()[mf].body;
    m.replace_span(body, "69");
    assert!(!m.add_header_after(999, "X: y"));
    let out = m.lumps.apply(m.buf());
    let p = SipMsg::parse(&out).unwrap();
    let names: Vec<&str> = p.hdrs().iter().map(|h| p.s(h.name)).collect();
    assert_eq!(names[0], "X-First");
    let ci = names.iter().position(|n| *n == "CSeq").unwrap();
    assert_eq!(names[ci - 1], "X-Before-CSeq");
    assert_eq!(names[ci + 1], "X-After-CSeq");
    assert!(p.header("Contact").is_none());
    assert_eq!(p.max_forwards().unwrap(), Some(69));
    p.check_mandatory().unwrap();
}

/// Every corpus request that passes `check_mandatory` still parses and passes after
/// `build_request`/`build_local_reply` (the fuzz corpus, when present locally, can be
/// replayed the same way with `OPENSER_REBUILD_CORPUS=fuzz/corpus/parse_msg`).
#[test]
fn corpus_rebuild_invariant() {
    let rel =
        std::env::var("OPENSER_REBUILD_CORPUS").unwrap_or_else(|_| "../tests/data/sip".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let rd = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let (mut n, mut bad) = (0, Vec::new());
    for e in rd.flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let Ok(m) = SipMsg::new(&data, rcv()) else {
            continue;
        };
        if !m.is_request() || m.check_mandatory().is_err() {
            continue;
        }
        n += 1;
        let out = build_request(&m, &via_params(), &[]).unwrap();
        match SipMsg::parse(&out) {
            Ok(p) if p.check_mandatory().is_ok() => {}
            r => bad.push(format!("{}: request {:?}", e.path().display(), r.err())),
        }
        let rep = build_local_reply(&m, 404, "Not Found", Some("t"), &[], b"", None).unwrap();
        match SipMsg::parse(&rep) {
            Ok(p) if p.check_mandatory().is_ok() => {}
            r => bad.push(format!("{}: reply {:?}", e.path().display(), r.err())),
        }
    }
    println!("checked {n} messages");
    assert!(n >= 10, "too few valid requests in {}: {n}", dir.display());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

use super::*;
use openser_core::cfg::ast::ArgValue;

const OPT: &str = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport\r\n\
From: <sip:a@b>;tag=f1\r\n\
To: <sip:x@127.0.0.1>\r\n\
Call-ID: cid-1\r\n\
CSeq: 7 OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn reply_format() {
    let mut m = SipMsg::parse(OPT.as_bytes()).unwrap();
    m.reply_lumps.push("X-Extra: 1\r\n".into());
    let r = build_sl_reply(&m, 200, "OK", &["Contact: <sip:c@d>".into()], b"").unwrap();
    let r = String::from_utf8(r).unwrap();
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    let to = r.lines().find(|l| l.starts_with("To:")).unwrap();
    let tag = to.split(";tag=").nth(1).unwrap();
    assert_eq!(tag.len(), 37, "{tag}");
    assert_eq!(&tag[32..33], ".");
    assert!(
        tag.bytes()
            .enumerate()
            .all(|(i, c)| i == 32 || c.is_ascii_hexdigit())
    );
    assert!(r.contains("X-Extra: 1\r\nContact: <sip:c@d>\r\nServer: OpenSER"));
    assert!(r.ends_with("Content-Length: 0\r\n\r\n"));
    // the ACK for it is recognised
    let ack = OPT
        .replace("OPTIONS sip", "ACK sip")
        .replace("7 OPTIONS", "7 ACK")
        .replace(
            "To: <sip:x@127.0.0.1>",
            &format!("To: <sip:x@127.0.0.1>;tag={tag}"),
        );
    let a = SipMsg::parse(ack.as_bytes()).unwrap();
    assert!(is_sl_ack(tag_prefix(), &a));
    // 100 gets no tag
    let r = build_sl_reply(&m, 100, "Trying", &[], b"").unwrap();
    let r = String::from_utf8(r).unwrap();
    assert!(r.contains("\r\nTo: <sip:x@127.0.0.1>\r\n"), "{r}");
    assert!(build_sl_reply(&m, 700, "X", &[], b"").is_err());
}

#[test]
fn error_reasons() {
    let m = SipMsg::parse(OPT.as_bytes()).unwrap();
    let (c, r) = error_reply(&m);
    assert_eq!(c, 500);
    assert!(r.ends_with("(1/SL)"), "{r}");
    set_prev_error(SipError::TooManyHops);
    assert_eq!(error_reply(&m), (483, "Too Many Hops (483/SL)".into()));
}

#[test]
fn fixup_checks_code() {
    use openser_core::cfg::ast::Arg;
    let a = |s: &str| Arg {
        value: ArgValue::Str(s.into()),
        span: Default::default(),
    };
    assert!(fixup_sl_send_reply(&[a("200"), a("OK")]).is_ok());
    assert!(fixup_sl_send_reply(&[a("99"), a("OK")]).is_err());
    assert!(fixup_sl_send_reply(&[a("abc"), a("OK")]).is_err());
    assert!(matches!(
        fixup_sl_send_reply(&[a("$err.rcode"), a("$err.rreason")]).unwrap()[0],
        FixedArg::Fmt(_)
    ));
}

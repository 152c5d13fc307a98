use super::*;
use crate::core::parser::SipMsg;

const INV: &str = "INVITE sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
From: <sip:bob@example.com>;tag=1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: abc@host\r\n\
CSeq: 1 INVITE\r\n\
User-Agent: Phone 1.0\r\n\
Privacy: id; header\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\no=xx\r\n";

fn msg() -> SipMsg {
    SipMsg::parse(INV.as_bytes()).unwrap()
}

fn out(m: &SipMsg) -> String {
    String::from_utf8(m.lumps.apply(m.buf())).unwrap()
}

fn pat(s: &str) -> Pattern {
    Pattern::new(s, true, true).unwrap()
}

fn nopv(_: &PvSpec) -> String {
    "X".into()
}

#[test]
fn search_regions() {
    let m = msg();
    assert!(search(&m, &pat("^invite"), Region::All));
    assert!(search(&m, &pat("user-agent: phone"), Region::All));
    assert!(!search(&m, &pat("user-agent"), Region::Body));
    assert!(search(&m, &pat("^o=xx"), Region::Body));
    assert!(!search(&m, &pat("nothing here"), Region::All));
}

#[test]
fn replace_and_append() {
    let mut m = msg();
    assert!(replace(
        &mut m,
        &pat("Phone [0-9.]+"),
        Region::Headers,
        "Softphone",
        false
    ));
    assert!(out(&m).contains("User-Agent: Softphone\r\n"));
    let mut m = msg();
    // the R-URI line is not searched by replace
    assert!(replace(
        &mut m,
        &pat("alice"),
        Region::Headers,
        "carol",
        true
    ));
    let o = out(&m);
    assert!(o.starts_with("INVITE sip:alice@example.com"));
    assert!(o.contains("To: <sip:carol@example.com>"));
    let mut m = msg();
    assert!(search_append(
        &mut m,
        &pat("Call-ID: [^\r]*"),
        Region::Headers,
        ".x"
    ));
    assert!(out(&m).contains("Call-ID: abc@host.x\r\n"));
    let mut m = msg();
    assert!(!replace(&mut m, &pat("q*"), Region::Body, "z", true));
}

#[test]
fn subst_on_message() {
    let mut m = msg();
    let s = subst::parse("/^(User-Agent:) (.*)$/\\1 $ua-\\2/i").unwrap();
    assert!(subst_msg(&mut m, &s, Region::Headers, &mut nopv));
    assert!(
        out(&m).contains("User-Agent: X-Phone 1.0\r\r\n")
            || out(&m).contains("User-Agent: X-Phone 1.0\r\n")
    );
    let mut m = msg();
    let s = subst::parse("/o=xx/o=yy/").unwrap();
    assert!(subst_msg(&mut m, &s, Region::Body, &mut nopv));
    assert!(out(&m).ends_with("o=yy\r\n"));
}

#[test]
fn subst_user_rewrites() {
    let m = msg();
    let s = subst::parse("/^alice$/bob/").unwrap();
    let u = subst_user_uri(m.ruri_parsed().unwrap(), &s, &mut nopv).unwrap();
    assert_eq!(u, "sip:bob@example.com");
    let s = subst::parse("/^carol$/bob/").unwrap();
    assert!(subst_user_uri(m.ruri_parsed().unwrap(), &s, &mut nopv).is_none());
}

#[test]
fn headers_add_remove() {
    let mut m = msg();
    assert!(add_hf(&mut m, "X-A: 1\r\n", None, true));
    assert!(add_hf(&mut m, "X-B: 2", Some("call-id"), false));
    assert!(add_hf(&mut m, "X-C: 3", Some("v"), true));
    assert!(!add_hf(&mut m, "X-D: 4", Some("X-None"), true));
    assert_eq!(m.remove_headers_by_name("user-agent"), 1);
    let o = out(&m);
    assert!(o.contains("Content-Length: 10\r\nX-A: 1\r\n\r\n"));
    assert!(o.contains("X-B: 2\r\nCall-ID:"));
    assert!(o.contains("branch=z9hG4bK1\r\nX-C: 3\r\n"));
    assert!(!o.contains("User-Agent"));
}

#[test]
fn methods_body_privacy() {
    let m = msg();
    assert!(MethodSet::parse("REGISTER|INVITE").unwrap().matches(&m));
    assert!(MethodSet::parse("invite").unwrap().matches(&m));
    assert!(!MethodSet::parse("BYE,CANCEL").unwrap().matches(&m));
    assert!(MethodSet::parse("A B").is_err());
    let r = SipMsg::parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCSeq: 2 FOO\r\n\r\n").unwrap();
    assert!(MethodSet::parse("foo|BAR").unwrap().matches(&r));
    assert!(has_body(&m, None));
    assert!(has_body(&m, Some("Application/SDP")));
    assert!(!has_body(&m, Some("text/plain")));
    let e =
        SipMsg::parse(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    assert!(!has_body(&e, None));
    assert!(is_privacy(&m, "header"));
    assert!(is_privacy(&m, "ID"));
    assert!(!is_privacy(&m, "user"));
}

#[test]
fn date() {
    assert_eq!(date_header(0), "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    assert_eq!(
        date_header(1_700_000_000),
        "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
    );
}

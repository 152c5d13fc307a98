use super::*;
use openser_core::parser::SipMsg;
use openser_core::route::REQUEST_ROUTE;

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

fn arg(s: &str) -> Arg {
    Arg {
        value: ArgValue::Str(s.into()),
        span: Default::default(),
    }
}

#[test]
fn handlers_through_ctx() {
    let mut m = msg();
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    let a = fix_fmt(&[arg("X-Call: $ci\r\n")]).unwrap();
    assert_eq!(cmd_append_to_reply(&mut ctx, &a), 1);
    assert_eq!(cmd_append_time(&mut ctx, &[]), 1);
    let a = fix_subst(&[arg("/^sip:([a-z]+)@/sip:\\1.$fU@/")]).unwrap();
    assert_eq!(cmd_subst_uri(&mut ctx, &a), 1);
    assert_eq!(ctx.msg.ruri(), "sip:alice.bob@example.com");
    let a = fix_subst(&[arg("/\\./-/g")]).unwrap();
    assert_eq!(cmd_subst_user(&mut ctx, &a), 1);
    assert_eq!(ctx.msg.ruri(), "sip:alice-bob@example.com");
    let a = fix_fmt(&[arg("X-Orig: <"), arg(">\r\n")]).unwrap();
    assert_eq!(cmd_append_urihf(&mut ctx, &a), 1);
    let a = fix_subst(&[arg("/^(CSeq: [0-9]+) (.*)$/\\1 $rm-\\2/")]).unwrap();
    assert_eq!(cmd_subst(&mut ctx, &a), 1);
    let a = fix_re_str(&[arg("call-id"), arg("x")]).unwrap();
    assert_eq!(cmd_search_append(&mut ctx, &a), 1);
    let a = fix_str(&[arg("i")]).unwrap();
    assert_eq!(cmd_is_present_hf(&mut ctx, &a), 1);
    let a = fix_str(&[arg("X-Nothing")]).unwrap();
    assert_eq!(cmd_remove_hf(&mut ctx, &a), -1);
    let a = fix_method(&[arg("INVITE")]).unwrap();
    assert_eq!(cmd_is_method(&mut ctx, &a), 1);
    let a = fix_mime(&[arg("application/sdp")]).unwrap();
    assert_eq!(cmd_has_body(&mut ctx, &a), 1);
    let a = fix_privacy(&[arg("Header")]).unwrap();
    assert_eq!(cmd_is_privacy(&mut ctx, &a), 1);
    assert_eq!(ctx.msg.reply_lumps[0], "X-Call: abc@host\r\n");
    assert!(ctx.msg.reply_lumps[1].starts_with("Date: "));
    let o = out(ctx.msg);
    assert!(
        o.contains("X-Orig: <sip:alice-bob@example.com>\r\n\r\n"),
        "{o}"
    );
    assert!(o.contains("CSeq: 1 INVITE-INVITE\r\n"), "{o}");
    assert!(o.contains("Call-IDx: abc@host"), "{o}");
}

#[test]
fn fixups_reject_bad_args() {
    assert!(fix_re(&[arg("(")]).is_err());
    assert!(fix_subst(&[arg("/a/b")]).is_err());
    assert!(fix_hf(&[arg("X: 1"), arg("Bad Name")]).is_err());
    assert!(fix_method(&[arg("")]).is_err());
    assert!(fix_mime(&[arg("text")]).is_err());
    assert!(fix_privacy(&[arg("nope")]).is_err());
}

//! registrar unit tests: save/lookup logic against a real usrloc domain in shm.

use std::sync::Once;

use super::lookup::{Found, registered, select};
use super::reply::{contact_header, err_reply, ok_reply};
use super::save::*;
use super::*;
use openser_core::parser::{Method, SipMsg};
use usrloc::{UDomain, UsrlocParams, register_udomain_with};

static INIT: Once = Once::new();

fn dom(name: &str) -> &'static UDomain {
    INIT.call_once(|| {
        let _ = shm::init(256 << 20);
    });
    assert!(shm::is_initialized());
    register_udomain_with(name, &UsrlocParams::default()).expect("domain")
}

const NOW: i64 = 1_000_000;

fn reg(to: &str, callid: &str, cseq: u32, extra: &str) -> SipMsg {
    let s = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{cseq}{callid}\r\n\
         From: <{to}>;tag=1\r\nTo: <{to}>\r\nCall-ID: {callid}\r\n\
         CSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    SipMsg::parse(s.as_bytes()).expect("parse")
}

fn run(d: &UDomain, p: &RegParams, m: &SipMsg, now: i64) -> Result<Saved, RegError> {
    save(m, d, p, &SaveInput::default(), now)
}

fn uris(v: &[usrloc::ContactInfo]) -> Vec<&str> {
    v.iter().map(|c| c.contact.as_str()).collect()
}

#[test]
fn register_refresh_unregister() {
    let d = dom("t_basic");
    let p = RegParams::default();
    let m = reg(
        "sip:alice@example.com",
        "c1",
        1,
        "Contact: <sip:alice@10.0.0.1>\r\n",
    );
    let s = run(d, &p, &m, NOW).unwrap();
    assert_eq!(uris(&s.contacts), ["sip:alice@10.0.0.1"]);
    assert_eq!(s.contacts[0].expires, NOW + 3600);
    let r = ok_reply(&s, &p, NOW);
    assert_eq!(r.code, 200);
    assert_eq!(r.headers, "Contact: <sip:alice@10.0.0.1>;expires=3600\r\n");
    // Refresh with a higher CSeq and explicit Expires.
    let m = reg(
        "sip:alice@example.com",
        "c1",
        2,
        "Contact: <sip:alice@10.0.0.1>\r\nExpires: 120\r\n",
    );
    let s = run(d, &p, &m, NOW + 10).unwrap();
    assert_eq!(s.contacts[0].expires, NOW + 130);
    assert_eq!(d.users(), 1);
    // Unregister with expires=0 param.
    let m = reg(
        "sip:alice@example.com",
        "c1",
        3,
        "Contact: <sip:alice@10.0.0.1>;expires=0\r\n",
    );
    let s = run(d, &p, &m, NOW + 20).unwrap();
    assert!(s.contacts.is_empty());
    assert_eq!(d.users(), 0);
    assert_eq!(ok_reply(&s, &p, NOW).headers, "");
}

#[test]
fn star_rules() {
    let d = dom("t_star");
    let p = RegParams::default();
    let m = reg(
        "sip:bob@example.com",
        "s1",
        1,
        "Contact: <sip:bob@1.1.1.1>, <sip:bob@2.2.2.2>\r\n",
    );
    assert_eq!(run(d, &p, &m, NOW).unwrap().contacts.len(), 2);
    // * without Expires -> 400.
    let m = reg("sip:bob@example.com", "s2", 1, "Contact: *\r\n");
    let e = run(d, &p, &m, NOW).unwrap_err();
    assert_eq!(e, RegError::StarExp);
    assert_eq!(e.reply(), (400, "Bad Request"));
    // * with Expires: 10 -> 400.
    let m = reg(
        "sip:bob@example.com",
        "s2",
        1,
        "Contact: *\r\nExpires: 10\r\n",
    );
    assert_eq!(run(d, &p, &m, NOW).unwrap_err(), RegError::StarExp);
    // * plus another contact -> 400.
    let m = reg(
        "sip:bob@example.com",
        "s2",
        1,
        "Contact: *\r\nContact: <sip:x@y>\r\nExpires: 0\r\n",
    );
    assert_eq!(run(d, &p, &m, NOW).unwrap_err(), RegError::StarCont);
    assert_eq!(d.get_contacts(b"bob").unwrap().len(), 2);
    // * with Expires: 0 removes everything.
    let m = reg(
        "sip:bob@example.com",
        "s2",
        1,
        "Contact: *\r\nExpires: 0\r\n",
    );
    assert!(run(d, &p, &m, NOW).unwrap().contacts.is_empty());
    assert!(d.get_contacts(b"bob").is_none());
}

#[test]
fn expires_precedence_and_clamp() {
    let d = dom("t_exp");
    let mut p = RegParams {
        max_expires: 1000,
        ..RegParams::default()
    };
    let m = reg(
        "sip:carol@example.com",
        "e1",
        1,
        "Contact: <sip:a@1>;expires=300, <sip:b@1>, <sip:c@1>;expires=5, <sip:d@1>;expires=99999, <sip:e@1>;expires=abc\r\nExpires: 200\r\n",
    );
    let s = run(d, &p, &m, NOW).unwrap();
    let mut got: Vec<(String, i64)> = s
        .contacts
        .iter()
        .map(|c| (c.contact.clone(), c.expires - NOW))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("sip:a@1".to_string(), 300),
            ("sip:b@1".to_string(), 200),
            ("sip:c@1".to_string(), 60),
            ("sip:d@1".to_string(), 1000),
            ("sip:e@1".to_string(), 1000), // unparsable -> 3600 -> capped
        ]
    );
    // default_expires when nothing given; min_expires raising.
    p.default_expires = 30;
    let m = reg("sip:dave@example.com", "e2", 1, "Contact: <sip:z@1>\r\n");
    let s = run(d, &p, &m, NOW).unwrap();
    assert_eq!(s.contacts[0].expires, NOW + 60);
}

#[test]
fn cseq_rules() {
    let d = dom("t_cseq");
    let p = RegParams::default();
    let c = "Contact: <sip:eve@1.2.3.4>\r\n";
    run(d, &p, &reg("sip:eve@x", "cid", 10, c), NOW).unwrap();
    // Lower CSeq, same Call-ID -> 400 Invalid CSeq.
    let e = run(d, &p, &reg("sip:eve@x", "cid", 9, c), NOW + 1).unwrap_err();
    assert_eq!(e, RegError::InvCseq);
    let r = err_reply(e, &p);
    assert_eq!(r.code, 400);
    assert_eq!(r.headers, "P-Registrar-Error: Invalid CSeq number\r\n");
    // Same CSeq within cseq_delay: retransmission, 200 with the binding unchanged.
    let s = run(
        d,
        &p,
        &reg(
            "sip:eve@x",
            "cid",
            10,
            "Contact: <sip:eve@1.2.3.4>;expires=50\r\n",
        ),
        NOW + 5,
    )
    .unwrap();
    assert_eq!(s.contacts[0].expires, NOW + 3600);
    // Same CSeq after cseq_delay: 400.
    let e = run(d, &p, &reg("sip:eve@x", "cid", 10, c), NOW + 30).unwrap_err();
    assert_eq!(e, RegError::InvCseq);
    // Another Call-ID with a lower CSeq is fine.
    run(d, &p, &reg("sip:eve@x", "other", 1, c), NOW + 31).unwrap();
}

#[test]
fn q_order_and_lookup() {
    let d = dom("t_q");
    let p = RegParams::default();
    let m = reg(
        "sip:frank@example.com",
        "q1",
        1,
        "Contact: <sip:low@1>;q=0.1, <sip:high@1>;q=0.9, <sip:none@1>\r\n",
    );
    let s = run(d, &p, &m, NOW).unwrap();
    assert_eq!(uris(&s.contacts), ["sip:high@1", "sip:low@1", "sip:none@1"]);
    let h = contact_header(&s.contacts, &p, NOW + 100);
    assert_eq!(
        h,
        "Contact: <sip:high@1>;q=0.9;expires=3500, <sip:low@1>;q=0.1;expires=3500, <sip:none@1>;expires=3500\r\n"
    );
    match select(d, "frank", Method::Invite, false, NOW) {
        Found::Contacts(v) => assert_eq!(uris(&v), ["sip:high@1", "sip:low@1", "sip:none@1"]),
        f => panic!("{f:?}"),
    }
    assert_eq!(
        select(d, "nobody", Method::Invite, false, NOW),
        Found::NotFound
    );
    assert_eq!(
        select(d, "frank", Method::Invite, false, NOW + 4000),
        Found::NoValid
    );
    assert!(registered(d, "frank", None, NOW));
    assert!(!registered(d, "frank", None, NOW + 4000));
    assert!(!registered(d, "nobody", None, NOW));
    // reg_callid_avp: only the bindings of that Call-ID count
    assert!(registered(d, "frank", Some("q1"), NOW));
    assert!(!registered(d, "frank", Some("other"), NOW));
}

#[test]
fn expires_randomised_within_range() {
    // No range: the value as asked.
    assert_eq!(randomize_expires(3600, 0, 12345), 3600);
    assert_eq!(randomize_expires(0, 50, 12345), 0);
    // 20 %: [2880, 3600], both ends reachable.
    assert_eq!(randomize_expires(3600, 20, 0), 2880);
    assert_eq!(randomize_expires(3600, 20, 720), 3600);
    for r in 0..5000u64 {
        let e = randomize_expires(3600, 20, r.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        assert!((2880..=3600).contains(&e), "{e}");
    }
    // Through save(): the Expires header with expires_range, default_expires with
    // default_expires_range; min_expires still applies after the randomisation.
    let d = dom("t_range");
    let p = RegParams {
        expires_range: 50,
        default_expires_range: 10,
        min_expires: 1900,
        ..RegParams::default()
    };
    let mut seen = std::collections::HashSet::new();
    for i in 0..200 {
        let m = reg(
            &format!("sip:r{i}@x"),
            "cid",
            1,
            "Contact: <sip:a@1>\r\nExpires: 3600\r\n",
        );
        let s = run(d, &p, &m, NOW).unwrap();
        let rel = s.contacts[0].expires - NOW;
        assert!((1900..=3600).contains(&rel), "{rel}");
        seen.insert(rel);
        let m = reg(&format!("sip:s{i}@x"), "cid", 1, "Contact: <sip:a@1>\r\n");
        let rel = run(d, &p, &m, NOW).unwrap().contacts[0].expires - NOW;
        assert!((3240..=3600).contains(&rel), "{rel}");
    }
    assert!(seen.len() > 10, "{seen:?}");
}

#[test]
fn max_contacts_503() {
    let d = dom("t_max");
    let p = RegParams {
        max_contacts: 2,
        retry_after: 30,
        ..RegParams::default()
    };
    run(
        d,
        &p,
        &reg("sip:g@x", "m", 1, "Contact: <sip:1@1>, <sip:2@1>\r\n"),
        NOW,
    )
    .unwrap();
    let e = run(
        d,
        &p,
        &reg("sip:g@x", "m", 2, "Contact: <sip:3@1>\r\n"),
        NOW,
    )
    .unwrap_err();
    assert_eq!(e, RegError::TooMany);
    let r = err_reply(e, &p);
    assert_eq!((r.code, r.reason), (503, "Service Unavailable"));
    assert_eq!(
        r.headers,
        "P-Registrar-Error: Too many registered contacts\r\nRetry-After: 30\r\n"
    );
    // Replacing one (delete + add in the same REGISTER) stays within the limit.
    run(
        d,
        &p,
        &reg(
            "sip:g@x",
            "m",
            3,
            "Contact: <sip:1@1>;expires=0, <sip:3@1>\r\n",
        ),
        NOW,
    )
    .unwrap();
    // New AOR with too many contacts at once: nothing stored.
    let e = run(
        d,
        &p,
        &reg(
            "sip:h@x",
            "m",
            1,
            "Contact: <sip:1@1>, <sip:2@1>, <sip:3@1>\r\n",
        ),
        NOW,
    );
    assert_eq!(e.unwrap_err(), RegError::TooMany);
    assert!(d.get_contacts(b"h").is_none());
}

#[test]
fn single_contact_flag_and_query() {
    let d = dom("t_single");
    let p = RegParams::default();
    run(
        d,
        &p,
        &reg("sip:i@x", "a", 1, "Contact: <sip:1@1>, <sip:2@1>\r\n"),
        NOW,
    )
    .unwrap();
    let inp = SaveInput {
        flags: SAVE_SINGLE_CONTACT,
        ..SaveInput::default()
    };
    let s = save(
        &reg("sip:i@x", "b", 1, "Contact: <sip:3@1>, <sip:4@1>\r\n"),
        d,
        &p,
        &inp,
        NOW,
    )
    .unwrap();
    assert_eq!(uris(&s.contacts), ["sip:3@1"]);
    // Query without Contact lists bindings, changes nothing.
    let s = run(d, &p, &reg("sip:i@x", "c", 1, ""), NOW).unwrap();
    assert_eq!(uris(&s.contacts), ["sip:3@1"]);
    // New AOR with only expires=0 contacts: nothing created.
    let s = run(
        d,
        &p,
        &reg("sip:j@x", "c", 1, "Contact: <sip:1@1>;expires=0\r\n"),
        NOW,
    )
    .unwrap();
    assert!(s.contacts.is_empty());
    assert!(d.get_contacts(b"j").is_none());
}

#[test]
fn aor_extraction_and_received() {
    let d = dom("t_aor");
    let mut p = RegParams::default();
    assert_eq!(
        extract_aor("sip:Al%69ce@Example.COM", &p, false).unwrap(),
        "alice"
    );
    assert_eq!(
        extract_aor("sip:Alice@Example.COM", &p, true).unwrap(),
        "alice@example.com"
    );
    p.case_sensitive = true;
    assert_eq!(
        extract_aor("sip:Alice@Example.COM", &p, false).unwrap(),
        "Alice"
    );
    p.case_sensitive = false;
    p.realm_prefix = "sip.".into();
    assert_eq!(
        extract_aor("sip:a@sip.example.com", &p, true).unwrap(),
        "a@example.com"
    );
    assert_eq!(
        extract_aor("sip:example.com", &p, false),
        Err(RegError::ToUser)
    );
    assert_eq!(extract_aor("garbage", &p, false), Err(RegError::AorParse));
    let p = RegParams::default();
    let inp = SaveInput {
        received: Some("sip:192.0.2.1:5999".into()),
        bflags: 0x8,
        ..SaveInput::default()
    };
    let s = save(
        &reg("sip:k@x", "r", 1, "Contact: <sip:k@10.1.1.1>\r\n"),
        d,
        &p,
        &inp,
        NOW,
    )
    .unwrap();
    assert_eq!(s.contacts[0].received, "sip:192.0.2.1:5999");
    assert_eq!(s.contacts[0].cflags, 0x8);
    assert_eq!(
        contact_header(&s.contacts, &p, NOW),
        "Contact: <sip:k@10.1.1.1>;expires=3600;received=\"sip:192.0.2.1:5999\"\r\n"
    );
}

#[test]
fn invalid_q_and_missing_headers() {
    let d = dom("t_bad");
    let p = RegParams::default();
    let e = run(
        d,
        &p,
        &reg("sip:l@x", "b", 1, "Contact: <sip:1@1>;q=1.5\r\n"),
        NOW,
    );
    assert_eq!(e.unwrap_err(), RegError::InvQ);
    let m = SipMsg::parse(
        b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.1.1.1;branch=z9hG4bK1\r\nFrom: <sip:l@x>;tag=1\r\nTo: <sip:l@x>\r\nCSeq: 1 REGISTER\r\nContact: <sip:1@1>\r\n\r\n",
    )
    .unwrap();
    assert_eq!(run(d, &p, &m, NOW).unwrap_err(), RegError::CidMiss);
}

#[test]
fn path_modes() {
    let d = dom("t_path");
    let mut p = RegParams {
        use_path: true,
        ..RegParams::default()
    };
    let ext = "Contact: <sip:m@1>\r\nPath: <sip:edge.example.com;lr;received=sip:9.9.9.9:7777>\r\n";
    // Strict mode without Supported: path -> 420.
    let e = run(d, &p, &reg("sip:m@x", "p", 1, ext), NOW).unwrap_err();
    assert_eq!(e, RegError::PathUnsup);
    let r = err_reply(e, &p);
    assert_eq!(r.code, 420);
    assert!(r.headers.contains("Unsupported: path\r\n"));
    let ext_s = format!("{ext}Supported: path\r\n");
    p.path_use_received = true;
    let s = run(d, &p, &reg("sip:m@x", "p", 2, &ext_s), NOW).unwrap();
    assert_eq!(
        s.path_echo.as_deref(),
        Some("<sip:edge.example.com;lr;received=sip:9.9.9.9:7777>")
    );
    assert_eq!(
        s.contacts[0].path,
        "<sip:edge.example.com;lr;received=sip:9.9.9.9:7777>"
    );
    assert_eq!(s.contacts[0].received, "sip:9.9.9.9:7777");
    assert!(
        ok_reply(&s, &p, NOW)
            .headers
            .ends_with("Path: <sip:edge.example.com;lr;received=sip:9.9.9.9:7777>\r\n")
    );
    // Mode 0: stored, not echoed.
    p.path_mode = 0;
    let s = run(d, &p, &reg("sip:m@x", "p", 3, ext), NOW).unwrap();
    assert_eq!(s.path_echo, None);
}

#[test]
fn q_parsing_and_printing() {
    assert_eq!(parse_q("0.5"), Some(50));
    assert_eq!(parse_q("1"), Some(100));
    assert_eq!(parse_q("1.000"), Some(100));
    assert_eq!(parse_q("0"), Some(0));
    assert_eq!(parse_q(".25"), Some(25));
    assert_eq!(parse_q("1.1"), None);
    assert_eq!(parse_q("x"), None);
    assert_eq!(parse_q(""), None);
    assert_eq!(q_str(50).as_deref(), Some("0.5"));
    assert_eq!(q_str(25).as_deref(), Some("0.25"));
    assert_eq!(q_str(100).as_deref(), Some("1"));
    assert_eq!(q_str(0).as_deref(), Some("0"));
    assert_eq!(q_str(-1), None);
}

#[test]
fn method_filtering() {
    let d = dom("t_meth");
    let p = RegParams::default();
    run(
        d,
        &p,
        &reg(
            "sip:n@x",
            "f",
            1,
            "Contact: <sip:n@1>\r\nAllow: INVITE, ACK, BYE\r\n",
        ),
        NOW,
    )
    .unwrap();
    assert!(matches!(
        select(d, "n", Method::Invite, true, NOW),
        Found::Contacts(_)
    ));
    assert_eq!(select(d, "n", Method::Message, true, NOW), Found::NoValid);
    assert!(matches!(
        select(d, "n", Method::Message, false, NOW),
        Found::Contacts(_)
    ));
}

// --- script glue ---------------------------------------------------------

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::module::FixedArg;
use openser_core::script::Ctx;

fn sarg(s: &str) -> Arg {
    Arg {
        value: ArgValue::Str(s.into()),
        span: Default::default(),
    }
}

fn invite(ruri: &str) -> SipMsg {
    let s = format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx\r\n\
         From: <sip:x@y>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: inv1\r\nCSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    SipMsg::parse(s.as_bytes()).expect("parse")
}

#[test]
fn fixups_register_domain_and_parse_flags() {
    dom("t_fix_dummy");
    let a = fixup_save(&[sarg("t_fix"), sarg("0x06")]).unwrap();
    assert!(usrloc::find_domain("t_fix").is_some());
    assert!(matches!(a[1], FixedArg::Int(6)));
    let a = fixup_save(&[
        sarg("t_fix"),
        Arg {
            value: ArgValue::Int(2),
            span: Default::default(),
        },
    ])
    .unwrap();
    assert!(matches!(a[1], FixedArg::Int(2)));
    assert!(fixup_save(&[sarg("t_fix"), sarg("zz")]).is_err());
    assert!(fixup_domain(&[sarg("")]).is_err());
    assert_eq!(parse_flags("3"), Some(3));
    assert_eq!(parse_avp_param("$avp(i:42)"), Ok(AvpId::Int(42)));
    assert_eq!(parse_avp_param("s:rcv"), Ok(AvpId::Str("rcv".into())));
}

#[test]
fn cmd_lookup_sets_ruri_dst_and_branches() {
    let d = dom("t_glue");
    let args = fixup_domain(&[sarg("t_glue")]).unwrap();
    let p = RegParams::default();
    let inp = SaveInput {
        received: Some("sip:198.51.100.7:5070".into()),
        bflags: 4,
        ..SaveInput::default()
    };
    let n = openser_core::clock::now();
    save(
        &reg(
            "sip:zed@example.com",
            "g1",
            1,
            "Contact: <sip:zed@10.0.0.1>;q=0.2, <sip:zed@10.0.0.2>;q=0.8\r\n",
        ),
        d,
        &p,
        &inp,
        n,
    )
    .unwrap();
    let mut m = invite("sip:zed@example.com");
    let mut ctx = Ctx::new(&mut m, openser_core::route::REQUEST_ROUTE);
    assert_eq!(cmd_registered(&mut ctx, &args), 1);
    assert_eq!(cmd_lookup(&mut ctx, &args), 1);
    assert_eq!(ctx.ruri_q, 80);
    assert_eq!(ctx.ruri_bflags, 4);
    assert_eq!(ctx.branches.len(), 1);
    assert_eq!(ctx.branches[0].uri, "sip:zed@10.0.0.1");
    assert_eq!(ctx.branches[0].q, 20);
    assert_eq!(
        ctx.branches[0].dst_uri.as_deref(),
        Some("sip:198.51.100.7:5070")
    );
    drop(ctx);
    assert_eq!(m.new_uri.as_deref(), Some("sip:zed@10.0.0.2"));
    assert_eq!(m.dst_uri.as_deref(), Some("sip:198.51.100.7:5070"));
    let mut m = invite("sip:nobody@example.com");
    let mut ctx = Ctx::new(&mut m, openser_core::route::REQUEST_ROUTE);
    assert_eq!(cmd_lookup(&mut ctx, &args), -1);
    assert_eq!(cmd_registered(&mut ctx, &args), -1);
}

#[test]
fn cmd_save_rc_stats_and_sock_flag() {
    dom("t_cmd");
    let st = &STATS;
    let (a0, r0) = (st.accepted.get(), st.rejected.get());
    let args = fixup_save(&[sarg("t_cmd"), sarg("2")]).unwrap();
    // Success: rc 1, no reply sent (flag 0x02), accepted_regs++.
    let mut m = reg(
        "sip:cmd@x",
        "k",
        1,
        "Contact: <sip:cmd@1.1.1.1>\r\nX-Sock: udp:10.9.9.9:5062\r\n",
    );
    let mut ctx = Ctx::new(&mut m, openser_core::route::REQUEST_ROUTE);
    P.sock_flag.set(3);
    P.sock_hdr_name.set("X-Sock");
    ctx.sflags = 1 << 3;
    assert_eq!(cmd_save(&mut ctx, &args), 1);
    P.sock_flag.set(-1);
    P.sock_hdr_name.set("");
    let c = usrloc::find_domain("t_cmd")
        .unwrap()
        .get_contacts(b"cmd")
        .unwrap();
    assert_eq!(c[0].socket, "udp:10.9.9.9:5062");
    // Error: rc 0 (script stops) even without a reply, rejected_regs++.
    let mut m = reg("sip:cmd@x", "k", 1, "Contact: *\r\n");
    let mut ctx = Ctx::new(&mut m, openser_core::route::REQUEST_ROUTE);
    assert_eq!(cmd_save(&mut ctx, &args), 0);
    assert!(st.accepted.get() > a0);
    assert!(st.rejected.get() > r0);
}

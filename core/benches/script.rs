//! Script engine benchmark: the seed hello-world main route on a typical INVITE.
//!
//! The module functions of the seed are replaced by core actions of similar cost
//! shape (modules are benchmarked separately): `mf_process_maxfwd_header("10")` ->
//! a `$hdr(Max-Forwards)` compare, `record_route()`/`append_hf()` -> `setflag()`,
//! `loose_route()` -> `isflagset()`, `lookup("location")` -> `isdsturiset()` plus a
//! `$var` assignment, `t_relay()` -> `isflagset()`; `sl_send_reply` branches are not
//! taken on this INVITE. Everything else (msg:len/max_len, method ==, uri == myself
//! twice, route(1), exit) is as in the seed.

use criterion::{Criterion, black_box};
use openser_core::cfg::ast::RouteKind;
use openser_core::parser::{RcvInfo, SipMsg};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::{Ctx, Script, fixup::fixup_with, run_route};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 127\r\n\
\r\n\
v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\n";

const HELLO: &str = r#"
route{
    if ($hdr(Max-Forwards) == "0") {
        exit;
    };
    if (msg:len >=  max_len ) {
        exit;
    };
    if (method=="REGISTER") {
        setflag(1);
    };
    if (isflagset(5)) {
        setflag(2);
        route(1);
    };
    if (!uri==myself) {
        setflag(3);
        route(1);
    };
    if (uri==myself) {
        if (!isdsturiset()) {
            $var(found) = 1;
        };
        setflag(4);
    };
    route(1);
}
route[1] {
    if (!isflagset(6)) {
        setflag(7);
    };
    exit;
}
"#;

fn script() -> &'static Script {
    let cfg = openser_core::cfg::parse_str("hello.cfg", HELLO).unwrap();
    Box::leak(Box::new(fixup_with(&cfg, &[], &[], false).unwrap()))
}

fn benches() {
    let s = script();
    let mut c = Criterion::default().configure_from_args();
    let mut msg = SipMsg::new(INVITE, RcvInfo::default()).unwrap();
    c.bench_function("script: hello-world route on INVITE (parsed msg)", |b| {
        b.iter(|| {
            let mut ctx = Ctx::with_script(&mut msg, REQUEST_ROUTE, s);
            black_box(run_route(RouteKind::Request, 0, &mut ctx))
        })
    });
    c.bench_function("script: parse INVITE + hello-world route", |b| {
        b.iter(|| {
            let mut m = SipMsg::new(black_box(INVITE), RcvInfo::default()).unwrap();
            let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
            black_box(run_route(RouteKind::Request, 0, &mut ctx))
        })
    });
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! Parser benchmarks: a typical INVITE with the mandatory headers parsed, and a full
//! REGISTER with every header parsed; plus building a forwarded request and a reply.

use criterion::{Criterion, black_box, criterion_group};
use openser_core::msg::{ViaParams, build_local_reply, build_request};
use openser_core::parser::{Proto, RcvInfo, SipMsg};

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

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKreg2;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=reg1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: reg-abc@192.0.2.20\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:alice@192.0.2.20:5060>;q=0.7;expires=3600, \"Mobile\" <sip:alice@198.51.100.1>;q=0.1\r\n\
Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:example.com\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", qop=auth, nc=00000001\r\n\
Expires: 1800\r\n\
Supported: path, gruu\r\n\
User-Agent: Softphone Beta1.5\r\n\
Allow: INVITE, ACK, CANCEL, BYE, REGISTER\r\n\
Content-Length: 0\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    let rcv = RcvInfo::default();
    c.bench_function("invite_mandatory", |b| {
        b.iter(|| {
            let m = SipMsg::new(black_box(INVITE), rcv).unwrap();
            m.via1().unwrap();
            m.from().unwrap();
            m.to().unwrap();
            m.callid().unwrap();
            m.cseq().unwrap();
            black_box(&m);
        })
    });
    c.bench_function("register_all_headers", |b| {
        b.iter(|| {
            let m = SipMsg::new(black_box(REGISTER), rcv).unwrap();
            m.parse_all().unwrap();
            m.check_mandatory().unwrap();
            m.orig_ruri_parsed().unwrap();
            black_box(&m);
        })
    });
    let via = ViaParams {
        host: "192.0.2.1",
        port: 5060,
        proto: Proto::Udp,
        branch: "z9hG4bKabcdef.0",
        rport: false,
        extra_params: "",
    };
    let m = SipMsg::new(INVITE, rcv).unwrap();
    m.via1().unwrap();
    c.bench_function("build_request_invite", |b| {
        b.iter(|| black_box(build_request(&m, &via, &[]).unwrap()))
    });
    c.bench_function("build_local_reply_404", |b| {
        b.iter(|| {
            black_box(
                build_local_reply(&m, 404, "Not Found", Some("tag"), &[], b"", Some("OpenSER"))
                    .unwrap(),
            )
        })
    });
}

criterion_group!(benches, bench);

/// `PARSE_LOOP=N` runs N INVITE mandatory parses (or, with `PARSE_MSG=register`, N full
/// REGISTER parses) and exits, for callgrind or `perf stat`: instructions per message are
/// steadier than wall time on a shared VM.
fn main() {
    if let Some(n) = std::env::var("PARSE_LOOP")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let rcv = RcvInfo::default();
        let register = std::env::var("PARSE_MSG").is_ok_and(|v| v == "register");
        for _ in 0..n {
            if register {
                let m = SipMsg::new(black_box(REGISTER), rcv).unwrap();
                m.parse_all().unwrap();
                m.check_mandatory().unwrap();
                m.orig_ruri_parsed().unwrap();
                black_box(&m);
                continue;
            }
            let m = SipMsg::new(black_box(INVITE), rcv).unwrap();
            m.via1().unwrap();
            m.from().unwrap();
            m.to().unwrap();
            m.callid().unwrap();
            m.cseq().unwrap();
            black_box(&m);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

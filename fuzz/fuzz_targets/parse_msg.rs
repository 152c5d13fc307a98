#![no_main]
//! Parse a message, force every typed header, then build a forwarded request, a local
//! reply and a forwarded reply from it. Nothing may panic.

use libfuzzer_sys::fuzz_target;
use openser_core::msg::{
    ViaParams, build_local_reply, build_reply_forward, build_request, is_sl_ack,
    next_via_destination, reply_destination, sl_totag,
};
use openser_core::parser::{HdrType, Proto, RcvInfo, SipMsg};

fuzz_target!(|data: &[u8]| {
    let _ = openser_core::parser::stream_frame_len(data);
    let Ok(mut msg) = SipMsg::new(data, RcvInfo::default()) else {
        return;
    };
    let _ = msg.parse_all();
    let _ = msg.check_mandatory();
    if let Ok(vias) = msg.vias() {
        for v in vias {
            let _ = v.params(msg.buf());
            let _ = v.param(msg.buf(), "branch");
        }
    }
    for na in [msg.from(), msg.to()].into_iter().flatten() {
        let _ = na.params(msg.buf());
    }
    let _ = msg.via2();
    let _ = msg.contacts();
    let _ = msg.routes(HdrType::Route);
    let _ = msg.routes(HdrType::RecordRoute);
    let _ = msg.auth(HdrType::Authorization);
    let _ = msg.expires();
    let _ = msg.max_forwards();
    let _ = msg.orig_ruri_parsed();
    let _ = msg.header("x");
    let _ = msg.method_str();
    let via = ViaParams {
        host: "192.0.2.1",
        port: 5060,
        proto: Proto::Tcp,
        branch: "z9hG4bK1",
        rport: true,
        extra_params: "",
    };
    if data.len() > 3 && data[0] & 1 == 1 {
        msg.add_header_after_last("X-F: 1");
        msg.add_record_route("Record-Route: <sip:192.0.2.1;lr>");
        msg.set_body(b"new body");
        msg.new_uri = Some("sip:x@y".into());
        msg.add_rport = true;
        if let Some(i) = msg.first_of(HdrType::Contact) {
            msg.remove_header(i);
        }
    }
    if let Ok(out) = build_request(&msg, &via, &["X-E: 2"]) {
        let _ = SipMsg::new(&out, RcvInfo::default()).map(|m| m.parse_all());
    }
    let _ = build_local_reply(
        &msg,
        404,
        "Not Found",
        Some(&sl_totag("0123", &msg)),
        &["A: b"],
        b"body",
        Some("s"),
    );
    let _ = build_reply_forward(&msg);
    let _ = reply_destination(&msg);
    let _ = next_via_destination(&msg);
    let _ = is_sl_ack("0123", &msg);
});

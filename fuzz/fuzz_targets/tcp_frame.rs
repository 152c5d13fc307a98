#![no_main]
//! The stream framer never panics and its answers are consistent: a message or a
//! keep-alive is a non-empty prefix of the input no longer than the limit, a header
//! length never exceeds the input, and the buffer is consumed frame by frame to the
//! end or to an incomplete / refused message.

use libfuzzer_sys::fuzz_target;
use openser_core::transport::tcp_frame::{Frame, next_frame};

fuzz_target!(|data: &[u8]| {
    // first byte: the limit (small limits reach the too-big paths) and tcp_accept_no_cl
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let max = if ctl & 0x80 != 0 {
        65535
    } else {
        16 + usize::from(ctl & 0x7f) * 8
    };
    let accept_no_cl = ctl & 1 != 0;
    loop {
        match next_frame(rest, max, accept_no_cl) {
            Frame::Msg { len } => {
                assert!(len > 0 && len <= rest.len() && len <= max);
                rest = &rest[len..];
            }
            Frame::KeepAlive { len, .. } => {
                assert!(len > 0 && len <= rest.len());
                rest = &rest[len..];
            }
            Frame::Bad { hdr_len, .. } | Frame::TooBig { hdr_len } => {
                assert!(hdr_len <= rest.len());
                break;
            }
            Frame::Incomplete => break,
        }
        if rest.is_empty() {
            break;
        }
    }
});

//! SIP message parser: zero-copy first line, header index, typed headers on demand.
//!
//! A [`SipMsg`] owns one copy of the received bytes and stores every position as a
//! [`Span`] (u32 offset + length) into that buffer, so the message has no lifetime and
//! moves freely. Typed headers (Via, To/From, CSeq, Contact, digest credentials, ...)
//! are parsed the first time they are asked for and cached per header field
//! (OpenSER's `parse_headers(flags)` laziness). No function here panics on input.

pub mod hdr;
pub mod msg;
pub mod scan;
pub mod typed;
pub mod uri;

pub use hdr::HdrType;
pub use msg::{
    AuthMark, BUF_SIZE, FirstLine, HdrField, Method, ParseError, ParseErrorKind, Parsed, Proto,
    RcvInfo, SipMsg, stream_frame_len,
};
pub use scan::{Param, Params, Span, parse_params_str};
pub use typed::{CSeq, ContactList, ContentType, Digest, Event, NameAddr, Via, ViaList};
pub use uri::{Uri, UriError, UriRef, UriScheme, is_e164};

/// A parsed INVITE from `sip:alice@a.example` to `sip:bob@b.example` (the R-URI is the
/// callee's), without body: the plain call the modules' unit tests take users and
/// domains from (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub fn test_invite() -> SipMsg {
    SipMsg::parse(
        b"INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\
From: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: x\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("the test INVITE parses")
}

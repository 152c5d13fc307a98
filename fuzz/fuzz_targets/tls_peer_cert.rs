#![no_main]
//! What tcp main reads from a TLS peer's certificate (outside input: any bytes a
//! client presents, parsed by x509-parser and turned into the tlsops fields) never
//! panics, and the session summary it passes to the receivers decodes back to itself;
//! decoding arbitrary bytes as a summary never panics either.

use libfuzzer_sys::fuzz_target;
use openser_core::transport::tls::TlsInfo;

fuzz_target!(|data: &[u8]| {
    let mut t = TlsInfo::default();
    t.set_peer_cert(data, true);
    let enc = t.encode();
    if let Some(back) = TlsInfo::decode(&enc) {
        // fields longer than the encoding's limit are cut; the rest round-trips
        assert_eq!(back.peer_cert, t.peer_cert);
        assert_eq!(back.peer_expired, t.peer_expired);
    } else {
        panic!("a summary did not decode");
    }
    let _ = TlsInfo::decode(data);
});

#![no_main]
//! The XML-RPC call parser of mi_xmlrpc never panics, and what it accepts has a
//! non-empty method name; the MI argument-line parser shared by the FIFO and datagram
//! transports never panics either.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = mi_xmlrpc::xmlrpc::parse_call(data) {
        assert!(!c.method.trim().is_empty());
    }
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    if let Some(first) = lines.first() {
        let _ = openser_core::mi::parse_first_line(first);
    }
    let _ = openser_core::mi::parse_args(&lines);
});

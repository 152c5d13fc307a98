#![no_main]
//! presence_xml's readers of outside XML must never panic: a PUBLISHed PIDF body
//! (checked, and composed with a valid document on either side), and a pres-rules
//! document evaluated for a watcher. A composed body of documents that pass the check
//! passes it too.

use libfuzzer_sys::fuzz_target;

const BASE: &str = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:bob@example.com"><tuple id="t0"><status><basic>open</basic></status></tuple></presence>"#;

fuzz_target!(|data: &[u8]| {
    let ok = presence_xml::xml::check_pidf(data).is_ok();
    let docs = [BASE.as_bytes().to_vec(), data.to_vec()];
    if let Some(out) = presence_xml::xml::compose("sip:bob@example.com", &docs) {
        if ok {
            assert!(presence_xml::xml::check_pidf(&out).is_ok());
        }
    }
    let _ = presence_xml::xml::compose("sip:bob@example.com", &[data.to_vec()]);
    let s = String::from_utf8_lossy(data);
    let _ = presence_xml::xml::evaluate(&s, "sip:alice@example.com");
});

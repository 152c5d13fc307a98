#![no_main]
//! uac's stored-From decoder (the Record-Route parameter of `uac_replace_from`, read
//! back from in-dialog requests) must never panic on a value from the network, and a
//! stored pair must give each URI back from the other.

use libfuzzer_sys::fuzz_target;
use uac::from::{MAX_URI, decode, restore, store};

fuzz_target!(|data: &[u8]| {
    // as a received parameter value, against some URI of the message
    let (value, present) = data.split_at(data.len() / 2);
    let _ = decode(value);
    let _ = restore(value, present, b"pw");
    // as two URIs (no NUL bytes: URIs have none)
    let (a, b) = data.split_at(data.len() / 3);
    if a.is_empty() || b.is_empty() || a.contains(&0) || b.contains(&0) || data.len() > MAX_URI {
        return;
    }
    let v = store(a, b, b"k").expect("store");
    assert_eq!(restore(v.as_bytes(), a, b"k").expect("restore new"), b);
    assert_eq!(restore(v.as_bytes(), b, b"k").expect("restore old"), a);
});

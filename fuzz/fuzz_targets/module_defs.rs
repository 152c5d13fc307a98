#![no_main]
//! The readers of the counters, mqueue, mtree and pipelimit modules must never panic:
//! the `mqueue` and `mtree` definitions and `script_counter` declarations, the
//! /proc/stat and /proc/net/udp texts pipelimit reads for its loads, and mtree's tree
//! image and prefix matching. An image decoded and written again decodes to the same
//! trees.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = mqueue::parse_def(&s);
    let _ = mtree::parse_def(&s);
    let _ = counters::parse_declaration(&s);
    let mut prev = None;
    let _ = pipelimit::engine::cpu_load(&s, &mut prev);
    let _ = pipelimit::engine::cpu_load(&s, &mut prev);
    let _ = pipelimit::engine::udp_queued(&s);
    let trees = mtree::decode(data);
    assert_eq!(mtree::decode(&mtree::encode(&trees)), trees);
    let mid = s
        .char_indices()
        .nth(s.chars().count() / 2)
        .map_or(s.len(), |(i, _)| i);
    let (key, chars) = s.split_at(mid);
    for t in trees.values() {
        let _ = t.matches(key, chars);
    }
});

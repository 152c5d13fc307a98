#![no_main]
//! textopsx's `fnmatch` matches values taken from messages (headers, URIs) against a
//! shell pattern: it must never panic, whatever either side holds, and a pattern
//! without wildcards matches exactly itself.

use libfuzzer_sys::fuzz_target;
use textopsx::fnmatch;

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    let s = String::from_utf8_lossy(data);
    let cut = s.char_indices().nth(s.chars().count() / 3).map_or(0, |(i, _)| i);
    let (pat, text) = s.split_at(cut);
    let _ = fnmatch(pat, text);
    let _ = fnmatch(text, pat);
    if !text.contains(['*', '?', '[', '\\']) {
        assert!(fnmatch(text, text));
    }
});

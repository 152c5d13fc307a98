#![no_main]
//! dialog's readers of outside text must never panic: the `did` Route parameter of an
//! in-dialog request (`<hex>.<hex>`) and the `vars` column read back from the database
//! (`name=value;`, `%`-escaped). A parsed `did` prints back to itself, and variables
//! written and read again are the ones read.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Some((e, i)) = dialog::parse_did(&s) {
        assert_eq!(dialog::parse_did(&format!("{e:x}.{i:x}")), Some((e, i)));
    }
    let vars = dialog::vars_parse(&s);
    assert_eq!(dialog::vars_parse(&dialog::vars_text(&vars)), vars);
});

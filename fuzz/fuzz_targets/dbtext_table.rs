//! dbtext's table file parser (files an operator or a script edits) and the parser of
//! DATETIME text the SQL drivers read back: no panic on any input; a parsed table
//! prints to a file that parses back to the same table.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = openser_core::db::sql::parse_local_datetime(text);
    if let Ok(t) = db_text::parse_table("fuzz", text) {
        let again = db_text::parse_table("fuzz", &db_text::print_table(&t)).expect("printed table parses");
        // NaN never equals itself; compare the printed forms instead.
        assert_eq!(db_text::print_table(&again), db_text::print_table(&t));
    }
});

#![no_main]
//! Script transformations on values taken from the outside (header values, URIs):
//! every `{s.*}`, `{uri.*}`, `{param.*}`, `{nameaddr.*}`, `{tobody.*}` applied to the
//! input (and chained in pairs) never panics.

use libfuzzer_sys::fuzz_target;
use openser_core::cfg::pv::{TrParam, Transform};
use openser_core::script::transform::apply_all;
use openser_core::script::{Ctx, PvValue};

const OPS: &[(&str, &str, &[TrParam])] = &[
    ("s", "len", &[]),
    ("s", "int", &[]),
    ("s", "md5", &[]),
    ("s", "tolower", &[]),
    ("s", "toupper", &[]),
    ("s", "encode.hexa", &[]),
    ("s", "decode.hexa", &[]),
    ("s", "escape.common", &[]),
    ("s", "unescape.common", &[]),
    ("s", "escape.user", &[]),
    ("s", "unescape.user", &[]),
    ("s", "prefixes", &[]),
    ("s", "prefixes.quoted", &[TrParam::Int(3)]),
    ("s", "strip", &[TrParam::Int(2)]),
    ("s", "striptail", &[TrParam::Int(2)]),
    ("s", "substr", &[TrParam::Int(1), TrParam::Int(2)]),
    ("s", "substr", &[TrParam::Int(-3), TrParam::Int(0)]),
    ("uri", "user", &[]),
    ("uri", "host", &[]),
    ("uri", "params", &[]),
    ("uri", "scheme", &[]),
    ("uri", "transport", &[]),
    ("param", "count", &[]),
    ("param", "valueat", &[TrParam::Int(-1)]),
    ("nameaddr", "name", &[]),
    ("nameaddr", "uri", &[]),
    ("nameaddr", "len", &[]),
    ("tobody", "display", &[]),
    ("tobody", "tag", &[]),
    ("tobody", "user", &[]),
    ("tobody", "host", &[]),
    ("tobody", "params", &[]),
];

fn tr(i: usize) -> Transform {
    let (class, op, params) = OPS[i % OPS.len()];
    Transform {
        class: class.to_string(),
        op: op.to_string(),
        params: params.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let Some(mut m) = openser_core::script::fake_msg() else {
        return;
    };
    let mut ctx = Ctx::new(&mut m, openser_core::route::REQUEST_ROUTE);
    for i in 0..OPS.len() {
        let _ = apply_all(&mut ctx, PvValue::Str(s.to_string()), &[tr(i)]);
    }
    let chain = [tr(sel as usize), tr(sel as usize / 7 + 1)];
    let _ = apply_all(&mut ctx, PvValue::Str(s.to_string()), &chain);
});

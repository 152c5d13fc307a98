//! maxfwd: Max-Forwards processing (reference §8.4).
//!
//! `mf_process_maxfwd_header("N")`: no header → add `Max-Forwards: N` (rc 2); value > 0 →
//! decrement it in place (capped to `max_limit`, rc 1); 0 → rc −1; error → rc −2.
//! `is_maxfwd_lt("N")`: 1 if the value is < N, −1 if ≥ N, −2 no header, −3 error.

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::module::{CmdExport, FixedArg, IntParam, ModuleExports, Param};
use openser_core::parser::{HdrType, SipMsg};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "maxfwd",
    params: &[Param::int_range(
        "max_limit",
        &MAX_LIMIT,
        1,
        MAXFWD_UPPER_LIMIT as i64,
    )],
    cmds: &[
        CmdExport::new(
            "mf_process_maxfwd_header",
            1,
            1,
            REQUEST_ROUTE,
            cmd_mf_process_maxfwd_header,
        )
        .fixup(fixup_maxfwd),
        CmdExport::new(
            "is_maxfwd_lt",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE,
            cmd_is_maxfwd_lt,
        )
        .fixup(fixup_maxfwd),
    ],
    ..ModuleExports::EMPTY
};

/// Upper bound of `max_limit` (OpenSER's MAXFWD_UPPER_LIMIT).
pub const MAXFWD_UPPER_LIMIT: u32 = 256;

static MAX_LIMIT: IntParam = IntParam::new(MAXFWD_UPPER_LIMIT as i64);

/// The argument: a number 0..255.
fn fixup_maxfwd(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let Some(a) = args.first() else {
        return Err("missing argument".into());
    };
    let n = match &a.value {
        ArgValue::Int(n) => *n,
        ArgValue::Str(s) | ArgValue::Ident(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("invalid MAXFWD number '{s}'"))?,
        _ => return Err("invalid MAXFWD number".into()),
    };
    if !(0..=255).contains(&n) {
        return Err(format!("invalid MAXFWD number <{n}> [0,255]"));
    }
    Ok(vec![FixedArg::Int(n)])
}

/// A Max-Forwards value that is not a number 0..65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMaxFwd;

/// The Max-Forwards value and header index: Ok(None) if absent, Err on a bad value
/// (OpenSER parses it with `str2s`: digits only, at most 65535).
pub fn maxfwd_value(msg: &SipMsg) -> Result<Option<(u32, usize)>, BadMaxFwd> {
    let Some(i) = msg.first_of(HdrType::MaxForwards) else {
        return Ok(None);
    };
    let body = msg.s(msg.hdrs()[i].body).trim();
    if body.is_empty() || body.len() > 5 || !body.bytes().all(|c| c.is_ascii_digit()) {
        return Err(BadMaxFwd);
    }
    match body.parse::<u32>() {
        Ok(v) if v <= 65535 => Ok(Some((v, i))),
        _ => Err(BadMaxFwd),
    }
}

/// `mf_process_maxfwd_header(n)` on `msg` with `max_limit`.
pub fn process_maxfwd(msg: &mut SipMsg, n: u32, max_limit: u32) -> i32 {
    match maxfwd_value(msg) {
        Err(BadMaxFwd) => {
            openser_core::log_err!("unable to parse the max forwards number !");
            -2
        }
        Ok(None) => {
            msg.add_header_before_first(&format!("Max-Forwards: {n}\r\n"));
            2
        }
        Ok(Some((0, _))) => -1,
        Ok(Some((mut v, i))) => {
            if v > max_limit {
                openser_core::log_dbg!("value {v} decreased to {max_limit}");
                v = max_limit + 1;
            }
            // Rewrite in place as OpenSER does: same width, left-padded with spaces.
            let sp = msg.hdrs()[i].body;
            let old = msg.s(sp);
            let lead = old.len() - old.trim_start().len();
            let width = old.trim().len();
            let start = sp.start as usize + lead;
            msg.lumps
                .replace(start, width, padded(v - 1, width).as_slice());
            1
        }
    }
}

/// `n` in decimal, right-aligned in `width` spaces (wider if it needs more digits).
fn padded(n: u32, width: usize) -> smallvec::SmallVec<[u8; 16]> {
    let mut buf = [0u8; 20];
    let digits = openser_core::msg::text::dec_digits(u64::from(n), &mut buf);
    let mut out = smallvec::SmallVec::new();
    out.extend(std::iter::repeat_n(
        b' ',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
    out
}

/// `is_maxfwd_lt(limit)` on `msg`.
pub fn maxfwd_lt(msg: &SipMsg, limit: u32) -> i32 {
    match maxfwd_value(msg) {
        Err(BadMaxFwd) => -3,
        Ok(None) => -2,
        Ok(Some((v, _))) if v >= limit => -1,
        Ok(Some(_)) => 1,
    }
}

fn arg_n(args: &[FixedArg]) -> u32 {
    match args.first() {
        Some(FixedArg::Int(n)) => (*n).clamp(0, 255) as u32,
        _ => 0,
    }
}

fn cmd_mf_process_maxfwd_header(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    if !ctx.msg.is_request() {
        return -2;
    }
    process_maxfwd(ctx.msg, arg_n(args), MAX_LIMIT.get_u32())
}

fn cmd_is_maxfwd_lt(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    maxfwd_lt(ctx.msg, arg_n(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_keeps_the_width() {
        assert_eq!(padded(69, 2).as_slice(), b"69");
        assert_eq!(padded(9, 2).as_slice(), b" 9");
        assert_eq!(padded(0, 4).as_slice(), b"   0");
        assert_eq!(padded(255, 1).as_slice(), b"255");
        assert_eq!(padded(4_294_967_295, 0).as_slice(), b"4294967295");
    }

    fn req(mf: Option<&str>) -> SipMsg {
        let h = mf
            .map(|v| format!("Max-Forwards: {v}\r\n"))
            .unwrap_or_default();
        SipMsg::parse(
            format!(
                "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\n{h}From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn out(m: &SipMsg) -> String {
        String::from_utf8(m.lumps.apply(m.buf())).unwrap()
    }

    #[test]
    fn process() {
        let mut m = req(None);
        assert_eq!(process_maxfwd(&mut m, 10, 256), 2);
        assert!(out(&m).contains("SIP/2.0\r\nMax-Forwards: 10\r\nVia:"));
        let mut m = req(Some("70"));
        assert_eq!(process_maxfwd(&mut m, 10, 256), 1);
        assert!(out(&m).contains("Max-Forwards: 69\r\n"));
        let mut m = req(Some("10"));
        assert_eq!(process_maxfwd(&mut m, 10, 256), 1);
        assert!(out(&m).contains("Max-Forwards:  9\r\n"));
        let mut m = req(Some("1000"));
        assert_eq!(process_maxfwd(&mut m, 10, 16), 1);
        assert!(out(&m).contains("Max-Forwards:   16\r\n"));
        let mut m = req(Some("0"));
        assert_eq!(process_maxfwd(&mut m, 10, 256), -1);
        let mut m = req(Some("x1"));
        assert_eq!(process_maxfwd(&mut m, 10, 256), -2);
        let mut m = req(Some("99999"));
        assert_eq!(process_maxfwd(&mut m, 10, 256), -2);
    }

    #[test]
    fn lt() {
        assert_eq!(maxfwd_lt(&req(Some("3")), 5), 1);
        assert_eq!(maxfwd_lt(&req(Some("5")), 5), -1);
        assert_eq!(maxfwd_lt(&req(None), 5), -2);
        assert_eq!(maxfwd_lt(&req(Some("a")), 5), -3);
    }

    #[test]
    fn params() {
        use openser_core::module::ModParamValue;
        let set_max_limit =
            |v: &ModParamValue| EXPORTS.param("max_limit").unwrap().set("maxfwd", v);
        assert!(set_max_limit(&ModParamValue::Int(0)).is_err());
        assert!(set_max_limit(&ModParamValue::Int(257)).is_err());
        assert!(set_max_limit(&ModParamValue::Str("1".into())).is_err());
    }
}

//! xlog: logging with pseudo-variables (reference §8.8).
//!
//! `xlog([level,] "format")` expands the format (parsed at start-up) and logs it at
//! `level` (default L_ERR; only the third character of `L_xxx` counts); `xdbg(format)`
//! logs at L_DBG. The text is passed on as is (xlog adds no newline). `$C<fg><bg>`
//! gives ANSI colour escapes when logging to stderr or with `force_color`.
//!
//! SIP Router 3.1 additions: `xlogl([level,] "format")` and `xdbgl("format")` are
//! `xlog`/`xdbg` with the configuration file and line of the call in front of the text
//! (`file:line: `), taken at start-up.

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{FmtPart, PvParam, PvSpec, parse_format};
use openser_core::log::{self, L_DBG, L_ERR};
use openser_core::module::{BoolParam, CmdExport, FixedArg, IntParam, ModuleExports, Param};
use openser_core::route::{BRANCH_ROUTE, ERROR_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::pv::color_escape;
use openser_core::script::{Ctx, PvFormat};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "xlog",
    params: &[
        Param::int_range("buf_size", &BUF_SIZE, 1, i32::MAX as i64),
        Param::bool("force_color", &FORCE_COLOR),
    ],
    cmds: &[
        CmdExport::new("xlog", 1, 2, ROUTES, cmd_xlog).fixup(fixup_xlog),
        CmdExport::new("xdbg", 1, 1, ROUTES, cmd_xlog).fixup(fixup_xdbg),
        CmdExport::new("xlogl", 1, 2, ROUTES, cmd_xlog).fixup(fixup_xlogl),
        CmdExport::new("xdbgl", 1, 1, ROUTES, cmd_xlog).fixup(fixup_xdbgl),
    ],
    ..ModuleExports::EMPTY
};

const ROUTES: u32 = REQUEST_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE | ERROR_ROUTE;

static BUF_SIZE: IntParam = IntParam::new(4096);
static FORCE_COLOR: BoolParam = BoolParam::new(false);

use openser_core::script::fixup::string_arg as arg_text;

/// The level of `xlog(level, ...)`: `L_ALERT`..`L_DBG`, only the third character
/// counts (a number is accepted too).
pub fn parse_xlog_level(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Ok(n);
    }
    if t.len() < 3 {
        return Err(format!("wrong log level '{s}'"));
    }
    // OpenSER looks at the third character only, whatever the first two are.
    log::parse_level(&format!("L_{}", t.get(2..).unwrap_or("")))
        .ok_or_else(|| format!("unknown log level '{s}'"))
}

fn fixup_xlog(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let (level, fmt) = match args {
        [f] => (L_ERR, f),
        [l, f] => (parse_xlog_level(&arg_text(l)?)?, f),
        _ => return Err("xlog takes 1 or 2 arguments".into()),
    };
    Ok(vec![
        FixedArg::Int(level as i64),
        FixedArg::Fmt(parse_format(&arg_text(fmt)?)?),
    ])
}

fn fixup_xdbg(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let f = args.first().ok_or("missing format")?;
    Ok(vec![
        FixedArg::Int(L_DBG as i64),
        FixedArg::Fmt(parse_format(&arg_text(f)?)?),
    ])
}

/// `file:line: ` of the call whose first argument is `a`.
fn call_site(a: &Arg) -> String {
    let file = openser_core::script::fixup::source_name(a.span.file);
    format!("{}:{}: ", file.as_deref().unwrap_or("?"), a.span.line)
}

/// Put the call site in front of the fixed-up format (a literal: no cost per call).
fn with_site(mut fixed: Vec<FixedArg>, a: &Arg) -> Vec<FixedArg> {
    if let Some(FixedArg::Fmt(f)) = fixed.get_mut(1) {
        f.insert(0, FmtPart::Lit(call_site(a)));
    }
    fixed
}

fn fixup_xlogl(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let first = args.first().ok_or("missing format")?;
    Ok(with_site(fixup_xlog(args)?, first))
}

fn fixup_xdbgl(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let first = args.first().ok_or("missing format")?;
    Ok(with_site(fixup_xdbg(args)?, first))
}

fn colors_on() -> bool {
    log::to_stderr() || FORCE_COLOR.get()
}

fn color_of(spec: &PvSpec) -> Option<(char, char)> {
    if spec.name != "C" {
        return None;
    }
    match &spec.param {
        Some(PvParam::Color { fg, bg }) => Some((*fg, *bg)),
        _ => Some(('x', 'x')),
    }
}

/// Expand `fmt` for `ctx` (colours per the output), truncated to `buf_size` bytes.
pub fn xlog_text(ctx: &mut Ctx, fmt: &PvFormat) -> String {
    let mut out = String::new();
    let colors = colors_on();
    for p in fmt {
        match p {
            FmtPart::Lit(s) => out.push_str(s),
            FmtPart::Pv(spec) => match color_of(spec) {
                Some((fg, bg)) => {
                    if colors {
                        out.push_str(&color_escape(fg, bg));
                    }
                }
                None => ctx.get_pv(spec).push_to(&mut out),
            },
        }
    }
    let max = BUF_SIZE.get() as usize;
    if out.len() > max {
        let mut cut = max;
        while cut > 0 && !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

fn cmd_xlog(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let level = match args.first() {
        Some(FixedArg::Int(l)) => *l as i32,
        _ => L_ERR,
    };
    if !log::enabled(level) {
        return 1;
    }
    let Some(FixedArg::Fmt(fmt)) = args.get(1) else {
        return -1;
    };
    let text = xlog_text(ctx, fmt);
    log::emit(level, &text);
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use openser_core::cfg::ast::ArgValue;
    use openser_core::log::{L_ALERT, L_INFO, L_NOTICE, L_WARN};
    use openser_core::parser::SipMsg;

    #[test]
    fn levels() {
        assert_eq!(parse_xlog_level("L_ERR"), Ok(L_ERR));
        assert_eq!(parse_xlog_level("L_WARN"), Ok(L_WARN));
        assert_eq!(parse_xlog_level("L_NOTICE"), Ok(L_NOTICE));
        assert_eq!(parse_xlog_level("L_INFO"), Ok(L_INFO));
        assert_eq!(parse_xlog_level("XXA"), Ok(L_ALERT));
        assert_eq!(parse_xlog_level("L_DBG"), Ok(L_DBG));
        assert!(parse_xlog_level("L_").is_err());
        assert!(parse_xlog_level("L_Q").is_err());
    }

    #[test]
    fn colors() {
        assert_eq!(color_escape('r', 'x'), "\x1b[0;31;49m");
        assert_eq!(color_escape('G', 'b'), "\x1b[1;32;44m");
        assert_eq!(color_escape('x', 'x'), "\x1b[0;39;49m");
        assert_eq!(
            color_escape('q', 'x'),
            "",
            "unknown colour: nothing, as 1.2"
        );
    }

    #[test]
    fn format_and_truncate() {
        let mut m = SipMsg::parse(
            b"OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: xyz\r\n\r\n",
        )
        .unwrap();
        let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
        let a = |s: &str| Arg {
            value: ArgValue::Str(s.into()),
            span: Default::default(),
        };
        let f = fixup_xlog(&[a("L_INFO"), a("lit $$ text")]).unwrap();
        assert!(matches!(f[0], FixedArg::Int(3)));
        let FixedArg::Fmt(fmt) = &f[1] else { panic!() };
        assert_eq!(xlog_text(&mut ctx, fmt), "lit $ text");
        assert!(fixup_xlog(&[a("L_Q"), a("x")]).is_err());
        let f = fixup_xdbg(&[a("dbg")]).unwrap();
        assert!(matches!(f[0], FixedArg::Int(4)));
    }
}

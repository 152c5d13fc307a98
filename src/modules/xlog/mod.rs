//! xlog: logging with pseudo-variables (reference §8.8).
//!
//! `xlog([level,] "format")` expands the format (parsed at start-up) and logs it at
//! `level` (default L_ERR; only the third character of `L_xxx` counts); `xdbg(format)`
//! logs at L_DBG. The text is passed on as is (xlog adds no newline). `$C<fg><bg>`
//! gives ANSI colour escapes when logging to stderr or with `force_color`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::core::cfg::ast::{Arg, ModParamValue};
use crate::core::cfg::pv::{FmtPart, PvParam, PvSpec, parse_format};
use crate::core::log::{self, L_DBG, L_ERR};
use crate::core::module::{CmdExport, FixedArg, ModuleExports, ParamExport};
use crate::core::route::{BRANCH_ROUTE, ERROR_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use crate::core::script::{Ctx, PvFormat};

static BUF_SIZE: AtomicUsize = AtomicUsize::new(4096);
static FORCE_COLOR: AtomicBool = AtomicBool::new(false);

fn set_buf_size(v: &ModParamValue) -> Result<(), String> {
    match v {
        ModParamValue::Int(n) if *n > 0 => {
            BUF_SIZE.store(*n as usize, Ordering::Relaxed);
            Ok(())
        }
        _ => Err("buf_size must be a positive integer".into()),
    }
}

fn set_force_color(v: &ModParamValue) -> Result<(), String> {
    match v {
        ModParamValue::Int(n) => {
            FORCE_COLOR.store(*n != 0, Ordering::Relaxed);
            Ok(())
        }
        ModParamValue::Str(_) => Err("force_color must be an integer".into()),
    }
}

static PARAMS: [ParamExport; 2] = [
    ParamExport {
        name: "buf_size",
        set: set_buf_size,
    },
    ParamExport {
        name: "force_color",
        set: set_force_color,
    },
];

const ROUTES: u32 = REQUEST_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE | ERROR_ROUTE;

static CMDS: [CmdExport; 2] = [
    CmdExport {
        name: "xlog",
        min_args: 1,
        max_args: 2,
        fixup: Some(fixup_xlog),
        handler: cmd_xlog,
        routes: ROUTES,
    },
    CmdExport {
        name: "xdbg",
        min_args: 1,
        max_args: 1,
        fixup: Some(fixup_xdbg),
        handler: cmd_xlog,
        routes: ROUTES,
    },
];

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "xlog",
    params: &PARAMS,
    cmds: &CMDS,
    pvs: &[],
    mod_init: None,
    child_init: None,
    destroy: None,
    pre_script: None,
    reply_hook: None,
};

use crate::core::script::fixup::string_arg as arg_text;

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

/// The ANSI escape for a `$C<fg><bg>` spec (lower case = normal, upper case = bold
/// foreground; x = default, s = black, r, g, y, b, p (purple), c, w).
pub fn color_escape(fg: char, bg: char) -> String {
    let code = |c: char| match c.to_ascii_lowercase() {
        's' => Some(0),
        'r' => Some(1),
        'g' => Some(2),
        'y' => Some(3),
        'b' => Some(4),
        'p' => Some(5),
        'c' => Some(6),
        'w' => Some(7),
        'x' => Some(9),
        _ => None,
    };
    let mut s = String::from("\x1b[");
    s.push_str(if fg.is_ascii_uppercase() { "1;" } else { "0;" });
    if let Some(f) = code(fg) {
        s.push_str(&format!("3{f};"));
    }
    match code(bg) {
        Some(b) => s.push_str(&format!("4{b}")),
        None => s.push_str("49"),
    }
    s.push('m');
    s
}

fn colors_on() -> bool {
    log::to_stderr() || FORCE_COLOR.load(Ordering::Relaxed)
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
    let max = BUF_SIZE.load(Ordering::Relaxed);
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
    use crate::core::cfg::ast::ArgValue;
    use crate::core::log::{L_ALERT, L_INFO, L_NOTICE, L_WARN};
    use crate::core::parser::SipMsg;

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

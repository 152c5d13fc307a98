//! The per-message script context.

use super::fixup::Script;
use super::{AvpList, PvFormat, PvValue};
use crate::cfg::pv::{FmtPart, PvSpec};
use crate::module::FixedArg;
use crate::parser::SipMsg;

/// q value not given.
pub const Q_UNSPECIFIED: i32 = -1;

/// One additional branch of the destination set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub uri: String,
    pub dst_uri: Option<String>,
    pub path: Option<String>,
    pub q: i32,
    pub bflags: u32,
    pub force_send_sock: Option<usize>,
}

/// `run_flags` bits.
pub const RUN_EXIT: u32 = 1;
pub const RUN_DROP: u32 = 2;
pub const RUN_RETURN: u32 = 4;
pub const RUN_BREAK: u32 = 8;

/// Everything the script sees while handling one message.
pub struct Ctx<'m> {
    pub msg: &'m mut SipMsg,
    pub route_type: u32,
    /// per message; tm copies it into/out of transactions
    pub avps: AvpList,
    /// destination set added by append_branch/lookup (not incl. the R-URI branch)
    pub branches: Vec<Branch>,
    /// branch 0 (the R-URI) q and branch flags
    pub ruri_q: i32,
    pub ruri_bflags: u32,
    /// script flags
    pub sflags: u32,
    /// `$rc`
    pub retcode: i32,
    /// internal: EXIT/DROP/RETURN bits
    pub run_flags: u32,
    /// `$T_branch_idx` (1-based inside branch_route)
    pub branch_idx: u32,
    /// `$T_reply_code` (set by tm)
    pub reply_code: u32,
    /// the script this context runs (None = the global one)
    pub(crate) script: Option<&'static Script>,
    /// route(N) nesting depth
    pub(crate) depth: u32,
}

impl<'m> Ctx<'m> {
    pub fn new(msg: &'m mut SipMsg, route_type: u32) -> Ctx<'m> {
        Ctx {
            msg,
            route_type,
            avps: AvpList::new(),
            branches: Vec::new(),
            ruri_q: Q_UNSPECIFIED,
            ruri_bflags: 0,
            sflags: 0,
            retcode: 0,
            run_flags: 0,
            branch_idx: 0,
            reply_code: 0,
            script: None,
            depth: 0,
        }
    }

    /// A context running `script` instead of the global one (tests, benches).
    pub fn with_script(msg: &'m mut SipMsg, route_type: u32, script: &'static Script) -> Ctx<'m> {
        let mut c = Ctx::new(msg, route_type);
        c.script = Some(script);
        c
    }

    /// Expand a format string (null -> "<null>").
    pub fn format(&mut self, f: &PvFormat) -> String {
        let mut out = String::new();
        for p in f {
            match p {
                FmtPart::Lit(s) => out.push_str(s),
                FmtPart::Pv(spec) => self.get_pv(spec).push_to(&mut out),
            }
        }
        out
    }

    /// The value of a pseudo-variable.
    pub fn get_pv(&mut self, pv: &PvSpec) -> PvValue {
        super::pv::get(self, pv)
    }

    /// A fixed argument as text.
    pub fn arg_str(&mut self, a: &FixedArg) -> String {
        match a {
            FixedArg::Int(i) => i.to_string(),
            FixedArg::Str(s) => s.clone(),
            FixedArg::Fmt(f) => self.format(f),
            FixedArg::Pv(p) => {
                let v = self.get_pv(p);
                match v {
                    PvValue::Null => String::new(),
                    v => v.to_text(),
                }
            }
            FixedArg::Regex(r) => r.as_str().to_string(),
            FixedArg::Any(_) => String::new(),
        }
    }

    /// A fixed argument as an integer (Int, or text that parses).
    pub fn arg_int(&mut self, a: &FixedArg) -> Option<i64> {
        match a {
            FixedArg::Int(i) => Some(*i),
            other => self.arg_str(other).trim().parse().ok(),
        }
    }

    /// `drop` was executed.
    pub fn drop_requested(&self) -> bool {
        self.run_flags & RUN_DROP != 0
    }

    /// The current R-URI (new one if rewritten).
    pub fn ruri(&self) -> &str {
        self.msg.ruri()
    }
}

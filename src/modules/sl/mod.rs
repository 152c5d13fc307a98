//! sl: stateless replies (reference §8.1).
//!
//! Replies are built from the request (`build_local_reply`) with the stateless To-tag
//! (`<md5 of "OpenSER-stateless", first listen IP and port>.<crc16 of the top Via>`),
//! the `append_to_reply` lines, the `Server:` header when `server_signature` is on, and
//! sent to the reply destination of the request (received/rport rules) from the socket it
//! came in on. ACKs to our own replies are absorbed before the script (`received_ACKs`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::core::cfg::ast::{Arg, ModParamValue};
use crate::core::cfg::pv::parse_format;
use crate::core::globals;
use crate::core::module::{CmdExport, FixedArg, ModuleExports, ParamExport};
use crate::core::msg::{SipError, build_local_reply, is_sl_ack, sl_tag_prefix, sl_totag};
use crate::core::parser::{Method, SipMsg};
use crate::core::process::timer;
use crate::core::route::{ERROR_ROUTE, REQUEST_ROUTE};
use crate::core::script::Ctx;
use crate::core::stats::{self, Stat};
use crate::core::transport::{forward, socket};

/// ACKs are absorbed only this many seconds after the last stateless reply
/// (OpenSER's SL_RPL_WAIT_TIME).
pub const SL_RPL_WAIT_TIME: u64 = 2;

static ENABLE_STATS: AtomicBool = AtomicBool::new(true);

fn set_enable_stats(v: &ModParamValue) -> Result<(), String> {
    match v {
        ModParamValue::Int(n) => {
            ENABLE_STATS.store(*n != 0, Ordering::Relaxed);
            Ok(())
        }
        ModParamValue::Str(_) => Err("enable_stats must be an integer".into()),
    }
}

/// The sl statistics.
pub struct SlStats {
    pub replies: [Stat; 6],
    pub sent_replies: Stat,
    pub sent_err_replies: Stat,
    pub received_acks: Stat,
}

static STATS: OnceLock<SlStats> = OnceLock::new();
static TAG_PREFIX: OnceLock<String> = OnceLock::new();
/// `get_ticks()` value until which ACKs may be ours (shared by all processes).
static SL_TIMEOUT: OnceLock<&'static AtomicU64> = OnceLock::new();

thread_local! {
    /// The last internal error of this process (OpenSER's `prev_ser_error`).
    static PREV_ERROR: std::cell::Cell<Option<SipError>> = const { std::cell::Cell::new(None) };
}

/// Record the last internal error for `sl_reply_error()` (core and modules call this
/// where OpenSER sets `ser_error`).
pub fn set_prev_error(e: SipError) {
    PREV_ERROR.with(|c| c.set(Some(e)));
}

fn register_stats() {
    STATS.get_or_init(|| {
        let r = |n| stats::register("sl", n, 0);
        SlStats {
            replies: [
                r("1xx_replies"),
                r("2xx_replies"),
                r("3xx_replies"),
                r("4xx_replies"),
                r("5xx_replies"),
                r("6xx_replies"),
            ],
            sent_replies: r("sent_replies"),
            sent_err_replies: r("sent_err_replies"),
            received_acks: r("received_ACKs"),
        }
    });
}

fn timeout_cell() -> &'static AtomicU64 {
    SL_TIMEOUT.get_or_init(|| {
        if shm::is_initialized()
            && let Some(a) = shm::alloc_static(AtomicU64::new(0))
        {
            return a;
        }
        Box::leak(Box::new(AtomicU64::new(0)))
    })
}

fn mod_init() -> Result<(), String> {
    let _ = tag_prefix();
    let _ = timeout_cell();
    if ENABLE_STATS.load(Ordering::Relaxed) {
        register_stats();
    }
    Ok(())
}

/// The 32-hex To-tag prefix (computed once from the first listen socket).
pub fn tag_prefix() -> &'static str {
    TAG_PREFIX.get_or_init(|| match socket::sockets().first() {
        Some(s) => sl_tag_prefix(&s.address_str, s.port),
        None => sl_tag_prefix("127.0.0.1", 5060),
    })
}

/// pre-script hook: absorb ACKs for our stateless replies.
fn pre_script(msg: &mut SipMsg) -> bool {
    if msg.method() != Method::Ack || !msg.is_request() {
        return true;
    }
    if timeout_cell().load(Ordering::Relaxed) <= timer::get_ticks() {
        return true;
    }
    if is_sl_ack(tag_prefix(), msg) {
        crate::log_dbg!("DEBUG : sl_filter_ACK: local ACK found -> dropping it!\n");
        if let Some(s) = STATS.get() {
            s.received_acks.inc();
        }
        return false;
    }
    true
}

static PARAMS: [ParamExport; 1] = [ParamExport {
    name: "enable_stats",
    set: set_enable_stats,
}];

static CMDS: [CmdExport; 2] = [
    CmdExport {
        name: "sl_send_reply",
        min_args: 2,
        max_args: 2,
        fixup: Some(fixup_sl_send_reply),
        handler: cmd_sl_send_reply,
        routes: REQUEST_ROUTE | ERROR_ROUTE,
    },
    CmdExport {
        name: "sl_reply_error",
        min_args: 0,
        max_args: 0,
        fixup: None,
        handler: cmd_sl_reply_error,
        routes: REQUEST_ROUTE,
    },
];

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "sl",
    params: &PARAMS,
    cmds: &CMDS,
    pvs: &[],
    mod_init: Some(mod_init),
    child_init: None,
    destroy: None,
    pre_script: Some(pre_script),
    reply_hook: None,
};

use crate::core::script::fixup::string_arg as arg_text;

/// code: a number 100..699 or a format with PVs; reason: text or a format.
fn fixup_sl_send_reply(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = Vec::with_capacity(2);
    for (i, a) in args.iter().enumerate() {
        let s = arg_text(a)?;
        if s.contains('$') {
            out.push(FixedArg::Fmt(parse_format(&s)?));
        } else if i == 0 {
            let code: i64 = s
                .trim()
                .parse()
                .map_err(|_| format!("bad reply code '{s}'"))?;
            if !(100..=699).contains(&code) {
                return Err(format!("wrong reply code {code} (100..699)"));
            }
            out.push(FixedArg::Int(code));
        } else {
            out.push(FixedArg::Str(s));
        }
    }
    Ok(out)
}

/// Build the stateless reply to `msg` (To-tag for codes >= 180 when the To has none).
pub fn build_sl_reply(
    msg: &SipMsg,
    code: u16,
    reason: &str,
    extra_headers: &[String],
    body: &[u8],
) -> Result<Vec<u8>, SipError> {
    if !(100..=699).contains(&code) {
        crate::log_err!("ERROR:sl:sl_send_reply: invalid reply code {code}\n");
        return Err(SipError::Bug);
    }
    if !msg.is_request() {
        return Err(SipError::BadReq);
    }
    let tag = if code >= 180 {
        Some(sl_totag(tag_prefix(), msg))
    } else {
        None
    };
    let g = globals::get();
    let mut extra: Vec<&str> = extra_headers.iter().map(String::as_str).collect();
    if g.server_signature && !g.server_header.is_empty() {
        extra.push(&g.server_header);
    }
    build_local_reply(msg, code, reason, tag.as_deref(), &extra, body, None).map_err(|e| {
        crate::log_err!("ERROR:sl:sl_send_reply: failed to build the reply: {e}\n");
        match e {
            crate::core::msg::BuildError::NoVia => SipError::BadVia,
            crate::core::msg::BuildError::TooBig => SipError::TooBig,
            _ => SipError::BadReq,
        }
    })
}

/// Send a stateless reply to `msg` with `extra_headers` (complete lines) and `body`
/// (used by registrar, auth, ... as well as `sl_send_reply`).
pub fn sl_reply(
    msg: &mut SipMsg,
    code: u16,
    reason: &str,
    extra_headers: &[String],
    body: &[u8],
) -> Result<(), SipError> {
    if msg.is_request() && msg.method() == Method::Ack {
        crate::log_warn!("WARNING: sl_send_reply: I won't send a reply for ACK!!\n");
        return Err(SipError::BadReq);
    }
    let buf = build_sl_reply(msg, code, reason, extra_headers, body)?;
    forward::send_reply(msg, &buf)?;
    timeout_cell().store(timer::get_ticks() + SL_RPL_WAIT_TIME, Ordering::Relaxed);
    if let Some(s) = STATS.get() {
        let class = (code / 100) as usize;
        if (1..=6).contains(&class) {
            s.replies[class - 1].inc();
        }
        s.sent_replies.inc();
        if code >= 300 {
            s.sent_err_replies.inc();
        }
    }
    Ok(())
}

fn cmd_sl_send_reply(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let code = match args.first() {
        Some(a) => ctx.arg_int(a),
        None => None,
    };
    let Some(code) = code.filter(|c| (100..=699).contains(c)) else {
        crate::log_err!("ERROR:sl:w_sl_send_reply: invalid reply code\n");
        return -1;
    };
    let reason = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
    match sl_reply(ctx.msg, code as u16, &reason, &[], &[]) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}

/// OpenSER's E_* number of an internal error (for the `(N/SL)` reason suffix).
fn err_number(e: SipError) -> i32 {
    match e {
        SipError::Unspec => 1,
        SipError::NoMemory => 2,
        SipError::Bug => 5,
        SipError::BadVia => 8,
        SipError::BadTuple => 9,
        SipError::TooManyBranches => 12,
        SipError::BadTo => 13,
        SipError::BadQ => 15,
        SipError::NoDestination => 19,
        SipError::BadReq | SipError::BadHeader => 400,
        SipError::TooManyHops => 483,
        SipError::SendFailed => 477,
        SipError::BadAddress => 478,
        SipError::BadUri => 479,
        SipError::BadServer => 500,
        SipError::AdmProhibited => 510,
        SipError::TooBig => 513,
    }
}

/// The (code, reason) `sl_reply_error()` sends for `msg`: its parse error, else the last
/// internal error of this process, else "unspecified" (500).
pub fn error_reply(msg: &SipMsg) -> (u16, String) {
    let e = match &msg.parse_error {
        Some(p) => SipError::from_parse(p),
        None => PREV_ERROR.with(|c| c.get()).unwrap_or(SipError::Unspec),
    };
    let (code, reason) = e.reply();
    let reason = if reason.ends_with("/SL)") {
        reason.to_string()
    } else {
        format!("{reason} ({}/SL)", err_number(e))
    };
    (code, reason)
}

fn cmd_sl_reply_error(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let (code, reason) = error_reply(ctx.msg);
    match sl_reply(ctx.msg, code, &reason, &[], &[]) {
        Ok(()) => {
            crate::log_err!("ERROR: Stateless error reply used: {reason}\n");
            1
        }
        Err(_) => -1,
    }
}

#[cfg(test)]
mod tests;

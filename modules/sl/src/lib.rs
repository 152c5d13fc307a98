//! sl: stateless replies (reference §8.1).
//!
//! Replies are built from the request (`build_local_reply`) with the stateless To-tag
//! (`<md5 of "OpenSER-stateless", first listen IP and port>.<crc16 of the top Via>`),
//! the `append_to_reply` lines, the `Server:` header when `server_signature` is on, and
//! sent to the reply destination of the request (received/rport rules) from the socket it
//! came in on. ACKs to our own replies are absorbed before the script (`received_ACKs`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::parse_format;
use openser_core::globals;
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, ModuleExports, Param, StatCell, StatExport,
};
use openser_core::msg::{SipError, build_local_reply, is_sl_ack, sl_tag_prefix, sl_totag};
use openser_core::parser::{Method, SipMsg};
use openser_core::process::timer;
use openser_core::route::{ERROR_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;
use openser_core::transport::{forward, socket};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "sl",
    params: &[Param::bool("enable_stats", &ENABLE_STATS)],
    cmds: &[
        CmdExport::new(
            "sl_send_reply",
            2,
            2,
            REQUEST_ROUTE | ERROR_ROUTE,
            cmd_sl_send_reply,
        )
        .fixup(fixup_sl_send_reply),
        CmdExport::new("sl_reply_error", 0, 0, REQUEST_ROUTE, cmd_sl_reply_error),
    ],
    stats: &[
        StatExport::counter("1xx_replies", &STATS.replies[0]),
        StatExport::counter("2xx_replies", &STATS.replies[1]),
        StatExport::counter("3xx_replies", &STATS.replies[2]),
        StatExport::counter("4xx_replies", &STATS.replies[3]),
        StatExport::counter("5xx_replies", &STATS.replies[4]),
        StatExport::counter("6xx_replies", &STATS.replies[5]),
        StatExport::counter("sent_replies", &STATS.sent_replies),
        StatExport::counter("sent_err_replies", &STATS.sent_err_replies),
        StatExport::counter("received_ACKs", &STATS.received_acks),
    ],
    enable_stats: Some(&ENABLE_STATS),
    mod_init: Some(mod_init),
    pre_script: Some(pre_script),
    ..ModuleExports::EMPTY
};

/// ACKs are absorbed only this many seconds after the last stateless reply
/// (OpenSER's SL_RPL_WAIT_TIME).
pub const SL_RPL_WAIT_TIME: u64 = 2;

static ENABLE_STATS: BoolParam = BoolParam::new(true);

/// The sl statistics.
pub struct SlStats {
    pub replies: [StatCell; 6],
    pub sent_replies: StatCell,
    pub sent_err_replies: StatCell,
    pub received_acks: StatCell,
}

pub static STATS: SlStats = SlStats {
    replies: [
        StatCell::new(),
        StatCell::new(),
        StatCell::new(),
        StatCell::new(),
        StatCell::new(),
        StatCell::new(),
    ],
    sent_replies: StatCell::new(),
    sent_err_replies: StatCell::new(),
    received_acks: StatCell::new(),
};

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
        openser_core::log_dbg!("local ACK found -> dropping it!");
        STATS.received_acks.inc();
        return false;
    }
    true
}

use openser_core::script::fixup::string_arg as arg_text;

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
        openser_core::log_err!("invalid reply code {code}");
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
        openser_core::log_err!("failed to build the reply: {e}");
        match e {
            openser_core::msg::BuildError::NoVia => SipError::BadVia,
            openser_core::msg::BuildError::TooBig => SipError::TooBig,
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
        openser_core::log_warn!("I won't send a reply for ACK!!");
        return Err(SipError::BadReq);
    }
    let buf = build_sl_reply(msg, code, reason, extra_headers, body)?;
    forward::send_reply(msg, &buf)?;
    timeout_cell().store(timer::get_ticks() + SL_RPL_WAIT_TIME, Ordering::Relaxed);
    let class = (code / 100) as usize;
    if (1..=6).contains(&class) {
        STATS.replies[class - 1].inc();
    }
    STATS.sent_replies.inc();
    if code >= 300 {
        STATS.sent_err_replies.inc();
    }
    Ok(())
}

fn cmd_sl_send_reply(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let code = match args.first() {
        Some(a) => ctx.arg_int(a),
        None => None,
    };
    let Some(code) = code.filter(|c| (100..=699).contains(c)) else {
        openser_core::log_err!("invalid reply code");
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
            openser_core::log_err!("Stateless error reply used: {reason}");
            1
        }
        Err(_) => -1,
    }
}

#[cfg(test)]
mod tests;

//! debugger: configuration tracing for the script (SIP Router 3.1's module of that
//! name; not in OpenSER 1.2).
//!
//! * `cfgtrace` (int, 0): when non-zero, every executed action of the script is logged
//!   at `log_level` as `<log_prefix>rt=[route type] c=[file] l=[line] col=[column]
//!   n=[action]` — the action is a function name or `assign`, `if`, `switch`, `while`,
//!   `exit`, `drop`, `return`, `route`, `break`.
//! * `breakpoint` (int, 0): enables the anchors set with `dbg_breakpoint(1)`. This
//!   server has no interactive stepping (no RPC console): an enabled breakpoint is a
//!   log point, logging `breakpoint hit at file:line` with the R-URI and Call-ID.
//! * `log_level` (int, L_ERR = -1), `log_prefix` (str, `*** cfgtrace:`).
//! * `dbg_sip_msg()`: logs the current message with its pending changes applied
//!   (header and body edits; the new R-URI is named on the first line).
//! * MI `dbg_ls`: the breakpoint anchors (file:line, enabled or not) and the settings.
//!
//! The per-action hook is the core's `ModuleExports::action_trace`: fixup puts a trace
//! point before every action only when this module is loaded, so a configuration
//! without it runs the same executable tree as before.

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::log::{L_ALERT, L_DBG, L_ERR};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam,
};
use openser_core::route;
use openser_core::script::Ctx;
use openser_core::script::interp::TracePoint;
use std::cell::RefCell;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "debugger",
    params: &[
        Param::int("cfgtrace", &CFGTRACE),
        Param::int("breakpoint", &BREAKPOINT),
        Param::int_range("log_level", &LOG_LEVEL, L_ALERT as i64, L_DBG as i64),
        Param::str("log_prefix", &LOG_PREFIX),
    ],
    cmds: &[
        CmdExport::new("dbg_breakpoint", 1, 1, route::ANY_ROUTE, cmd_breakpoint)
            .fixup(fixup_breakpoint),
        CmdExport::new("dbg_sip_msg", 0, 0, route::ANY_ROUTE, cmd_sip_msg),
    ],
    mi: &[MiExport::new("dbg_ls", mi_dbg_ls)],
    action_trace: Some(trace),
    ..ModuleExports::EMPTY
};

static CFGTRACE: IntParam = IntParam::new(0);
static BREAKPOINT: IntParam = IntParam::new(0);
static LOG_LEVEL: IntParam = IntParam::new(L_ERR as i64);
static LOG_PREFIX: StrParam = StrParam::new("*** cfgtrace:");

thread_local! {
    /// The breakpoint anchors found at fixup (attendant; inherited by every child):
    /// file:line and whether enabled.
    static ANCHORS: RefCell<Vec<(String, bool)>> = const { RefCell::new(Vec::new()) };
}

fn level() -> i32 {
    LOG_LEVEL.get() as i32
}

/// The name of the route type a context runs in.
fn route_name(rt: u32) -> &'static str {
    match rt {
        route::REQUEST_ROUTE => "request_route",
        route::FAILURE_ROUTE => "failure_route",
        route::ONREPLY_ROUTE => "onreply_route",
        route::BRANCH_ROUTE => "branch_route",
        route::ERROR_ROUTE => "error_route",
        route::STARTUP_ROUTE => "startup_route",
        route::TIMER_ROUTE => "timer_route",
        _ => "route",
    }
}

/// The core's per-action hook.
fn trace(ctx: &mut Ctx, t: &TracePoint) {
    if CFGTRACE.get() == 0 {
        return;
    }
    openser_core::log_at!(
        level(),
        plain: "{}rt=[{}] c=[{}] l=[{}] col=[{}] n=[{}]",
        LOG_PREFIX.get(),
        route_name(ctx.route_type),
        t.file,
        t.line,
        t.col,
        t.action
    );
}

fn fixup_breakpoint(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let a = args.first().ok_or("dbg_breakpoint takes one argument")?;
    let on = match &a.value {
        ArgValue::Int(n) => *n != 0,
        ArgValue::Str(s) => match s.trim() {
            "0" => false,
            "1" => true,
            _ => return Err(format!("dbg_breakpoint: mode must be 0 or 1, not '{s}'")),
        },
        _ => return Err("dbg_breakpoint: mode must be 0 or 1".into()),
    };
    let file = openser_core::script::fixup::source_name(a.span.file);
    let site = format!("{}:{}", file.as_deref().unwrap_or("?"), a.span.line);
    ANCHORS.with(|v| v.borrow_mut().push((site.clone(), on)));
    Ok(vec![FixedArg::Int(on as i64), FixedArg::Str(site)])
}

fn cmd_breakpoint(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    if BREAKPOINT.get() == 0 {
        return 1;
    }
    let (Some(FixedArg::Int(on)), Some(FixedArg::Str(site))) = (args.first(), args.get(1)) else {
        return -1;
    };
    if *on == 0 {
        return 1;
    }
    let ruri = if ctx.msg.is_request() {
        ctx.msg.ruri().to_string()
    } else {
        "<reply>".to_string()
    };
    let ci = ctx.msg.header("Call-ID").unwrap_or("").trim().to_string();
    openser_core::log_at!(
        level(),
        plain: "{}breakpoint hit at {site} rt=[{}] ru=[{ruri}] ci=[{ci}]",
        LOG_PREFIX.get(),
        route_name(ctx.route_type)
    );
    1
}

/// The message with the pending changes applied (lumps; the new R-URI named).
pub fn pending_text(ctx: &Ctx) -> String {
    let m = &*ctx.msg;
    let out = m.lumps.apply(m.buf());
    let head = match &m.new_uri {
        Some(u) if m.is_request() => format!("new R-URI: {u}"),
        _ => "R-URI unchanged".to_string(),
    };
    format!(
        "{head}; {} pending change(s)\n{}",
        m.lumps.len(),
        String::from_utf8_lossy(&out)
    )
}

fn cmd_sip_msg(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let text = pending_text(ctx);
    openser_core::log_at!(level(), plain: "{}dbg_sip_msg: {text}", LOG_PREFIX.get());
    1
}

fn mi_dbg_ls(_args: &[MiArg]) -> MiReply {
    let mut out = vec![
        MiNode::value(format!("cfgtrace={}", CFGTRACE.get())),
        MiNode::value(format!("breakpoint={}", BREAKPOINT.get())),
        MiNode::value(format!("log_level={}", LOG_LEVEL.get())),
    ];
    ANCHORS.with(|v| {
        for (site, on) in v.borrow().iter() {
            out.push(MiNode::value(format!(
                "anchor {site} {}",
                if *on { "on" } else { "off" }
            )));
        }
    });
    MiReply::ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names() {
        assert_eq!(route_name(route::REQUEST_ROUTE), "request_route");
        assert_eq!(route_name(route::FAILURE_ROUTE), "failure_route");
        assert_eq!(route_name(0x4000), "route");
    }
}

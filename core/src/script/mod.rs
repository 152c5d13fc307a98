//! The script engine: fixup of the parsed configuration into an executable tree,
//! the interpreter, pseudo-variables, AVPs, transformations and core actions.

pub mod actions;
pub mod avp;
pub mod ctx;
pub mod engine;
pub mod fixup;
pub mod interp;
pub mod kemi;
pub mod pv;
pub mod transform;

pub use avp::{AvpId, AvpList};
pub use ctx::{Branch, Ctx, Q_UNSPECIFIED};
pub use fixup::{Script, fixup};
pub use interp::{route_index, run_route};

/// A format string: literal text and PVs, expanded per message.
pub type PvFormat = Vec<crate::cfg::pv::FmtPart>;

/// A pseudo-variable value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PvValue {
    #[default]
    Null,
    Int(i64),
    Str(String),
}

impl PvValue {
    /// The value as text (`Null` gives `<null>`, as OpenSER prints it).
    pub fn to_text(&self) -> String {
        match self {
            PvValue::Null => "<null>".into(),
            PvValue::Int(i) => i.to_string(),
            PvValue::Str(s) => s.clone(),
        }
    }

    /// Append the value as text to `out`.
    pub fn push_to(&self, out: &mut String) {
        match self {
            PvValue::Null => out.push_str("<null>"),
            PvValue::Int(i) => {
                use std::fmt::Write;
                let _ = write!(out, "{i}");
            }
            PvValue::Str(s) => out.push_str(s),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, PvValue::Null)
    }

    /// Integer value: Int as is, Str parsed (leading sign and digits), else None.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            PvValue::Int(i) => Some(*i),
            PvValue::Str(s) => s.trim().parse::<i64>().ok(),
            PvValue::Null => None,
        }
    }
}

/// A minimal request for routes that run without a received message (startup and
/// timer routes), as OpenSER builds a fake message for them.
pub fn fake_msg() -> Option<crate::parser::SipMsg> {
    const FAKE: &[u8] = b"OPTIONS sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKfake\r\nFrom: <sip:openser@localhost>;tag=fake\r\nTo: <sip:openser@localhost>\r\nCall-ID: fake-msg\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    crate::parser::SipMsg::new(FAKE, Default::default()).ok()
}

/// Run `startup_route` once (attendant, before fork), if the script has one.
pub fn run_startup_route() {
    use crate::cfg::ast::RouteKind;
    let Some(s) = fixup::SCRIPT.get() else { return };
    if !s.has(RouteKind::Startup, 0) {
        return;
    }
    if let Some(mut m) = fake_msg() {
        let mut ctx = Ctx::new(&mut m, crate::route::STARTUP_ROUTE);
        run_route(RouteKind::Startup, 0, &mut ctx);
    }
}

/// Run `event_route[core:worker-one-init]` (the first SIP worker, once after start-up,
/// after every module's `child_init`), if the script has it.
pub fn run_worker_one_init() {
    use crate::cfg::ast::RouteKind;
    let Some(idx) = fixup::SCRIPT
        .get()
        .and_then(|s| s.route_index(RouteKind::Event, "core:worker-one-init"))
    else {
        return;
    };
    if let Some(mut m) = fake_msg() {
        let mut ctx = Ctx::new(&mut m, crate::route::STARTUP_ROUTE);
        run_route(RouteKind::Event, idx, &mut ctx);
    }
}

/// Run the `timer_route`s whose interval has elapsed (the timer process, every second).
pub fn timer_routes_tick(ticks: u64) {
    use crate::cfg::ast::RouteKind;
    let Some(script) = fixup::SCRIPT.get() else {
        return;
    };
    for (_, secs, idx) in &script.timers {
        let secs = (*secs).max(1);
        if !ticks.is_multiple_of(secs as u64) {
            continue;
        }
        if let Some(mut m) = fake_msg() {
            let mut ctx = Ctx::new(&mut m, crate::route::TIMER_ROUTE);
            run_route(RouteKind::Timer, *idx, &mut ctx);
        }
    }
}

/// Whether the installed script has `timer_route`s.
pub fn has_timer_routes() -> bool {
    fixup::SCRIPT.get().is_some_and(|s| !s.timers.is_empty())
}

#[cfg(test)]
mod tests;

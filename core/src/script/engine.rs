//! Routing in another language (Kamailio's KEMI): with the global `cfgengine "lua"`
//! the request, reply, failure and branch routes are functions of an embedded
//! interpreter instead of the configuration's route blocks. The configuration still
//! declares the globals, `loadmodule` and `modparam`; the module embedding the language
//! declares an [`Engine`] in its exports (`ModuleExports::engine`), and the config
//! loader installs the one `cfgengine` names (attendant, before fork).
//!
//! The hook is small on purpose: [`super::run_route`] hands a top-level run of a route
//! the engine serves to [`Engine::run`], and [`super::route_index`] asks the engine for
//! the index of a named failure/reply/branch handler (tm's `t_on_failure("name")`).
//! Indexes are stored in transactions in shm and used by whichever process runs the
//! route later, so an engine must give a name the same index in every process (a hash
//! of the name, not a per-process counter). Everything else — startup, timer, event
//! and local routes, and `route(N)` from those — stays with the configuration.

use super::Ctx;
use crate::cfg::ast::RouteKind;
use std::sync::OnceLock;

/// A routing engine a module provides.
pub struct Engine {
    /// The `cfgengine` name it serves (`"lua"`).
    pub name: &'static str,
    /// Run a route: `(Request, 0)` the main request route, `(OnReply, 0)` the main
    /// reply route, otherwise a handler by the index `route_index` gave. Returns the
    /// route's value (as a route block's); `ctx.run_flags` carries exit/drop.
    pub run: fn(kind: RouteKind, idx: usize, ctx: &mut Ctx) -> i32,
    /// The index of the handler `name` of `kind` (OnReply, Failure, Branch), the same
    /// in every process and never 0 for OnReply; None if there is no such handler.
    pub route_index: fn(kind: RouteKind, name: &str) -> Option<usize>,
    /// Whether the handler exists (asked for the main reply route, per reply).
    pub has: fn(kind: RouteKind, idx: usize) -> bool,
}

static ACTIVE: OnceLock<&'static Engine> = OnceLock::new();

/// Install the engine `cfgengine` chose (config loading, before fork; first call wins).
pub fn install(e: &'static Engine) {
    let _ = ACTIVE.set(e);
}

/// The installed engine, if `cfgengine` is not `native`.
#[inline]
pub fn active() -> Option<&'static Engine> {
    ACTIVE.get().copied()
}

/// Whether the engine serves route `idx` of `kind` (the main request route; every
/// reply, failure and branch route).
fn serves(kind: RouteKind, idx: usize) -> bool {
    match kind {
        RouteKind::Request => idx == 0,
        RouteKind::OnReply | RouteKind::Failure | RouteKind::Branch => true,
        _ => false,
    }
}

/// A top-level run of a route the engine serves: Some(value), else None (the
/// configuration's route runs).
#[inline]
pub(crate) fn dispatch(kind: RouteKind, idx: usize, ctx: &mut Ctx) -> Option<i32> {
    let e = active()?;
    if !serves(kind, idx) {
        return None;
    }
    ctx.sflags = 0;
    ctx.run_flags = 0;
    Some((e.run)(kind, idx, ctx))
}

/// During `route_index`: Some(answer) when the engine names handlers of `kind`.
pub(crate) fn route_index(kind: RouteKind, name: &str) -> Option<Option<usize>> {
    let e = active()?;
    if !matches!(
        kind,
        RouteKind::OnReply | RouteKind::Failure | RouteKind::Branch
    ) {
        return None;
    }
    Some((e.route_index)(kind, name))
}

/// Whether route `idx` of `kind` exists: the engine's answer for the routes it serves,
/// else the configuration's.
pub fn has_route(kind: RouteKind, idx: usize) -> bool {
    if let Some(e) = active()
        && serves(kind, idx)
    {
        return (e.has)(kind, idx);
    }
    super::fixup::SCRIPT.get().is_some_and(|s| s.has(kind, idx))
}

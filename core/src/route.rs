//! Route types: the bit set used by module exports (`CmdExport::routes`) and by the
//! script context (`Ctx::route_type`).

use crate::cfg::ast::RouteKind;

pub const REQUEST_ROUTE: u32 = 1;
pub const FAILURE_ROUTE: u32 = 2;
pub const ONREPLY_ROUTE: u32 = 4;
pub const BRANCH_ROUTE: u32 = 8;
pub const ERROR_ROUTE: u32 = 16;
pub const STARTUP_ROUTE: u32 = 32;
pub const TIMER_ROUTE: u32 = 64;
/// Every route type.
pub const ANY_ROUTE: u32 = 0x7f;

/// The route-type bit of a route block kind (`event_route`/`local_route` count as
/// request routes).
pub fn kind_bit(kind: RouteKind) -> u32 {
    match kind {
        RouteKind::Request | RouteKind::Event | RouteKind::Local => REQUEST_ROUTE,
        RouteKind::OnReply => ONREPLY_ROUTE,
        RouteKind::Failure => FAILURE_ROUTE,
        RouteKind::Branch => BRANCH_ROUTE,
        RouteKind::Error => ERROR_ROUTE,
        RouteKind::Startup => STARTUP_ROUTE,
        RouteKind::Timer => TIMER_ROUTE,
    }
}

/// The configuration keyword of a route type bit, for messages.
pub fn type_name(bit: u32) -> &'static str {
    match bit {
        REQUEST_ROUTE => "request_route",
        FAILURE_ROUTE => "failure_route",
        ONREPLY_ROUTE => "onreply_route",
        BRANCH_ROUTE => "branch_route",
        ERROR_ROUTE => "error_route",
        STARTUP_ROUTE => "startup_route",
        TIMER_ROUTE => "timer_route",
        _ => "route",
    }
}

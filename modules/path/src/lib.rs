//! path (OpenSER 1.2 `modules/path`): Path headers (RFC 3327) for a proxy in front of
//! a registrar, and routing back to a NATed client through the received address it
//! recorded.
//!
//! Functions (REQUEST; 1 = done, −1 = error):
//! * `add_path()`, `add_path(user)`: insert `Path: <sip:[user@]ip[:port];lr>` with the
//!   address of the socket the request leaves on (advertised address and port; the
//!   port only when it is not 5060), before the first Path header or, without one,
//!   after the last header.
//! * `add_path_received()`, `add_path_received(user)`: the same with
//!   `;received=sip:<source ip>:<source port>` after `;lr`, the address the request
//!   came from, so the registrar can store it with the contact.
//!
//! Parameter `use_received` (1.2 default 0): when set, a request whose first Route URI
//! is this proxy's and carries a `received` parameter (a Route built from a Path this
//! proxy inserted with `add_path_received`) gets that address as its destination URI,
//! so it reaches the client through its NAT binding. 1.2 did this from an rr callback
//! at `loose_route()` time; here it is done before the script runs, when the request
//! arrives (the script's `loose_route()` then removes our Route and keeps the
//! destination when no further Route follows, which is the Path case).

use openser_core::module::{BoolParam, CmdExport, FixedArg, ModuleExports, Param};
use openser_core::parser::{HdrType, SipMsg, UriRef};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;
use openser_core::transport::socket::is_myself;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "path",
    params: &[Param::bool("use_received", &USE_RECEIVED)],
    cmds: &[
        CmdExport::new("add_path", 0, 1, REQUEST_ROUTE, cmd_add_path),
        CmdExport::new(
            "add_path_received",
            0,
            1,
            REQUEST_ROUTE,
            cmd_add_path_received,
        ),
    ],
    pre_script: Some(pre_script),
    ..ModuleExports::EMPTY
};

pub static USE_RECEIVED: BoolParam = BoolParam::new(false);

/// The Path header line for our socket `host`/`port`, a user and, optionally, the
/// received address.
pub fn path_line(user: &str, host: &str, port: u16, received: Option<&str>) -> String {
    let mut h = String::with_capacity(64);
    h.push_str("Path: <sip:");
    if !user.is_empty() {
        h.push_str(user);
        h.push('@');
    }
    h.push_str(host);
    if port != 5060 {
        h.push(':');
        h.push_str(&port.to_string());
    }
    h.push_str(";lr");
    if let Some(r) = received {
        h.push_str(";received=");
        h.push_str(r);
    }
    h.push_str(">\r\n");
    h
}

/// `sip:ip:port` of the request's source (IPv6 in brackets).
fn received_uri(msg: &SipMsg) -> String {
    match msg.rcv.src {
        std::net::SocketAddr::V4(a) => format!("sip:{}:{}", a.ip(), a.port()),
        std::net::SocketAddr::V6(a) => format!("sip:[{}]:{}", a.ip(), a.port()),
    }
}

fn prepend_path(ctx: &mut Ctx, args: &[FixedArg], recv: bool) -> i32 {
    let user = match args.first() {
        Some(a) => ctx.arg_str(a),
        None => String::new(),
    };
    let msg = &mut *ctx.msg;
    let sock = msg.force_send_sock.unwrap_or(msg.rcv.sock_idx);
    let (host, port) = openser_core::transport::send::advertised(sock);
    let received = recv.then(|| received_uri(msg));
    let line = path_line(&user, host, port, received.as_deref());
    match msg.header_indices("Path").first() {
        Some(&i) => {
            if !msg.add_header_before(i, &line) {
                openser_core::log_err!("failed to insert the Path header");
                return -1;
            }
        }
        None => msg.add_header_after_last(&line),
    }
    1
}

fn cmd_add_path(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    prepend_path(ctx, args, false)
}

fn cmd_add_path_received(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    prepend_path(ctx, args, true)
}

/// The `received` parameter of the first Route URI when that URI is ours.
pub fn route_received(msg: &SipMsg) -> Option<String> {
    let routes = msg.routes(HdrType::Route).ok()?;
    let first = routes.first()?;
    let u = UriRef::parse(msg.s(first.uri)).ok()?;
    if !is_myself(u.host_unbracketed(), u.port.unwrap_or(0)) {
        return None;
    }
    match u.param("received") {
        Some(Some(v)) if !v.is_empty() => Some(v.to_string()),
        _ => None,
    }
}

fn pre_script(msg: &mut SipMsg) -> bool {
    if USE_RECEIVED.get()
        && let Some(r) = route_received(msg)
    {
        openser_core::log_dbg!("destination from the Route's received parameter: {r}");
        msg.dst_uri = Some(r);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        assert_eq!(
            path_line("", "10.0.0.1", 5060, None),
            "Path: <sip:10.0.0.1;lr>\r\n"
        );
        assert_eq!(
            path_line("lb", "10.0.0.1", 5070, Some("sip:192.0.2.9:1234")),
            "Path: <sip:lb@10.0.0.1:5070;lr;received=sip:192.0.2.9:1234>\r\n"
        );
    }

    #[test]
    fn received_of_a_foreign_route_is_ignored() {
        let m = SipMsg::parse(
            b"INVITE sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK1\r\n\
              Route: <sip:198.51.100.7;lr;received=sip:192.0.2.9:1234>\r\n\
              From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        )
        .unwrap();
        // no listen sockets in a unit test: nothing is "myself"
        assert_eq!(route_received(&m), None);
    }
}

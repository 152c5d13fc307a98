//! Module `xhttp`: an HTTP/1.1 server in its own process (`HTTP` in `ps`), with the
//! requests handled by `event_route[xhttp:request]` (Kamailio 3's module of that name;
//! 1.2 had none) and, with `modparam("xhttp", "metrics", 1)`, a Prometheus endpoint.
//!
//! The event route sees the HTTP request as a SIP-shaped message: its method (`$rm`),
//! its headers (`$hdr(Host)`, …; SIP's own header names are left out), its body
//! (`$rb`), the peer (`$si`, `$sp`), and the request target as `$hu`. It answers with
//! `xhttp_reply(code, reason, content-type, body)` (arguments may hold variables); a
//! route that does not answer gets 500 for its client.
//!
//! The metrics endpoint (`metrics_path`, `/metrics` by default) answers GET before the
//! event route, in Prometheus' text format 0.0.4: every statistic of the core and of
//! every module as `openser_<group>_<name>` (counters `_total`, gauges for
//! non-resettable and computed ones such as `shmem:*` and `inuse_transactions`), with
//! `# HELP` and `# TYPE`, plus `openser_processes` (the process table's size).
//!
//! The listening socket is bound in `mod_init`; a request must arrive whole within 5 s;
//! one request per connection.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

use openser_core::cfg::ast::RouteKind;
use openser_core::cfg::pv::PvSpec;
use openser_core::http;
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, ModuleExports, Param, ProcExport, PvExport, StrParam,
};
use openser_core::parser::{RcvInfo, SipMsg};
use openser_core::process::pt;
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::{Ctx, PvValue, route_index, run_route};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "xhttp",
    params: &[
        Param::int_with("port", &PORT, port_ok),
        Param::str("address", &ADDRESS),
        Param::bool("metrics", &METRICS),
        Param::str("metrics_path", &METRICS_PATH),
        Param::int("max_body", &MAX_BODY),
    ],
    cmds: &[CmdExport::new(
        "xhttp_reply",
        4,
        4,
        REQUEST_ROUTE,
        cmd_xhttp_reply,
    )],
    pvs: &[PvExport::new("hu", pv_hu)],
    procs: &[ProcExport::new("HTTP", pt::PROC_FIFO, http_process)],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

static PORT: IntParam = IntParam::new(8088);
static ADDRESS: StrParam = StrParam::new("0.0.0.0");
static METRICS: BoolParam = BoolParam::new(false);
static METRICS_PATH: StrParam = StrParam::new("/metrics");
static MAX_BODY: IntParam = IntParam::new(1 << 20);

static LISTENER: OnceLock<TcpListener> = OnceLock::new();

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The reply `xhttp_reply` set for the request being handled.
struct Reply {
    code: u16,
    reason: String,
    ctype: String,
    body: String,
}

thread_local! {
    /// The target (`$hu`) of the request being handled.
    static URL: RefCell<String> = const { RefCell::new(String::new()) };
    static REPLY: RefCell<Option<Reply>> = const { RefCell::new(None) };
}

fn port_ok(p: i64) -> Result<(), String> {
    if !(1..=65535).contains(&p) {
        return Err("must be 1..65535".into());
    }
    Ok(())
}

fn mod_init() -> Result<(), String> {
    let a = ADDRESS.get();
    let hp = if a.contains(':') && !a.starts_with('[') {
        format!("[{a}]:{}", PORT.get())
    } else {
        format!("{a}:{}", PORT.get())
    };
    let addr: SocketAddr = hp
        .to_socket_addrs()
        .map_err(|e| format!("xhttp: bad address {hp}: {e}"))?
        .next()
        .ok_or_else(|| format!("xhttp: bad address {hp}"))?;
    let l = TcpListener::bind(addr).map_err(|e| format!("xhttp: cannot listen on {addr}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| format!("xhttp: {e}"))?;
    let _ = LISTENER.set(l);
    if route_index(RouteKind::Event, "xhttp:request").is_none() && !METRICS.get() {
        openser_core::log_warn!(
            "no event_route[xhttp:request] and no metrics: every request gets 404"
        );
    }
    Ok(())
}

fn pv_hu(_: &mut Ctx, _: &PvSpec) -> PvValue {
    URL.with(|u| {
        let u = u.borrow();
        if u.is_empty() {
            PvValue::Null
        } else {
            PvValue::Str(u.clone())
        }
    })
}

fn cmd_xhttp_reply(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(code) = ctx.arg_int(&args[0]).filter(|c| (100..=599).contains(c)) else {
        openser_core::log_err!("xhttp_reply: invalid code");
        return -1;
    };
    let reason = ctx.arg_str(&args[1]);
    let ctype = ctx.arg_str(&args[2]);
    let body = ctx.arg_str(&args[3]);
    if URL.with(|u| u.borrow().is_empty()) {
        openser_core::log_err!("xhttp_reply: no HTTP request being handled");
        return -1;
    }
    let bad = |s: &str| s.contains(['\r', '\n']);
    if bad(&reason) || bad(&ctype) {
        openser_core::log_err!("xhttp_reply: line breaks in reason or content type");
        return -1;
    }
    REPLY.with(|r| {
        *r.borrow_mut() = Some(Reply {
            code: code as u16,
            reason,
            ctype,
            body,
        })
    });
    1
}

/// SIP headers the SIP-shaped message makes itself (and their compact forms).
const SIP_OWN: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "content-length",
    "l",
    "max-forwards",
    "transfer-encoding",
    "contact",
    "m",
    "route",
    "record-route",
];

/// The HTTP request as a SIP message the script can read.
pub fn sip_shape(req: &http::HttpRequest, peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut s = format!(
        "{} sip:xhttp@{} SIP/2.0\r\nVia: SIP/2.0/TCP {};branch=z9hG4bKxhttp\r\nFrom: <sip:xhttp@{}>;tag=xhttp\r\nTo: <sip:xhttp@{}>\r\nCall-ID: xhttp-{}-{}\r\nCSeq: 1 {}\r\n",
        req.method,
        host_of(local),
        host_of(peer),
        host_of(peer),
        host_of(local),
        std::process::id(),
        peer.port(),
        req.method
    );
    for (n, v) in &req.headers {
        if SIP_OWN.iter().any(|o| n.eq_ignore_ascii_case(o)) {
            continue;
        }
        s.push_str(n);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n", req.body.len()));
    let mut b = s.into_bytes();
    b.extend_from_slice(&req.body);
    b
}

fn host_of(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

/// A Prometheus metric name from a statistic's group and name.
pub fn metric_name(group: &str, name: &str, counter: bool) -> String {
    let mut m = String::from("openser_");
    for c in group
        .chars()
        .chain(std::iter::once('_'))
        .chain(name.chars())
    {
        m.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    if counter && !m.ends_with("_total") {
        m.push_str("_total");
    }
    m
}

/// The metrics page (text format 0.0.4).
pub fn metrics_text() -> String {
    let mut out = String::with_capacity(8192);
    let mut seen = std::collections::HashSet::new();
    for s in openser_core::stats::all() {
        let name = metric_name(&s.group, &s.name, s.counter);
        if !seen.insert(name.clone()) {
            continue;
        }
        let kind = if s.counter { "counter" } else { "gauge" };
        out.push_str(&format!(
            "# HELP {name} OpenSER statistic {}:{}\n# TYPE {name} {kind}\n{name} {}\n",
            s.group, s.name, s.value
        ));
    }
    out.push_str(&format!(
        "# HELP openser_processes Processes in the process table.\n# TYPE openser_processes gauge\nopenser_processes {}\n",
        pt::list().len()
    ));
    out
}

/// Handle one request: the response bytes.
fn handle(req: &http::HttpRequest, peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
    if METRICS.get() && req.path() == METRICS_PATH.get() {
        if req.method != "GET" && req.method != "HEAD" {
            return http::response(
                405,
                "Method Not Allowed",
                "text/plain",
                b"GET only\n",
                &["Allow: GET, HEAD"],
            );
        }
        let body = metrics_text();
        let body = if req.method == "HEAD" {
            ""
        } else {
            body.as_str()
        };
        return http::response(
            200,
            "OK",
            "text/plain; version=0.0.4; charset=utf-8",
            body.as_bytes(),
            &[],
        );
    }
    let Some(idx) = route_index(RouteKind::Event, "xhttp:request") else {
        return http::response(404, "Not Found", "text/plain", b"Not Found\n", &[]);
    };
    let buf = sip_shape(req, peer, local);
    let rcv = RcvInfo {
        src: peer,
        dst: local,
        proto: openser_core::parser::Proto::Tcp,
        sock_idx: 0,
    };
    let mut msg = match SipMsg::new(&buf, rcv) {
        Ok(m) => m,
        Err(e) => {
            openser_core::log_err!("HTTP request from {peer} not usable by the script: {e:?}");
            return http::response(400, "Bad Request", "text/plain", b"Bad Request\n", &[]);
        }
    };
    URL.with(|u| *u.borrow_mut() = req.target.clone());
    REPLY.with(|r| *r.borrow_mut() = None);
    {
        let mut ctx = Ctx::new(&mut msg, REQUEST_ROUTE);
        run_route(RouteKind::Event, idx, &mut ctx);
    }
    URL.with(|u| u.borrow_mut().clear());
    match REPLY.with(|r| r.borrow_mut().take()) {
        Some(r) => http::response(r.code, &r.reason, &r.ctype, r.body.as_bytes(), &[]),
        None => http::response(
            500,
            "Server Internal Error",
            "text/plain",
            b"event_route[xhttp:request] did not reply\n",
            &[],
        ),
    }
}

fn serve(mut s: std::net::TcpStream, peer: SocketAddr) {
    let _ = s.set_nonblocking(false);
    let local = s.local_addr().unwrap_or(peer);
    let max = MAX_BODY.get().max(0) as usize;
    let out = match http::read_request(&mut s, max, IO_TIMEOUT) {
        Err((0, _)) => return,
        Err((code, reason)) => http::response(code, reason, "text/plain", reason.as_bytes(), &[]),
        Ok(req) => handle(&req, peer, local),
    };
    if let Err(e) = http::send(&mut s, &out, IO_TIMEOUT) {
        openser_core::log_dbg!("reply to {peer} failed: {e}");
    }
}

fn http_process() -> ! {
    http::listener_process(LISTENER.get(), serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            metric_name("core", "rcv_requests", true),
            "openser_core_rcv_requests_total"
        );
        assert_eq!(
            metric_name("tm", "2xx_transactions", true),
            "openser_tm_2xx_transactions_total"
        );
        assert_eq!(
            metric_name("shmem", "used-size", false),
            "openser_shmem_used_size"
        );
    }

    #[test]
    fn metrics_page() {
        openser_core::stats::register("xhttptest", "hits", 0).add(2);
        openser_core::stats::register("xhttptest", "level", openser_core::stats::NO_RESET);
        let t = metrics_text();
        assert!(
            t.contains(
                "# TYPE openser_xhttptest_hits_total counter\nopenser_xhttptest_hits_total 2\n"
            ),
            "{t}"
        );
        assert!(t.contains("# TYPE openser_xhttptest_level gauge\n"), "{t}");
        assert!(t.contains("# HELP openser_processes "), "{t}");
    }

    #[test]
    fn request_as_sip() {
        let req = http::HttpRequest {
            method: "GET".into(),
            target: "/welcome?x=1".into(),
            minor: 1,
            headers: vec![
                ("Host".into(), "example".into()),
                ("From".into(), "me@example".into()),
            ],
            body: b"abc".to_vec(),
        };
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8088".parse().unwrap();
        let b = sip_shape(&req, peer, local);
        let m = SipMsg::parse(&b).expect("parses");
        assert_eq!(m.method_str(), "GET");
        assert_eq!(m.header("Host"), Some("example"));
        assert_eq!(m.body(), b"abc");
        assert!(m.from().is_ok());
    }
}

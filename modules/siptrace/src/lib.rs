//! siptrace (OpenSER 1.2 `modules/siptrace`): SIP messages stored in the `sip_trace`
//! table (and optionally copied to a capture host) for troubleshooting.
//!
//! * `sip_trace()` (REQUEST, FAILURE, ONREPLY, BRANCH): stores the current message as
//!   received (`direction` "in"). −1 when tracing is off and no traced user is set.
//! * Transactions carrying `trace_flag` (set before `t_relay`) are traced through tm's
//!   trace hooks: every request sent on a branch ("out"), every reply received for
//!   it ("in") and every reply sent upstream ("out"). With `sip_trace()` for the
//!   request itself this gives both directions of a call, as 1.2.
//!
//! Rows (1.2's layout): `msg` the message, `callid`, `method` (of the request, or of
//! the transaction for a reply), `status` (reply code, "" for requests), `fromip`
//! "ip:port", `toip` "udp:ip:port" (our address as `trace_local_ip` when set),
//! `date`, `direction` "in"/"out", `fromtag`, `traced_user`. While tracing is on
//! (`trace_on`, or MI `sip_trace on`) a row with an empty `traced_user` is stored;
//! for every value of `traced_user_avp` a row with that user is stored too (even with
//! tracing off), and the message is copied to `duplicate_uri` (UDP). The table is
//! `trace_table_avp`'s value when that AVP is set, else `table`.
//!
//! Parameters (1.2 defaults): `db_url` "mysql://openserro:openserro@localhost/openser",
//! `table` "sip_trace", the column names (`date_column` … `direction_column`),
//! `trace_flag` unset (−1), `trace_on` 0, `traced_user_avp`, `trace_table_avp`,
//! `duplicate_uri`, `trace_local_ip` unset. MI `sip_trace on|off`. Statistics
//! `traced_requests`, `traced_replies`.
//!
//! Not here: stateless replies (1.2 traced `sl_send_reply` answers through an sl
//! callback); they are not traced.

use openser_core::db::{self, DbVal};
use openser_core::mi::{MiArg, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, IntParam, MiExport, ModuleExports, Param, StatCell, StatExport, StrParam,
};
use openser_core::parser::SipMsg;
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::{AvpId, AvpList, Ctx, PvValue};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use tm::callbacks::{TraceDir, TraceEvent};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "siptrace",
    binds: &["tm"],
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("table", &P.table),
        Param::str("date_column", &P.cols[0]),
        Param::str("callid_column", &P.cols[1]),
        Param::str("traced_user_column", &P.cols[2]),
        Param::str("msg_column", &P.cols[3]),
        Param::str("method_column", &P.cols[4]),
        Param::str("status_column", &P.cols[5]),
        Param::str("fromip_column", &P.cols[6]),
        Param::str("toip_column", &P.cols[7]),
        Param::str("fromtag_column", &P.cols[8]),
        Param::str("direction_column", &P.cols[9]),
        Param::int_range("trace_flag", &P.trace_flag, -1, 31),
        Param::int("trace_on", &P.trace_on),
        Param::str_with("traced_user_avp", &P.traced_user_avp, check_avp),
        Param::str_with("trace_table_avp", &P.trace_table_avp, check_avp),
        Param::str("duplicate_uri", &P.duplicate_uri),
        Param::str("trace_local_ip", &P.trace_local_ip),
    ],
    cmds: &[CmdExport::new(
        "sip_trace",
        0,
        0,
        REQUEST_ROUTE | FAILURE_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE,
        cmd_sip_trace,
    )],
    mi: &[MiExport::new("sip_trace", mi_sip_trace)],
    stats: &[
        StatExport::counter("traced_requests", &TRACED_REQ),
        StatExport::counter("traced_replies", &TRACED_RPL),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

pub struct Params {
    pub db_url: StrParam,
    pub table: StrParam,
    /// date, callid, traced_user, msg, method, status, fromip, toip, fromtag, direction
    pub cols: [StrParam; 10],
    pub trace_flag: IntParam,
    pub trace_on: IntParam,
    pub traced_user_avp: StrParam,
    pub trace_table_avp: StrParam,
    pub duplicate_uri: StrParam,
    pub trace_local_ip: StrParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(openser_core::db::DEFAULT_RO_URL),
    table: StrParam::new("sip_trace"),
    cols: [
        StrParam::new("date"),
        StrParam::new("callid"),
        StrParam::new("traced_user"),
        StrParam::new("msg"),
        StrParam::new("method"),
        StrParam::new("status"),
        StrParam::new("fromip"),
        StrParam::new("toip"),
        StrParam::new("fromtag"),
        StrParam::new("direction"),
    ],
    trace_flag: IntParam::new(-1),
    trace_on: IntParam::new(0),
    traced_user_avp: StrParam::new(""),
    trace_table_avp: StrParam::new(""),
    duplicate_uri: StrParam::new(""),
    trace_local_ip: StrParam::new(""),
};

static TRACED_REQ: StatCell = StatCell::new();
static TRACED_RPL: StatCell = StatCell::new();

/// What mod_init derived from the parameters.
struct Cfg {
    /// `trace_on`, shared so MI `sip_trace` switches every process
    on: &'static AtomicU32,
    user_avp: Option<AvpId>,
    table_avp: Option<AvpId>,
    dup: Option<SocketAddr>,
}

static CFG: OnceLock<Cfg> = OnceLock::new();

fn avp_of(s: &str) -> Result<AvpId, String> {
    AvpId::parse_param(s)
}

fn check_avp(s: &str) -> Result<(), String> {
    avp_of(s).map(|_| ())
}

fn opt_avp(s: &str) -> Result<Option<AvpId>, String> {
    if s.is_empty() {
        Ok(None)
    } else {
        avp_of(s).map(Some).map_err(|e| format!("siptrace: {e}"))
    }
}

fn mod_init() -> Result<(), String> {
    if P.table.get().is_empty() {
        return Err("siptrace: invalid table name".into());
    }
    db::check_url(P.db_url.get()).map_err(|e| format!("siptrace: {e}"))?;
    let dup = match P.duplicate_uri.get() {
        "" => None,
        u => {
            let uri = openser_core::parser::Uri::parse(u)
                .map_err(|e| format!("siptrace: bad dup uri '{u}': {e}"))?;
            let port = uri.port.unwrap_or(5060);
            let host = uri
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            Some(
                openser_core::transport::send::resolve_host(&host, port)
                    .map_err(|e| format!("siptrace: bad host name in duplicate_uri: {e}"))?,
            )
        }
    };
    let on = shm::alloc_static(AtomicU32::new(u32::from(P.trace_on.get() != 0)))
        .ok_or("siptrace: no more shm")?;
    let _ = CFG.set(Cfg {
        on,
        user_avp: opt_avp(P.traced_user_avp.get())?,
        table_avp: opt_avp(P.trace_table_avp.get())?,
        dup,
    });
    let flag = P.trace_flag.get();
    if flag >= 0 {
        tm::callbacks::register_trace(trace_hook, 1u32 << flag);
    }
    Ok(())
}

fn child_init(rank: i32) -> Result<(), String> {
    if rank > 0 {
        db::open_in_child("siptrace", P.db_url.get());
    }
    Ok(())
}

fn trace_on() -> bool {
    CFG.get().is_some_and(|c| c.on.load(Ordering::Relaxed) != 0)
}

/// One message to store.
pub struct Record<'a> {
    pub msg: &'a [u8],
    pub callid: String,
    pub method: String,
    pub status: String,
    pub fromip: String,
    pub toip: String,
    pub direction: &'static str,
    pub fromtag: String,
}

fn hostport(a: SocketAddr) -> String {
    format!("{}:{}", a.ip(), a.port())
}

/// The fields of `buf` (a request or a reply) travelling from `from` to `to`.
pub fn record<'a>(
    buf: &'a [u8],
    from: String,
    to: SocketAddr,
    direction: &'static str,
) -> Option<Record<'a>> {
    let m = SipMsg::parse(buf).ok()?;
    let callid = m.callid()?.to_string();
    let fromtag = m
        .from()
        .ok()
        .and_then(|f| f.tag)
        .map(|t| m.s(t).to_string())
        .unwrap_or_default();
    let (method, status) = if m.is_request() {
        (m.method_str().to_string(), String::new())
    } else {
        let method = m
            .cseq()
            .ok()
            .map(|c| m.s(c.method_text).to_string())
            .unwrap_or_default();
        (
            method,
            m.status().map(|s| s.to_string()).unwrap_or_default(),
        )
    };
    Some(Record {
        msg: buf,
        callid,
        method,
        status,
        fromip: from,
        toip: format!("udp:{}", hostport(to)),
        direction,
        fromtag,
    })
}

fn local_ip(sock: SocketAddr) -> String {
    match P.trace_local_ip.get() {
        "" => hostport(sock),
        s => s.to_string(),
    }
}

/// Store `r` for the general trace (if on) and for each traced user; copy it to the
/// capture host when a user is traced.
fn store(r: &Record, on: bool, users: &[String], table: &str) -> bool {
    let c = &P.cols;
    let row = |user: &str| -> Vec<(&str, DbVal)> {
        vec![
            (c[3].get(), DbVal::Blob(r.msg.to_vec())),
            (c[1].get(), DbVal::Str(r.callid.clone())),
            (c[4].get(), DbVal::Str(r.method.clone())),
            (c[5].get(), DbVal::Str(r.status.clone())),
            (c[6].get(), DbVal::Str(r.fromip.clone())),
            (c[7].get(), DbVal::Str(r.toip.clone())),
            (c[0].get(), DbVal::DateTime(openser_core::clock::now())),
            (c[9].get(), DbVal::Str(r.direction.to_string())),
            (c[8].get(), DbVal::Str(r.fromtag.clone())),
            (c[2].get(), DbVal::Str(user.to_string())),
        ]
    };
    let mut rows = Vec::new();
    if on {
        rows.push(row(""));
    }
    if !users.is_empty() {
        send_duplicate(r.msg);
        for u in users {
            rows.push(row(u));
        }
    }
    if rows.is_empty() {
        return false;
    }
    let res = db::with_conn(P.db_url.get(), |conn| {
        for v in &rows {
            conn.insert(table, v)?;
        }
        Ok::<(), db::DbError>(())
    });
    match res {
        Ok(Ok(())) => {
            if r.status.is_empty() {
                TRACED_REQ.inc();
            } else {
                TRACED_RPL.inc();
            }
            true
        }
        Ok(Err(e)) | Err(e) => {
            openser_core::log_err!("error storing trace: {e}");
            false
        }
    }
}

fn send_duplicate(buf: &[u8]) {
    let Some(to) = CFG.get().and_then(|c| c.dup) else {
        return;
    };
    let sock = openser_core::transport::send::choose_socket(&to, None);
    if let Err(e) = openser_core::transport::send::send_udp(sock, to, buf) {
        openser_core::log_err!("cannot send the duplicate to {to}: {e}");
    }
}

fn users_of(avps: &AvpList) -> Vec<String> {
    let Some(id) = CFG.get().and_then(|c| c.user_avp.as_ref()) else {
        return Vec::new();
    };
    let mut v: Vec<String> = avps
        .get_all(id)
        .into_iter()
        .filter(|v| !v.is_null())
        .map(PvValue::to_text)
        .collect();
    // oldest first, as they were added
    v.reverse();
    v
}

fn table_of(avps: &AvpList) -> String {
    if let Some(id) = CFG.get().and_then(|c| c.table_avp.as_ref())
        && let Some(PvValue::Str(t)) = avps.get(id)
        && !t.is_empty()
    {
        return t.clone();
    }
    P.table.get().to_string()
}

fn cmd_sip_trace(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let users = users_of(&ctx.avps);
    let on = trace_on();
    if users.is_empty() && !on {
        return -1;
    }
    let m = &*ctx.msg;
    let Some(r) = record(m.buf(), hostport(m.rcv.src), m.rcv.dst, "in") else {
        openser_core::log_err!("cannot parse the Call-ID or From header");
        return -1;
    };
    let table = table_of(&ctx.avps);
    if store(&r, on, &users, &table) { 1 } else { -1 }
}

/// tm's trace hook for flagged transactions.
fn trace_hook(ev: &TraceEvent) {
    let users = users_of(&ev.avps);
    let on = trace_on();
    if users.is_empty() && !on {
        return;
    }
    let r = match ev.dir {
        TraceDir::RequestOut => record(&ev.buf, local_ip(ev.local), ev.peer, "out"),
        TraceDir::ReplyIn => record(&ev.buf, hostport(ev.peer), ev.local, "in"),
        TraceDir::ReplyOut => record(&ev.buf, local_ip(ev.local), ev.peer, "out"),
    };
    let Some(r) = r else {
        openser_core::log_err!("cannot parse a traced message");
        return;
    };
    let table = table_of(&ev.avps);
    store(&r, on, &users, &table);
}

/// MI `sip_trace on|off`.
fn mi_sip_trace(args: &[MiArg]) -> MiReply {
    let Some(a) = args.first() else {
        return MiReply::err(400, "Too few or too many arguments");
    };
    let Some(c) = CFG.get() else {
        return MiReply::err(500, "Internal error");
    };
    match a.value.to_ascii_lowercase().as_str() {
        "on" => c.on.store(1, Ordering::Relaxed),
        "off" => c.on.store(0, Ordering::Relaxed),
        _ => return MiReply::err(400, "Bad parameter value"),
    }
    MiReply::ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_requests_and_replies() {
        let req = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
            From: <sip:a@h>;tag=ft\r\nTo: <sip:b@h>\r\nCall-ID: cid1\r\nCSeq: 1 INVITE\r\n\r\n";
        let to: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let r = record(req, "10.0.0.1:5070".into(), to, "in").unwrap();
        assert_eq!(
            (r.callid.as_str(), r.method.as_str(), r.status.as_str()),
            ("cid1", "INVITE", "")
        );
        assert_eq!(
            (r.fromip.as_str(), r.toip.as_str()),
            ("10.0.0.1:5070", "udp:10.0.0.2:5060")
        );
        assert_eq!(r.fromtag, "ft");
        let rpl = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
            From: <sip:a@h>;tag=ft\r\nTo: <sip:b@h>;tag=tt\r\nCall-ID: cid1\r\nCSeq: 1 INVITE\r\n\r\n";
        let r = record(rpl, "10.0.0.2:5060".into(), to, "out").unwrap();
        assert_eq!(
            (r.method.as_str(), r.status.as_str(), r.direction),
            ("INVITE", "486", "out")
        );
        assert!(record(b"garbage", String::new(), to, "in").is_none());
    }

    #[test]
    fn avp_specs() {
        assert_eq!(avp_of("$avp(s:user)"), Ok(AvpId::Str("user".into())));
        assert_eq!(avp_of("i:10"), Ok(AvpId::Int(10)));
        assert!(avp_of("$ru").is_err());
    }
}

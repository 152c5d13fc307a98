//! `allow_trusted()` and the `trusted` table: queried per call (`db_mode` 0) or
//! cached (`db_mode` 1).
//!
//! The cache: the attendant loads the table in `mod_init`; MI `trusted_reload` (in
//! the MI process) reloads it. The rows are published in shared memory as one
//! serialised snapshot in a fixed buffer (`SNAPSHOT_CAP` bytes) with a generation
//! counter, under one lock held only while bytes are copied. Each process keeps its
//! own parsed copy — rows grouped by source IP, `from_pattern`s compiled once — and
//! re-reads the snapshot when the generation moved: a request costs one atomic load
//! plus a hash lookup, and no regular expression is compiled per request (1.2
//! compiled the pattern of every candidate row on every call).

use super::P;
use super::snapshot::Snapshot;
use openser_core::db::{self, DbVal, Key};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::parser::Proto;
use openser_core::re::Regex;
use openser_core::script::{AvpId, Ctx, PvValue};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Room for the serialised table in shared memory (about 15,000 typical rows).
pub const SNAPSHOT_CAP: usize = 1 << 20;

const FIELD: u8 = 0x1f;
const ROW: u8 = 0x1e;
const NULL: &str = "\u{0}";

/// One row of the trusted table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedRow {
    pub src_ip: String,
    pub proto: String,
    pub pattern: Option<String>,
    pub tag: Option<String>,
}

static SHARED: OnceLock<Snapshot> = OnceLock::new();
static TAG_AVP: OnceLock<Option<AvpId>> = OnceLock::new();

/// A row ready for matching.
struct Compiled {
    proto: Option<Proto>,
    pattern: Option<Regex>,
    tag: Option<String>,
}

/// This process's parsed copy of the snapshot.
struct Local {
    epoch: u64,
    by_ip: HashMap<String, Vec<Compiled>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// `peer_tag_avp`'s check: an AVP spec, 1.2 style (`i:707`, `s:tag`) or `$avp(...)`.
pub fn check_tag_avp(s: &str) -> Result<(), String> {
    avp_of(s).map(|_| ())
}

fn avp_of(s: &str) -> Result<AvpId, String> {
    AvpId::parse_param(s)
}

/// Serialise rows for the snapshot.
pub fn serialise(rows: &[TrustedRow]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        for (i, f) in [
            r.src_ip.as_str(),
            r.proto.as_str(),
            r.pattern.as_deref().unwrap_or(NULL),
            r.tag.as_deref().unwrap_or(NULL),
        ]
        .iter()
        .enumerate()
        {
            if i > 0 {
                out.push(FIELD);
            }
            out.extend(f.bytes().filter(|&b| b != FIELD && b != ROW));
        }
        out.push(ROW);
    }
    out
}

/// The rows of a snapshot.
pub fn deserialise(b: &[u8]) -> Vec<TrustedRow> {
    let opt = |s: &[u8]| {
        if s == NULL.as_bytes() {
            None
        } else {
            Some(String::from_utf8_lossy(s).into_owned())
        }
    };
    b.split(|&c| c == ROW)
        .filter(|r| !r.is_empty())
        .filter_map(|r| {
            let f: Vec<&[u8]> = r.split(|&c| c == FIELD).collect();
            if f.len() != 4 {
                return None;
            }
            Some(TrustedRow {
                src_ip: String::from_utf8_lossy(f[0]).into_owned(),
                proto: String::from_utf8_lossy(f[1]).into_owned(),
                pattern: opt(f[2]),
                tag: opt(f[3]),
            })
        })
        .collect()
}

/// `proto` column → None for `any`, else the transport; Err for an unknown one.
fn proto_of(s: &str) -> Result<Option<Proto>, ()> {
    if s.eq_ignore_ascii_case("any") {
        return Ok(None);
    }
    Proto::from_name(s.as_bytes()).map(Some).ok_or(())
}

fn compile(rows: Vec<TrustedRow>) -> HashMap<String, Vec<Compiled>> {
    let mut m: HashMap<String, Vec<Compiled>> = HashMap::new();
    for r in rows {
        let Ok(proto) = proto_of(&r.proto) else {
            openser_core::log_err!(
                "unknown protocol '{}' for {}: row ignored",
                r.proto,
                r.src_ip
            );
            continue;
        };
        let pattern = match r.pattern.as_deref() {
            None => None,
            Some(p) => match Regex::new(p, false, true) {
                Ok(re) => Some(re),
                Err(e) => {
                    openser_core::log_err!(
                        "error in regular expression '{p}' ({e}): row of {} ignored",
                        r.src_ip
                    );
                    continue;
                }
            },
        };
        m.entry(r.src_ip.to_ascii_lowercase())
            .or_default()
            .push(Compiled {
                proto,
                pattern,
                tag: r.tag,
            });
    }
    m
}

/// Read the table from the database.
pub fn read_table(conn: &mut dyn db::DbConn) -> Result<Vec<TrustedRow>, String> {
    let cols = [
        P.source_col.get(),
        P.proto_col.get(),
        P.from_col.get(),
        P.tag_col.get(),
    ];
    let rows = conn
        .query(P.trusted_table.get(), &[], &cols, None)
        .map_err(|e| format!("error while querying the trusted table: {e}"))?;
    let text = |v: &DbVal| v.as_str().map(|s| s.into_owned());
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(ip), Some(proto)) = (text(&r[0]), text(&r[1])) else {
            return Err("database problem: NULL src_ip or proto in the trusted table".into());
        };
        out.push(TrustedRow {
            src_ip: ip,
            proto,
            pattern: text(&r[2]),
            tag: text(&r[3]),
        });
    }
    Ok(out)
}

/// Publish rows as the new snapshot.
fn publish(rows: &[TrustedRow]) -> Result<(), String> {
    let Some(sh) = SHARED.get() else {
        return Err("the trusted cache is not enabled (db_mode 0)".into());
    };
    sh.publish(&serialise(rows))
}

/// The current snapshot's rows and generation.
fn snapshot() -> Option<(u64, Vec<TrustedRow>)> {
    let (epoch, bytes) = SHARED.get()?.read();
    Some((epoch, deserialise(&bytes)))
}

pub(crate) fn url() -> Option<&'static str> {
    let u = P.db_url.get();
    (!u.is_empty()).then_some(u)
}

pub fn mod_init() -> Result<(), String> {
    let tag = match P.peer_tag_avp.get() {
        "" => None,
        s => Some(avp_of(s).map_err(|e| format!("permissions: {e}"))?),
    };
    let _ = TAG_AVP.set(tag);
    let Some(url) = url() else {
        openser_core::log_info!(
            "db_url parameter of permissions module not set, disabling allow_trusted"
        );
        return Ok(());
    };
    db::check_url(url).map_err(|e| format!("permissions: {e}"))?;
    if P.db_mode.get() != 1 {
        return Ok(());
    }
    let snap =
        Snapshot::new(SNAPSHOT_CAP).ok_or("permissions: no shared memory for the trusted cache")?;
    if SHARED.set(snap).is_ok()
        && let Some(s) = SHARED.get()
    {
        super::snapshot::register_repair(s, "permissions trusted table");
    }
    let mut conn = db::connect(url)
        .map_err(|e| format!("permissions: unable to connect the database: {e}"))?;
    let rows = read_table(conn.as_mut()).map_err(|e| format!("permissions: {e}"))?;
    drop(conn);
    publish(&rows).map_err(|e| format!("permissions: {e}"))?;
    openser_core::log_dbg!("trusted table loaded: {} rows", rows.len());
    Ok(())
}

pub fn child_init(rank: i32) -> Result<(), String> {
    if let Some(u) = url()
        && (P.db_mode.get() == 0 && rank > 0)
    {
        db::open_in_child("permissions", u);
    }
    Ok(())
}

/// Whether one candidate row matches the request.
fn row_matches(proto: Option<Proto>, pattern: Option<&Regex>, rcv: Proto, from: &str) -> bool {
    proto.is_none_or(|p| p == rcv) && pattern.is_none_or(|re| re.is_match(from))
}

fn set_tag(ctx: &mut Ctx, tag: Option<String>) {
    if let (Some(Some(avp)), Some(t)) = (TAG_AVP.get(), tag) {
        ctx.avps.add(avp.clone(), PvValue::Str(t));
    }
}

pub fn cmd_allow_trusted(ctx: &mut Ctx, _args: &[openser_core::module::FixedArg]) -> i32 {
    let Some(url) = url() else {
        openser_core::log_err!("set the db_url parameter of the permissions module first");
        return -1;
    };
    let from = match ctx.msg.from() {
        Ok(f) => ctx.msg.s(f.uri).to_string(),
        Err(_) => return -1,
    };
    let src_ip = ctx.msg.rcv.src.ip().to_string();
    let rcv = ctx.msg.rcv.proto;
    if SHARED.get().is_some() {
        let tag = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let epoch = SHARED.get()?.generation();
            if l.as_ref().is_none_or(|c| c.epoch != epoch) {
                let (epoch, rows) = snapshot()?;
                *l = Some(Local {
                    epoch,
                    by_ip: compile(rows),
                });
            }
            let rows = l.as_ref()?.by_ip.get(&src_ip.to_ascii_lowercase())?;
            rows.iter()
                .find(|r| row_matches(r.proto, r.pattern.as_ref(), rcv, &from))
                .map(|r| r.tag.clone())
        });
        return match tag {
            Some(t) => {
                set_tag(ctx, t);
                1
            }
            None => -1,
        };
    }
    let cols = [P.proto_col.get(), P.from_col.get(), P.tag_col.get()];
    let keys = [Key::eq(P.source_col.get(), src_ip.as_str())];
    let rows = match db::with_conn(url, |c| c.query(P.trusted_table.get(), &keys, &cols, None)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) | Err(e) => {
            openser_core::log_err!("error while querying database: {e}");
            return -1;
        }
    };
    for r in rows {
        let Some(proto) = r[0].as_str() else { continue };
        let Ok(proto) = proto_of(&proto) else {
            continue;
        };
        let pattern = match r[1].as_str() {
            None => None,
            Some(p) => match Regex::new(&p, false, true) {
                Ok(re) => Some(re),
                Err(_) => {
                    openser_core::log_err!("error in regular expression '{p}'");
                    continue;
                }
            },
        };
        if row_matches(proto, pattern.as_ref(), rcv, &from) {
            let tag = r[2].as_str().map(|s| s.into_owned());
            set_tag(ctx, tag);
            return 1;
        }
    }
    -1
}

/// MI `trusted_reload`.
pub fn mi_reload(_args: &[MiArg]) -> MiReply {
    let Some(url) = url() else {
        return MiReply::err(400, "Trusted table reload failed");
    };
    if SHARED.get().is_none() {
        return MiReply::err(400, "Trusted table reload failed");
    }
    let rows = match db::with_conn(url, read_table) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            openser_core::log_err!("{e}");
            return MiReply::err(400, "Trusted table reload failed");
        }
        Err(e) => {
            openser_core::log_err!("unable to connect the database: {e}");
            return MiReply::err(400, "Trusted table reload failed");
        }
    };
    match publish(&rows) {
        Ok(()) => MiReply::ok(Vec::new()),
        Err(e) => {
            openser_core::log_err!("{e}");
            MiReply::err(400, "Trusted table reload failed")
        }
    }
}

/// MI `trusted_dump`: one line per row, `<src_ip, proto, from_pattern, tag>`.
pub fn mi_dump(_args: &[MiArg]) -> MiReply {
    let Some((_, rows)) = snapshot() else {
        return MiReply::err(400, "Trusted table is not cached (db_mode 0)");
    };
    let nodes = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            MiNode::value(format!(
                "{i:4} <{}, {}, {}, {}>",
                r.src_ip,
                r.proto,
                r.pattern.as_deref().unwrap_or("NULL"),
                r.tag.as_deref().unwrap_or("NULL")
            ))
        })
        .collect();
    MiReply::ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: &str, proto: &str, pat: Option<&str>, tag: Option<&str>) -> TrustedRow {
        TrustedRow {
            src_ip: ip.into(),
            proto: proto.into(),
            pattern: pat.map(Into::into),
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn snapshot_round_trip() {
        let rows = vec![
            row("10.0.0.1", "any", None, Some("gw1")),
            row("10.0.0.2", "udp", Some("^sip:.*@carrier\\.net$"), None),
            row("::1", "tcp", Some(""), Some("")),
        ];
        assert_eq!(deserialise(&serialise(&rows)), rows);
        assert!(deserialise(b"").is_empty());
    }

    #[test]
    fn matching() {
        let m = compile(vec![
            row("10.0.0.1", "any", None, Some("gw1")),
            row("10.0.0.2", "udp", Some("^sip:.*@carrier\\.net$"), None),
            row("10.0.0.3", "bogus", None, None),
        ]);
        let r = &m["10.0.0.2"][0];
        assert!(row_matches(
            r.proto,
            r.pattern.as_ref(),
            Proto::Udp,
            "sip:a@carrier.net"
        ));
        assert!(!row_matches(
            r.proto,
            r.pattern.as_ref(),
            Proto::Tcp,
            "sip:a@carrier.net"
        ));
        assert!(!row_matches(
            r.proto,
            r.pattern.as_ref(),
            Proto::Udp,
            "sip:a@other.net"
        ));
        let r = &m["10.0.0.1"][0];
        assert!(row_matches(
            r.proto,
            r.pattern.as_ref(),
            Proto::Tcp,
            "anything"
        ));
        assert!(!m.contains_key("10.0.0.3"), "unknown protocol ignored");
    }

    #[test]
    fn tag_avp_specs() {
        assert_eq!(avp_of("i:707"), Ok(AvpId::Int(707)));
        assert_eq!(avp_of("$avp(s:peer)"), Ok(AvpId::Str("peer".into())));
        assert!(avp_of("$ru").is_err());
    }
}

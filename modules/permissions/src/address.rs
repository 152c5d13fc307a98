//! 1.2's address table: `set_address_group(group)`, `allow_address(ip_pv, port_pv)`,
//! `allow_source_address(group)` against the cached `address` table (rows: group,
//! IPv4 address, mask 1–32, port; port 0 matches any port), MI `address_reload`,
//! `address_dump` (the /32 entries) and `subnet_dump` (the others).
//!
//! The table is loaded at start-up when `db_url` is set and kept as a snapshot in
//! shared memory (`snapshot.rs`), as the trusted cache. The group of
//! `set_address_group` is per process, kept until changed, as in 1.2.

use super::P;
use super::snapshot::Snapshot;
use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::db::{self, DbVal};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::FixedArg;
use openser_core::script::Ctx;
use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::sync::OnceLock;

/// Room for the serialised table (about 40,000 rows).
pub const SNAPSHOT_CAP: usize = 1 << 20;

/// One row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRow {
    pub grp: u32,
    pub ip: Ipv4Addr,
    pub mask: u8,
    pub port: u16,
}

impl AddrRow {
    fn matches(&self, grp: u32, ip: Ipv4Addr, port: u16) -> bool {
        let m = if self.mask >= 32 {
            u32::MAX
        } else {
            !(u32::MAX >> self.mask)
        };
        self.grp == grp
            && (u32::from(self.ip) & m) == (u32::from(ip) & m)
            && (self.port == 0 || self.port == port)
    }
}

static SNAP: OnceLock<Snapshot> = OnceLock::new();

thread_local! {
    static GROUP: Cell<u32> = const { Cell::new(0) };
    static LOCAL: RefCell<Option<(u64, Vec<AddrRow>)>> = const { RefCell::new(None) };
}

pub fn serialise(rows: &[AddrRow]) -> Vec<u8> {
    let mut s = String::new();
    for r in rows {
        s.push_str(&format!("{} {} {} {}\n", r.grp, r.ip, r.mask, r.port));
    }
    s.into_bytes()
}

pub fn deserialise(b: &[u8]) -> Vec<AddrRow> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(AddrRow {
                grp: f.first()?.parse().ok()?,
                ip: f.get(1)?.parse().ok()?,
                mask: f.get(2)?.parse().ok()?,
                port: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Read the address table; rows that are not a group, an IPv4 address, a mask of
/// 1–32 and a port are skipped with an error, as 1.2 does.
pub fn read_table(conn: &mut dyn db::DbConn) -> Result<Vec<AddrRow>, String> {
    let cols = [
        P.grp_col.get(),
        P.ip_addr_col.get(),
        P.mask_col.get(),
        P.port_col.get(),
    ];
    let rows = conn
        .query(P.address_table.get(), &[], &cols, None)
        .map_err(|e| format!("error while querying the address table: {e}"))?;
    let int = |v: &DbVal| v.as_int();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let ip = r[1]
            .as_str()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
        match (int(&r[0]), ip, int(&r[2]), int(&r[3])) {
            (Some(g), Some(ip), Some(m), Some(p))
                if g >= 0 && (1..=32).contains(&m) && (0..=65535).contains(&p) =>
            {
                out.push(AddrRow {
                    grp: g as u32,
                    ip,
                    mask: m as u8,
                    port: p as u16,
                })
            }
            _ => openser_core::log_err!("bad row in the address table: {r:?}"),
        }
    }
    Ok(out)
}

/// mod_init: load the table (when `db_url` is set).
pub fn mod_init(url: &str) -> Result<(), String> {
    let snap =
        Snapshot::new(SNAPSHOT_CAP).ok_or("permissions: no shared memory for the address table")?;
    let mut conn = db::connect(url)
        .map_err(|e| format!("permissions: unable to connect the database: {e}"))?;
    let rows = read_table(conn.as_mut()).map_err(|e| format!("permissions: {e}"))?;
    drop(conn);
    snap.publish(&serialise(&rows))
        .map_err(|e| format!("permissions: address table: {e}"))?;
    if SNAP.set(snap).is_ok()
        && let Some(s) = SNAP.get()
    {
        super::snapshot::register_repair(s, "permissions address table");
    }
    Ok(())
}

/// Whether `ip:port` is in group `grp` of the cached table.
fn allowed(grp: u32, ip: Ipv4Addr, port: u16) -> bool {
    let Some(snap) = SNAP.get() else {
        openser_core::log_err!("the address table is not loaded (set db_url)");
        return false;
    };
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.as_ref().is_none_or(|(g, _)| *g != snap.generation()) {
            let (epoch, bytes) = snap.read();
            *l = Some((epoch, deserialise(&bytes)));
        }
        l.as_ref()
            .is_some_and(|(_, rows)| rows.iter().any(|r| r.matches(grp, ip, port)))
    })
}

/// The group argument: a number, or a PV read per call.
pub fn fixup_group(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    match &args[0].value {
        ArgValue::Int(i) if *i >= 0 => Ok(vec![FixedArg::Int(*i)]),
        ArgValue::Str(s) | ArgValue::Ident(s) if s.trim().parse::<u32>().is_ok() => {
            Ok(vec![FixedArg::Int(
                s.trim().parse::<u32>().unwrap_or(0) as i64
            )])
        }
        _ => openser_core::script::fixup::default_fixup(&args[..1]),
    }
}

fn group_of(ctx: &mut Ctx, a: &FixedArg) -> Option<u32> {
    ctx.arg_int(a).and_then(|g| u32::try_from(g).ok())
}

pub fn cmd_set_address_group(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    match group_of(ctx, &args[0]) {
        Some(g) => {
            GROUP.with(|c| c.set(g));
            1
        }
        None => {
            openser_core::log_err!("address group is not an unsigned integer");
            -1
        }
    }
}

pub fn cmd_allow_address(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let ip = ctx.arg_str(&args[0]);
    let Ok(ip) = ip.trim().parse::<Ipv4Addr>() else {
        openser_core::log_err!("'{ip}' is not an IPv4 address");
        return -1;
    };
    let Some(port) = ctx.arg_int(&args[1]).and_then(|p| u16::try_from(p).ok()) else {
        openser_core::log_err!("bad port value");
        return -1;
    };
    if allowed(GROUP.with(Cell::get), ip, port) {
        1
    } else {
        -1
    }
}

pub fn cmd_allow_source_address(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(g) = group_of(ctx, &args[0]) else {
        return -1;
    };
    let src = ctx.msg.rcv.src;
    let std::net::IpAddr::V4(ip) = src.ip() else {
        return -1;
    };
    if allowed(g, ip, src.port()) { 1 } else { -1 }
}

fn rows_or_err() -> Result<Vec<AddrRow>, MiReply> {
    match SNAP.get() {
        Some(s) => Ok(deserialise(&s.read().1)),
        None => Err(MiReply::err(400, "Address table is not loaded")),
    }
}

/// MI `address_reload`.
pub fn mi_address_reload(_args: &[MiArg]) -> MiReply {
    let (Some(url), Some(snap)) = (super::trusted::url(), SNAP.get()) else {
        return MiReply::err(400, "Address table reload failed");
    };
    let r = db::with_conn(url, read_table)
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .and_then(|rows| snap.publish(&serialise(&rows)));
    match r {
        Ok(()) => MiReply::ok(Vec::new()),
        Err(e) => {
            openser_core::log_err!("{e}");
            MiReply::err(400, "Address table reload failed")
        }
    }
}

/// MI `address_dump`: the single addresses, `<group, ip, port>`.
pub fn mi_address_dump(_args: &[MiArg]) -> MiReply {
    let rows = match rows_or_err() {
        Ok(r) => r,
        Err(e) => return e,
    };
    MiReply::ok(
        rows.iter()
            .filter(|r| r.mask == 32)
            .enumerate()
            .map(|(i, r)| MiNode::value(format!("{i:4} <{}, {}, {}>", r.grp, r.ip, r.port)))
            .collect(),
    )
}

/// MI `subnet_dump`: the subnets, `<group, ip, mask, port>`.
pub fn mi_subnet_dump(_args: &[MiArg]) -> MiReply {
    let rows = match rows_or_err() {
        Ok(r) => r,
        Err(e) => return e,
    };
    MiReply::ok(
        rows.iter()
            .filter(|r| r.mask < 32)
            .enumerate()
            .map(|(i, r)| {
                MiNode::value(format!(
                    "{i:4} <{}, {}, {}, {}>",
                    r.grp, r.ip, r.mask, r.port
                ))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(grp: u32, ip: &str, mask: u8, port: u16) -> AddrRow {
        AddrRow {
            grp,
            ip: ip.parse().unwrap(),
            mask,
            port,
        }
    }

    #[test]
    fn subnets_ports_groups() {
        let gw = row(1, "192.0.2.10", 32, 5060);
        assert!(gw.matches(1, "192.0.2.10".parse().unwrap(), 5060));
        assert!(!gw.matches(1, "192.0.2.10".parse().unwrap(), 5070));
        assert!(!gw.matches(2, "192.0.2.10".parse().unwrap(), 5060));
        let net = row(1, "10.1.0.0", 16, 0);
        assert!(net.matches(1, "10.1.200.3".parse().unwrap(), 1234));
        assert!(!net.matches(1, "10.2.0.1".parse().unwrap(), 1234));
        let all = row(0, "0.0.0.0", 1, 0);
        assert!(all.matches(0, "127.0.0.1".parse().unwrap(), 1));
        assert!(!all.matches(0, "200.0.0.1".parse().unwrap(), 1));
    }

    #[test]
    fn snapshot_round_trip() {
        let rows = vec![row(1, "192.0.2.10", 32, 5060), row(7, "10.0.0.0", 8, 0)];
        assert_eq!(deserialise(&serialise(&rows)), rows);
    }
}

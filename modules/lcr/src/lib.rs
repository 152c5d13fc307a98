//! lcr (OpenSER 1.2 `modules/lcr`): least cost routing — sequential forwarding of a
//! call to the PSTN gateways whose rules match its number, and sequential forking to
//! contacts of different q values.
//!
//! Tables (read at start-up and by MI `lcr_reload` into shared memory; every process
//! notices a reload through a generation counter and keeps a private copy with the
//! `from_uri` patterns compiled):
//! * `gw` — `gw_name`, `ip_addr` (IPv4), `port` (NULL/0 = none), `uri_scheme` (NULL or
//!   1 = sip, 2 = sips), `transport` (NULL = none, 1 udp, 2 tcp, 3 tls), `grp_id`,
//!   `strip` (digits cut from the number), `prefix` (put in front of it);
//! * `lcr` — `prefix` (of the Request-URI user), `from_uri` (a regular expression over
//!   the caller's URI — the `rpid_avp` value when set, else the From URI; empty or NULL
//!   matches everything), `grp_id` (the gateways it routes to), `priority`.
//!
//! Functions:
//! * `load_gws([grp])` (REQUEST, FAILURE) — every gateway of every rule whose prefix
//!   starts the Request-URI user and whose `from_uri` matches, once (by IP), ordered by
//!   (1) longest prefix, (2) priority — the lower value first, the order 1.2's sort
//!   gives —, (3) randomly among equals; stored as `gw_uri_avp` values
//!   (`scheme:prefix|strip@ip[:port][;transport=x]`) to be used newest first. Only
//!   gateways of group `grp` when given. 1, or -1 on error.
//! * `next_gw()` (REQUEST, FAILURE) — takes the next `gw_uri_avp`: the Request-URI
//!   becomes scheme, gateway prefix, the user less `strip` digits, gateway address; in
//!   the request route the user is saved in `ruri_user_avp`, in failure_route it is
//!   taken from there (the new Request-URI is what the next `t_relay()` sends, as 1.2's
//!   appended branch). -1 when no gateway is left.
//! * `from_gw([grp])` (REQUEST, FAILURE, ONREPLY) — the request came from a gateway's
//!   IP (of group `grp`).
//! * `to_gw([grp])` (REQUEST, FAILURE) — the Request-URI host is a gateway's IP.
//! * `load_contacts()` (REQUEST) — when the destination set (Request-URI + branches)
//!   has different q values, moves it into `contact_avp` values (highest q used first)
//!   and clears the branches; 1 (also when there is nothing to do).
//! * `next_contacts()` (REQUEST, FAILURE) — the next group of equal q: the first
//!   becomes the Request-URI, the others branches; sets `fr_inv_timer_avp` to
//!   `fr_inv_timer_next` while lower-q contacts remain, and (failure_route) to
//!   `fr_inv_timer` for the last group. Request route: 1 also with nothing to load;
//!   failure_route: -1 when nothing is left.
//!
//! MI: `lcr_reload` (re-reads both tables; 400 "Reload of gateways failed" keeps the
//! old ones), `lcr_dump` (a `GW` node per gateway with GRP_ID, URI, STRIP, PREFIX; a
//! `RULE` node per rule with PREFIX, FROM_URI, GRP_ID, PRIORITY).
//!
//! Parameters (1.2 defaults): `db_url` (the read-only URL), `gw_table` "gw",
//! `gw_name_column`, `ip_addr_column`, `port_column`, `uri_scheme_column`,
//! `transport_column`, `grp_id_column`, `lcr_table` "lcr", `strip_column`,
//! `prefix_column`, `from_uri_column`, `priority_column` (named as the columns),
//! `gw_uri_avp` "1400", `ruri_user_avp` "1402", `contact_avp` "1401" (digits: an
//! integer AVP name), `fr_inv_timer_avp` "fr_inv_timer_avp", `fr_inv_timer` 90,
//! `fr_inv_timer_next` 30, `rpid_avp` "rpid". `from_uri` patterns are POSIX extended
//! regular expressions here (1.2: basic); a bad one fails the load.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::db::DbConn;
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam,
};
use openser_core::parser::Uri;
use openser_core::route::{FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::{AvpId, Branch, Ctx, PvValue};

use shm::SharedBlob as Cache;

const RF: u32 = REQUEST_ROUTE | FAILURE_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "lcr",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("gw_table", &P.gw_table),
        Param::str("gw_name_column", &P.gw_name_col),
        Param::str("ip_addr_column", &P.ip_addr_col),
        Param::str("port_column", &P.port_col),
        Param::str("uri_scheme_column", &P.uri_scheme_col),
        Param::str("transport_column", &P.transport_col),
        Param::str("grp_id_column", &P.grp_id_col),
        Param::str("lcr_table", &P.lcr_table),
        Param::str("strip_column", &P.strip_col),
        Param::str("prefix_column", &P.prefix_col),
        Param::str("from_uri_column", &P.from_uri_col),
        Param::str("priority_column", &P.priority_col),
        Param::str_with("gw_uri_avp", &P.gw_uri_avp, check_avp),
        Param::str_with("ruri_user_avp", &P.ruri_user_avp, check_avp),
        Param::str_with("contact_avp", &P.contact_avp, check_avp),
        Param::str_with("fr_inv_timer_avp", &P.fr_inv_timer_avp, check_avp),
        Param::uint("fr_inv_timer", &P.fr_inv_timer),
        Param::uint("fr_inv_timer_next", &P.fr_inv_timer_next),
        Param::str_with("rpid_avp", &P.rpid_avp, check_avp),
    ],
    cmds: &[
        CmdExport::new("load_gws", 0, 1, RF, cmd_load_gws).fixup(fixup_grp),
        CmdExport::new("next_gw", 0, 0, RF, cmd_next_gw),
        CmdExport::new("from_gw", 0, 1, RF | ONREPLY_ROUTE, cmd_from_gw).fixup(fixup_grp),
        CmdExport::new("to_gw", 0, 1, RF, cmd_to_gw).fixup(fixup_grp),
        CmdExport::new("load_contacts", 0, 0, REQUEST_ROUTE, cmd_load_contacts),
        CmdExport::new("next_contacts", 0, 0, RF, cmd_next_contacts),
    ],
    mi: &[
        MiExport::new("lcr_reload", mi_reload).no_input(),
        MiExport::new("lcr_dump", mi_dump).no_input(),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub db_url: StrParam,
    pub gw_table: StrParam,
    pub gw_name_col: StrParam,
    pub ip_addr_col: StrParam,
    pub port_col: StrParam,
    pub uri_scheme_col: StrParam,
    pub transport_col: StrParam,
    pub grp_id_col: StrParam,
    pub lcr_table: StrParam,
    pub strip_col: StrParam,
    pub prefix_col: StrParam,
    pub from_uri_col: StrParam,
    pub priority_col: StrParam,
    pub gw_uri_avp: StrParam,
    pub ruri_user_avp: StrParam,
    pub contact_avp: StrParam,
    pub fr_inv_timer_avp: StrParam,
    pub fr_inv_timer: IntParam,
    pub fr_inv_timer_next: IntParam,
    pub rpid_avp: StrParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(openser_core::db::DEFAULT_RO_URL),
    gw_table: StrParam::new("gw"),
    gw_name_col: StrParam::new("gw_name"),
    ip_addr_col: StrParam::new("ip_addr"),
    port_col: StrParam::new("port"),
    uri_scheme_col: StrParam::new("uri_scheme"),
    transport_col: StrParam::new("transport"),
    grp_id_col: StrParam::new("grp_id"),
    lcr_table: StrParam::new("lcr"),
    strip_col: StrParam::new("strip"),
    prefix_col: StrParam::new("prefix"),
    from_uri_col: StrParam::new("from_uri"),
    priority_col: StrParam::new("priority"),
    gw_uri_avp: StrParam::new("1400"),
    ruri_user_avp: StrParam::new("1402"),
    contact_avp: StrParam::new("1401"),
    fr_inv_timer_avp: StrParam::new("fr_inv_timer_avp"),
    fr_inv_timer: IntParam::new(90),
    fr_inv_timer_next: IntParam::new(30),
    rpid_avp: StrParam::new("rpid"),
};

/// 1.2's lcr AVP names: only digits = an integer name; otherwise any spelling of
/// `AvpId::parse_param` (`i:N`, `s:name`, `$avp(…)`, a bare name).
pub fn avp_id(s: &str) -> Option<AvpId> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(AvpId::Int);
    }
    AvpId::parse_param(s).ok()
}

fn check_avp(s: &str) -> Result<(), String> {
    avp_id(s)
        .map(|_| ())
        .ok_or_else(|| format!("bad AVP name '{s}'"))
}

/// Internal AVP marking, in step with `contact_avp`, the last contact of a q group.
const QFLAG_AVP: &str = "__lcr_contact_last_of_q";

// ---------------------------------------------------------------- tables

/// A gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gw {
    pub name: String,
    pub grp_id: u32,
    pub ip: Ipv4Addr,
    /// 0 = none
    pub port: u16,
    /// 1 sip, 2 sips
    pub scheme: u8,
    /// 0 none, 1 udp, 2 tcp, 3 tls
    pub transport: u8,
    pub strip: u32,
    pub prefix: String,
}

/// A routing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub from_uri: String,
    pub grp_id: u32,
    pub priority: u32,
}

/// Both tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub gws: Vec<Gw>,
    pub rules: Vec<Rule>,
}

impl Gw {
    /// The gateway's `gw_uri_avp` value: `scheme:prefix|strip@ip[:port][;transport=x]`.
    pub fn avp_value(&self) -> String {
        let scheme = if self.scheme == 2 { "sips" } else { "sip" };
        let mut s = format!("{scheme}:{}|{}@{}", self.prefix, self.strip, self.ip);
        if self.port != 0 {
            s.push_str(&format!(":{}", self.port));
        }
        if let Some(t) = transport_name(self.transport) {
            s.push_str(";transport=");
            s.push_str(t);
        }
        s
    }
}

fn transport_name(t: u8) -> Option<&'static str> {
    match t {
        1 => Some("udp"),
        2 => Some("tcp"),
        3 => Some("tls"),
        _ => None,
    }
}

/// Read both tables (1.2's checks: IPv4 address, scheme 1/2, transport 0-3).
pub fn load_tables(conn: &mut dyn DbConn) -> Result<Tables, String> {
    let gw_cols = [
        P.gw_name_col.get(),
        P.ip_addr_col.get(),
        P.port_col.get(),
        P.uri_scheme_col.get(),
        P.transport_col.get(),
        P.strip_col.get(),
        P.prefix_col.get(),
        P.grp_id_col.get(),
    ];
    let rows = conn
        .query(P.gw_table.get(), &[], &gw_cols, None)
        .map_err(|e| format!("failed to query gw data: {e}"))?;
    let mut t = Tables::default();
    for r in rows {
        let text = |i: usize| {
            r.get(i)
                .and_then(|v| v.as_str().map(|s| s.trim().to_string()))
                .unwrap_or_default()
        };
        let int = |i: usize| r.get(i).and_then(|v| v.as_int()).unwrap_or(0);
        let name = text(0);
        let ip: Ipv4Addr = text(1)
            .parse()
            .map_err(|_| format!("invalid IP address of gw '{name}': '{}'", text(1)))?;
        let port = u16::try_from(int(2))
            .map_err(|_| format!("port of gw '{name}' is too large: {}", int(2)))?;
        let scheme = match int(3) {
            0 | 1 => 1,
            2 => 2,
            s => {
                return Err(format!(
                    "unknown or unsupported URI scheme of gw '{name}': {s}"
                ));
            }
        };
        let transport = match int(4) {
            t @ 0..=3 => t as u8,
            t => {
                return Err(format!(
                    "unknown or unsupported transport of gw '{name}': {t}"
                ));
            }
        };
        t.gws.push(Gw {
            grp_id: int(7).max(0) as u32,
            ip,
            port,
            scheme,
            transport,
            strip: int(5).max(0) as u32,
            prefix: text(6),
            name,
        });
    }
    let lcr_cols = [
        P.prefix_col.get(),
        P.from_uri_col.get(),
        P.grp_id_col.get(),
        P.priority_col.get(),
    ];
    let rows = conn
        .query(P.lcr_table.get(), &[], &lcr_cols, None)
        .map_err(|e| format!("failed to query lcr data: {e}"))?;
    for r in rows {
        let text = |i: usize| {
            r.get(i)
                .and_then(|v| v.as_str().map(|s| s.trim().to_string()))
                .unwrap_or_default()
        };
        let int = |i: usize| r.get(i).and_then(|v| v.as_int()).unwrap_or(0);
        let from_uri = text(1);
        if !from_uri.is_empty() {
            openser_core::re::Regex::new(&from_uri, false, true)
                .map_err(|e| format!("bad from_uri regular expression '{from_uri}': {e}"))?;
        }
        t.rules.push(Rule {
            prefix: text(0),
            from_uri,
            grp_id: int(2).max(0) as u32,
            priority: int(3).max(0) as u32,
        });
    }
    Ok(t)
}

/// The shared form (tab-separated lines, `G` gateways then `R` rules).
pub fn serialize(t: &Tables) -> Vec<u8> {
    let mut s = String::new();
    for g in &t.gws {
        s.push_str(&format!(
            "G\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            g.name, g.grp_id, g.ip, g.port, g.scheme, g.transport, g.strip, g.prefix
        ));
    }
    for r in &t.rules {
        s.push_str(&format!(
            "R\t{}\t{}\t{}\t{}\n",
            r.prefix, r.from_uri, r.grp_id, r.priority
        ));
    }
    s.into_bytes()
}

/// Back from [`serialize`]'s form (trusted).
pub fn deserialize(b: &[u8]) -> Tables {
    let text = String::from_utf8_lossy(b);
    let mut t = Tables::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["G", name, grp, ip, port, scheme, tr, strip, prefix] => {
                let Ok(ip) = ip.parse() else { continue };
                t.gws.push(Gw {
                    name: name.to_string(),
                    grp_id: grp.parse().unwrap_or(0),
                    ip,
                    port: port.parse().unwrap_or(0),
                    scheme: scheme.parse().unwrap_or(1),
                    transport: tr.parse().unwrap_or(0),
                    strip: strip.parse().unwrap_or(0),
                    prefix: prefix.to_string(),
                });
            }
            ["R", prefix, from, grp, prio] => t.rules.push(Rule {
                prefix: prefix.to_string(),
                from_uri: from.to_string(),
                grp_id: grp.parse().unwrap_or(0),
                priority: prio.parse().unwrap_or(0),
            }),
            _ => {}
        }
    }
    t
}

/// How matched gateways are ordered: prefix length (longest first), priority, chance.
type SortKey = (std::cmp::Reverse<usize>, u32, u32);

/// A process's copy: the tables and each rule's compiled `from_uri`.
pub struct Loaded {
    pub t: Tables,
    re: Vec<Option<openser_core::re::Regex>>,
}

impl Loaded {
    pub fn new(t: Tables) -> Loaded {
        let re = t
            .rules
            .iter()
            .map(|r| {
                if r.from_uri.is_empty() {
                    None
                } else {
                    openser_core::re::Regex::new(&r.from_uri, false, true).ok()
                }
            })
            .collect();
        Loaded { t, re }
    }

    /// Whether rule `i` matches the caller URI `from`.
    fn caller_matches(&self, i: usize, from: &str) -> bool {
        if self.t.rules[i].from_uri.is_empty() {
            return true;
        }
        self.re[i].as_ref().is_some_and(|re| re.is_match(from))
    }

    /// The gateways for `user` called by `from` (of group `grp`), in the order they
    /// are to be tried. `rand` orders equals.
    pub fn matching_gws(
        &self,
        user: &str,
        from: &str,
        grp: Option<u32>,
        mut rand: impl FnMut() -> u32,
    ) -> Vec<&Gw> {
        // (gw index, prefix length, priority)
        let mut m: Vec<(usize, usize, u32)> = Vec::new();
        for (i, r) in self.t.rules.iter().enumerate() {
            if !user.starts_with(r.prefix.as_str()) || !self.caller_matches(i, from) {
                continue;
            }
            for (j, g) in self.t.gws.iter().enumerate() {
                if g.grp_id != r.grp_id || grp.is_some_and(|x| x != g.grp_id) {
                    continue;
                }
                let cand = (j, r.prefix.len(), r.priority);
                match m.iter_mut().find(|e| self.t.gws[e.0].ip == g.ip) {
                    // A gateway once: the rule that would try it first wins.
                    Some(e) => {
                        if (cand.1, std::cmp::Reverse(cand.2)) > (e.1, std::cmp::Reverse(e.2)) {
                            *e = cand;
                        }
                    }
                    None => m.push(cand),
                }
            }
        }
        // Longest prefix, then the lower priority value, then at random.
        let mut keyed: Vec<(SortKey, usize)> = m
            .into_iter()
            .map(|(j, len, prio)| ((std::cmp::Reverse(len), prio, rand()), j))
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(_, j)| &self.t.gws[j]).collect()
    }
}

// ---------------------------------------------------------------- state

struct Conf {
    cache: &'static Cache,
    gw_uri: AvpId,
    ruri_user: AvpId,
    contact: AvpId,
    inv_timer: AvpId,
    rpid: AvpId,
}

static CONF: OnceLock<Conf> = OnceLock::new();

thread_local! {
    static LOCAL: RefCell<(u64, Option<Rc<Loaded>>)> = const { RefCell::new((u64::MAX, None)) };
    static RAND: std::cell::Cell<u64> = const { std::cell::Cell::new(0x9e37_79b9_7f4a_7c15) };
}

fn current() -> Option<(&'static Conf, Rc<Loaded>)> {
    let c = CONF.get()?;
    let g = c.cache.generation();
    let l = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != g || l.1.is_none() {
            let (g, bytes) = c.cache.read();
            *l = (g, Some(Rc::new(Loaded::new(deserialize(&bytes)))));
        }
        l.1.clone()
    })?;
    Some((c, l))
}

fn next_rand() -> u32 {
    RAND.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x >> 11) as u32
    })
}

fn reload_with(conn: &mut dyn DbConn, cache: &Cache) -> Result<usize, String> {
    let t = load_tables(conn)?;
    if !cache.replace(&serialize(&t)) {
        return Err("out of shared memory".into());
    }
    Ok(t.gws.len())
}

fn mod_init() -> Result<(), String> {
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("lcr: {e}"))?;
    let id = |p: &StrParam| avp_id(p.get()).ok_or_else(|| format!("lcr: bad AVP '{}'", p.get()));
    let cache = Cache::new_static("lcr gateway cache").ok_or("lcr: no shared memory")?;
    let c = Conf {
        cache,
        gw_uri: id(&P.gw_uri_avp)?,
        ruri_user: id(&P.ruri_user_avp)?,
        contact: id(&P.contact_avp)?,
        inv_timer: id(&P.fr_inv_timer_avp)?,
        rpid: id(&P.rpid_avp)?,
    };
    let mut conn = openser_core::db::connect(P.db_url.get())
        .map_err(|e| format!("lcr: can't connect to the database: {e}"))?;
    let n = reload_with(conn.as_mut(), cache).map_err(|e| format!("lcr: {e}"))?;
    drop(conn);
    openser_core::log_dbg!("{n} gateways loaded");
    let _ = CONF.set(c);
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id());
    RAND.with(|r| r.set(seed | 1));
    Ok(())
}

// ---------------------------------------------------------------- functions

fn fixup_grp(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let Some(a) = args.first() else {
        return Ok(vec![]);
    };
    let v = openser_core::script::fixup::int_arg(a, "group id")?;
    u32::try_from(v).map_err(|_| format!("group id '{v}' is not a number"))?;
    Ok(vec![FixedArg::Int(v)])
}

fn grp_arg(args: &[FixedArg]) -> Option<u32> {
    match args.first() {
        Some(FixedArg::Int(g)) => u32::try_from(*g).ok(),
        _ => None,
    }
}

fn cmd_load_gws(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some((c, l)) = current() else { return -1 };
    let user = match Uri::parse(ctx.msg.ruri()) {
        Ok(u) => u.user,
        Err(e) => {
            openser_core::log_err!("error while parsing R-URI: {e}");
            return -1;
        }
    };
    let from = match ctx.avps.get(&c.rpid) {
        Some(PvValue::Str(s)) if !s.is_empty() => s.clone(),
        _ => match ctx.msg.from() {
            Ok(f) => ctx.msg.s(f.uri).to_string(),
            Err(_) => {
                openser_core::log_err!("error while parsing From header");
                return -1;
            }
        },
    };
    let gws = l.matching_gws(&user, &from, grp_arg(args), next_rand);
    // Added last-to-first: the newest value is the first gateway to try.
    for g in gws.iter().rev() {
        if g.strip as usize > user.len() {
            openser_core::log_err!("strip count of gw '{}' is too large", g.name);
            continue;
        }
        ctx.avps.add(c.gw_uri.clone(), PvValue::Str(g.avp_value()));
    }
    1
}

/// The Request-URI for gateway value `gw` (`scheme:prefix|strip@host…`) and `user`.
pub fn gw_ruri(gw: &str, user: &str) -> Option<String> {
    let at = gw.find('@')?;
    let bar = gw[..at].find('|')?;
    if bar + 1 >= at {
        return None;
    }
    let strip: usize = gw[bar + 1..at].parse().ok()?;
    let head = &gw[..bar];
    let rest = user.get(strip..).unwrap_or("");
    let mut s = format!("{head}{rest}");
    if s.ends_with(':') {
        s.push_str(&gw[at + 1..]);
    } else {
        s.push_str(&gw[at..]);
    }
    Some(s)
}

fn cmd_next_gw(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    let Some(c) = CONF.get() else { return -1 };
    let Some(PvValue::Str(gw)) = ctx.avps.get(&c.gw_uri).cloned() else {
        return -1;
    };
    let user = if ctx.route_type & FAILURE_ROUTE != 0 {
        match ctx.avps.get(&c.ruri_user) {
            Some(PvValue::Str(u)) => u.clone(),
            _ => {
                openser_core::log_err!("no ruri_user AVP");
                return -1;
            }
        }
    } else {
        let u = match Uri::parse(ctx.msg.ruri()) {
            Ok(u) => u.user,
            Err(e) => {
                openser_core::log_err!("parsing of R-URI failed: {e}");
                return -1;
            }
        };
        ctx.avps.del_all(&c.ruri_user);
        ctx.avps.add(c.ruri_user.clone(), PvValue::Str(u.clone()));
        u
    };
    let Some(ruri) = gw_ruri(&gw, &user) else {
        openser_core::log_err!("bad gateway URI <{gw}>");
        return -1;
    };
    ctx.avps.del_one(&c.gw_uri);
    if let Err(e) = Uri::parse(&ruri) {
        openser_core::log_err!("bad new R-URI <{ruri}>: {e}");
        return -1;
    }
    ctx.msg.new_uri = Some(ruri);
    1
}

fn gw_has(l: &Loaded, ip: IpAddr, grp: Option<u32>) -> bool {
    let IpAddr::V4(v4) = ip else { return false };
    l.t.gws
        .iter()
        .any(|g| g.ip == v4 && grp.is_none_or(|x| x == g.grp_id))
}

fn cmd_from_gw(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some((_, l)) = current() else { return -1 };
    if gw_has(&l, ctx.msg.rcv.src.ip(), grp_arg(args)) {
        1
    } else {
        -1
    }
}

fn cmd_to_gw(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some((_, l)) = current() else { return -1 };
    let host = match Uri::parse(ctx.msg.ruri()) {
        Ok(u) => u.host,
        Err(_) => {
            openser_core::log_err!("error while parsing the R-URI");
            return -1;
        }
    };
    match host.parse::<Ipv4Addr>() {
        Ok(ip) if gw_has(&l, IpAddr::V4(ip), grp_arg(args)) => 1,
        _ => -1,
    }
}

fn cmd_load_contacts(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    let Some(c) = CONF.get() else { return -1 };
    if ctx.branches.is_empty() {
        return 1;
    }
    let ruri_q = ctx.ruri_q;
    if ctx.branches.iter().all(|b| b.q == ruri_q) {
        return 1;
    }
    // Increasing q, stable (1.2 puts a later contact before an earlier one of the same
    // q only when it is lower).
    let mut v: Vec<(i32, String)> = vec![(ruri_q, ctx.msg.ruri().to_string())];
    for b in &ctx.branches {
        let pos = v.iter().position(|(q, _)| *q >= b.q).unwrap_or(v.len());
        v.insert(pos, (b.q, b.uri.clone()));
    }
    let flag = AvpId::Str(QFLAG_AVP.into());
    ctx.avps.del_all(&c.contact);
    ctx.avps.del_all(&flag);
    for (k, (q, uri)) in v.iter().enumerate() {
        // the last of its q group when walking newest (highest q) first
        let last = k == 0 || v[k - 1].0 < *q;
        ctx.avps.add(c.contact.clone(), PvValue::Str(uri.clone()));
        ctx.avps.add(flag.clone(), PvValue::Int(i64::from(last)));
    }
    ctx.branches.clear();
    1
}

fn cmd_next_contacts(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    let Some(c) = CONF.get() else { return -1 };
    let flag = AvpId::Str(QFLAG_AVP.into());
    let failure = ctx.route_type & FAILURE_ROUTE != 0;
    if ctx.avps.get(&c.contact).is_none() {
        return if failure { -1 } else { 1 };
    }
    let mut first = true;
    let mut more_left = false;
    while let Some(PvValue::Str(uri)) = ctx.avps.get(&c.contact).cloned() {
        let last = matches!(ctx.avps.get(&flag), Some(PvValue::Int(1)));
        ctx.avps.del_one(&c.contact);
        ctx.avps.del_one(&flag);
        if first {
            if Uri::parse(&uri).is_err() {
                openser_core::log_err!("bad contact <{uri}>");
                return -1;
            }
            ctx.msg.new_uri = Some(uri);
            ctx.msg.dst_uri = None;
            ctx.branches.clear();
            first = false;
        } else {
            ctx.branches.push(Branch {
                uri,
                dst_uri: None,
                path: None,
                q: ctx.ruri_q,
                bflags: 0,
                force_send_sock: None,
            });
        }
        if last {
            more_left = ctx.avps.get(&c.contact).is_some();
            break;
        }
    }
    ctx.avps.del_all(&c.inv_timer);
    if more_left {
        ctx.avps
            .add(c.inv_timer.clone(), PvValue::Int(P.fr_inv_timer_next.get()));
    } else if failure {
        ctx.avps
            .add(c.inv_timer.clone(), PvValue::Int(P.fr_inv_timer.get()));
    }
    1
}

// ---------------------------------------------------------------- MI

fn mi_reload(_: &[MiArg]) -> MiReply {
    let Some(c) = CONF.get() else {
        return MiReply::err(400, "Reload of gateways failed");
    };
    match openser_core::db::with_conn(P.db_url.get(), |conn| reload_with(conn, c.cache)) {
        Ok(Ok(_)) => MiReply::ok(Vec::new()),
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("reload of gateways failed: {e}");
            MiReply::err(400, "Reload of gateways failed")
        }
    }
}

fn mi_dump(_: &[MiArg]) -> MiReply {
    let Some((_, l)) = current() else {
        return MiReply::err(500, "lcr not initialised");
    };
    let mut nodes = Vec::new();
    for g in &l.t.gws {
        let scheme = if g.scheme == 2 { "sips" } else { "sip" };
        let port = if g.port == 0 { 5060 } else { g.port };
        let tr = transport_name(g.transport)
            .map(|t| format!(";transport={t}"))
            .unwrap_or_default();
        nodes.push(
            MiNode::new("GW", "")
                .attr("GRP_ID", g.grp_id.to_string())
                .attr("URI", format!("{scheme}:{}:{port}{tr}", g.ip))
                .attr("STRIP", g.strip.to_string())
                .attr("PREFIX", g.prefix.clone()),
        );
    }
    for r in &l.t.rules {
        nodes.push(
            MiNode::new("RULE", "")
                .attr("PREFIX", r.prefix.clone())
                .attr("FROM_URI", r.from_uri.clone())
                .attr("GRP_ID", r.grp_id.to_string())
                .attr("PRIORITY", r.priority.to_string()),
        );
    }
    MiReply::ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(name: &str, grp: u32, ip: &str, port: u16) -> Gw {
        Gw {
            name: name.into(),
            grp_id: grp,
            ip: ip.parse().unwrap(),
            port,
            scheme: 1,
            transport: 0,
            strip: 0,
            prefix: String::new(),
        }
    }

    fn rule(prefix: &str, from: &str, grp: u32, prio: u32) -> Rule {
        Rule {
            prefix: prefix.into(),
            from_uri: from.into(),
            grp_id: grp,
            priority: prio,
        }
    }

    #[test]
    fn prefix_priority_and_from_uri_order() {
        let t = Tables {
            gws: vec![
                gw("a", 1, "10.0.0.1", 5060),
                gw("b", 2, "10.0.0.2", 0),
                gw("c", 3, "10.0.0.3", 5070),
            ],
            rules: vec![
                rule("49", "", 1, 2),
                rule("49", "", 2, 1),
                rule("4930", "", 3, 5),
                rule("", "^sip:vip@", 1, 0),
            ],
        };
        let l = Loaded::new(deserialize(&serialize(&t)));
        assert_eq!(l.t, t);
        let names = |v: Vec<&Gw>| v.iter().map(|g| g.name.clone()).collect::<Vec<_>>();
        // longest prefix first, then the lower priority value
        assert_eq!(
            names(l.matching_gws("49301234", "sip:x@h", None, || 0)),
            ["c", "b", "a"]
        );
        assert_eq!(
            names(l.matching_gws("4940", "sip:x@h", None, || 0)),
            ["b", "a"]
        );
        assert_eq!(
            names(l.matching_gws("4940", "sip:x@h", Some(1), || 0)),
            ["a"]
        );
        assert!(l.matching_gws("33", "sip:x@h", None, || 0).is_empty());
        // the from_uri rule matches the VIP only (gw a once, by its better rule)
        assert_eq!(names(l.matching_gws("33", "sip:vip@h", None, || 0)), ["a"]);
    }

    #[test]
    fn gateway_uris() {
        let mut g = gw("a", 1, "10.0.0.1", 5070);
        g.strip = 2;
        g.prefix = "00".into();
        g.transport = 2;
        let v = g.avp_value();
        assert_eq!(v, "sip:00|2@10.0.0.1:5070;transport=tcp");
        assert_eq!(
            gw_ruri(&v, "4930123").as_deref(),
            Some("sip:0030123@10.0.0.1:5070;transport=tcp")
        );
        let g2 = gw("b", 1, "10.0.0.2", 0);
        assert_eq!(
            gw_ruri(&g2.avp_value(), "").as_deref(),
            Some("sip:10.0.0.2")
        );
        assert_eq!(gw_ruri("sip:x", "1"), None);
    }

    #[test]
    fn avp_names() {
        assert_eq!(avp_id("1400"), Some(AvpId::Int(1400)));
        assert_eq!(avp_id("rpid"), Some(AvpId::Str("rpid".into())));
        assert_eq!(avp_id("$avp(i:7)"), Some(AvpId::Int(7)));
        assert_eq!(avp_id(""), None);
    }
}

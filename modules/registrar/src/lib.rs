//! registrar (OpenSER 1.2 `modules/registrar`): `save()`, `lookup()`, `registered()`
//! on top of usrloc.
//!
//! * `save("table"[, flags])` (REQUEST): flags `0x01` memory only (everything is memory
//!   only until the DB layer exists), `0x02` no reply, `0x04` one contact per AOR
//!   (Kamailio's `REG_SAVE_REPL_FL`: only the first Contact is used and the AOR's other
//!   bindings are removed; not in 1.2). rc 1 on success, 0 (stop the script) after
//!   an error, whether or not the error reply was sent.
//! * `lookup("table")` (REQUEST, FAILURE): rc 1 / −1 no record / −2 no usable contact
//!   / −3 error (also when, with usrloc `db_mode` 3, the database could not be read:
//!   a script can answer 500, or 503 to a dispatcher's OPTIONS probe so that the
//!   front takes this instance out of rotation — docs/scaling.md).
//!
//! With usrloc `db_mode` 3 a `save()` whose AOR could not be read from the database is
//! answered 500 without changing anything, and one whose changes could not be written
//! 500 as well (1.2 answered 200 and only logged the failed write).
//! * `registered("table")` (REQUEST, FAILURE): 1 if the R-URI's AOR has a valid
//!   (unexpired) binding, else −1 (1.2 answers 1 for any existing record; records
//!   whose contacts all expired only linger until the next usrloc timer run).
//!
//! * `add_sock_hdr("name")` (REQUEST): add `name: proto:ip:port` (receiving socket);
//!   with `sock_flag` set, `save()` stores the socket from header `sock_hdr_name`.
//!
//! `use_domain` is taken from usrloc, as in 1.2. Accepted without effect (no TCP
//! connection reuse yet): `tcp_persistent_flag`.
//! Replies are stateless (module sl's `sl_reply`; sl and usrloc must be loaded).

pub mod lookup;
pub mod reply;
pub mod save;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, ModuleExports, Param, StatCell, StatExport, StrParam,
};
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::{AvpId, Branch, Ctx, PvValue};
use openser_core::state::Registry;
use usrloc::{self as ul, ContactInfo, Q_UNSPECIFIED, UDomain};

use lookup::Found;
use save::{SAVE_NO_REPLY, SaveInput};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "registrar",
    binds: &["sl", "usrloc"],
    params: &[
        Param::uint("default_expires", &P.default_expires),
        Param::uint("min_expires", &P.min_expires),
        Param::uint("max_expires", &P.max_expires),
        Param::int_range("default_expires_range", &P.default_expires_range, 0, 100),
        Param::int_range("expires_range", &P.expires_range, 0, 100),
        Param::str_with("reg_callid_avp", &P.reg_callid_avp, check_avp_param),
        Param::int_with("default_q", &P.default_q, check_default_q),
        Param::bool("append_branches", &P.append_branches),
        Param::bool("case_sensitive", &P.case_sensitive),
        Param::int_range("tcp_persistent_flag", &P.tcp_persistent_flag, -1, 31),
        Param::str("realm_prefix", &P.realm_prefix),
        Param::str_with("received_avp", &P.received_avp, check_avp_param),
        Param::str("received_param", &P.received_param),
        Param::str_with("aor_avp", &P.aor_avp, check_avp_param),
        Param::uint("max_contacts", &P.max_contacts),
        Param::uint("retry_after", &P.retry_after),
        Param::int_range("sock_flag", &P.sock_flag, -1, 31),
        Param::str("sock_hdr_name", &P.sock_hdr_name),
        Param::bool("method_filtering", &P.method_filtering),
        Param::bool("use_path", &P.use_path),
        Param::int_with("path_mode", &P.path_mode, check_path_mode),
        Param::bool("path_use_received", &P.path_use_received),
    ],
    cmds: &[
        CmdExport::new("save", 1, 2, REQUEST_ROUTE, cmd_save).fixup(fixup_save),
        CmdExport::new("lookup", 1, 1, REQUEST_ROUTE | FAILURE_ROUTE, cmd_lookup)
            .fixup(fixup_domain),
        CmdExport::new("add_sock_hdr", 1, 1, REQUEST_ROUTE, cmd_add_sock_hdr),
        CmdExport::new(
            "registered",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE,
            cmd_registered,
        )
        .fixup(fixup_domain),
    ],
    stats: &[
        StatExport::func("max_expires", stat_max_expires),
        StatExport::func("max_contacts", stat_max_contacts),
        StatExport::func("default_expire", stat_default_expire),
        StatExport::func("default_expires_range", stat_default_expires_range),
        StatExport::func("expires_range", stat_expires_range),
        StatExport::counter("accepted_regs", &STATS.accepted),
        StatExport::counter("rejected_regs", &STATS.rejected),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells; [`Cells::new`] holds 1.2's defaults, the only place they are
/// written down ([`RegParams::default`] reads a fresh set).
pub struct Cells {
    pub default_expires: IntParam,
    pub min_expires: IntParam,
    pub max_expires: IntParam,
    /// Percent (0..100) of randomisation of `default_expires` (Kamailio's).
    pub default_expires_range: IntParam,
    /// Percent (0..100) of randomisation of the expiry a client asked for.
    pub expires_range: IntParam,
    pub reg_callid_avp: StrParam,
    /// −1 (unspecified) or 0..100
    pub default_q: IntParam,
    pub append_branches: BoolParam,
    pub case_sensitive: BoolParam,
    pub tcp_persistent_flag: IntParam,
    pub realm_prefix: StrParam,
    pub received_avp: StrParam,
    pub received_param: StrParam,
    pub aor_avp: StrParam,
    pub max_contacts: IntParam,
    pub retry_after: IntParam,
    pub sock_flag: IntParam,
    pub sock_hdr_name: StrParam,
    pub method_filtering: BoolParam,
    pub use_path: BoolParam,
    pub path_mode: IntParam,
    pub path_use_received: BoolParam,
}

impl Cells {
    pub const fn new() -> Cells {
        Cells {
            default_expires: IntParam::new(3600),
            min_expires: IntParam::new(60),
            max_expires: IntParam::new(0),
            default_expires_range: IntParam::new(0),
            expires_range: IntParam::new(0),
            reg_callid_avp: StrParam::new(""),
            default_q: IntParam::new(-1),
            append_branches: BoolParam::new(true),
            case_sensitive: BoolParam::new(false),
            tcp_persistent_flag: IntParam::new(-1),
            realm_prefix: StrParam::new(""),
            received_avp: StrParam::new(""),
            received_param: StrParam::new("received"),
            aor_avp: StrParam::new(""),
            max_contacts: IntParam::new(0),
            retry_after: IntParam::new(0),
            sock_flag: IntParam::new(-1),
            sock_hdr_name: StrParam::new(""),
            method_filtering: BoolParam::new(false),
            use_path: BoolParam::new(false),
            path_mode: IntParam::new(2),
            path_use_received: BoolParam::new(false),
        }
    }

    /// The values of these cells as a [`RegParams`] (`use_domain` is usrloc's).
    pub fn values(&self) -> RegParams {
        let s = |p: &StrParam| p.get().to_owned();
        RegParams {
            default_expires: self.default_expires.get_u32(),
            min_expires: self.min_expires.get_u32(),
            max_expires: self.max_expires.get_u32(),
            default_expires_range: self.default_expires_range.get_u32(),
            expires_range: self.expires_range.get_u32(),
            reg_callid_avp: s(&self.reg_callid_avp),
            default_q: match self.default_q.get() {
                -1 => Q_UNSPECIFIED,
                q => q as i32,
            },
            append_branches: self.append_branches.get(),
            case_sensitive: self.case_sensitive.get(),
            use_domain: false,
            tcp_persistent_flag: self.tcp_persistent_flag.get() as i32,
            realm_prefix: s(&self.realm_prefix),
            received_avp: s(&self.received_avp),
            received_param: s(&self.received_param),
            aor_avp: s(&self.aor_avp),
            max_contacts: self.max_contacts.get_u32(),
            retry_after: self.retry_after.get_u32(),
            sock_flag: self.sock_flag.get() as i32,
            sock_hdr_name: s(&self.sock_hdr_name),
            method_filtering: self.method_filtering.get(),
            use_path: self.use_path.get(),
            path_mode: self.path_mode.get() as i32,
            path_use_received: self.path_use_received.get(),
        }
    }
}

impl Default for Cells {
    fn default() -> Self {
        Cells::new()
    }
}

/// The module's parameters, as `modparam` set them.
pub static P: Cells = Cells::new();

fn check_default_q(q: i64) -> Result<(), String> {
    if q != -1 && !(0..=100).contains(&q) {
        return Err(format!(
            "registrar: default_q {q} out of range (0..100 or -1)"
        ));
    }
    Ok(())
}

fn check_path_mode(m: i64) -> Result<(), String> {
    if !(0..=2).contains(&m) {
        return Err(format!("registrar: path_mode {m} out of range (0..2)"));
    }
    Ok(())
}

fn check_avp_param(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    parse_avp_param(s).map(|_| ())
}

fn stat_max_expires() -> u64 {
    P.max_expires.get() as u64
}
fn stat_max_contacts() -> u64 {
    P.max_contacts.get() as u64
}
fn stat_default_expire() -> u64 {
    P.default_expires.get() as u64
}
fn stat_default_expires_range() -> u64 {
    P.default_expires_range.get() as u64
}
fn stat_expires_range() -> u64 {
    P.expires_range.get() as u64
}

/// registrar module parameters as a value (what save/lookup read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegParams {
    pub default_expires: u32,
    pub min_expires: u32,
    /// 0 = no cap.
    pub max_expires: u32,
    /// Percent by which an expiry of `default_expires` is shortened at random: the
    /// binding gets a value in [default × (1 − range/100), default] (Kamailio's
    /// `default_expires_range`; 0 = off).
    pub default_expires_range: u32,
    /// The same for an expiry the REGISTER asked for (`expires_range`).
    pub expires_range: u32,
    /// AVP whose string value, when set, restricts `registered()` to the bindings
    /// with that Call-ID ("" = unused).
    pub reg_callid_avp: String,
    /// q × 100 for contacts without q, or `Q_UNSPECIFIED`.
    pub default_q: i32,
    pub append_branches: bool,
    pub case_sensitive: bool,
    /// Taken from usrloc's `use_domain` at start-up.
    pub use_domain: bool,
    pub tcp_persistent_flag: i32,
    pub realm_prefix: String,
    /// AVP holding the source address of the REGISTER (`received` column).
    pub received_avp: String,
    /// Parameter name used for `received` in 200 OK Contacts ("" = don't add).
    pub received_param: String,
    pub aor_avp: String,
    /// 0 = no limit.
    pub max_contacts: u32,
    /// Retry-After value on 503 (0 = none).
    pub retry_after: u32,
    /// Branch flag telling that the socket comes from `sock_hdr_name` (−1 = unset).
    pub sock_flag: i32,
    pub sock_hdr_name: String,
    pub method_filtering: bool,
    pub use_path: bool,
    /// 0 store only; 1 echo if `Supported: path`; 2 strict (420 if not supported).
    pub path_mode: i32,
    pub path_use_received: bool,
}

impl Default for RegParams {
    /// OpenSER 1.2's defaults (those of a fresh set of `modparam` cells).
    fn default() -> Self {
        Cells::new().values()
    }
}

/// The registrar parameters as `modparam` set them.
pub fn params() -> RegParams {
    P.values()
}

/// Parameters frozen at mod_init (read without locking by the workers).
static FROZEN: OnceLock<RegParams> = OnceLock::new();

/// The parameters in effect for request processing.
fn cur() -> std::borrow::Cow<'static, RegParams> {
    match FROZEN.get() {
        Some(p) => std::borrow::Cow::Borrowed(p),
        None => std::borrow::Cow::Owned(params()),
    }
}

fn with_frozen<R>(f: impl FnOnce(&RegParams) -> R) -> R {
    match FROZEN.get() {
        Some(p) => f(p),
        None => f(&params()),
    }
}

struct RegStats {
    accepted: StatCell,
    rejected: StatCell,
}

static STATS: RegStats = RegStats {
    accepted: StatCell::new(),
    rejected: StatCell::new(),
};

fn mod_init() -> Result<(), String> {
    let mut p = params();
    // As in 1.2, use_domain comes from usrloc (the table must agree with the AORs).
    p.use_domain = ul::params().use_domain;
    if p.case_sensitive != ul::params().case_sensitive {
        // The AOR is lowercased here unless case_sensitive; the table itself compares
        // case-insensitively unless usrloc's case_sensitive — both spellings work.
        openser_core::log_dbg!("registrar: case_sensitive differs from usrloc's setting");
    }
    if !p.received_avp.is_empty() {
        parse_avp_param(&p.received_avp).map_err(|e| format!("registrar: received_avp: {e}"))?;
    }
    if !p.aor_avp.is_empty() {
        parse_avp_param(&p.aor_avp).map_err(|e| format!("registrar: aor_avp: {e}"))?;
    }
    if !p.reg_callid_avp.is_empty() {
        parse_avp_param(&p.reg_callid_avp)
            .map_err(|e| format!("registrar: reg_callid_avp: {e}"))?;
    }
    let _ = FROZEN.set(p);
    // Domains named in save()/lookup() before shm existed.
    for name in take_pending() {
        register_domain(&name)?;
    }
    Ok(())
}

/// An AVP parameter → AVP id (`AvpId::parse_param`).
pub fn parse_avp_param(s: &str) -> Result<AvpId, String> {
    AvpId::parse_param(s)
}

/// A usrloc domain named in a script call, resolved once per process.
pub struct DomainRef {
    pub name: String,
    dom: OnceLock<&'static UDomain>,
}

impl DomainRef {
    fn get(&self) -> Option<&'static UDomain> {
        if let Some(d) = self.dom.get() {
            return Some(d);
        }
        let d = ul::find_domain(&self.name)?;
        let _ = self.dom.set(d);
        Some(d)
    }
}

/// Domains named in `save()`/`lookup()` while the script was fixed up before shm
/// existed; registered by mod_init.
static PENDING: Registry<String> = Registry::new();

fn take_pending() -> Vec<String> {
    std::mem::take(&mut *PENDING.lock())
}

fn register_domain(name: &str) -> Result<(), String> {
    ul::register_udomain_db(name)
        .map(|_| ())
        .map_err(|e| format!("registrar: {e}"))
}

fn arg_text(a: &Arg) -> Option<String> {
    match &a.value {
        ArgValue::Str(s) | ArgValue::Ident(s) => Some(s.clone()),
        ArgValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Fixup of the table argument: registers the domain (start-up, before fork).
fn fixup_domain(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let name = args
        .first()
        .and_then(arg_text)
        .filter(|s| !s.is_empty())
        .ok_or("registrar: the table name must be a non-empty string")?;
    if shm::is_initialized() {
        register_domain(&name)?;
    } else {
        PENDING.lock().push(name.clone());
    }
    let r = DomainRef {
        name,
        dom: OnceLock::new(),
    };
    Ok(vec![FixedArg::Any(Arc::new(r))])
}

/// `save()` flags: decimal or `0x` hex.
pub fn parse_flags(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn fixup_save(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = fixup_domain(args)?;
    let flags = match args.get(1) {
        None => 0,
        Some(a) => match &a.value {
            ArgValue::Int(i) => {
                u32::try_from(*i).map_err(|_| format!("registrar: bad save() flags {i}"))?
            }
            _ => arg_text(a)
                .and_then(|s| parse_flags(&s))
                .ok_or("registrar: save() flags must be a number")?,
        },
    };
    out.push(FixedArg::Int(i64::from(flags)));
    Ok(out)
}

fn domain_of(args: &[FixedArg]) -> Option<&'static UDomain> {
    match args.first() {
        Some(FixedArg::Any(a)) => a.downcast_ref::<DomainRef>().and_then(DomainRef::get),
        _ => None,
    }
}

fn avp_text(ctx: &Ctx, name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let id = parse_avp_param(name).ok()?;
    match ctx.avps.get(&id)? {
        PvValue::Null => None,
        v => Some(v.to_text()),
    }
}

fn cmd_save(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(dom) = domain_of(args) else {
        openser_core::log_err!("usrloc domain not registered");
        return -1;
    };
    let flags = match args.get(1) {
        Some(FixedArg::Int(f)) => *f as u32,
        _ => 0,
    };
    with_frozen(|p| {
        let inp = SaveInput {
            flags,
            received: avp_text(ctx, &p.received_avp),
            aor: avp_text(ctx, &p.aor_avp),
            bflags: ctx.ruri_bflags,
            socket: sock_from_hdr(ctx, p),
        };
        let now = openser_core::clock::now();
        let res = save::save(ctx.msg, dom, p, &inp, now);
        let (rc, rep) = match &res {
            Ok(s) => {
                STATS.accepted.inc();
                (1, reply::ok_reply(s, p, now))
            }
            Err(e) => {
                STATS.rejected.inc();
                openser_core::log_dbg!("registrar: save() failed: {}", e.text());
                (0, reply::err_reply(*e, p))
            }
        };
        if flags & SAVE_NO_REPLY == 0 && reply::send(ctx.msg, &rep).is_err() {
            openser_core::log_err!("failed to send the reply");
            return -1;
        }
        rc
    })
}

/// `sock_flag`: with that script flag set, the socket to store comes from header
/// `sock_hdr_name` (`proto:ip:port`, as `add_sock_hdr()` writes it on a front proxy).
fn sock_from_hdr(ctx: &Ctx, p: &RegParams) -> Option<String> {
    let bit = u32::try_from(p.sock_flag).ok().filter(|b| *b < 32)?;
    if ctx.sflags & (1 << bit) == 0 || p.sock_hdr_name.is_empty() {
        return None;
    }
    let v = ctx.msg.header(&p.sock_hdr_name)?.trim();
    (!v.is_empty() && v.len() <= 128).then(|| v.to_owned())
}

/// `add_sock_hdr("name")`: add header `name: proto:ip:port` of the receiving socket.
fn cmd_add_sock_hdr(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(name) = args.first().map(|a| ctx.arg_str(a)) else {
        return -1;
    };
    let sock = save::socket_text(ctx.msg);
    if name.is_empty() || sock.is_empty() {
        return -1;
    }
    ctx.msg.add_header_after_last(&format!("{name}: {sock}"));
    1
}

/// The listen socket index for a stored `proto:ip:port` text.
fn socket_index(text: &str) -> Option<usize> {
    if text.is_empty() {
        return None;
    }
    let (proto, rest) = text.split_once(':').unwrap_or(("udp", text));
    let rest = rest.replace(['[', ']'], "");
    let (ip, port) = rest.rsplit_once(':')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    // the transport too: UDP and TCP sockets share address and port
    openser_core::transport::socket::sockets()
        .iter()
        .position(|s| {
            s.addr.ip() == ip && s.port == port && s.proto.as_str().eq_ignore_ascii_case(proto)
        })
}

fn branch_of(c: &ContactInfo) -> Branch {
    let (dst, path) = if !c.path.is_empty() {
        (
            save::first_uri(&c.path).map(str::to_owned),
            Some(c.path.clone()),
        )
    } else {
        ((!c.received.is_empty()).then(|| c.received.clone()), None)
    };
    Branch {
        uri: c.contact.clone(),
        dst_uri: dst,
        path,
        q: c.q,
        bflags: c.cflags,
        force_send_sock: socket_index(&c.socket),
    }
}

fn cmd_lookup(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(dom) = domain_of(args) else {
        openser_core::log_err!("usrloc domain not registered");
        return -3;
    };
    let p = cur();
    let ruri = ctx.msg.ruri().to_owned();
    let aor = match save::extract_aor(&ruri, &p, p.use_domain) {
        Ok(a) => a,
        Err(_) => {
            openser_core::log_err!("failed to extract the AOR from the R-URI");
            return -3;
        }
    };
    let found = lookup::select(
        dom,
        &aor,
        ctx.msg.method(),
        p.method_filtering,
        openser_core::clock::now(),
    );
    let Found::Contacts(list) = found else {
        return found.rc();
    };
    let mut it = list.iter();
    if let Some(best) = it.next() {
        let b = branch_of(best);
        ctx.msg.new_uri = Some(b.uri);
        if let Some(path) = &b.path {
            // 1.2's path vector: the Path becomes the Route set of the request.
            ctx.msg.add_header_before_first(&format!("Route: {path}"));
        }
        // As in 1.2, a dst URI is only set (never cleared) by lookup.
        if b.dst_uri.is_some() {
            ctx.msg.dst_uri = b.dst_uri;
        }
        if b.force_send_sock.is_some() {
            ctx.msg.force_send_sock = b.force_send_sock;
        }
        ctx.ruri_q = b.q;
        ctx.ruri_bflags = b.bflags;
    }
    if p.append_branches {
        ctx.branches.extend(it.map(branch_of));
    }
    1
}

fn cmd_registered(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(dom) = domain_of(args) else {
        return -1;
    };
    let p = cur();
    let ruri = ctx.msg.ruri().to_owned();
    let callid = avp_text(ctx, &p.reg_callid_avp);
    match save::extract_aor(&ruri, &p, p.use_domain) {
        Ok(aor) if lookup::registered(dom, &aor, callid.as_deref(), openser_core::clock::now()) => {
            1
        }
        _ => -1,
    }
}

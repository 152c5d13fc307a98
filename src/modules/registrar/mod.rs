//! registrar (OpenSER 1.2 `modules/registrar`): `save()`, `lookup()`, `registered()`
//! on top of usrloc.
//!
//! * `save("table"[, flags])` (REQUEST): flags `0x01` memory only (everything is memory
//!   only until the DB layer exists), `0x02` no reply, `0x04` one contact per AOR
//!   (Kamailio's `REG_SAVE_REPL_FL`: only the first Contact is used and the AOR's other
//!   bindings are removed; not in 1.2). rc 1 on success, 0 (stop the script) after
//!   an error, whether or not the error reply was sent.
//! * `lookup("table")` (REQUEST, FAILURE): rc 1 / −1 no record / −2 no usable contact
//!   / −3 error.
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

use std::sync::RwLock;

use crate::modules::usrloc::Q_UNSPECIFIED;

/// registrar module parameters, with OpenSER 1.2's (code) defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegParams {
    pub default_expires: u32,
    pub min_expires: u32,
    /// 0 = no cap.
    pub max_expires: u32,
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
    fn default() -> Self {
        RegParams {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 0,
            default_q: Q_UNSPECIFIED,
            append_branches: true,
            case_sensitive: false,
            use_domain: false,
            tcp_persistent_flag: -1,
            realm_prefix: String::new(),
            received_avp: String::new(),
            received_param: "received".to_owned(),
            aor_avp: String::new(),
            max_contacts: 0,
            retry_after: 0,
            sock_flag: -1,
            sock_hdr_name: String::new(),
            method_filtering: false,
            use_path: false,
            path_mode: 2,
            path_use_received: false,
        }
    }
}

static PARAMS: RwLock<Option<RegParams>> = RwLock::new(None);

/// The registrar parameters (defaults if never set).
pub fn params() -> RegParams {
    PARAMS
        .read()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default()
}

pub(crate) fn update_params(f: impl FnOnce(&mut RegParams)) {
    if let Ok(mut g) = PARAMS.write() {
        let mut p = g.clone().unwrap_or_default();
        f(&mut p);
        *g = Some(p);
    }
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// ---------------------------------------------------------------------------
// Module glue: parameters, statistics, script functions.

use std::sync::{Arc, OnceLock};

use crate::core::cfg::ast::{Arg, ArgValue};
use crate::core::module::{CmdExport, FixedArg, ModParamValue, ModuleExports, ParamExport};
use crate::core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use crate::core::script::{AvpId, Branch, Ctx, PvValue};
use crate::core::stats::{self, NO_RESET, Stat};
use crate::modules::usrloc::{self as ul, ContactInfo, UDomain};

use lookup::Found;
use save::{SAVE_NO_REPLY, SaveInput};

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
    accepted: Stat,
    rejected: Stat,
}

static STATS: OnceLock<RegStats> = OnceLock::new();

macro_rules! p_u32 {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x: u32 = v.ranged("registrar", stringify!($field))?;
            update_params(|p| p.$field = x);
            Ok(())
        }
    };
}
macro_rules! p_i32 {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x: i32 = v.ranged("registrar", stringify!($field))?;
            update_params(|p| p.$field = x);
            Ok(())
        }
    };
}
macro_rules! p_bool {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x = v.int("registrar", stringify!($field))? != 0;
            update_params(|p| p.$field = x);
            Ok(())
        }
    };
}
macro_rules! p_str {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x = v.text();
            update_params(|p| p.$field = x);
            Ok(())
        }
    };
}

p_u32!(set_default_expires, default_expires);
p_u32!(set_min_expires, min_expires);
p_u32!(set_max_expires, max_expires);
p_bool!(set_append_branches, append_branches);
p_bool!(set_case_sensitive, case_sensitive);
p_i32!(set_tcp_persistent_flag, tcp_persistent_flag);
p_str!(set_realm_prefix, realm_prefix);
p_str!(set_received_avp, received_avp);
p_str!(set_received_param, received_param);
p_str!(set_aor_avp, aor_avp);
p_u32!(set_max_contacts, max_contacts);
p_u32!(set_retry_after, retry_after);
p_i32!(set_sock_flag, sock_flag);
p_str!(set_sock_hdr_name, sock_hdr_name);
p_bool!(set_method_filtering, method_filtering);
p_bool!(set_use_path, use_path);
p_bool!(set_path_use_received, path_use_received);

fn set_default_q(v: &ModParamValue) -> Result<(), String> {
    let q = v.int("registrar", "default_q")?;
    let q = match q {
        -1 => ul::Q_UNSPECIFIED,
        0..=100 => q as i32,
        _ => {
            return Err(format!(
                "registrar: default_q {q} out of range (0..100 or -1)"
            ));
        }
    };
    update_params(|p| p.default_q = q);
    Ok(())
}

fn set_path_mode(v: &ModParamValue) -> Result<(), String> {
    let m = v.int("registrar", "path_mode")?;
    if !(0..=2).contains(&m) {
        return Err(format!("registrar: path_mode {m} out of range (0..2)"));
    }
    update_params(|p| p.path_mode = m as i32);
    Ok(())
}

static PARAM_EXPORTS: &[ParamExport] = &[
    ParamExport {
        name: "default_expires",
        set: set_default_expires,
    },
    ParamExport {
        name: "min_expires",
        set: set_min_expires,
    },
    ParamExport {
        name: "max_expires",
        set: set_max_expires,
    },
    ParamExport {
        name: "default_q",
        set: set_default_q,
    },
    ParamExport {
        name: "append_branches",
        set: set_append_branches,
    },
    ParamExport {
        name: "case_sensitive",
        set: set_case_sensitive,
    },
    ParamExport {
        name: "tcp_persistent_flag",
        set: set_tcp_persistent_flag,
    },
    ParamExport {
        name: "realm_prefix",
        set: set_realm_prefix,
    },
    ParamExport {
        name: "received_avp",
        set: set_received_avp,
    },
    ParamExport {
        name: "received_param",
        set: set_received_param,
    },
    ParamExport {
        name: "aor_avp",
        set: set_aor_avp,
    },
    ParamExport {
        name: "max_contacts",
        set: set_max_contacts,
    },
    ParamExport {
        name: "retry_after",
        set: set_retry_after,
    },
    ParamExport {
        name: "sock_flag",
        set: set_sock_flag,
    },
    ParamExport {
        name: "sock_hdr_name",
        set: set_sock_hdr_name,
    },
    ParamExport {
        name: "method_filtering",
        set: set_method_filtering,
    },
    ParamExport {
        name: "use_path",
        set: set_use_path,
    },
    ParamExport {
        name: "path_mode",
        set: set_path_mode,
    },
    ParamExport {
        name: "path_use_received",
        set: set_path_use_received,
    },
];

static CMDS: &[CmdExport] = &[
    CmdExport {
        name: "save",
        min_args: 1,
        max_args: 2,
        fixup: Some(fixup_save),
        handler: cmd_save,
        routes: REQUEST_ROUTE,
    },
    CmdExport {
        name: "lookup",
        min_args: 1,
        max_args: 1,
        fixup: Some(fixup_domain),
        handler: cmd_lookup,
        routes: REQUEST_ROUTE | FAILURE_ROUTE,
    },
    CmdExport {
        name: "add_sock_hdr",
        min_args: 1,
        max_args: 1,
        fixup: None,
        handler: cmd_add_sock_hdr,
        routes: REQUEST_ROUTE,
    },
    CmdExport {
        name: "registered",
        min_args: 1,
        max_args: 1,
        fixup: Some(fixup_domain),
        handler: cmd_registered,
        routes: REQUEST_ROUTE | FAILURE_ROUTE,
    },
];

/// The registrar module.
pub static EXPORTS: ModuleExports = ModuleExports {
    name: "registrar",
    params: PARAM_EXPORTS,
    cmds: CMDS,
    pvs: &[],
    mod_init: Some(mod_init),
    child_init: None,
    destroy: None,
    pre_script: None,
    reply_hook: None,
};

fn mod_init() -> Result<(), String> {
    if !crate::core::module::is_loaded("sl") {
        return Err("registrar: can't load SL API (module sl must be loaded)".into());
    }
    if !crate::core::module::is_loaded("usrloc") {
        return Err("registrar: can't bind usrloc (module usrloc must be loaded)".into());
    }
    let mut p = params();
    // As in 1.2, use_domain comes from usrloc (the table must agree with the AORs).
    p.use_domain = ul::params().use_domain;
    if p.case_sensitive != ul::params().case_sensitive {
        // The AOR is lowercased here unless case_sensitive; the table itself compares
        // case-insensitively unless usrloc's case_sensitive — both spellings work.
        crate::log_dbg!("registrar: case_sensitive differs from usrloc's setting");
    }
    if !p.received_avp.is_empty() {
        parse_avp_param(&p.received_avp).map_err(|e| format!("registrar: received_avp: {e}"))?;
    }
    if !p.aor_avp.is_empty() {
        parse_avp_param(&p.aor_avp).map_err(|e| format!("registrar: aor_avp: {e}"))?;
    }
    let g = "registrar";
    stats::register(g, "max_expires", NO_RESET).set(u64::from(p.max_expires));
    stats::register(g, "max_contacts", NO_RESET).set(u64::from(p.max_contacts));
    stats::register(g, "default_expire", NO_RESET).set(u64::from(p.default_expires));
    let _ = STATS.set(RegStats {
        accepted: stats::register(g, "accepted_regs", 0),
        rejected: stats::register(g, "rejected_regs", 0),
    });
    let _ = FROZEN.set(p);
    // Domains named in save()/lookup() before shm existed.
    for name in take_pending() {
        register_domain(&name)?;
    }
    Ok(())
}

/// `$avp(i:42)`, `$avp(s:name)`, `i:42`, `s:name` or a bare name → AVP id.
pub fn parse_avp_param(s: &str) -> Result<AvpId, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("$avp(")
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(t);
    if let Some(n) = t.strip_prefix("i:").or_else(|| t.strip_prefix("I:")) {
        return n
            .trim()
            .parse::<i64>()
            .map(AvpId::Int)
            .map_err(|_| format!("bad AVP id `{s}`"));
    }
    let n = t
        .strip_prefix("s:")
        .or_else(|| t.strip_prefix("S:"))
        .unwrap_or(t);
    if n.is_empty() {
        return Err(format!("bad AVP name `{s}`"));
    }
    Ok(AvpId::Str(n.to_owned()))
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

static PENDING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn take_pending() -> Vec<String> {
    PENDING
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
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
    } else if let Ok(mut v) = PENDING.lock() {
        v.push(name.clone());
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
        crate::log_err!("ERROR:registrar:save: usrloc domain not registered");
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
        let now = now();
        let res = save::save(ctx.msg, dom, p, &inp, now);
        let (rc, rep) = match &res {
            Ok(s) => {
                if let Some(st) = STATS.get() {
                    st.accepted.inc();
                }
                (1, reply::ok_reply(s, p, now))
            }
            Err(e) => {
                if let Some(st) = STATS.get() {
                    st.rejected.inc();
                }
                crate::log_dbg!("registrar: save() failed: {}", e.text());
                (0, reply::err_reply(*e, p))
            }
        };
        if flags & SAVE_NO_REPLY == 0 && reply::send(ctx.msg, &rep).is_err() {
            crate::log_err!("ERROR:registrar:save: failed to send the reply");
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
    let rest = text.split_once(':').map_or(text, |(_, r)| r);
    let rest = rest.replace(['[', ']'], "");
    let (ip, port) = rest.rsplit_once(':')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    crate::core::transport::socket::sockets()
        .iter()
        .position(|s| s.addr.ip() == ip && s.port == port)
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
        crate::log_err!("ERROR:registrar:lookup: usrloc domain not registered");
        return -3;
    };
    let p = cur();
    let ruri = ctx.msg.ruri().to_owned();
    let aor = match save::extract_aor(&ruri, &p, p.use_domain) {
        Ok(a) => a,
        Err(_) => {
            crate::log_err!("ERROR:registrar:lookup: failed to extract the AOR from the R-URI");
            return -3;
        }
    };
    let found = lookup::select(dom, &aor, ctx.msg.method(), p.method_filtering, now());
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
    match save::extract_aor(&ruri, &p, p.use_domain) {
        Ok(aor) if lookup::registered(dom, &aor, now()) => 1,
        _ => -1,
    }
}

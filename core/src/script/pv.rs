//! Pseudo-variable evaluation (reference §7) and assignment.

use super::interp::Lhs;
use super::{AvpId, Ctx, PvValue};
use crate::cfg::pv::{AvpName, PvIndex, PvParam, PvSpec};
use crate::parser::{HdrType, SipMsg, Uri};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// `$var(x)`: per process, survives messages (the server has no threads; tests
    /// running in threads get one set each).
    static VARS: RefCell<HashMap<String, PvValue>> = RefCell::new(HashMap::new());
}

/// Core PV names (long aliases included).
pub(crate) const CORE_PVS: &[&str] = &[
    // Kamailio's `$null`: no value (assigning it deletes an AVP or a dialog variable)
    "null",
    "ru",
    "ruri",
    "rU",
    "ruri.user",
    "rd",
    "ruri.domain",
    "rp",
    "rP",
    "ou",
    "ouri",
    "oU",
    "od",
    "op",
    "oP",
    "du",
    "duri",
    "dd",
    "dp",
    "dP",
    "ds",
    "br",
    "bR",
    "bf",
    "bF",
    "mf",
    "mF",
    "sf",
    "sF",
    "rm",
    "rs",
    "rr",
    "rb",
    "mb",
    "ml",
    "mi",
    "ci",
    "cl",
    "cs",
    "ct",
    "cT",
    "fu",
    "from",
    "fU",
    "from.user",
    "fd",
    "from.domain",
    "fn",
    "ft",
    "tu",
    "to",
    "tU",
    "to.user",
    "td",
    "to.domain",
    "tn",
    "tt",
    "ua",
    "re",
    "rt",
    "di",
    "ai",
    "pu",
    "pU",
    "pd",
    "pn",
    "ar",
    "au",
    "Au",
    "si",
    "src_ip",
    "sp",
    "Ri",
    "Rp",
    "pr",
    "proto",
    "fs",
    "pp",
    "rc",
    "retcode",
    "Ts",
    "Tf",
    "TV",
    "nh",
    "err.class",
    "err.level",
    "err.info",
    "err.rcode",
    "err.rreason",
    "C",
    "hdr",
    "avp",
    "avpt",
    "at",
    "avpg",
    "ag",
    "avps",
    "as",
    "avpp",
    "ap",
    "var",
];

/// Is `name` a PV of the core?
pub fn is_core_pv(name: &str) -> bool {
    CORE_PVS.contains(&name)
}

/// Read a `$var` (initial value int 0).
pub fn var_get(name: &str) -> PvValue {
    VARS.with(|v| v.borrow().get(name).cloned().unwrap_or(PvValue::Int(0)))
}

/// Set a `$var` (null sets int 0).
pub fn var_set(name: &str, val: PvValue) {
    let val = if val.is_null() { PvValue::Int(0) } else { val };
    VARS.with(|v| {
        let mut m = v.borrow_mut();
        match m.get_mut(name) {
            Some(slot) => *slot = val,
            None => {
                m.insert(name.to_string(), val);
            }
        }
    });
}

fn s(v: &str) -> PvValue {
    PvValue::Str(v.to_string())
}

fn opt(v: Option<&str>) -> PvValue {
    v.map(s).unwrap_or(PvValue::Null)
}

/// Evaluate a PV (with its index and transformations).
pub fn get(ctx: &mut Ctx, spec: &PvSpec) -> PvValue {
    let v = get_raw(ctx, spec);
    if spec.trans.is_empty() {
        v
    } else {
        super::transform::apply_all(ctx, v, &spec.trans)
    }
}

fn uri_val(u: Option<&str>, f: impl FnOnce(&Uri) -> PvValue) -> PvValue {
    match u.map(Uri::parse) {
        Some(Ok(u)) => f(&u),
        _ => PvValue::Null,
    }
}

fn nonempty(v: &str) -> PvValue {
    if v.is_empty() { PvValue::Null } else { s(v) }
}

fn proto_of_uri(u: &Uri) -> PvValue {
    match u.transport() {
        Some(t) => s(t),
        None => s("udp"),
    }
}

fn port_of_uri(u: &Uri) -> PvValue {
    match u.port {
        Some(p) => PvValue::Int(p as i64),
        None => PvValue::Null,
    }
}

/// Display name, URI and tag of a name-addr header body (for headers without a typed
/// accessor: Remote-Party-ID, Diversion, P-*-Identity).
fn nameaddr_parts(body: &str) -> (Option<&str>, &str) {
    let body = body.trim();
    if let Some(lt) = body.find('<') {
        let disp = body[..lt].trim().trim_matches('"').trim();
        let rest = &body[lt + 1..];
        let uri = rest.split('>').next().unwrap_or("");
        (if disp.is_empty() { None } else { Some(disp) }, uri)
    } else {
        (None, body.split(';').next().unwrap_or("").trim())
    }
}

fn hex(v: u32) -> PvValue {
    PvValue::Str(format!("0x{v:X}"))
}

fn ctime(t: i64) -> String {
    // "Thu Jan  1 00:00:00 1970" (UTC; the server's TZ is not consulted)
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let wd = DAYS[days.rem_euclid(7) as usize];
    // civil from days (H. Hinnant)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        wd,
        MON[(m - 1) as usize],
        d,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        y
    )
}

fn from_to(m: &SipMsg, to: bool, what: u8) -> PvValue {
    let na = if to { m.to() } else { m.from() };
    let Ok(na) = na else {
        return PvValue::Null;
    };
    match what {
        b'u' => s(m.s(na.uri)),
        b'U' => uri_val(Some(m.s(na.uri)), |u| nonempty(&u.user)),
        b'd' => uri_val(Some(m.s(na.uri)), |u| s(&u.host)),
        b'n' => opt(m.os(na.display).map(|d| d.trim().trim_matches('"'))),
        b't' => opt(m.os(na.tag)),
        _ => PvValue::Null,
    }
}

fn auth_field(m: &SipMsg, realm: bool) -> PvValue {
    for t in [HdrType::Authorization, HdrType::ProxyAuthorization] {
        if let Ok(Some(d)) = m.auth(t) {
            let sp = if realm { d.realm } else { d.username };
            return opt(m.os(sp).map(|v| v.trim_matches('"')));
        }
    }
    PvValue::Null
}

fn branches_text(ctx: &Ctx, with_ruri: bool) -> PvValue {
    let mut out = String::new();
    if with_ruri {
        out.push_str(ctx.msg.ruri());
    }
    for b in &ctx.branches {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push('<');
        out.push_str(&b.uri);
        out.push('>');
        if b.q != super::Q_UNSPECIFIED {
            out.push_str(&format!(";q={}", q_text(b.q)));
        }
    }
    if out.is_empty() {
        PvValue::Null
    } else {
        PvValue::Str(out)
    }
}

fn q_text(q: i32) -> String {
    let q = q.clamp(0, 1000);
    if q == 1000 {
        "1".into()
    } else {
        format!("0.{:03}", q).trim_end_matches('0').to_string()
    }
}

/// Resolve an AVP name to an id (aliases were resolved at fixup).
pub fn avp_id(ctx: &mut Ctx, n: &AvpName) -> Option<AvpId> {
    match n {
        AvpName::Int(i) => Some(AvpId::Int(*i)),
        AvpName::Str(s) | AvpName::Alias(s) => Some(AvpId::Str(s.clone())),
        AvpName::Pv(p) => match get(ctx, p) {
            PvValue::Int(i) => Some(AvpId::Int(i)),
            PvValue::Str(s) => {
                if let Some(i) = s.strip_prefix("i:") {
                    i.parse().ok().map(AvpId::Int)
                } else {
                    Some(AvpId::Str(s.strip_prefix("s:").unwrap_or(&s).to_string()))
                }
            }
            PvValue::Null => None,
        },
    }
}

fn index_of(ctx: &mut Ctx, i: &Option<PvIndex>) -> Option<Option<i64>> {
    // None = all ([*]); Some(n)
    match i {
        None => Some(Some(0)),
        Some(PvIndex::Int(n)) => Some(Some(*n)),
        Some(PvIndex::All) => Some(None),
        Some(PvIndex::Pv(p)) => get(ctx, p).as_int().map(Some),
    }
}

fn get_raw(ctx: &mut Ctx, spec: &PvSpec) -> PvValue {
    let name = spec.name.as_str();
    match name {
        "avp" | "avpt" | "at" | "avpg" | "ag" | "avps" | "as" | "avpp" | "ap" => {
            let Some(PvParam::Avp(n)) = &spec.param else {
                return PvValue::Null;
            };
            let Some(id) = avp_id(ctx, n) else {
                return PvValue::Null;
            };
            match index_of(ctx, &spec.index) {
                Some(Some(i)) => ctx.avps.get_nth(&id, i).cloned().unwrap_or(PvValue::Null),
                Some(None) => {
                    let all = ctx.avps.get_all(&id);
                    if all.is_empty() {
                        return PvValue::Null;
                    }
                    PvValue::Str(
                        all.iter()
                            .map(|v| v.to_text())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                }
                None => PvValue::Null,
            }
        }
        "var" => match &spec.param {
            Some(PvParam::Name(n)) => var_get(n),
            _ => PvValue::Null,
        },
        "TV" => time_value(spec),
        "nh" => {
            let Some(PvParam::Name(k)) = &spec.param else {
                return PvValue::Null;
            };
            let m = &*ctx.msg;
            if !m.is_request() {
                return PvValue::Null;
            }
            let u = m.dst_uri.as_deref().unwrap_or_else(|| m.ruri());
            match k.as_str() {
                "u" => s(u),
                "U" => uri_val(Some(u), |u| nonempty(&u.user)),
                "d" => uri_val(Some(u), |u| s(&u.host)),
                "p" => uri_val(Some(u), port_of_uri),
                "P" => uri_val(Some(u), proto_of_uri),
                _ => PvValue::Null,
            }
        }
        "hdr" => {
            let hname = match &spec.param {
                Some(PvParam::Name(n)) => n.clone(),
                Some(PvParam::Pv(p)) => match get(ctx, p) {
                    PvValue::Str(s) => s,
                    _ => return PvValue::Null,
                },
                _ => return PvValue::Null,
            };
            if matches!(spec.index, None | Some(PvIndex::Int(0))) {
                return opt(ctx.msg.header(&hname).map(str::trim));
            }
            let idx = index_of(ctx, &spec.index);
            let all = ctx.msg.headers_by_name(&hname);
            match idx {
                Some(Some(i)) => {
                    let k = if i < 0 { all.len() as i64 + i } else { i };
                    if k < 0 {
                        return PvValue::Null;
                    }
                    opt(all.get(k as usize).map(|v| v.trim()))
                }
                Some(None) => {
                    if all.is_empty() {
                        PvValue::Null
                    } else {
                        PvValue::Str(all.iter().map(|v| v.trim()).collect::<Vec<_>>().join(", "))
                    }
                }
                None => PvValue::Null,
            }
        }
        "C" => match &spec.param {
            Some(PvParam::Color { fg, bg }) => s(&color_escape(*fg, *bg)),
            _ => PvValue::Null,
        },
        _ => {
            if let Some(v) = simple(ctx, name) {
                return v;
            }
            // module PVs
            let mods: &[&'static crate::module::ModuleExports] =
                match ctx.script.or_else(|| super::fixup::SCRIPT.get()) {
                    Some(s) => &s.mods,
                    None => crate::module::loaded(),
                };
            for m in mods {
                for p in m.pvs {
                    if p.name == name {
                        return (p.get)(ctx, spec);
                    }
                }
            }
            PvValue::Null
        }
    }
}

/// Whether `$TV(key)` / `$nh(key)` has a key the evaluator knows (checked at fixup).
pub fn param_known(name: &str, key: &str) -> bool {
    match name {
        "TV" => matches!(key, "s" | "u" | "sn" | "un" | ""),
        "nh" => matches!(key, "u" | "U" | "d" | "p" | "P"),
        _ => true,
    }
}

/// `$TV(s)` seconds, `$TV(u)` the microseconds of that second, `$TV(sn)`/`$TV(un)` the
/// same read afresh; `$TV` alone `"s.u"`. SIP Router caches `s`/`u` per message; here
/// every read takes the clock (as `$Ts` does), so `s` and `sn` are the same value.
fn time_value(spec: &PvSpec) -> PvValue {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let key = match &spec.param {
        Some(PvParam::Name(k)) => k.as_str(),
        _ => "",
    };
    match key {
        "s" | "sn" => PvValue::Int(d.as_secs() as i64),
        "u" | "un" => PvValue::Int(d.subsec_micros() as i64),
        _ => PvValue::Str(format!("{}.{:06}", d.as_secs(), d.subsec_micros())),
    }
}

/// The ANSI escape for `$C(<fg><bg>)`, as 1.2's xlog builds it: `ESC[`, `0;` (lower
/// case fg, normal) or `1;` (upper case, bold), `3<n>;` for the foreground, `4<n>` for
/// the background, `m`; colours x (default, 9), s (black, 0), r, g, y, b, p (purple), c,
/// w (7). An unknown colour letter gives the empty string (1.2 logs it and prints
/// nothing). xlog and every PV format use this one function.
pub fn color_escape(fg: char, bg: char) -> String {
    let code = |c: char| match c.to_ascii_lowercase() {
        'x' => Some(9),
        's' => Some(0),
        'r' => Some(1),
        'g' => Some(2),
        'y' => Some(3),
        'b' => Some(4),
        'p' => Some(5),
        'c' => Some(6),
        'w' => Some(7),
        _ => None,
    };
    let (Some(f), Some(b)) = (code(fg), code(bg)) else {
        return String::new();
    };
    let weight = if fg.is_ascii_uppercase() { 1 } else { 0 };
    format!("\x1b[{weight};3{f};4{b}m")
}

/// The PVs without parameters. None = not one of these.
fn simple(ctx: &mut Ctx, name: &str) -> Option<PvValue> {
    let m = &*ctx.msg;
    Some(match name {
        "ru" | "ruri" => {
            if m.is_request() {
                s(m.ruri())
            } else {
                PvValue::Null
            }
        }
        "rU" | "ruri.user" => uri_val(m.is_request().then(|| m.ruri()), |u| nonempty(&u.user)),
        "rd" | "ruri.domain" => uri_val(m.is_request().then(|| m.ruri()), |u| s(&u.host)),
        "rp" => uri_val(m.is_request().then(|| m.ruri()), |u| {
            PvValue::Int(u.port_or_default() as i64)
        }),
        "rP" => uri_val(m.is_request().then(|| m.ruri()), proto_of_uri),
        "ou" | "ouri" => {
            if m.is_request() {
                s(m.orig_ruri())
            } else {
                PvValue::Null
            }
        }
        "oU" => uri_val(m.is_request().then(|| m.orig_ruri()), |u| nonempty(&u.user)),
        "od" => uri_val(m.is_request().then(|| m.orig_ruri()), |u| s(&u.host)),
        "op" => uri_val(m.is_request().then(|| m.orig_ruri()), |u| {
            PvValue::Int(u.port_or_default() as i64)
        }),
        "oP" => uri_val(m.is_request().then(|| m.orig_ruri()), proto_of_uri),
        "du" | "duri" => opt(m.dst_uri.as_deref()),
        "dd" => uri_val(m.dst_uri.as_deref(), |u| s(&u.host)),
        "dp" => uri_val(m.dst_uri.as_deref(), port_of_uri),
        "dP" => uri_val(m.dst_uri.as_deref(), proto_of_uri),
        "ds" => branches_text(ctx, true),
        "br" => opt(ctx.branches.first().map(|b| b.uri.as_str())),
        "bR" => branches_text(ctx, false),
        "bf" => PvValue::Int(ctx.ruri_bflags as i64),
        "bF" => hex(ctx.ruri_bflags),
        "mf" => PvValue::Int(m.flags as i64),
        "mF" => hex(m.flags),
        "sf" => PvValue::Int(ctx.sflags as i64),
        "sF" => hex(ctx.sflags),
        "rm" => nonempty(m.method_str()),
        "rs" => match m.status() {
            Some(c) => PvValue::Int(c as i64),
            None => PvValue::Null,
        },
        "rr" => opt(m.reason()),
        "rb" => PvValue::Str(String::from_utf8_lossy(m.body()).into_owned()),
        "mb" => PvValue::Str(String::from_utf8_lossy(m.buf()).into_owned()),
        "ml" => PvValue::Int(m.len() as i64),
        "mi" => PvValue::Int(m.id as i64),
        "ci" => opt(m.callid().map(str::trim)),
        "cl" => match m.content_length() {
            Some(l) => PvValue::Int(l as i64),
            None => PvValue::Null,
        },
        "cs" => match m.cseq() {
            Ok(c) => PvValue::Int(c.num as i64),
            Err(_) => PvValue::Null,
        },
        "ct" => opt(m.header("Contact").map(str::trim)),
        "cT" => opt(m.header("Content-Type").map(str::trim)),
        "fu" | "from" => from_to(m, false, b'u'),
        "fU" | "from.user" => from_to(m, false, b'U'),
        "fd" | "from.domain" => from_to(m, false, b'd'),
        "fn" => from_to(m, false, b'n'),
        "ft" => from_to(m, false, b't'),
        "tu" | "to" => from_to(m, true, b'u'),
        "tU" | "to.user" => from_to(m, true, b'U'),
        "td" | "to.domain" => from_to(m, true, b'd'),
        "tn" => from_to(m, true, b'n'),
        "tt" => from_to(m, true, b't'),
        "ua" => opt(m.user_agent().map(str::trim)),
        "re" => opt(m.header("Remote-Party-ID").map(|b| nameaddr_parts(b).1)),
        "rt" => opt(m.header("Refer-To").map(|b| nameaddr_parts(b).1)),
        "di" => opt(m.header("Diversion").map(|b| nameaddr_parts(b).1)),
        "ai" => opt(m.header("P-Asserted-Identity").map(|b| nameaddr_parts(b).1)),
        "pu" | "pU" | "pd" | "pn" => {
            let Some(b) = m.header("P-Preferred-Identity") else {
                return Some(PvValue::Null);
            };
            let (disp, uri) = nameaddr_parts(b);
            match name {
                "pu" => s(uri),
                "pU" => uri_val(Some(uri), |u| nonempty(&u.user)),
                "pd" => uri_val(Some(uri), |u| s(&u.host)),
                _ => opt(disp),
            }
        }
        "ar" => auth_field(m, true),
        "au" => auth_field(m, false),
        "Au" => match auth_field(m, false) {
            PvValue::Null => from_to(m, false, b'U'),
            v => v,
        },
        "si" | "src_ip" => PvValue::Str(m.rcv.src.ip().to_string()),
        "sp" => PvValue::Int(m.rcv.src.port() as i64),
        "Ri" => PvValue::Str(m.rcv.dst.ip().to_string()),
        "Rp" => PvValue::Int(m.rcv.dst.port() as i64),
        "pr" | "proto" => PvValue::Str(m.rcv.proto.as_str().to_ascii_lowercase()),
        "fs" => match m.force_send_sock {
            Some(i) => match crate::transport::socket::sockets().get(i) {
                Some(si) => PvValue::Str(format!(
                    "{}:{}:{}",
                    si.proto.as_str(),
                    si.address_str,
                    si.port
                )),
                None => PvValue::Null,
            },
            None => PvValue::Null,
        },
        "pp" => PvValue::Int(i64::from(crate::sys::getpid())),
        "rc" | "retcode" => PvValue::Int(ctx.retcode as i64),
        "Ts" => PvValue::Int(crate::clock::now()),
        "Tf" => PvValue::Str(ctime(crate::clock::now())),
        "null" => PvValue::Null,
        "err.class" => match &m.parse_error {
            Some(_) => PvValue::Int(1),
            None => PvValue::Int(0),
        },
        "err.level" => match &m.parse_error {
            Some(_) => PvValue::Int(3),
            None => PvValue::Int(0),
        },
        "err.info" => match &m.parse_error {
            Some(e) => s(e.what),
            None => PvValue::Null,
        },
        "err.rcode" => match &m.parse_error {
            Some(_) => PvValue::Int(400),
            None => PvValue::Int(0),
        },
        "err.rreason" => match &m.parse_error {
            Some(e) => s(crate::msg::SipError::from_parse(e).reply().1),
            None => PvValue::Null,
        },
        _ => return None,
    })
}

/// Execute an assignment.
pub fn assign(ctx: &mut Ctx, lhs: &Lhs, v: PvValue) -> i32 {
    match lhs {
        Lhs::Var(n) => {
            var_set(n, v);
            1
        }
        Lhs::Avp(spec) => {
            let Some(PvParam::Avp(n)) = &spec.param else {
                return -1;
            };
            let Some(id) = avp_id(ctx, n) else {
                return -1;
            };
            match v {
                PvValue::Null => {
                    if matches!(spec.index, Some(PvIndex::All)) {
                        ctx.avps.del_all(&id);
                    } else {
                        ctx.avps.del_one(&id);
                    }
                }
                v => ctx.avps.add(id, v),
            }
            1
        }
        Lhs::Ru => match v {
            PvValue::Str(s) => super::actions::set_ruri(ctx, &s),
            PvValue::Null => {
                ctx.msg.new_uri = None;
                1
            }
            PvValue::Int(_) => {
                crate::log_err!("cannot assign an integer to $ru");
                -1
            }
        },
        Lhs::Du => match v {
            PvValue::Str(s) => {
                if Uri::parse(&s).is_err() {
                    crate::log_err!("bad uri <{s}> for $du");
                    return -1;
                }
                ctx.msg.dst_uri = Some(s);
                1
            }
            PvValue::Null => {
                ctx.msg.dst_uri = None;
                1
            }
            PvValue::Int(_) => -1,
        },
        Lhs::RUser | Lhs::RDomain => {
            let text = match v {
                PvValue::Str(s) => Some(s),
                PvValue::Null => None,
                PvValue::Int(_) => {
                    crate::log_err!("cannot assign an integer to a R-URI part");
                    return -1;
                }
            };
            let mut u = match Uri::parse(ctx.msg.ruri()) {
                Ok(u) => u,
                Err(_) => return -1,
            };
            let r = match (lhs, text) {
                (Lhs::RUser, t) => u.set_user(t.as_deref().unwrap_or("")),
                (_, Some(t)) => u.set_host(&t),
                (_, None) => return -1,
            };
            if r.is_err() {
                return -1;
            }
            ctx.msg.new_uri = Some(u.to_string());
            1
        }
        Lhs::Module(spec, set) => set(ctx, spec, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_epoch() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(q_text(500), "0.5");
        assert_eq!(q_text(1000), "1");
    }
}

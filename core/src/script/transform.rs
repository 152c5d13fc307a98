//! Transformations `{s.*}`, `{uri.*}`, `{param.*}`, `{nameaddr.*}`, `{tobody.*}`
//! (reference §7; the later ones as SIP Router 3.1 / Kamailio document them).

use super::{Ctx, PvValue};
use crate::cfg::pv::{TrParam, Transform};
use crate::parser::Uri;

const S_OPS: &[&str] = &[
    "len",
    "int",
    "encode.hexa",
    "decode.hexa",
    "escape.common",
    "unescape.common",
    "escape.user",
    "unescape.user",
    "substr",
    "select",
    "strip",
    "striptail",
    "prefixes",
    "prefixes.quoted",
    "md5",
    "tolower",
    "toupper",
];
const URI_OPS: &[&str] = &[
    "user",
    "host",
    "domain",
    "passwd",
    "port",
    "params",
    "param",
    "headers",
    "transport",
    "ttl",
    "uparam",
    "maddr",
    "method",
    "lr",
    "r2",
    "scheme",
];
const PARAM_OPS: &[&str] = &["value", "valueat", "name", "count"];
const NAMEADDR_OPS: &[&str] = &["name", "uri", "len"];
const TOBODY_OPS: &[&str] = &["uri", "display", "tag", "user", "host", "params"];

/// Whether `{class.op}` exists.
pub fn is_known(class: &str, op: &str) -> bool {
    match class {
        "s" => S_OPS.contains(&op),
        "uri" => URI_OPS.contains(&op),
        "param" => PARAM_OPS.contains(&op),
        "nameaddr" => NAMEADDR_OPS.contains(&op),
        "tobody" => TOBODY_OPS.contains(&op),
        _ => false,
    }
}

/// Apply a chain of transformations; any failure yields null.
pub fn apply_all(ctx: &mut Ctx, mut v: PvValue, trs: &[Transform]) -> PvValue {
    for t in trs {
        v = apply(ctx, v, t);
        if v.is_null() {
            break;
        }
    }
    v
}

fn param_str(ctx: &mut Ctx, p: Option<&TrParam>) -> Option<String> {
    match p? {
        TrParam::Int(i) => Some(i.to_string()),
        TrParam::Str(s) => Some(s.clone()),
        TrParam::Pv(p) => match ctx.get_pv(p) {
            PvValue::Null => None,
            v => Some(v.to_text()),
        },
    }
}

fn param_int(ctx: &mut Ctx, p: Option<&TrParam>) -> Option<i64> {
    match p? {
        TrParam::Int(i) => Some(*i),
        TrParam::Str(s) => s.trim().parse().ok(),
        TrParam::Pv(p) => ctx.get_pv(p).as_int(),
    }
}

fn text(v: &PvValue) -> String {
    match v {
        PvValue::Str(s) => s.clone(),
        PvValue::Int(i) => i.to_string(),
        PvValue::Null => String::new(),
    }
}

fn apply(ctx: &mut Ctx, v: PvValue, t: &Transform) -> PvValue {
    if v.is_null() {
        return PvValue::Null;
    }
    match t.class.as_str() {
        "s" => tr_s(ctx, v, t),
        "uri" => tr_uri(ctx, &text(&v), t),
        "param" => tr_param(ctx, &text(&v), t),
        "nameaddr" | "tobody" => tr_nameaddr(&text(&v), t),
        _ => PvValue::Null,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c)
}

fn escape(s: &str, user: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        let keep = is_unreserved(c)
            || (user && b"&=+$,;?/".contains(&c))
            || (!user && b"/:@&=+$,;?[]".contains(&c) && c != b'"');
        if keep && (user || c != b'%') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let hs = std::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(hs, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn tr_s(ctx: &mut Ctx, v: PvValue, t: &Transform) -> PvValue {
    let st = text(&v);
    match t.op.as_str() {
        "len" => PvValue::Int(st.len() as i64),
        "int" => match v {
            PvValue::Int(i) => PvValue::Int(i),
            _ => {
                let tr = st.trim();
                let end = tr
                    .char_indices()
                    .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
                    .map_or(tr.len(), |(i, _)| i);
                PvValue::Int(tr[..end].parse().unwrap_or(0))
            }
        },
        "encode.hexa" => PvValue::Str(st.bytes().map(|b| format!("{b:02x}")).collect()),
        "decode.hexa" => {
            if !st.len().is_multiple_of(2) {
                return PvValue::Null;
            }
            let mut out = Vec::with_capacity(st.len() / 2);
            for i in (0..st.len()).step_by(2) {
                match st
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => out.push(b),
                    None => return PvValue::Null,
                }
            }
            PvValue::Str(String::from_utf8_lossy(&out).into_owned())
        }
        "escape.common" => PvValue::Str(
            st.chars()
                .flat_map(|c| match c {
                    '\'' | '"' | '\\' => vec!['\\', c],
                    '\0' => vec!['\\', '0'],
                    c => vec![c],
                })
                .collect(),
        ),
        "unescape.common" => {
            let mut out = String::with_capacity(st.len());
            let mut it = st.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    match it.next() {
                        Some('0') => out.push('\0'),
                        Some(n) => out.push(n),
                        None => out.push('\\'),
                    }
                } else {
                    out.push(c);
                }
            }
            PvValue::Str(out)
        }
        "escape.user" => PvValue::Str(escape(&st, true)),
        "unescape.user" => unescape(&st).map_or(PvValue::Null, PvValue::Str),
        "substr" => {
            let Some(off) = param_int(ctx, t.params.first()) else {
                return PvValue::Null;
            };
            let len = param_int(ctx, t.params.get(1)).unwrap_or(0);
            let n = st.len() as i64;
            let start = if off < 0 { n + off } else { off };
            if start < 0 || start > n {
                return PvValue::Null;
            }
            let end = if len <= 0 {
                if len == 0 { n } else { n + len }
            } else {
                (start + len).min(n)
            };
            if end < start {
                return PvValue::Null;
            }
            st.get(start as usize..end as usize)
                .map_or(PvValue::Null, |x| PvValue::Str(x.to_string()))
        }
        "select" => {
            let Some(idx) = param_int(ctx, t.params.first()) else {
                return PvValue::Null;
            };
            let sep = param_str(ctx, t.params.get(1))
                .and_then(|s| s.chars().next())
                .unwrap_or(',');
            let parts: Vec<&str> = st.split(sep).collect();
            let k = if idx < 0 {
                parts.len() as i64 + idx
            } else {
                idx
            };
            if k < 0 {
                return PvValue::Null;
            }
            parts
                .get(k as usize)
                .map_or(PvValue::Null, |x| PvValue::Str(x.to_string()))
        }
        "strip" | "striptail" => {
            let Some(n) = param_int(ctx, t.params.first()) else {
                return PvValue::Null;
            };
            let n = n.max(0) as usize;
            let b = st.as_bytes();
            let out = if n >= b.len() {
                &[][..]
            } else if t.op == "strip" {
                &b[n..]
            } else {
                &b[..b.len() - n]
            };
            PvValue::Str(String::from_utf8_lossy(out).into_owned())
        }
        "prefixes" | "prefixes.quoted" => {
            let max = match t.params.first() {
                None => st.len(),
                Some(p) => match param_int(ctx, Some(p)) {
                    Some(n) if n > 0 => n as usize,
                    _ => st.len(),
                },
            };
            let q = t.op == "prefixes.quoted";
            let mut out = String::new();
            for (i, _) in st
                .char_indices()
                .skip(1)
                .chain(std::iter::once((st.len(), ' ')))
            {
                if i > max {
                    break;
                }
                if !out.is_empty() {
                    out.push(',');
                }
                if q {
                    out.push('\'');
                }
                out.push_str(&st[..i]);
                if q {
                    out.push('\'');
                }
            }
            PvValue::Str(out)
        }
        "md5" => {
            use md5::{Digest as _, Md5};
            let d = Md5::digest(st.as_bytes());
            PvValue::Str(d.iter().map(|b| format!("{b:02x}")).collect())
        }
        "tolower" => PvValue::Str(st.to_ascii_lowercase()),
        "toupper" => PvValue::Str(st.to_ascii_uppercase()),
        _ => PvValue::Null,
    }
}

/// `{nameaddr.*}` and `{tobody.*}`: the value parsed as a name-addr (To/From body).
fn tr_nameaddr(st: &str, t: &Transform) -> PvValue {
    let b = st.trim().as_bytes();
    let Ok(na) = crate::parser::typed::parse_nameaddr(b, crate::parser::Span::new(0, b.len()), 0)
    else {
        return PvValue::Null;
    };
    let s = |sp: crate::parser::Span| String::from_utf8_lossy(sp.bytes(b)).into_owned();
    let uri = s(na.uri);
    match (t.class.as_str(), t.op.as_str()) {
        ("nameaddr", "name") | ("tobody", "display") => {
            PvValue::Str(na.display.map(s).unwrap_or_default())
        }
        (_, "uri") => PvValue::Str(uri),
        ("nameaddr", "len") => {
            // The name-addr alone: display name to `>` (header parameters excluded).
            let end = na.uri.end() + usize::from(b.get(na.uri.end()) == Some(&b'>'));
            PvValue::Int((end - na.full.start as usize) as i64)
        }
        ("tobody", "tag") => PvValue::Str(na.tag.map(s).unwrap_or_default()),
        ("tobody", "user" | "host") => match Uri::parse(&uri) {
            Ok(u) if t.op == "user" => PvValue::Str(u.user.clone()),
            Ok(u) => PvValue::Str(u.host.clone()),
            Err(_) => PvValue::Null,
        },
        ("tobody", "params") => {
            PvValue::Str(s(na.params_span).trim_start_matches(';').trim().to_string())
        }
        _ => PvValue::Null,
    }
}

fn o(v: Option<&str>) -> PvValue {
    v.map_or(PvValue::Null, |s| PvValue::Str(s.to_string()))
}

fn tr_uri(ctx: &mut Ctx, st: &str, t: &Transform) -> PvValue {
    let st = st.trim();
    let st = st
        .strip_prefix('<')
        .and_then(|x| x.split('>').next())
        .unwrap_or(st);
    let Ok(u) = Uri::parse(st) else {
        return PvValue::Null;
    };
    match t.op.as_str() {
        "user" => PvValue::Str(u.user.clone()),
        "host" | "domain" => PvValue::Str(u.host.clone()),
        "passwd" => PvValue::Str(u.passwd.clone().unwrap_or_default()),
        "port" => PvValue::Str(u.port.map(|p| p.to_string()).unwrap_or_default()),
        "params" => PvValue::Str(u.params_text().trim_start_matches(';').to_string()),
        "param" => {
            let Some(name) = param_str(ctx, t.params.first()) else {
                return PvValue::Null;
            };
            match u.param(&name) {
                Some(v) => PvValue::Str(v.unwrap_or("").to_string()),
                None => PvValue::Str(String::new()),
            }
        }
        "headers" => PvValue::Str(u.headers.clone().unwrap_or_default()),
        "transport" => o(Some(u.transport().unwrap_or(""))),
        "ttl" => o(Some(u.ttl().unwrap_or(""))),
        "uparam" => o(Some(u.user_param().unwrap_or(""))),
        "maddr" => o(Some(u.maddr().unwrap_or(""))),
        "method" => o(Some(u.method().unwrap_or(""))),
        "lr" => PvValue::Str(if u.lr() { "lr".into() } else { String::new() }),
        "r2" => o(Some(u.r2().unwrap_or(""))),
        "scheme" => PvValue::Str(st.split(':').next().unwrap_or("").to_ascii_lowercase()),
        _ => PvValue::Null,
    }
}

fn split_params(st: &str, sep: char) -> Vec<(String, Option<String>)> {
    st.split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
            None => (p.to_string(), None),
        })
        .collect()
}

fn tr_param(ctx: &mut Ctx, st: &str, t: &Transform) -> PvValue {
    let sep_at = |ctx: &mut Ctx, i: usize| {
        param_str(ctx, t.params.get(i))
            .and_then(|s| s.chars().next())
            .unwrap_or(';')
    };
    match t.op.as_str() {
        "value" => {
            let Some(name) = param_str(ctx, t.params.first()) else {
                return PvValue::Null;
            };
            let sep = sep_at(ctx, 1);
            split_params(st, sep)
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map_or(PvValue::Null, |(_, v)| PvValue::Str(v.unwrap_or_default()))
        }
        "valueat" | "name" => {
            let Some(i) = param_int(ctx, t.params.first()) else {
                return PvValue::Null;
            };
            let sep = sep_at(ctx, 1);
            let ps = split_params(st, sep);
            let k = if i < 0 { ps.len() as i64 + i } else { i };
            if k < 0 {
                return PvValue::Null;
            }
            match ps.into_iter().nth(k as usize) {
                Some((n, v)) => PvValue::Str(if t.op == "name" {
                    n
                } else {
                    v.unwrap_or_default()
                }),
                None => PvValue::Null,
            }
        }
        "count" => {
            let sep = sep_at(ctx, 0);
            PvValue::Int(split_params(st, sep).len() as i64)
        }
        _ => PvValue::Null,
    }
}

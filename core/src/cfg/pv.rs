//! Pseudo-variable specifications (`$ru`, `$avp(s:x[1])`, `$(hdr(From){uri.user})`,
//! `$Cxy`...) and printf-like format strings (`"From $fu\n"`).
//!
//! The parser only checks syntax; whether a name exists (core or module PV) is
//! decided by fixup.

/// A parsed pseudo-variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvSpec {
    /// The PV name as written: `ru`, `avp`, `hdr`, `var`, `err.class`, `T_branch_idx`,
    /// `C` for colours.
    pub name: String,
    /// The part in parentheses after the name, if any.
    pub param: Option<PvParam>,
    /// `[n]`, `[-1]`, `[*]` (inside the parentheses for `$avp`/`$hdr`, or after them in
    /// the `$(...)` form).
    pub index: Option<PvIndex>,
    /// Transformations of the `$(name{tr}{tr})` form, in application order.
    pub trans: Vec<Transform>,
    /// The original text, for messages.
    pub text: String,
}

/// The parameter of a parameterised PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvParam {
    /// `$avp(...)` and its variants (`avpt/at`, `avpg/ag`, `avps/as`, `avpp/ap`).
    Avp(AvpName),
    /// `$hdr(name)`, `$var(name)`, and any other textual parameter.
    Name(String),
    /// A parameter taken from another PV at run time (`$hdr($var(h))`).
    Pv(Box<PvSpec>),
    /// `$Cxy` / `$C(xy)`: foreground and background colour letters.
    Color { fg: char, bg: char },
}

/// The name of an AVP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvpName {
    /// `i:N`
    Int(i64),
    /// `s:name`
    Str(String),
    /// a bare name: an alias declared with `avp_aliases`
    Alias(String),
    /// `$avp($pv)`: the name comes from another PV
    Pv(Box<PvSpec>),
}

/// An index: `[n]` (0 = newest/first), `[-1]` (oldest/last), `[*]` (all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvIndex {
    Int(i64),
    All,
    Pv(Box<PvSpec>),
}

/// One transformation `{class.op,param,...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub class: String,
    pub op: String,
    pub params: Vec<TrParam>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrParam {
    Int(i64),
    Str(String),
    Pv(Box<PvSpec>),
}

/// A piece of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FmtPart {
    Lit(String),
    Pv(PvSpec),
}

const MAX_DEPTH: u32 = 16;

/// The PV names that may be assigned to in 1.2 (`$avp`, `$var`, `$ru`, `$rU`, `$rd`, `$du`
/// and their long forms), and module PVs exported with a setter (`$dlg_var`).
pub fn is_assignable(spec: &PvSpec) -> bool {
    if !spec.trans.is_empty() {
        return false;
    }
    matches!(
        spec.name.as_str(),
        "avp" | "var" | "ru" | "ruri" | "rU" | "ruri.user" | "rd" | "ruri.domain" | "du" | "duri"
    ) || crate::module::pv_setter(&spec.name).is_some()
}

/// Whether a PV name selects an AVP.
pub fn is_avp_name(name: &str) -> bool {
    matches!(
        name,
        "avp" | "avpt" | "at" | "avpg" | "ag" | "avps" | "as" | "avpp" | "ap"
    )
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_color_char(c: u8) -> bool {
    matches!(
        c.to_ascii_lowercase(),
        b'x' | b's' | b'r' | b'g' | b'y' | b'b' | b'p' | b'c' | b'w'
    )
}

/// Parse one PV at the start of `s` (which must start with `$`). Returns the spec and
/// the number of bytes consumed.
pub fn parse_pv(s: &str) -> Result<(PvSpec, usize), String> {
    parse_pv_depth(s, 0)
}

fn sub(s: &str, a: usize, b: usize) -> String {
    s.get(a..b).unwrap_or("").to_string()
}

fn parse_pv_depth(s: &str, depth: u32) -> Result<(PvSpec, usize), String> {
    if depth > MAX_DEPTH {
        return Err("pseudo-variables nested too deeply".into());
    }
    let b = s.as_bytes();
    if b.first() != Some(&b'$') {
        return Err("expected `$`".into());
    }
    if b.get(1) == Some(&b'(') {
        // $(name[(param)][[idx]]{tr}...)
        let (mut spec, mut i) = parse_core(s, 2, depth, true)?;
        while b.get(i) == Some(&b'{') {
            let (tr, n) = parse_transform(s, i, depth)?;
            spec.trans.push(tr);
            i = n;
        }
        if b.get(i) != Some(&b')') {
            return Err(format!(
                "expected `)` or `{{` in pseudo-variable `{}`",
                s.get(..i.min(s.len())).unwrap_or("")
            ));
        }
        i += 1;
        spec.text = sub(s, 0, i);
        Ok((spec, i))
    } else {
        let (mut spec, i) = parse_core(s, 1, depth, false)?;
        spec.text = sub(s, 0, i);
        Ok((spec, i))
    }
}

/// Find the byte index of the `close` matching the `open` at `start`.
fn matching(b: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        if b[i] == open {
            depth += 1;
        } else if b[i] == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

fn parse_index(text: &str, depth: u32) -> Result<PvIndex, String> {
    let t = text.trim();
    if t == "*" {
        return Ok(PvIndex::All);
    }
    if t.starts_with('$') {
        let (spec, n) = parse_pv_depth(t, depth + 1)?;
        if n != t.len() {
            return Err(format!("bad index `[{}]`", text));
        }
        return Ok(PvIndex::Pv(Box::new(spec)));
    }
    match t.parse::<i64>() {
        Ok(v) => Ok(PvIndex::Int(v)),
        Err(_) => Err(format!(
            "bad index `[{}]` (expected a number, -1 or *)",
            text
        )),
    }
}

/// name, optional `(param)`, optional `[idx]` (outer index only in the `$(...)` form).
fn parse_core(
    s: &str,
    start: usize,
    depth: u32,
    paren_form: bool,
) -> Result<(PvSpec, usize), String> {
    let b = s.as_bytes();
    let mut i = start;
    let mut spec = PvSpec {
        name: String::new(),
        param: None,
        index: None,
        trans: Vec::new(),
        text: String::new(),
    };
    // colours: $Cxy and $C(xy)
    if b.get(i) == Some(&b'C') {
        if let (Some(&f), Some(&g)) = (b.get(i + 1), b.get(i + 2))
            && is_color_char(f)
            && is_color_char(g)
        {
            spec.name = "C".into();
            spec.param = Some(PvParam::Color {
                fg: f as char,
                bg: g as char,
            });
            return Ok((spec, i + 3));
        }
        if b.get(i + 1) == Some(&b'(') {
            if let (Some(&f), Some(&g), Some(&b')')) = (b.get(i + 2), b.get(i + 3), b.get(i + 4))
                && is_color_char(f)
                && is_color_char(g)
            {
                spec.name = "C".into();
                spec.param = Some(PvParam::Color {
                    fg: f as char,
                    bg: g as char,
                });
                return Ok((spec, i + 5));
            }
            return Err(
                "bad colour pseudo-variable (expected `$C(xy)` with x,y in xsrgybpcw)".into(),
            );
        }
    }
    let name_start = i;
    while i < b.len() {
        if is_name_char(b[i])
            || (b[i] == b'.' && i > name_start && b.get(i + 1).is_some_and(|c| is_name_char(*c)))
        {
            i += 1;
        } else {
            break;
        }
    }
    if i == name_start {
        return Err(match b.get(i) {
            Some(c) if c.is_ascii_graphic() => {
                format!(
                    "expected pseudo-variable name after `$`, found `{}`",
                    *c as char
                )
            }
            _ => "expected pseudo-variable name after `$`".into(),
        });
    }
    spec.name = sub(s, name_start, i);
    if b.get(i) == Some(&b'(') {
        let Some(close) = matching(b, i, b'(', b')') else {
            return Err(format!("missing `)` in pseudo-variable `${}(`", spec.name));
        };
        let mut ptext = s.get(i + 1..close).unwrap_or("");
        i = close + 1;
        // trailing [idx] inside the parentheses
        if ptext.ends_with(']') {
            let pb = ptext.as_bytes();
            let mut d = 0usize;
            let mut open = None;
            for k in (0..pb.len()).rev() {
                if pb[k] == b']' {
                    d += 1;
                } else if pb[k] == b'[' {
                    d -= 1;
                    if d == 0 {
                        open = Some(k);
                        break;
                    }
                }
            }
            let Some(open) = open else {
                return Err(format!(
                    "missing `[` in index of `${}({})`",
                    spec.name, ptext
                ));
            };
            let idx_text = ptext.get(open + 1..ptext.len() - 1).unwrap_or("");
            spec.index = Some(parse_index(idx_text, depth)?);
            ptext = ptext.get(..open).unwrap_or("");
        }
        let ptext_trim = ptext.trim();
        if ptext_trim.is_empty() {
            return Err(format!(
                "empty parameter in pseudo-variable `${}()`",
                spec.name
            ));
        }
        let dynamic = if ptext_trim.starts_with('$') {
            let (p, n) = parse_pv_depth(ptext_trim, depth + 1)?;
            if n != ptext_trim.len() {
                return Err(format!(
                    "unexpected text after `{}` in parameter of `${}`",
                    p.text, spec.name
                ));
            }
            Some(Box::new(p))
        } else {
            None
        };
        spec.param = Some(if is_avp_name(&spec.name) {
            PvParam::Avp(match dynamic {
                Some(p) => AvpName::Pv(p),
                None => parse_avp_name(ptext_trim)?,
            })
        } else {
            match dynamic {
                Some(p) => PvParam::Pv(p),
                None => PvParam::Name(ptext_trim.to_string()),
            }
        });
    }
    if paren_form && b.get(i) == Some(&b'[') {
        let Some(close) = matching(b, i, b'[', b']') else {
            return Err(format!("missing `]` in index of `${}`", spec.name));
        };
        if spec.index.is_some() {
            return Err(format!("two indexes on `${}`", spec.name));
        }
        spec.index = Some(parse_index(s.get(i + 1..close).unwrap_or(""), depth)?);
        i = close + 1;
    }
    Ok((spec, i))
}

fn parse_avp_name(t: &str) -> Result<AvpName, String> {
    if let Some(n) = t.strip_prefix("i:").or_else(|| t.strip_prefix("I:")) {
        return match n.trim().parse::<i64>() {
            Ok(v) if (0..=65535).contains(&v) => Ok(AvpName::Int(v)),
            _ => Err(format!("bad integer AVP id `{}` (expected 0..65535)", n)),
        };
    }
    if let Some(n) = t.strip_prefix("s:").or_else(|| t.strip_prefix("S:")) {
        if n.is_empty() {
            return Err("empty AVP name after `s:`".into());
        }
        return Ok(AvpName::Str(n.to_string()));
    }
    if t.bytes().all(|c| is_name_char(c) || c == b'.' || c == b'-') {
        Ok(AvpName::Alias(t.to_string()))
    } else {
        Err(format!(
            "bad AVP name `{}` (expected i:N, s:name, an alias or $pv)",
            t
        ))
    }
}

/// Parse `{class.op,param,...}` starting at the `{` at byte `start`.
fn parse_transform(s: &str, start: usize, depth: u32) -> Result<(Transform, usize), String> {
    let b = s.as_bytes();
    let mut i = start + 1;
    let cs = i;
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    if b.get(i) != Some(&b'.') || i == cs {
        return Err(format!(
            "bad transformation `{}` (expected {{class.op[,params]}})",
            s.get(start..(i + 1).min(s.len())).unwrap_or("")
        ));
    }
    let class = sub(s, cs, i);
    i += 1;
    let os = i;
    while i < b.len() && (is_name_char(b[i]) || b[i] == b'.') {
        i += 1;
    }
    let op = sub(s, os, i);
    if op.is_empty() {
        return Err(format!(
            "missing operation in transformation `{{{}.`",
            class
        ));
    }
    let mut params = Vec::new();
    loop {
        match b.get(i) {
            Some(b'}') => {
                i += 1;
                break;
            }
            Some(b',') => {
                i += 1;
                if b.get(i) == Some(&b'$') {
                    let rest = s.get(i..).unwrap_or("");
                    let (p, n) = parse_pv_depth(rest, depth + 1)?;
                    params.push(TrParam::Pv(Box::new(p)));
                    i += n;
                } else {
                    let ps = i;
                    while i < b.len() && b[i] != b',' && b[i] != b'}' {
                        i += 1;
                    }
                    let t = sub(s, ps, i);
                    params.push(match t.trim().parse::<i64>() {
                        Ok(v) => TrParam::Int(v),
                        Err(_) => TrParam::Str(t),
                    });
                }
            }
            _ => {
                return Err(format!(
                    "missing `}}` in transformation `{{{}.{}`",
                    class, op
                ));
            }
        }
    }
    Ok((Transform { class, op, params }, i))
}

/// Parse a format string: literal text and PVs; `$$` is a literal `$`.
pub fn parse_format(s: &str) -> Result<Vec<FmtPart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] == b'$' {
            if b.get(i + 1) == Some(&b'$') {
                lit.push('$');
                i += 2;
                continue;
            }
            let rest = s.get(i..).unwrap_or("");
            let (spec, n) = parse_pv(rest)?;
            if !lit.is_empty() {
                parts.push(FmtPart::Lit(std::mem::take(&mut lit)));
            }
            parts.push(FmtPart::Pv(spec));
            i += n;
        } else {
            // copy up to the next `$` (keeps UTF-8 intact: `$` is ASCII)
            let next = memchr::memchr(b'$', &b[i..]).map_or(b.len(), |k| i + k);
            lit.push_str(s.get(i..next).unwrap_or(""));
            i = next;
        }
    }
    if !lit.is_empty() {
        parts.push(FmtPart::Lit(lit));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(s: &str) -> PvSpec {
        let (p, n) = parse_pv(s).unwrap();
        assert_eq!(n, s.len(), "consumed all of {s}");
        p
    }

    #[test]
    fn simple_names() {
        assert_eq!(pv("$ru").name, "ru");
        assert_eq!(pv("$err.class").name, "err.class");
        assert_eq!(pv("$T_branch_idx").name, "T_branch_idx");
        let (p, n) = parse_pv("$rm.\n").unwrap();
        assert_eq!((p.name.as_str(), n), ("rm", 3));
        let (p, n) = parse_pv("$fu, x").unwrap();
        assert_eq!((p.name.as_str(), n), ("fu", 3));
        assert_eq!(pv("$(ru)").name, "ru");
    }

    #[test]
    fn avps() {
        let p = pv("$avp(i:12)");
        assert_eq!(p.param, Some(PvParam::Avp(AvpName::Int(12))));
        let p = pv("$avp(s:caller[1])");
        assert_eq!(p.param, Some(PvParam::Avp(AvpName::Str("caller".into()))));
        assert_eq!(p.index, Some(PvIndex::Int(1)));
        assert_eq!(pv("$avp(x[-1])").index, Some(PvIndex::Int(-1)));
        assert_eq!(pv("$avp(x[*])").index, Some(PvIndex::All));
        let p = pv("$avp($var(n))");
        match p.param {
            Some(PvParam::Avp(AvpName::Pv(inner))) => assert_eq!(inner.name, "var"),
            other => panic!("{other:?}"),
        }
        assert_eq!(pv("$(avp(s:x)[2])").index, Some(PvIndex::Int(2)));
        assert!(parse_pv("$avp(i:x)").is_err());
        assert!(parse_pv("$avp()").is_err());
        assert!(parse_pv("$avp(s:x").is_err());
    }

    #[test]
    fn hdr_var_colours() {
        let p = pv("$hdr(Via[-1])");
        assert_eq!(p.param, Some(PvParam::Name("Via".into())));
        assert_eq!(p.index, Some(PvIndex::Int(-1)));
        assert_eq!(pv("$var(i)").param, Some(PvParam::Name("i".into())));
        let (p, n) = parse_pv("$Cbxhello").unwrap();
        assert_eq!(n, 4);
        assert_eq!(p.param, Some(PvParam::Color { fg: 'b', bg: 'x' }));
        assert_eq!(
            pv("$C(rg)").param,
            Some(PvParam::Color { fg: 'r', bg: 'g' })
        );
        assert_eq!(pv("$ci").name, "ci");
    }

    #[test]
    fn transformations() {
        let p = pv("$(hdr(From){uri.user}{s.substr,1,2})");
        assert_eq!(p.trans.len(), 2);
        assert_eq!(p.trans[0].class, "uri");
        assert_eq!(p.trans[0].op, "user");
        assert_eq!(p.trans[1].params, vec![TrParam::Int(1), TrParam::Int(2)]);
        let p = pv("$(ru{param.value,$var(p),;})");
        assert!(matches!(p.trans[0].params[0], TrParam::Pv(_)));
        assert_eq!(p.trans[0].params[1], TrParam::Str(";".into()));
        assert!(parse_pv("$(ru{s.len)").is_err());
        assert!(parse_pv("$(ru{slen})").is_err());
        assert!(parse_pv("$(ru").is_err());
    }

    #[test]
    fn errors_do_not_panic() {
        for s in [
            "$", "$(", "$((", "$avp(", "$avp([", "$avp(x[)", "$C(", "$Cx", "$(a{", "$(a{b.", "$é",
        ] {
            let _ = parse_pv(s);
            let _ = parse_format(s);
        }
        let deep = "$avp(".repeat(100);
        assert!(parse_pv(&deep).is_err());
    }

    #[test]
    fn formats() {
        let f = parse_format("From $fu to $(tu{uri.user}) costs $$5\n").unwrap();
        assert_eq!(f.len(), 5);
        assert_eq!(f[0], FmtPart::Lit("From ".into()));
        assert!(matches!(&f[1], FmtPart::Pv(p) if p.name == "fu"));
        assert_eq!(f[4], FmtPart::Lit(" costs $5\n".into()));
        assert!(parse_format("bad $ here").is_err());
        assert_eq!(parse_format("").unwrap(), vec![]);
    }
}

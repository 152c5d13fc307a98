//! Start-up parsing of avpops' arguments: AVP and PV names, `op/value/flags`
//! operations, `/re/repl/flags` substitutions, database sources and names, and the
//! `db_scheme` definitions. Everything here runs at fixup (or `modparam`) time, so a
//! mistake is a configuration error reported at its `file:line:col`.

use std::sync::Arc;

use openser_core::cfg::pv::{AvpName, PvIndex, PvParam, PvSpec, TrParam, is_avp_name, parse_pv};
use openser_core::re::Regex;
use openser_core::script::PvValue;

/// `$avp(i3:123)`: 1.2's script flags after the name type. They select AVPs by the
/// flags set on them, which AVPs here do not carry: the digits are dropped (the name
/// then matches every AVP of that id, as a 1.2 name without flags does).
pub fn strip_script_flags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find("avp(") {
        out.push_str(&rest[..p + 4]);
        rest = &rest[p + 4..];
        let b = rest.as_bytes();
        if matches!(b.first(), Some(b'i' | b'I' | b's' | b'S')) {
            let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && b.get(1 + digits) == Some(&b':') {
                out.push(b[0] as char);
                rest = &rest[1 + digits..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Resolve `avp_aliases` names inside a PV (its AVP name, index and transformation
/// parameters), as the core's fixup does for plain arguments.
pub fn resolve_aliases(spec: &mut PvSpec) -> Result<(), String> {
    match &mut spec.param {
        Some(PvParam::Avp(a)) => resolve_avp_name(a)?,
        Some(PvParam::Pv(p)) => resolve_aliases(p)?,
        _ => {}
    }
    if let Some(PvIndex::Pv(p)) = &mut spec.index {
        resolve_aliases(p)?;
    }
    for t in &mut spec.trans {
        for p in &mut t.params {
            if let TrParam::Pv(p) = p {
                resolve_aliases(p)?;
            }
        }
    }
    Ok(())
}

fn resolve_avp_name(a: &mut AvpName) -> Result<(), String> {
    match a {
        AvpName::Alias(n) => match openser_core::script::fixup::avp_alias(n) {
            Some(v) => {
                *a = v;
                Ok(())
            }
            None => Err(format!(
                "unknown AVP alias '{n}' (declare it with avp_aliases)"
            )),
        },
        AvpName::Pv(p) => resolve_aliases(p),
        _ => Ok(()),
    }
}

/// Whether a PV name is known: the core's or one of a loaded module.
fn known_pv(name: &str) -> bool {
    openser_core::script::pv::is_core_pv(name)
        || openser_core::module::loaded()
            .iter()
            .any(|m| m.pvs.iter().any(|p| p.name == name))
}

/// A whole argument that must be exactly one pseudo-variable.
pub fn pv(s: &str) -> Result<PvSpec, String> {
    let t = strip_script_flags(s.trim());
    if !t.starts_with('$') {
        return Err(format!("expected a pseudo-variable, found '{s}'"));
    }
    let (mut spec, n) = parse_pv(&t)?;
    if n != t.len() {
        return Err(format!(
            "unexpected text after the pseudo-variable in '{s}'"
        ));
    }
    if !known_pv(&spec.name) {
        return Err(format!("unknown pseudo-variable '{}'", spec.text));
    }
    resolve_aliases(&mut spec)?;
    Ok(spec)
}

/// An AVP written as `$avp(name)` (or an alias): its name and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvpRef {
    pub name: AvpName,
    pub index: Option<PvIndex>,
}

/// A whole argument that must be one AVP.
pub fn avp(s: &str) -> Result<AvpRef, String> {
    let spec = pv(s)?;
    avp_of(&spec).ok_or_else(|| format!("expected an AVP ($avp(name)), found '{s}'"))
}

/// The AVP a PV names, if it is one.
pub fn avp_of(spec: &PvSpec) -> Option<AvpRef> {
    if !is_avp_name(&spec.name) || !spec.trans.is_empty() {
        return None;
    }
    match &spec.param {
        Some(PvParam::Avp(a)) => Some(AvpRef {
            name: a.clone(),
            index: spec.index.clone(),
        }),
        _ => None,
    }
}

/// Split `text` at its top-level `/` (not inside parentheses or braces).
pub fn split_slash(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '{' => depth += 1,
            ')' | '}' => depth -= 1,
            '/' if depth <= 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// Flags after the last `/`, each one of `allowed` (case-insensitive).
fn flags_of(f: &str, allowed: &str, what: &str) -> Result<String, String> {
    let f = f.trim();
    if f.is_empty() {
        return Err(format!("empty flags in {what}"));
    }
    let lower = f.to_ascii_lowercase();
    match lower.chars().find(|c| !allowed.contains(*c)) {
        Some(c) => Err(format!("unknown flag '{c}' in {what}")),
        None => Ok(lower),
    }
}

/// `i:N` (decimal or `0x` hex, signed), `s:text` or plain text.
pub fn fixed_value(s: &str) -> Result<PvValue, String> {
    if let Some(n) = s.strip_prefix("i:").or_else(|| s.strip_prefix("I:")) {
        return parse_int(n)
            .map(PvValue::Int)
            .ok_or_else(|| format!("bad integer value '{s}'"));
    }
    if let Some(t) = s.strip_prefix("s:").or_else(|| s.strip_prefix("S:")) {
        return Ok(PvValue::Str(t.to_string()));
    }
    Ok(PvValue::Str(s.to_string()))
}

/// A signed decimal or `0x` hex integer.
pub fn parse_int(n: &str) -> Option<i64> {
    let n = n.trim();
    let (neg, d) = match n.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    let v = match d.strip_prefix("0x").or_else(|| d.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => d.parse::<i64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// The second operand of `avp_check`/`avp_op`.
#[derive(Debug, Clone)]
pub enum Operand {
    Val(PvValue),
    /// a constant regular expression compiled at start-up (`re`)
    Re(Arc<Regex>),
    /// a pseudo-variable (an AVP: every one of its values is tried)
    Pv(PvSpec),
}

/// `avp_check` operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Re,
    Fm,
    And,
    Or,
    Xor,
}

/// A parsed `op_value` of `avp_check`.
#[derive(Debug, Clone)]
pub struct Check {
    pub op: CheckOp,
    pub val: Operand,
    /// `g`: every value of the checked AVP
    pub all: bool,
    /// `i`: case-insensitive `eq`/`ne`
    pub icase: bool,
}

/// Split `op/value[/flags]`: the flags are the part after the last `/` when it is
/// made only of `allowed` letters (so a value may itself contain `/`).
fn op_value_parts<'a>(
    s: &'a str,
    allowed: &str,
    what: &str,
) -> Result<(&'a str, &'a str, String), String> {
    let Some((op, rest)) = s.split_once('/') else {
        return Err(format!("{what} '{s}': expected operator/value[/flags]"));
    };
    let (val, flags) = match rest.rfind('/') {
        Some(p)
            if !rest[p + 1..].is_empty()
                && rest[p + 1..]
                    .chars()
                    .all(|c| allowed.contains(c.to_ascii_lowercase())) =>
        {
            (&rest[..p], flags_of(&rest[p + 1..], allowed, what)?)
        }
        _ => (rest, String::new()),
    };
    if val.is_empty() {
        return Err(format!("{what} '{s}': empty value"));
    }
    Ok((op.trim(), val, flags))
}

/// Parse `avp_check`'s second argument. A constant `re` value is compiled here: a bad
/// regular expression is a start-up error.
pub fn check(s: &str) -> Result<Check, String> {
    let (op, val, flags) = op_value_parts(s, "gi", "avp_check operation")?;
    let op = match op.to_ascii_lowercase().as_str() {
        "eq" => CheckOp::Eq,
        "ne" => CheckOp::Ne,
        "lt" => CheckOp::Lt,
        "le" => CheckOp::Le,
        "gt" => CheckOp::Gt,
        "ge" => CheckOp::Ge,
        "re" => CheckOp::Re,
        "fm" => CheckOp::Fm,
        "and" => CheckOp::And,
        "or" => CheckOp::Or,
        "xor" => CheckOp::Xor,
        o => return Err(format!("unknown avp_check operator '{o}'")),
    };
    let val = if val.starts_with('$') {
        Operand::Pv(pv(val)?)
    } else {
        let v = fixed_value(val)?;
        match (op, v) {
            (CheckOp::Re, PvValue::Str(r)) => Operand::Re(Arc::new(compile_check_re(&r)?)),
            (CheckOp::Re | CheckOp::Fm, PvValue::Int(_)) => {
                return Err(format!("operator '{s}' needs a string value"));
            }
            (CheckOp::And | CheckOp::Or | CheckOp::Xor, PvValue::Str(_)) => {
                return Err(format!("operator '{s}' needs an integer value (i:N)"));
            }
            (_, v) => Operand::Val(v),
        }
    };
    Ok(Check {
        op,
        val,
        all: flags.contains('g'),
        icase: flags.contains('i'),
    })
}

/// The regular expression of an `re` check: extended, case-insensitive (as 1.2).
pub fn compile_check_re(r: &str) -> Result<Regex, String> {
    Regex::new(r, true, false)
}

/// `avp_op` operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Not,
}

/// A parsed `avp_op` operation.
#[derive(Debug, Clone)]
pub struct Arith {
    pub op: ArithOp,
    pub val: Operand,
    pub all: bool,
    pub delete: bool,
}

/// Parse `avp_op`'s second argument (`op/value[/flags]`, value `i:N` or a PV).
pub fn arith(s: &str) -> Result<Arith, String> {
    let (op, val, flags) = op_value_parts(s, "gd", "avp_op operation")?;
    let op = match op.to_ascii_lowercase().as_str() {
        "add" => ArithOp::Add,
        "sub" => ArithOp::Sub,
        "mul" => ArithOp::Mul,
        "div" => ArithOp::Div,
        "mod" => ArithOp::Mod,
        "and" => ArithOp::And,
        "or" => ArithOp::Or,
        "xor" => ArithOp::Xor,
        "not" => ArithOp::Not,
        o => return Err(format!("unknown avp_op operator '{o}'")),
    };
    let val = if val.starts_with('$') {
        Operand::Pv(pv(val)?)
    } else {
        match fixed_value(val)? {
            PvValue::Int(i) => Operand::Val(PvValue::Int(i)),
            _ => return Err(format!("avp_op '{s}': the value must be an integer (i:N)")),
        }
    };
    Ok(Arith {
        op,
        val,
        all: flags.contains('g'),
        delete: flags.contains('d'),
    })
}

/// `src[/dst[/flags]]` of `avp_op`, `avp_subst` and `avp_copy`.
#[derive(Debug, Clone)]
pub struct SrcDst {
    pub src: AvpRef,
    pub dst: Option<AvpRef>,
    pub flags: String,
}

/// Parse `src[/dst][/flags]` (`allowed` flag letters).
pub fn src_dst(s: &str, allowed: &str, what: &str) -> Result<SrcDst, String> {
    let parts = split_slash(s.trim());
    let mut it = parts.into_iter();
    let src = avp(it.next().unwrap_or(""))?;
    let mut dst = None;
    let mut flags = String::new();
    for p in it {
        if p.trim_start().starts_with('$') && dst.is_none() && flags.is_empty() {
            dst = Some(avp(p)?);
        } else if flags.is_empty() {
            flags = flags_of(p, allowed, what)?;
        } else {
            return Err(format!("{what} '{s}': too many '/' parts"));
        }
    }
    Ok(SrcDst { src, dst, flags })
}

/// A piece of a substitution's replacement.
#[derive(Debug, Clone)]
pub enum ReplPart {
    Lit(String),
    /// `\N`: group N (0 = the whole match)
    Group(usize),
    Pv(PvSpec),
}

/// A parsed `/re/repl/flags` substitution.
#[derive(Debug)]
pub struct Subst {
    pub re: Regex,
    pub repl: Vec<ReplPart>,
    pub global: bool,
    /// the pattern starts with `^` (only the first match can be at the start)
    pub anchored: bool,
}

/// Parse `/re/repl/flags` (any non-alphanumeric first character is the separator;
/// `\sep` inside escapes it). Flags: `g` every match, `i` ignore case, `s` accepted
/// (a newline is an ordinary character either way). A bad regular expression, group
/// reference or PV is an error here, at start-up.
pub fn subst(expr: &str) -> Result<Subst, String> {
    let mut chars = expr.chars();
    let Some(sep) = chars.next() else {
        return Err("empty subst expression".into());
    };
    if sep == '\\' || sep.is_alphanumeric() {
        return Err(format!("bad separator in subst expression '{expr}'"));
    }
    let body = &expr[sep.len_utf8()..];
    // the regular expression
    let mut re = String::new();
    let mut it = body.char_indices();
    let mut end_re = None;
    while let Some((i, c)) = it.next() {
        if c == sep {
            end_re = Some(i);
            break;
        }
        if c == '\\' {
            match it.next() {
                Some((_, n)) if n == sep => re.push(sep),
                Some((_, n)) => {
                    re.push('\\');
                    re.push(n);
                }
                None => return Err(format!("unfinished escape in '{expr}'")),
            }
        } else {
            re.push(c);
        }
    }
    let Some(end_re) = end_re else {
        return Err(format!("no end of regular expression in '{expr}'"));
    };
    // the replacement
    let rest = &body[end_re + sep.len_utf8()..];
    let mut repl = Vec::new();
    let mut lit = String::new();
    let mut max_group = 0usize;
    let mut end_repl = None;
    let mut i = 0;
    let rb = rest.as_bytes();
    while i < rest.len() {
        let c = rest[i..].chars().next().unwrap_or(sep);
        if c == sep {
            end_repl = Some(i);
            break;
        }
        if c == '\\' {
            let Some(n) = rest[i + 1..].chars().next() else {
                return Err(format!("unfinished escape in '{expr}'"));
            };
            match n {
                '0'..='9' => {
                    if !lit.is_empty() {
                        repl.push(ReplPart::Lit(std::mem::take(&mut lit)));
                    }
                    let g = (n as u8 - b'0') as usize;
                    max_group = max_group.max(g);
                    repl.push(ReplPart::Group(g));
                }
                '\\' => lit.push('\\'),
                'n' => lit.push('\n'),
                'r' => lit.push('\r'),
                't' => lit.push('\t'),
                n if n == sep => lit.push(sep),
                n => return Err(format!("unknown escape '\\{n}' in '{expr}'")),
            }
            i += 1 + n.len_utf8();
            continue;
        }
        if c == '$' {
            if rb.get(i + 1) == Some(&b'$') {
                lit.push('$');
                i += 2;
                continue;
            }
            let (mut spec, n) = parse_pv(&rest[i..])?;
            if !known_pv(&spec.name) {
                return Err(format!("unknown pseudo-variable '{}'", spec.text));
            }
            resolve_aliases(&mut spec)?;
            if !lit.is_empty() {
                repl.push(ReplPart::Lit(std::mem::take(&mut lit)));
            }
            repl.push(ReplPart::Pv(spec));
            i += n.max(1);
            continue;
        }
        lit.push(c);
        i += c.len_utf8();
    }
    let Some(end_repl) = end_repl else {
        return Err(format!("no end of replacement in '{expr}'"));
    };
    if !lit.is_empty() {
        repl.push(ReplPart::Lit(lit));
    }
    let (mut icase, mut global) = (false, false);
    for f in rest[end_repl + sep.len_utf8()..].chars() {
        match f {
            'i' | 'I' => icase = true,
            'g' | 'G' => global = true,
            's' | 'S' => {}
            _ => return Err(format!("unknown flag '{f}' in '{expr}'")),
        }
    }
    let groups = re.matches('(').count();
    if max_group > groups {
        return Err(format!(
            "'{expr}' refers to group \\{max_group}, the expression has {groups}"
        ));
    }
    let anchored = re.starts_with('^');
    let re = Regex::new(&re, icase, false)?;
    Ok(Subst {
        re,
        repl,
        global,
        anchored,
    })
}

/// What a database operation is keyed on (`avp_db_*`'s first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// user and host of a URI (host only with `use_domain`)
    Uri,
    Username,
    Domain,
    Uuid,
}

/// Where the key comes from.
#[derive(Debug, Clone)]
pub enum SrcVal {
    Const(String),
    Pv(PvSpec),
}

/// A parsed `source` of `avp_db_load/store/delete`.
#[derive(Debug, Clone)]
pub struct DbSource {
    pub val: SrcVal,
    pub kind: KeyKind,
}

/// Parse `(pvar|string)['/'('username'|'domain'|'uri'|'uuid')]`. Without a suffix,
/// `$ru`/`$fu`/`$tu`/`$ou` are URIs and everything else a uuid.
pub fn db_source(s: &str) -> Result<DbSource, String> {
    let s = s.trim();
    let parts = split_slash(s);
    let (v, kind) = match parts.as_slice() {
        [v] => (*v, None),
        [v, k] => {
            let kind = match k.trim().to_ascii_lowercase().as_str() {
                "username" => KeyKind::Username,
                "domain" => KeyKind::Domain,
                "uri" => KeyKind::Uri,
                "uuid" => KeyKind::Uuid,
                other => return Err(format!("unknown source flag '{other}' in '{s}'")),
            };
            (*v, Some(kind))
        }
        _ => return Err(format!("bad source '{s}'")),
    };
    if v.is_empty() {
        return Err(format!("empty source in '{s}'"));
    }
    if v.starts_with('$') {
        let spec = pv(v)?;
        let is_uri = matches!(
            spec.name.as_str(),
            "ru" | "ruri" | "fu" | "from" | "tu" | "to" | "ou" | "ouri"
        ) && spec.trans.is_empty();
        let kind = kind.unwrap_or(if is_uri { KeyKind::Uri } else { KeyKind::Uuid });
        Ok(DbSource {
            val: SrcVal::Pv(spec),
            kind,
        })
    } else {
        Ok(DbSource {
            val: SrcVal::Const(v.to_string()),
            kind: kind.unwrap_or(KeyKind::Uuid),
        })
    }
}

/// Which AVPs a database operation concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbName {
    /// `a`, `A`, `*`: every attribute
    Any,
    /// `i`: attributes with integer names
    AnyInt,
    /// `s`: attributes with string names
    AnyStr,
    Avp(AvpName),
}

/// A `db_scheme` definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scheme {
    pub name: String,
    pub uuid_col: Option<String>,
    pub username_col: Option<String>,
    pub domain_col: Option<String>,
    pub value_col: Option<String>,
    pub table: Option<String>,
    /// `value_type=integer`
    pub int_value: bool,
}

/// Parse `name:element[;element]*`, element one of `uuid_col=`, `username_col=`,
/// `domain_col=`, `value_col=`, `value_type=integer|string`, `table=`.
pub fn scheme(s: &str) -> Result<Scheme, String> {
    let (name, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("db_scheme '{s}': expected name:element;..."))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("db_scheme '{s}': bad name"));
    }
    let mut sc = Scheme {
        name: name.to_string(),
        ..Scheme::default()
    };
    let mut any = false;
    for el in rest.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        any = true;
        let (k, v) = el
            .split_once('=')
            .ok_or_else(|| format!("db_scheme '{s}': expected attribute=value in '{el}'"))?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(format!("db_scheme '{s}': bad value in '{el}'"));
        }
        let slot = match k.as_str() {
            "uuid_col" => &mut sc.uuid_col,
            "username_col" => &mut sc.username_col,
            "domain_col" => &mut sc.domain_col,
            "value_col" => &mut sc.value_col,
            "table" => &mut sc.table,
            "value_type" => {
                sc.int_value = match v.to_ascii_lowercase().as_str() {
                    "integer" => true,
                    "string" => false,
                    _ => return Err(format!("db_scheme '{s}': unknown value type '{v}'")),
                };
                continue;
            }
            _ => return Err(format!("db_scheme '{s}': unknown attribute '{k}'")),
        };
        *slot = Some(v.to_string());
    }
    if !any {
        return Err(format!("db_scheme '{s}': no elements"));
    }
    Ok(sc)
}

/// A parsed `name` of `avp_db_*`: `avp_spec['/'(table|'$'scheme)]`.
#[derive(Debug, Clone)]
pub struct DbParam {
    pub name: DbName,
    pub table: Option<String>,
    pub scheme: Option<Scheme>,
}

/// Parse the second argument of `avp_db_*`; `schemes` are the defined `db_scheme`s
/// (`None`: the function takes no scheme).
pub fn db_param(s: &str, schemes: Option<&[Scheme]>) -> Result<DbParam, String> {
    let s = s.trim();
    let parts = split_slash(s);
    let (spec, tail) = match parts.as_slice() {
        [a] => (*a, None),
        [a, b] => (*a, Some(*b)),
        _ => return Err(format!("bad AVP/table '{s}'")),
    };
    let name = if spec.starts_with('$') {
        DbName::Avp(avp(spec)?.name)
    } else {
        let mut c = spec.chars();
        let n = match c.next() {
            Some('a' | 'A' | '*') => DbName::Any,
            Some('i' | 'I') => DbName::AnyInt,
            Some('s' | 'S') => DbName::AnyStr,
            _ => {
                return Err(format!("bad AVP '{spec}': expected $avp(name), a, i or s"));
            }
        };
        let flags = c.as_str();
        if !flags.is_empty() && flags.parse::<u8>().is_err() {
            return Err(format!("bad AVP flags in '{spec}'"));
        }
        n
    };
    let (mut table, mut scheme) = (None, None);
    if let Some(t) = tail {
        let t = t.trim();
        if let Some(sn) = t.strip_prefix('$') {
            let Some(list) = schemes else {
                return Err("this function takes no db_scheme".into());
            };
            if !matches!(name, DbName::Avp(_)) {
                return Err(format!(
                    "'{s}': a db_scheme needs a complete AVP name ($avp(...))"
                ));
            }
            scheme = Some(
                list.iter()
                    .find(|x| x.name == sn)
                    .cloned()
                    .ok_or_else(|| format!("db_scheme '{sn}' not defined"))?,
            );
        } else if t.is_empty() {
            return Err(format!("empty table name in '{s}'"));
        } else {
            table = Some(t.to_string());
        }
    }
    Ok(DbParam {
        name,
        table,
        scheme,
    })
}

/// The destination of `avp_pushto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDest {
    Ruri,
    RuriUser,
    RuriHost,
    DstUri,
    Branch,
}

/// Parse `avp_pushto`'s destination.
pub fn push_dest(s: &str) -> Result<PushDest, String> {
    let t = s.trim();
    let (v, part) = match t.split_once('/') {
        Some((v, p)) => (v, Some(p.trim().to_ascii_lowercase())),
        None => (t, None),
    };
    Ok(match (v, part.as_deref()) {
        ("$ru" | "$ruri", None) => PushDest::Ruri,
        ("$ru" | "$ruri", Some("username")) => PushDest::RuriUser,
        ("$ru" | "$ruri", Some("domain")) => PushDest::RuriHost,
        ("$du" | "$duri", None) => PushDest::DstUri,
        ("$br", None) => PushDest::Branch,
        _ => {
            return Err(format!(
                "bad destination '{s}': expected $ru[/username|/domain], $du or $br"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_flags_dropped() {
        assert_eq!(strip_script_flags("$avp(i3:123)"), "$avp(i:123)");
        assert_eq!(strip_script_flags("$avp(s12:x)/g"), "$avp(s:x)/g");
        assert_eq!(strip_script_flags("$avp(s:x)"), "$avp(s:x)");
        assert_eq!(strip_script_flags("$avp(src)"), "$avp(src)");
    }

    #[test]
    fn values() {
        assert_eq!(fixed_value("i:0xabcd"), Ok(PvValue::Int(0xabcd)));
        assert_eq!(fixed_value("i:-5"), Ok(PvValue::Int(-5)));
        assert_eq!(fixed_value("s:12"), Ok(PvValue::Str("12".into())));
        assert_eq!(fixed_value("abc"), Ok(PvValue::Str("abc".into())));
        assert!(fixed_value("i:x1").is_err());
    }

    #[test]
    fn checks() {
        let c = check("lt/i:345/g").unwrap();
        assert_eq!(c.op, CheckOp::Lt);
        assert!(c.all && !c.icase);
        assert!(matches!(c.val, Operand::Val(PvValue::Int(345))));
        let c = check("eq/$td/I").unwrap();
        assert!(c.icase && matches!(c.val, Operand::Pv(_)));
        let c = check("re/sip:.*@bar.net/g").unwrap();
        assert!(matches!(c.val, Operand::Re(_)) && c.all);
        // a value containing '/' whose tail is not flags
        let c = check("eq/s:a/b").unwrap();
        assert!(matches!(c.val, Operand::Val(PvValue::Str(ref s)) if s == "a/b"));
        assert!(
            check("re/sip:(.*/g")
                .unwrap_err()
                .contains("bad regular expression")
        );
        assert!(check("zz/i:1").is_err());
        assert!(check("eq").is_err());
        assert!(check("and/s:x").is_err());
    }

    #[test]
    fn substs() {
        let s = subst("/(.*)@(.*)/\\1@$rd/").unwrap();
        assert!(!s.global);
        assert_eq!(s.repl.len(), 3);
        assert!(subst("/a/b/gi").unwrap().global);
        assert!(subst("/(a/b/").is_err());
        assert!(subst("/a/\\2/").is_err());
        assert!(subst("/a/b").is_err());
        assert!(subst("/a/b/x").is_err());
        assert!(subst("").is_err());
        assert!(subst("/a/$nosuchpv/").is_err());
    }

    #[test]
    fn sources_and_names() {
        let s = db_source("$fu").unwrap();
        assert_eq!(s.kind, KeyKind::Uri);
        assert_eq!(db_source("$ru/domain").unwrap().kind, KeyKind::Domain);
        assert_eq!(db_source("$avp(s:id)").unwrap().kind, KeyKind::Uuid);
        assert_eq!(db_source("$avp(s:id)/uri").unwrap().kind, KeyKind::Uri);
        assert!(matches!(db_source("abc").unwrap().val, SrcVal::Const(_)));
        assert!(db_source("$fu/bad").is_err());
        let p = db_param("$avp(s:404fwd)/fwd_table", None).unwrap();
        assert_eq!(p.name, DbName::Avp(AvpName::Str("404fwd".into())));
        assert_eq!(p.table.as_deref(), Some("fwd_table"));
        assert_eq!(db_param("i/dp", None).unwrap().name, DbName::AnyInt);
        assert_eq!(db_param("a3", None).unwrap().name, DbName::Any);
        let sc = scheme("s1:table=subscriber;uuid_col=uuid;value_col=first_name").unwrap();
        let p = db_param("$avp(s:fn)/$s1", Some(std::slice::from_ref(&sc))).unwrap();
        assert_eq!(p.scheme.as_ref(), Some(&sc));
        assert!(db_param("$avp(s:fn)/$s1", None).is_err());
        assert!(db_param("a/$s1", Some(std::slice::from_ref(&sc))).is_err());
        let none: &[Scheme] = &[];
        assert!(db_param("$avp(s:fn)/$nope", Some(none)).is_err());
        assert!(scheme("x:value_type=float").is_err());
        assert!(scheme("x:colour=red").is_err());
        assert!(scheme("x").is_err());
        assert!(scheme("x:value_type=integer").unwrap().int_value);
    }

    #[test]
    fn src_dst_forms() {
        let p = src_dst("$avp(i:678)/$avp(i:679)/g", "gd", "x").unwrap();
        assert_eq!(p.src.name, AvpName::Int(678));
        assert_eq!(p.dst.unwrap().name, AvpName::Int(679));
        assert_eq!(p.flags, "g");
        let p = src_dst("$avp(s:a)/gd", "gd", "x").unwrap();
        assert!(p.dst.is_none() && p.flags == "gd");
        assert!(src_dst("$avp(s:a)/q", "gd", "x").is_err());
        assert!(src_dst("$fu", "gd", "x").is_err());
    }

    #[test]
    fn push_dests() {
        assert_eq!(push_dest("$ru/domain"), Ok(PushDest::RuriHost));
        assert_eq!(push_dest("$br"), Ok(PushDest::Branch));
        assert!(push_dest("$fu").is_err());
    }
}

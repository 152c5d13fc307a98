//! SIP/SIPS/TEL URIs (RFC 3261 §19.1, RFC 3966 subset).
//!
//! `Uri` owns its parts as written (the user part keeps its %-escapes; use
//! `user_unescaped()`); `Display` reproduces `scheme:user[:passwd]@host[:port];params?headers`.
//! `rfc_eq` compares per RFC 3261 §19.1.4.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UriScheme {
    Sip,
    Sips,
    Tel,
}

impl UriScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            UriScheme::Sip => "sip",
            UriScheme::Sips => "sips",
            UriScheme::Tel => "tel",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriError {
    pub what: &'static str,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad URI: {}", self.what)
    }
}

impl std::error::Error for UriError {}

fn e(what: &'static str) -> UriError {
    UriError { what }
}

/// A URI user part in E.164 form: `+` followed by 1 to 15 digits (the check of 1.2's
/// `is_e164`, used by auth's `is_rpid_user_e164` and uri's `is_uri_user_e164`).
pub fn is_e164(user: &str) -> bool {
    let b = user.as_bytes();
    (2..=16).contains(&b.len()) && b[0] == b'+' && b[1..].iter().all(u8::is_ascii_digit)
}

/// A parsed URI. For `tel:` URIs the number is in `user` and `host` is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    pub scheme: UriScheme,
    /// User part as written (escaped), empty if absent.
    pub user: String,
    pub passwd: Option<String>,
    /// Host as written; IPv6 references keep their brackets.
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters in order: name and optional value, as written.
    pub params: Vec<(String, Option<String>)>,
    /// Header part after `?`, as written.
    pub headers: Option<String>,
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn check_escaped(s: &str, extra: &[u8], what: &'static str) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if i + 2 >= b.len() {
                return Err(e("truncated %-escape"));
            }
            if !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return Err(e("bad %-escape"));
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(c) || extra.contains(&c)) {
            return Err(e(what));
        }
        i += 1;
    }
    Ok(())
}

fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Decode %-escapes (invalid escapes are kept literally; invalid UTF-8 replaced).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2))
            && h.is_ascii_hexdigit()
            && l.is_ascii_hexdigit()
        {
            out.push(hexval(h) * 16 + hexval(l));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Check a host: `[IPv6]`, or a name / IPv4 of alphanumerics, `-`, `.`, `_`.
pub fn valid_host(h: &str) -> bool {
    let b = h.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b[0] == b'[' {
        return b.len() > 2
            && b[b.len() - 1] == b']'
            && b[1..b.len() - 1]
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
    }
    b.iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
}

impl Uri {
    pub fn parse_bytes(b: &[u8]) -> Result<Uri, UriError> {
        Uri::parse(std::str::from_utf8(b).map_err(|_| e("not UTF-8"))?)
    }

    pub fn parse(s: &str) -> Result<Uri, UriError> {
        UriRef::parse(s).map(|r| r.to_owned())
    }

    /// The value of parameter `name` (case-insensitive): `Some(None)` for a flag param.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    fn pval(&self, name: &str) -> Option<&str> {
        self.param(name).map(|v| v.unwrap_or(""))
    }
    pub fn transport(&self) -> Option<&str> {
        self.pval("transport")
    }
    pub fn lr(&self) -> bool {
        self.param("lr").is_some()
    }
    pub fn r2(&self) -> Option<&str> {
        self.pval("r2")
    }
    pub fn maddr(&self) -> Option<&str> {
        self.pval("maddr")
    }
    pub fn ttl(&self) -> Option<&str> {
        self.pval("ttl")
    }
    pub fn user_param(&self) -> Option<&str> {
        self.pval("user")
    }
    pub fn method(&self) -> Option<&str> {
        self.pval("method")
    }
    /// Parameters as the text after the host (without the leading `;`).
    pub fn params_text(&self) -> String {
        let mut s = String::new();
        for (i, (n, v)) in self.params.iter().enumerate() {
            if i > 0 {
                s.push(';');
            }
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }
    pub fn user_unescaped(&self) -> String {
        unescape(&self.user)
    }
    /// Host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
    /// Port, or the scheme default (5061 for sips, 5060 otherwise).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.scheme == UriScheme::Sips {
            5061
        } else {
            5060
        })
    }

    // ----- rewriting (rewriteuser, rewritehost, rewriteport, rewritehostport, ...) -----

    /// Replace the user part (empty removes it together with the password).
    pub fn set_user(&mut self, user: &str) -> Result<(), UriError> {
        if !user.is_empty() {
            check_escaped(user, b"&=+$,;?/", "bad character in user")?;
        } else {
            self.passwd = None;
        }
        self.user = user.to_string();
        Ok(())
    }
    /// Replace `user[:password]` (rewriteuserpass).
    pub fn set_userpass(&mut self, up: &str) -> Result<(), UriError> {
        match up.split_once(':') {
            Some((u, p)) => {
                check_escaped(p, b"&=+$,", "bad character in password")?;
                self.set_user(u)?;
                self.passwd = Some(p.to_string());
            }
            None => {
                self.set_user(up)?;
                self.passwd = None;
            }
        }
        Ok(())
    }
    pub fn set_host(&mut self, host: &str) -> Result<(), UriError> {
        if !valid_host(host) {
            return Err(e("bad host"));
        }
        self.host = host.to_string();
        Ok(())
    }
    pub fn set_port(&mut self, port: Option<u16>) {
        self.port = port;
    }
    /// Replace `host[:port]` (rewritehostport); a missing port removes the port.
    pub fn set_hostport(&mut self, hp: &str) -> Result<(), UriError> {
        let (h, p) = split_hostport(hp)?;
        self.host = h.to_string();
        self.port = p;
        Ok(())
    }

    /// Comparison per RFC 3261 §19.1.4.
    pub fn rfc_eq(&self, o: &Uri) -> bool {
        if self.scheme != o.scheme
            || unescape(&self.user) != unescape(&o.user)
            || self.passwd.as_deref().map(unescape) != o.passwd.as_deref().map(unescape)
            || !self.host.eq_ignore_ascii_case(&o.host)
            || self.port != o.port
        {
            return false;
        }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            match (self.param(name), o.param(name)) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    if !unescape(a.unwrap_or("")).eq_ignore_ascii_case(&unescape(b.unwrap_or(""))) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        for (n, _) in &self.params {
            // Duplicate names: the first occurrence counts on both sides.
            let v = self.param(n).flatten();
            if let Some(ov) = o.param(n)
                && !unescape(v.unwrap_or("")).eq_ignore_ascii_case(&unescape(ov.unwrap_or("")))
            {
                return false;
            }
        }
        let hs = |h: &Option<String>| {
            let mut v: Vec<(String, String)> = h
                .as_deref()
                .unwrap_or("")
                .split('&')
                .filter(|x| !x.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (unescape(k).to_ascii_lowercase(), unescape(v))
                })
                .collect();
            v.sort();
            v
        };
        hs(&self.headers) == hs(&o.headers)
    }
}

/// Index of the first ASCII `b` in `s`. A plain byte loop: URI parts are a few dozen
/// bytes, where `str::find`'s searcher set-up costs more than the scan.
fn byte_pos(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

/// `s` split at the first ASCII `b` (without it).
fn split_once_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    byte_pos(s, b).map(|i| (&s[..i], &s[i + 1..]))
}

/// The pieces of `s` between ASCII `b`s, as `str::split` gives them.
fn split_byte(s: &str, b: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match split_once_byte(r, b) {
            Some((piece, tail)) => {
                rest = Some(tail);
                Some(piece)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn split_hostport(hp: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port_s) = if hp.starts_with('[') {
        let close = hp.find(']').ok_or(e("unterminated IPv6 reference"))?;
        let rest = &hp[close + 1..];
        let p = if rest.is_empty() {
            None
        } else {
            Some(
                rest.strip_prefix(':')
                    .ok_or(e("garbage after IPv6 reference"))?,
            )
        };
        (&hp[..close + 1], p)
    } else {
        match hp.rfind(':') {
            Some(c) => (&hp[..c], Some(&hp[c + 1..])),
            None => (hp, None),
        }
    };
    if !valid_host(host) {
        return Err(e("bad host"));
    }
    let port = match port_s {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(e("bad port"));
            }
            Some(p.parse::<u16>().map_err(|_| e("port out of range"))?)
        }
    };
    Ok((host, port))
}

/// Check a URI parameter list (the text after the first `;`): no empty parameter or
/// name, and only allowed characters.
fn check_uri_params(p: &str) -> Result<(), UriError> {
    for part in split_byte(p, b';') {
        if part.is_empty() {
            return Err(e("empty URI parameter"));
        }
        let (n, v) = match split_once_byte(part, b'=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        if n.is_empty() {
            return Err(e("empty URI parameter name"));
        }
        check_escaped(n, b"[]/:&+$", "bad character in URI parameter")?;
        if let Some(v) = v {
            check_escaped(v, b"[]/:&+$", "bad character in URI parameter value")?;
        }
    }
    Ok(())
}

/// The parameters of a checked list, in order.
fn iter_uri_params(p: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    split_byte(p, b';')
        .filter(|part| !part.is_empty())
        .map(|part| match split_once_byte(part, b'=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        })
}

/// A URI parsed without copying: the parts are slices of the text, the parameters are
/// read on demand. The same checks as [`Uri::parse`] (which is this plus copies), for
/// the paths that only look at a URI (where a request goes, loose routing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriRef<'a> {
    pub scheme: UriScheme,
    /// User part as written (escaped), empty if absent; the number of a `tel:` URI.
    pub user: &'a str,
    pub passwd: Option<&'a str>,
    /// Host as written; IPv6 references keep their brackets; empty for `tel:`.
    pub host: &'a str,
    pub port: Option<u16>,
    /// The parameters' text after the first `;` (checked), "" if none.
    pub params: &'a str,
    /// Header part after `?`, as written.
    pub headers: Option<&'a str>,
}

impl<'a> UriRef<'a> {
    pub fn parse(s: &'a str) -> Result<UriRef<'a>, UriError> {
        if s.bytes()
            .any(|c| c <= b' ' || c == 0x7f || c == b'<' || c == b'>' || c == b'"')
        {
            return Err(e("illegal character"));
        }
        let colon = byte_pos(s, b':').ok_or(e("no scheme"))?;
        let sch = &s[..colon];
        let scheme = if sch.eq_ignore_ascii_case("sip") {
            UriScheme::Sip
        } else if sch.eq_ignore_ascii_case("sips") {
            UriScheme::Sips
        } else if sch.eq_ignore_ascii_case("tel") {
            UriScheme::Tel
        } else {
            return Err(e("unsupported scheme"));
        };
        let rest = &s[colon + 1..];
        let (main, headers) = match byte_pos(rest, b'?') {
            Some(q) => (&rest[..q], Some(&rest[q + 1..])),
            _ => (rest, None),
        };
        let mut uri = UriRef {
            scheme,
            user: "",
            passwd: None,
            host: "",
            port: None,
            params: "",
            headers,
        };
        if scheme == UriScheme::Tel {
            let (num, params) = match byte_pos(main, b';') {
                Some(p) => (&main[..p], Some(&main[p + 1..])),
                None => (main, None),
            };
            if num.is_empty() {
                return Err(e("empty telephone number"));
            }
            check_escaped(num, b"+-.()*#", "bad telephone number")?;
            uri.user = num;
            if let Some(p) = params {
                check_uri_params(p)?;
                uri.params = p;
            }
            return Ok(uri);
        }
        let hostpart = match byte_pos(main, b'@') {
            Some(at) => {
                let ui = &main[..at];
                let (u, p) = match byte_pos(ui, b':') {
                    Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err(e("empty user"));
                }
                check_escaped(u, b"&=+$,;?/", "bad character in user")?;
                if let Some(p) = p {
                    check_escaped(p, b"&=+$,", "bad character in password")?;
                    uri.passwd = Some(p);
                }
                uri.user = u;
                &main[at + 1..]
            }
            None => main,
        };
        let (hp, params) = match byte_pos(hostpart, b';') {
            Some(p) => (&hostpart[..p], Some(&hostpart[p + 1..])),
            None => (hostpart, None),
        };
        let (host, port) = split_hostport(hp)?;
        uri.host = host;
        uri.port = port;
        if let Some(p) = params {
            check_uri_params(p)?;
            uri.params = p;
        }
        Ok(uri)
    }

    /// The parameters in order: name and optional value.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        iter_uri_params(self.params)
    }
    /// The value of parameter `name` (case-insensitive): `Some(None)` for a flag param.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    fn pval(&self, name: &str) -> Option<&'a str> {
        self.param(name).map(|v| v.unwrap_or(""))
    }
    pub fn transport(&self) -> Option<&'a str> {
        self.pval("transport")
    }
    pub fn lr(&self) -> bool {
        self.param("lr").is_some()
    }
    pub fn maddr(&self) -> Option<&'a str> {
        self.pval("maddr")
    }
    /// Host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &'a str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(self.host)
    }
    /// Port, or the scheme default (5061 for sips, 5060 otherwise).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.scheme == UriScheme::Sips {
            5061
        } else {
            5060
        })
    }
    /// The owned form.
    pub fn to_owned(&self) -> Uri {
        Uri {
            scheme: self.scheme,
            user: self.user.to_string(),
            passwd: self.passwd.map(str::to_string),
            host: self.host.to_string(),
            port: self.port,
            params: self
                .params()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                .collect(),
            headers: self.headers.map(str::to_string),
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if self.scheme == UriScheme::Tel {
            f.write_str(&self.user)?;
        } else {
            if !self.user.is_empty() {
                f.write_str(&self.user)?;
                if let Some(p) = &self.passwd {
                    write!(f, ":{p}")?;
                }
                f.write_str("@")?;
            }
            f.write_str(&self.host)?;
            if let Some(p) = self.port {
                write!(f, ":{p}")?;
            }
        }
        for (n, v) in &self.params {
            write!(f, ";{n}")?;
            if let Some(v) = v {
                write!(f, "={v}")?;
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

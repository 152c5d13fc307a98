//! LDAP URLs as the ldap module takes them (RFC 4516, with a session name where the
//! host:port would be): `ldap://session[/dn[?attrs[?scope[?filter]]]]`.

use crate::proto::Scope;

/// A parsed search URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchUrl {
    pub session: String,
    pub base: String,
    /// Empty = all user attributes.
    pub attrs: Vec<String>,
    pub scope: Scope,
    /// The filter string (percent-decoded, RFC 4515 escapes kept).
    pub filter: String,
}

/// Percent-decoding (`%XX`); a bad escape is an error.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in '{s}'"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 once decoded"))
}

/// Parse a search URL. Defaults as RFC 4516: scope `base`, filter
/// `(objectClass=*)`, all attributes.
pub fn parse(url: &str) -> Result<SearchUrl, String> {
    let u = url.trim();
    let rest = match u.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("ldap://") => &u[7..],
        _ => return Err(format!("'{url}' is not an ldap:// URL")),
    };
    let (session, rest) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if session.is_empty() {
        return Err(format!("'{url}' names no LDAP session"));
    }
    let mut parts = rest.splitn(5, '?');
    let base = percent_decode(parts.next().unwrap_or(""))?;
    let attrs = percent_decode(parts.next().unwrap_or(""))?;
    let scope_s = percent_decode(parts.next().unwrap_or(""))?;
    let filter = percent_decode(parts.next().unwrap_or(""))?;
    if let Some(ext) = parts.next().filter(|e| !e.is_empty()) {
        // A critical extension (`!name`) must be refused (RFC 4516 §2); others ignored.
        if ext.split(',').any(|e| e.trim_start().starts_with('!')) {
            return Err(format!("'{url}': unsupported critical extension"));
        }
    }
    let scope = if scope_s.trim().is_empty() {
        Scope::Base
    } else {
        Scope::parse(scope_s.trim()).ok_or_else(|| format!("'{url}': bad scope '{scope_s}'"))?
    };
    let attrs = attrs
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    Ok(SearchUrl {
        session: session.to_string(),
        base,
        attrs,
        scope,
        filter: if filter.trim().is_empty() {
            "(objectClass=*)".into()
        } else {
            filter
        },
    })
}

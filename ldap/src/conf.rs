//! The sessions file (`config_file` of the ldap module): INI syntax as the 1.3 module's
//! `ldap.cfg`. `[name]` opens a session; `key = value ; comment`, values optionally in
//! double quotes; lines starting with `#` (or `;`) and blank lines are comments. Keys:
//! `ldap_server_url` (mandatory, comma-separated failover list of `ldap://host[:port]`),
//! `ldap_bind_dn`, `ldap_bind_password` (empty = anonymous), `ldap_network_timeout`
//! and `ldap_client_bind_timeout` (ms, default 1000), `ldap_version` (2 or 3, default
//! 3). Every error names `file:line`. Server host names are resolved here, at start-up
//! (the only place the system resolver may run), so no worker ever waits on it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// One LDAP session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub name: String,
    /// The servers in failover order (as written, for logs) and their addresses.
    pub servers: Vec<(String, Vec<SocketAddr>)>,
    pub bind_dn: String,
    pub bind_password: String,
    pub network_timeout: Duration,
    pub bind_timeout: Duration,
    pub version: u8,
}

/// Default of both timeouts (ms), as the 1.3 module.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

fn unquote(v: &str) -> String {
    // strip a comment (`;` or `#`) outside quotes, then surrounding quotes
    let mut in_q = false;
    let mut end = v.len();
    for (i, c) in v.char_indices() {
        match c {
            '"' => in_q = !in_q,
            ';' | '#' if !in_q => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let t = v[..end].trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

/// `ldap://host[:port]` → addresses (resolved now).
pub fn server_addrs(url: &str) -> Result<Vec<SocketAddr>, String> {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    let hp = if let Some(r) = lower.strip_prefix("ldap://") {
        &u[u.len() - r.len()..]
    } else if lower.starts_with("ldaps://") || lower.starts_with("ldapi://") {
        return Err(format!(
            "'{u}': only ldap:// servers are supported (no ldaps://, ldapi://)"
        ));
    } else {
        return Err(format!("'{u}' is not an ldap:// URL"));
    };
    let hp = hp.trim_end_matches('/');
    if hp.is_empty() || hp.contains('/') {
        return Err(format!("'{u}': expected ldap://host[:port]"));
    }
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{u}': bad IPv6 address"))?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hp.to_string(), None),
        }
    };
    let port: u16 = match port {
        None => 389,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("'{u}': bad port"))?,
    };
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("'{u}': cannot resolve '{host}': {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("'{u}': '{host}' has no address"));
    }
    Ok(addrs)
}

struct Pending {
    name: String,
    line: usize,
    url: Option<String>,
    bind_dn: String,
    bind_password: String,
    network_timeout: u64,
    bind_timeout: u64,
    version: u8,
}

fn finish(p: Pending, file: &str) -> Result<Session, String> {
    let url = p.url.ok_or_else(|| {
        format!(
            "{file}:{}: session [{}] has no ldap_server_url",
            p.line, p.name
        )
    })?;
    let mut servers = Vec::new();
    for s in url.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let a = server_addrs(s).map_err(|e| format!("{file}:{}: {e}", p.line))?;
        servers.push((s.to_string(), a));
    }
    if servers.is_empty() {
        return Err(format!(
            "{file}:{}: session [{}]: empty ldap_server_url",
            p.line, p.name
        ));
    }
    Ok(Session {
        name: p.name,
        servers,
        bind_dn: p.bind_dn,
        bind_password: p.bind_password,
        network_timeout: Duration::from_millis(p.network_timeout),
        bind_timeout: Duration::from_millis(p.bind_timeout),
        version: p.version,
    })
}

/// Parse the text of a sessions file named `file` (for messages).
pub fn parse(text: &str, file: &str) -> Result<Vec<Session>, String> {
    let mut out: Vec<Session> = Vec::new();
    let mut cur: Option<Pending> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let name = rest
                .split_once(']')
                .map(|(n, _)| n.trim())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("{file}:{line}: bad section header '{t}'"))?;
            if let Some(p) = cur.take() {
                out.push(finish(p, file)?);
            }
            if out.iter().any(|s| s.name == name) {
                return Err(format!("{file}:{line}: session [{name}] defined twice"));
            }
            cur = Some(Pending {
                name: name.to_string(),
                line,
                url: None,
                bind_dn: String::new(),
                bind_password: String::new(),
                network_timeout: DEFAULT_TIMEOUT_MS,
                bind_timeout: DEFAULT_TIMEOUT_MS,
                version: 3,
            });
            continue;
        }
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| format!("{file}:{line}: expected 'key = value', got '{t}'"))?;
        let p = cur
            .as_mut()
            .ok_or_else(|| format!("{file}:{line}: '{}' outside a [session]", k.trim()))?;
        let v = unquote(v);
        let ms = |v: &str| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && *n <= 600_000)
                .ok_or_else(|| {
                    format!(
                        "{file}:{line}: {} must be milliseconds (1..600000), got '{v}'",
                        k.trim()
                    )
                })
        };
        match k.trim() {
            "ldap_server_url" => p.url = Some(v),
            "ldap_bind_dn" => p.bind_dn = v,
            "ldap_bind_password" => p.bind_password = v,
            "ldap_network_timeout" => p.network_timeout = ms(&v)?,
            "ldap_client_bind_timeout" => p.bind_timeout = ms(&v)?,
            "ldap_version" => {
                p.version = match v.as_str() {
                    "2" => 2,
                    "3" => 3,
                    _ => {
                        return Err(format!(
                            "{file}:{line}: ldap_version must be 2 or 3, got '{v}'"
                        ));
                    }
                }
            }
            other => return Err(format!("{file}:{line}: unknown key '{other}'")),
        }
    }
    if let Some(p) = cur.take() {
        out.push(finish(p, file)?);
    }
    if out.is_empty() {
        return Err(format!("{file}: no [session] defined"));
    }
    Ok(out)
}

/// Read and parse a sessions file.
pub fn load(path: &str) -> Result<Vec<Session>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse(&text, path)
}

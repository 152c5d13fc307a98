//! radiusclient.conf, as 1.2's modules read it through radiusclient-ng
//! (`rc_read_config`), and the `servers` file of shared secrets.
//!
//! Keys read (others — `auth_order`, `login_tries`, `seqfile`, `mapfile`, … — are
//! accepted and ignored, they concern radiusclient's login programs):
//!
//! * `authserver`, `acctserver`: one or more servers, separated by commas or blanks,
//!   each `host[:port][:secret]` (`[v6addr]` for an IPv6 address); ports default to
//!   1812 (authentication) and 1813 (accounting); tried in order (failover).
//! * `servers`: the file of secrets, lines `host secret`; a secret given with the server
//!   (radcli's form) wins.
//! * `dictionary`: a dictionary read on top of the built-in one.
//! * `radius_timeout` (seconds, default 10) and `radius_retries` (sends per server,
//!   default 3), as radiusclient-ng's defaults; `radius_deadtime` (seconds a server
//!   that did not answer is skipped, default 0 = never).
//! * `bindaddr`: the local address requests are sent from (`*`, the default, lets the
//!   kernel choose).
//!
//! Relative file names are taken from the directory of radiusclient.conf. Errors name
//! `file:line`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dict::Dict;

/// One server with its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// As written in the configuration (`host[:port]`).
    pub name: String,
    pub addr: SocketAddr,
    pub secret: Vec<u8>,
}

/// A loaded client configuration: servers, timing and dictionary.
#[derive(Clone, Debug)]
pub struct ClientConf {
    pub auth: Vec<Server>,
    pub acct: Vec<Server>,
    pub timeout: Duration,
    pub retries: u32,
    pub deadtime: Duration,
    pub bind: Option<IpAddr>,
    pub dict: Dict,
}

pub const DEFAULT_AUTH_PORT: u16 = 1812;
pub const DEFAULT_ACCT_PORT: u16 = 1813;

/// `host[:port][:secret]` → (host, port, secret).
pub fn split_server(s: &str, default_port: u16) -> Result<(String, u16, Option<String>), String> {
    let (host, rest) = if let Some(r) = s.strip_prefix('[') {
        let (h, rest) = r
            .split_once(']')
            .ok_or_else(|| format!("server '{s}': missing ']'"))?;
        (h.to_string(), rest.strip_prefix(':').unwrap_or(rest))
    } else {
        match s.split_once(':') {
            Some((h, r)) => (h.to_string(), r),
            None => (s.to_string(), ""),
        }
    };
    if host.is_empty() {
        return Err(format!("server '{s}': empty host"));
    }
    let (port, secret) = match rest.split_once(':') {
        Some((p, sec)) => (p, Some(sec.to_string())),
        None => (rest, None),
    };
    let port = if port.is_empty() {
        default_port
    } else {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("server '{s}': bad port '{port}'"))?
    };
    Ok((host, port, secret.filter(|x| !x.is_empty())))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    // Start-up only (mod_init, in the attendant): the system resolver is allowed here.
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve RADIUS server '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("RADIUS server '{host}' has no address"))
}

/// The `servers` file: (host, secret) pairs.
pub fn parse_servers(text: &str, origin: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(h), Some(sec)) = (f.next(), f.next()) else {
            return Err(format!("{origin}:{}: expected 'server secret'", n + 1));
        };
        out.push((h.to_string(), sec.to_string()));
    }
    Ok(out)
}

/// The raw key/value lines of radiusclient.conf (key, value, line number).
pub fn parse_conf_lines(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = match line.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        out.push((k.to_ascii_lowercase(), v.to_string(), n + 1));
    }
    out
}

fn rel(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_relative() { base.join(p) } else { p }
}

impl ClientConf {
    /// Read radiusclient.conf at `path` (with its secrets file and dictionary).
    pub fn load(path: &str) -> Result<ClientConf, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read RADIUS client configuration {path}: {e}"))?;
        let base = Path::new(path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self::from_text(&text, path, &base)
    }

    /// Parse configuration text; `origin` names it in errors, `base` resolves relative
    /// file names.
    pub fn from_text(text: &str, origin: &str, base: &Path) -> Result<ClientConf, String> {
        let mut auth_specs = Vec::new();
        let mut acct_specs = Vec::new();
        let mut servers_file = None;
        let mut dict_file = None;
        let mut timeout = 10u64;
        let mut retries = 3u32;
        let mut deadtime = 0u64;
        let mut bind = None;
        for (k, v, n) in parse_conf_lines(text) {
            let at = |m: String| format!("{origin}:{n}: {m}");
            let num = |what: &str| -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|_| at(format!("{what} '{v}' is not a number")))
            };
            match k.as_str() {
                "authserver" | "acctserver" => {
                    let list = if k == "authserver" {
                        &mut auth_specs
                    } else {
                        &mut acct_specs
                    };
                    for s in v.split([',', ' ', '\t']).filter(|s| !s.is_empty()) {
                        list.push((s.to_string(), n));
                    }
                }
                "servers" => servers_file = Some(rel(base, &v)),
                "dictionary" => dict_file = Some(rel(base, &v)),
                "radius_timeout" => {
                    timeout = num("radius_timeout")?;
                    if timeout == 0 {
                        return Err(at("radius_timeout must be at least 1".into()));
                    }
                }
                "radius_retries" => {
                    retries = u32::try_from(num("radius_retries")?)
                        .map_err(|_| at("radius_retries too large".into()))?
                        .max(1)
                }
                "radius_deadtime" => deadtime = num("radius_deadtime")?,
                "bindaddr" if v != "*" && !v.is_empty() => {
                    bind = Some(
                        v.parse::<IpAddr>()
                            .map_err(|_| at(format!("bindaddr '{v}' is not an address")))?,
                    );
                }
                _ => {}
            }
        }
        let secrets = match &servers_file {
            Some(p) => {
                let t = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read RADIUS servers file {}: {e}", p.display()))?;
                parse_servers(&t, &p.display().to_string())?
            }
            None => Vec::new(),
        };
        let mut dict = Dict::builtin();
        if let Some(p) = &dict_file {
            dict.load_file(p)?;
        }
        let build = |specs: &[(String, usize)], port: u16| -> Result<Vec<Server>, String> {
            let mut out = Vec::new();
            for (s, n) in specs {
                let at = |m: String| format!("{origin}:{n}: {m}");
                let (host, port, secret) = split_server(s, port).map_err(at)?;
                let addr = resolve(&host, port).map_err(at)?;
                let secret = match secret {
                    Some(sec) => sec,
                    None => secret_for(&secrets, &host, addr.ip()).ok_or_else(|| {
                        at(format!(
                            "no secret for RADIUS server '{host}' (servers file {})",
                            servers_file
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|| "not set".into())
                        ))
                    })?,
                };
                out.push(Server {
                    name: s.split(':').take(2).collect::<Vec<_>>().join(":"),
                    addr,
                    secret: secret.into_bytes(),
                });
            }
            Ok(out)
        };
        let auth = build(&auth_specs, DEFAULT_AUTH_PORT)?;
        let acct = build(&acct_specs, DEFAULT_ACCT_PORT)?;
        if auth.is_empty() && acct.is_empty() {
            return Err(format!("{origin}: no authserver nor acctserver"));
        }
        Ok(ClientConf {
            auth,
            acct,
            timeout: Duration::from_secs(timeout),
            retries,
            deadtime: Duration::from_secs(deadtime),
            bind,
            dict,
        })
    }
}

/// The secret of `host` in the servers file: by name as written, else by address.
fn secret_for(list: &[(String, String)], host: &str, ip: IpAddr) -> Option<String> {
    if let Some((_, s)) = list.iter().find(|(h, _)| h.eq_ignore_ascii_case(host)) {
        return Some(s.clone());
    }
    list.iter()
        .find(|(h, _)| {
            h.parse::<IpAddr>().ok() == Some(ip)
                || (h.as_str(), 0u16)
                    .to_socket_addrs()
                    .map(|mut a| a.any(|a| a.ip() == ip))
                    .unwrap_or(false)
        })
        .map(|(_, s)| s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_specs() {
        assert_eq!(
            split_server("localhost", 1812).unwrap(),
            ("localhost".into(), 1812, None)
        );
        assert_eq!(
            split_server("10.0.0.1:1645", 1812).unwrap(),
            ("10.0.0.1".into(), 1645, None)
        );
        assert_eq!(
            split_server("10.0.0.1:1645:s3cr3t", 1812).unwrap(),
            ("10.0.0.1".into(), 1645, Some("s3cr3t".into()))
        );
        assert_eq!(
            split_server("[::1]:1813", 1812).unwrap(),
            ("::1".into(), 1813, None)
        );
        assert!(split_server("h:notaport", 1812).is_err());
        assert!(split_server(":1812", 1812).is_err());
    }

    #[test]
    fn conf_file_with_servers_file() {
        let dir = std::env::temp_dir().join(format!("radius-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("servers"),
            "# secrets\n127.0.0.1 testing123\nlocalhost other\n",
        )
        .unwrap();
        std::fs::write(dir.join("dict"), "ATTRIBUTE Local-Thing 242 string\n").unwrap();
        let conf = "# radiusclient.conf\n\
            auth_order radius,local\n\
            authserver 127.0.0.1:11812, 127.0.0.2:11812:direct\n\
            acctserver 127.0.0.1\n\
            servers servers\n\
            dictionary dict\n\
            radius_timeout 2\n\
            radius_retries 1\n";
        std::fs::write(dir.join("radiusclient.conf"), conf).unwrap();
        let c = ClientConf::load(dir.join("radiusclient.conf").to_str().unwrap()).unwrap();
        assert_eq!(c.auth.len(), 2);
        assert_eq!(c.auth[0].addr, "127.0.0.1:11812".parse().unwrap());
        assert_eq!(c.auth[0].secret, b"testing123");
        assert_eq!(c.auth[1].secret, b"direct");
        assert_eq!(c.acct[0].addr.port(), 1813);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.retries, 1);
        assert!(c.dict.attr("Local-Thing").is_some());
        assert!(c.dict.attr("SIP-AVP").is_some());
        // A server without a secret is an error naming the line.
        let e = ClientConf::from_text("authserver 127.0.0.9\n", "x.conf", &dir).unwrap_err();
        assert!(e.starts_with("x.conf:1:"), "{e}");
        let e = ClientConf::from_text("radius_timeout soon\n", "x.conf", &dir).unwrap_err();
        assert!(e.starts_with("x.conf:1:"), "{e}");
        assert!(ClientConf::from_text("# nothing\n", "x.conf", &dir).is_err());
        assert!(ClientConf::load(dir.join("missing.conf").to_str().unwrap()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Global configuration parameters (reference §5) with OpenSER 1.2's defaults.
//!
//! Filled in the attendant from the config file's global assignments, then from the
//! command line (which wins, Kamailio's rule), and frozen with [`set`] before the
//! first fork; every process reads them through [`get`].

use std::sync::OnceLock;

/// A transport protocol as written in `listen`/`alias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
    Any,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
            Proto::Any => "*",
        }
    }
}

/// `[proto:]host[:port]` as written in `listen=`/`alias=`/`-l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub proto: Proto,
    pub host: String,
    /// 0 = not given.
    pub port: u16,
}

impl HostPort {
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty address".into());
        }
        if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("sctp:")) {
            return Err(crate::transport::served::sctp_listen_error());
        }
        let (proto, rest) = match s.split_once(':') {
            Some((p, r)) if ["udp", "tcp", "tls"].contains(&p.to_ascii_lowercase().as_str()) => {
                let proto = match p.to_ascii_lowercase().as_str() {
                    "udp" => Proto::Udp,
                    "tcp" => Proto::Tcp,
                    _ => Proto::Tls,
                };
                (proto, r)
            }
            _ => (Proto::Any, s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 reference in '{s}'"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| format!("bad port in '{s}'"))?,
                None if after.is_empty() => 0,
                None => return Err(format!("garbage after IPv6 address in '{s}'")),
            };
            (h.to_string(), port)
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address without brackets and without a port.
            (rest.to_string(), 0)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse::<u16>().map_err(|_| format!("bad port in '{s}'"))?,
                ),
                None => (rest.to_string(), 0),
            }
        };
        if host.is_empty() {
            return Err(format!("missing host in '{s}'"));
        }
        Ok(HostPort { proto, host, port })
    }
}

/// A value of a global assignment, independent of the parser's AST.
#[derive(Debug, Clone, PartialEq)]
pub enum GValue {
    Int(i64),
    Str(String),
    /// A bare word (`yes`, `LOG_LOCAL0`, `udp:1.2.3.4:5060` …).
    Ident(String),
}

impl GValue {
    fn as_text(&self) -> String {
        match self {
            GValue::Int(i) => i.to_string(),
            GValue::Str(s) | GValue::Ident(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Globals {
    pub debug: i32,
    pub fork: bool,
    pub log_stderror: bool,
    pub log_facility: i32,
    pub log_name: Option<String>,
    pub memlog: i32,
    pub listen: Vec<HostPort>,
    pub port: u16,
    pub alias: Vec<HostPort>,
    pub auto_aliases: bool,
    pub children: u32,
    pub tcp_children: Option<u32>,
    pub disable_tcp: bool,
    pub tcp_accept_aliases: bool,
    pub tcp_send_timeout: i64,
    pub tcp_connect_timeout: i64,
    pub tcp_connection_lifetime: i64,
    pub tcp_poll_method: Option<String>,
    pub tcp_max_connections: i64,
    /// A stream message without Content-Length has an empty body (else 400 + close).
    pub tcp_accept_no_cl: bool,
    /// Seconds a stream message may take from its first byte to its last (Kamailio's
    /// name; 1.2 had no limit).
    pub tcp_msg_read_timeout: i64,
    /// The TLS globals and domain blocks.
    pub tls: crate::transport::tls::TlsSettings,
    pub dns: bool,
    pub rev_dns: bool,
    pub dns_try_ipv6: bool,
    pub dns_retr_time: i64,
    pub dns_retr_no: i64,
    pub dns_servers_no: i64,
    pub dns_use_search_list: i64,
    pub disable_dns_failover: bool,
    pub disable_dns_blacklist: bool,
    /// The resolv.conf to read instead of /etc/resolv.conf (see `dns::resolver`).
    pub dns_resolv_conf: Option<String>,
    pub use_dns_cache: bool,
    pub dns_cache_min_ttl: i64,
    pub dns_cache_max_ttl: i64,
    pub dns_cache_negative_ttl: i64,
    pub dns_cache_max_mem: i64,
    pub use_dst_blacklist: bool,
    pub dst_blacklist_expire: i64,
    pub dst_blacklist_mem: i64,
    pub dst_blacklist_udp_imask: i64,
    pub dst_blacklist_tcp_imask: i64,
    pub dst_blacklist_tls_imask: i64,
    pub check_via: bool,
    pub maxbuffer: usize,
    pub mpath: Option<String>,
    pub mhomed: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    pub wdir: String,
    pub chroot: Option<String>,
    pub sip_warning: bool,
    pub server_signature: bool,
    pub server_header: String,
    pub user_agent_header: String,
    pub reply_to_via: bool,
    pub advertised_address: Option<String>,
    pub advertised_port: Option<u16>,
    pub avp_aliases: Vec<String>,
    pub disable_core_dump: bool,
    /// Replace a child that died instead of shutting down (1.2 shuts down: `no`).
    pub respawn_children: bool,
    pub open_files_limit: i64,
    pub mcast_loopback: bool,
    pub mcast_ttl: i64,
    pub tos: i64,
    pub unix_sock: Option<String>,
    pub unix_sock_children: i64,
    pub unix_tx_timeout: i64,
    pub max_while_loops: i64,
    /// The routing engine (Kamailio's `cfgengine`): `native` runs the configuration's
    /// route blocks; another name hands them to the module declaring that engine.
    pub cfgengine: String,
    pub dst_blacklist: Vec<String>,
    /// The `dst_blacklist = id:{...}` lists of the config (see `dns::blacklist`).
    pub dst_blacklists: Vec<crate::cfg::ast::Blacklist>,
    /// shm size in bytes (`-m`; there is no config parameter for it in 1.2).
    pub shm_size: usize,
    /// How many `-D` were given (0 = decided by `fork=`).
    pub dont_fork_level: u32,
    pub pid_file: Option<String>,
    pub pgid_file: Option<String>,
    pub cfg_file: String,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            debug: 2,
            fork: true,
            log_stderror: false,
            log_facility: libc::LOG_DAEMON,
            log_name: None,
            memlog: 4,
            listen: Vec::new(),
            port: 5060,
            alias: Vec::new(),
            auto_aliases: true,
            children: 8,
            tcp_children: None,
            disable_tcp: false,
            tcp_accept_aliases: false,
            tcp_send_timeout: 10,
            tcp_connect_timeout: 10,
            tcp_connection_lifetime: 120,
            tcp_poll_method: None,
            tcp_max_connections: 2048,
            tcp_accept_no_cl: false,
            tcp_msg_read_timeout: 20,
            tls: Default::default(),
            dns: false,
            rev_dns: false,
            dns_try_ipv6: true,
            dns_retr_time: -1,
            dns_retr_no: -1,
            dns_servers_no: -1,
            dns_use_search_list: -1,
            disable_dns_failover: false,
            disable_dns_blacklist: false,
            dns_resolv_conf: None,
            use_dns_cache: true,
            dns_cache_min_ttl: 0,
            dns_cache_max_ttl: i64::from(u32::MAX >> 1),
            dns_cache_negative_ttl: 60,
            dns_cache_max_mem: 500 * 1024,
            use_dst_blacklist: true,
            dst_blacklist_expire: 60,
            dst_blacklist_mem: 250 * 1024,
            dst_blacklist_udp_imask: 0,
            dst_blacklist_tcp_imask: 0,
            dst_blacklist_tls_imask: 0,
            check_via: false,
            maxbuffer: 262144,
            mpath: None,
            mhomed: false,
            user: None,
            group: None,
            wdir: "/".into(),
            chroot: None,
            sip_warning: false,
            server_signature: true,
            server_header: crate::version::server_header(),
            user_agent_header: crate::version::user_agent_header(),
            reply_to_via: false,
            advertised_address: None,
            advertised_port: None,
            avp_aliases: Vec::new(),
            disable_core_dump: false,
            respawn_children: true,
            open_files_limit: -1,
            mcast_loopback: false,
            mcast_ttl: -1,
            tos: 0x10,
            unix_sock: None,
            unix_sock_children: 1,
            unix_tx_timeout: 2000,
            max_while_loops: 100,
            cfgengine: "native".into(),
            dst_blacklist: Vec::new(),
            dst_blacklists: Vec::new(),
            shm_size: 32 * 1024 * 1024,
            dont_fork_level: 0,
            pid_file: None,
            pgid_file: None,
            cfg_file: crate::version::DEFAULT_CFG_FILE.into(),
        }
    }
}

fn as_bool(v: &GValue) -> Result<bool, String> {
    match v {
        GValue::Int(i) => Ok(*i != 0),
        GValue::Str(s) | GValue::Ident(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "enable" | "1" => Ok(true),
            "no" | "false" | "off" | "disable" | "0" => Ok(false),
            _ => Err(format!(
                "expected a boolean (yes/no/on/off/true/false/number), found '{s}'"
            )),
        },
    }
}

fn as_nonneg(v: &GValue, name: &str) -> Result<i64, String> {
    let n = as_int(v)?;
    if n < 0 {
        return Err(format!("{name} must not be negative, found {n}"));
    }
    Ok(n)
}

fn as_int(v: &GValue) -> Result<i64, String> {
    match v {
        GValue::Int(i) => Ok(*i),
        GValue::Str(s) | GValue::Ident(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "enable" => Ok(1),
            "no" | "false" | "off" | "disable" => Ok(0),
            _ => s
                .parse()
                .map_err(|_| format!("expected a number, found '{s}'")),
        },
    }
}

fn as_str(v: &GValue) -> String {
    v.as_text()
}

/// `log_facility` names (case-insensitive).
pub fn parse_facility(name: &str) -> Option<i32> {
    let n = name.to_ascii_uppercase();
    Some(match n.as_str() {
        "LOG_AUTH" => libc::LOG_AUTH,
        "LOG_CRON" => libc::LOG_CRON,
        "LOG_DAEMON" => libc::LOG_DAEMON,
        "LOG_KERN" => libc::LOG_KERN,
        "LOG_LOCAL0" => libc::LOG_LOCAL0,
        "LOG_LOCAL1" => libc::LOG_LOCAL1,
        "LOG_LOCAL2" => libc::LOG_LOCAL2,
        "LOG_LOCAL3" => libc::LOG_LOCAL3,
        "LOG_LOCAL4" => libc::LOG_LOCAL4,
        "LOG_LOCAL5" => libc::LOG_LOCAL5,
        "LOG_LOCAL6" => libc::LOG_LOCAL6,
        "LOG_LOCAL7" => libc::LOG_LOCAL7,
        "LOG_LPR" => libc::LOG_LPR,
        "LOG_MAIL" => libc::LOG_MAIL,
        "LOG_NEWS" => libc::LOG_NEWS,
        "LOG_USER" => libc::LOG_USER,
        "LOG_UUCP" => libc::LOG_UUCP,
        "LOG_AUTHPRIV" => libc::LOG_AUTHPRIV,
        "LOG_FTP" => libc::LOG_FTP,
        "LOG_SYSLOG" => libc::LOG_SYSLOG,
        _ => return None,
    })
}

fn tos_value(v: &GValue) -> Result<i64, String> {
    match v {
        GValue::Int(i) => Ok(*i),
        GValue::Str(s) | GValue::Ident(s) => match s.to_ascii_uppercase().as_str() {
            "IPTOS_LOWDELAY" => Ok(0x10),
            "IPTOS_THROUGHPUT" => Ok(0x08),
            "IPTOS_RELIABILITY" => Ok(0x04),
            "IPTOS_MINCOST" => Ok(0x02),
            _ => Err(format!("bad tos value '{s}'")),
        },
    }
}

impl Globals {
    /// Apply one `name = value` from the config file. The error text is shown after
    /// `file:line:col:`.
    pub fn apply(&mut self, name: &str, v: &GValue) -> Result<(), String> {
        let port = |v: &GValue| -> Result<u16, String> {
            let p = as_int(v)?;
            u16::try_from(p).map_err(|_| format!("port out of range: {p}"))
        };
        match name {
            "debug" => self.debug = as_int(v)? as i32,
            "fork" => self.fork = as_bool(v)?,
            "log_stderror" => self.log_stderror = as_bool(v)?,
            "log_facility" => {
                let s = as_str(v);
                self.log_facility =
                    parse_facility(&s).ok_or_else(|| format!("bad facility '{s}'"))?;
            }
            "log_name" => self.log_name = Some(as_str(v)),
            "memlog" | "mem_log" => self.memlog = as_int(v)? as i32,
            "listen" => {
                let hp = HostPort::parse(&as_str(v))?;
                crate::transport::served::check_listen(hp.proto)?;
                self.listen.push(hp)
            }
            "port" => self.port = port(v)?,
            "alias" => self.alias.push(HostPort::parse(&as_str(v))?),
            "auto_aliases" => self.auto_aliases = as_bool(v)?,
            "children" => {
                let n = as_int(v)?;
                if n <= 0 || n > 1024 {
                    return Err(format!("children must be between 1 and 1024, found {n}"));
                }
                self.children = n as u32
            }
            "tcp_children" => self.tcp_children = Some(as_int(v)?.max(0) as u32),
            "disable_tcp" => self.disable_tcp = as_bool(v)?,
            "tcp_accept_aliases" => self.tcp_accept_aliases = as_bool(v)?,
            "tcp_send_timeout" => self.tcp_send_timeout = as_int(v)?,
            "tcp_connect_timeout" => self.tcp_connect_timeout = as_int(v)?,
            "tcp_connection_lifetime" => self.tcp_connection_lifetime = as_int(v)?,
            "tcp_poll_method" => {
                let s = as_str(v);
                if !crate::args::POLL_METHODS.contains(&s.as_str()) {
                    return Err(format!("bad poll method name '{s}'"));
                }
                self.tcp_poll_method = Some(s)
            }
            "tcp_max_connections" => {
                let n = as_int(v)?;
                if n <= 0 {
                    return Err(format!("tcp_max_connections must be positive, found {n}"));
                }
                self.tcp_max_connections = n
            }
            "tcp_accept_no_cl" => self.tcp_accept_no_cl = as_bool(v)?,
            "tcp_msg_read_timeout" => {
                let n = as_int(v)?;
                if n <= 0 {
                    return Err(format!("tcp_msg_read_timeout must be positive, found {n}"));
                }
                self.tcp_msg_read_timeout = n
            }
            "dns" => self.dns = as_bool(v)?,
            "rev_dns" => self.rev_dns = as_bool(v)?,
            "dns_try_ipv6" => self.dns_try_ipv6 = as_bool(v)?,
            "dns_retr_time" => self.dns_retr_time = as_int(v)?,
            "dns_retr_no" => self.dns_retr_no = as_int(v)?,
            "dns_servers_no" => self.dns_servers_no = as_int(v)?,
            "dns_use_search_list" => self.dns_use_search_list = as_int(v)?,
            "disable_dns_failover" => self.disable_dns_failover = as_bool(v)?,
            "disable_dns_blacklist" => self.disable_dns_blacklist = as_bool(v)?,
            "dns_resolv_conf" => self.dns_resolv_conf = Some(as_str(v)),
            "use_dns_cache" => self.use_dns_cache = as_bool(v)?,
            "dns_cache_min_ttl" => self.dns_cache_min_ttl = as_nonneg(v, "dns_cache_min_ttl")?,
            "dns_cache_max_ttl" => self.dns_cache_max_ttl = as_nonneg(v, "dns_cache_max_ttl")?,
            "dns_cache_negative_ttl" => {
                self.dns_cache_negative_ttl = as_nonneg(v, "dns_cache_negative_ttl")?
            }
            "dns_cache_max_mem" => self.dns_cache_max_mem = as_nonneg(v, "dns_cache_max_mem")?,
            "use_dst_blacklist" => self.use_dst_blacklist = as_bool(v)?,
            "dst_blacklist_expire" => {
                self.dst_blacklist_expire = as_nonneg(v, "dst_blacklist_expire")?
            }
            "dst_blacklist_mem" => self.dst_blacklist_mem = as_nonneg(v, "dst_blacklist_mem")?,
            "dst_blacklist_udp_imask" => self.dst_blacklist_udp_imask = as_int(v)?,
            "dst_blacklist_tcp_imask" => self.dst_blacklist_tcp_imask = as_int(v)?,
            "dst_blacklist_tls_imask" => self.dst_blacklist_tls_imask = as_int(v)?,
            "dst_blacklist" => self.dst_blacklist.push(as_str(v)),
            "check_via" => self.check_via = as_bool(v)?,
            "maxbuffer" => {
                let n = as_int(v)?;
                if n <= 0 {
                    return Err(format!("maxbuffer must be positive, found {n}"));
                }
                self.maxbuffer = n as usize
            }
            "mpath" => {
                let mut p = as_str(v);
                if !p.ends_with('/') {
                    p.push('/');
                }
                self.mpath = Some(p)
            }
            "mhomed" => self.mhomed = as_bool(v)?,
            "user" | "uid" => self.user = Some(as_str(v)),
            "group" | "gid" => self.group = Some(as_str(v)),
            "workdir" | "wdir" => self.wdir = as_str(v),
            "chroot" => self.chroot = Some(as_str(v)),
            "sip_warning" => self.sip_warning = as_bool(v)?,
            "server_signature" => self.server_signature = as_bool(v)?,
            "server_header" => self.server_header = as_str(v),
            "user_agent_header" => self.user_agent_header = as_str(v),
            "reply_to_via" => self.reply_to_via = as_bool(v)?,
            "advertised_address" => self.advertised_address = Some(as_str(v)),
            "advertised_port" => self.advertised_port = Some(port(v)?),
            "avp_aliases" => self.avp_aliases.push(as_str(v)),
            "disable_core_dump" => self.disable_core_dump = as_bool(v)?,
            "respawn_children" => self.respawn_children = as_bool(v)?,
            "open_files_limit" => self.open_files_limit = as_int(v)?,
            "mcast_loopback" => self.mcast_loopback = as_bool(v)?,
            "mcast_ttl" => self.mcast_ttl = as_int(v)?,
            "tos" => self.tos = tos_value(v)?,
            "unix_sock" => self.unix_sock = Some(as_str(v)),
            "unix_sock_children" => self.unix_sock_children = as_int(v)?,
            "unix_tx_timeout" => self.unix_tx_timeout = as_int(v)?,
            "sock_mode" | "sock_user" | "sock_group" => {}
            "max_while_loops" => self.max_while_loops = as_int(v)?,
            "cfgengine" => {
                let s = as_str(v);
                if s.trim().is_empty() {
                    return Err("cfgengine needs an engine name (native, lua)".into());
                }
                self.cfgengine = s.trim().to_string()
            }
            _ => {
                if !self.tls.apply(name, v)? {
                    return Err(format!("unknown global parameter '{name}'"));
                }
            }
        }
        Ok(())
    }

    /// Apply the command line over the config (Kamailio's precedence).
    pub fn apply_args(&mut self, a: &crate::args::Args) -> Result<(), String> {
        if a.debug_incr > 0 {
            self.debug = 2 + a.debug_incr as i32;
        }
        if a.log_stderr || a.check_only {
            self.log_stderror = true;
        }
        if let Some(n) = a.children {
            self.children = n;
        }
        if let Some(n) = a.tcp_children {
            self.tcp_children = Some(n);
        }
        if a.dont_fork > 0 {
            self.dont_fork_level = a.dont_fork;
            self.fork = a.dont_fork != 1;
        }
        for l in &a.listen {
            let hp = HostPort::parse(l)
                .and_then(|hp| crate::transport::served::check_listen(hp.proto).map(|_| hp))
                .map_err(|e| format!("bad -l address '{l}': {e}"))?;
            self.listen.push(hp);
        }
        if let Some(m) = a.shm_mb {
            self.shm_size = m
                .checked_mul(1024 * 1024)
                .ok_or_else(|| format!("bad shmem size: {m}"))?;
        }
        if let Some(b) = a.maxbuffer {
            self.maxbuffer = b;
        }
        if a.dns {
            self.dns = true;
        }
        if a.rev_dns {
            self.rev_dns = true;
        }
        if a.check_via {
            self.check_via = true;
        }
        if a.disable_tcp {
            self.disable_tcp = true;
        }
        macro_rules! over {
            ($f:ident) => {
                if let Some(v) = &a.$f {
                    self.$f = Some(v.clone());
                }
            };
        }
        over!(user);
        over!(group);
        over!(chroot);
        over!(pid_file);
        over!(pgid_file);
        over!(unix_sock);
        if let Some(w) = &a.wdir {
            self.wdir = w.clone();
        }
        Ok(())
    }

    /// Whether the attendant daemonises (fork=yes and not -D/-DD).
    pub fn daemonize(&self) -> bool {
        self.fork && !(self.dont_fork_level == 1 || self.dont_fork_level == 2)
    }

    /// Whether receivers are forked (everything but fork=no / -D).
    pub fn forks_children(&self) -> bool {
        self.fork && self.dont_fork_level != 1
    }
}

static GLOBALS: OnceLock<Globals> = OnceLock::new();

/// Freeze the globals (attendant, before forking). A second call is ignored.
pub fn set(g: Globals) {
    let _ = GLOBALS.set(g);
}

/// The frozen globals (defaults if not yet frozen, e.g. in unit tests).
pub fn get() -> &'static Globals {
    GLOBALS.get_or_init(Globals::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostport_forms() {
        let h = HostPort::parse("udp:127.0.0.1:5070").unwrap();
        assert_eq!(
            (h.proto, h.host.as_str(), h.port),
            (Proto::Udp, "127.0.0.1", 5070)
        );
        let h = HostPort::parse("192.168.1.99").unwrap();
        assert_eq!((h.proto, h.port), (Proto::Any, 0));
        let h = HostPort::parse("tcp:[::1]:5060").unwrap();
        assert_eq!(
            (h.proto, h.host.as_str(), h.port),
            (Proto::Tcp, "::1", 5060)
        );
        assert!(HostPort::parse("udp:1.2.3.4:99999").is_err());
        assert!(HostPort::parse("").is_err());
    }

    #[test]
    fn apply_values_and_errors() {
        let mut g = Globals::default();
        g.apply("fork", &GValue::Ident("no".into())).unwrap();
        assert!(!g.fork);
        g.apply("children", &GValue::Int(4)).unwrap();
        assert_eq!(g.children, 4);
        g.apply("log_facility", &GValue::Ident("log_local0".into()))
            .unwrap();
        assert_eq!(g.log_facility, libc::LOG_LOCAL0);
        assert!(
            g.apply("log_facility", &GValue::Ident("LOG_BOGUS".into()))
                .is_err()
        );
        assert!(g.apply("no_such_thing", &GValue::Int(1)).is_err());
        assert!(g.apply("fork", &GValue::Ident("maybe".into())).is_err());
        g.apply("mpath", &GValue::Str("/usr/lib/x".into())).unwrap();
        assert_eq!(g.mpath.as_deref(), Some("/usr/lib/x/"));
    }

    #[test]
    fn command_line_wins() {
        let mut g = Globals::default();
        g.apply("debug", &GValue::Int(9)).unwrap();
        g.apply("fork", &GValue::Ident("yes".into())).unwrap();
        let a = crate::args::parse(["-D", "-d", "-n", "2"]).unwrap();
        g.apply_args(&a).unwrap();
        assert_eq!(g.debug, 3);
        assert!(!g.fork);
        assert!(!g.daemonize() && !g.forks_children());
        assert_eq!(g.children, 2);
        let mut g = Globals::default();
        g.apply_args(&crate::args::parse(["-DD"]).unwrap()).unwrap();
        assert!(!g.daemonize() && g.forks_children());
        let mut g = Globals::default();
        g.apply_args(&crate::args::parse(["-DDD"]).unwrap())
            .unwrap();
        assert!(g.daemonize());
    }
}

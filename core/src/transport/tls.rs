//! TLS over the TCP machinery, with rustls (ring provider).
//!
//! **Where a TLS session lives.** A rustls session is an ordinary heap object: it
//! cannot live in shm, and it cannot travel with a descriptor over SCM_RIGHTS. So a
//! TLS connection is never handed to a tcp receiver: the **tcp main process keeps
//! every TLS session in its private memory** and does all the TLS work — the
//! handshake, decrypting what arrives, encrypting what leaves. It frames the
//! plaintext ([`super::tcp_frame`]) and passes each whole message to a tcp receiver
//! as bytes over the receiver's socket pair (with a summary of the session for the
//! `tlsops` pseudo-variables), always the same receiver for one connection, so the
//! messages of a connection are processed in order. Everything a receiver sends on a
//! TLS connection already goes through tcp main (as on TCP), which encrypts it. The
//! alternative — the receiver holding a TLS connection for its whole life — would
//! pin connections to processes and need tcp main to forward every other process's
//! writes to that receiver; one owner is simpler and sound, and it is 1.2's rule
//! ("only tcp main writes") extended to reads. The cost is that tcp main does all
//! the crypto of all TLS connections (one core); see ARCHITECTURE.md.
//!
//! rustls is a state machine over our non-blocking sockets: no threads, no blocking
//! call. A handshake must finish within `tls_handshake_timeout` seconds and queued
//! encrypted bytes must leave within `tls_send_timeout`, else the connection is closed.
//!
//! **Configuration** (1.2's globals and `tls_server_domain[ip:port] { … }` /
//! `tls_client_domain[ip:port] { … }` blocks) is checked while the config is loaded:
//! unreadable or malformed certificate, key and CA files, an unknown cipher name or a
//! method rustls cannot honour are start-up errors at their `file:line:col`. The
//! rustls configurations are built once in the attendant before it forks.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CipherSuite, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
};

use crate::globals::GValue;

/// 1.2's `tls_method` values and what they become with rustls (which offers TLS 1.2
/// and 1.3 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMethod {
    /// `SSLv23` (OpenSSL's "any version"), and `TLSv1` (1.2's "TLS, not SSL"; TLS 1.0
    /// is not offered, a warning says so): TLS 1.2 and 1.3.
    Any,
    /// `TLSv1_2`: TLS 1.2 only.
    Tls12,
    /// `TLSv1_3`: TLS 1.3 only.
    Tls13,
}

impl TlsMethod {
    /// Parse a `tls_method` value. `SSLv2`/`SSLv3` (and TLS 1.0/1.1-only names) are
    /// refused: rustls does not speak them.
    pub fn parse(s: &str) -> Result<TlsMethod, String> {
        match s.to_ascii_uppercase().as_str() {
            "SSLV23" | "TLSV1" | "TLS" | "ANY" => Ok(TlsMethod::Any),
            "TLSV1_2" | "TLSV1.2" => Ok(TlsMethod::Tls12),
            "TLSV1_3" | "TLSV1.3" => Ok(TlsMethod::Tls13),
            "SSLV2" | "SSLV3" | "TLSV1_0" | "TLSV1.0" | "TLSV1_1" | "TLSV1.1" => Err(format!(
                "tls_method {s} cannot be honoured: this server speaks TLS 1.2 and 1.3 only \
                 (use SSLv23 or TLSv1 for both, TLSv1_2 or TLSv1_3 for one)"
            )),
            _ => Err(format!(
                "bad tls_method '{s}': SSLv23, TLSv1, TLSv1_2 or TLSv1_3 expected"
            )),
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static ANY: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static V12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        static V13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsMethod::Any => &ANY,
            TlsMethod::Tls12 => &V12,
            TlsMethod::Tls13 => &V13,
        }
    }
}

/// One TLS domain: the defaults (globals) or a `tls_server_domain` /
/// `tls_client_domain` block. `None` = inherit the global value.
#[derive(Debug, Clone, Default)]
pub struct TlsDomain {
    /// The `[ip:port]` of a block (local socket for a server domain, destination for a
    /// client domain); `None` for the defaults.
    pub addr: Option<SocketAddr>,
    pub method: Option<TlsMethod>,
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_list: Option<String>,
    pub ciphers_list: Option<String>,
    /// `tls_verify_client` (server) or `tls_verify_server` (client).
    pub verify: Option<bool>,
    pub require_client_cert: Option<bool>,
}

/// The TLS globals (1.2's defaults).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub disable: bool,
    pub port_no: u16,
    pub method: TlsMethod,
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_list: Option<String>,
    pub ciphers_list: Option<String>,
    pub verify_server: bool,
    pub verify_client: bool,
    pub require_client_cert: bool,
    pub handshake_timeout: i64,
    pub send_timeout: i64,
    pub server_domains: Vec<TlsDomain>,
    pub client_domains: Vec<TlsDomain>,
    /// Which block the `@domain.` assignments go to: (server?, index).
    open_block: Option<(bool, usize)>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            disable: false,
            port_no: 5061,
            method: TlsMethod::Any,
            certificate: None,
            private_key: None,
            ca_list: None,
            ciphers_list: None,
            verify_server: true,
            verify_client: true,
            require_client_cert: true,
            handshake_timeout: 30,
            send_timeout: 30,
            server_domains: Vec::new(),
            client_domains: Vec::new(),
            open_block: None,
        }
    }
}

/// The prefix the config parser gives the assignments inside a domain block.
pub const BLOCK_PREFIX: &str = "@domain.";

fn text(v: &GValue) -> String {
    match v {
        GValue::Int(i) => i.to_string(),
        GValue::Str(s) | GValue::Ident(s) => s.clone(),
    }
}

fn flag(v: &GValue) -> Result<bool, String> {
    match v {
        GValue::Int(i) => Ok(*i != 0),
        GValue::Str(s) | GValue::Ident(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "enable" | "1" => Ok(true),
            "no" | "false" | "off" | "disable" | "0" => Ok(false),
            _ => Err(format!("expected a boolean, found '{s}'")),
        },
    }
}

fn number(v: &GValue) -> Result<i64, String> {
    match v {
        GValue::Int(i) => Ok(*i),
        GValue::Str(s) | GValue::Ident(s) => s
            .parse()
            .map_err(|_| format!("expected a number, found '{s}'")),
    }
}

impl TlsSettings {
    /// Apply a TLS global (`Ok(false)`: not a TLS name).
    pub fn apply(&mut self, name: &str, v: &GValue) -> Result<bool, String> {
        if let Some(inner) = name.strip_prefix(BLOCK_PREFIX) {
            self.apply_block(inner, v)?;
            return Ok(true);
        }
        match name {
            "disable_tls" => self.disable = flag(v)?,
            "tls_port_no" => {
                let p = number(v)?;
                self.port_no = u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("tls_port_no out of range: {p}"))?;
            }
            "tls_method" => self.method = TlsMethod::parse(&text(v))?,
            "tls_certificate" => self.certificate = Some(check_certs(&text(v), name)?),
            "tls_private_key" => self.private_key = Some(check_key(&text(v))?),
            "tls_ca_list" => self.ca_list = Some(check_certs(&text(v), name)?),
            "tls_ciphers_list" => {
                let s = text(v);
                cipher_suites(&s)?;
                self.ciphers_list = Some(s);
            }
            "tls_verify_server" => self.verify_server = flag(v)?,
            // 1.2 also knew the older names tls_verify / tls_require_certificate
            "tls_verify_client" | "tls_verify" => self.verify_client = flag(v)?,
            "tls_require_client_certificate" | "tls_require_certificate" => {
                self.require_client_cert = flag(v)?
            }
            "tls_handshake_timeout" | "tls_send_timeout" => {
                let n = number(v)?;
                if n <= 0 {
                    return Err(format!("{name} must be positive, found {n}"));
                }
                if name == "tls_handshake_timeout" {
                    self.handshake_timeout = n;
                } else {
                    self.send_timeout = n;
                }
            }
            "tls_client_domain_avp" | "tls_log" | "tlslog" => {
                // 1.2 names kept so its configs load, but nothing reads them here
                number(v)?;
                let why = if name == "tls_client_domain_avp" {
                    "client domains are chosen by destination address"
                } else {
                    "TLS events are logged at the global debug level"
                };
                crate::log_warn!("global {name} has no effect in openser-rs ({why})");
            }
            "tls_server_domain" | "tls_client_domain" => {
                let t = text(v);
                let addr: SocketAddr = t
                    .parse()
                    .map_err(|_| format!("{name}: bad address '{t}' (ip:port expected)"))?;
                let server = name == "tls_server_domain";
                let list = if server {
                    &mut self.server_domains
                } else {
                    &mut self.client_domains
                };
                if list.iter().any(|d| d.addr == Some(addr)) {
                    return Err(format!("{name}[{t}] is defined twice"));
                }
                list.push(TlsDomain {
                    addr: Some(addr),
                    ..TlsDomain::default()
                });
                self.open_block = Some((server, list.len() - 1));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn apply_block(&mut self, name: &str, v: &GValue) -> Result<(), String> {
        let Some((server, i)) = self.open_block else {
            return Err(format!("{name} outside a TLS domain block"));
        };
        let d = if server {
            &mut self.server_domains[i]
        } else {
            &mut self.client_domains[i]
        };
        match name {
            "tls_method" => d.method = Some(TlsMethod::parse(&text(v))?),
            "tls_certificate" => d.certificate = Some(check_certs(&text(v), name)?),
            "tls_private_key" => d.private_key = Some(check_key(&text(v))?),
            "tls_ca_list" => d.ca_list = Some(check_certs(&text(v), name)?),
            "tls_ciphers_list" => {
                let s = text(v);
                cipher_suites(&s)?;
                d.ciphers_list = Some(s);
            }
            "tls_verify_client" if server => d.verify = Some(flag(v)?),
            "tls_require_client_certificate" if server => d.require_client_cert = Some(flag(v)?),
            "tls_verify_server" if !server => d.verify = Some(flag(v)?),
            _ => {
                return Err(format!(
                    "'{name}' is not allowed in a {} domain block",
                    if server { "tls_server" } else { "tls_client" }
                ));
            }
        }
        Ok(())
    }

    /// 1.2's default certificate and key (`CFG_DIR/tls/cert.pem`).
    fn default_cert_path(&self, cfg_file: &str) -> String {
        let dir = std::path::Path::new(cfg_file)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if dir.is_empty() {
            "tls/cert.pem".into()
        } else {
            format!("{dir}/tls/cert.pem")
        }
    }
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what}: cannot read '{path}': {e}"))
}

/// Read and parse a PEM certificate file (at least one certificate).
fn load_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = read_file(path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: bad PEM in '{path}': {e:?}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate in '{path}'"));
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c)
            .map_err(|e| format!("{what}: bad certificate in '{path}': {e}"))?;
    }
    Ok(certs)
}

fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let data = read_file(path, "tls_private_key")?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| format!("tls_private_key: no usable private key in '{path}': {e:?}"))
}

fn check_certs(path: &str, what: &str) -> Result<String, String> {
    load_certs(path, what).map(|_| path.to_string())
}

fn check_key(path: &str) -> Result<String, String> {
    load_key(path).map(|_| path.to_string())
}

// ---------------------------------------------------------------------------
// cipher suites

/// One suite rustls/ring offers: (suite, OpenSSL name, key bits, key exchange,
/// authentication).
type Suite = (CipherSuite, &'static str, u16, &'static str, &'static str);

const SUITES: &[Suite] = &[
    (
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        "TLS_AES_256_GCM_SHA384",
        256,
        "any",
        "any",
    ),
    (
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_128_GCM_SHA256",
        128,
        "any",
        "any",
    ),
    (
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_CHACHA20_POLY1305_SHA256",
        256,
        "any",
        "any",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        256,
        "ECDH",
        "ECDSA",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        128,
        "ECDH",
        "ECDSA",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        256,
        "ECDH",
        "ECDSA",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES256-GCM-SHA384",
        256,
        "ECDH",
        "RSA",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256",
        128,
        "ECDH",
        "RSA",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-CHACHA20-POLY1305",
        256,
        "ECDH",
        "RSA",
    ),
];

/// Parts of OpenSSL cipher names and categories that name nothing rustls offers
/// (legacy ciphers, SSL versions, anonymous or export suites): a list naming them is
/// understood, they select no suite.
const LEGACY_PARTS: &[&str] = &[
    "ADH",
    "AECDH",
    "AES",
    "AES128",
    "AES256",
    "ANULL",
    "ARIA",
    "ARIA128",
    "ARIA256",
    "CAMELLIA",
    "CAMELLIA128",
    "CAMELLIA256",
    "CBC",
    "CBC3",
    "CCM",
    "CCM8",
    "DES",
    "DES40",
    "3DES",
    "DH",
    "DHE",
    "DSS",
    "ADSS",
    "ECDH",
    "EDH",
    "ENULL",
    "EXP",
    "EXP1024",
    "EXPORT",
    "EXPORT40",
    "EXPORT56",
    "GCM",
    "IDEA",
    "KDHE",
    "KEDH",
    "KRB5",
    "KRSA",
    "LOW",
    "MD5",
    "MEDIUM",
    "NULL",
    "PSK",
    "RC2",
    "RC4",
    "RSA",
    "SEED",
    "SHA",
    "SHA1",
    "SHA256",
    "SHA384",
    "SRP",
    "SSLV2",
    "SSLV3",
    "TLSV1",
    "TLSV1.0",
    "TLSV1.1",
    "ECDHE",
    "ECDSA",
    "CHACHA20",
    "POLY1305",
    "40",
    "56",
    "CBC",
    "ANON",
    "AESGCM",
    "AECDSA",
    "ARSA",
    "KECDHE",
    "EECDH",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
];

/// Which offered suites a positive element selects (`None`: unknown word).
fn select(word: &str) -> Option<Vec<CipherSuite>> {
    let w = word.to_ascii_uppercase();
    let all = || SUITES.iter().map(|s| s.0).collect::<Vec<_>>();
    let filter = |f: &dyn Fn(&Suite) -> bool| {
        SUITES
            .iter()
            .filter(|s| f(s))
            .map(|s| s.0)
            .collect::<Vec<_>>()
    };
    // an exact name (OpenSSL's or the IANA one)
    if let Some(s) = SUITES.iter().find(|s| {
        s.1.eq_ignore_ascii_case(&w)
            || s.0
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&w) || n.replace("TLS13_", "TLS_") == w)
    }) {
        return Some(vec![s.0]);
    }
    Some(match w.as_str() {
        "DEFAULT" | "ALL" | "HIGH" | "TLSV1.2" | "TLSV1.3" => {
            let v13 = |s: &Suite| s.3 == "any";
            match w.as_str() {
                "TLSV1.2" => filter(&|s| !v13(s)),
                "TLSV1.3" => filter(&v13),
                _ => all(),
            }
        }
        "AESGCM" => filter(&|s| s.1.contains("AES")),
        "AES" => filter(&|s| s.1.contains("AES")),
        "AES128" => filter(&|s| s.1.contains("AES128") || s.1.contains("AES_128")),
        "AES256" => filter(&|s| s.1.contains("AES256") || s.1.contains("AES_256")),
        "CHACHA20" => filter(&|s| s.1.contains("CHACHA20")),
        "ECDHE" | "EECDH" | "KECDHE" => filter(&|s| s.3 == "ECDH"),
        "ECDSA" | "AECDSA" => filter(&|s| s.4 == "ECDSA"),
        "RSA" | "ARSA" => filter(&|s| s.4 == "RSA"),
        "SHA256" => filter(&|s| s.1.ends_with("SHA256")),
        "SHA384" => filter(&|s| s.1.ends_with("SHA384")),
        _ => {
            if w.split('-').all(|p| LEGACY_PARTS.contains(&p)) {
                Vec::new()
            } else {
                return None;
            }
        }
    })
}

/// The suites a `tls_ciphers_list` (OpenSSL syntax) selects, in rustls's order.
/// Known OpenSSL names of suites rustls does not offer select nothing; an unknown
/// word, or a list that leaves nothing, is an error.
pub fn cipher_suites(list: &str) -> Result<Vec<CipherSuite>, String> {
    let mut on: Vec<CipherSuite> = Vec::new();
    let mut banned: Vec<CipherSuite> = Vec::new();
    for el in list.split([':', ',', ' ']).filter(|e| !e.is_empty()) {
        if el.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n
        }
        let (op, body) = match el.as_bytes()[0] {
            b'!' | b'-' | b'+' => (el.as_bytes()[0], &el[1..]),
            _ => (b' ', el),
        };
        // `A+B`: the suites both select
        let mut sel: Option<Vec<CipherSuite>> = None;
        for part in body.split('+').filter(|p| !p.is_empty()) {
            let s = select(part).ok_or_else(|| {
                format!(
                    "tls_ciphers_list: unknown cipher '{part}' (this server offers {})",
                    SUITES.iter().map(|s| s.1).collect::<Vec<_>>().join(", ")
                )
            })?;
            sel = Some(match sel {
                None => s,
                Some(prev) => prev.into_iter().filter(|c| s.contains(c)).collect(),
            });
        }
        let sel = sel.unwrap_or_default();
        match op {
            b'!' => banned.extend(sel),
            b'-' => on.retain(|c| !sel.contains(c)),
            _ => {
                for c in sel {
                    if !on.contains(&c) {
                        on.push(c);
                    }
                }
            }
        }
    }
    on.retain(|c| !banned.contains(c));
    if on.is_empty() {
        return Err(format!(
            "tls_ciphers_list '{list}' selects no cipher suite this server offers ({})",
            SUITES.iter().map(|s| s.1).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(on)
}

fn provider(ciphers: Option<&str>) -> Result<Arc<CryptoProvider>, String> {
    // ring: aws-lc-rs needs cmake (and nasm) to build, ring only a C compiler; rustls
    // 0.23.48 deprecates ring's provider for lacking post-quantum key exchange, which
    // SIP peers do not offer yet (ARCHITECTURE.md, "TLS").
    #[allow(deprecated)]
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(list) = ciphers {
        let want = cipher_suites(list)?;
        p.cipher_suites.retain(|s| want.contains(&s.suite()));
    }
    Ok(Arc::new(p))
}

// ---------------------------------------------------------------------------
// the built configurations

struct Built {
    /// (local socket, config); `None` = the default domain.
    servers: Vec<(Option<SocketAddr>, Arc<ServerConfig>)>,
    /// (destination, config, verify?)
    clients: Vec<(Option<SocketAddr>, Arc<ClientConfig>)>,
    /// Whether the server domain verifies clients (for `$tls_peer_verified`).
    server_verifies: Vec<bool>,
    client_verifies: Vec<bool>,
    handshake_timeout: Duration,
    send_timeout: Duration,
}

static BUILT: OnceLock<Built> = OnceLock::new();

/// A failed build: the config name whose last assignment is to blame (for the
/// `file:line:col`), and the message.
#[derive(Debug)]
pub struct BuildError {
    pub param: String,
    pub msg: String,
}

fn err(param: &str, msg: impl Into<String>) -> BuildError {
    BuildError {
        param: param.into(),
        msg: msg.into(),
    }
}

/// Is TLS configured (built)?
pub fn enabled() -> bool {
    BUILT.get().is_some()
}

/// Build the rustls configurations from the settings (attendant, before fork). A
/// second call is ignored.
pub fn build(t: &TlsSettings, cfg_file: &str) -> Result<(), BuildError> {
    if BUILT.get().is_some() {
        return Ok(());
    }
    if t.method == TlsMethod::Any {
        // nothing to say: SSLv23 / TLSv1 both mean "TLS 1.2 and 1.3" here
    }
    let default_cert = t.default_cert_path(cfg_file);
    let mut servers = Vec::new();
    let mut server_verifies = Vec::new();
    let default = TlsDomain::default();
    for d in std::iter::once(&default).chain(t.server_domains.iter()) {
        let (cfg, verifies) = server_config(t, d, &default_cert)?;
        servers.push((d.addr, Arc::new(cfg)));
        server_verifies.push(verifies);
    }
    let mut clients = Vec::new();
    let mut client_verifies = Vec::new();
    for d in std::iter::once(&default).chain(t.client_domains.iter()) {
        let (cfg, verifies) = client_config(t, d, &default_cert)?;
        clients.push((d.addr, Arc::new(cfg)));
        client_verifies.push(verifies);
    }
    let _ = BUILT.set(Built {
        servers,
        clients,
        server_verifies,
        client_verifies,
        handshake_timeout: Duration::from_secs(t.handshake_timeout.max(1) as u64),
        send_timeout: Duration::from_secs(t.send_timeout.max(1) as u64),
    });
    Ok(())
}

fn block_param(d: &TlsDomain, name: &str) -> String {
    if d.addr.is_some() {
        format!("{BLOCK_PREFIX}{name}")
    } else {
        name.to_string()
    }
}

fn cert_and_key(
    t: &TlsSettings,
    d: &TlsDomain,
    default_cert: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), BuildError> {
    let cert = d
        .certificate
        .clone()
        .or_else(|| t.certificate.clone())
        .unwrap_or_else(|| default_cert.to_string());
    let key = d
        .private_key
        .clone()
        .or_else(|| t.private_key.clone())
        .unwrap_or_else(|| default_cert.to_string());
    let certs = load_certs(&cert, "tls_certificate")
        .map_err(|e| err(&block_param(d, "tls_certificate"), e))?;
    let key = load_key(&key).map_err(|e| err(&block_param(d, "tls_private_key"), e))?;
    Ok((certs, key))
}

fn roots(path: &str, d: &TlsDomain) -> Result<Arc<RootCertStore>, BuildError> {
    let mut r = RootCertStore::empty();
    for c in load_certs(path, "tls_ca_list").map_err(|e| err(&block_param(d, "tls_ca_list"), e))? {
        r.add(c)
            .map_err(|e| err(&block_param(d, "tls_ca_list"), format!("tls_ca_list: {e}")))?;
    }
    Ok(Arc::new(r))
}

fn server_config(
    t: &TlsSettings,
    d: &TlsDomain,
    default_cert: &str,
) -> Result<(ServerConfig, bool), BuildError> {
    let p = provider(d.ciphers_list.as_deref().or(t.ciphers_list.as_deref()))
        .map_err(|e| err(&block_param(d, "tls_ciphers_list"), e))?;
    let method = d.method.unwrap_or(t.method);
    let (certs, key) = cert_and_key(t, d, default_cert)?;
    let verify = d.verify.unwrap_or(t.verify_client);
    let require = d.require_client_cert.unwrap_or(t.require_client_cert);
    let b = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(method.versions())
        .map_err(|e| err(&block_param(d, "tls_method"), format!("tls_method: {e}")))?;
    let b = if verify {
        let ca = d
            .ca_list
            .as_deref()
            .or(t.ca_list.as_deref())
            .ok_or_else(|| {
                err(
                    &block_param(d, "tls_verify_client"),
                    "tls_verify_client is on (1.2's default) but no tls_ca_list is set: \
                 set tls_ca_list, or tls_verify_client=0",
                )
            })?;
        let mut vb = WebPkiClientVerifier::builder_with_provider(roots(ca, d)?, p.clone());
        if !require {
            vb = vb.allow_unauthenticated();
        }
        let v = vb
            .build()
            .map_err(|e| err(&block_param(d, "tls_ca_list"), format!("tls_ca_list: {e}")))?;
        b.with_client_cert_verifier(v)
    } else {
        // (tls_require_client_certificate needs tls_verify_client, as in 1.2)
        b.with_no_client_auth()
    };
    let mut cfg = b.with_single_cert(certs, key).map_err(|e| {
        err(
            &block_param(d, "tls_private_key"),
            format!("tls_private_key does not fit tls_certificate: {e}"),
        )
    })?;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(256);
    Ok((cfg, verify))
}

fn client_config(
    t: &TlsSettings,
    d: &TlsDomain,
    default_cert: &str,
) -> Result<(ClientConfig, bool), BuildError> {
    let p = provider(d.ciphers_list.as_deref().or(t.ciphers_list.as_deref()))
        .map_err(|e| err(&block_param(d, "tls_ciphers_list"), e))?;
    let method = d.method.unwrap_or(t.method);
    let verify = d.verify.unwrap_or(t.verify_server);
    let verifier: Arc<dyn ServerCertVerifier> = if verify {
        let ca = d
            .ca_list
            .as_deref()
            .or(t.ca_list.as_deref())
            .ok_or_else(|| {
                err(
                    &block_param(d, "tls_verify_server"),
                    "tls_verify_server is on (1.2's default) but no tls_ca_list is set: \
                 set tls_ca_list, or tls_verify_server=0",
                )
            })?;
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca, d)?, p.clone())
                .build()
                .map_err(|e| err(&block_param(d, "tls_ca_list"), format!("tls_ca_list: {e}")))?;
        Arc::new(ServerCheck {
            chain: Some(inner),
            algs: p.signature_verification_algorithms,
        })
    } else {
        any_server_verifier(&p)
    };
    let b = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(method.versions())
        .map_err(|e| err(&block_param(d, "tls_method"), format!("tls_method: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    // the client presents the domain's certificate when it has one (1.2 did)
    let has_cert = d.certificate.is_some() || t.certificate.is_some();
    let cfg = if has_cert || std::path::Path::new(default_cert).exists() {
        let (certs, key) = cert_and_key(t, d, default_cert)?;
        b.with_client_auth_cert(certs, key).map_err(|e| {
            err(
                &block_param(d, "tls_private_key"),
                format!("tls_private_key does not fit tls_certificate: {e}"),
            )
        })?
    } else {
        b.with_no_client_auth()
    };
    Ok((cfg, verify))
}

/// A verifier that takes any server certificate (still checking the handshake
/// signatures): `tls_verify_server=0`, and the test and load clients.
pub fn any_server_verifier(p: &rustls::crypto::CryptoProvider) -> Arc<dyn ServerCertVerifier> {
    Arc::new(ServerCheck {
        chain: None,
        algs: p.signature_verification_algorithms,
    })
}

/// How the proxy checks a server's certificate. `chain` is set with
/// `tls_verify_server=1`: the chain must lead to a CA of `tls_ca_list`; like 1.2 (and
/// Kamailio's default), the server's name is not checked against the destination.
/// Without it (`tls_verify_server=0`) any certificate is taken. Either way the
/// handshake signatures are checked.
#[derive(Debug)]
struct ServerCheck {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Handshake and send timeouts.
pub fn timeouts() -> (Duration, Duration) {
    BUILT
        .get()
        .map(|b| (b.handshake_timeout, b.send_timeout))
        .unwrap_or((Duration::from_secs(30), Duration::from_secs(30)))
}

/// A new server session for a connection accepted on `local` (its server domain, else
/// the default one), and whether that domain verifies client certificates.
pub fn new_server(local: SocketAddr) -> Option<(rustls::Connection, bool)> {
    let b = BUILT.get()?;
    let i = b
        .servers
        .iter()
        .position(|(a, _)| *a == Some(local))
        .unwrap_or(0);
    let c = rustls::ServerConnection::new(b.servers[i].1.clone()).ok()?;
    Some((rustls::Connection::Server(c), b.server_verifies[i]))
}

/// A new client session for a connection to `to` (its client domain, else the default).
pub fn new_client(to: SocketAddr) -> Option<(rustls::Connection, bool)> {
    let b = BUILT.get()?;
    let i = b
        .clients
        .iter()
        .position(|(a, _)| *a == Some(to))
        .unwrap_or(0);
    let name = ServerName::IpAddress(to.ip().into());
    let c = rustls::ClientConnection::new(b.clients[i].1.clone(), name).ok()?;
    Some((rustls::Connection::Client(c), b.client_verifies[i]))
}

// ---------------------------------------------------------------------------
// the session summary the tlsops pseudo-variables read

/// What the script may ask about a TLS connection (1.2's tlsops).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` / `TLSv1.3`
    pub version: String,
    /// OpenSSL's name of the cipher suite
    pub cipher: String,
    pub bits: u16,
    /// OpenSSL's one-line description of the suite
    pub description: String,
    /// The peer sent a certificate.
    pub peer_cert: bool,
    /// It was verified against `tls_ca_list` (the handshake fails otherwise).
    pub peer_verified: bool,
    /// X.509 version field (2 for v3, as OpenSSL reports it)
    pub peer_version: u32,
    pub peer_serial: String,
    /// `/C=../O=../CN=..` (OpenSSL's one-line form)
    pub peer_subject: String,
    pub peer_issuer: String,
    pub peer_subject_cn: String,
    pub peer_issuer_cn: String,
    pub peer_not_before: String,
    pub peer_not_after: String,
    pub peer_expired: bool,
    pub peer_selfsigned: bool,
}

impl TlsInfo {
    /// The summary of an established session (`verifies`: the side checked the peer).
    pub fn of(c: &rustls::Connection, verifies: bool) -> TlsInfo {
        let mut t = TlsInfo {
            version: match c.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                Some(v) => format!("{v:?}"),
                None => String::new(),
            },
            ..TlsInfo::default()
        };
        if let Some(s) = c.negotiated_cipher_suite() {
            describe_suite(&mut t, s);
        }
        if let Some(cert) = c.peer_certificates().and_then(|v| v.first()) {
            t.set_peer_cert(cert, verifies);
        }
        t
    }

    /// The peer's certificate fields from its DER form (outside input: fuzzed by the
    /// `tls_peer_cert` target). `verified`: the handshake checked it.
    pub fn set_peer_cert(&mut self, der: &[u8], verified: bool) {
        self.peer_cert = true;
        self.peer_verified = verified;
        if let Ok((_, x)) = x509_parser::parse_x509_certificate(der) {
            self.peer_version = x.version().0;
            self.peer_serial = x.tbs_certificate.serial.to_string();
            self.peer_subject = oneline(x.subject());
            self.peer_issuer = oneline(x.issuer());
            self.peer_subject_cn = first_cn(x.subject());
            self.peer_issuer_cn = first_cn(x.issuer());
            self.peer_not_before = x.validity().not_before.to_string();
            self.peer_not_after = x.validity().not_after.to_string();
            self.peer_expired = !x.validity().is_valid();
            self.peer_selfsigned = x.subject() == x.issuer();
        }
    }

    /// Compact form passed from tcp main to a tcp receiver with each message.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        let mut put = |s: &str| {
            let s = &s.as_bytes()[..s.len().min(1000)];
            b.extend_from_slice(&(s.len() as u16).to_le_bytes());
            b.extend_from_slice(s);
        };
        put(&self.version);
        put(&self.cipher);
        put(&self.bits.to_string());
        put(&self.description);
        let flags = (self.peer_cert as u8)
            | (self.peer_verified as u8) << 1
            | (self.peer_expired as u8) << 2
            | (self.peer_selfsigned as u8) << 3;
        put(&flags.to_string());
        put(&self.peer_version.to_string());
        put(&self.peer_serial);
        put(&self.peer_subject);
        put(&self.peer_issuer);
        put(&self.peer_subject_cn);
        put(&self.peer_issuer_cn);
        put(&self.peer_not_before);
        put(&self.peer_not_after);
        b
    }

    /// The inverse of [`TlsInfo::encode`] (`None` if it is not one).
    pub fn decode(mut b: &[u8]) -> Option<TlsInfo> {
        let mut next = || -> Option<String> {
            let n = u16::from_le_bytes([*b.first()?, *b.get(1)?]) as usize;
            let s = b.get(2..2 + n)?;
            let out = String::from_utf8_lossy(s).into_owned();
            b = &b[2 + n..];
            Some(out)
        };
        let version = next()?;
        let cipher = next()?;
        let bits = next()?.parse().ok()?;
        let description = next()?;
        let flags: u8 = next()?.parse().ok()?;
        Some(TlsInfo {
            version,
            cipher,
            bits,
            description,
            peer_cert: flags & 1 != 0,
            peer_verified: flags & 2 != 0,
            peer_expired: flags & 4 != 0,
            peer_selfsigned: flags & 8 != 0,
            peer_version: next()?.parse().ok()?,
            peer_serial: next()?,
            peer_subject: next()?,
            peer_issuer: next()?,
            peer_subject_cn: next()?,
            peer_issuer_cn: next()?,
            peer_not_before: next()?,
            peer_not_after: next()?,
        })
    }
}

fn describe_suite(t: &mut TlsInfo, s: SupportedCipherSuite) {
    let id = s.suite();
    if let Some(&(_, name, bits, kx, au)) = SUITES.iter().find(|x| x.0 == id) {
        t.cipher = name.to_string();
        t.bits = bits;
        let enc = if name.contains("CHACHA20") {
            format!("CHACHA20/POLY1305({bits})")
        } else {
            format!("AESGCM({bits})")
        };
        let ver = if kx == "any" { "TLSv1.3" } else { "TLSv1.2" };
        t.description = format!("{name} {ver} Kx={kx} Au={au} Enc={enc} Mac=AEAD");
    } else {
        t.cipher = id.as_str().unwrap_or("unknown").to_string();
    }
}

fn oneline(n: &x509_parser::x509::X509Name<'_>) -> String {
    let reg = x509_parser::objects::oid_registry();
    let mut s = String::new();
    for rdn in n.iter() {
        for a in rdn.iter() {
            let key = x509_parser::objects::oid2abbrev(a.attr_type(), reg)
                .map(str::to_string)
                .unwrap_or_else(|_| a.attr_type().to_id_string());
            let val = a.as_str().unwrap_or("?");
            s.push('/');
            s.push_str(&key);
            s.push('=');
            s.push_str(val);
        }
    }
    s
}

fn first_cn(n: &x509_parser::x509::X509Name<'_>) -> String {
    n.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

thread_local! {
    /// The session summary of the message being handled (tcp receivers), encoded.
    static CURRENT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// tcp receiver: the message being handled came over TLS with this summary (empty:
/// not TLS).
pub(crate) fn set_current(info: &[u8]) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        c.clear();
        c.extend_from_slice(info);
    });
}

/// The TLS session of the message being handled, if it came over TLS.
pub fn current() -> Option<TlsInfo> {
    CURRENT.with(|c| {
        let c = c.borrow();
        if c.is_empty() {
            None
        } else {
            TlsInfo::decode(&c)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_onto_tls12_and_13() {
        assert_eq!(TlsMethod::parse("SSLv23"), Ok(TlsMethod::Any));
        assert_eq!(TlsMethod::parse("TLSv1"), Ok(TlsMethod::Any));
        assert_eq!(TlsMethod::parse("TLSv1_2"), Ok(TlsMethod::Tls12));
        assert_eq!(TlsMethod::parse("tlsv1_3"), Ok(TlsMethod::Tls13));
        assert!(
            TlsMethod::parse("SSLv3")
                .unwrap_err()
                .contains("cannot be honoured")
        );
        assert!(TlsMethod::parse("SSLv2").is_err());
        assert!(TlsMethod::parse("bogus").unwrap_err().contains("expected"));
    }

    #[test]
    fn cipher_lists_map_openssl_names() {
        let all = cipher_suites("DEFAULT").unwrap();
        assert_eq!(all.len(), SUITES.len());
        assert_eq!(
            cipher_suites("ECDHE-RSA-AES128-GCM-SHA256").unwrap(),
            vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        // 1.2-era lists: legacy parts select nothing, exclusions of them are no-ops
        let v = cipher_suites("ALL:!ADH:!LOW:!EXP:!MD5:@STRENGTH").unwrap();
        assert_eq!(v.len(), SUITES.len());
        let v = cipher_suites("AES128-SHA:ECDHE-RSA-AES256-GCM-SHA384").unwrap();
        assert_eq!(v, vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]);
        let v = cipher_suites("ECDHE+AESGCM:!ECDSA").unwrap();
        assert!(v.iter().all(|c| format!("{c:?}").contains("RSA_WITH_AES")));
        assert!(
            cipher_suites("RC4-SHA")
                .unwrap_err()
                .contains("no cipher suite")
        );
        assert!(
            cipher_suites("FOOBAR")
                .unwrap_err()
                .contains("unknown cipher 'FOOBAR'")
        );
        assert!(cipher_suites("TLS_AES_128_GCM_SHA256").is_ok());
    }

    #[test]
    fn info_round_trips() {
        let t = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
            bits: 128,
            description: "d".into(),
            peer_cert: true,
            peer_verified: true,
            peer_version: 2,
            peer_serial: "12345".into(),
            peer_subject: "/CN=alice".into(),
            peer_issuer: "/CN=ca".into(),
            peer_subject_cn: "alice".into(),
            peer_issuer_cn: "ca".into(),
            peer_not_before: "a".into(),
            peer_not_after: "b".into(),
            peer_expired: false,
            peer_selfsigned: false,
        };
        assert_eq!(TlsInfo::decode(&t.encode()), Some(t));
        assert_eq!(TlsInfo::decode(&[1]), None);
    }

    #[test]
    fn domain_blocks_collect_their_settings() {
        let mut t = TlsSettings::default();
        assert!(
            t.apply("tls_server_domain", &GValue::Str("127.0.0.1:5061".into()))
                .unwrap()
        );
        assert!(
            t.apply("@domain.tls_verify_client", &GValue::Int(0))
                .unwrap()
        );
        assert_eq!(t.server_domains[0].verify, Some(false));
        let e = t
            .apply("@domain.tls_verify_server", &GValue::Int(0))
            .unwrap_err();
        assert!(e.contains("not allowed"), "{e}");
        assert!(
            t.apply("tls_server_domain", &GValue::Str("127.0.0.1:5061".into()))
                .unwrap_err()
                .contains("twice")
        );
        let e = t
            .apply(
                "tls_certificate",
                &GValue::Str("/nonexistent/cert.pem".into()),
            )
            .unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        assert!(!t.apply("debug", &GValue::Int(1)).unwrap());
    }
}

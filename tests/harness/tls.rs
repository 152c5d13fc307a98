//! TLS for the tests: certificates made with `openssl` (a test CA, server and client
//! certificates signed by it, and an untrusted self-signed one), and a small TLS SIP
//! client over rustls that verifies the server against the test CA (or not), with or
//! without a client certificate. Blocking with timeouts: it is a test peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The files of a test PKI in a directory.
pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// Make `ca.pem`, `server.pem`/`server.key` (CN and IP SAN 127.0.0.1),
    /// `alice.pem`/`alice.key` (CN=alice, signed by the CA) and
    /// `mallory.pem`/`mallory.key` (self-signed) in `dir` (EC P-256: fast).
    pub fn new(dir: &Path) -> Pki {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/O=openser-rs tests/CN=Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &a);
        std::fs::write(
            dir.join("ee.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,IP:::1\n",
        )
        .unwrap();
        for (name, subj) in [
            ("server", "/CN=127.0.0.1"),
            ("alice", "/O=Example/CN=alice"),
        ] {
            let mut a = vec!["req"];
            a.extend(ec);
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            a.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
            openssl(dir, &a);
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "30",
                    "-extfile",
                    "ee.ext",
                ],
            );
        }
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend([
            "-keyout",
            "mallory.key",
            "-out",
            "mallory.pem",
            "-days",
            "30",
            "-subj",
            "/CN=mallory",
            "-addext",
            "extendedKeyUsage=clientAuth",
        ]);
        openssl(dir, &a);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

fn certs(path: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("certificate file")
        .map(|c| c.expect("certificate"))
        .collect()
}

/// A client configuration: verify the server against `ca` (full check, name
/// included) or not at all; present `cert`/`key` if given.
pub fn client_config(
    ca: Option<&str>,
    cert_key: Option<(&str, &str)>,
) -> Arc<rustls::ClientConfig> {
    #[allow(deprecated)]
    let p = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca) {
                roots.add(c).unwrap();
            }
            b.with_root_certificates(roots)
        }
        None => b.dangerous().with_custom_certificate_verifier(
            openser_core::transport::tls::any_server_verifier(&p),
        ),
    };
    let cfg = match cert_key {
        Some((c, k)) => b
            .with_client_auth_cert(certs(c), PrivateKeyDer::from_pem_file(k).unwrap())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// A TLS SIP connection to the server.
pub struct TlsClient {
    pub s: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
    /// CRLFs received between messages (keep-alive pongs).
    pub crlfs: usize,
}

impl TlsClient {
    /// Connect and complete the handshake (`Err`: refused, with rustls's reason).
    pub fn connect(to: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<TlsClient> {
        let t = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        t.set_read_timeout(Some(Duration::from_secs(10)))?;
        t.set_write_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::IpAddress(to.ip().into());
        let c = rustls::ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(c, t);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(TlsClient {
            s,
            buf: Vec::new(),
            crlfs: 0,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.s.sock.local_addr().unwrap()
    }

    pub fn send(&mut self, msg: &str) -> std::io::Result<()> {
        self.s.write_all(msg.as_bytes())?;
        self.s.flush()
    }

    /// The next whole message (by Content-Length), `None` at end of file, on an error
    /// or after the read timeout.
    pub fn recv(&mut self) -> Option<String> {
        loop {
            let lead = self
                .buf
                .iter()
                .take_while(|&&c| c == b'\r' || c == b'\n')
                .count();
            self.crlfs += self.buf[..lead].iter().filter(|&&c| c == b'\n').count();
            self.buf.drain(..lead);
            if let Some(len) = whole_message(&self.buf) {
                let m = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                self.buf.drain(..len);
                return Some(m);
            }
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read for up to `t` until at least `n` CRLFs came between messages (keep-alives);
    /// whether they did.
    pub fn wait_crlfs(&mut self, n: usize, t: Duration) -> bool {
        let end = std::time::Instant::now() + t;
        let _ = self
            .s
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)));
        let mut chunk = [0u8; 4096];
        while self.crlfs < n && std::time::Instant::now() < end {
            if let Ok(k) = self.s.read(&mut chunk) {
                if k == 0 {
                    break;
                }
                self.crlfs += chunk[..k].iter().filter(|&&c| c == b'\n').count();
            }
        }
        let _ = self.s.sock.set_read_timeout(Some(Duration::from_secs(10)));
        self.crlfs >= n
    }

    /// Whether the server ends the connection (end of file or error) before a message
    /// comes.
    pub fn closed(&mut self) -> bool {
        self.recv().is_none()
    }
}

/// The length of the whole message at the start of `b` (leading CRLFs skipped into
/// it), if it is complete.
pub fn whole_message(b: &[u8]) -> Option<usize> {
    let start = b.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let end = b[start..].windows(4).position(|w| w == b"\r\n\r\n")? + start + 4;
    let head = String::from_utf8_lossy(&b[start..end]);
    let cl = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    (b.len() >= end + cl).then_some(end + cl)
}

/// A TLS SIP server for the tests (a UAS the proxy relays to over TLS): accepts one
/// connection at a time, blocking with timeouts.
pub struct TlsServer {
    pub listener: std::net::TcpListener,
    cfg: Arc<rustls::ServerConfig>,
}

impl TlsServer {
    /// Listen on a free 127.0.0.1 port with `cert`/`key`; ask for a client
    /// certificate verified against `ca` if given (optional for the client).
    pub fn new(cert: &str, key: &str, ca: Option<&str>) -> TlsServer {
        #[allow(deprecated)]
        let p = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ServerConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = match ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(ca) {
                    roots.add(c).unwrap();
                }
                let v =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p)
                        .allow_unauthenticated()
                        .build()
                        .unwrap();
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let cfg = b
            .with_single_cert(certs(cert), PrivateKeyDer::from_pem_file(key).unwrap())
            .unwrap();
        TlsServer {
            listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            cfg: Arc::new(cfg),
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// The next connection with its handshake done, within `wait`; `None` if none
    /// came or its handshake failed.
    pub fn accept(&self, wait: Duration) -> Option<TlsPeer> {
        self.listener.set_nonblocking(true).unwrap();
        let end = std::time::Instant::now() + wait;
        let t = loop {
            match self.listener.accept() {
                Ok((t, _)) => break t,
                Err(_) if std::time::Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return None,
            }
        };
        t.set_nonblocking(false).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let c = rustls::ServerConnection::new(self.cfg.clone()).unwrap();
        let mut s = rustls::StreamOwned::new(c, t);
        while s.conn.is_handshaking() {
            if s.conn.complete_io(&mut s.sock).is_err() {
                return None;
            }
        }
        Some(TlsPeer { s, buf: Vec::new() })
    }
}

/// A connection accepted by [`TlsServer`].
pub struct TlsPeer {
    pub s: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsPeer {
    pub fn send(&mut self, msg: &str) -> std::io::Result<()> {
        self.s.write_all(msg.as_bytes())?;
        self.s.flush()
    }

    /// The next whole message, `None` at end of file, on an error or timeout.
    pub fn recv(&mut self) -> Option<String> {
        loop {
            let lead = self
                .buf
                .iter()
                .take_while(|&&c| c == b'\r' || c == b'\n')
                .count();
            self.buf.drain(..lead);
            if let Some(len) = whole_message(&self.buf) {
                let m = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                self.buf.drain(..len);
                return Some(m);
            }
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The subject of the certificate the proxy presented as a client, if any.
    pub fn peer_presented_cert(&self) -> bool {
        self.s
            .conn
            .peer_certificates()
            .is_some_and(|v| !v.is_empty())
    }
}

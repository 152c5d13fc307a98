//! A private, throwaway OpenLDAP `slapd` for the LDAP tests: a `slapd.conf` in a temp
//! dir (core schema, the H.350 schema below, one mdb database under `dc=example,dc=com`
//! in the temp dir, anonymous read as slapd's default), the test's entries loaded
//! offline with `slapadd`, then `slapd -d 0` in the foreground on a free loopback
//! port under `owned()`, stopped by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use super::{TempDir, free_udp_port, owned, skip, stop_child, wait_until};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const BASE: &str = "ou=h350,dc=example,dc=com";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
pub const ROOT_PW: &str = "rootpw";

/// The H.350 object classes the tests use, written from ITU-T H.350 (commObject),
/// H.350.4 (SIPIdentity) and H.350.6 (callPreferenceURIObject): names, syntaxes and
/// matching rules of those attribute definitions; the OIDs are under H.350's arc
/// `0.0.8.350.1.1`.
pub const H350_SCHEMA: &str = "\
attributetype ( 0.0.8.350.1.1.2.1.1 NAME 'commUniqueId'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 0.0.8.350.1.1.2.1.2 NAME 'commOwner'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 0.0.8.350.1.1.2.1.3 NAME 'commPrivate'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 0.0.8.350.1.1.2.2.1 NAME 'commObject' SUP top AUXILIARY
\tMUST ( commUniqueId ) MAY ( commOwner $ commPrivate ) )
attributetype ( 0.0.8.350.1.1.6.1.1 NAME 'SIPIdentitySIPURI'
\tEQUALITY caseExactMatch SUBSTR caseExactSubstringsMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 0.0.8.350.1.1.6.1.2 NAME 'SIPIdentityRegistrarAddress'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 0.0.8.350.1.1.6.1.3 NAME 'SIPIdentityProxyAddress'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 0.0.8.350.1.1.6.1.4 NAME 'SIPIdentityAddress'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 0.0.8.350.1.1.6.1.5 NAME 'SIPIdentityPassword'
\tEQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
attributetype ( 0.0.8.350.1.1.6.1.6 NAME 'SIPIdentityUserName'
\tEQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 0.0.8.350.1.1.6.1.7 NAME 'SIPIdentityServiceLevel'
\tEQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 0.0.8.350.1.1.6.2.1 NAME 'SIPIdentity' SUP top AUXILIARY
\tMAY ( SIPIdentitySIPURI $ SIPIdentityRegistrarAddress $ SIPIdentityProxyAddress $
\t      SIPIdentityAddress $ SIPIdentityPassword $ SIPIdentityUserName $
\t      SIPIdentityServiceLevel ) )
attributetype ( 0.0.8.350.1.1.8.1.1 NAME 'callPreferenceURI'
\tEQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 0.0.8.350.1.1.8.2.1 NAME 'callPreferenceURIObject' SUP top AUXILIARY
\tMAY ( callPreferenceURI ) )
";

/// The base entries every directory starts with (before the test's own).
const BASE_LDIF: &str = "\
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: ou=h350,dc=example,dc=com
objectClass: organizationalUnit
ou: h350

";

fn binary(name: &str) -> Option<PathBuf> {
    let p = Path::new("/usr/sbin").join(name);
    if p.exists() {
        return Some(p);
    }
    super::have(name).then(|| PathBuf::from(name))
}

pub struct Slapd {
    child: Option<Child>,
    pub dir: TempDir,
    pub port: u16,
}

impl Slapd {
    /// Load `ldif` (after the base entries) and start; `None` (after a loud SKIPPED
    /// line) when slapd is not installed, a panic instead when `CI=true`.
    pub fn start(ldif: &str) -> Option<Slapd> {
        let (Some(_), Some(slapadd)) = (binary("slapd"), binary("slapadd")) else {
            skip("slapd is not installed (Debian slapd)");
            return None;
        };
        let dir = TempDir::new("slapd");
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.file("db")).unwrap();
        std::fs::write(dir.file("h350.schema"), H350_SCHEMA).unwrap();
        std::fs::write(
            dir.file("slapd.conf"),
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include {d}/h350.schema\n\
                 pidfile {d}/slapd.pid\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 database mdb\n\
                 suffix \"{SUFFIX}\"\n\
                 rootdn \"{ROOT_DN}\"\n\
                 rootpw {ROOT_PW}\n\
                 directory {d}/db\n\
                 maxsize 10485760\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.file("data.ldif"), format!("{BASE_LDIF}{ldif}")).unwrap();
        let out = std::process::Command::new(slapadd)
            .arg("-f")
            .arg(dir.file("slapd.conf"))
            .arg("-l")
            .arg(dir.file("data.ldif"))
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            child: None,
            dir,
            port: free_udp_port(),
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.file("slapd.out"))
            .unwrap();
        let child = owned(binary("slapd").expect("checked in start"))
            .arg("-f")
            .arg(self.dir.file("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            let log = self.output();
            self.stop();
            panic!("slapd did not start on {port}:\n{log}");
        }
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.file("slapd.out")).unwrap_or_default()
    }

    /// `ldap://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Write an ldap module sessions file into `dir` with one session `name` bound as
    /// the root DN (`anonymous` false) or anonymously; returns its path.
    pub fn sessions_file(&self, dir: &Path, name: &str, anonymous: bool) -> PathBuf {
        let bind = if anonymous {
            String::new()
        } else {
            format!("ldap_bind_dn = \"{ROOT_DN}\"\nldap_bind_password = \"{ROOT_PW}\"\n")
        };
        let p = dir.join("ldap.cfg");
        std::fs::write(
            &p,
            format!(
                "# written by the test\n[{name}]\nldap_server_url = \"{}\"\n{bind}\
                 ldap_network_timeout = 1000\nldap_client_bind_timeout = 1000\n",
                self.url()
            ),
        )
        .unwrap();
        p
    }

    /// Stop it (SIGTERM to its PID, SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, 15, Duration::from_secs(5));
        }
    }

    /// Start it again on the same port and database.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

//! A private, throwaway FreeRADIUS for the RADIUS tests: its own raddb in a temp dir
//! (a minimal radiusd.conf written here: one client 127.0.0.1, the `files`, `digest`
//! and `detail` modules, authentication and accounting on two free loopback ports),
//! the test's `users` file, a local dictionary with the SIP attributes, run in the
//! foreground in debug mode (`-X`, its output in the temp dir) under `owned()`, stopped
//! by its PID. A `radiusclient.conf` for openser pointing at it is written on request.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use super::{TempDir, free_udp_port, have, owned, skip, stop_child, wait_udp_bound};

pub const SECRET: &str = "testing123";

pub struct FreeRadius {
    child: Option<Child>,
    pub dir: TempDir,
    pub auth_port: u16,
    pub acct_port: u16,
}

/// The raddb's local dictionary: the 1.2 SIP attributes and Service-Type values
/// FreeRADIUS lacks. (Its own `dictionary.openser` cannot be included: its Sip-Method
/// clashes with a vendor dictionary's, and 101–105 with RFC 5090/5176 attributes, so
/// those arrive as `Error-Cause`, `Digest-Realm`, … in the detail file.)
const LOCAL_DICTIONARY: &str = "\
ATTRIBUTE\tSip-Uri-User\t208\tstring
ATTRIBUTE\tSip-Group\t211\tstring
ATTRIBUTE\tSip-Rpid\t213\tstring
ATTRIBUTE\tSIP-AVP\t225\tstring
VALUE\tService-Type\tGroup-Check\t12
VALUE\tService-Type\tSIP-Caller-AVPs\t30
VALUE\tService-Type\tSIP-Callee-AVPs\t31
";

fn binary() -> Option<&'static str> {
    if have("freeradius") {
        Some("freeradius")
    } else if Path::new("/usr/sbin/freeradius").exists() {
        Some("/usr/sbin/freeradius")
    } else {
        None
    }
}

fn radiusd_conf(dir: &Path, auth: u16, acct: u16) -> String {
    let d = dir.display();
    format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}
name = freeradius
confdir = {d}
modconfdir = {d}
run_dir = {d}
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/radiusd.pid
max_request_time = 5
cleanup_delay = 0
max_requests = 1024
hostname_lookups = no
proxy_requests = no
log {{
    destination = stdout
    auth = no
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
client local {{
    ipaddr = 127.0.0.1
    secret = {SECRET}
}}
modules {{
    digest {{
    }}
    files {{
        filename = {d}/users
        acctusersfile = {d}/acct_users
    }}
    detail {{
        filename = {d}/detail
        permissions = 0600
        header = "%t"
    }}
    always ok {{
        rcode = ok
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {auth}
    }}
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {acct}
    }}
    authorize {{
        files
        digest
    }}
    authenticate {{
        Auth-Type digest {{
            digest
        }}
    }}
    preacct {{
        ok
    }}
    accounting {{
        detail
        ok
    }}
    post-auth {{
        ok
    }}
}}
"#
    )
}

impl FreeRadius {
    /// Start one with `users` as its users file; `None` (after a loud SKIPPED line)
    /// when FreeRADIUS is not installed, a panic instead when `CI=true`.
    pub fn start(users: &str) -> Option<FreeRadius> {
        if binary().is_none() {
            skip("freeradius is not installed (Debian freeradius)");
            return None;
        }
        let dir = TempDir::new("freeradius");
        let auth_port = free_udp_port();
        let mut acct_port = free_udp_port();
        while acct_port == auth_port {
            acct_port = free_udp_port();
        }
        std::fs::write(
            dir.file("radiusd.conf"),
            radiusd_conf(dir.path(), auth_port, acct_port),
        )
        .unwrap();
        std::fs::write(dir.file("dictionary"), LOCAL_DICTIONARY).unwrap();
        std::fs::write(dir.file("users"), users).unwrap();
        std::fs::write(dir.file("acct_users"), "").unwrap();
        let mut r = FreeRadius {
            child: None,
            dir,
            auth_port,
            acct_port,
        };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.file("radiusd.out"))
            .unwrap();
        let child = owned(binary().expect("checked in start"))
            .args(["-X", "-d"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start freeradius");
        self.child = Some(child);
        let ready = wait_udp_bound(self.auth_port, Duration::from_secs(20))
            && wait_udp_bound(self.acct_port, Duration::from_secs(5))
            && super::wait_until(Duration::from_secs(20), || {
                self.output().contains("Ready to process requests")
            });
        if !ready {
            let log = self.output();
            self.stop();
            panic!("freeradius did not start:\n{log}");
        }
    }

    /// Its debug output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.file("radiusd.out")).unwrap_or_default()
    }

    /// The accounting detail file so far.
    pub fn detail(&self) -> String {
        std::fs::read_to_string(self.dir.file("detail")).unwrap_or_default()
    }

    /// Stop it (SIGTERM to its PID, SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, 15, Duration::from_secs(5));
        }
    }

    /// Start it again on the same ports and files.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Write `radiusclient.conf` (and its `servers` file) for openser into `dir`:
    /// this server for authentication and accounting, `timeout` seconds, `retries`
    /// sends. Returns its path.
    pub fn client_conf(&self, dir: &Path, timeout: u32, retries: u32) -> PathBuf {
        client_conf(
            dir,
            &format!("127.0.0.1:{}", self.auth_port),
            &format!("127.0.0.1:{}", self.acct_port),
            timeout,
            retries,
        )
    }
}

/// A radiusclient.conf naming `auth` and `acct` servers (secret [`SECRET`] in the
/// servers file).
pub fn client_conf(dir: &Path, auth: &str, acct: &str, timeout: u32, retries: u32) -> PathBuf {
    std::fs::write(dir.join("servers"), format!("127.0.0.1 {SECRET}\n")).unwrap();
    let p = dir.join("radiusclient.conf");
    std::fs::write(
        &p,
        format!(
            "# written by the test\n\
             authserver {auth}\n\
             acctserver {acct}\n\
             servers {}\n\
             radius_timeout {timeout}\n\
             radius_retries {retries}\n",
            dir.join("servers").display()
        ),
    )
    .unwrap();
    p
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        self.stop();
    }
}

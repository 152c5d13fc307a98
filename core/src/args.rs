//! The `openser` command line: OpenSER 1.2's letters (getopt string
//! `f:cCm:b:l:n:N:rRvdDETVhw:t:u:g:P:G:x:W:`), with Kamailio's rules where they
//! matter to init scripts and systemd: `-D` is a counter (`-D` no fork, `-DD` fork
//! but stay in the foreground, `-DDD` daemonise), the command line overrides
//! `fork=`/`debug=`/`log_stderror=`/`children=` from the file, and `-P` writes the
//! pid file in every mode.

use std::fmt;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run,
    Version,
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub action: Action,
    pub cfg_file: Option<String>,
    /// `-c`: check the config and exit.
    pub check_only: bool,
    /// `-C`: `-c` plus route-type checks of every function call.
    pub check_routes: bool,
    pub shm_mb: Option<usize>,
    pub maxbuffer: Option<usize>,
    pub listen: Vec<String>,
    pub children: Option<u32>,
    pub tcp_children: Option<u32>,
    pub dns: bool,
    pub rev_dns: bool,
    pub check_via: bool,
    /// Number of `-d` (each raises the level by one over the default 2).
    pub debug_incr: u32,
    /// Number of `-D`.
    pub dont_fork: u32,
    pub log_stderr: bool,
    pub disable_tcp: bool,
    pub poll_method: Option<String>,
    pub wdir: Option<String>,
    pub chroot: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub pid_file: Option<String>,
    pub pgid_file: Option<String>,
    pub unix_sock: Option<String>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            action: Action::Run,
            cfg_file: None,
            check_only: false,
            check_routes: false,
            shm_mb: None,
            maxbuffer: None,
            listen: Vec::new(),
            children: None,
            tcp_children: None,
            dns: false,
            rev_dns: false,
            check_via: false,
            debug_incr: 0,
            dont_fork: 0,
            log_stderr: false,
            disable_tcp: false,
            poll_method: None,
            wdir: None,
            chroot: None,
            user: None,
            group: None,
            pid_file: None,
            pgid_file: None,
            unix_sock: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const WITH_ARG: &[u8] = b"fmblnNwtugPGxW";
const FLAGS: &[u8] = b"cCrRvdDETVh";
pub const POLL_METHODS: &[&str] = &["poll", "epoll_lt", "epoll_et", "sigio_rt", "select"];

fn parse_num<T: std::str::FromStr>(opt: char, v: &str) -> Result<T, ArgError> {
    let t = v.trim();
    let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
            .ok()
            .and_then(|n| n.to_string().parse().ok())
    } else {
        t.parse().ok()
    };
    parsed.ok_or_else(|| ArgError(format!("bad argument for -{opt}: {v}")))
}

/// Parse the arguments after the program name.
pub fn parse<I, S>(argv: I) -> Result<Args, ArgError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let argv: Vec<String> = argv.into_iter().map(|s| s.as_ref().to_string()).collect();
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if arg == "--help" {
            a.action = Action::Help;
            continue;
        }
        if arg == "--version" {
            a.action = Action::Version;
            continue;
        }
        let bytes = arg.as_bytes();
        if bytes.len() < 2 || bytes[0] != b'-' {
            return Err(ArgError(format!("non-option argument '{arg}' (see -h)")));
        }
        let mut j = 1;
        while j < bytes.len() {
            let c = bytes[j];
            j += 1;
            if WITH_ARG.contains(&c) {
                let val = if j < bytes.len() {
                    let v = arg[j..].to_string();
                    j = bytes.len();
                    v
                } else if i < argv.len() {
                    i += 1;
                    argv[i - 1].clone()
                } else {
                    return Err(ArgError(format!(
                        "Option -{} requires an argument.",
                        c as char
                    )));
                };
                apply_with_arg(&mut a, c as char, val)?;
            } else if FLAGS.contains(&c) {
                match c {
                    b'c' => a.check_only = true,
                    b'C' => {
                        a.check_only = true;
                        a.check_routes = true
                    }
                    b'r' => a.dns = true,
                    // OpenSER 1.2's -R falls through into -d (a bug); we do not copy it.
                    b'R' => a.rev_dns = true,
                    b'v' => a.check_via = true,
                    b'd' => a.debug_incr += 1,
                    b'D' => a.dont_fork += 1,
                    b'E' => a.log_stderr = true,
                    b'T' => a.disable_tcp = true,
                    b'V' => a.action = Action::Version,
                    b'h' => a.action = Action::Help,
                    _ => unreachable!("FLAGS lists only the letters matched above"),
                }
            } else {
                let shown = arg[j - 1..].chars().next().unwrap_or('?');
                return Err(ArgError(format!("Unknown option '-{shown}'.")));
            }
        }
    }
    Ok(a)
}

fn apply_with_arg(a: &mut Args, c: char, v: String) -> Result<(), ArgError> {
    match c {
        'f' => a.cfg_file = Some(v),
        'm' => {
            let mb: usize = parse_num('m', &v)?;
            if mb == 0 {
                return Err(ArgError("bad shmem size: 0".into()));
            }
            a.shm_mb = Some(mb)
        }
        'b' => a.maxbuffer = Some(parse_num('b', &v)?),
        'l' => a.listen.push(v),
        'n' => {
            let n: u32 = parse_num('n', &v)?;
            if n == 0 {
                return Err(ArgError("bad argument for -n: 0".into()));
            }
            a.children = Some(n)
        }
        'N' => a.tcp_children = Some(parse_num('N', &v)?),
        'w' => a.wdir = Some(v),
        't' => a.chroot = Some(v),
        'u' => a.user = Some(v),
        'g' => a.group = Some(v),
        'P' => a.pid_file = Some(v),
        'G' => a.pgid_file = Some(v),
        'x' => a.unix_sock = Some(v),
        'W' => {
            if !POLL_METHODS.contains(&v.as_str()) {
                return Err(ArgError(format!(
                    "bad poll method name: -W {v}\ntry one of {}.",
                    POLL_METHODS.join(", ")
                )));
            }
            a.poll_method = Some(v)
        }
        _ => return Err(ArgError(format!("Unknown option '-{c}'."))),
    }
    Ok(())
}

pub fn help_text(prog: &str) -> String {
    format!(
        "{version}
Usage: {prog} -l address [-l address ...] [options]
Options:
    -f file      Configuration file (default {cfg})
    -c           Check configuration file for errors
    -C           Similar to '-c' but in addition checks the flags of exported
                  functions from included route blocks
    -l address   Listen on the specified address/interface (multiple -l
                  mean listening on more addresses). The address format is
                  [proto:]addr[:port], where proto=udp|tcp and
                  addr= host|ip_address|interface_name
    -n processes Number of child processes to fork per interface
                  (default: 8)
    -r           Use dns to check if is necessary to add a \"received=\"
                  field to a via
    -R           Same as `-r` but use reverse dns;
                  (to use both use `-rR`)
    -v           Turn on \"via:\" host checking when forwarding replies
    -d           Debugging mode (multiple -d increase the level)
    -D           Do not fork; -DD: fork the children but stay in the
                  foreground; -DDD: daemonize (the default)
    -E           Log to stderr
    -T           Disable tcp
    -N processes Number of tcp child processes (default: equal to `-n`)
    -W method    poll method
    -V           Version number
    -h           This help message
    -b nr        Maximum receive buffer size which will not be exceeded by
                  auto-probing procedure even if  OS allows
    -m nr        Size of shared memory allocated in Megabytes
    -w dir       Change the working directory to \"dir\" (default \"/\")
    -t dir       Chroot to \"dir\"
    -u uid       Change uid
    -g gid       Change gid
    -P file      Create a pid file
    -G file      Create a pgid file
    -x socket    Create a unix domain socket (not supported)
",
        version = crate::version::version_line(),
        cfg = crate::version::DEFAULT_CFG_FILE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustered_flags_and_counters() {
        let a = parse(["-DDE", "-dd", "-f", "x.cfg"]).unwrap();
        assert_eq!(a.dont_fork, 2);
        assert!(a.log_stderr);
        assert_eq!(a.debug_incr, 2);
        assert_eq!(a.cfg_file.as_deref(), Some("x.cfg"));
    }

    #[test]
    fn attached_and_separate_values() {
        let a = parse(["-m64", "-n", "3", "-l", "udp:127.0.0.1:5060", "-l127.0.0.2"]).unwrap();
        assert_eq!(a.shm_mb, Some(64));
        assert_eq!(a.children, Some(3));
        assert_eq!(a.listen, vec!["udp:127.0.0.1:5060", "127.0.0.2"]);
    }

    #[test]
    fn errors() {
        assert_eq!(parse(["-p", "5060"]).unwrap_err().0, "Unknown option '-p'.");
        assert_eq!(parse(["-Dq"]).unwrap_err().0, "Unknown option '-q'.");
        assert!(parse(["-m", "lots"]).unwrap_err().0.contains("-m"));
        assert!(
            parse(["-f"])
                .unwrap_err()
                .0
                .contains("requires an argument")
        );
        assert!(parse(["-W", "kqueue"]).is_err());
        assert!(parse(["-n", "0"]).is_err());
        assert!(parse(["-i", "x"]).is_err());
    }

    #[test]
    fn version_and_help() {
        assert_eq!(parse(["-V"]).unwrap().action, Action::Version);
        assert_eq!(parse(["-h"]).unwrap().action, Action::Help);
        assert!(parse(["-cf", "a.cfg"]).unwrap().check_only);
        let c = parse(["-C"]).unwrap();
        assert!(c.check_only && c.check_routes);
    }
}

//! exec (OpenSER 1.2 `modules/exec`): run an external command from the script.
//!
//! Functions (REQUEST, FAILURE; the command may contain pseudo-variables; it runs
//! under `/bin/sh -c`):
//! * `exec_dset(command)`: runs `command '<current Request-URI>'`; each non-empty
//!   line of its output is a URI: the first replaces the Request-URI, the others are
//!   appended as branches. −1 when the command fails (exit status ≠ 0, killed) or
//!   prints no URI. 1.2 pasted the Request-URI unquoted into the shell line; it comes
//!   from the network and may hold `$(…)` and other shell syntax, so here it is one
//!   single-quoted argument (the command sees the same text).
//! * `exec_msg(command)`: runs `command` with the whole request on its standard
//!   input; its output is ignored. −1 when it fails.
//! * `exec_avp(command[, avplist])`: each non-empty output line goes to an AVP of the
//!   comma-separated list (`$avp(s:a),$avp(i:3)`), or to AVPs 1, 2, 3… without one.
//!
//! With `setvars` the command gets 1.2's environment about the request (`env.rs`).
//!
//! No command holds a worker for ever: it runs in a process group of its own, the
//! worker hands the socket to the other receivers (`turn::let_others_read`) and waits
//! at most `time_to_kill` seconds, then kills the whole group (SIGKILL) and reaps it —
//! no zombie is left. 1.2's `time_to_kill` 0 meant "never kill"; here 0 means the
//! default limit, `DEFAULT_LIMIT_S` seconds. Input and output go through unlinked
//! temporary files, so neither side can block on a full pipe; output beyond
//! `MAX_OUTPUT` bytes is ignored.
//!
//! Parameters (1.2 defaults): `setvars` 1, `time_to_kill` 0.

pub mod env;

use openser_core::cfg::ast::Arg;
use openser_core::module::{BoolParam, CmdExport, FixedArg, IntParam, ModuleExports, Param};
use openser_core::parser::Uri;
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::fixup::{default_fixup, string_arg};
use openser_core::script::{AvpId, Branch, Ctx, PvValue, Q_UNSPECIFIED};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUTES: u32 = REQUEST_ROUTE | FAILURE_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "exec",
    params: &[
        Param::bool("setvars", &P.setvars),
        Param::uint("time_to_kill", &P.time_to_kill),
    ],
    cmds: &[
        CmdExport::new("exec_dset", 1, 1, ROUTES, cmd_exec_dset),
        CmdExport::new("exec_msg", 1, 1, ROUTES, cmd_exec_msg),
        CmdExport::new("exec_avp", 1, 2, ROUTES, cmd_exec_avp).fixup(fixup_exec_avp),
    ],
    ..ModuleExports::EMPTY
};

pub struct Params {
    pub setvars: BoolParam,
    pub time_to_kill: IntParam,
}

pub static P: Params = Params {
    setvars: BoolParam::new(true),
    time_to_kill: IntParam::new(0),
};

/// The limit when `time_to_kill` is 0.
pub const DEFAULT_LIMIT_S: u64 = 30;
/// Output read from a command.
pub const MAX_OUTPUT: u64 = 64 * 1024;

/// How a command ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// exit status 0, with its output
    Ok(Vec<u8>),
    /// exit status ≠ 0 or a signal
    Failed(String),
    /// still running at the limit: killed
    TimedOut,
    /// could not be started
    NotStarted(String),
}

thread_local! {
    static SEQ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A private temporary file, already unlinked (a name that exists already, e.g. left
/// by an earlier process with the same pid, is skipped).
fn temp_file() -> std::io::Result<File> {
    let mut tries = 0;
    loop {
        let n = SEQ.with(|s| {
            s.set(s.get() + 1);
            s.get()
        });
        let p = std::env::temp_dir().join(format!("openser-exec-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&p);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 1000 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

fn limit() -> Duration {
    match P.time_to_kill.get() {
        0 => Duration::from_secs(DEFAULT_LIMIT_S),
        n => Duration::from_secs(n as u64),
    }
}

/// Run `line` under `/bin/sh -c` with `vars` in its environment and `input` on its
/// standard input, for at most `limit`.
pub fn run(
    line: &str,
    vars: &[(String, String)],
    input: Option<&[u8]>,
    limit: Duration,
) -> Outcome {
    let setup = || -> std::io::Result<(File, Stdio)> {
        let out = temp_file()?;
        let stdin = match input {
            Some(b) => {
                let mut f = temp_file()?;
                f.write_all(b)?;
                f.seek(SeekFrom::Start(0))?;
                Stdio::from(f)
            }
            None => Stdio::null(),
        };
        Ok((out, stdin))
    };
    let (mut out, stdin) = match setup() {
        Ok(x) => x,
        Err(e) => return Outcome::NotStarted(format!("temporary file: {e}")),
    };
    let stdout = match out.try_clone() {
        Ok(f) => Stdio::from(f),
        Err(e) => return Outcome::NotStarted(e.to_string()),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(line)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(stdin)
        .stdout(stdout)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::NotStarted(e.to_string()),
    };
    drop(cmd);
    // The command may take a while: the other receivers read meanwhile.
    openser_core::transport::turn::let_others_read();
    let end = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(e) => return Outcome::Failed(format!("wait: {e}")),
        }
        let now = Instant::now();
        if now >= end {
            break None;
        }
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let Some(status) = status else {
        // the whole group: the shell and whatever it started
        let _ = openser_core::sys::kill(-(child.id() as i32), libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        return Outcome::TimedOut;
    };
    if !status.success() {
        return Outcome::Failed(match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "failed".into(),
        });
    }
    let mut buf = Vec::new();
    if out.seek(SeekFrom::Start(0)).is_err() || out.take(MAX_OUTPUT).read_to_end(&mut buf).is_err()
    {
        return Outcome::Failed("cannot read the output".into());
    }
    Outcome::Ok(buf)
}

/// The non-empty output lines, right-trimmed as 1.2 does.
pub fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| l.trim_end_matches(['\r', '\n', '\t', ' ']).to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `s` as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn vars_of(ctx: &Ctx) -> Vec<(String, String)> {
    if P.setvars.get() {
        env::vars(&*ctx.msg, ctx.msg.ruri())
    } else {
        Vec::new()
    }
}

/// Run for a script function: log failures, give the output of a success.
fn run_logged(ctx: &Ctx, line: &str, input: Option<&[u8]>) -> Option<Vec<u8>> {
    let vars = vars_of(ctx);
    match run(line, &vars, input, limit()) {
        Outcome::Ok(out) => Some(out),
        Outcome::Failed(why) => {
            openser_core::log_err!("cmd {line} failed: {why}");
            None
        }
        Outcome::TimedOut => {
            openser_core::log_err!(
                "cmd {line} still running after {} s: killed",
                limit().as_secs()
            );
            None
        }
        Outcome::NotStarted(why) => {
            openser_core::log_err!("cannot run cmd {line}: {why}");
            None
        }
    }
}

fn cmd_exec_dset(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let cmd = ctx.arg_str(&args[0]);
    let line = format!("{cmd} {}", shell_quote(ctx.msg.ruri()));
    let Some(out) = run_logged(ctx, &line, None) else {
        return -1;
    };
    let uris = lines(&out);
    if uris.is_empty() {
        openser_core::log_err!("no uri from {line}");
        return -1;
    }
    for (i, u) in uris.into_iter().enumerate() {
        if i == 0 {
            if openser_core::script::actions::set_ruri(ctx, &u) < 0 {
                return -1;
            }
            continue;
        }
        if Uri::parse(&u).is_err() {
            openser_core::log_err!("append_branch failed: bad uri <{u}>");
            return -1;
        }
        ctx.branches.push(Branch {
            uri: u,
            dst_uri: None,
            path: None,
            q: Q_UNSPECIFIED,
            bflags: 0,
            force_send_sock: None,
        });
    }
    1
}

fn cmd_exec_msg(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let cmd = ctx.arg_str(&args[0]);
    let input = ctx.msg.buf().to_vec();
    match run_logged(ctx, &cmd, Some(&input)) {
        Some(_) => 1,
        None => -1,
    }
}

/// An AVP name of the list: `$avp(s:x)`, `$avp(i:3)`, or 1.2's bare `s:x`/`i:3`.
pub fn avp_name(s: &str) -> Result<AvpId, String> {
    AvpId::parse_param(s)
}

fn fixup_exec_avp(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = default_fixup(&args[..1])?;
    if let Some(a) = args.get(1) {
        let list = string_arg(a)?;
        let names = list
            .split(',')
            .map(avp_name)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(FixedArg::Any(Arc::new(names)));
    }
    Ok(out)
}

fn cmd_exec_avp(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let cmd = ctx.arg_str(&args[0]);
    let names: &[AvpId] = match args.get(1) {
        Some(FixedArg::Any(a)) => a
            .downcast_ref::<Vec<AvpId>>()
            .map(|v| v.as_slice())
            .unwrap_or(&[]),
        _ => &[],
    };
    let Some(out) = run_logged(ctx, &cmd, None) else {
        return -1;
    };
    for (i, l) in lines(&out).into_iter().enumerate() {
        let id = if names.is_empty() {
            AvpId::Int(i as i64 + 1)
        } else {
            match names.get(i) {
                Some(n) => n.clone(),
                None => break,
            }
        };
        ctx.avps.add(id, PvValue::Str(l));
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_status() {
        let v = vec![("SIP_X".to_string(), "y z".to_string())];
        let o = run(
            "printf 'a\\n\\n b \\r\\n'; echo \"$SIP_X\"",
            &v,
            None,
            Duration::from_secs(5),
        );
        let Outcome::Ok(out) = &o else {
            panic!("{o:?}")
        };
        assert_eq!(lines(out), vec!["a", " b", "y z"]);
        assert!(
            matches!(run("exit 3", &[], None, Duration::from_secs(5)), Outcome::Failed(w) if w.contains('3'))
        );
        let o = run("cat", &[], Some(b"INVITE x"), Duration::from_secs(5));
        assert_eq!(o, Outcome::Ok(b"INVITE x".to_vec()));
    }

    #[test]
    fn a_hanging_command_is_killed_with_its_children() {
        let dir = std::env::temp_dir().join(format!("exec-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let pidfile = dir.join("pid");
        let line = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let o = run(&line, &[], None, Duration::from_millis(300));
        assert_eq!(o, Outcome::TimedOut);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // the grandchild went with the group (it may linger an instant as init's zombie)
        let gone = (0..100).any(|_| {
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let dead = st.is_empty() || st.split_whitespace().nth(2) == Some("Z");
            if !dead {
                std::thread::sleep(Duration::from_millis(20));
            }
            dead
        });
        assert!(gone, "sleep {pid} still running");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("sip:$(id)@h"), "'sip:$(id)@h'");
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        let o = run(
            &format!("echo {}", shell_quote("x'$(echo no)'y")),
            &[],
            None,
            Duration::from_secs(5),
        );
        assert_eq!(o, Outcome::Ok(b"x'$(echo no)'y\n".to_vec()));
    }

    #[test]
    fn avp_names() {
        assert_eq!(avp_name("$avp(s:a)"), Ok(AvpId::Str("a".into())));
        assert_eq!(avp_name("i:3"), Ok(AvpId::Int(3)));
        assert!(avp_name("$ru").is_err());
    }
}

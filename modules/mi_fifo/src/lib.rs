//! Module `mi_fifo`: the MI server over a named pipe (reference §8.12, §9.1).
//!
//! `mod_init` (re)creates the FIFO; the module declares a process, `MI FIFO` in `ps`,
//! that the attendant forks and supervises like the others (Kamailio 1.4+'s arrangement; in 1.2
//! it was an invisible grandchild). The process reads requests
//! `:cmd:reply_fifo\n args... \n\n`, runs them and writes the reply into
//! `reply_dir/reply_fifo`.

use openser_core::mi;
use openser_core::module::{IntParam, ModParamValue, ModuleExports, Param, ProcExport, StrParam};
use openser_core::process::{pt, signals};
use openser_core::sys;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::time::Duration;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "mi_fifo",
    params: &[
        Param::str_with("fifo_name", &FIFO_NAME, not_empty),
        Param::func("fifo_mode", set_fifo_mode),
        Param::str("fifo_user", &FIFO_USER),
        Param::str("fifo_group", &FIFO_GROUP),
        Param::str("reply_dir", &REPLY_DIR),
        Param::str("reply_indent", &REPLY_INDENT),
    ],
    procs: &[ProcExport::new("MI FIFO", pt::PROC_FIFO, fifo_process)],
    mod_init: Some(mod_init),
    destroy: Some(destroy),
    ..ModuleExports::EMPTY
};

static FIFO_NAME: StrParam = StrParam::new("");
static FIFO_MODE: IntParam = IntParam::new(0o660);
static FIFO_USER: StrParam = StrParam::new("");
static FIFO_GROUP: StrParam = StrParam::new("");
static REPLY_DIR: StrParam = StrParam::new("/tmp/");
/// Indentation of reply children (an explicitly empty value means none).
static REPLY_INDENT: StrParam = StrParam::new("\t");

fn not_empty(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

/// An octal mode, as a number or a string ("0660"); 0 would make the FIFO unusable,
/// so OpenSER forces 0600.
fn set_fifo_mode(v: &ModParamValue) -> Result<(), String> {
    let m = match v {
        ModParamValue::Int(i) => *i,
        ModParamValue::Str(s) => i64::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| format!("bad fifo_mode '{s}'"))?,
    };
    FIFO_MODE.set(if m == 0 { 0o600 } else { m & 0o7777 });
    Ok(())
}

/// The parameters as the FIFO process uses them.
struct Params {
    fifo_name: &'static str,
    fifo_mode: u32,
    reply_dir: String,
    reply_indent: &'static str,
}

fn params() -> Params {
    let mut reply_dir = REPLY_DIR.get().to_string();
    if !reply_dir.ends_with('/') {
        reply_dir.push('/');
    }
    Params {
        fifo_name: FIFO_NAME.get(),
        // Never world-writable: anybody able to write the FIFO runs MI commands.
        fifo_mode: FIFO_MODE.get_u32() & !0o002,
        reply_dir,
        reply_indent: REPLY_INDENT.get(),
    }
}

fn opt(p: &StrParam) -> Option<&'static str> {
    Some(p.get()).filter(|s| !s.is_empty())
}

fn mod_init() -> Result<(), String> {
    let p = params();
    let name = p.fifo_name;
    if name.is_empty() {
        return Err("mi_fifo: no fifo configured (modparam \"fifo_name\" is mandatory)".into());
    }
    match std::fs::metadata(&p.reply_dir) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(format!(
                "mi_fifo: reply_dir {} is not a directory",
                p.reply_dir
            ));
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(name) {
        if m.file_type().is_dir() {
            return Err(format!("mi_fifo: {name} is a directory"));
        }
        std::fs::remove_file(name)
            .map_err(|e| format!("mi_fifo: cannot remove old {name}: {e}"))?;
    }
    let asked = FIFO_MODE.get_u32();
    if asked & 0o002 != 0 {
        openser_core::log_warn!(
            "fifo_mode {asked:04o} would let every local user run MI commands: creating \
             {name} with {:04o} (never world-writable)",
            p.fifo_mode
        );
    }
    sys::mkfifo(name, p.fifo_mode)
        .map_err(|e| format!("mi_fifo: cannot create fifo {name}: {e}"))?;
    std::fs::set_permissions(name, std::fs::Permissions::from_mode(p.fifo_mode))
        .map_err(|e| format!("mi_fifo: cannot chmod {name}: {e}"))?;
    // Without fifo_user/fifo_group the FIFO belongs to the server's `user`/`group`
    // (-u/-g): 1.2 created it in its process after dropping privileges; it is made
    // here, before, so the unprivileged MI process could not open it otherwise.
    let g = openser_core::globals::get();
    let fifo_user = opt(&FIFO_USER).or(g.user.as_deref());
    let fifo_group = opt(&FIFO_GROUP).or(g.group.as_deref());
    if fifo_user.is_some() || fifo_group.is_some() {
        let uid = match fifo_user {
            Some(u) => sys::lookup_user(u).map_err(|e| format!("mi_fifo: {e}"))?.0,
            None => u32::MAX,
        };
        let gid = match fifo_group {
            Some(g) => sys::lookup_group(g).map_err(|e| format!("mi_fifo: {e}"))?,
            None => u32::MAX,
        };
        sys::chown(name, uid, gid).map_err(|e| format!("mi_fifo: cannot chown {name}: {e}"))?;
    }
    Ok(())
}

fn destroy() {
    let name = FIFO_NAME.get();
    if !name.is_empty() {
        let _ = std::fs::remove_file(name);
    }
}

/// Split complete requests off the front of `pending`: each is its lines up to (not
/// including) the empty line that ends it.
fn take_requests(pending: &mut Vec<u8>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    loop {
        let text = String::from_utf8_lossy(pending).into_owned();
        let mut lines = Vec::new();
        let mut consumed = 0;
        let mut done = false;
        let mut in_quote = false;
        for piece in text.split_inclusive('\n') {
            if !piece.ends_with('\n') {
                break;
            }
            consumed += piece.len();
            let line = piece.trim_end_matches(['\n', '\r']).to_string();
            // An empty line ends the request unless it is inside a quoted value.
            if line.trim().is_empty() && !in_quote && !lines.is_empty() {
                done = true;
                break;
            }
            if line.trim().is_empty() && lines.is_empty() {
                continue;
            }
            let quotes = line.matches('"').count() - line.matches("\\\"").count();
            if quotes % 2 == 1 {
                in_quote = !in_quote;
            }
            lines.push(line);
        }
        if !done {
            return out;
        }
        pending.drain(..consumed);
        out.push(lines);
    }
}

/// Whether a reply FIFO name stays inside `reply_dir`: one path component, no `..`.
fn safe_reply_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn write_reply(dir: &str, name: &str, text: &str) {
    if !safe_reply_name(name) {
        openser_core::log_err!("reply fifo name {name:?} leaves reply_dir {dir}, reply dropped");
        return;
    }
    let path = format!("{dir}{name}");
    let mut file = None;
    for _ in 0..5 {
        // O_NOFOLLOW: a symlink planted in reply_dir is not followed (ELOOP).
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => {
                file = Some(f);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                std::thread::sleep(Duration::from_millis(80))
            }
            Err(e) => {
                openser_core::log_err!("cannot open reply fifo {path}: {e}");
                return;
            }
        }
    }
    let Some(mut f) = file else {
        openser_core::log_err!("no reader on reply fifo {path}");
        return;
    };
    // The opened file itself (not the path again): a FIFO, or nothing is written.
    match f.metadata() {
        Ok(m) if m.file_type().is_fifo() => {}
        _ => {
            openser_core::log_err!("{path} is not a FIFO, reply dropped");
            return;
        }
    }
    use std::os::fd::AsRawFd;
    let _ = sys::set_blocking(f.as_raw_fd());
    if let Err(e) = f.write_all(text.as_bytes()) {
        openser_core::log_err!("write to {path} failed: {e}");
    }
}

fn handle(lines: Vec<String>, p: &Params, indent: &str) {
    let Some(first) = lines.first() else { return };
    let (cmd, reply_to) = match mi::parse_first_line(first) {
        Ok(x) => x,
        Err(e) => {
            openser_core::log_err!("{e}");
            return;
        }
    };
    let reply = if !mi::exists(&cmd) {
        mi::MiReply::err(500, &format!("command '{cmd}' not available"))
    } else {
        match mi::parse_args(&lines[1..]) {
            Ok(args) => mi::run(&cmd, &args),
            Err(e) => {
                openser_core::log_err!("bad arguments for '{cmd}': {e}");
                mi::MiReply::err(400, &format!("parse error in command '{cmd}'"))
            }
        }
    };
    if !reply_to.is_empty() {
        write_reply(&p.reply_dir, &reply_to, &mi::render(&reply, indent));
    }
}

fn fifo_process() -> ! {
    let p = params();
    let indent = p.reply_indent;
    let name = p.fifo_name;
    // Opened read-write so that the FIFO never reports end-of-file between clients.
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name)
    {
        Ok(f) => f,
        Err(e) => {
            openser_core::log_crit!("cannot open {name}: {e}");
            std::process::exit(1);
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        signals::child_check();
        match f.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                if pending.len() > 1 << 20 {
                    openser_core::log_err!("request too large, discarded");
                    pending.clear();
                }
                for req in take_requests(&mut pending) {
                    handle(req, &p, indent);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                openser_core::log_err!("read failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_requests_at_empty_lines() {
        let mut p = b":ps:r1\n\n:get_statistics:r2\ncore:\n\"a\n\nb\"\n\n:partial:r3\nx\n".to_vec();
        let reqs = take_requests(&mut p);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0], vec![":ps:r1".to_string()]);
        assert_eq!(
            reqs[1],
            vec![":get_statistics:r2", "core:", "\"a", "", "b\""]
        );
        assert_eq!(p, b":partial:r3\nx\n".to_vec());
    }

    #[test]
    fn reply_names_stay_in_reply_dir() {
        for ok in ["r1", "mi_reply_12_3", "a.b"] {
            assert!(safe_reply_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "/tmp/x", "a\0b"] {
            assert!(!safe_reply_name(bad), "{bad:?}");
        }
    }
}

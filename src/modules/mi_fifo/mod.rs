//! Module `mi_fifo`: the MI server over a named pipe (reference §8.12, §9.1).
//!
//! `mod_init` (re)creates the FIFO and registers a process, `MI FIFO` in `ps`, that the
//! attendant forks and supervises like the others (Kamailio 1.4+'s arrangement; in 1.2
//! it was an invisible grandchild). The process reads requests
//! `:cmd:reply_fifo\n args... \n\n`, runs them and writes the reply into
//! `reply_dir/reply_fifo`.

use crate::core::mi;
use crate::core::module::{ModParamValue, ModuleExports, ParamExport};
use crate::core::process::{hooks, pt, signals};
use crate::core::sys;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone)]
struct Params {
    fifo_name: Option<String>,
    fifo_mode: u32,
    fifo_user: Option<String>,
    fifo_group: Option<String>,
    reply_dir: String,
    reply_indent: String,
}

static PARAMS: Mutex<Params> = Mutex::new(Params {
    fifo_name: None,
    fifo_mode: 0o660,
    fifo_user: None,
    fifo_group: None,
    reply_dir: String::new(),
    reply_indent: String::new(),
});

fn params() -> Params {
    let mut p = PARAMS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if p.reply_dir.is_empty() {
        p.reply_dir = "/tmp/".into();
    }
    p
}

fn with<F: FnOnce(&mut Params)>(f: F) -> Result<(), String> {
    f(&mut PARAMS.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(())
}

fn set_fifo_name(v: &ModParamValue) -> Result<(), String> {
    let s = v.text();
    if s.is_empty() {
        return Err("fifo_name must not be empty".into());
    }
    with(|p| p.fifo_name = Some(s))
}
fn set_fifo_mode(v: &ModParamValue) -> Result<(), String> {
    let m = match v {
        ModParamValue::Int(i) => *i,
        ModParamValue::Str(s) => i64::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| format!("bad fifo_mode '{s}'"))?,
    };
    // 0 would make the FIFO unusable: OpenSER forces 0600.
    with(|p| p.fifo_mode = if m == 0 { 0o600 } else { (m & 0o7777) as u32 })
}
fn set_fifo_user(v: &ModParamValue) -> Result<(), String> {
    let s = v.text();
    with(|p| p.fifo_user = Some(s))
}
fn set_fifo_group(v: &ModParamValue) -> Result<(), String> {
    let s = v.text();
    with(|p| p.fifo_group = Some(s))
}
fn set_reply_dir(v: &ModParamValue) -> Result<(), String> {
    let mut s = v.text();
    if !s.ends_with('/') {
        s.push('/');
    }
    with(|p| p.reply_dir = s)
}
fn set_reply_indent(v: &ModParamValue) -> Result<(), String> {
    let s = v.text();
    INDENT_SET.store(true, std::sync::atomic::Ordering::Relaxed);
    with(|p| p.reply_indent = s)
}

static PARAMS_EXPORTS: &[ParamExport] = &[
    ParamExport {
        name: "fifo_name",
        set: set_fifo_name,
    },
    ParamExport {
        name: "fifo_mode",
        set: set_fifo_mode,
    },
    ParamExport {
        name: "fifo_user",
        set: set_fifo_user,
    },
    ParamExport {
        name: "fifo_group",
        set: set_fifo_group,
    },
    ParamExport {
        name: "reply_dir",
        set: set_reply_dir,
    },
    ParamExport {
        name: "reply_indent",
        set: set_reply_indent,
    },
];

/// Indentation of reply children: "\t" unless set (an explicitly empty value means
/// no indentation, which the mutex default cannot tell apart, so it is tracked here).
static INDENT_SET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn indent(p: &Params) -> String {
    if p.reply_indent.is_empty() && !INDENT_SET.load(std::sync::atomic::Ordering::Relaxed) {
        "\t".into()
    } else {
        p.reply_indent.clone()
    }
}

fn mod_init() -> Result<(), String> {
    let p = params();
    let Some(name) = p.fifo_name.clone() else {
        return Err("mi_fifo: no fifo configured (modparam \"fifo_name\" is mandatory)".into());
    };
    match std::fs::metadata(&p.reply_dir) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(format!(
                "mi_fifo: reply_dir {} is not a directory",
                p.reply_dir
            ));
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(&name) {
        if m.file_type().is_dir() {
            return Err(format!("mi_fifo: {name} is a directory"));
        }
        std::fs::remove_file(&name)
            .map_err(|e| format!("mi_fifo: cannot remove old {name}: {e}"))?;
    }
    sys::mkfifo(&name, p.fifo_mode)
        .map_err(|e| format!("mi_fifo: cannot create fifo {name}: {e}"))?;
    std::fs::set_permissions(&name, std::fs::Permissions::from_mode(p.fifo_mode))
        .map_err(|e| format!("mi_fifo: cannot chmod {name}: {e}"))?;
    if p.fifo_user.is_some() || p.fifo_group.is_some() {
        let uid = match &p.fifo_user {
            Some(u) => sys::lookup_user(u).map_err(|e| format!("mi_fifo: {e}"))?.0,
            None => u32::MAX,
        };
        let gid = match &p.fifo_group {
            Some(g) => sys::lookup_group(g).map_err(|e| format!("mi_fifo: {e}"))?,
            None => u32::MAX,
        };
        sys::chown(&name, uid, gid).map_err(|e| format!("mi_fifo: cannot chown {name}: {e}"))?;
    }
    hooks::register_process("MI FIFO", pt::PROC_FIFO, fifo_process);
    Ok(())
}

fn destroy() {
    if let Some(name) = params().fifo_name {
        let _ = std::fs::remove_file(name);
    }
}

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "mi_fifo",
    params: PARAMS_EXPORTS,
    cmds: &[],
    pvs: &[],
    mod_init: Some(mod_init),
    child_init: None,
    destroy: Some(destroy),
    pre_script: None,
    reply_hook: None,
};

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

fn write_reply(dir: &str, name: &str, text: &str) {
    let path = format!("{dir}{name}");
    let mut file = None;
    for _ in 0..5 {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
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
                crate::log_err!("ERROR:mi_fifo:write_reply: cannot open reply fifo {path}: {e}");
                return;
            }
        }
    }
    let Some(mut f) = file else {
        crate::log_err!("ERROR:mi_fifo:write_reply: no reader on reply fifo {path}");
        return;
    };
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_fifo() => {}
        _ => {
            crate::log_err!("ERROR:mi_fifo:write_reply: {path} is not a FIFO, reply dropped");
            return;
        }
    }
    use std::os::fd::AsRawFd;
    let _ = sys::set_blocking(f.as_raw_fd());
    if let Err(e) = f.write_all(text.as_bytes()) {
        crate::log_err!("ERROR:mi_fifo:write_reply: write to {path} failed: {e}");
    }
}

fn handle(lines: Vec<String>, p: &Params, indent: &str) {
    let Some(first) = lines.first() else { return };
    let (cmd, reply_to) = match mi::parse_first_line(first) {
        Ok(x) => x,
        Err(e) => {
            crate::log_err!("ERROR:mi_fifo: {e}");
            return;
        }
    };
    let reply = if !mi::exists(&cmd) {
        mi::MiReply::err(500, &format!("command '{cmd}' not available"))
    } else {
        match mi::parse_args(&lines[1..]) {
            Ok(args) => mi::run(&cmd, &args),
            Err(e) => {
                crate::log_err!("ERROR:mi_fifo: bad arguments for '{cmd}': {e}");
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
    let indent = indent(&p);
    let name = p.fifo_name.clone().unwrap_or_default();
    // Opened read-write so that the FIFO never reports end-of-file between clients.
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&name)
    {
        Ok(f) => f,
        Err(e) => {
            crate::log_crit!("CRITICAL:mi_fifo: cannot open {name}: {e}");
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
                    crate::log_err!("ERROR:mi_fifo: request too large, discarded");
                    pending.clear();
                }
                for req in take_requests(&mut pending) {
                    handle(req, &p, &indent);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::log_err!("ERROR:mi_fifo: read failed: {e}");
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
}

//! The management interface (MI): commands returning a reply tree (the 1.2 core
//! commands here, the loaded modules' from their exports tables), and the FIFO wire format (reference §9). Transports (the
//! `mi_fifo` module) parse requests with [`parse_request`], call [`run`] and write
//! [`render`]'s text back.

use crate::module::MiExport;
use std::sync::atomic::{AtomicU64, Ordering};

/// One node of a reply: `name:: value attr=val ...` and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MiNode {
    pub name: String,
    pub value: String,
    pub attrs: Vec<(String, String)>,
    pub kids: Vec<MiNode>,
}

impl MiNode {
    pub fn new(name: &str, value: impl Into<String>) -> MiNode {
        MiNode {
            name: name.into(),
            value: value.into(),
            ..Default::default()
        }
    }
    pub fn value(value: impl Into<String>) -> MiNode {
        MiNode {
            value: value.into(),
            ..Default::default()
        }
    }
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> MiNode {
        self.attrs.push((name.into(), value.into()));
        self
    }
    pub fn kid(mut self, k: MiNode) -> MiNode {
        self.kids.push(k);
        self
    }
}

/// A command's reply: status line and tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiReply {
    pub code: u16,
    pub reason: String,
    pub nodes: Vec<MiNode>,
}

impl MiReply {
    pub fn ok(nodes: Vec<MiNode>) -> MiReply {
        MiReply {
            code: 200,
            reason: "OK".into(),
            nodes,
        }
    }
    pub fn err(code: u16, reason: &str) -> MiReply {
        MiReply {
            code,
            reason: reason.into(),
            nodes: Vec::new(),
        }
    }
}

/// One argument line of a request: `value` or `name::value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiArg {
    pub name: Option<String>,
    pub value: String,
}

pub type MiHandler = fn(args: &[MiArg]) -> MiReply;

static START_TIME: AtomicU64 = AtomicU64::new(0);

/// The core's own commands (reference §9).
static CORE_CMDS: &[MiExport] = &[
    MiExport::new("uptime", cmd_uptime).no_input(),
    MiExport::new("version", cmd_version).no_input(),
    MiExport::new("pwd", cmd_pwd).no_input(),
    MiExport::new("arg", cmd_arg).no_input(),
    MiExport::new("which", cmd_which).no_input(),
    MiExport::new("ps", cmd_ps).no_input(),
    MiExport::new("kill", cmd_kill).no_input(),
    MiExport::new("get_statistics", cmd_get_statistics),
    MiExport::new("reset_statistics", cmd_reset_statistics),
    MiExport::new("dns_cache_view", crate::dns::mi_cache_view).no_input(),
    MiExport::new("dns_cache_flush", crate::dns::mi_cache_flush).no_input(),
    MiExport::new("list_blacklists", crate::dns::blacklist::mi_list).no_input(),
];

/// A core command or one a loaded module declares.
fn find(name: &str) -> Option<&'static MiExport> {
    CORE_CMDS
        .iter()
        .find(|c| c.name == name)
        .or_else(|| crate::module::find_mi(name))
}

pub fn exists(name: &str) -> bool {
    find(name).is_some()
}

/// Whether the command ignores its argument lines.
pub fn no_input(name: &str) -> bool {
    find(name).is_some_and(|c| c.no_input)
}

/// Run a command.
pub fn run(name: &str, args: &[MiArg]) -> MiReply {
    match find(name) {
        Some(c) => {
            let args: &[MiArg] = if c.no_input { &[] } else { args };
            (c.handler)(args)
        }
        None => MiReply::err(500, &format!("command '{name}' not available")),
    }
}

/// The reply as the FIFO writes it: status line, one line per node (children
/// indented by `indent` per level), and an empty line.
pub fn render(r: &MiReply, indent: &str) -> String {
    fn node(out: &mut String, n: &MiNode, depth: usize, indent: &str) {
        for _ in 0..depth {
            out.push_str(indent);
        }
        if !n.name.is_empty() {
            out.push_str(&n.name);
            out.push_str(":: ");
        }
        out.push_str(&n.value);
        for (k, v) in &n.attrs {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out.push('\n');
        for k in &n.kids {
            node(out, k, depth + 1, indent);
        }
    }
    let mut out = format!("{} {}\n", r.code, r.reason);
    for n in &r.nodes {
        node(&mut out, n, 0, indent);
    }
    out.push('\n');
    out
}

/// A parsed FIFO request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiRequest {
    pub cmd: String,
    /// Bare reply FIFO file name (empty = no reply wanted).
    pub reply_to: String,
    pub args: Vec<MiArg>,
}

/// Parse the first line `:cmd:reply_fifo`.
pub fn parse_first_line(line: &str) -> Result<(String, String), String> {
    let l = line.trim_end_matches(['\r', '\n', ' ', '\t']);
    if l.len() < 3 || !l.starts_with(':') {
        return Err(format!(
            "bad first line '{l}': must be ':command:reply_fifo'"
        ));
    }
    let rest = &l[1..];
    let (cmd, reply) = rest
        .split_once(':')
        .ok_or_else(|| format!("bad first line '{l}': missing ':'"))?;
    if cmd.is_empty() {
        return Err("empty command name".into());
    }
    if reply.contains(['.', '/', '\\']) {
        return Err(format!("bad reply fifo name '{reply}'"));
    }
    if l.len() > 128 {
        return Err("first line too long".into());
    }
    Ok((cmd.to_string(), reply.to_string()))
}

/// Parse argument lines (everything after the first line, up to the empty line).
/// Quoted values may span lines and contain `\"`.
pub fn parse_args(lines: &[String]) -> Result<Vec<MiArg>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = &lines[i];
        i += 1;
        if raw.len() > 1024 {
            return Err("argument line too long".into());
        }
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        let (name, val) = match l.split_once("::") {
            Some((n, v)) if !n.contains('"') => (Some(n.trim().to_string()), v.trim().to_string()),
            _ => (None, l.to_string()),
        };
        if let Some(q) = val.strip_prefix('"') {
            // Collect until the closing unescaped quote, possibly over several lines.
            let mut acc = String::new();
            let mut cur = q.to_string();
            loop {
                let mut closed = None;
                let b = cur.as_bytes();
                let mut j = 0;
                while j < b.len() {
                    if b[j] == b'\\' && j + 1 < b.len() && b[j + 1] == b'"' {
                        acc.push('"');
                        j += 2;
                        continue;
                    }
                    if b[j] == b'"' {
                        closed = Some(j);
                        break;
                    }
                    let ch = cur[j..].chars().next().unwrap_or(' ');
                    acc.push(ch);
                    j += ch.len_utf8();
                }
                if let Some(j) = closed {
                    if !cur[j + 1..].trim().is_empty() {
                        return Err("garbage after closing quote".into());
                    }
                    break;
                }
                if i >= lines.len() {
                    return Err("unterminated quoted value".into());
                }
                acc.push('\n');
                cur = lines[i].clone();
                i += 1;
            }
            out.push(MiArg { name, value: acc });
        } else if val.contains('"') {
            return Err("unexpected quote".into());
        } else {
            out.push(MiArg { name, value: val });
        }
    }
    Ok(out)
}

fn ctime(secs: u64) -> String {
    crate::sys::ctime(secs)
}

fn cmd_uptime(_: &[MiArg]) -> MiReply {
    let now = crate::clock::now() as u64;
    let start = START_TIME.load(Ordering::Relaxed);
    MiReply::ok(vec![
        MiNode::new("Now", ctime(now)),
        MiNode::new("Up since", ctime(start)),
        MiNode::new("Up time", format!("{} [sec]", now.saturating_sub(start))),
    ])
}

fn cmd_version(_: &[MiArg]) -> MiReply {
    let h = crate::version::server_header();
    MiReply::ok(vec![MiNode::new(
        "Server",
        h.trim_start_matches("Server: ").to_string(),
    )])
}

fn cmd_pwd(_: &[MiArg]) -> MiReply {
    match std::env::current_dir() {
        Ok(d) => MiReply::ok(vec![MiNode::new("WD", d.display().to_string())]),
        Err(_) => MiReply::err(500, "Server Internal Error"),
    }
}

fn cmd_arg(_: &[MiArg]) -> MiReply {
    MiReply::ok(std::env::args().map(MiNode::value).collect())
}

fn cmd_which(_: &[MiArg]) -> MiReply {
    let modules = crate::module::loaded().iter().flat_map(|m| m.mi.iter());
    MiReply::ok(
        CORE_CMDS
            .iter()
            .chain(modules)
            .map(|c| MiNode::value(c.name))
            .collect(),
    )
}

fn cmd_ps(_: &[MiArg]) -> MiReply {
    use crate::process::pt;
    MiReply::ok(
        pt::list()
            .into_iter()
            .map(|(i, pid, desc)| {
                MiNode::new("Process", "")
                    .attr("ID", i.to_string())
                    .attr("PID", pid.to_string())
                    .attr("Type", desc)
            })
            .map(|mut n| {
                // 1.2 prints `Process::  ID=..` (empty value, then a space per attribute).
                n.value.clear();
                n
            })
            .collect(),
    )
}

fn cmd_kill(_: &[MiArg]) -> MiReply {
    let pid = crate::process::pt::pid(0);
    if pid > 0 {
        let _ = crate::sys::kill(pid, libc::SIGTERM);
    }
    MiReply::ok(Vec::new())
}

fn cmd_get_statistics(args: &[MiArg]) -> MiReply {
    if args.is_empty() {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let mut nodes = Vec::new();
    for a in args {
        for (name, v) in crate::stats::query(&a.value) {
            nodes.push(MiNode::value(format!("{name} = {v}")));
        }
    }
    if nodes.is_empty() {
        return MiReply::err(404, "Statistics Not Found");
    }
    MiReply::ok(nodes)
}

fn cmd_reset_statistics(args: &[MiArg]) -> MiReply {
    if args.is_empty() {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let mut found = false;
    for a in args {
        found |= crate::stats::reset(&a.value);
    }
    if found {
        MiReply::ok(Vec::new())
    } else {
        MiReply::err(404, "Statistics Not Found")
    }
}

/// Remember the start time for `uptime` (attendant, before fork).
pub fn init_core() {
    START_TIME.store(crate::clock::now() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line() {
        assert_eq!(
            parse_first_line(":ps:reply_1\n").unwrap(),
            ("ps".into(), "reply_1".into())
        );
        assert_eq!(parse_first_line(":ps:").unwrap(), ("ps".into(), "".into()));
        assert!(parse_first_line("ps:x").is_err());
        assert!(parse_first_line(":ps:../etc/x").is_err());
        assert!(parse_first_line("::x").is_err());
    }

    #[test]
    fn args_named_quoted_multiline() {
        let lines: Vec<String> = [
            "location",
            "  name::value  ",
            "",
            "\"a \\\"b\\\"",
            "c\"",
            "   ",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let a = parse_args(&lines).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(
            a[0],
            MiArg {
                name: None,
                value: "location".into()
            }
        );
        assert_eq!(
            a[1],
            MiArg {
                name: Some("name".into()),
                value: "value".into()
            }
        );
        assert_eq!(a[2].value, "a \"b\"\nc");
        assert!(parse_args(&["\"open".to_string()]).is_err());
        assert!(parse_args(&["a\"b".to_string()]).is_err());
    }

    #[test]
    fn render_tree() {
        let r = MiReply::ok(vec![
            MiNode::new("Process", "").attr("ID", "0").attr("PID", "1"),
            MiNode::new("Domain", "location").kid(MiNode::new("AOR", "alice")),
            MiNode::value("core:x = 1"),
        ]);
        assert_eq!(
            render(&r, "\t"),
            "200 OK\nProcess::  ID=0 PID=1\nDomain:: location\n\tAOR:: alice\ncore:x = 1\n\n"
        );
    }

    #[test]
    fn core_commands() {
        init_core();
        assert_eq!(run("nope", &[]).code, 500);
        let v = run("version", &[]);
        assert!(v.nodes[0].value.starts_with("OpenSER (1.2.0"));
        assert_eq!(run("get_statistics", &[]).code, 400);
        crate::stats::register("mitest", "n", 0).add(3);
        let g = run(
            "get_statistics",
            &[MiArg {
                name: None,
                value: "mitest:".into(),
            }],
        );
        assert_eq!(g.nodes[0].value, "mitest:n = 3");
        assert_eq!(
            run(
                "reset_statistics",
                &[MiArg {
                    name: None,
                    value: "mitest:n".into()
                }]
            )
            .code,
            200
        );
        assert_eq!(crate::stats::get("mitest:n"), Some(0));
        assert!(run("uptime", &[]).nodes[2].value.ends_with("[sec]"));
    }
}

//! Loading the configuration: parse, apply globals, load modules, fix up routes.

use crate::core::cfg::{self, ast};
use crate::core::globals::{GValue, Globals, HostPort, Proto};

/// What the attendant keeps of the loaded config.
pub struct Loaded {
    pub ast: ast::Config,
}

fn proto_of(p: Option<ast::Proto>) -> Proto {
    match p {
        Some(ast::Proto::Udp) => Proto::Udp,
        Some(ast::Proto::Tcp) => Proto::Tcp,
        Some(ast::Proto::Tls) => Proto::Tls,
        _ => Proto::Any,
    }
}

fn host_text(h: &ast::Host) -> String {
    match h {
        ast::Host::Ip(ip) => ip.to_string(),
        ast::Host::Name(n) => n.clone(),
    }
}

/// Apply one global assignment of the AST.
fn apply_global(g: &mut Globals, a: &ast::GlobalAssign) -> Result<(), String> {
    match &a.value {
        ast::GlobalValue::Sockets(list) => {
            let target = match a.name.as_str() {
                "listen" => &mut g.listen,
                "alias" => &mut g.alias,
                other => return Err(format!("'{other}' does not take a list of addresses")),
            };
            for s in list {
                target.push(HostPort {
                    proto: proto_of(s.proto),
                    host: host_text(&s.host),
                    port: s.port.unwrap_or(0),
                });
            }
            Ok(())
        }
        ast::GlobalValue::Blacklist(_) if a.name == "dst_blacklist" => {
            g.dst_blacklist.push(a.name.clone());
            Ok(())
        }
        ast::GlobalValue::Blacklist(_) => Err(format!("'{}' does not take a blacklist", a.name)),
        ast::GlobalValue::Int(i) => g.apply(&a.name, &GValue::Int(*i)),
        ast::GlobalValue::Bool(b) => g.apply(&a.name, &GValue::Int(*b as i64)),
        ast::GlobalValue::Str(s) => g.apply(&a.name, &GValue::Str(s.clone())),
        ast::GlobalValue::Ident(s) => g.apply(&a.name, &GValue::Ident(s.clone())),
        ast::GlobalValue::Ip(ip) => g.apply(&a.name, &GValue::Str(ip.to_string())),
    }
}

/// Parse `path` and apply its global assignments to `g`. Errors come back as the
/// text to print (`file:line:col: ...` with the line and a caret, and a summary).
pub fn load(path: &str, g: &mut Globals, _check_routes: bool) -> Result<Loaded, String> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(format!("ERROR: loading config file({path}): {e}\n"));
    }
    let ast = cfg::parse_file(std::path::Path::new(path))
        .map_err(|errs| format!("{errs}\nERROR: bad config file ({} errors)\n", errs.len()))?;
    let mut errors = Vec::new();
    for a in &ast.globals {
        if let Err(msg) = apply_global(g, a) {
            errors.push(cfg::error::render_in(&ast.sources, a.value_span, &msg));
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        return Err(format!(
            "{}ERROR: bad config file ({n} errors)\n",
            errors.concat()
        ));
    }
    Ok(Loaded { ast })
}

/// Module initialisation in the attendant, after shm exists and before forking.
pub fn init_modules(_l: &Loaded) -> Result<(), String> {
    Ok(())
}

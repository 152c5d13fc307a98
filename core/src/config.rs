//! Loading the configuration: parse, apply globals, load modules, fix up routes.

use crate::cfg::{self, ast};
use crate::globals::{GValue, Globals, HostPort, Proto};
use crate::log;
use crate::module::{self, ModuleExports};
use crate::script::{self, Script};

/// What the attendant keeps of the loaded config.
pub struct Loaded {
    pub ast: ast::Config,
    /// The fixed-up script (also installed as the global `script::fixup::SCRIPT`).
    pub script: &'static Script,
    /// The loaded modules, in load order (frozen).
    pub modules: &'static [&'static ModuleExports],
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

/// A `listen` line naming a transport this server does not serve: each entry's error
/// at the entry's own position (never a silent downgrade to UDP).
fn listen_errors(a: &ast::GlobalAssign) -> Vec<(cfg::error::Span, String)> {
    let ast::GlobalValue::Sockets(list) = &a.value else {
        return Vec::new();
    };
    if a.name != "listen" {
        return Vec::new();
    }
    list.iter()
        .filter_map(|s| {
            let r = match s.proto {
                Some(ast::Proto::Sctp) => Err(crate::transport::served::sctp_listen_error()),
                p => crate::transport::served::check_listen(proto_of(p)),
            };
            r.err().map(|m| (s.span, m))
        })
        .collect()
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
        ast::GlobalValue::Blacklist(b) if a.name == "dst_blacklist" => {
            if g.dst_blacklists.iter().any(|x| x.name == b.name) {
                return Err(format!("duplicate blacklist '{}'", b.name));
            }
            if g.dst_blacklists.len() >= 64 {
                return Err("too many blacklists (64 at most)".into());
            }
            g.dst_blacklist.push(b.name.clone());
            g.dst_blacklists.push(b.clone());
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

static CFG_FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The configuration file being (or last) loaded, as given on the command line
/// (1.2's `cfg_file`): modules resolve file names relative to its directory
/// (permissions' rule files) while their fixups run, before the globals are frozen.
pub fn cfg_file() -> Option<&'static str> {
    CFG_FILE.get().map(String::as_str)
}

/// Parse `path` and apply its global assignments to `g`. Errors come back as the
/// text to print (`file:line:col: ...` with the line and a caret, and a summary).
pub fn load(path: &str, g: &mut Globals, check_routes: bool) -> Result<Loaded, String> {
    let _ = CFG_FILE.set(path.to_string());
    if let Err(e) = std::fs::metadata(path) {
        return Err(format!(
            "{}\n",
            log::error_line(format_args!("loading config file({path}): {e}"))
        ));
    }
    let ast = cfg::parse_file(std::path::Path::new(path))
        .map_err(|errs| format!("{errs}\n{}\n", bad_config_line(errs.len())))?;
    let mut errors = Vec::new();
    for a in &ast.globals {
        let bad_listen = listen_errors(a);
        if !bad_listen.is_empty() {
            for (span, msg) in bad_listen {
                errors.push(cfg::error::render_in(&ast.sources, span, &msg));
            }
            continue;
        }
        if let Err(msg) = apply_global(g, a) {
            errors.push(cfg::error::render_in(&ast.sources, a.value_span, &msg));
        }
    }
    // Every error of the file is reported, stage by stage (globals, modules and their
    // parameters, the script), each at its file:line:col. The script is checked even
    // after a bad global or modparam; not when a module is missing (its functions
    // would only add consequential errors).
    // The fixups below check destinations against the transports served.
    crate::transport::served::set_from(g);
    // TLS contexts only from settings that were all taken (a refused tls_* global
    // would be reported twice, the second time against its default).
    if errors.is_empty()
        && crate::transport::served::served(Proto::Tls)
        && let Err(e) = crate::transport::tls::build(&g.tls, path)
    {
        // at the last assignment of the setting to blame, else at the TLS listen line
        let at = ast
            .globals
            .iter()
            .rev()
            .find(|a| a.name == e.param)
            .map(|a| a.value_span)
            .or_else(|| {
                ast.globals.iter().find_map(|a| match &a.value {
                    ast::GlobalValue::Sockets(v) if a.name == "listen" => v
                        .iter()
                        .find(|s| s.proto == Some(ast::Proto::Tls))
                        .map(|s| s.span),
                    _ => None,
                })
            });
        let msg = match at {
            Some(sp) => cfg::error::render_in(&ast.sources, sp, &e.msg),
            None => log::error_line(&e.msg).to_string(),
        };
        errors.push(msg);
    }
    let mods = load_modules(&ast, &mut errors);
    let missing = ast
        .loadmodules
        .iter()
        .any(|lm| module::find_builtin(module_name_of(&lm.path)).is_none());
    let binds_before = errors.len();
    check_binds(&ast, &mods, &mut errors);
    let unbound = errors.len() > binds_before;
    if missing || unbound {
        return Err(bad_config(&errors));
    }
    check_cfgengine(&ast, g, &mods, &mut errors);
    let script = match script::fixup::fixup_with(&ast, &mods, &g.avp_aliases, check_routes) {
        Ok(s) if errors.is_empty() => s,
        Ok(_) => return Err(bad_config(&errors)),
        Err(errs) => {
            errors.extend(errs);
            return Err(bad_config(&errors));
        }
    };
    let modules = module::freeze(mods);
    let script = if script::fixup::SCRIPT.get().is_none() {
        script::fixup::install(script)
    } else {
        Box::leak(Box::new(script))
    };
    Ok(Loaded {
        ast,
        script,
        modules,
    })
}

/// `cfgengine`: the engine named must be declared by a loaded module, whose engine is
/// installed for `script::run_route` (see `script::engine`); `native` keeps the route
/// blocks.
fn check_cfgengine(
    ast: &ast::Config,
    g: &Globals,
    mods: &[&'static ModuleExports],
    errors: &mut Vec<String>,
) {
    let name = g.cfgengine.as_str();
    if name == "native" {
        return;
    }
    match mods
        .iter()
        .filter_map(|m| m.engine)
        .find(|e| e.name == name)
    {
        Some(e) => script::engine::install(e),
        None => {
            let by = module::builtin()
                .iter()
                .find(|m| m.engine.is_some_and(|e| e.name == name))
                .map(|m| m.name);
            let msg = match by {
                Some(m) => format!("cfgengine \"{name}\" needs module {m}: loadmodule \"{m}.so\""),
                None => format!("unknown cfgengine \"{name}\" (native, lua)"),
            };
            match ast.globals.iter().rev().find(|a| a.name == "cfgengine") {
                Some(a) => errors.push(cfg::error::render_in(&ast.sources, a.value_span, &msg)),
                None => errors.push(log::error_line(msg)),
            }
        }
    }
}

/// 1.2's summary line of a rejected configuration.
fn bad_config_line(n: usize) -> String {
    log::error_line(format_args!("bad config file ({n} errors)"))
}

fn bad_config(errors: &[String]) -> String {
    let n = errors.len();
    let mut out = String::new();
    for e in errors {
        out.push_str(e);
        if !e.ends_with('\n') {
            out.push('\n');
        }
    }
    format!("{out}{}\n", bad_config_line(n))
}

/// The module name selected by a `loadmodule` path: file name without directory and
/// `.so` suffix.
pub fn module_name_of(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".so").unwrap_or(base)
}

/// Process `loadmodule` and `modparam` in source order. Returns the modules to load.
fn load_modules(ast: &ast::Config, errors: &mut Vec<String>) -> Vec<&'static ModuleExports> {
    let mut mods: Vec<&'static ModuleExports> = Vec::new();
    for item in &ast.order {
        match *item {
            ast::ItemRef::LoadModule(i) => {
                let Some(lm) = ast.loadmodules.get(i) else {
                    continue;
                };
                let name = module_name_of(&lm.path);
                match module::find_builtin(name) {
                    Some(m) => {
                        if !mods.iter().any(|x| x.name == m.name) {
                            mods.push(m);
                        }
                    }
                    None => errors.push(ast.render(
                        lm.span,
                        &format!(
                            "module '{name}' not found (built-in modules: {})",
                            module::builtin_names()
                        ),
                    )),
                }
            }
            ast::ItemRef::ModParam(i) => {
                let Some(mp) = ast.modparams.get(i) else {
                    continue;
                };
                if let Err((sp, msg)) = apply_modparam(mp, &mods) {
                    errors.push(ast.render(sp, &msg));
                }
            }
            _ => {}
        }
    }
    mods
}

fn apply_modparam(
    mp: &ast::ModParam,
    mods: &[&'static ModuleExports],
) -> Result<(), (ast::Span, String)> {
    let re = crate::re::Regex::new(&mp.module, false, false)
        .map_err(|e| (mp.span, format!("modparam: {e}")))?;
    let mut matched = false;
    for m in mods {
        if !re.matches_whole(m.name) {
            continue;
        }
        matched = true;
        let Some(p) = m.param(&mp.param) else {
            return Err((
                mp.span,
                format!("module '{}' has no parameter '{}'", m.name, mp.param),
            ));
        };
        p.set(m.name, &mp.value).map_err(|e| {
            (
                mp.value_span,
                format!("bad value for modparam {}:{}: {e}", m.name, mp.param),
            )
        })?;
    }
    if !matched {
        return Err((
            mp.span,
            format!(
                "modparam: no loaded module matches '{}' (parameter '{}')",
                mp.module, mp.param
            ),
        ));
    }
    Ok(())
}

/// Each loaded module's `binds` (the modules whose API it uses) must be loaded too;
/// the error points at the `loadmodule` line of the module that needs them.
fn check_binds(ast: &ast::Config, mods: &[&'static ModuleExports], errors: &mut Vec<String>) {
    for m in mods {
        for need in m.binds {
            if mods.iter().any(|x| x.name == *need) {
                continue;
            }
            let span = ast
                .loadmodules
                .iter()
                .find(|lm| module_name_of(&lm.path) == m.name)
                .map(|lm| lm.span);
            let msg = format!(
                "module '{}' needs module '{need}', which is not loaded",
                m.name
            );
            match span {
                Some(sp) => errors.push(ast.render(sp, &msg)),
                None => errors.push(msg),
            }
        }
    }
}

/// Module initialisation in the attendant, after shm exists and before forking: each
/// module's declared statistics, then its mod_init, in load order; then the
/// startup_route.
pub fn init_modules(l: &Loaded) -> Result<(), String> {
    for m in l.modules {
        module::register_stats(m);
        if let Some(f) = m.mod_init {
            f().map_err(|e| format!("init_mod: failed to initialize module {}: {e}", m.name))?;
        }
    }
    script::run_startup_route();
    Ok(())
}

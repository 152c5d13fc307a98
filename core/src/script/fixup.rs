//! Fixup: resolve calls (core actions and functions of loaded modules), compile
//! constant regexes and formats, resolve AVP aliases, check PV names and route
//! targets; build the executable tree the interpreter runs.

use super::PvValue;
use super::interp::{CExpr, CallOp, Code, Lhs, Op};
use crate::cfg::ast::{
    self, Arg, ArgValue, AvpName, CmpOp, Expr, PvIndex, PvParam, RouteKind, RouteName, Span, Stmt,
    TrParam,
};
use crate::cfg::pv::{FmtPart, PvSpec};
use crate::module::{CmdExport, FixedArg, ModuleExports};
use crate::re::Regex;
use crate::route;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The script run by the receivers (set in the attendant before forking).
pub static SCRIPT: OnceLock<Script> = OnceLock::new();

/// Per route kind: which indexes are defined, and the named-route indexes.
type Layout = Vec<(Vec<bool>, HashMap<String, usize>)>;

thread_local! {
    /// The route layout of the configuration being fixed up (defined blocks per kind
    /// and the named-route indexes), for `route_index` calls from module fixups.
    static LAYOUT: std::cell::RefCell<Option<Layout>> =
        const { std::cell::RefCell::new(None) };
}

/// During fixup: Some(result) from the layout of the configuration being fixed up.
pub(crate) fn fixup_route_index(kind: RouteKind, name: &str) -> Option<Option<usize>> {
    LAYOUT.with(|l| {
        let l = l.borrow();
        let (defined, names) = l.as_ref()?.get(kind_slot(kind))?;
        let idx = match name.trim().parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => names.get(name.trim()).copied(),
        };
        Some(idx.filter(|i| defined.get(*i).copied().unwrap_or(false)))
    })
}

/// Install the fixed-up script globally (first call wins).
pub fn install(s: Script) -> &'static Script {
    SCRIPT.get_or_init(|| s)
}

/// Route blocks of one kind, indexed by number (named routes after the numbered ones).
#[derive(Default)]
pub struct RouteTable {
    pub blocks: Vec<Option<Code>>,
    pub names: HashMap<String, usize>,
}

/// The fixed-up script.
#[derive(Default)]
pub struct Script {
    pub(crate) tables: [RouteTable; 9],
    /// `timer_route[name, secs]`: name, interval, table index
    pub timers: Vec<(String, u32, usize)>,
    /// the modules the script was fixed up against (module PVs are looked up here)
    pub(crate) mods: Vec<&'static ModuleExports>,
}

pub(crate) fn kind_slot(k: RouteKind) -> usize {
    match k {
        RouteKind::Request => 0,
        RouteKind::OnReply => 1,
        RouteKind::Failure => 2,
        RouteKind::Branch => 3,
        RouteKind::Error => 4,
        RouteKind::Startup => 5,
        RouteKind::Timer => 6,
        RouteKind::Event => 7,
        RouteKind::Local => 8,
    }
}

impl Script {
    pub fn table(&self, k: RouteKind) -> &RouteTable {
        &self.tables[kind_slot(k)]
    }

    /// Whether block `idx` of `kind` exists.
    pub fn has(&self, k: RouteKind, idx: usize) -> bool {
        matches!(self.table(k).blocks.get(idx), Some(Some(_)))
    }

    /// Table index of a route: "N" or a named route.
    pub fn route_index(&self, kind: RouteKind, name: &str) -> Option<usize> {
        let t = self.table(kind);
        let idx = match name.trim().parse::<usize>() {
            Ok(n) => n,
            Err(_) => *t.names.get(name.trim())?,
        };
        if self.has(kind, idx) { Some(idx) } else { None }
    }
}

/// Known OpenSER 1.2 module functions of modules that are not built in (yet), for the
/// "exported by module X, which is not loaded" message.
const KNOWN_FUNCS: &[(&str, &str)] = &[
    ("sl_send_reply", "sl"),
    ("sl_reply_error", "sl"),
    ("t_relay", "tm"),
    ("t_newtran", "tm"),
    ("t_reply", "tm"),
    ("t_on_failure", "tm"),
    ("t_on_reply", "tm"),
    ("t_on_branch", "tm"),
    ("t_check_trans", "tm"),
    ("t_was_cancelled", "tm"),
    ("record_route", "rr"),
    ("loose_route", "rr"),
    ("mf_process_maxfwd_header", "maxfwd"),
    ("append_hf", "textops"),
    ("search", "textops"),
    ("search_append", "textops"),
    ("replace", "textops"),
    ("subst", "textops"),
    ("is_present_hf", "textops"),
    ("remove_hf", "textops"),
    ("xlog", "xlog"),
    ("xdbg", "xlog"),
    ("lookup", "registrar"),
    ("save", "registrar"),
    ("save_noreply", "registrar"),
    ("registered", "registrar"),
    ("www_authorize", "auth_db"),
    ("proxy_authorize", "auth_db"),
    ("is_user_in", "group"),
    ("www_challenge", "auth"),
    ("proxy_challenge", "auth"),
    ("consume_credentials", "auth"),
    ("check_to", "uri_db"),
    ("check_from", "uri_db"),
    ("does_uri_exist", "uri_db"),
    ("avp_db_load", "avpops"),
    ("avp_write", "avpops"),
    ("acc_log_request", "acc"),
    ("acc_db_request", "acc"),
    ("fix_nated_contact", "nathelper"),
    ("ds_select_dst", "dispatcher"),
    ("sip_trace", "siptrace"),
    ("pike_check_req", "pike"),
];

struct Fixer<'a> {
    cfg: &'a ast::Config,
    mods: &'a [&'static ModuleExports],
    aliases: HashMap<String, AvpName>,
    errors: Vec<(Span, String)>,
    check_routes: bool,
    /// route type bits each block may run in (for -C)
    cur_types: u32,
    /// a loaded module's `action_trace` hook: trace points go before every action
    trace: Option<super::interp::ActionTraceFn>,
    /// the configuration's file names (for trace points)
    files: Vec<Arc<str>>,
}

/// Parse `avp_aliases` values ("a=i:1;b=s:x").
fn parse_aliases(list: &[String]) -> Result<HashMap<String, AvpName>, String> {
    let mut m = HashMap::new();
    for s in list {
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((a, v)) = part.split_once('=') else {
                return Err(format!("bad avp alias '{part}'"));
            };
            let v = v.trim();
            let name = if let Some(n) = v.strip_prefix("i:") {
                AvpName::Int(
                    n.trim()
                        .parse()
                        .map_err(|_| format!("bad avp alias '{part}'"))?,
                )
            } else if let Some(n) = v.strip_prefix("s:") {
                AvpName::Str(n.to_string())
            } else {
                AvpName::Str(v.to_string())
            };
            m.insert(a.trim().to_string(), name);
        }
    }
    Ok(m)
}

thread_local! {
    /// The `avp_aliases` of the configuration being fixed up, for [`avp_alias`].
    static ALIASES: std::cell::RefCell<Option<HashMap<String, AvpName>>> =
        const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// The file names of the configuration being fixed up, for [`source_name`].
    static SOURCES: std::cell::RefCell<Vec<Arc<str>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// During fixup: the name of configuration file `file` (a `Span::file`), for module
/// fixups that keep where they were called from (`xlogl`). None outside fixup.
pub fn source_name(file: u16) -> Option<Arc<str>> {
    SOURCES.with(|s| s.borrow().get(file as usize).cloned())
}

/// During fixup: the AVP an alias declared with the global `avp_aliases` stands for
/// (for module fixups that parse AVP names of their own, as avpops does). None for an
/// unknown alias and outside fixup.
pub fn avp_alias(name: &str) -> Option<AvpName> {
    ALIASES.with(|a| a.borrow().as_ref()?.get(name).cloned())
}

/// Fix up the routes of `cfg` against the loaded modules (`module::loaded()`) and the
/// global avp aliases. `check_routes` = `-C`. Errors are rendered.
pub fn fixup(cfg: &ast::Config, check_routes: bool) -> Result<Script, Vec<String>> {
    fixup_with(
        cfg,
        crate::module::loaded(),
        &crate::globals::get().avp_aliases,
        check_routes,
    )
}

/// Fix up against an explicit module list and alias list.
pub fn fixup_with(
    cfg: &ast::Config,
    mods: &[&'static ModuleExports],
    avp_aliases: &[String],
    check_routes: bool,
) -> Result<Script, Vec<String>> {
    let aliases = match parse_aliases(avp_aliases) {
        Ok(a) => a,
        Err(e) => return Err(vec![crate::log::error_line(e)]),
    };
    let mut f = Fixer {
        cfg,
        mods,
        aliases,
        errors: Vec::new(),
        check_routes,
        cur_types: 0,
        trace: mods.iter().find_map(|m| m.action_trace),
        files: cfg
            .sources
            .iter()
            .map(|s| Arc::from(s.name.as_str()))
            .collect(),
    };
    let mut script = Script {
        mods: mods.to_vec(),
        ..Script::default()
    };
    // 1. table layout: numeric indexes first, then names
    for r in &cfg.routes {
        let t = &mut script.tables[kind_slot(r.kind)];
        if let RouteName::Num(n) = r.name {
            let n = n as usize;
            if t.blocks.len() <= n {
                t.blocks.resize_with(n + 1, || None);
            }
        }
    }
    for r in &cfg.routes {
        let t = &mut script.tables[kind_slot(r.kind)];
        if let RouteName::Named(name) = &r.name
            && !t.names.contains_key(name)
        {
            let idx = t.blocks.len();
            t.blocks.push(None);
            t.names.insert(name.clone(), idx);
        }
    }
    let mut layout: Layout = script
        .tables
        .iter()
        .map(|t| (vec![false; t.blocks.len()], t.names.clone()))
        .collect();
    for r in &cfg.routes {
        let slot = kind_slot(r.kind);
        let idx = match &r.name {
            RouteName::Num(n) => *n as usize,
            RouteName::Named(n) => script.tables[slot].names[n],
        };
        if let Some(d) = layout[slot].0.get_mut(idx) {
            *d = true;
        }
    }
    LAYOUT.with(|l| *l.borrow_mut() = Some(layout));
    ALIASES.with(|a| *a.borrow_mut() = Some(f.aliases.clone()));
    SOURCES.with(|a| *a.borrow_mut() = f.files.clone());
    let types = if check_routes {
        reach_types(cfg)
    } else {
        HashMap::new()
    };
    // 2. compile each block
    let mut compiled: Vec<(usize, usize, Code)> = Vec::new();
    for r in &cfg.routes {
        let slot = kind_slot(r.kind);
        let idx = match &r.name {
            RouteName::Num(n) => *n as usize,
            RouteName::Named(n) => script.tables[slot].names[n],
        };
        f.cur_types = if r.kind == RouteKind::Request {
            types.get(&idx).copied().unwrap_or(route::REQUEST_ROUTE)
        } else {
            route::kind_bit(r.kind)
        };
        let code = f.block(&r.body, &script);
        if r.kind == RouteKind::Timer {
            script.timers.push((
                match &r.name {
                    RouteName::Named(n) => n.clone(),
                    RouteName::Num(n) => n.to_string(),
                },
                r.interval.unwrap_or(1),
                idx,
            ));
        }
        compiled.push((slot, idx, code));
    }
    LAYOUT.with(|l| *l.borrow_mut() = None);
    ALIASES.with(|a| *a.borrow_mut() = None);
    SOURCES.with(|a| a.borrow_mut().clear());
    for (slot, idx, code) in compiled {
        if let Some(b) = script.tables[slot].blocks.get_mut(idx) {
            *b = Some(code);
        }
    }
    if f.errors.is_empty() {
        Ok(script)
    } else {
        f.errors.sort_by_key(|e| e.0);
        Err(f.errors.iter().map(|(sp, m)| cfg.render(*sp, m)).collect())
    }
}

/// For -C: the route types from which each request route (by number/name index) is
/// reachable through route(N).
fn reach_types(cfg: &ast::Config) -> HashMap<usize, u32> {
    // map names to the same index scheme as the table
    let mut named: HashMap<String, usize> = HashMap::new();
    let max_num = cfg
        .routes
        .iter()
        .filter(|r| r.kind == RouteKind::Request)
        .filter_map(|r| match r.name {
            RouteName::Num(n) => Some(n as usize + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    for r in cfg.routes.iter().filter(|r| r.kind == RouteKind::Request) {
        if let RouteName::Named(n) = &r.name
            && !named.contains_key(n)
        {
            let i = max_num + named.len();
            named.insert(n.clone(), i);
        }
    }
    let idx_of = |n: &RouteName| match n {
        RouteName::Num(n) => Some(*n as usize),
        RouteName::Named(s) => named.get(s).copied(),
    };
    // edges: (from block, its fixed type or None for request routes) -> targets
    let mut types: HashMap<usize, u32> = HashMap::new();
    types.insert(0, route::REQUEST_ROUTE);
    let mut edges: Vec<(Option<usize>, u32, Vec<usize>)> = Vec::new();
    for r in &cfg.routes {
        let mut targets = Vec::new();
        collect_targets(&r.body, &mut |n| {
            if let Some(i) = idx_of(n) {
                targets.push(i)
            }
        });
        if r.kind == RouteKind::Request {
            edges.push((idx_of(&r.name), 0, targets));
        } else {
            edges.push((None, route::kind_bit(r.kind), targets));
        }
    }
    loop {
        let mut changed = false;
        for (from, bit, targets) in &edges {
            let t = match from {
                Some(i) => types.get(i).copied().unwrap_or(0),
                None => *bit,
            };
            if t == 0 {
                continue;
            }
            for to in targets {
                let e = types.entry(*to).or_insert(0);
                if *e | t != *e {
                    *e |= t;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    types
}

/// route(N) used inside an expression.
fn expr_targets(e: &Expr, f: &mut dyn FnMut(&RouteName)) {
    match e {
        Expr::Call(c) if c.name == "route" && c.args.len() == 1 => {
            let t = match &c.args[0].value {
                ArgValue::Int(n) if *n >= 0 && *n <= u32::MAX as i64 => RouteName::Num(*n as u32),
                ArgValue::Str(s) | ArgValue::Ident(s) => match s.parse::<u32>() {
                    Ok(n) => RouteName::Num(n),
                    Err(_) => RouteName::Named(s.clone()),
                },
                _ => return,
            };
            f(&t);
        }
        Expr::Not(x) | Expr::Neg(x) | Expr::BitNot(x) => expr_targets(x, f),
        Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Cmp {
            left: a, right: b, ..
        }
        | Expr::Arith {
            left: a, right: b, ..
        } => {
            expr_targets(a, f);
            expr_targets(b, f);
        }
        _ => {}
    }
}

fn collect_targets(b: &[Stmt], f: &mut dyn FnMut(&RouteName)) {
    for s in b {
        match s {
            Stmt::Route { target, .. } => f(target),
            Stmt::Assign(a) => expr_targets(&a.rhs, f),
            Stmt::While { cond, body, .. } => {
                expr_targets(cond, f);
                collect_targets(body, f);
            }
            Stmt::If {
                cond, then, els, ..
            } => {
                expr_targets(cond, f);
                collect_targets(then, f);
                if let Some(e) = els {
                    collect_targets(e, f);
                }
            }
            Stmt::Switch { arms, .. } => {
                for a in arms {
                    collect_targets(&a.body, f);
                }
            }
            Stmt::Block(body) => collect_targets(body, f),
            _ => {}
        }
    }
}

/// The default argument fixup: Str/Ident -> Str (or Fmt if it contains '$'),
/// Int -> Int, PV -> Pv, addresses -> their text.
pub fn default_fixup(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.iter().map(|a| default_arg(&a.value)).collect()
}

fn sock_text(s: &ast::SockSpec) -> String {
    let mut t = String::new();
    if let Some(p) = s.proto {
        t.push_str(match p {
            ast::Proto::Udp => "udp:",
            ast::Proto::Tcp => "tcp:",
            ast::Proto::Tls => "tls:",
            ast::Proto::Sctp => "sctp:",
            ast::Proto::Any => "",
        });
    }
    match &s.host {
        ast::Host::Ip(std::net::IpAddr::V6(ip)) => t.push_str(&format!("[{ip}]")),
        ast::Host::Ip(ip) => t.push_str(&ip.to_string()),
        ast::Host::Name(n) => t.push_str(n),
    }
    if let Some(p) = s.port {
        t.push_str(&format!(":{p}"));
    }
    t
}

/// An argument as plain text (for core actions that want a constant).
/// A string-typed argument as written (string, bare word, number, or PV text); other
/// literal kinds are an error. For module fixups of string parameters.
pub fn string_arg(a: &crate::cfg::ast::Arg) -> Result<String, String> {
    match &a.value {
        ArgValue::Str(s) | ArgValue::Ident(s) => Ok(s.clone()),
        ArgValue::Int(i) => Ok(i.to_string()),
        ArgValue::Pv(p) => Ok(p.text.clone()),
        _ => Err("string argument expected".into()),
    }
}

/// A constant integer argument, written as a number or a quoted string of digits
/// (`"1"` and `1` are the same in 1.2's scripts); `what` names it in the error.
pub fn int_arg(a: &crate::cfg::ast::Arg, what: &str) -> Result<i64, String> {
    let s = match &a.value {
        ArgValue::Int(i) => return Ok(*i),
        _ => string_arg(a)?,
    };
    s.trim()
        .parse()
        .map_err(|_| format!("{what} '{s}' is not a number"))
}

pub fn arg_text(v: &ArgValue) -> String {
    match v {
        ArgValue::Str(s) | ArgValue::Ident(s) => s.clone(),
        ArgValue::Int(i) => i.to_string(),
        ArgValue::Pv(p) => p.text.clone(),
        ArgValue::Ip(ip) => ip.to_string(),
        ArgValue::Net(n) => format!("{}/{}", n.addr, n.mask),
        ArgValue::Sock(s) => sock_text(s),
    }
}

fn default_arg(v: &ArgValue) -> Result<FixedArg, String> {
    Ok(match v {
        ArgValue::Str(s) | ArgValue::Ident(s) => {
            if s.contains('$') {
                FixedArg::Fmt(crate::cfg::pv::parse_format(s)?)
            } else {
                FixedArg::Str(s.clone())
            }
        }
        ArgValue::Int(i) => FixedArg::Int(*i),
        ArgValue::Pv(p) => FixedArg::Pv(p.clone()),
        other => FixedArg::Str(arg_text(other)),
    })
}

/// The position and name of a statement for its trace point (a bare `{ }` block has
/// none: its statements have their own).
fn trace_site(s: &Stmt, op: &Op) -> Option<(Span, &'static str)> {
    Some(match s {
        Stmt::Call(c) => (
            c.span,
            match op {
                Op::Call(c) => c.name,
                _ => "call",
            },
        ),
        Stmt::Assign(a) => (a.span, "assign"),
        Stmt::If { span, .. } => (*span, "if"),
        Stmt::Switch { span, .. } => (*span, "switch"),
        Stmt::While { span, .. } => (*span, "while"),
        Stmt::Block(_) => return None,
        Stmt::Exit(sp) => (*sp, "exit"),
        Stmt::Drop(sp) => (*sp, "drop"),
        Stmt::Return { span, .. } => (*span, "return"),
        Stmt::Route { span, .. } => (*span, "route"),
        Stmt::Break(sp) => (*sp, "break"),
    })
}

impl Fixer<'_> {
    fn err(&mut self, sp: Span, m: impl Into<String>) {
        self.errors.push((sp, m.into()));
    }

    fn block(&mut self, b: &[Stmt], script: &Script) -> Code {
        let Some(hook) = self.trace else {
            return b.iter().filter_map(|s| self.stmt(s, script)).collect();
        };
        let mut code = Vec::with_capacity(b.len() * 2);
        for s in b {
            let Some(op) = self.stmt(s, script) else {
                continue;
            };
            if let Some((sp, action)) = trace_site(s, &op) {
                code.push(Op::Trace(Box::new(super::interp::TracePoint {
                    file: self
                        .files
                        .get(sp.file as usize)
                        .cloned()
                        .unwrap_or_else(|| Arc::from("?")),
                    line: sp.line,
                    col: sp.col,
                    action,
                    hook,
                })));
            }
            code.push(op);
        }
        code
    }

    fn route_target(&mut self, t: &RouteName, sp: Span, script: &Script) -> Option<usize> {
        let tab = script.table(RouteKind::Request);
        let (idx, defined) = match t {
            RouteName::Num(n) => (*n as usize, self.cfg.route(RouteKind::Request, t).is_some()),
            RouteName::Named(n) => match tab.names.get(n) {
                Some(i) => (*i, true),
                None => (0, false),
            },
        };
        if !defined {
            let name = match t {
                RouteName::Num(n) => n.to_string(),
                RouteName::Named(n) => n.clone(),
            };
            self.err(sp, format!("route '{name}' is not defined"));
            return None;
        }
        Some(idx)
    }

    fn stmt(&mut self, s: &Stmt, script: &Script) -> Option<Op> {
        Some(match s {
            Stmt::Call(c) => Op::Call(self.call(c)?),
            Stmt::Assign(a) => {
                let rhs = self.expr(&a.rhs, a.span, script)?;
                let mut spec = a.lhs.spec.clone();
                self.pv(&mut spec, a.lhs.span);
                let lhs = match lhs_of(&spec) {
                    Ok(l) => l,
                    Err(m) => {
                        self.err(a.lhs.span, m);
                        return None;
                    }
                };
                // A constant destination must ask for a served transport.
                if matches!(lhs, Lhs::Ru | Lhs::Du)
                    && let ast::Expr::Str(uri) = &a.rhs
                    && let Err(e) = crate::transport::served::check_uri(uri)
                {
                    self.err(a.span, e);
                    return None;
                }
                // compound operators behave like `=` in 1.2
                Op::Assign { lhs, rhs }
            }
            Stmt::If {
                cond,
                then,
                els,
                span,
            } => Op::If {
                cond: self.expr(cond, *span, script)?,
                then: self.block(then, script),
                els: els.as_ref().map(|e| self.block(e, script)),
            },
            Stmt::Switch { pv, arms, span } => {
                let mut spec = pv.spec.clone();
                self.pv(&mut spec, pv.span);
                let mut labels = Vec::new();
                let mut default = None;
                let mut bodies = Vec::new();
                for (i, a) in arms.iter().enumerate() {
                    match &a.label {
                        ast::CaseLabel::Default => {
                            if default.is_some() {
                                self.err(a.span, "more than one default in switch");
                            }
                            default = Some(i);
                        }
                        l => labels.push((l.clone(), i)),
                    }
                    bodies.push(self.block(&a.body, script));
                }
                let _ = span;
                Op::Switch {
                    pv: spec,
                    arms: labels,
                    default,
                    bodies,
                }
            }
            Stmt::While { cond, body, span } => Op::While {
                cond: self.expr(cond, *span, script)?,
                body: self.block(body, script),
            },
            Stmt::Block(b) => Op::Block(self.block(b, script)),
            Stmt::Exit(_) => Op::Exit,
            Stmt::Drop(_) => Op::Drop,
            Stmt::Return { value, span } => {
                let v = value.unwrap_or(1);
                if v > i32::MAX as i64 || v < i32::MIN as i64 {
                    self.err(*span, "return value out of range");
                }
                Op::Return(v as i32)
            }
            Stmt::Route { target, span } => Op::Route(self.route_target(target, *span, script)?),
            Stmt::Break(_) => Op::Break,
        })
    }

    /// Resolve a call: core action, then loaded modules; errors for modules that are
    /// not loaded and unknown names.
    fn call(&mut self, c: &ast::Call) -> Option<CallOp> {
        let n = c.args.len();
        let find = |cmds: &'static [CmdExport]| -> (bool, Option<&'static CmdExport>) {
            let mut named = false;
            for e in cmds {
                if e.name == c.name {
                    named = true;
                    if n >= e.min_args as usize && n <= e.max_args as usize {
                        return (true, Some(e));
                    }
                }
            }
            (named, None)
        };
        let mut seen: Option<(u8, u8)> = None;
        let mut found: Option<(&'static CmdExport, Option<&'static str>)> = None;
        let (named, hit) = find(super::actions::CORE_CMDS);
        if let Some(e) = hit {
            found = Some((e, None));
        } else if named {
            seen = super::actions::CORE_CMDS
                .iter()
                .filter(|e| e.name == c.name)
                .fold(None, |acc: Option<(u8, u8)>, e| {
                    Some(match acc {
                        None => (e.min_args, e.max_args),
                        Some((a, b)) => (a.min(e.min_args), b.max(e.max_args)),
                    })
                });
        }
        if found.is_none() {
            for m in self.mods {
                let (named, hit) = find(m.cmds);
                if let Some(e) = hit {
                    found = Some((e, Some(m.name)));
                    break;
                }
                if named {
                    for e in m.cmds.iter().filter(|e| e.name == c.name) {
                        seen = Some(match seen {
                            None => (e.min_args, e.max_args),
                            Some((a, b)) => (a.min(e.min_args), b.max(e.max_args)),
                        });
                    }
                }
            }
        }
        let Some((e, module)) = found else {
            if let Some((a, b)) = seen {
                let takes = if a == b {
                    format!("{a}")
                } else {
                    format!("{a} to {b}")
                };
                self.err(
                    c.span,
                    format!(
                        "function '{}' called with {} argument{}, it takes {}",
                        c.name,
                        n,
                        if n == 1 { "" } else { "s" },
                        takes
                    ),
                );
                return None;
            }
            let owner = crate::module::builtin()
                .iter()
                .find(|m| m.cmds.iter().any(|e| e.name == c.name))
                .map(|m| m.name)
                .or_else(|| {
                    KNOWN_FUNCS
                        .iter()
                        .find(|(f, _)| *f == c.name)
                        .map(|(_, m)| *m)
                });
            match owner {
                Some(m) => self.err(
                    c.span,
                    format!(
                        "function '{}' is exported by module '{}', which is not loaded",
                        c.name, m
                    ),
                ),
                None => self.err(c.span, format!("unknown function '{}'", c.name)),
            }
            return None;
        };
        if self.check_routes {
            let bad = self.cur_types & !e.routes;
            if bad != 0 {
                let mut bit = 1;
                while bit & bad == 0 {
                    bit <<= 1;
                }
                self.err(
                    c.span,
                    format!(
                        "function '{}' is not allowed in {}",
                        c.name,
                        route::type_name(bit)
                    ),
                );
            }
        }
        let args = match e.fixup {
            Some(fx) => fx(&c.args),
            None => default_fixup(&c.args),
        };
        let mut args = match args {
            Ok(a) => a,
            Err(msg) => {
                let sp = c.args.first().map_or(c.span, |a| a.span);
                let who = match module {
                    Some(m) => format!("{m}:{}", c.name),
                    None => c.name.clone(),
                };
                self.err(sp, format!("fixup of '{who}' failed: {msg}"));
                return None;
            }
        };
        // check PV names used by arguments
        for (i, a) in args.iter_mut().enumerate() {
            let sp = c.args.get(i).map_or(c.span, |a| a.span);
            match a {
                FixedArg::Pv(p) => self.pv(p, sp),
                FixedArg::Fmt(f) => self.fmt(f, sp),
                _ => {}
            }
        }
        Some(CallOp {
            name: e.name,
            h: e.handler,
            args,
            routes: e.routes,
        })
    }

    fn fmt(&mut self, f: &mut [FmtPart], sp: Span) {
        for p in f {
            if let FmtPart::Pv(p) = p {
                self.pv(p, sp);
            }
        }
    }

    /// Check a PV name (core or module), resolve AVP aliases, check transformations.
    fn pv(&mut self, spec: &mut PvSpec, sp: Span) {
        let name = spec.name.as_str();
        let known = super::pv::is_core_pv(name)
            || self
                .mods
                .iter()
                .any(|m| m.pvs.iter().any(|p| p.name == name));
        if !known {
            let owner = crate::module::builtin()
                .iter()
                .find(|m| m.pvs.iter().any(|p| p.name == name))
                .map(|m| m.name);
            match owner {
                Some(m) => self.err(
                    sp,
                    format!(
                        "pseudo-variable '${name}' is exported by module '{m}', which is not loaded"
                    ),
                ),
                None => self.err(sp, format!("unknown pseudo-variable '{}'", spec.text)),
            }
            return;
        }
        if let Some(PvParam::Name(k)) = &spec.param
            && !super::pv::param_known(&spec.name, k)
        {
            self.err(sp, format!("unknown key '{k}' of '${}'", spec.name));
        }
        match &mut spec.param {
            Some(PvParam::Avp(a)) => self.avp_name(a, sp),
            Some(PvParam::Pv(p)) => self.pv(p, sp),
            _ => {}
        }
        if let Some(PvIndex::Pv(p)) = &mut spec.index {
            self.pv(p, sp);
        }
        for t in &mut spec.trans {
            if !super::transform::is_known(&t.class, &t.op) {
                self.err(
                    sp,
                    format!("unknown transformation '{{{}.{}}}'", t.class, t.op),
                );
            }
            for p in &mut t.params {
                if let TrParam::Pv(p) = p {
                    self.pv(p, sp);
                }
            }
        }
    }

    fn avp_name(&mut self, a: &mut AvpName, sp: Span) {
        match a {
            AvpName::Alias(n) => match self.aliases.get(n.as_str()) {
                Some(v) => *a = v.clone(),
                None => self.err(
                    sp,
                    format!("unknown AVP alias '{n}' (declare it with avp_aliases)"),
                ),
            },
            AvpName::Pv(p) => self.pv(p, sp),
            _ => {}
        }
    }

    fn expr(&mut self, e: &Expr, _sp: Span, script: &Script) -> Option<CExpr> {
        Some(match e {
            Expr::Int(i) => CExpr::Val(PvValue::Int(*i)),
            Expr::Str(s) => CExpr::Val(PvValue::Str(s.clone())),
            Expr::Ident(s) => CExpr::Val(PvValue::Str(s.clone())),
            Expr::Null => CExpr::Null,
            Expr::Kw(k, _) => CExpr::Kw(*k),
            Expr::Pv(p) => {
                let mut spec = p.spec.clone();
                self.pv(&mut spec, p.span);
                CExpr::Pv(spec)
            }
            Expr::Ip(ip) => CExpr::Ip(*ip),
            Expr::Net(n) => CExpr::Net(*n),
            Expr::Call(c) if c.name == "route" && c.args.len() == 1 => {
                let target = match &c.args[0].value {
                    ArgValue::Int(n) if *n >= 0 && *n <= u32::MAX as i64 => {
                        RouteName::Num(*n as u32)
                    }
                    ArgValue::Str(s) | ArgValue::Ident(s) => match s.parse::<u32>() {
                        Ok(n) => RouteName::Num(n),
                        Err(_) => RouteName::Named(s.clone()),
                    },
                    _ => {
                        self.err(c.span, "bad route() target");
                        return None;
                    }
                };
                CExpr::Route(self.route_target(&target, c.span, script)?)
            }
            Expr::Call(c) => CExpr::Call(self.call(c)?),
            Expr::Not(x) => CExpr::Not(Box::new(self.expr(x, _sp, script)?)),
            Expr::And(a, b) => CExpr::And(
                Box::new(self.expr(a, _sp, script)?),
                Box::new(self.expr(b, _sp, script)?),
            ),
            Expr::Or(a, b) => CExpr::Or(
                Box::new(self.expr(a, _sp, script)?),
                Box::new(self.expr(b, _sp, script)?),
            ),
            Expr::Cmp {
                op,
                left,
                right,
                span,
            } => {
                let l = self.expr(left, *span, script)?;
                let r = self.expr(right, *span, script)?;
                let mut re = None;
                if matches!(op, CmpOp::Match | CmpOp::NoMatch)
                    && let CExpr::Val(PvValue::Str(pat)) = &r
                {
                    match Regex::new(pat, true, true) {
                        Ok(x) => re = Some(Arc::new(x)),
                        Err(m) => {
                            self.err(*span, m);
                            return None;
                        }
                    }
                }
                CExpr::Cmp {
                    op: *op,
                    l: Box::new(l),
                    r: Box::new(r),
                    re,
                }
            }
            Expr::Arith {
                op,
                left,
                right,
                span,
            } => CExpr::Arith {
                op: *op,
                l: Box::new(self.expr(left, *span, script)?),
                r: Box::new(self.expr(right, *span, script)?),
            },
            Expr::Neg(x) => CExpr::Neg(Box::new(self.expr(x, _sp, script)?)),
            Expr::BitNot(x) => CExpr::BitNot(Box::new(self.expr(x, _sp, script)?)),
        })
    }
}

// ---------------------------------------------------------------------------
// Run-time fixups for embedded languages (app_lua's `sr.modf`/`KSR.x.modf`, its
// named API functions and `sr.pv`): the same lookup, arity check, argument fixup and
// name checks as for the configuration, applied to a call or a PV a script builds at
// run time. Only after the configuration is loaded (they read the frozen globals).

/// A fixer for one run-time item against the loaded modules and `avp_aliases`.
fn with_dyn_fixer<R>(f: impl FnOnce(&mut Fixer<'_>) -> Option<R>) -> Result<R, String> {
    let cfg = ast::Config::default();
    let aliases = parse_aliases(&crate::globals::get().avp_aliases).unwrap_or_default();
    let mut fx = Fixer {
        cfg: &cfg,
        mods: crate::module::loaded(),
        aliases,
        errors: Vec::new(),
        check_routes: false,
        cur_types: 0,
        // calls built by an embedded language are not traced (no config line)
        trace: None,
        files: Vec::new(),
    };
    let r = f(&mut fx);
    match (r, fx.errors.into_iter().next()) {
        (Some(r), None) => Ok(r),
        (_, Some((_, msg))) => Err(msg),
        (None, None) => Err("fixup failed".into()),
    }
}

/// Resolve and fix up the call `name(args…)` as the configuration's fixup does (core
/// actions, then the loaded modules' functions). Run it with `interp::run_dyn_call`,
/// which checks the route type.
pub fn dyn_call(name: &str, args: Vec<Arg>) -> Result<CallOp, String> {
    let c = ast::Call {
        name: name.to_string(),
        args,
        span: Span::default(),
    };
    with_dyn_fixer(|fx| fx.call(&c))
}

/// Parse and check a pseudo-variable written as text (`$ru`, `$avp(s:x)`, `$var(n)`,
/// with transformations): the whole text must be one PV.
pub fn dyn_pv(text: &str) -> Result<PvSpec, String> {
    let (mut spec, used) = crate::cfg::pv::parse_pv(text.trim())?;
    if used != text.trim().len() {
        return Err(format!("'{text}' is not one pseudo-variable"));
    }
    with_dyn_fixer(|fx| {
        fx.pv(&mut spec, Span::default());
        Some(())
    })?;
    Ok(spec)
}

/// Where an assignment to the (checked) PV `spec` goes, as `$x = …` in the
/// configuration: `$ru`, `$rU`, `$rd`, `$du`, `$var(name)`, AVPs and module PVs with a
/// setter (`$dlg_var(name)`).
pub fn dyn_lhs(spec: &PvSpec) -> Result<Lhs, String> {
    if !spec.trans.is_empty() {
        return Err(format!("'{}' cannot be assigned to", spec.text));
    }
    lhs_of(spec)
}

/// The assignment target of a PV (configuration and run time alike).
fn lhs_of(spec: &PvSpec) -> Result<Lhs, String> {
    Ok(match spec.name.as_str() {
        "ru" | "ruri" => Lhs::Ru,
        "rU" | "ruri.user" => Lhs::RUser,
        "rd" | "ruri.domain" => Lhs::RDomain,
        "du" | "duri" => Lhs::Du,
        "var" => match &spec.param {
            Some(PvParam::Name(n)) => Lhs::Var(n.clone()),
            _ => return Err("bad $var name".into()),
        },
        n if crate::cfg::pv::is_avp_name(n) => Lhs::Avp(spec.clone()),
        // a writable module PV (whether its module is loaded is checked with the
        // PV's name, as for reading)
        n => match crate::module::pv_setter(n) {
            Some(set) => Lhs::Module(spec.clone(), set),
            None => return Err(format!("'{}' cannot be assigned to", spec.text)),
        },
    })
}

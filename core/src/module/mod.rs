//! The module framework: what a module declares ([`ModuleExports`]), the registry of
//! built-in modules (handed over by the binary, which alone names them), and the list
//! `loadmodule` selected (frozen before fork).
//!
//! A module's `lib.rs` opens with one exports table filled from [`ModuleExports::EMPTY`]:
//! typed parameter rows ([`Param`]), script functions ([`CmdExport::new`]), PVs, MI
//! commands, statistics, database drivers, timers and extra processes. Nothing is
//! registered at run time: the core reads these tables of the loaded modules when it
//! fixes up the script, forks, runs the timer, answers MI or opens a database.

pub mod param;

use crate::cfg::ast::Arg;
pub use crate::cfg::ast::ModParamValue;
use crate::cfg::pv::PvSpec;
use crate::db::Connector;
use crate::mi::MiHandler;
use crate::parser::SipMsg;
use crate::script::{Ctx, PvFormat, PvValue};
pub use param::{BoolParam, IntParam, Param, ParamFn, ParamKind, StrParam};
use std::sync::{Arc, OnceLock};

/// A function argument after fixup (done once at start-up).
#[derive(Clone)]
pub enum FixedArg {
    Int(i64),
    Str(String),
    /// string containing PVs, evaluated per message
    Fmt(PvFormat),
    Pv(PvSpec),
    Regex(Arc<crate::re::Regex>),
    /// module-specific fixed data
    Any(Arc<dyn std::any::Any + Send + Sync>),
}

impl std::fmt::Debug for FixedArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FixedArg::Int(i) => write!(f, "Int({i})"),
            FixedArg::Str(s) => write!(f, "Str({s:?})"),
            FixedArg::Fmt(p) => write!(f, "Fmt({p:?})"),
            FixedArg::Pv(p) => write!(f, "Pv({})", p.text),
            FixedArg::Regex(_) => write!(f, "Regex"),
            FixedArg::Any(_) => write!(f, "Any"),
        }
    }
}

pub type FixupFn = fn(args: &[Arg]) -> Result<Vec<FixedArg>, String>;
pub type CmdFn = fn(ctx: &mut Ctx, args: &[FixedArg]) -> i32;

/// A script function exported by a module (or a core action).
pub struct CmdExport {
    pub name: &'static str,
    pub min_args: u8,
    pub max_args: u8,
    /// None = default: Str/Ident -> Str (or Fmt if it contains '$'), Int -> Int
    pub fixup: Option<FixupFn>,
    pub handler: CmdFn,
    /// allowed route types (bit set of route.rs)
    pub routes: u32,
}

impl CmdExport {
    /// `name` taking `min..=max` arguments, allowed in `routes`, run by `handler`.
    pub const fn new(
        name: &'static str,
        min_args: u8,
        max_args: u8,
        routes: u32,
        handler: CmdFn,
    ) -> CmdExport {
        CmdExport {
            name,
            min_args,
            max_args,
            fixup: None,
            handler,
            routes,
        }
    }
    /// The same row with a fixup of its own.
    pub const fn fixup(mut self, f: FixupFn) -> CmdExport {
        self.fixup = Some(f);
        self
    }
}

/// A module PV's setter: `$name(..) = value;` (Null for `$null`), the action's rc.
pub type PvSetFn = fn(&mut Ctx, &PvSpec, PvValue) -> i32;

/// A pseudo-variable exported by a module.
pub struct PvExport {
    pub name: &'static str,
    pub get: fn(&mut Ctx, &PvSpec) -> PvValue,
    /// The PV can be assigned to (`None`: read-only).
    pub set: Option<PvSetFn>,
}

impl PvExport {
    pub const fn new(name: &'static str, get: fn(&mut Ctx, &PvSpec) -> PvValue) -> PvExport {
        PvExport {
            name,
            get,
            set: None,
        }
    }
    /// The same row, writable through `set`.
    pub const fn setter(mut self, set: PvSetFn) -> PvExport {
        self.set = Some(set);
        self
    }
}

/// An MI command.
pub struct MiExport {
    pub name: &'static str,
    pub handler: MiHandler,
    /// The command ignores argument lines (1.2's `MI_NO_INPUT_FLAG`).
    pub no_input: bool,
}

impl MiExport {
    pub const fn new(name: &'static str, handler: MiHandler) -> MiExport {
        MiExport {
            name,
            handler,
            no_input: false,
        }
    }
    pub const fn no_input(mut self) -> MiExport {
        self.no_input = true;
        self
    }
}

/// Where a statistic's counter lives: registered (in shm) for every loaded module
/// before its `mod_init`, read through the cell afterwards.
pub struct StatCell(OnceLock<crate::stats::Stat>);

impl StatCell {
    pub const fn new() -> StatCell {
        StatCell(OnceLock::new())
    }
    /// The counter; one in private memory if the module was never initialised (unit
    /// tests), so callers never check.
    #[inline]
    pub fn stat(&self) -> crate::stats::Stat {
        *self.0.get_or_init(crate::stats::Stat::private)
    }
    #[inline]
    pub fn inc(&self) {
        self.stat().inc();
    }
    #[inline]
    pub fn dec(&self) {
        self.stat().dec();
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.stat().add(n);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.stat().get()
    }
    pub fn set(&self, v: u64) {
        self.stat().set(v);
    }
    fn bind(&self, s: crate::stats::Stat) {
        let _ = self.0.set(s);
    }
}

impl Default for StatCell {
    fn default() -> Self {
        StatCell::new()
    }
}

/// What a statistic reads.
pub enum StatKind {
    Counter(&'static StatCell),
    Func(fn() -> u64),
}

/// A statistic `module:name`.
pub struct StatExport {
    pub name: &'static str,
    /// `crate::stats::NO_RESET` or 0
    pub flags: u32,
    pub kind: StatKind,
}

impl StatExport {
    pub const fn counter(name: &'static str, cell: &'static StatCell) -> StatExport {
        StatExport {
            name,
            flags: 0,
            kind: StatKind::Counter(cell),
        }
    }
    /// A counter `reset_statistics` leaves alone (gauges such as inuse_transactions).
    pub const fn no_reset(name: &'static str, cell: &'static StatCell) -> StatExport {
        StatExport {
            name,
            flags: crate::stats::NO_RESET,
            kind: StatKind::Counter(cell),
        }
    }
    /// A value computed when read.
    pub const fn func(name: &'static str, f: fn() -> u64) -> StatExport {
        StatExport {
            name,
            flags: crate::stats::NO_RESET,
            kind: StatKind::Func(f),
        }
    }
}

/// A database driver: the `db_url` scheme it serves and its connector.
pub struct DbDriver {
    pub scheme: &'static str,
    pub connect: Connector,
}

/// How often a timer runs.
pub enum Every {
    Secs(u32),
    /// rounded up to 100 ms units
    Millis(u32),
    /// seconds, from a parameter (read when the timer process starts)
    SecsParam(&'static IntParam),
}

/// A timer function; gets the current tick (seconds for second timers, 100 ms units
/// for millisecond timers).
pub type TimerFn = fn(ticks: u64);

/// A function the timer process runs periodically.
pub struct TimerExport {
    pub name: &'static str,
    pub every: Every,
    pub f: TimerFn,
}

impl TimerExport {
    pub const fn new(name: &'static str, every: Every, f: TimerFn) -> TimerExport {
        TimerExport { name, every, f }
    }
}

/// An extra process the attendant forks and supervises (1.2's MI FIFO server).
pub struct ProcExport {
    /// its description in `ps`
    pub desc: &'static str,
    /// its rank for `child_init` (`crate::process::pt::PROC_*`)
    pub rank: i32,
    pub main: fn() -> !,
    /// whether the configuration wants it (checked after `mod_init`)
    pub wanted: fn() -> bool,
}

fn always() -> bool {
    true
}

impl ProcExport {
    pub const fn new(desc: &'static str, rank: i32, main: fn() -> !) -> ProcExport {
        ProcExport {
            desc,
            rank,
            main,
            wanted: always,
        }
    }
    pub const fn when(mut self, wanted: fn() -> bool) -> ProcExport {
        self.wanted = wanted;
        self
    }
}

/// Everything a module exports. Fill it from [`ModuleExports::EMPTY`]:
///
/// ```ignore
/// pub static EXPORTS: ModuleExports = ModuleExports {
///     name: "maxfwd",
///     params: &[Param::int_range("max_limit", &MAX_LIMIT, 1, 256)],
///     cmds: &[CmdExport::new("mf_process_maxfwd_header", 1, 1, REQUEST_ROUTE, cmd_mf)
///         .fixup(fixup_maxfwd)],
///     ..ModuleExports::EMPTY
/// };
/// ```
pub struct ModuleExports {
    pub name: &'static str,
    /// Modules whose API this one binds (1.2's `load_*_api`): each must be loaded too,
    /// or the configuration is rejected.
    pub binds: &'static [&'static str],
    pub params: &'static [Param],
    pub cmds: &'static [CmdExport],
    pub pvs: &'static [PvExport],
    pub mi: &'static [MiExport],
    pub stats: &'static [StatExport],
    /// The module's `enable_stats` parameter, if it has one: when it is off the
    /// statistics are not registered (they count in private memory, unseen).
    pub enable_stats: Option<&'static BoolParam>,
    pub db_drivers: &'static [DbDriver],
    pub timers: &'static [TimerExport],
    pub procs: &'static [ProcExport],
    /// attendant: after shm::init, before fork
    pub mod_init: Option<fn() -> Result<(), String>>,
    /// every process, right after it is forked (DB connections)
    pub child_init: Option<fn(rank: i32) -> Result<(), String>>,
    /// attendant, reverse load order
    pub destroy: Option<fn()>,
    /// Called for every received request before the script; false = drop it.
    pub pre_script: Option<fn(&mut SipMsg) -> bool>,
    /// Called for every received reply after the main onreply_route; true = consumed.
    pub reply_hook: Option<fn(&mut SipMsg) -> bool>,
    /// The routing engine it provides for `cfgengine` (app_lua: `"lua"`).
    pub engine: Option<&'static crate::script::engine::Engine>,
    /// A per-action hook (the debugger's cfgtrace): when a loaded module declares one,
    /// fixup puts a trace point before every script action, and the interpreter calls
    /// the hook there. Without it the executable tree has no trace points at all.
    pub action_trace: Option<crate::script::interp::ActionTraceFn>,
}

impl ModuleExports {
    /// The base every exports table is filled from.
    pub const EMPTY: ModuleExports = ModuleExports {
        name: "",
        binds: &[],
        params: &[],
        cmds: &[],
        pvs: &[],
        mi: &[],
        stats: &[],
        enable_stats: None,
        db_drivers: &[],
        timers: &[],
        procs: &[],
        mod_init: None,
        child_init: None,
        destroy: None,
        pre_script: None,
        reply_hook: None,
        engine: None,
        action_trace: None,
    };

    /// The parameter row `name`, if the module has one.
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

static BUILTIN: OnceLock<&'static [&'static ModuleExports]> = OnceLock::new();
static LOADED: OnceLock<Vec<&'static ModuleExports>> = OnceLock::new();

/// Hand over the built-in modules (the binary's `main`, first thing). First call wins.
pub fn set_builtin(list: &'static [&'static ModuleExports]) {
    let _ = BUILTIN.set(list);
}

/// Every built-in module's exports.
pub fn builtin() -> &'static [&'static ModuleExports] {
    BUILTIN.get().copied().unwrap_or(&[])
}

/// The setter of module PV `name`, when a built-in module exports it writable.
pub fn pv_setter(name: &str) -> Option<PvSetFn> {
    builtin()
        .iter()
        .flat_map(|m| m.pvs)
        .find(|p| p.name == name)
        .and_then(|p| p.set)
}

/// The loaded modules, in load order (frozen before fork; empty before).
pub fn loaded() -> &'static [&'static ModuleExports] {
    LOADED.get().map(|v| v.as_slice()).unwrap_or(&[])
}

/// Whether module `name` is loaded.
pub fn is_loaded(name: &str) -> bool {
    loaded().iter().any(|m| m.name == name)
}

/// Find a built-in module by name.
pub fn find_builtin(name: &str) -> Option<&'static ModuleExports> {
    builtin().iter().copied().find(|m| m.name == name)
}

/// Names of all built-in modules, comma separated (for messages).
pub fn builtin_names() -> String {
    builtin()
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Freeze the list of loaded modules (config loading, before fork; first call wins).
pub fn freeze(mods: Vec<&'static ModuleExports>) -> &'static [&'static ModuleExports] {
    LOADED.get_or_init(|| mods).as_slice()
}

/// Register the declared statistics of `m` (attendant, before its `mod_init`; tests).
pub fn register_stats(m: &ModuleExports) {
    if m.enable_stats.is_some_and(|p| !p.get()) {
        return;
    }
    for s in m.stats {
        match s.kind {
            StatKind::Counter(cell) => cell.bind(crate::stats::register(m.name, s.name, s.flags)),
            StatKind::Func(f) => crate::stats::register_func(m.name, s.name, f),
        }
    }
}

/// The MI command `name` of a loaded module.
pub fn find_mi(name: &str) -> Option<&'static MiExport> {
    loaded()
        .iter()
        .flat_map(|m| m.mi.iter())
        .find(|c| c.name == name)
}

/// The loaded module serving database URLs of `scheme`, and its connector; else the
/// built-in module that would (for the error message).
pub fn find_db_driver(scheme: &str) -> Result<Connector, Option<&'static str>> {
    let driver = |m: &&'static ModuleExports| m.db_drivers.iter().find(|d| d.scheme == scheme);
    if let Some(d) = loaded().iter().find_map(driver) {
        return Ok(d.connect);
    }
    Err(builtin()
        .iter()
        .find(|m| driver(m).is_some())
        .map(|m| m.name))
}

//! The module framework: static registry of built-in modules, the list selected by
//! `loadmodule` (frozen before fork), and the export types modules fill in.

use crate::core::cfg::ast::Arg;
pub use crate::core::cfg::ast::ModParamValue;
use crate::core::cfg::pv::PvSpec;
use crate::core::parser::SipMsg;
use crate::core::script::{Ctx, PvFormat, PvValue};
use std::sync::{Arc, Mutex};

/// A module parameter settable with `modparam`.
pub struct ParamExport {
    pub name: &'static str,
    pub set: fn(&ModParamValue) -> Result<(), String>,
}

/// A function argument after fixup (done once at start-up).
#[derive(Clone)]
pub enum FixedArg {
    Int(i64),
    Str(String),
    /// string containing PVs, evaluated per message
    Fmt(PvFormat),
    Pv(PvSpec),
    Regex(Arc<crate::core::re::Regex>),
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

/// A script function exported by a module.
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

/// A pseudo-variable exported by a module.
pub struct PvExport {
    pub name: &'static str,
    pub get: fn(&mut Ctx, &PvSpec) -> PvValue,
}

/// Everything a module exports.
pub struct ModuleExports {
    pub name: &'static str,
    pub params: &'static [ParamExport],
    pub cmds: &'static [CmdExport],
    pub pvs: &'static [PvExport],
    /// attendant: after shm::init, before fork
    pub mod_init: Option<fn() -> Result<(), String>>,
    pub child_init: Option<fn(rank: i32) -> Result<(), String>>,
    /// attendant, reverse load order
    pub destroy: Option<fn()>,
    /// Called for every received request before the script; false = drop it.
    pub pre_script: Option<fn(&mut SipMsg) -> bool>,
    /// Called for every received reply after the main onreply_route; true = consumed.
    pub reply_hook: Option<fn(&mut SipMsg) -> bool>,
}

/// Every built-in module's exports.
pub fn builtin() -> &'static [&'static ModuleExports] {
    crate::modules::REGISTRY
}

static LOADED: Mutex<Vec<&'static ModuleExports>> = Mutex::new(Vec::new());
static FROZEN: std::sync::OnceLock<Vec<&'static ModuleExports>> = std::sync::OnceLock::new();

/// The loaded modules, in load order (frozen before fork).
pub fn loaded() -> &'static [&'static ModuleExports] {
    FROZEN.get().map(|v| v.as_slice()).unwrap_or(&[])
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

/// Mark a module as loaded (config loading, before fork). Loading twice is a no-op.
pub fn add_loaded(m: &'static ModuleExports) {
    let mut l = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if !l.iter().any(|x| x.name == m.name) {
        l.push(m);
    }
}

/// Freeze the loaded list (first call wins). Returns the frozen list.
pub fn freeze() -> &'static [&'static ModuleExports] {
    let l = LOADED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    FROZEN.get_or_init(|| l).as_slice()
}

/// A module's parameter struct: filled by `modparam` while the config loads (before
/// fork), read after. Modules keep one in a `static` instead of each writing the same
/// `Mutex<Option<T>>` plumbing.
pub struct ParamCell<T>(Mutex<Option<T>>);

impl<T> ParamCell<T> {
    pub const fn new() -> ParamCell<T> {
        ParamCell(Mutex::new(None))
    }
}

impl<T> Default for ParamCell<T> {
    fn default() -> Self {
        ParamCell::new()
    }
}

impl<T: Clone + Default> ParamCell<T> {
    /// The parameters as set so far (defaults where unset).
    pub fn get(&self) -> T {
        self.0
            .lock()
            .map(|g| g.clone().unwrap_or_default())
            .unwrap_or_default()
    }
    /// Change the parameters (a `modparam` setter).
    pub fn update(&self, f: impl FnOnce(&mut T)) {
        if let Ok(mut g) = self.0.lock() {
            let mut p = g.clone().unwrap_or_default();
            f(&mut p);
            *g = Some(p);
        }
    }
}

/// `fn $setter(&ModParamValue)` storing the value as text in field `$field` of the
/// parameters kept in the [`ParamCell`] `$cell`.
#[macro_export]
macro_rules! param_text {
    ($setter:ident, $cell:path, $field:ident) => {
        fn $setter(v: &$crate::core::module::ModParamValue) -> Result<(), String> {
            let x = v.text();
            $cell.update(|p| p.$field = x);
            Ok(())
        }
    };
}

impl ModParamValue {
    /// The value as an integer (a numeric string is accepted); `module` and `name`
    /// label the error: `usrloc: parameter db_mode needs an integer`.
    pub fn int(&self, module: &str, name: &str) -> Result<i64, String> {
        match self {
            ModParamValue::Int(i) => Ok(*i),
            ModParamValue::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{module}: parameter {name} needs an integer")),
        }
    }

    /// The value as an integer of type `T`, with a range error otherwise.
    pub fn ranged<T: TryFrom<i64>>(&self, module: &str, name: &str) -> Result<T, String> {
        let i = self.int(module, name)?;
        T::try_from(i).map_err(|_| format!("{module}: parameter {name} out of range: {i}"))
    }

    /// The value as text (an integer in decimal).
    pub fn text(&self) -> String {
        match self {
            ModParamValue::Int(i) => i.to_string(),
            ModParamValue::Str(s) => s.clone(),
        }
    }
}

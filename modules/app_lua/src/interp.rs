//! The per-process interpreter: made from the `load` scripts in each process (never
//! across fork), rebuilt when the shm reload generation moves, and the bracket every
//! handler runs in (the API bound to the message, the instruction budget, exit/drop).

use crate::api;
use mlua::{Function, HookTriggers, Lua, Table, Value, Variadic, VmState};
use openser_core::script::Ctx;
use openser_core::script::kemi::{self, Handler, KemiInterp};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The budget is checked every this many VM instructions.
const HOOK_EVERY: u32 = 1000;

thread_local! {
    static INTERP: RefCell<Option<Rc<Interp>>> = const { RefCell::new(None) };
    /// Handlers running (a branch route inside `t_relay` inside the request route).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Hook periods left for the running handler.
    static BUDGET: Cell<u64> = const { Cell::new(0) };
}

/// One process's Lua state.
pub struct Interp {
    pub lua: Lua,
    /// The private table whose `f` the API closures call.
    slot: Table,
    /// The reload generation it was built at.
    generation: u64,
    /// Handler index → function name (KEMI failure/reply/branch routes).
    names: RefCell<HashMap<usize, String>>,
    /// `ksr_request_route` and `ksr_reply_route` as the scripts defined them when
    /// they were loaded (looked up once, not per message).
    pub request_fn: Option<Function>,
    pub reply_fn: Option<Function>,
}

/// How a handler ended (`Done` with its value).
pub type Outcome = kemi::Outcome<Value>;

fn lua_err(e: mlua::Error) -> String {
    e.to_string()
}

/// Compile a script without running it (the `load` parameter's check): a syntax error
/// comes back with the script's file and line.
pub fn compile_file(path: &Path) -> Result<(), String> {
    let src = std::fs::read(path)
        .map_err(|e| format!("cannot read Lua script {}: {e}", path.display()))?;
    let lua = Lua::new();
    lua.load(src)
        .set_name(format!("@{}", path.display()))
        .into_function()
        .map(|_| ())
        .map_err(|e| format!("Lua {}", lua_err(e)))
}

fn budget_periods() -> u64 {
    let limit = crate::P.instruction_limit.get().max(0) as u64;
    limit.div_ceil(u64::from(HOOK_EVERY)).max(1)
}

impl Interp {
    /// A fresh interpreter with the API published and `files` run.
    pub fn new(files: &[PathBuf], generation: u64) -> Result<Interp, String> {
        let lua = Lua::new();
        let slot = lua.create_table().map_err(lua_err)?;
        let idle = lua.create_function(api::idle).map_err(lua_err)?;
        slot.raw_set("f", idle).map_err(lua_err)?;
        lua.load(api::publish_code())
            .set_name("=app_lua")
            .call::<()>(slot.clone())
            .map_err(lua_err)?;
        let limit = crate::P.instruction_limit.get();
        if limit > 0 {
            lua.set_hook(
                HookTriggers::new().every_nth_instruction(HOOK_EVERY),
                move |_, _| {
                    let left = BUDGET.get();
                    if left == 0 {
                        return Err(api::rt(format!("instruction limit ({limit}) exceeded")));
                    }
                    BUDGET.set(left - 1);
                    Ok(VmState::Continue)
                },
            )
            .map_err(lua_err)?;
        }
        for f in files {
            let src = std::fs::read(f)
                .map_err(|e| format!("cannot read Lua script {}: {e}", f.display()))?;
            BUDGET.set(budget_periods());
            lua.load(src)
                .set_name(format!("@{}", f.display()))
                .exec()
                .map_err(|e| format!("Lua script {}: {}", f.display(), lua_err(e)))?;
        }
        let mut i = Interp {
            lua,
            slot,
            generation,
            names: RefCell::new(HashMap::new()),
            request_fn: None,
            reply_fn: None,
        };
        i.request_fn = i.function("ksr_request_route").map_err(lua_err)?;
        i.reply_fn = i.function("ksr_reply_route").map_err(lua_err)?;
        i.scan_names()?;
        Ok(i)
    }

    /// Index every global function by its handler index; two names with one index
    /// would make a failure route ambiguous, so that is an error.
    fn scan_names(&self) -> Result<(), String> {
        let mut m: HashMap<usize, String> = HashMap::new();
        for pair in self.lua.globals().pairs::<Value, Value>() {
            let (k, v) = pair.map_err(lua_err)?;
            let (Value::String(k), Value::Function(_)) = (k, v) else {
                continue;
            };
            let name = k.to_string_lossy();
            let idx = crate::handler_index(&name);
            if let Some(other) = m.get(&idx)
                && *other != name
            {
                return Err(format!(
                    "Lua functions '{other}' and '{name}' have the same handler index; rename one"
                ));
            }
            m.insert(idx, name);
        }
        *self.names.borrow_mut() = m;
        Ok(())
    }

    /// The global function `name`, if it is one.
    pub fn function(&self, name: &str) -> mlua::Result<Option<Function>> {
        match self.lua.globals().raw_get::<Value>(name)? {
            Value::Function(f) => Ok(Some(f)),
            _ => Ok(None),
        }
    }
}

/// The KEMI engine over this interpreter: handlers are global functions.
impl KemiInterp for Interp {
    const MODULE: &'static str = module_path!();
    const HANDLER: &'static str = "Lua function";
    type Value = Value;

    fn current() -> Result<Rc<Interp>, String> {
        current()
    }

    fn defines(&self, name: &str) -> bool {
        matches!(self.function(name), Ok(Some(_)))
    }

    fn has_reply(&self) -> bool {
        self.reply_fn.is_some()
    }

    fn names(&self) -> &RefCell<HashMap<usize, String>> {
        &self.names
    }

    fn rescan(&self) {
        let _ = self.scan_names();
    }

    fn run(ctx: &mut Ctx, h: Handler<'_>) -> Outcome {
        run_with(ctx, |i| {
            let f = match h {
                Handler::Request => i.request_fn.clone(),
                Handler::Reply => i.reply_fn.clone(),
                Handler::Named(name) => i.function(name)?,
            };
            match f {
                Some(f) => f.call::<Value>(()),
                None => Err(api::rt(format!("no Lua function {}()", h.name()))),
            }
        })
    }
}

/// This process's interpreter, made or rebuilt (when the reload generation moved) if
/// no handler is running. A rebuild that fails keeps the previous one.
pub fn current() -> Result<Rc<Interp>, String> {
    let generation = crate::generation();
    INTERP.with(|cell| {
        let have = cell.borrow().clone();
        match have {
            Some(i) if i.generation == generation || DEPTH.get() > 0 => Ok(i),
            have => match Interp::new(&crate::scripts(), generation) {
                Ok(i) => {
                    if have.is_some() {
                        openser_core::log_info!(
                            "Lua scripts reloaded in this process (generation {generation})"
                        );
                    }
                    let i = Rc::new(i);
                    *cell.borrow_mut() = Some(i.clone());
                    Ok(i)
                }
                Err(e) => match have {
                    Some(old) => {
                        openser_core::log_err!(
                            "reloading the Lua scripts failed, the previous ones stay: {e}"
                        );
                        let keep = Rc::new(Interp {
                            lua: old.lua.clone(),
                            slot: old.slot.clone(),
                            generation,
                            names: RefCell::new(old.names.borrow().clone()),
                            request_fn: old.request_fn.clone(),
                            reply_fn: old.reply_fn.clone(),
                        });
                        *cell.borrow_mut() = Some(keep.clone());
                        Ok(keep)
                    }
                    None => Err(e),
                },
            },
        }
    })
}

/// A new interpreter for a new process: one inherited through fork (the attendant's
/// with `fork=no`, whose timer is forked after it) is dropped, never used.
pub fn fresh() -> Result<(), String> {
    INTERP.with(|c| *c.borrow_mut() = None);
    current().map(|_| ())
}

/// Run `body` with the API bound to the message in `ctx`.
pub fn run_with(ctx: &mut Ctx, body: impl FnOnce(&Interp) -> mlua::Result<Value>) -> Outcome {
    let i = match current() {
        Ok(i) => i,
        Err(e) => return Outcome::Error(e),
    };
    let depth = DEPTH.get();
    if depth == 0 {
        BUDGET.set(budget_periods());
    }
    DEPTH.set(depth + 1);
    let prev_exit = api::EXIT.replace(0);
    let res = i.lua.scope(|scope| {
        let c: &mut Ctx = ctx;
        let f = scope.create_function_mut(move |lua, (id, args): (i64, Variadic<Value>)| {
            api::call(lua, Some(&mut *c), id, &args)
        })?;
        let prev: Value = i.slot.raw_get("f")?;
        i.slot.raw_set("f", f)?;
        let r = body(&i);
        i.slot.raw_set("f", prev)?;
        r
    });
    let exit = api::EXIT.replace(prev_exit);
    DEPTH.set(depth);
    match res {
        _ if exit != 0 => Outcome::Exit,
        Ok(v) => Outcome::Done(v),
        Err(e) => Outcome::Error(lua_err(e)),
    }
}

//! The functions scripts call: one table of operations, published twice — under
//! `sr` (the SIP Router 3.1 names of seed 002) and under `KSR` (Kamailio's KEMI names) —
//! so both APIs are one implementation.
//!
//! Each Lua function is a small Lua closure `function(...) return C.f(id, ...) end`
//! over a private table `C` (not reachable from scripts). While a message is handled,
//! `C.f` is a callback scoped to that message (`mlua::Lua::scope`) holding the
//! message's `Ctx`; outside a message it is [`idle`], which serves what needs no
//! message (logging, `is_myself`) and refuses the rest. No raw pointer to the context
//! is ever kept.
//!
//! Module functions (`sl_send_reply`, `t_relay`, `save`, …) and `modf` go through
//! `script::fixup::dyn_call` — the configuration's own lookup, arity check and
//! argument fixup — and `script::interp::run_dyn_call`, which checks the route type.
//! A prepared call is cached per process by (function, arguments).

use mlua::{Lua, Value, Variadic};
use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::cfg::error::Span;
use openser_core::cfg::pv::PvSpec;
use openser_core::log;
use openser_core::script::ctx::{RUN_DROP, RUN_EXIT};
use openser_core::script::interp::{CallOp, run_dyn_call};
use openser_core::script::{Ctx, PvValue, fixup, pv};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use openser_core::script::kemi::{self, is_myself_uri, level_by_name, method_is};
pub use openser_core::script::kemi::{APIS, Op};

/// The Lua text that publishes [`APIS`]: run once per interpreter with `C` as its
/// argument.
pub fn publish_code() -> String {
    let mut s = String::from(
        "local C = ...\n\
         local function put(root, path, id)\n\
         \x20 local t = root\n\
         \x20 local last\n\
         \x20 for part in string.gmatch(path, \"[^.]+\") do\n\
         \x20   if last then t[last] = t[last] or {}; t = t[last] end\n\
         \x20   last = part\n\
         \x20 end\n\
         \x20 t[last] = function(...) return C.f(id, ...) end\n\
         end\n\
         sr = {}\nKSR = {}\n",
    );
    for (id, a) in APIS.iter().enumerate() {
        if !a.sr.is_empty() {
            s.push_str(&format!("put(sr, \"{}\", {id})\n", a.sr));
        }
        if !a.ksr.is_empty() {
            s.push_str(&format!("put(KSR, \"{}\", {id})\n", a.ksr));
        }
    }
    s
}

/// The message text `KSR.x.exit()` raises to unwind the script (recognised by the flag,
/// not by the text).
pub const EXIT_TEXT: &str = "~~ksr~exit~~";

thread_local! {
    /// Set by `exit` (1) or `drop` (2) during the current handler.
    pub static EXIT: Cell<u8> = const { Cell::new(0) };
    /// Prepared calls by a hash of (function, arguments), each with its key (checked,
    /// so a hash collision is a miss, never a wrong call).
    static CALLS: RefCell<HashMap<u64, (CallKey, Rc<CallOp>)>> = RefCell::new(HashMap::new());
}

/// Entries a cache may hold before it is emptied (arguments built from message
/// data would otherwise grow it without bound).
const CACHE_MAX: usize = 1024;

enum KeyArg {
    Int(i64),
    Str(String),
}

struct CallKey {
    name: String,
    args: Vec<KeyArg>,
}

pub fn rt(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(msg.into())
}

fn arg_of(v: &Value) -> mlua::Result<KeyArg> {
    Ok(match v {
        Value::Integer(i) => KeyArg::Int(*i),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => KeyArg::Int(*n as i64),
        Value::Number(n) => KeyArg::Str(n.to_string()),
        Value::String(s) => KeyArg::Str(s.to_str()?.to_string()),
        Value::Boolean(b) => KeyArg::Int(i64::from(*b)),
        other => {
            return Err(rt(format!(
                "a {} cannot be passed to a script function",
                other.type_name()
            )));
        }
    })
}

fn text_arg(args: &[Value], i: usize, what: &str) -> mlua::Result<String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.to_str()?.to_string()),
        Some(Value::Integer(n)) => Ok(n.to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(rt(format!("{what}: string argument {} expected", i + 1))),
    }
}

fn need_ctx<'a, 'm>(ctx: Option<&'a mut Ctx<'m>>, what: &str) -> mlua::Result<&'a mut Ctx<'m>> {
    ctx.ok_or_else(|| rt(format!("{what}: no SIP message is being processed")))
}

fn lua_value(lua: &Lua, v: PvValue) -> mlua::Result<Value> {
    Ok(match v {
        PvValue::Null => Value::Nil,
        PvValue::Int(i) => Value::Integer(i),
        PvValue::Str(s) => Value::String(lua.create_string(&s)?),
    })
}

fn pv_spec(text: &str) -> mlua::Result<Rc<PvSpec>> {
    kemi::pv_spec(text).map_err(rt)
}

fn pv_set(ctx: &mut Ctx, text: &str, v: PvValue) -> mlua::Result<Value> {
    Ok(Value::Integer(i64::from(
        kemi::pv_set(ctx, text, v).map_err(rt)?,
    )))
}

/// FNV-1a, 64 bits, over `bytes` continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache hash of a call, from the Lua values as they are (no allocation); None
/// for other arguments (floats: prepared anew each time).
fn call_hash(name: &str, args: &[Value]) -> mlua::Result<Option<u64>> {
    let mut h = fnv(0xcbf2_9ce4_8422_2325, name.as_bytes());
    for a in args {
        h = match a {
            Value::Integer(i) => fnv(fnv(h, b"i"), &i.to_le_bytes()),
            Value::Boolean(b) => fnv(fnv(h, b"i"), &i64::from(*b).to_le_bytes()),
            Value::String(s) => fnv(fnv(h, b"s"), &s.as_bytes()),
            _ => return Ok(None),
        };
    }
    Ok(Some(h))
}

/// Whether a cached key is this call.
fn same_call(k: &CallKey, name: &str, args: &[Value]) -> bool {
    k.name == name
        && k.args.len() == args.len()
        && k.args.iter().zip(args).all(|(k, a)| match (k, a) {
            (KeyArg::Int(x), Value::Integer(y)) => x == y,
            (KeyArg::Int(x), Value::Boolean(y)) => *x == i64::from(*y),
            (KeyArg::Str(x), Value::String(y)) => x.as_bytes() == &*y.as_bytes(),
            _ => false,
        })
}

/// Call the configuration function `name` with Lua arguments.
fn call_cfg(ctx: &mut Ctx, name: &str, args: &[Value]) -> mlua::Result<Value> {
    let hash = call_hash(name, args)?;
    let cached = hash.and_then(|h| {
        CALLS.with(|c| {
            c.borrow()
                .get(&h)
                .filter(|(k, _)| same_call(k, name, args))
                .map(|(_, op)| op.clone())
        })
    });
    let op = match cached {
        Some(op) => op,
        None => {
            let key = CallKey {
                name: name.to_string(),
                args: args.iter().map(arg_of).collect::<mlua::Result<_>>()?,
            };
            let argv = key
                .args
                .iter()
                .map(|a| Arg {
                    value: match a {
                        KeyArg::Int(i) => ArgValue::Int(*i),
                        KeyArg::Str(s) => ArgValue::Str(s.clone()),
                    },
                    span: Span::default(),
                })
                .collect();
            let op = Rc::new(fixup::dyn_call(name, argv).map_err(rt)?);
            if let Some(h) = hash {
                CALLS.with(|c| {
                    let mut c = c.borrow_mut();
                    if c.len() >= CACHE_MAX {
                        c.clear();
                    }
                    c.insert(h, (key, op.clone()));
                });
            }
            op
        }
    };
    let r = run_dyn_call(ctx, &op).map_err(rt)?;
    Ok(Value::Integer(i64::from(r)))
}

fn level_of(v: Option<&Value>) -> mlua::Result<i32> {
    Ok(match v {
        Some(Value::Integer(i)) => *i as i32,
        Some(Value::String(s)) => {
            let name = s.to_str()?;
            level_by_name(&name).ok_or_else(|| rt(format!("log: unknown level '{}'", &*name)))?
        }
        _ => return Err(rt("log: level and message expected")),
    })
}

/// `C.f` outside a message.
pub fn idle(lua: &Lua, (id, args): (i64, Variadic<Value>)) -> mlua::Result<Value> {
    call(lua, None, id, &args)
}

/// Run API function `id` with `args`, for the message in `ctx` if there is one.
pub fn call(lua: &Lua, ctx: Option<&mut Ctx>, id: i64, args: &[Value]) -> mlua::Result<Value> {
    let Some(api) = usize::try_from(id).ok().and_then(|i| APIS.get(i)) else {
        return Err(rt(format!("no API function {id}")));
    };
    let what = api.name();
    match api.op {
        Op::Log(level) => {
            let text = text_arg(args, 0, what)?;
            log::emit(level, &text);
            Ok(Value::Nil)
        }
        Op::LogAt => {
            let level = level_of(args.first())?;
            let text = text_arg(args, 1, what)?;
            log::emit(level, &text);
            Ok(Value::Nil)
        }
        Op::Cfg(name) => call_cfg(need_ctx(ctx, what)?, name, args),
        Op::Modf => {
            let name = text_arg(args, 0, what)?;
            call_cfg(need_ctx(ctx, what)?, &name, &args[1..])
        }
        Op::Exit | Op::Drop => {
            let drop = matches!(api.op, Op::Drop);
            EXIT.with(|e| e.set(if drop { 2 } else { 1 }));
            if let Some(ctx) = ctx {
                ctx.run_flags |= RUN_EXIT | if drop { RUN_DROP } else { 0 };
            }
            Err(rt(EXIT_TEXT))
        }
        Op::IsMyself => Ok(Value::Boolean(is_myself_uri(&text_arg(args, 0, what)?))),
        Op::IsMyselfRuri => {
            let ctx = need_ctx(ctx, what)?;
            Ok(Value::Boolean(is_myself_uri(ctx.ruri())))
        }
        Op::IsMethod => {
            let list = text_arg(args, 0, what)?;
            Ok(Value::Boolean(method_is(need_ctx(ctx, what)?, &list)))
        }
        Op::IsMethodNamed(m) => Ok(Value::Boolean(method_is(need_ctx(ctx, what)?, m))),
        Op::PvGet | Op::PvGetE | Op::PvIsNull => {
            let spec = match args.first() {
                Some(Value::String(s)) => pv_spec(&s.to_str()?)?,
                _ => pv_spec(&text_arg(args, 0, what)?)?,
            };
            let v = pv::get(need_ctx(ctx, what)?, &spec);
            match api.op {
                Op::PvIsNull => Ok(Value::Boolean(v.is_null())),
                Op::PvGetE if v.is_null() => lua_value(lua, PvValue::Str(String::new())),
                _ => lua_value(lua, v),
            }
        }
        Op::PvSets => {
            let text = text_arg(args, 0, what)?;
            let v = text_arg(args, 1, what)?;
            pv_set(need_ctx(ctx, what)?, &text, PvValue::Str(v))
        }
        Op::PvSeti => {
            let text = text_arg(args, 0, what)?;
            let v = match args.get(1) {
                Some(Value::Integer(i)) => *i,
                Some(Value::Number(n)) => *n as i64,
                Some(Value::String(s)) => s
                    .to_str()?
                    .trim()
                    .parse()
                    .map_err(|_| rt(format!("{what}: integer expected")))?,
                _ => return Err(rt(format!("{what}: integer argument 2 expected"))),
            };
            pv_set(need_ctx(ctx, what)?, &text, PvValue::Int(v))
        }
        Op::PvUnset => {
            let text = text_arg(args, 0, what)?;
            pv_set(need_ctx(ctx, what)?, &text, PvValue::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_code_names_both_trees() {
        let code = publish_code();
        assert!(code.contains("put(sr, \"pv.get\","));
        assert!(code.contains("put(KSR, \"x.modf\","));
        let lua = Lua::new();
        let c = lua.create_table().unwrap();
        lua.load(code).call::<()>(c).unwrap();
        let t: mlua::Table = lua.globals().get("KSR").unwrap();
        let pvt: mlua::Table = t.get("pv").unwrap();
        assert!(matches!(
            pvt.get::<Value>("get").unwrap(),
            Value::Function(_)
        ));
    }
}

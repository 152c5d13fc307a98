//! The `KSR` module: the shared API table (`openser_core::script::kemi::APIS`, the
//! same functions app_lua publishes) made into Python functions. Each is a
//! `functools.partial` of one native function over the API id; the native function
//! reaches the running handler's message through the slot `interp` keeps.

use crate::interp::with_ctx;
use openser_core::log;
use openser_core::script::ctx::{RUN_DROP, RUN_EXIT};
use openser_core::script::kemi::{self, APIS, KArg, Op};
use openser_core::script::{Ctx, PvValue};
use pyo3::exceptions::{PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString, PyTuple};
use std::cell::Cell;

thread_local! {
    /// Set by `exit` (1) or `drop` (2) during the current handler.
    pub static EXIT: Cell<u8> = const { Cell::new(0) };
}

/// Python run once per process: builds `KSR` (and `KSR.pv`, `KSR.tm`, … as
/// submodules, importable as Kamailio scripts do) from (path, id) pairs, and the
/// `msg` object handlers get (Kamailio passes its message object; here a small one
/// whose methods go through `KSR`).
pub const PUBLISH_CODE: &str = r#"
import sys, types, functools

class _Msg:
    __slots__ = ()
    def getMethod(self): return sys.modules["KSR"].pv.get("$rm")
    def getRURI(self): return sys.modules["KSR"].pv.get("$ru")
    def getStatus(self): return sys.modules["KSR"].pv.get("$rs")
    def rewrite_ruri(self, uri): return sys.modules["KSR"].pv.sets("$ru", uri)
    def set_dst_uri(self, uri): return sys.modules["KSR"].pv.sets("$du", uri)
    def call(self, name, *args): return sys.modules["KSR"].x.modf(name, *args)

def _make(call, apis):
    ksr = types.ModuleType("KSR", "OpenSER's KEMI API (Kamailio names)")
    for path, i in apis:
        parts = path.split(".")
        t = ksr
        prefix = "KSR"
        for p in parts[:-1]:
            prefix += "." + p
            sub = getattr(t, p, None)
            if sub is None:
                sub = types.ModuleType(prefix)
                setattr(t, p, sub)
                sys.modules[prefix] = sub
            t = sub
        setattr(t, parts[-1], functools.partial(call, i))
    ksr._msg = _Msg()
    sys.modules["KSR"] = ksr

class TimeLimit(BaseException):
    """A handler ran past app_python's time_limit."""

_limit_ms = 0
_tick = None

def _on_alarm(signum, frame):
    if _tick is not None and _tick():
        raise TimeLimit("time limit (%d ms of CPU) exceeded" % _limit_ms)

def _start(tick, ms, period):
    global _tick, _limit_ms
    import signal
    _tick = tick
    _limit_ms = ms
    signal.signal(signal.SIGVTALRM, _on_alarm)
    # SA_RESTART: a tick landing in a system call of the worker restarts it.
    signal.siginterrupt(signal.SIGVTALRM, False)
    signal.setitimer(signal.ITIMER_VIRTUAL, period, period)
"#;

/// The text `KSR.x.exit()` raises (a `SystemExit`, so `except Exception:` in a
/// script does not catch it; recognised by the flag, not the text).
pub const EXIT_TEXT: &str = "KSR.x.exit";

fn rt(msg: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(msg.into())
}

/// A Python argument in the neutral form (the string borrowed from Python).
fn karg<'a>(v: &'a Bound<'_, PyAny>, f: &'a mut String) -> PyResult<KArg<'a>> {
    if let Ok(b) = v.downcast::<PyBool>() {
        return Ok(KArg::Int(i64::from(b.is_true())));
    }
    if let Ok(i) = v.downcast::<PyInt>() {
        return Ok(KArg::Int(i.extract()?));
    }
    if let Ok(s) = v.downcast::<PyString>() {
        return Ok(KArg::Str(s.to_str()?));
    }
    if let Ok(x) = v.downcast::<PyFloat>() {
        let x = x.value();
        if x.fract() == 0.0 && x.abs() < 9.0e15 {
            return Ok(KArg::Int(x as i64));
        }
        *f = x.to_string();
        return Ok(KArg::Str(f.as_str()));
    }
    Err(PyTypeError::new_err(format!(
        "a {} cannot be passed to a script function",
        v.get_type().name()?
    )))
}

fn text(args: &Bound<'_, PyTuple>, i: usize, what: &str) -> PyResult<String> {
    let v = args
        .get_item(i)
        .map_err(|_| PyTypeError::new_err(format!("{what}: argument {} missing", i + 1)))?;
    if let Ok(s) = v.downcast::<PyString>() {
        return Ok(s.to_str()?.to_string());
    }
    if v.downcast::<PyInt>().is_ok() || v.downcast::<PyFloat>().is_ok() {
        return Ok(v.str()?.to_str()?.to_string());
    }
    Err(PyTypeError::new_err(format!(
        "{what}: string argument {} expected",
        i + 1
    )))
}

/// Argument `i` as text, borrowed from a Python string (converted from a number).
fn text_of<'a, 'py: 'a>(
    args: &Bound<'py, PyTuple>,
    i: usize,
    what: &str,
    slot: &'a mut Option<Bound<'py, PyAny>>,
) -> PyResult<std::borrow::Cow<'a, str>> {
    let v = args
        .get_item(i)
        .map_err(|_| PyTypeError::new_err(format!("{what}: argument {} missing", i + 1)))?;
    if v.downcast::<PyString>().is_err() {
        return text(args, i, what).map(Into::into);
    }
    let v = slot.insert(v);
    Ok(v.downcast::<PyString>()?.to_str()?.into())
}

fn no_msg(what: &str) -> PyErr {
    rt(format!("{what}: no SIP message is being processed"))
}

/// Run `f` on the running handler's context; the error if there is none.
fn on_ctx<R>(what: &str, f: impl FnOnce(&mut Ctx) -> PyResult<R>) -> PyResult<R> {
    with_ctx(f).unwrap_or_else(|| Err(no_msg(what)))
}

fn py_value(py: Python<'_>, v: PvValue) -> PyObject {
    match v {
        PvValue::Null => py.None(),
        PvValue::Int(i) => i
            .into_pyobject(py)
            .map_or_else(|_| py.None(), |o| o.into_any().unbind()),
        PvValue::Str(s) => PyString::new(py, &s).into_any().unbind(),
    }
}

fn int(py: Python<'_>, i: i64) -> PyResult<PyObject> {
    Ok(i.into_pyobject(py)?.into_any().unbind())
}

fn boolean(py: Python<'_>, b: bool) -> PyObject {
    PyBool::new(py, b).to_owned().into_any().unbind()
}

/// Arguments a configuration function call converts without a heap allocation.
const INLINE_ARGS: usize = 4;

/// Call the configuration function `name` with the Python arguments from `from`.
fn cfg(
    py: Python<'_>,
    what: &str,
    name: &str,
    args: &Bound<'_, PyTuple>,
    from: usize,
) -> PyResult<PyObject> {
    let n = args.len().saturating_sub(from);
    if n > INLINE_ARGS {
        let items: Vec<Bound<'_, PyAny>> = args.iter().skip(from).collect();
        let mut floats: Vec<String> = vec![String::new(); items.len()];
        let kargs = items
            .iter()
            .zip(floats.iter_mut())
            .map(|(v, f)| karg(v, f))
            .collect::<PyResult<Vec<_>>>()?;
        let r = on_ctx(what, |ctx| kemi::call_cfg(ctx, name, &kargs).map_err(rt))?;
        return int(py, i64::from(r));
    }
    // The common case on the stack: a handful of arguments, no Vec per call.
    let items: [Option<Bound<'_, PyAny>>; INLINE_ARGS] = std::array::from_fn(|k| {
        if k < n {
            args.get_item(from + k).ok()
        } else {
            None
        }
    });
    let mut floats: [String; INLINE_ARGS] = Default::default();
    let mut kargs = [KArg::Int(0); INLINE_ARGS];
    for ((slot, v), f) in kargs
        .iter_mut()
        .zip(items.iter().flatten())
        .zip(floats.iter_mut())
    {
        *slot = karg(v, f)?;
    }
    let r = on_ctx(what, |ctx| {
        kemi::call_cfg(ctx, name, &kargs[..n]).map_err(rt)
    })?;
    int(py, i64::from(r))
}

/// The native function behind every `KSR` function: API `id` with `args`.
#[pyfunction]
#[pyo3(signature = (id, *args))]
pub fn ksr_call(py: Python<'_>, id: usize, args: &Bound<'_, PyTuple>) -> PyResult<PyObject> {
    let Some(api) = APIS.get(id) else {
        return Err(rt(format!("no API function {id}")));
    };
    let what = api.name();
    match api.op {
        Op::Log(level) => {
            log::emit(level, &text(args, 0, what)?);
            Ok(py.None())
        }
        Op::LogAt => {
            let l = args.get_item(0)?;
            let level = match l.downcast::<PyInt>() {
                Ok(i) => i.extract::<i32>()?,
                Err(_) => {
                    let n = text(args, 0, what)?;
                    kemi::level_by_name(&n)
                        .ok_or_else(|| rt(format!("log: unknown level '{n}'")))?
                }
            };
            log::emit(level, &text(args, 1, what)?);
            Ok(py.None())
        }
        Op::Cfg(name) => cfg(py, what, name, args, 0),
        Op::Modf => {
            let name = text(args, 0, what)?;
            cfg(py, what, &name, args, 1)
        }
        Op::Exit | Op::Drop => {
            let drop = matches!(api.op, Op::Drop);
            EXIT.with(|e| e.set(if drop { 2 } else { 1 }));
            let _ = with_ctx(|ctx| ctx.run_flags |= RUN_EXIT | if drop { RUN_DROP } else { 0 });
            Err(PySystemExit::new_err(EXIT_TEXT))
        }
        Op::IsMyself => Ok(boolean(py, kemi::is_myself_uri(&text(args, 0, what)?))),
        Op::IsMyselfRuri => {
            let b = on_ctx(what, |ctx| Ok(kemi::is_myself_uri(ctx.ruri())))?;
            Ok(boolean(py, b))
        }
        Op::IsMethod => {
            let list = text(args, 0, what)?;
            let b = on_ctx(what, |ctx| Ok(kemi::method_is(ctx, &list)))?;
            Ok(boolean(py, b))
        }
        Op::IsMethodNamed(m) => {
            let b = on_ctx(what, |ctx| Ok(kemi::method_is(ctx, m)))?;
            Ok(boolean(py, b))
        }
        Op::PvGet | Op::PvGetE | Op::PvIsNull => {
            let mut slot = None;
            let name = text_of(args, 0, what, &mut slot)?;
            let v = on_ctx(what, |ctx| kemi::pv_get(ctx, &name).map_err(rt))?;
            Ok(match api.op {
                Op::PvIsNull => boolean(py, v.is_null()),
                Op::PvGetE if v.is_null() => PyString::new(py, "").into_any().unbind(),
                _ => py_value(py, v),
            })
        }
        Op::PvSets => {
            let mut slot = None;
            let name = text_of(args, 0, what, &mut slot)?;
            let v = text(args, 1, what)?;
            let r = on_ctx(what, |ctx| {
                kemi::pv_set(ctx, &name, PvValue::Str(v)).map_err(rt)
            })?;
            int(py, i64::from(r))
        }
        Op::PvSeti => {
            let name = text(args, 0, what)?;
            let a = args.get_item(1)?;
            let v = match a.downcast::<PyInt>() {
                Ok(i) => i.extract::<i64>()?,
                Err(_) => text(args, 1, what)?
                    .trim()
                    .parse()
                    .map_err(|_| PyTypeError::new_err(format!("{what}: integer expected")))?,
            };
            let r = on_ctx(what, |ctx| {
                kemi::pv_set(ctx, &name, PvValue::Int(v)).map_err(rt)
            })?;
            int(py, i64::from(r))
        }
        Op::PvUnset => {
            let name = text(args, 0, what)?;
            let r = on_ctx(what, |ctx| {
                kemi::pv_set(ctx, &name, PvValue::Null).map_err(rt)
            })?;
            int(py, i64::from(r))
        }
    }
}

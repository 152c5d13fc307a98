//! The per-process Python interpreter and the bracket every handler runs in.
//!
//! CPython is initialised in `child_init`, in each process after fork (never in the
//! attendant before fork: its runtime does not survive fork). The script is run as a
//! module, its `mod_init()` returns the handler object (Kamailio app_python3's
//! shape), and the KEMI handlers are its methods.
//!
//! The message without `unsafe`: pyo3 has no scoped callbacks, so for the length of
//! a handler the message and the rest of the context are moved into a per-process
//! slot (a stack, as a branch route runs inside `t_relay` inside the request route)
//! and the caller's `Ctx` holds a placeholder message; a `KSR` function takes the top
//! entry out, builds a `Ctx` over it, runs, and puts it back; the bracket moves
//! everything back into the caller's `Ctx` at the end. Nothing in the slot borrows.

use crate::api;
use openser_core::parser::SipMsg;
use openser_core::script::Ctx;
use openser_core::script::avp::AvpList;
use openser_core::script::kemi::{self, Handler, KemiInterp};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyList, PyModule, PyString, PyTuple};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::path::Path;
use std::rc::Rc;

thread_local! {
    static INTERP: RefCell<Option<Rc<Interp>>> = const { RefCell::new(None) };
    /// Whether this process may run Python (set by `child_init`).
    static ALLOWED: Cell<bool> = const { Cell::new(false) };
    /// Handlers running (a branch route inside `t_relay` inside the request route).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The contexts of the running handlers, innermost last (boxed: a `KSR` call
    /// takes the top one out and puts it back, moving a pointer, not the message).
    #[allow(clippy::vec_box)] // the box is the point: popped and pushed per KSR call
    static HELD: RefCell<Vec<Box<Held>>> = const { RefCell::new(Vec::new()) };
    /// A free slot entry holding the placeholder message a parked `Ctx` gets (parsed
    /// once per process; reused, so a handler run allocates nothing here).
    static SPARE: RefCell<Option<Box<Held>>> = const { RefCell::new(None) };
    /// `time_limit` ticks seen by the running outermost handler, and the number that
    /// stops it (`timer_plan`).
    static TICKS: Cell<u32> = const { Cell::new(0) };
    static TICKS_MAX: Cell<u32> = const { Cell::new(u32::MAX) };
}

/// A `time_limit` tick (the `SIGVTALRM` handler's question): whether the running
/// handler has had its CPU time. Ticks outside a handler count for nothing.
#[pyfunction]
fn time_tick() -> bool {
    if DEPTH.get() == 0 {
        return false;
    }
    let n = TICKS.get().saturating_add(1);
    TICKS.set(n);
    n >= TICKS_MAX.get()
}

/// A context moved out of its `Ctx` for the length of a handler.
struct Held {
    msg: SipMsg,
    st: State,
}

/// The owned part of a `Ctx` (everything but the message borrow).
#[derive(Default)]
struct State {
    route_type: u32,
    avps: AvpList,
    branches: Vec<openser_core::script::ctx::Branch>,
    ruri_q: i32,
    ruri_bflags: u32,
    sflags: u32,
    retcode: i32,
    run_flags: u32,
    branch_idx: u32,
    reply_code: u32,
}

impl State {
    fn take_from(&mut self, c: &mut Ctx) {
        self.route_type = c.route_type;
        self.avps = std::mem::take(&mut c.avps);
        self.branches = std::mem::take(&mut c.branches);
        self.ruri_q = c.ruri_q;
        self.ruri_bflags = c.ruri_bflags;
        self.sflags = c.sflags;
        self.retcode = c.retcode;
        self.run_flags = c.run_flags;
        self.branch_idx = c.branch_idx;
        self.reply_code = c.reply_code;
    }

    fn put_into(&mut self, c: &mut Ctx) {
        c.route_type = self.route_type;
        c.avps = std::mem::take(&mut self.avps);
        c.branches = std::mem::take(&mut self.branches);
        c.ruri_q = self.ruri_q;
        c.ruri_bflags = self.ruri_bflags;
        c.sflags = self.sflags;
        c.retcode = self.retcode;
        c.run_flags = self.run_flags;
        c.branch_idx = self.branch_idx;
        c.reply_code = self.reply_code;
    }
}

fn spare() -> Result<Box<Held>, String> {
    if let Some(h) = SPARE.with(|s| s.borrow_mut().take()) {
        return Ok(h);
    }
    let msg =
        SipMsg::parse(b"OPTIONS sip:placeholder.invalid SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .map_err(|e| format!("placeholder message: {e:?}"))?;
    Ok(Box::new(Held {
        msg,
        st: State::default(),
    }))
}

/// Park `ctx`'s message and state in the slot (the message swapped with the spare
/// entry's placeholder).
fn park(ctx: &mut Ctx) -> Result<(), String> {
    let mut h = spare()?;
    std::mem::swap(&mut *ctx.msg, &mut h.msg);
    h.st.take_from(ctx);
    HELD.with(|s| s.borrow_mut().push(h));
    Ok(())
}

/// Move the innermost parked context back into `ctx`.
fn unpark(ctx: &mut Ctx) -> bool {
    let Some(mut h) = HELD.with(|s| s.borrow_mut().pop()) else {
        return false;
    };
    std::mem::swap(&mut *ctx.msg, &mut h.msg);
    h.st.put_into(ctx);
    SPARE.with(|s| *s.borrow_mut() = Some(h));
    true
}

/// Run `f` on the message of the innermost running handler; None outside a handler.
pub fn with_ctx<R>(f: impl FnOnce(&mut Ctx) -> R) -> Option<R> {
    let mut h = HELD.with(|s| s.borrow_mut().pop())?;
    let r = {
        let Held { msg, st } = &mut *h;
        let mut ctx = Ctx::new(msg, st.route_type);
        st.put_into(&mut ctx);
        let r = f(&mut ctx);
        st.take_from(&mut ctx);
        r
    };
    HELD.with(|s| s.borrow_mut().push(h));
    Some(r)
}

/// One process's Python state.
pub struct Interp {
    /// The object `mod_init()` returned.
    pub obj: Py<PyAny>,
    /// The `msg` argument handlers get.
    pub msg: Py<PyAny>,
    generation: u64,
    /// Handler index → method name (KEMI failure/reply/branch routes).
    names: RefCell<HashMap<usize, String>>,
    /// `ksr_request_route` / `ksr_reply_route` of the handler object (bound methods,
    /// looked up when the script is loaded).
    pub request_fn: Option<Py<PyAny>>,
    pub reply_fn: Option<Py<PyAny>>,
}

/// How a handler ended (`Done` with its value: an int, a bool as 1/−1, anything
/// else 1).
pub type Outcome = kemi::Outcome<i32>;

/// An exception as Python prints it: the traceback, then the type and message
/// (a syntax error names the file and line).
pub fn describe(py: Python<'_>, e: &PyErr) -> String {
    let tb = e
        .traceback(py)
        .and_then(|t| t.format().ok())
        .unwrap_or_default();
    let mut s = format!("{tb}{e}");
    if let Ok(v) = e.value(py).getattr("lineno")
        && let Ok(line) = v.extract::<i64>()
        && let Ok(f) = e.value(py).getattr("filename")
        && let Ok(f) = f.extract::<String>()
        && e.is_instance_of::<pyo3::exceptions::PySyntaxError>(py)
    {
        s = format!("{f}:{line}: {s}");
    }
    s.trim_end().to_string()
}

/// Make this process's interpreter (`child_init`; the trial child of `load`).
pub fn allow() {
    ALLOWED.with(|a| a.set(true));
    pyo3::prepare_freethreaded_python();
}

fn cstring(s: &str) -> PyResult<CString> {
    CString::new(s).map_err(|_| pyo3::exceptions::PyValueError::new_err("NUL in text"))
}

/// Compile the script without running it (the `load` parameter's check).
pub fn compile(py: Python<'_>, file: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read Python script {}: {e}", file.display()))?;
    py.import("builtins")
        .and_then(|b| {
            b.getattr("compile")?
                .call1((src, file.display().to_string(), "exec"))
        })
        .map(|_| ())
        .map_err(|e| format!("Python script {}: {}", file.display(), describe(py, &e)))
}

/// The KSR module (made once per process, kept in `sys.modules`).
fn publish(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    let modules = sys.getattr("modules")?;
    if modules.contains("KSR")? {
        return Ok(());
    }
    let code = cstring(api::PUBLISH_CODE)?;
    let m = PyModule::from_code(py, &code, c"<app_python>", c"_app_python")?;
    let call = wrap_pyfunction!(api::ksr_call, py)?;
    let list = PyList::empty(py);
    for (id, a) in openser_core::script::kemi::APIS.iter().enumerate() {
        if !a.ksr.is_empty() {
            list.append((a.ksr, id))?;
        }
    }
    m.getattr("_make")?.call1((call, list))?;
    // The time limit's timer runs for the life of the process (a handler run only
    // resets its tick count: no system call per request).
    if let Some((period, ticks)) = crate::timer_plan(crate::P.time_limit.get()) {
        TICKS_MAX.set(ticks);
        let tick = wrap_pyfunction!(time_tick, py)?;
        m.getattr("_start")?
            .call1((tick, crate::P.time_limit.get(), period))?;
    }
    Ok(())
}

impl Interp {
    /// Run the script as a module and call its `mod_init()`.
    pub fn new(py: Python<'_>, file: &Path, generation: u64) -> Result<Interp, String> {
        publish(py).map_err(|e| describe(py, &e))?;
        let src = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read Python script {}: {e}", file.display()))?;
        let err = |e: PyErr| format!("Python script {}: {}", file.display(), describe(py, &e));
        let code = cstring(&src).map_err(err)?;
        let fname = cstring(&file.display().to_string()).map_err(err)?;
        let modname = cstring(
            file.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("handler"),
        )
        .map_err(err)?;
        let m = PyModule::from_code(py, &code, &fname, &modname).map_err(err)?;
        let init = crate::P.mod_init_function.get();
        let f = m.getattr(init).map_err(|_| {
            format!(
                "Python script {}: no function {init}() (it returns the handler object)",
                file.display()
            )
        })?;
        let obj = f.call0().map_err(err)?;
        if obj.is_none() {
            return Err(format!(
                "Python script {}: {init}() returned None, not the handler object",
                file.display()
            ));
        }
        let msg = py
            .import("KSR")
            .and_then(|k| k.getattr("_msg"))
            .map_err(err)?;
        let method = |name: &str| -> Option<Py<PyAny>> {
            obj.getattr(name)
                .ok()
                .filter(|f| f.is_callable())
                .map(Bound::unbind)
        };
        let i = Interp {
            request_fn: method("ksr_request_route"),
            reply_fn: method("ksr_reply_route"),
            obj: obj.clone().unbind(),
            msg: msg.unbind(),
            generation,
            names: RefCell::new(HashMap::new()),
        };
        i.scan_names(py);
        Ok(i)
    }

    /// Index every public method of the handler object by its handler index.
    fn scan_names(&self, py: Python<'_>) {
        let obj = self.obj.bind(py);
        let Ok(names) = obj.dir() else { return };
        let mut m = self.names.borrow_mut();
        for n in names.iter() {
            let Some(n) = n
                .downcast::<PyString>()
                .ok()
                .and_then(|s| s.to_str().ok().map(str::to_string))
            else {
                continue;
            };
            if n.starts_with('_') {
                continue;
            }
            if obj.getattr(n.as_str()).is_ok_and(|f| f.is_callable()) {
                m.insert(crate::handler_index(&n), n);
            }
        }
    }

    pub fn has_method(&self, name: &str) -> bool {
        Python::with_gil(|py| {
            self.obj
                .bind(py)
                .getattr(name)
                .is_ok_and(|f| f.is_callable())
        })
    }
}

/// The KEMI engine over this interpreter: handlers are methods of the handler object.
impl KemiInterp for Interp {
    const MODULE: &'static str = module_path!();
    const HANDLER: &'static str = "Python method";
    type Value = i32;

    fn current() -> Result<Rc<Interp>, String> {
        current()
    }

    fn defines(&self, name: &str) -> bool {
        self.has_method(name)
    }

    fn has_reply(&self) -> bool {
        self.reply_fn.is_some()
    }

    fn names(&self) -> &RefCell<HashMap<usize, String>> {
        &self.names
    }

    fn rescan(&self) {
        Python::with_gil(|py| self.scan_names(py));
    }

    fn run(ctx: &mut Ctx, h: Handler<'_>) -> Outcome {
        run_with(ctx, |py, i| {
            let f = match h {
                Handler::Request => i.request_fn.as_ref(),
                Handler::Reply => i.reply_fn.as_ref(),
                Handler::Named(name) => return call_method(py, i, name, None),
            };
            match f {
                Some(f) => f.bind(py).call1((i.msg.bind(py),)),
                None => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                    "no Python method {}",
                    h.name()
                ))),
            }
        })
    }
}

/// This process's interpreter, made or rebuilt (when the reload generation moved) if
/// no handler is running. A rebuild that fails keeps the previous one.
pub fn current() -> Result<Rc<Interp>, String> {
    if !ALLOWED.with(Cell::get) {
        return Err("Python is not initialised in this process".into());
    }
    let generation = crate::generation();
    INTERP.with(|cell| {
        let have = cell.borrow().clone();
        match have {
            Some(i) if i.generation == generation || DEPTH.get() > 0 => Ok(i),
            have => match Python::with_gil(|py| {
                let file = crate::script()
                    .ok_or_else(|| "app_python: no script (modparam load)".to_string())?;
                Interp::new(py, file, generation)
            }) {
                Ok(i) => {
                    if have.is_some() {
                        openser_core::log_info!(
                            "Python script reloaded in this process (generation {generation})"
                        );
                    }
                    let i = Rc::new(i);
                    *cell.borrow_mut() = Some(i.clone());
                    Ok(i)
                }
                Err(e) => match have {
                    Some(old) => {
                        openser_core::log_err!(
                            "reloading the Python script failed, the previous one stays: {e}"
                        );
                        let keep = Python::with_gil(|py| Interp {
                            obj: old.obj.clone_ref(py),
                            msg: old.msg.clone_ref(py),
                            generation,
                            names: RefCell::new(old.names.borrow().clone()),
                            request_fn: old.request_fn.as_ref().map(|f| f.clone_ref(py)),
                            reply_fn: old.reply_fn.as_ref().map(|f| f.clone_ref(py)),
                        });
                        let keep = Rc::new(keep);
                        *cell.borrow_mut() = Some(keep.clone());
                        Ok(keep)
                    }
                    None => Err(e),
                },
            },
        }
    })
}

/// The value a handler returned, for the script.
fn rc_of_value(v: &Bound<'_, PyAny>) -> i32 {
    if let Ok(b) = v.downcast::<PyBool>() {
        return if b.is_true() { 1 } else { -1 };
    }
    if let Ok(i) = v.downcast::<PyInt>() {
        return i.extract::<i64>().map_or(1, |i| {
            i.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        });
    }
    1
}

/// Run `body` with the message of `ctx` reachable by the `KSR` functions.
pub fn run_with(
    ctx: &mut Ctx,
    body: impl for<'py> FnOnce(Python<'py>, &Interp) -> PyResult<Bound<'py, PyAny>>,
) -> Outcome {
    let i = match current() {
        Ok(i) => i,
        Err(e) => return Outcome::Error(e),
    };
    if let Err(e) = park(ctx) {
        return Outcome::Error(e);
    }
    let depth = DEPTH.get();
    DEPTH.set(depth + 1);
    let prev_exit = api::EXIT.replace(0);
    let res = Python::with_gil(|py| {
        if depth == 0 {
            // A tick that came while no handler ran is answered (as nothing) before
            // this run's count starts.
            if let Err(e) = py.check_signals() {
                openser_core::log_dbg!("app_python: {}", describe(py, &e));
            }
            TICKS.set(0);
        }
        body(py, &i)
            .map(|v| rc_of_value(&v))
            .map_err(|e| describe(py, &e))
    });
    let exit = api::EXIT.replace(prev_exit);
    DEPTH.set(depth);
    if !unpark(ctx) {
        openser_core::log_crit!("app_python: the message was lost during a handler");
        return Outcome::Error("message lost".into());
    }
    match res {
        _ if exit != 0 => Outcome::Exit,
        Ok(v) => Outcome::Done(v),
        Err(e) => Outcome::Error(e),
    }
}

/// A call of a handler-object method with the `msg` argument (and a parameter).
pub fn call_method<'py>(
    py: Python<'py>,
    i: &Interp,
    name: &str,
    param: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let f = i.obj.bind(py).getattr(name)?;
    let msg = i.msg.bind(py);
    match param {
        Some(p) => f.call1((msg, p)),
        None => f.call1(PyTuple::new(py, [msg])?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> SipMsg {
        SipMsg::parse(
            b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: parked\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    #[test]
    fn a_parked_context_is_reached_and_given_back() {
        let mut m = msg();
        let mut ctx = Ctx::new(&mut m, 1);
        ctx.sflags = 5;
        ctx.retcode = 7;
        assert!(with_ctx(|_| ()).is_none(), "nothing parked yet");
        park(&mut ctx).unwrap();
        // The caller's Ctx holds the placeholder while the handler runs.
        assert_ne!(ctx.msg.callid(), Some("parked"));
        let seen = with_ctx(|c| {
            c.sflags |= 8;
            (c.msg.callid().map(str::to_string), c.retcode)
        });
        assert_eq!(seen, Some((Some("parked".to_string()), 7)));
        // A nested handler parks its own context on top and finds it first.
        let mut inner = msg();
        let mut ictx = Ctx::new(&mut inner, 2);
        ictx.retcode = 9;
        park(&mut ictx).unwrap();
        assert_eq!(with_ctx(|c| c.retcode), Some(9));
        assert!(unpark(&mut ictx));
        assert_eq!(with_ctx(|c| c.retcode), Some(7));
        assert!(unpark(&mut ctx));
        assert_eq!(ctx.msg.callid(), Some("parked"));
        assert_eq!(ctx.sflags, 13);
        assert_eq!(ctx.route_type, 1);
        assert!(!unpark(&mut ctx), "the stack is empty again");
    }
}

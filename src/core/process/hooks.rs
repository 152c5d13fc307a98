//! Hooks through which the module framework plugs into the process model without the
//! core depending on it: per-process initialisation, shutdown, and extra processes
//! (such as the MI FIFO server). All registered in the attendant before forking.

use std::sync::Mutex;

pub type ChildInitFn = fn(rank: i32) -> Result<(), String>;
pub type DestroyFn = fn();
pub type ProcFn = fn() -> !;

static CHILD_INIT: Mutex<Vec<ChildInitFn>> = Mutex::new(Vec::new());
static DESTROY: Mutex<Vec<DestroyFn>> = Mutex::new(Vec::new());
static EXTRA: Mutex<Vec<(String, i32, ProcFn)>> = Mutex::new(Vec::new());

pub fn on_child_init(f: ChildInitFn) {
    CHILD_INIT.lock().unwrap_or_else(|e| e.into_inner()).push(f);
}

/// Destroy hooks run in reverse registration order at shutdown (in the attendant).
pub fn on_destroy(f: DestroyFn) {
    DESTROY.lock().unwrap_or_else(|e| e.into_inner()).push(f);
}

/// An extra process forked by the attendant (described as `desc` in `ps`).
pub fn register_process(desc: &str, rank: i32, f: ProcFn) {
    EXTRA
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((desc.into(), rank, f));
}

pub fn run_child_init(rank: i32) -> Result<(), String> {
    let v = CHILD_INIT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for f in v {
        f(rank)?;
    }
    Ok(())
}

pub fn run_destroy() {
    let v = DESTROY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for f in v.into_iter().rev() {
        f();
    }
}

pub fn extra_processes() -> Vec<(String, i32, ProcFn)> {
    EXTRA.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

//! mqueue (SIP Router 3.1 / Kamailio `modules/mqueue`; not in OpenSER 1.2): message
//! queues in shared memory, for handing work from the SIP workers to other processes
//! (typically a `timer_route` in the timer process) through the config file.
//!
//! `modparam("mqueue", "mqueue", "name=q;size=n")` (repeatable) declares a queue.
//! `size` is the most items it holds; when it is full, adding drops the oldest item
//! (as Kamailio). Without `size` (Kamailio: unbounded) a queue holds `default_size`
//! (1024) items. An item (key and value together) has at most `item_size` (1024)
//! bytes: a queue is a fixed ring of slots allocated at start-up (`queue.rs`).
//!
//! Functions (every route):
//! * `mq_add(queue, key, value)` — append; 1, −1 (unknown queue, item too long);
//! * `mq_fetch(queue)` — take the oldest item into this process's `$mqk(queue)` /
//!   `$mqv(queue)`; 1, −1 when the queue is empty, −2 unknown queue;
//! * `mq_size(queue)` — the number of items, −1 when empty, −2 unknown queue (a route
//!   would stop on 0);
//! * `mq_pv_free(queue)` — forget the fetched item (`$mqk`/`$mqv` become null).
//!
//! Arguments may contain PVs. A constant queue name must be declared (start-up error
//! at `file:line:col` otherwise).
//!
//! PVs: `$mqk(queue)`, `$mqv(queue)` (the item this process fetched last, null before),
//! `$mq_size(queue)`.
//!
//! MI (OpenSIPS's names): `mq_get_size queue`, `mq_fetch queue` (takes an item),
//! `mq_get_sizes`.
//!
//! A process that dies holding a queue's lock is repaired by the attendant: the queue
//! is checked and, if its ring cannot be proven consistent, emptied (logged).

mod queue;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

pub use queue::{Locked, Queue};

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::cfg::pv::{PvParam, PvSpec};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, IntParam, MiExport, ModParamValue, ModuleExports, Param, PvExport,
};
use openser_core::route::ANY_ROUTE;
use openser_core::script::{Ctx, PvValue};
use openser_core::state::Registry;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "mqueue",
    params: &[
        Param::func("mqueue", add_queue),
        Param::int_range("default_size", &DEFAULT_SIZE, 1, 1 << 20),
        Param::int_range("item_size", &ITEM_SIZE, 16, 1 << 16),
    ],
    cmds: &[
        CmdExport::new("mq_add", 3, 3, ANY_ROUTE, cmd_mq_add).fixup(fixup_queue_first),
        CmdExport::new("mq_fetch", 1, 1, ANY_ROUTE, cmd_mq_fetch).fixup(fixup_queue_first),
        CmdExport::new("mq_size", 1, 1, ANY_ROUTE, cmd_mq_size).fixup(fixup_queue_first),
        CmdExport::new("mq_pv_free", 1, 1, ANY_ROUTE, cmd_mq_pv_free).fixup(fixup_queue_first),
    ],
    pvs: &[
        PvExport::new("mqk", pv_mqk),
        PvExport::new("mqv", pv_mqv),
        PvExport::new("mq_size", pv_mq_size),
    ],
    mi: &[
        MiExport::new("mq_get_size", mi_get_size),
        MiExport::new("mq_fetch", mi_fetch),
        MiExport::new("mq_get_sizes", mi_get_sizes).no_input(),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// Items of a queue declared without `size`.
pub static DEFAULT_SIZE: IntParam = IntParam::new(1024);
/// Bytes of an item (key + value).
pub static ITEM_SIZE: IntParam = IntParam::new(1024);

/// A declared queue: name, size (0 = `default_size`).
static DECLARED: Registry<(String, u32)> = Registry::new();

/// The queues, made by `mod_init` before fork.
static QUEUES: OnceLock<Vec<Queue>> = OnceLock::new();

thread_local! {
    /// The item this process fetched last, per queue.
    static FETCHED: RefCell<HashMap<String, (String, String)>> = RefCell::new(HashMap::new());
}

/// A `mqueue` value: `name=q;size=n`.
pub fn parse_def(v: &str) -> Result<(String, u32), String> {
    let mut name = None;
    let mut size = 0u32;
    for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, val) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}': expected key=value"))?;
        match k.trim() {
            "name" => {
                let n = val.trim();
                if n.is_empty() {
                    return Err("empty queue name".into());
                }
                name = Some(n.to_string());
            }
            "size" => {
                size = val
                    .trim()
                    .parse()
                    .map_err(|_| format!("size '{}' is not a number", val.trim()))?;
            }
            other => return Err(format!("unknown attribute '{other}' (name, size)")),
        }
    }
    let name = name.ok_or("no queue name (name=...)")?;
    Ok((name, size))
}

fn add_queue(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("a string expected".into());
    };
    let (name, size) = parse_def(s)?;
    let mut all = DECLARED.lock();
    if all.iter().any(|(n, _)| *n == name) {
        return Err(format!("queue '{name}' declared twice"));
    }
    all.push((name, size));
    Ok(())
}

fn mod_init() -> Result<(), String> {
    let mut qs = Vec::new();
    for (name, size) in DECLARED.lock().iter() {
        let cap = if *size == 0 {
            DEFAULT_SIZE.get_u32()
        } else {
            *size
        };
        let q = Queue::new(name, cap, ITEM_SIZE.get() as usize)
            .ok_or_else(|| format!("mqueue: no shared memory for queue '{name}'"))?;
        qs.push(q);
    }
    if QUEUES.set(qs).is_ok() {
        for q in QUEUES.get().into_iter().flatten() {
            shm::register_repair(
                q.lock_addr(),
                size_of::<shm::FastLock>(),
                "mqueue queue",
                repair_queue,
            );
        }
    }
    Ok(())
}

/// Repair hook: a process died holding a queue's lock.
fn repair_queue(lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let q = QUEUES
        .get()
        .and_then(|qs| qs.iter().find(|q| q.lock_addr() == lock))
        .ok_or_else(|| format!("mqueue: no queue lock at {lock:#x}"))?;
    let l = q
        .adopt(g)
        .ok_or("mqueue: the guard is not the queue's lock")?;
    Ok(l.repair())
}

/// The queue `name`.
pub fn queue(name: &str) -> Option<&'static Queue> {
    QUEUES.get()?.iter().find(|q| q.name == name)
}

fn is_declared(name: &str) -> bool {
    DECLARED.lock().iter().any(|(n, _)| n == name)
}

/// Default fixup; a constant queue name (first argument) must be declared.
fn fixup_queue_first(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    if let ArgValue::Str(s) | ArgValue::Ident(s) = &args[0].value
        && !s.contains('$')
        && !is_declared(s)
    {
        return Err(format!("mqueue '{s}' is not declared"));
    }
    openser_core::script::fixup::default_fixup(args)
}

/// Append an item: 1, −1.
pub fn add(name: &str, key: &str, value: &str) -> i32 {
    let Some(q) = queue(name) else {
        openser_core::log_err!("mqueue not found: {name}");
        return -1;
    };
    if key.len() + value.len() > q.item_bytes() {
        openser_core::log_err!(
            "mqueue {name}: item of {} bytes, more than item_size {}",
            key.len() + value.len(),
            q.item_bytes()
        );
        return -1;
    }
    if q.lock().push(key.as_bytes(), value.as_bytes()) {
        openser_core::log_dbg!("mqueue {name} full: the oldest item was dropped");
    }
    1
}

/// Take the oldest item of `name`: `Ok(None)` when empty, `Err` for an unknown queue.
pub fn fetch(name: &str) -> Result<Option<(String, String)>, String> {
    let q = queue(name).ok_or_else(|| format!("mqueue not found: {name}"))?;
    let item = q.lock().pop();
    Ok(item.map(|(k, v)| {
        (
            String::from_utf8_lossy(&k).into_owned(),
            String::from_utf8_lossy(&v).into_owned(),
        )
    }))
}

/// Items in `name`, `None` for an unknown queue.
pub fn size(name: &str) -> Option<u32> {
    queue(name).map(|q| q.lock().len())
}

fn cmd_mq_add(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let name = ctx.arg_str(&args[0]);
    let key = ctx.arg_str(&args[1]);
    let value = ctx.arg_str(&args[2]);
    add(&name, &key, &value)
}

fn cmd_mq_fetch(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let name = ctx.arg_str(&args[0]);
    match fetch(&name) {
        Ok(Some(item)) => {
            FETCHED.with(|f| f.borrow_mut().insert(name, item));
            1
        }
        Ok(None) => {
            FETCHED.with(|f| f.borrow_mut().remove(&name));
            -1
        }
        Err(e) => {
            openser_core::log_err!("{e}");
            -2
        }
    }
}

fn cmd_mq_size(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let name = ctx.arg_str(&args[0]);
    match size(&name) {
        Some(0) => -1,
        Some(n) => n.min(i32::MAX as u32) as i32,
        None => {
            openser_core::log_err!("mqueue not found: {name}");
            -2
        }
    }
}

fn cmd_mq_pv_free(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let name = ctx.arg_str(&args[0]);
    FETCHED.with(|f| f.borrow_mut().remove(&name));
    1
}

fn pv_queue_name(ctx: &mut Ctx, pv: &PvSpec) -> Option<String> {
    match &pv.param {
        Some(PvParam::Name(n)) => Some(n.clone()),
        Some(PvParam::Pv(inner)) => Some(ctx.get_pv(inner).to_text()),
        _ => None,
    }
}

fn fetched(ctx: &mut Ctx, pv: &PvSpec, value: bool) -> PvValue {
    let Some(name) = pv_queue_name(ctx, pv) else {
        return PvValue::Null;
    };
    FETCHED.with(|f| {
        f.borrow().get(&name).map_or(PvValue::Null, |(k, v)| {
            PvValue::Str(if value { v.clone() } else { k.clone() })
        })
    })
}

fn pv_mqk(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    fetched(ctx, pv, false)
}

fn pv_mqv(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    fetched(ctx, pv, true)
}

fn pv_mq_size(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    pv_queue_name(ctx, pv)
        .and_then(|n| size(&n))
        .map_or(PvValue::Null, |n| PvValue::Int(i64::from(n)))
}

// ---------------------------------------------------------------------------
// MI

fn queue_arg(args: &[MiArg]) -> Result<&str, MiReply> {
    match args {
        [a] if !a.value.trim().is_empty() => Ok(a.value.trim()),
        _ => Err(MiReply::err(400, "Too few or too many arguments")),
    }
}

fn size_node(q: &Queue) -> MiNode {
    MiNode::new("queue", "")
        .attr("name", q.name.clone())
        .attr("size", q.lock().len().to_string())
        .attr("capacity", q.capacity().to_string())
        .attr("dropped", q.dropped().to_string())
}

fn mi_get_size(args: &[MiArg]) -> MiReply {
    let name = match queue_arg(args) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match queue(name) {
        Some(q) => MiReply::ok(vec![size_node(q)]),
        None => MiReply::err(404, "No such queue"),
    }
}

fn mi_get_sizes(_: &[MiArg]) -> MiReply {
    MiReply::ok(QUEUES.get().into_iter().flatten().map(size_node).collect())
}

fn mi_fetch(args: &[MiArg]) -> MiReply {
    let name = match queue_arg(args) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match fetch(name) {
        Ok(Some((k, v))) => MiReply::ok(vec![MiNode::new("key", k), MiNode::new("value", v)]),
        Ok(None) => MiReply::err(404, "Queue is empty"),
        Err(_) => MiReply::err(404, "No such queue"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        assert_eq!(parse_def("name=q1;size=10"), Ok(("q1".into(), 10)));
        assert_eq!(parse_def(" name = q2 "), Ok(("q2".into(), 0)));
        assert!(parse_def("size=3").is_err());
        assert!(parse_def("name=q;size=x").is_err());
        assert!(parse_def("name=q;dbmode=1").is_err());
        assert!(parse_def("name=").is_err());
    }
}

//! `lookup()` / `registered()` (OpenSER 1.2 `lookup.c`): the selection logic, without
//! the script context (applied to it in `mod.rs`).

use openser_core::parser::Method;
use usrloc::{ContactInfo, UDomain};

use super::save::method_bit;

/// Result of a lookup: the usable contacts, best first (the first one becomes the
/// R-URI, the others branches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// rc 1.
    Contacts(Vec<ContactInfo>),
    /// rc −1: no record for the AOR.
    NotFound,
    /// rc −2: a record, but no valid contact (expired, or all filtered by method).
    NoValid,
    /// rc −3: the bindings could not be read (`db_mode` 3, database unreachable).
    DbError,
}

impl Found {
    /// The script return code.
    pub fn rc(&self) -> i32 {
        match self {
            Found::Contacts(_) => 1,
            Found::NotFound => -1,
            Found::NoValid => -2,
            Found::DbError => -3,
        }
    }
}

/// Select the contacts of `aor` usable at `now` for a request of `method`
/// (`method_filtering`: contacts whose `methods` mask lacks the method are skipped).
/// Order is usrloc's list order, as in 1.2: q descending (equal q in registration
/// order), or newest first with `desc_time_order`.
pub fn select(dom: &UDomain, aor: &str, method: Method, filter: bool, now: i64) -> Found {
    let _ = usrloc::take_db_failure();
    let list = dom.get_contacts(aor.as_bytes());
    if usrloc::take_db_failure().is_some() {
        return Found::DbError;
    }
    let Some(list) = list else {
        return Found::NotFound;
    };
    let bit = method_bit(method);
    let v: Vec<ContactInfo> = list
        .into_iter()
        .filter(|c| c.is_valid(now) && (!filter || c.methods & bit != 0))
        .collect();
    if v.is_empty() {
        return Found::NoValid;
    }
    Found::Contacts(v)
}

/// `registered()`: whether `aor` has a valid binding at `now` (with Call-ID `callid`
/// when given: `reg_callid_avp`).
pub fn registered(dom: &UDomain, aor: &str, callid: Option<&str>, now: i64) -> bool {
    dom.get_contacts(aor.as_bytes()).is_some_and(|l| {
        l.iter()
            .any(|c| c.is_valid(now) && callid.is_none_or(|id| c.callid == id))
    })
}

//! registrar (OpenSER 1.2 `modules/registrar`): `save()`, `lookup()`, `registered()`
//! on top of usrloc.
//!
//! * `save("table"[, flags])` (REQUEST): flags `0x01` memory only (everything is memory
//!   only until the DB layer exists), `0x02` no reply, `0x04` one contact per AOR
//!   (Kamailio's `REG_SAVE_REPL_FL`: only the first Contact is used and the AOR's other
//!   bindings are removed; not in 1.2). rc 1 on success, 0 (stop the script) after
//!   an error, whether or not the error reply was sent.
//! * `lookup("table")` (REQUEST, FAILURE): rc 1 / −1 no record / −2 no usable contact
//!   / −3 error.
//! * `registered("table")` (REQUEST, FAILURE): 1 if the AOR has a valid binding, −1.
//!
//! Parameters accepted but without effect (no TCP connection reuse / DB layer yet):
//! `tcp_persistent_flag`, `sock_hdr_name`, `use_domain` is taken from usrloc as in 1.2.
//! Replies are stateless (module sl).

pub mod lookup;
pub mod reply;
pub mod save;

#[cfg(test)]
mod tests;

use std::sync::RwLock;

use crate::modules::usrloc::Q_UNSPECIFIED;

/// registrar module parameters, with OpenSER 1.2's (code) defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegParams {
    pub default_expires: u32,
    pub min_expires: u32,
    /// 0 = no cap.
    pub max_expires: u32,
    /// q × 100 for contacts without q, or `Q_UNSPECIFIED`.
    pub default_q: i32,
    pub append_branches: bool,
    pub case_sensitive: bool,
    /// Taken from usrloc's `use_domain` at start-up.
    pub use_domain: bool,
    pub tcp_persistent_flag: i32,
    pub realm_prefix: String,
    /// AVP holding the source address of the REGISTER (`received` column).
    pub received_avp: String,
    /// Parameter name used for `received` in 200 OK Contacts ("" = don't add).
    pub received_param: String,
    pub aor_avp: String,
    /// 0 = no limit.
    pub max_contacts: u32,
    /// Retry-After value on 503 (0 = none).
    pub retry_after: u32,
    /// Branch flag telling that the socket comes from `sock_hdr_name` (−1 = unset).
    pub sock_flag: i32,
    pub sock_hdr_name: String,
    pub method_filtering: bool,
    pub use_path: bool,
    /// 0 store only; 1 echo if `Supported: path`; 2 strict (420 if not supported).
    pub path_mode: i32,
    pub path_use_received: bool,
}

impl Default for RegParams {
    fn default() -> Self {
        RegParams {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 0,
            default_q: Q_UNSPECIFIED,
            append_branches: true,
            case_sensitive: false,
            use_domain: false,
            tcp_persistent_flag: -1,
            realm_prefix: String::new(),
            received_avp: String::new(),
            received_param: "received".to_owned(),
            aor_avp: String::new(),
            max_contacts: 0,
            retry_after: 0,
            sock_flag: -1,
            sock_hdr_name: String::new(),
            method_filtering: false,
            use_path: false,
            path_mode: 2,
            path_use_received: false,
        }
    }
}

static PARAMS: RwLock<Option<RegParams>> = RwLock::new(None);

/// The registrar parameters (defaults if never set).
pub fn params() -> RegParams {
    PARAMS
        .read()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default()
}

fn update_params(f: impl FnOnce(&mut RegParams)) {
    if let Ok(mut g) = PARAMS.write() {
        let mut p = g.clone().unwrap_or_default();
        f(&mut p);
        *g = Some(p);
    }
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

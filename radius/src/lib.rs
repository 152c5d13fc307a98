//! The RADIUS client of the RADIUS modules (auth_radius, acc, group_radius, avp_radius,
//! uri_radius) — what radiusclient-ng was to OpenSER 1.2.
//!
//! * [`packet`]: the RFC 2865/2866 codec (authenticators, User-Password hiding,
//!   Message-Authenticator), written here: the protocol part a SIP server needs is a few
//!   hundred lines, the reply decoder is outside input and is fuzzed (`radius_reply`),
//!   and the maintained crates either bring an async runtime (threads, which no process
//!   of this server may start) or a server-side API. MD5 is the `md-5` crate the auth
//!   module already uses.
//! * [`dict`]: the dictionary (built-in 1.2/radiusclient-ng attributes, plus a file).
//! * [`conf`]: radiusclient.conf (servers, secrets, timeout, retries).
//! * [`client`]: per-process UDP sockets, retries, timeout and failover; no call blocks
//!   past servers × retries × timeout.
//! * [`sipavp`]: `SIP-AVP` reply attributes into AVPs.
//!
//! It is a library, not a module (no exports, nothing to `loadmodule`), so it sits
//! beside `core` and `shm` rather than under `modules/`: a layer the RADIUS modules
//! depend on, as the SQL modules depend on `core::db`.

pub mod client;
pub mod conf;
pub mod dict;
pub mod packet;
pub mod sipavp;

pub use client::{SendError, Service, send};
pub use conf::ClientConf;
pub use dict::{AttrDef, AttrType, Dict};
pub use packet::{Attr, Reply};

/// 1.2's default `radius_config` (radiusclient-ng's location).
pub const DEFAULT_CONFIG: &str = "/usr/local/etc/radiusclient-ng/radiusclient.conf";

/// Load the configuration named by a module's `radius_config`, errors prefixed with
/// the module's name (for mod_init).
pub fn load_config(module: &str, path: &str) -> Result<ClientConf, String> {
    if path.is_empty() {
        return Err(format!("{module}: radius_config is empty"));
    }
    ClientConf::load(path).map_err(|e| format!("{module}: {e}"))
}

#[cfg(test)]
mod tests;

//! The LDAP client of the `ldap` and `h350` modules — what libldap was to the 1.3
//! modules — limited to what a SIP proxy asks of a directory: simple bind, search,
//! unbind (RFC 4511), with RFC 4515 filter strings and RFC 4516 URLs.
//!
//! * [`ber`] — the BER subset LDAP uses.
//! * [`filter`] — filter strings → `Filter` → BER; RFC 4515 escaping.
//! * [`proto`] — the requests and the decoder of server messages (outside input,
//!   fuzzed by `ldap_reply`; the filter parser by `ldap_filter`).
//! * [`url`] — `ldap://session/base?attrs?scope?filter`.
//! * [`conf`] — the INI sessions file.
//! * [`client`] — per-process blocking connections with a deadline on every wait and
//!   one reconnect on a broken connection.
//!
//! Written here rather than taken from a crate: the maintained Rust client (`ldap3`)
//! runs on tokio — its synchronous API drives a runtime, and name resolution and
//! connection set-up go through tokio's blocking pool, i.e. threads, which no process
//! of this server may start (ARCHITECTURE.md, invariant 1) — and the C libldap would
//! need bindings and brings its own resolver calls and signal handling. Bind and search
//! are a few hundred lines of BER, as the RADIUS codec was.
//!
//! Not supported: ldaps:// / StartTLS, SASL binds, referral chasing (references are
//! skipped, as the 1.3 module did not follow them), paged results.

pub mod ber;
pub mod client;
pub mod conf;
pub mod filter;
pub mod proto;
pub mod url;

pub use client::LdapError;
pub use conf::Session;
pub use proto::{Entry, Scope};

#[cfg(test)]
mod tests;

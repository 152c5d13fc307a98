//! openser-rs: the OpenSER 1.2 SIP proxy and registrar in Rust.
//!
//! `core` is the server itself (command line, configuration language, SIP parser,
//! transport, processes); `modules` holds the built-in modules that `loadmodule`
//! selects. Unsafe code is confined to `core::sys`, `core::re` and the `shm` crate.
#![deny(unsafe_code)]

pub mod core;
pub mod modules;

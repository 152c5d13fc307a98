//! openser-core: the server without its modules — command line, configuration
//! language, SIP parser, transport, processes, the module framework, the database
//! API, MI and statistics.
//!
//! This crate never names a module: the `openser` binary hands the list of built-in
//! modules to [`module::set_builtin`], and everything a module adds is read from its
//! declared exports table ([`module::ModuleExports`]).
//!
//! Unsafe code here is confined to the OS layer, [`sys`] and [`re`], each block argued
//! with a `// SAFETY:` comment; every other file denies it.
#![deny(unsafe_code)]

pub mod args;
pub mod cfg;
pub mod clock;
pub mod config;
pub mod db;
pub mod dns;
pub mod globals;
pub mod http;
pub mod log;
pub mod mi;
pub mod module;
pub mod msg;
pub mod parser;
pub mod process;
pub mod re;
pub mod receive;
pub mod relay;
pub mod route;
pub mod script;
pub mod state;
pub mod stats;
pub mod sys;
pub mod transport;
pub mod version;

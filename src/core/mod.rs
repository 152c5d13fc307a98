//! The server core: everything that is not a module.

pub mod args;
pub mod cfg;
pub mod config;
pub mod db;
pub mod globals;
pub mod log;
pub mod mi;
pub mod module;
pub mod msg;
pub mod parser;
pub mod process;
pub mod re;
pub mod receive;
pub mod route;
pub mod script;
pub mod stats;
pub mod sys;
pub mod transport;
pub mod version;

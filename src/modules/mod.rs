//! Built-in modules. `loadmodule "x.so"` selects module `x` from this registry.
pub mod acc;
pub mod auth;
pub mod auth_db;
pub mod maxfwd;
pub mod mi_fifo;
pub mod mysql;
pub mod registrar;
pub mod rr;
pub mod sl;
pub mod textops;
pub mod tm;
pub mod usrloc;
pub mod xlog;

use crate::core::db::Connector;
use crate::core::module::ModuleExports;

/// Database drivers: URL scheme, the module that must be loaded, its connector.
pub static DB_DRIVERS: &[(&str, &str, Connector)] = &[("mysql", "mysql", mysql::connect)];

/// Every built-in module, in no particular order.
pub static REGISTRY: &[&ModuleExports] = &[
    &sl::EXPORTS,
    &maxfwd::EXPORTS,
    &textops::EXPORTS,
    &xlog::EXPORTS,
    &tm::EXPORTS,
    &rr::EXPORTS,
    &usrloc::EXPORTS,
    &registrar::EXPORTS,
    &mi_fifo::EXPORTS,
    &auth::EXPORTS,
    &auth_db::EXPORTS,
    &acc::EXPORTS,
    &mysql::EXPORTS,
];

//! The `openser` binary's crate: the list of built-in modules, handed to the core by
//! `main`. This is the only place that names every module; `loadmodule "x.so"`
//! selects module `x` from it.

use openser_core::module::ModuleExports;

/// Every built-in module.
pub static MODULES: &[&ModuleExports] = &[
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
    &db_mysql::EXPORTS,
    &db_postgres::EXPORTS,
    &db_sqlite::EXPORTS,
    &db_text::EXPORTS,
    &options::EXPORTS,
    &tlsops::EXPORTS,
    &uri::EXPORTS,
    &nathelper::EXPORTS,
    &rtpengine::EXPORTS,
    &avpops::EXPORTS,
    &domain::EXPORTS,
    &group::EXPORTS,
    &uri_db::EXPORTS,
    &alias_db::EXPORTS,
    &speeddial::EXPORTS,
    &permissions::EXPORTS,
    &pike::EXPORTS,
    &path::EXPORTS,
    &diversion::EXPORTS,
    &exec::EXPORTS,
    &siptrace::EXPORTS,
    &dispatcher::EXPORTS,
    &lcr::EXPORTS,
    &uac::EXPORTS,
    &uac_redirect::EXPORTS,
];

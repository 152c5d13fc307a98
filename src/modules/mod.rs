//! Built-in modules. `loadmodule "x.so"` selects module `x` from this registry.
pub mod registrar;
pub mod usrloc;

use crate::core::module::ModuleExports;

/// Every built-in module, in no particular order.
pub static REGISTRY: &[&ModuleExports] = &[&usrloc::EXPORTS, &registrar::EXPORTS];

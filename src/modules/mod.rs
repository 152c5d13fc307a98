//! Built-in modules. `loadmodule "x.so"` selects module `x` from this registry.
pub mod mi_fifo;
pub mod usrloc;

use crate::core::module::ModuleExports;

/// Every built-in module, in no particular order.
pub static REGISTRY: &[&ModuleExports] = &[&mi_fifo::EXPORTS];

//! Built-in modules. `loadmodule "x.so"` selects module `x` from this registry.
pub mod registrar;
pub mod usrloc;

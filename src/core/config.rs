//! Loading the configuration: parse, apply globals, load modules, fix up routes.

use crate::core::globals::Globals;

/// What the attendant keeps of the loaded config.
pub struct Loaded {}

/// Parse `path` and apply its global assignments to `g`. Errors come back as the
/// text to print (`file:line:col: ...` lines and a summary).
pub fn load(path: &str, _g: &mut Globals, _check_routes: bool) -> Result<Loaded, String> {
    let _text = std::fs::read_to_string(path)
        .map_err(|e| format!("ERROR: loading config file({path}): {e}\n"))?;
    Ok(Loaded {})
}

/// Module initialisation in the attendant, after shm exists and before forking.
pub fn init_modules(_l: &Loaded) -> Result<(), String> {
    Ok(())
}

mod mods;
mod process;
mod script;

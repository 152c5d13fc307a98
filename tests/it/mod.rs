mod mods;
mod process;

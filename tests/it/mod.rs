mod cfg_corpus;
mod mi;
mod mods;
mod process;
mod registrar;
mod script;
mod seed;
mod tm;

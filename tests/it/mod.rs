mod process;
mod script;

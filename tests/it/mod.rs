mod process;
mod registrar;
mod script;
mod tm;

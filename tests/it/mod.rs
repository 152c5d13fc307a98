mod process;
mod script;
mod tm;

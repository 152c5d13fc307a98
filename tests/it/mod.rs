mod process;
mod registrar;
mod tm;

mod process;
mod registrar;

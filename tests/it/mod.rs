mod process;
mod tm;

//! Black-box tests: the real `openser` binary over loopback.

mod harness;
mod it;

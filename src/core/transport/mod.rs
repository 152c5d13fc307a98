//! Sockets, the UDP receive loop, sending and forwarding.

pub mod socket;
pub mod udp;

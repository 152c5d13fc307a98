//! Sockets, the UDP receive loop, sending and forwarding.

pub mod forward;
pub mod send;
pub mod socket;
pub mod turn;
pub mod udp;

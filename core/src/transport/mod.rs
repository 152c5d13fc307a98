//! Sockets, the UDP receive loop, the TCP processes, sending and forwarding.

pub mod forward;
pub mod send;
pub mod served;
pub mod socket;
pub mod tcp;
pub mod tcp_frame;
pub mod tcp_main;
pub mod tcp_read;
pub mod tls;
pub mod turn;
pub mod udp;

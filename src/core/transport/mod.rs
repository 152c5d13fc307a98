//! Sockets, the UDP receive loop, sending and forwarding.

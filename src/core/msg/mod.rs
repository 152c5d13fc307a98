//! Message changes (lumps), building outgoing messages and local replies.

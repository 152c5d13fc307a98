//! Message changes (lumps), building outgoing messages and local replies, the sl
//! To-tag scheme and the internal-error → reply mapping.

pub mod build;
pub mod errors;
pub mod lumps;
pub mod sl;
pub mod text;

pub use build::{
    BuildError, ViaParams, apply_changes, build_local_reply, build_reply_forward, build_request,
    next_via_destination, reply_addr, reply_destination, via_line,
};
pub use errors::SipError;
pub use lumps::{Lump, Lumps};
pub use sl::{crc16_ccitt, is_sl_ack, sl_tag_prefix, sl_totag};

//! What tm copies into and out of shm besides the cell: AVPs serialized compactly, and
//! the request rebuilt as a `SipMsg` for failure routes and local replies.

use std::net::SocketAddr;

use openser_core::parser::{Proto, RcvInfo, SipMsg};
use openser_core::script::{AvpId, AvpList, PvValue};

use super::h_table::Cell;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

/// Serialize an AVP list (oldest first): per AVP `kind` byte (bit 0: string id, bits
/// 1-2: value null/int/str), the id (i64 LE or length-prefixed bytes), the value.
pub fn avps_to_bytes(l: &AvpList) -> Vec<u8> {
    let items: Vec<_> = l.iter().collect();
    let mut out = Vec::with_capacity(items.len() * 16);
    for (id, v) in items.into_iter().rev() {
        let mut kind = match id {
            AvpId::Int(_) => 0u8,
            AvpId::Str(_) => 1u8,
        };
        kind |= match v {
            PvValue::Null => 0,
            PvValue::Int(_) => 2,
            PvValue::Str(_) => 4,
        };
        out.push(kind);
        match id {
            AvpId::Int(i) => out.extend_from_slice(&i.to_le_bytes()),
            AvpId::Str(s) => put_bytes(&mut out, s.as_bytes()),
        }
        match v {
            PvValue::Null => {}
            PvValue::Int(i) => out.extend_from_slice(&i.to_le_bytes()),
            PvValue::Str(s) => put_bytes(&mut out, s.as_bytes()),
        }
    }
    out
}

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

/// Rebuild an AVP list from `avps_to_bytes` output (stops at the first broken record).
pub fn avps_from_bytes(b: &[u8]) -> AvpList {
    let mut l = AvpList::new();
    let mut r = Rd(b);
    while let Some(k) = r.take(1).map(|k| k[0]) {
        let id = if k & 1 == 0 {
            r.i64().map(AvpId::Int)
        } else {
            r.string().map(AvpId::Str)
        };
        let Some(id) = id else { break };
        let v = match k & 6 {
            0 => Some(PvValue::Null),
            2 => r.i64().map(PvValue::Int),
            _ => r.string().map(PvValue::Str),
        };
        let Some(v) = v else { break };
        l.add(id, v);
    }
    l
}

/// The transaction's request as a message (for failure routes and local replies).
pub fn request_msg(c: &Cell) -> Option<SipMsg> {
    message_as_received(c, c.req())
}

/// `buf` parsed as a request received as the transaction's was (its addresses,
/// socket and transport).
pub fn message_as_received(c: &Cell, buf: &[u8]) -> Option<SipMsg> {
    let src = c
        .rcv_src
        .to_sa()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let dst = c.rcv_dst.to_sa().unwrap_or(src);
    let rcv = RcvInfo {
        src,
        dst,
        proto: match c.rcv_proto {
            1 => Proto::Tcp,
            2 => Proto::Tls,
            _ => Proto::Udp,
        },
        sock_idx: c.rcv_sock as usize,
    };
    SipMsg::new(buf, rcv).ok()
}

pub fn proto_code(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 1,
        Proto::Tls => 2,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avp_roundtrip() {
        let mut l = AvpList::new();
        l.add(AvpId::Int(24), PvValue::Int(2));
        l.add(AvpId::Str("x".into()), PvValue::Str("hello".into()));
        l.add(AvpId::Int(24), PvValue::Int(5));
        let b = avps_to_bytes(&l);
        let r = avps_from_bytes(&b);
        assert_eq!(r.len(), 3);
        assert!(matches!(r.get(&AvpId::Int(24)), Some(PvValue::Int(5))));
        assert!(matches!(r.get(&AvpId::Str("x".into())), Some(PvValue::Str(s)) if s == "hello"));
    }
}

//! Transaction matching: the hash, our branch ids, requests (RFC 3261 branch or the
//! RFC 2543 fallback) and replies (hash index + label from our branch id).

use openser_core::parser::{Method, SipMsg};

use super::h_table::{Cell, KSpan, Key, MAX_BRANCHES, TABLE_ENTRIES};

/// RFC 3261 magic cookie.
pub const MCOOKIE: &str = "z9hG4bK";

/// Transaction hash over Call-ID and CSeq number (as OpenSER's `tm_hash`), into
/// `TABLE_ENTRIES` entries.
pub fn tm_hash(callid: &[u8], cseq_num: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in callid.iter().chain(cseq_num.iter()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h & (TABLE_ENTRIES as u32 - 1)
}

/// OpenSER's `int2reverse_hex`: least significant nibble first, "0" for 0.
pub fn reverse_hex(mut v: u32, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if v == 0 {
        out.push('0');
        return;
    }
    while v != 0 {
        out.push(HEX[(v & 0xf) as usize] as char);
        v >>= 4;
    }
}

/// Parse reverse hex (case-insensitive); None on bad digits or overflow.
pub fn parse_reverse_hex(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    let mut v: u32 = 0;
    for (i, &c) in s.iter().enumerate() {
        let d = (c as char).to_digit(16)?;
        v |= d << (4 * i);
    }
    Some(v)
}

/// Our branch id: `z9hG4bK<hash>.<label>.<branch>` in reverse hex (syn_branch=1).
pub fn branch_id(hash: u32, label: u32, branch: u32) -> String {
    let mut s = String::with_capacity(24);
    s.push_str(MCOOKIE);
    reverse_hex(hash, &mut s);
    s.push('.');
    reverse_hex(label, &mut s);
    s.push('.');
    reverse_hex(branch, &mut s);
    s
}

/// Split one of our branch ids into (hash, label, branch).
pub fn parse_branch_id(b: &[u8]) -> Option<(u32, u32, u32)> {
    let rest = b.get(MCOOKIE.len()..)?;
    if !b[..MCOOKIE.len()].eq_ignore_ascii_case(MCOOKIE.as_bytes()) {
        return None;
    }
    let mut it = rest.split(|&c| c == b'.');
    let h = parse_reverse_hex(it.next()?)?;
    let l = parse_reverse_hex(it.next()?)?;
    let br = parse_reverse_hex(it.next()?)?;
    if it.next().is_some() || h as usize >= TABLE_ENTRIES || br as usize >= MAX_BRANCHES {
        return None;
    }
    Some((h, l, br))
}

fn span_of(base: usize, s: &str) -> KSpan {
    // `s` is a sub-slice of the message buffer starting at `base`.
    let off = (s.as_ptr() as usize).saturating_sub(base);
    KSpan {
        off: off as u32,
        len: s.len() as u32,
    }
}

/// Extract the matching key of a request (spans valid in its buffer, hence in a clone
/// of it). None when a needed header is missing or broken.
pub fn request_key(msg: &SipMsg) -> Option<Key> {
    let buf = msg.buf();
    let base = buf.as_ptr() as usize;
    let sp = |s: openser_core::parser::Span| KSpan {
        off: s.start,
        len: s.len,
    };
    let v1 = msg.via1().ok()?;
    let from = msg.from().ok()?;
    let to = msg.to().ok()?;
    let cseq = msg.cseq().ok()?;
    let callid = msg.callid()?;
    let method = match *msg.first_line() {
        openser_core::parser::FirstLine::Request { method_text, .. } => sp(method_text),
        _ => return None,
    };
    let ruri = match *msg.first_line() {
        openser_core::parser::FirstLine::Request { uri, .. } => sp(uri),
        _ => return None,
    };
    Some(Key {
        method,
        ruri,
        via_branch: v1.branch.map(sp).unwrap_or_default(),
        via_host: sp(v1.host),
        via_port: v1.port.unwrap_or(0),
        from_tag: from.tag.map(sp).unwrap_or_default(),
        to_tag: to.tag.map(sp).unwrap_or_default(),
        callid: span_of(base, callid),
        cseq_num: sp(cseq.num_text),
        via1: sp(v1.full),
    })
}

/// What a request lookup is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    /// The request's own transaction (retransmission detection).
    Same,
    /// The INVITE a CANCEL or an ACK refers to.
    Invite,
}

/// Whether cell `c` is the transaction of request `msg` (key `k`) per RFC 3261 §17.2.3,
/// or the RFC 2543 rules when the branch has no magic cookie.
pub fn request_matches(
    c: &Cell,
    msg: &SipMsg,
    k: &Key,
    want: Want,
    ruri_m: bool,
    via1_m: bool,
) -> bool {
    let b = msg.buf();
    let m_method = k.method.of(b);
    let method_ok = match want {
        Want::Same => c.k(c.key.method) == m_method,
        Want::Invite => c.is_invite,
    };
    if !method_ok {
        return false;
    }
    let branch = k.via_branch.of(b);
    if branch.len() > MCOOKIE.len()
        && branch[..MCOOKIE.len()].eq_ignore_ascii_case(MCOOKIE.as_bytes())
    {
        // RFC 3261: branch + sent-by (+ method above).
        return c.k(c.key.via_branch) == branch
            && c.k(c.key.via_host).eq_ignore_ascii_case(k.via_host.of(b))
            && c.key.via_port == k.via_port;
    }
    // RFC 2543 fallback.
    if c.k(c.key.callid) != k.callid.of(b)
        || c.k(c.key.cseq_num) != k.cseq_num.of(b)
        || c.k(c.key.from_tag) != k.from_tag.of(b)
    {
        return false;
    }
    let is_ack = msg.method() == Method::Ack;
    if !is_ack && c.k(c.key.to_tag) != k.to_tag.of(b) {
        return false;
    }
    if ruri_m && c.k(c.key.ruri) != k.ruri.of(b) {
        return false;
    }
    if via1_m && c.k(c.key.via1) != k.via1.of(b) {
        return false;
    }
    true
}

/// For a reply: (hash, label, branch) from its top Via branch, if it is ours.
pub fn reply_ids(reply: &SipMsg) -> Option<(u32, u32, u32)> {
    let v1 = reply.via1().ok()?;
    let br = v1.branch?;
    parse_branch_id(br.bytes(reply.buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_hex_roundtrip() {
        let mut s = String::new();
        reverse_hex(0x1a3, &mut s);
        assert_eq!(s, "3a1");
        assert_eq!(parse_reverse_hex(b"3a1"), Some(0x1a3));
        let b = branch_id(0xbeef, 7, 1);
        assert_eq!(b, "z9hG4bKfeeb.7.1");
        assert_eq!(parse_branch_id(b.as_bytes()), Some((0xbeef, 7, 1)));
        assert_eq!(parse_branch_id(b"z9hG4bKxyz.1.1"), None);
        assert_eq!(parse_branch_id(b"z9hG4bK1.1.1.1"), None);
        assert_eq!(parse_branch_id(b"z9"), None);
    }

    #[test]
    fn hash_in_range() {
        for i in 0..1000u32 {
            assert!((tm_hash(format!("call{i}").as_bytes(), b"1") as usize) < TABLE_ENTRIES);
        }
    }
}

//! Lumps: pending changes to a received message, kept as inserts / deletes / replacements
//! at offsets of the original buffer and applied once when the outgoing buffer is built
//! (OpenSER's data lumps + msg_translator).

use crate::parser::{HdrType, SipMsg, Span};

/// Priority of body replacements (`set_body`): after every header insert at the same
/// offset (matters when a message has no blank line and the body offset is the header end).
pub const BODY_PRIO: i8 = 100;

/// One change: delete `del` bytes at `pos` and insert `text` there.
/// Several lumps at the same `pos` apply in (`prio`, insertion order) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lump {
    pub pos: u32,
    pub del: u32,
    pub text: Vec<u8>,
    pub prio: i8,
    seq: u32,
}

/// A lump text marker replaced, when the outgoing buffer is built, by the sending
/// socket as a URI host part: `host:port[;transport=tcp]` (1.2's `SUBST_SND_ALL`).
pub const SND_SOCKET: &str = "\u{1}snd\u{1}";

/// A lump text starting with this marker is kept (without it) only when the message
/// leaves on a socket of another transport or address than the one it came in on
/// (1.2's `COND_IF_DIFF_REALMS`), and dropped otherwise.
pub const IF_DIFF_REALMS: &str = "\u{1}diff\u{1}";

/// The change list of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lumps {
    items: Vec<Lump>,
    next_seq: u32,
}

impl Lumps {
    /// Generic change with explicit priority (lower applies first at the same offset).
    pub fn add(&mut self, pos: usize, del: usize, text: impl AsRef<[u8]>, prio: i8) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.items.push(Lump {
            pos: pos.min(u32::MAX as usize) as u32,
            del: del.min(u32::MAX as usize) as u32,
            text: text.as_ref().to_vec(),
            prio,
            seq,
        });
    }
    pub fn insert(&mut self, pos: usize, text: impl AsRef<[u8]>) {
        self.add(pos, 0, text, 0);
    }
    pub fn delete(&mut self, pos: usize, len: usize) {
        self.add(pos, len, b"", 0);
    }
    pub fn replace(&mut self, pos: usize, len: usize, text: impl AsRef<[u8]>) {
        self.add(pos, len, text, 0);
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Whether some lump holds a [`SND_SOCKET`] or [`IF_DIFF_REALMS`] marker.
    pub fn has_markers(&self) -> bool {
        self.items
            .iter()
            .any(|l| memchr::memchr(1, &l.text).is_some())
    }
    /// Resolve the markers for a message leaving on the socket written `snd`
    /// (`host:port[;transport=x]`); `differs`: that socket's realm (transport or
    /// address) is not the receiving socket's.
    pub fn resolve_snd(&mut self, snd: &str, differs: bool) {
        for l in &mut self.items {
            if memchr::memchr(1, &l.text).is_none() {
                continue;
            }
            let mut t: &[u8] = &l.text;
            if let Some(rest) = t.strip_prefix(IF_DIFF_REALMS.as_bytes()) {
                if !differs {
                    l.text.clear();
                    continue;
                }
                t = rest;
            }
            let mut out = Vec::with_capacity(t.len() + snd.len());
            let mark = SND_SOCKET.as_bytes();
            while let Some(i) = memchr::memmem::find(t, mark) {
                out.extend_from_slice(&t[..i]);
                out.extend_from_slice(snd.as_bytes());
                t = &t[i + mark.len()..];
            }
            out.extend_from_slice(t);
            l.text = out;
        }
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn clear(&mut self) {
        self.items.clear();
    }
    pub fn iter(&self) -> impl Iterator<Item = &Lump> {
        self.items.iter()
    }
    /// True if some lump changes bytes at or after `off` (or deletes across it).
    pub fn touches_from(&self, off: usize) -> bool {
        self.items
            .iter()
            .any(|l| l.pos as usize + l.del as usize > off || l.pos as usize >= off)
    }

    /// Apply the lumps lying in `[start, end)` of `buf` and append the result to `out`.
    /// Deletions are clipped to the range; overlapping deletions are merged. Returns the
    /// output offset corresponding to original offset `mark` (before inserts at `mark`),
    /// or `out.len()` at the end if `mark` is not reached.
    pub fn apply_range(
        &self,
        buf: &[u8],
        start: usize,
        end: usize,
        mark: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        let end = end.min(buf.len());
        let start = start.min(end);
        let mut sel: Vec<&Lump> = self
            .items
            .iter()
            .filter(|l| (l.pos as usize) >= start && (l.pos as usize) <= end)
            .collect();
        sel.sort_by_key(|l| (l.pos, l.prio, l.seq));
        let mut cur = start;
        let mut mark_out = None;
        for l in sel {
            let pos = l.pos as usize;
            if pos > cur {
                if mark_out.is_none() && mark >= cur && mark <= pos {
                    mark_out = Some(out.len() + (mark - cur));
                }
                out.extend_from_slice(&buf[cur..pos]);
                cur = pos;
            }
            if mark_out.is_none() && mark <= cur && mark >= pos {
                mark_out = Some(out.len());
            }
            out.extend_from_slice(&l.text);
            let de = (pos + l.del as usize).min(end);
            if de > cur {
                cur = de;
            }
        }
        if mark_out.is_none() && mark >= cur && mark <= end {
            mark_out = Some(out.len() + (mark - cur));
        }
        out.extend_from_slice(&buf[cur..end]);
        mark_out.unwrap_or(out.len())
    }

    /// Apply all lumps to the whole buffer.
    pub fn apply(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len() + 256);
        self.apply_range(buf, 0, buf.len(), buf.len(), &mut out);
        out
    }
}

fn with_crlf(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\r\n")
    }
}

/// Header-level editing helpers recorded as lumps on `msg.lumps`. Header texts are
/// complete lines (`Name: value`); a missing CRLF is added.
impl SipMsg {
    /// Add a header after the last header (`append_hf`).
    pub fn add_header_after_last(&mut self, text: &str) {
        let pos = self.hdrs_end();
        self.lumps.insert(pos, with_crlf(text));
    }
    /// Add a header before the first header (`insert_hf`).
    pub fn add_header_before_first(&mut self, text: &str) {
        let pos = self.hdrs_start();
        self.lumps.insert(pos, with_crlf(text));
    }
    /// Add a header right after header `idx` (index into `hdrs()`); false if no such header.
    pub fn add_header_after(&mut self, idx: usize, text: &str) -> bool {
        let Some(h) = self.hdrs().get(idx) else {
            return false;
        };
        let pos = h.full.end();
        let ends_nl = h.full.bytes(self.buf()).last() == Some(&b'\n');
        let t = if ends_nl {
            with_crlf(text)
        } else {
            format!("\r\n{}", text.trim_end_matches(['\r', '\n']))
        };
        self.lumps.insert(pos, t);
        true
    }
    /// Add a header right before header `idx`; false if no such header.
    pub fn add_header_before(&mut self, idx: usize, text: &str) -> bool {
        let Some(h) = self.hdrs().get(idx) else {
            return false;
        };
        let pos = h.full.start as usize;
        self.lumps.insert(pos, with_crlf(text));
        true
    }
    /// Remove header `idx` completely; false if no such header.
    pub fn remove_header(&mut self, idx: usize) -> bool {
        let Some(h) = self.hdrs().get(idx) else {
            return false;
        };
        let f = h.full;
        self.lumps.delete(f.start as usize, f.len as usize);
        true
    }
    /// Remove all headers called `name` (compact forms match); returns how many.
    pub fn remove_headers_by_name(&mut self, name: &str) -> usize {
        let idx = self.header_indices(name);
        for &i in &idx {
            self.remove_header(i);
        }
        idx.len()
    }
    /// Replace a span of the original buffer.
    pub fn replace_span(&mut self, sp: Span, text: &str) {
        self.lumps.replace(sp.start as usize, sp.len as usize, text);
    }
    /// Replace the whole body (Content-Length is recomputed by the builders).
    pub fn set_body(&mut self, body: &[u8]) {
        let b = self.body_span();
        self.lumps
            .add(b.start as usize, b.len as usize, body, BODY_PRIO);
    }
    /// Add a Record-Route header line before the first Record-Route (or before the first
    /// header if there is none).
    pub fn add_record_route(&mut self, text: &str) {
        let pos = match self.first_of(HdrType::RecordRoute) {
            Some(i) => self.hdrs()[i].full.start as usize,
            None => self.hdrs_start(),
        };
        self.lumps.insert(pos, with_crlf(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn apply_basic() {
        let buf = b"0123456789";
        let mut l = Lumps::default();
        l.insert(0, "a");
        l.delete(2, 3);
        l.replace(6, 2, "XY");
        l.insert(10, "!");
        assert_eq!(l.apply(buf), b"a015XY89!".to_vec());
    }
    #[test]
    fn overlapping_and_out_of_range() {
        let buf = b"abcdef";
        let mut l = Lumps::default();
        l.delete(1, 3);
        l.delete(2, 3);
        l.insert(100, "zz");
        assert_eq!(l.apply(buf), b"af".to_vec());
    }
    #[test]
    fn mark() {
        let buf = b"hdr\r\n\r\nbody";
        let mut l = Lumps::default();
        l.insert(0, "X");
        l.replace(7, 4, "new body");
        let mut out = Vec::new();
        let m = l.apply_range(buf, 0, buf.len(), 7, &mut out);
        assert_eq!(&out[m..], b"new body");
    }
}

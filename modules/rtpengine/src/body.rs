//! Where the SDP is in a message: the whole body (`application/sdp`, or no
//! Content-Type and a body starting with `v=`), or the first `application/sdp` part of
//! a `multipart/*` body.

use openser_core::parser::{HdrType, SipMsg};

/// Absolute offsets of the SDP in the message buffer.
pub fn sdp_of(msg: &SipMsg) -> Option<(usize, usize)> {
    let body = msg.body();
    if body.is_empty() {
        return None;
    }
    let ct = msg
        .first_of(HdrType::ContentType)
        .map(|i| msg.s(msg.hdrs()[i].body).to_string())
        .unwrap_or_default();
    let (s, e) = sdp_range(&ct, body)?;
    let base = msg.body_span().start as usize;
    Some((base + s, base + e))
}

/// The SDP's range in `body` given the Content-Type value.
pub fn sdp_range(content_type: &str, body: &[u8]) -> Option<(usize, usize)> {
    let (mime, params) = match content_type.trim().split_once(';') {
        Some((m, p)) => (m.trim(), p),
        None => (content_type.trim(), ""),
    };
    if mime.is_empty() {
        return body.starts_with(b"v=").then_some((0, body.len()));
    }
    if mime.eq_ignore_ascii_case("application/sdp") {
        return Some((0, body.len()));
    }
    if !(mime.len() > 10 && mime.as_bytes()[..10].eq_ignore_ascii_case(b"multipart/")) {
        return None;
    }
    let boundary = params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })?;
    if boundary.is_empty() {
        return None;
    }
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let find = |from: usize, n: &[u8]| -> Option<usize> {
        body.get(from..)?
            .windows(n.len())
            .position(|w| w == n)
            .map(|p| p + from)
    };
    let mut pos = find(0, d)?;
    loop {
        let after = pos + d.len();
        if body[after..].starts_with(b"--") {
            return None;
        }
        let start = find(after, b"\n")? + 1;
        let next = find(start, d)?;
        let mut end = next;
        if end > start && body[end - 1] == b'\n' {
            end -= 1;
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let part = &body[start..end];
        let split = part
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, i + 4))
            .or_else(|| {
                part.windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|i| (i, i + 2))
            });
        if let Some((h, c)) = split {
            let hdrs = String::from_utf8_lossy(&part[..h]);
            let sdp = hdrs.lines().any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case("content-type")
                        && v.split(';')
                            .next()
                            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
                })
            });
            if sdp {
                return Some((start + c, end));
            }
        }
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let body = b"--x\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--x--\r\n";
        let (s, e) = sdp_range("multipart/mixed;boundary=x", body).unwrap();
        assert_eq!(&body[s..e], b"v=0\r\n");
        assert_eq!(sdp_range("text/plain", body), None);
        assert_eq!(sdp_range("multipart/mixed;boundary=y", body), None);
        assert_eq!(sdp_range("multipar\u{fffd}t/x;boundary=x", body), None);
    }
}

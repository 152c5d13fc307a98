//! Numbers written into message text without `format!` (the per-message path builds
//! headers by appending to one buffer), and small text helpers shared by modules.

/// The decimal digits of `n`, in the tail of `buf`.
pub fn dec_digits(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Append `n` in decimal.
pub fn push_dec(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    for &d in dec_digits(n, &mut buf) {
        out.push(char::from(d));
    }
}

/// `host` without `prefix` (ASCII case-insensitive) when `prefix` is a proper prefix of
/// it, else `host` (the `domain_prefix` of alias_db and speeddial).
pub fn strip_prefix_ci<'a>(host: &'a str, prefix: &str) -> &'a str {
    if !prefix.is_empty()
        && prefix.len() < host.len()
        && host.is_char_boundary(prefix.len())
        && host[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        &host[prefix.len()..]
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        for n in [0, 7, 10, 65535, 1_000_000, u64::MAX] {
            let mut s = String::from("x");
            push_dec(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}

//! Lists of media relays, as nathelper's `rtpproxy_sock` and rtpengine's
//! `rtpengine_sock` write them: space-separated items `[scheme:]address[=weight]`, and
//! the choice of one relay per call — 1.2's Call-ID hash spread over the weights of the
//! relays that are enabled. One implementation for both modules.

/// Split one list item into its URL (as written, without the weight) and its weight
/// (1 when absent). `what` names the parameter in the error.
pub fn split_weight<'a>(item: &'a str, what: &str) -> Result<(&'a str, u32), String> {
    match item.split_once('=') {
        Some((url, w)) => w
            .parse::<u32>()
            .map(|w| (url, w))
            .map_err(|_| format!("bad weight in {what} `{item}`")),
        None => Ok((item, 1)),
    }
}

/// 1.2's hash of a Call-ID for relay selection: the byte sum, low 8 bits.
pub fn callid_hash(callid: &str) -> u32 {
    callid.bytes().map(u32::from).sum::<u32>() & 0xff
}

/// The index `hash` falls on when entry i takes `weights[i]` slots (0 = unavailable);
/// `None` when every weight is 0.
pub fn pick(weights: &[u32], hash: u32) -> Option<usize> {
    let sum: u32 = weights.iter().sum();
    if sum == 0 {
        return None;
    }
    let mut cut = hash % sum;
    for (i, &w) in weights.iter().enumerate() {
        if cut < w {
            return Some(i);
        }
        cut -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_split_and_pick() {
        assert_eq!(
            split_weight("udp:1.2.3.4:22=3", "x"),
            Ok(("udp:1.2.3.4:22", 3))
        );
        assert_eq!(split_weight("unix:/run/r", "x"), Ok(("unix:/run/r", 1)));
        assert!(
            split_weight("udp:h:1=lots", "rtpproxy_sock")
                .unwrap_err()
                .contains("rtpproxy_sock")
        );
        assert_eq!(callid_hash("ab"), (97 + 98) & 0xff);
        assert_eq!(pick(&[0, 0], 5), None);
        assert_eq!(pick(&[1, 3], 0), Some(0));
        assert_eq!(pick(&[1, 3], 3), Some(1));
        assert_eq!(pick(&[0, 3], 0), Some(1));
    }
}

//! Destination sets: the list file (1.2's format, `setid uri [flags [attrs]]`), the
//! `dispatcher` table, and the compact form kept in shared memory that every process
//! reads back (one destination a line, tab-separated, with the address the loader
//! resolved, so no worker resolves names).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use openser_core::db::DbConn;
use openser_core::parser::Uri;

/// Destination state bits (shared, per destination).
pub const ST_INACTIVE: u32 = 1;
pub const ST_PROBING: u32 = 2;

/// Most destinations over all sets (the shared state array's size).
pub const MAX_DSTS: usize = 1024;
/// Most sets.
pub const MAX_SETS: usize = 256;

/// One destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Dest {
    pub set: i32,
    pub uri: String,
    /// Flags from the list (`ST_*`): the state at load.
    pub flags: u32,
    /// Attributes text (`weight=3;…`).
    pub attrs: String,
    pub weight: u32,
    /// The resolved address (`None` when it did not resolve).
    pub addr: Option<SocketAddr>,
}

/// A set: its id and the indexes of its destinations (list order).
#[derive(Clone, Debug, PartialEq)]
pub struct Set {
    pub id: i32,
    pub dests: Vec<usize>,
    /// Weighted order: positions into `dests`, each as often as its weight, spread out.
    pub wseq: Vec<u16>,
}

/// Every set; a destination's index in `dests` is its slot in the shared state array.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct List {
    pub dests: Vec<Dest>,
    pub sets: Vec<Set>,
}

impl List {
    pub fn set(&self, id: i32) -> Option<(usize, &Set)> {
        self.sets.iter().enumerate().find(|(_, s)| s.id == id)
    }
    /// The slot of `uri` in set `id` (URIs compare case-insensitively, as 1.2).
    pub fn find(&self, id: i32, uri: &str) -> Option<usize> {
        let (_, s) = self.set(id)?;
        s.dests
            .iter()
            .copied()
            .find(|&i| self.dests[i].uri.eq_ignore_ascii_case(uri.trim()))
    }
}

/// The `weight` attribute (1 when absent or bad; 0 counts as 1).
pub fn weight_of(attrs: &str) -> u32 {
    attrs
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("weight"))
        .and_then(|(_, v)| v.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 100)
}

/// Smooth weighted order of `weights` (each index as often as its weight, interleaved).
pub fn weighted_order(weights: &[u32]) -> Vec<u16> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut cur = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            cur[i] += i64::from(w);
            if cur[i] > cur[best] {
                best = i;
            }
        }
        cur[best] -= total;
        out.push(best as u16);
    }
    out
}

/// Check a destination URI: a SIP URI with a host.
fn check_uri(uri: &str) -> Result<(), String> {
    match Uri::parse(uri) {
        Ok(u) if !u.host.is_empty() => Ok(()),
        Ok(_) => Err(format!("destination <{uri}> has no host")),
        Err(e) => Err(format!("bad destination URI <{uri}>: {e}")),
    }
}

/// Parse the flags column of the list file: a number (1 inactive, 2 probing) or
/// letters `A`/`I`/`P` (as `ds_list` prints them).
fn parse_flags(s: &str) -> Result<u32, String> {
    if let Ok(v) = s.parse::<u32>() {
        return Ok(v & (ST_INACTIVE | ST_PROBING));
    }
    match s {
        "a" | "A" => Ok(0),
        "i" | "I" => Ok(ST_INACTIVE),
        "p" | "P" => Ok(ST_INACTIVE | ST_PROBING),
        _ => Err(format!("bad flags '{s}' (a number, or A, I or P)")),
    }
}

/// Raw rows (set, uri, flags, attrs) from list-file text. Errors name `line:col`.
pub fn parse_text(text: &str) -> Result<Vec<(i32, String, u32, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let ln = n + 1;
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let col0 = line.len() - t.len() + 1;
        let mut fields = Vec::new();
        let mut pos = 0;
        for tok in t.split_whitespace() {
            let at = t[pos..].find(tok).map(|p| p + pos).unwrap_or(pos);
            pos = at + tok.len();
            fields.push((col0 + at, tok));
        }
        let err = |col: usize, m: String| format!("{ln}:{col}: {m}");
        let (c, set) = fields[0];
        let set: i32 = set
            .parse()
            .map_err(|_| err(c, format!("set id '{set}' is not an integer")))?;
        if set < 0 {
            return Err(err(c, "set id must not be negative".into()));
        }
        let Some(&(c, uri)) = fields.get(1) else {
            return Err(err(line.len() + 1, "missing destination URI".into()));
        };
        check_uri(uri).map_err(|e| err(c, e))?;
        let flags = match fields.get(2) {
            Some(&(c, f)) => parse_flags(f).map_err(|e| err(c, e))?,
            None => 0,
        };
        let attrs = match fields.get(3) {
            Some(&(_, a)) => a.to_string(),
            None => String::new(),
        };
        if let Some(&(c, _)) = fields.get(4) {
            return Err(err(c, "unexpected text after the attributes".into()));
        }
        out.push((set, uri.to_string(), flags, attrs));
    }
    Ok(out)
}

/// Build the sets from rows (list order kept within a set; sets in order of first
/// appearance), resolving each destination (`resolve` may block: loader only).
pub fn build(
    rows: Vec<(i32, String, u32, String)>,
    resolve: impl Fn(&str) -> Option<SocketAddr>,
) -> Result<List, String> {
    let mut order: Vec<i32> = Vec::new();
    let mut by_set: BTreeMap<i32, Vec<(String, u32, String)>> = BTreeMap::new();
    for (set, uri, flags, attrs) in rows {
        if !by_set.contains_key(&set) {
            order.push(set);
        }
        by_set.entry(set).or_default().push((uri, flags, attrs));
    }
    let total: usize = by_set.values().map(Vec::len).sum();
    if total > MAX_DSTS {
        return Err(format!(
            "too many destinations ({total}, at most {MAX_DSTS})"
        ));
    }
    if order.len() > MAX_SETS {
        return Err(format!(
            "too many sets ({}, at most {MAX_SETS})",
            order.len()
        ));
    }
    let mut l = List::default();
    for id in order {
        let mut idx = Vec::new();
        for (uri, flags, attrs) in by_set.remove(&id).unwrap_or_default() {
            let addr = resolve(&uri);
            idx.push(l.dests.len());
            l.dests.push(Dest {
                set: id,
                weight: weight_of(&attrs),
                uri,
                flags,
                attrs,
                addr,
            });
        }
        let weights: Vec<u32> = idx.iter().map(|&i| l.dests[i].weight).collect();
        l.sets.push(Set {
            id,
            dests: idx,
            wseq: weighted_order(&weights),
        });
    }
    Ok(l)
}

/// Read rows from the `dispatcher` table (setid, destination[, flags][, attrs]).
pub fn load_db(
    conn: &mut dyn DbConn,
    table: &str,
    cols: [&str; 4],
) -> Result<Vec<(i32, String, u32, String)>, String> {
    let [setid, dst, flags, attrs] = cols;
    let mut want = vec![setid, dst];
    if !flags.is_empty() {
        want.push(flags);
    }
    if !attrs.is_empty() {
        want.push(attrs);
    }
    let rows = conn
        .query(table, &[], &want, None)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for r in rows {
        let set = r.first().and_then(|v| v.as_int()).unwrap_or(-1);
        let uri = r
            .get(1)
            .and_then(|v| v.as_str().map(|s| s.trim().to_string()))
            .unwrap_or_default();
        let Ok(set) = i32::try_from(set) else {
            continue;
        };
        if set < 0 || check_uri(&uri).is_err() {
            openser_core::log_warn!("skipping bad row: set {set}, destination <{uri}>");
            continue;
        }
        let mut k = 2;
        let mut fl = 0;
        if !flags.is_empty() {
            fl = r
                .get(k)
                .and_then(|v| v.as_int())
                .map(|v| v as u32 & (ST_INACTIVE | ST_PROBING))
                .unwrap_or(0);
            k += 1;
        }
        let at = if attrs.is_empty() {
            String::new()
        } else {
            r.get(k)
                .and_then(|v| v.as_str().map(|s| s.into_owned()))
                .unwrap_or_default()
        };
        out.push((set, uri, fl, at));
    }
    Ok(out)
}

/// The shared form.
pub fn serialize(l: &List) -> Vec<u8> {
    let mut s = String::new();
    for d in &l.dests {
        let a = d.addr.map(|a| a.to_string()).unwrap_or_default();
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            d.set, d.uri, d.flags, d.attrs, a
        ));
    }
    s.into_bytes()
}

/// Back from the shared form (written by [`serialize`]; trusted).
pub fn deserialize(b: &[u8]) -> List {
    let text = String::from_utf8_lossy(b);
    let mut rows = Vec::new();
    let mut addrs = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 5 {
            continue;
        }
        let Ok(set) = f[0].parse() else { continue };
        rows.push((
            set,
            f[1].to_string(),
            f[2].parse().unwrap_or(0),
            f[3].to_string(),
        ));
        addrs.push(f[4].parse::<SocketAddr>().ok());
    }
    // `serialize` wrote the destinations grouped by set, in list order, which is the
    // order `build` gives them back: the k-th row is the k-th destination.
    let next = std::cell::Cell::new(0usize);
    build(rows, |_| {
        let k = next.get();
        next.set(k + 1);
        addrs.get(k).copied().flatten()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_file_format() {
        let text = "# gateways\n\n1 sip:127.0.0.1:7070\n 1 sip:127.0.0.1:7072 2\n2 sip:gw.example.com 0 weight=3;x=y\n1 sip:127.0.0.1:7074 I\n";
        let rows = parse_text(text).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1], (1, "sip:127.0.0.1:7072".into(), 2, String::new()));
        assert_eq!(rows[2].3, "weight=3;x=y");
        assert_eq!(rows[3].2, ST_INACTIVE);
        let l = build(rows, |u| {
            u.strip_prefix("sip:")
                .and_then(|h| h.parse::<SocketAddr>().ok())
        })
        .unwrap();
        assert_eq!(l.sets.len(), 2);
        assert_eq!(l.sets[0].dests, vec![0, 1, 2]);
        assert_eq!(l.dests[3].weight, 3);
        assert_eq!(l.dests[0].addr, Some("127.0.0.1:7070".parse().unwrap()));
        assert_eq!(l.find(1, "SIP:127.0.0.1:7074"), Some(2));
        let back = deserialize(&serialize(&l));
        assert_eq!(back, l);
    }

    #[test]
    fn list_file_errors_name_line_and_column() {
        assert_eq!(
            parse_text("1 sip:a.com\nx sip:b.com\n").unwrap_err(),
            "2:1: set id 'x' is not an integer"
        );
        assert!(
            parse_text("1 sip:a.com\n  2\n")
                .unwrap_err()
                .starts_with("2:4: missing destination URI")
        );
        assert!(
            parse_text("3 foo:bar\n")
                .unwrap_err()
                .starts_with("1:3: bad destination URI")
        );
        assert!(
            parse_text("3 sip:a.com q\n")
                .unwrap_err()
                .starts_with("1:13: bad flags 'q'")
        );
        assert!(
            parse_text("3 sip:a.com 0 w=1 extra\n")
                .unwrap_err()
                .starts_with("1:19: unexpected text")
        );
        assert!(parse_text("-1 sip:a.com\n").is_err());
    }

    #[test]
    fn weights_interleave() {
        let o = weighted_order(&[3, 1]);
        assert_eq!(o.len(), 4);
        assert_eq!(o.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(weighted_order(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(weight_of("weight=3"), 3);
        assert_eq!(weight_of("a=b;Weight = 7"), 7);
        assert_eq!(weight_of(""), 1);
        assert_eq!(weight_of("weight=0"), 1);
    }
}

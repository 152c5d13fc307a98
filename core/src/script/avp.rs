//! AVPs: per-message multi-valued attribute list, newest first.

use super::PvValue;

/// The identifier of an AVP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AvpId {
    Int(i64),
    Str(String),
}

impl AvpId {
    /// An AVP named in a module parameter (`received_avp`, `fr_timer_avp`, …), in any of
    /// 1.2's spellings: `$avp(i:42)`, `$avp(s:name)`, `$avp(name)`, `i:42`, `s:name`, or a
    /// bare `name`. Errors name what was given; callers add the module and parameter.
    pub fn parse_param(s: &str) -> Result<AvpId, String> {
        use crate::cfg::pv::{AvpName, PvParam, parse_pv};
        let s = s.trim();
        let text = if s.starts_with('$') {
            s.to_string()
        } else {
            format!("$avp({s})")
        };
        let bad = || format!("bad AVP spec `{s}`");
        let (pv, n) = parse_pv(&text).map_err(|_| bad())?;
        if n != text.len() || pv.name != "avp" {
            return Err(bad());
        }
        match pv.param {
            Some(PvParam::Avp(AvpName::Int(i))) => Ok(AvpId::Int(i)),
            Some(PvParam::Avp(AvpName::Str(n) | AvpName::Alias(n))) => Ok(AvpId::Str(n)),
            _ => Err(bad()),
        }
    }
}

/// Per-message AVP list; values of one id are returned newest first.
#[derive(Debug, Clone, Default)]
pub struct AvpList {
    /// oldest first (push = add newest)
    items: Vec<(AvpId, PvValue)>,
}

impl AvpList {
    pub fn new() -> AvpList {
        AvpList { items: Vec::new() }
    }

    /// Add a value (it becomes the newest of its id).
    pub fn add(&mut self, id: AvpId, v: PvValue) {
        self.items.push((id, v));
    }

    /// The newest value of `id`.
    pub fn get(&self, id: &AvpId) -> Option<&PvValue> {
        self.items
            .iter()
            .rev()
            .find(|(i, _)| i == id)
            .map(|(_, v)| v)
    }

    /// All values of `id`, newest first.
    pub fn get_all(&self, id: &AvpId) -> Vec<&PvValue> {
        self.items
            .iter()
            .rev()
            .filter(|(i, _)| i == id)
            .map(|(_, v)| v)
            .collect()
    }

    /// The `n`-th value of `id` (0 = newest; negative counts from the oldest, -1 = oldest).
    pub fn get_nth(&self, id: &AvpId, n: i64) -> Option<&PvValue> {
        let all = self.get_all(id);
        let idx = if n < 0 {
            let k = all.len() as i64 + n;
            if k < 0 {
                return None;
            }
            k as usize
        } else {
            n as usize
        };
        all.get(idx).copied()
    }

    /// Delete the newest value of `id`.
    pub fn del_one(&mut self, id: &AvpId) {
        if let Some(p) = self.items.iter().rposition(|(i, _)| i == id) {
            self.items.remove(p);
        }
    }

    /// Delete every value of `id`.
    pub fn del_all(&mut self, id: &AvpId) {
        self.items.retain(|(i, _)| i != id);
    }

    /// Delete the `n`-th value of `id` (0 = newest); false if there is none.
    pub fn del_nth(&mut self, id: &AvpId, n: usize) -> bool {
        let pos = self
            .items
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, (i, _))| i == id)
            .nth(n)
            .map(|(p, _)| p);
        match pos {
            Some(p) => {
                self.items.remove(p);
                true
            }
            None => false,
        }
    }

    /// Keep only the AVPs for which `keep` is true (order kept).
    pub fn retain(&mut self, mut keep: impl FnMut(&AvpId, &PvValue) -> bool) {
        self.items.retain(|(i, v)| keep(i, v));
    }

    /// Delete everything.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every AVP, newest first.
    pub fn iter(&self) -> impl Iterator<Item = (&AvpId, &PvValue)> {
        self.items.iter().rev().map(|(i, v)| (i, v))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn avp_params_in_every_spelling() {
        use super::AvpId;
        for (s, want) in [
            ("$avp(i:42)", AvpId::Int(42)),
            ("i:42", AvpId::Int(42)),
            (" I:7 ", AvpId::Int(7)),
            ("$avp(s:rcv)", AvpId::Str("rcv".into())),
            ("s:rcv", AvpId::Str("rcv".into())),
            ("rcv", AvpId::Str("rcv".into())),
        ] {
            assert_eq!(AvpId::parse_param(s), Ok(want), "{s}");
        }
        for bad in ["", "$avp(i:x)", "i:", "$avp(a", "$ru", "a b", "$avp(s:a)x"] {
            assert!(AvpId::parse_param(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn stack() {
        let mut l = AvpList::new();
        let a = AvpId::Str("a".into());
        l.add(a.clone(), PvValue::Int(1));
        l.add(AvpId::Int(5), PvValue::Int(9));
        l.add(a.clone(), PvValue::Int(2));
        assert_eq!(l.get(&a), Some(&PvValue::Int(2)));
        assert_eq!(l.get_nth(&a, -1), Some(&PvValue::Int(1)));
        assert_eq!(l.get_nth(&a, 2), None);
        l.del_one(&a);
        assert_eq!(l.get(&a), Some(&PvValue::Int(1)));
        l.del_all(&a);
        assert_eq!(l.get(&a), None);
        assert_eq!(l.len(), 1);
        for v in 1..=3 {
            l.add(a.clone(), PvValue::Int(v));
        }
        assert!(l.del_nth(&a, 1));
        assert_eq!(l.get_all(&a), [&PvValue::Int(3), &PvValue::Int(1)]);
        assert!(!l.del_nth(&a, 2));
        l.retain(|i, _| i != &AvpId::Int(5));
        assert_eq!(l.len(), 2);
    }
}

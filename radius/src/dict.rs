//! The RADIUS dictionary: attribute and value names to numbers and types.
//!
//! 1.2's modules find every attribute by name in radiusclient-ng's dictionary
//! (`INIT_AV`), so an operator's dictionary decides the numbers. Here a built-in
//! dictionary ([`BUILTIN`]) holds what radiusclient-ng 0.5 shipped and 1.2 added
//! (`etc/dictionary.radius`): the RFC 2865/2866 attributes, the SIP accounting attributes
//! of draft-schulzrinne-sipping-radius-accounting (`Sip-Method` 101 …), the
//! draft-sterman digest attributes (`Digest-Response` 206, `Digest-Attributes` 207 and the
//! pseudo attributes `Digest-Realm` 1063 … `Digest-User-Name` 1072 that travel inside
//! `Digest-Attributes`, as FreeRADIUS's `digest` module reads them), the RFC 5090
//! attributes under their own names (`Digest-Response-RFC5090` …, not sent by the
//! modules), and the 1.2 proprietary ones (`Sip-URI-User` 208, `Sip-Group` 211,
//! `Sip-Rpid` 213, `SIP-AVP` 225) with their `Service-Type` values. A `dictionary` file
//! named in radiusclient.conf is read on top (its definitions replace the built-in ones
//! of the same name). Names compare case-insensitively, as radiusclient-ng's.
//!
//! File syntax (radiusclient-ng and FreeRADIUS): `ATTRIBUTE name number type [vendor]`,
//! `VALUE attribute name number`, `VENDOR name number`, `BEGIN-VENDOR name` …
//! `END-VENDOR name`, `$INCLUDE file` (relative to the including file), `#` comments.
//! Types: `string`, `octets`, `integer`, `date`, `ipaddr`, `ipv6addr` (and `abinary`,
//! `byte`, `short`, `signed`, `ether`, `ifid`, `ipv6prefix`, read as octets or integers);
//! attribute options after the type (`encrypt=1`, `has_tag`) are ignored, and so are
//! FreeRADIUS's extended and TLV attributes (numbers like `241.1`), so its whole
//! dictionary can be read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::packet::{self, Attr};

/// The value type of an attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrType {
    String,
    Octets,
    Integer,
    Date,
    IpAddr,
    Ipv6Addr,
}

/// The attribute number range packed into `Digest-Attributes` (draft-sterman):
/// `Digest-Realm` 1063 … `Digest-User-Name` 1072, sub-type = number − 1062.
pub const STERMAN_FIRST: u32 = 1063;
pub const STERMAN_LAST: u32 = 1072;
pub const DIGEST_ATTRIBUTES: u8 = 207;

/// One attribute definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrDef {
    pub name: String,
    pub code: u32,
    pub vendor: u32,
    pub typ: AttrType,
}

impl AttrDef {
    /// The wire attribute carrying `value` (already in this attribute's binary form).
    pub fn encode_raw(&self, value: &[u8]) -> Result<Attr, String> {
        let too_long = || format!("value of {} too long ({} bytes)", self.name, value.len());
        if self.vendor != 0 {
            let typ =
                u8::try_from(self.code).map_err(|_| format!("{}: bad vendor type", self.name))?;
            return packet::vsa(self.vendor, typ, value).map_err(|_| too_long());
        }
        if (STERMAN_FIRST..=STERMAN_LAST).contains(&self.code) {
            if value.len() + 2 > packet::MAX_VALUE {
                return Err(too_long());
            }
            let mut v = Vec::with_capacity(value.len() + 2);
            v.push((self.code - (STERMAN_FIRST - 1)) as u8);
            v.push((value.len() + 2) as u8);
            v.extend_from_slice(value);
            return Ok(Attr {
                typ: DIGEST_ATTRIBUTES,
                value: v,
            });
        }
        let typ = u8::try_from(self.code).map_err(|_| {
            format!(
                "attribute {} ({}) cannot be sent: number above 255",
                self.name, self.code
            )
        })?;
        if value.len() > packet::MAX_VALUE {
            return Err(too_long());
        }
        Ok(Attr::new(typ, value))
    }

    /// The wire attribute for a text value: strings and octets as they are, integers
    /// and dates as decimal numbers (or names of `VALUE`s, looked up in `dict`),
    /// addresses in their usual notation.
    pub fn encode_text(&self, dict: &Dict, text: &str) -> Result<Attr, String> {
        match self.typ {
            AttrType::String | AttrType::Octets => self.encode_raw(text.as_bytes()),
            AttrType::Integer | AttrType::Date => {
                let n = match text.trim().parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => dict.value(&self.name, text.trim()).ok_or_else(|| {
                        format!("'{text}' is not a number nor a value of {}", self.name)
                    })?,
                };
                self.encode_raw(&n.to_be_bytes())
            }
            AttrType::IpAddr => {
                let ip: std::net::Ipv4Addr = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{text}' is not an IPv4 address ({})", self.name))?;
                self.encode_raw(&ip.octets())
            }
            AttrType::Ipv6Addr => {
                let ip: std::net::Ipv6Addr = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{text}' is not an IPv6 address ({})", self.name))?;
                self.encode_raw(&ip.octets())
            }
        }
    }

    /// The wire attribute for an integer value.
    pub fn encode_int(&self, n: u32) -> Result<Attr, String> {
        self.encode_raw(&n.to_be_bytes())
    }

    /// Whether `a` (a received attribute) is an instance of this one; its value.
    pub fn value_of<'a>(&self, a: &'a Attr) -> Option<&'a [u8]> {
        if self.vendor == 0 {
            return (u32::from(a.typ) == self.code).then_some(a.value.as_slice());
        }
        if a.typ != packet::ATTR_VENDOR_SPECIFIC {
            return None;
        }
        let vendor = u32::from_be_bytes(a.value.get(..4)?.try_into().ok()?);
        let t = *a.value.get(4)?;
        let l = *a.value.get(5)? as usize;
        (vendor == self.vendor && u32::from(t) == self.code && l >= 2 && 4 + l <= a.value.len())
            .then(|| &a.value[6..4 + l])
    }
}

/// The dictionary.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    attrs: HashMap<String, AttrDef>,
    values: HashMap<(String, String), u32>,
    vendors: HashMap<String, u32>,
}

/// The built-in dictionary (radiusclient-ng 0.5's SIP-relevant part and 1.2's
/// `etc/dictionary.radius`).
pub const BUILTIN: &str = include_str!("dictionary.builtin");

const MAX_INCLUDE_DEPTH: usize = 8;

impl Dict {
    /// The built-in dictionary.
    pub fn builtin() -> Dict {
        let mut d = Dict::default();
        d.parse(BUILTIN, "built-in dictionary", None, 0)
            .expect("the built-in dictionary parses");
        d
    }

    /// Read a dictionary file (and what it includes) on top of this one.
    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        self.load_file_at(path, 0)
    }

    fn load_file_at(&mut self, path: &Path, depth: usize) -> Result<(), String> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{}: $INCLUDE nested too deeply (a loop?)",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read dictionary {}: {e}", path.display()))?;
        self.parse(&text, &path.display().to_string(), path.parent(), depth)
    }

    /// Parse dictionary text; `origin` names it in errors, `dir` resolves `$INCLUDE`.
    pub fn parse(
        &mut self,
        text: &str,
        origin: &str,
        dir: Option<&Path>,
        depth: usize,
    ) -> Result<(), String> {
        let mut block_vendor: Option<u32> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |msg: String| format!("{origin}:{}: {msg}", n + 1);
            let f: Vec<&str> = line.split_whitespace().collect();
            match f[0].to_ascii_uppercase().as_str() {
                kw @ ("$INCLUDE" | "$INCLUDE-") => {
                    let file = f
                        .get(1)
                        .ok_or_else(|| at("$INCLUDE without a file".into()))?;
                    let p = PathBuf::from(file);
                    let p = match dir {
                        Some(d) if p.is_relative() => d.join(p),
                        _ => p,
                    };
                    // `$INCLUDE-` (FreeRADIUS): only if the file exists.
                    if kw == "$INCLUDE" || p.exists() {
                        self.load_file_at(&p, depth + 1).map_err(at)?;
                    }
                }
                "VENDOR" => {
                    let (Some(name), Some(num)) = (f.get(1), f.get(2)) else {
                        return Err(at("VENDOR needs a name and a number".into()));
                    };
                    let num =
                        parse_num(num).ok_or_else(|| at(format!("bad vendor number '{num}'")))?;
                    self.vendors.insert(name.to_ascii_lowercase(), num);
                }
                "BEGIN-VENDOR" => {
                    let name = f
                        .get(1)
                        .ok_or_else(|| at("BEGIN-VENDOR without a name".into()))?;
                    block_vendor = Some(
                        self.vendor(name)
                            .ok_or_else(|| at(format!("unknown vendor '{name}'")))?,
                    );
                }
                "END-VENDOR" => block_vendor = None,
                "ATTRIBUTE" | "ATTRIB_NMC" => {
                    let (Some(name), Some(num), Some(typ)) = (f.get(1), f.get(2), f.get(3)) else {
                        return Err(at("ATTRIBUTE needs a name, a number and a type".into()));
                    };
                    // FreeRADIUS's extended and TLV attributes (`241.1`, `26.9.1`):
                    // not sendable by this client, and never used by 1.2's modules.
                    if num.contains('.') {
                        continue;
                    }
                    let code = parse_num(num)
                        .ok_or_else(|| at(format!("bad attribute number '{num}'")))?;
                    let typ = parse_type(typ).ok_or_else(|| at(format!("unknown type '{typ}'")))?;
                    // radiusclient-ng: a vendor name as the fifth field; FreeRADIUS:
                    // options (`encrypt=1`, `has_tag`, …) there, ignored.
                    let vendor = match f.get(4) {
                        Some(v)
                            if !v.contains('=') && !v.contains(',') && self.vendor(v).is_some() =>
                        {
                            self.vendor(v).unwrap_or(0)
                        }
                        _ => block_vendor.unwrap_or(0),
                    };
                    self.attrs.insert(
                        name.to_ascii_lowercase(),
                        AttrDef {
                            name: name.to_string(),
                            code,
                            vendor,
                            typ,
                        },
                    );
                }
                "VALUE" => {
                    let (Some(attr), Some(name), Some(num)) = (f.get(1), f.get(2), f.get(3)) else {
                        return Err(at("VALUE needs an attribute, a name and a number".into()));
                    };
                    // Values of attributes skipped above (or of unknown ones) are kept:
                    // harmless, and the attribute may be defined later.
                    let num =
                        parse_num(num).ok_or_else(|| at(format!("bad value number '{num}'")))?;
                    self.values
                        .insert((attr.to_ascii_lowercase(), name.to_ascii_lowercase()), num);
                }
                // FreeRADIUS keywords without meaning for a client.
                "FLAGS" | "PROTOCOL" | "BEGIN-TLV" | "END-TLV" | "BEGIN-PROTOCOL"
                | "END-PROTOCOL" => {}
                other => return Err(at(format!("unknown keyword '{other}'"))),
            }
        }
        Ok(())
    }

    /// An attribute by name.
    pub fn attr(&self, name: &str) -> Option<&AttrDef> {
        self.attrs.get(&name.to_ascii_lowercase())
    }

    /// An attribute by name, or an error naming it (for mod_init).
    pub fn need_attr(&self, name: &str) -> Result<AttrDef, String> {
        self.attr(name)
            .cloned()
            .ok_or_else(|| format!("the RADIUS dictionary has no attribute '{name}'"))
    }

    /// A named value of an attribute.
    pub fn value(&self, attr: &str, name: &str) -> Option<u32> {
        self.values
            .get(&(attr.to_ascii_lowercase(), name.to_ascii_lowercase()))
            .copied()
    }

    /// A named value, or an error naming it (for mod_init).
    pub fn need_value(&self, attr: &str, name: &str) -> Result<u32, String> {
        self.value(attr, name)
            .ok_or_else(|| format!("the RADIUS dictionary has no value '{name}' of {attr}"))
    }

    /// A vendor's number.
    pub fn vendor(&self, name: &str) -> Option<u32> {
        self.vendors.get(&name.to_ascii_lowercase()).copied()
    }
}

fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_type(s: &str) -> Option<AttrType> {
    let base = s.split('[').next().unwrap_or(s).to_ascii_lowercase();
    Some(match base.as_str() {
        "string" => AttrType::String,
        "octets" | "abinary" | "ether" | "ifid" | "ipv6prefix" | "tlv" | "ipv4prefix"
        | "combo-ip" | "vsa" | "extended" | "long-extended" | "evs" | "struct" => AttrType::Octets,
        "integer" | "byte" | "short" | "signed" | "uint32" | "integer64" => AttrType::Integer,
        "date" | "time" => AttrType::Date,
        "ipaddr" | "ipv4addr" => AttrType::IpAddr,
        "ipv6addr" => AttrType::Ipv6Addr,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_what_the_modules_need() {
        let d = Dict::builtin();
        for a in [
            "User-Name",
            "Service-Type",
            "Acct-Status-Type",
            "Acct-Session-Id",
            "Event-Timestamp",
            "Sip-Method",
            "Sip-Response-Code",
            "Sip-From-Tag",
            "Sip-To-Tag",
            "Sip-URI-User",
            "Sip-Group",
            "SIP-AVP",
            "Digest-Response",
            "Digest-Realm",
            "Digest-Nonce",
            "Digest-Method",
            "Digest-URI",
            "Digest-QOP",
            "Digest-Algorithm",
            "Digest-Body-Digest",
            "Digest-CNonce",
            "Digest-Nonce-Count",
            "Digest-User-Name",
            "Calling-Station-Id",
            "Called-Station-Id",
        ] {
            assert!(d.attr(a).is_some(), "{a}");
        }
        assert_eq!(d.value("Service-Type", "Sip-Session"), Some(15));
        assert_eq!(d.value("service-type", "group-check"), Some(12));
        assert_eq!(d.value("Service-Type", "Call-Check"), Some(10));
        assert_eq!(d.value("Service-Type", "SIP-Caller-AVPs"), Some(30));
        assert_eq!(d.value("Service-Type", "SIP-Callee-AVPs"), Some(31));
        assert_eq!(d.value("Acct-Status-Type", "Start"), Some(1));
        assert_eq!(d.value("Acct-Status-Type", "Stop"), Some(2));
        assert_eq!(d.value("Acct-Status-Type", "Failed"), Some(15));
        assert_eq!(d.attr("sip-avp").unwrap().code, 225);
    }

    #[test]
    fn sterman_digest_attributes_are_packed() {
        let d = Dict::builtin();
        let a = d
            .attr("Digest-Realm")
            .unwrap()
            .encode_text(&d, "example.com")
            .unwrap();
        assert_eq!(a.typ, DIGEST_ATTRIBUTES);
        assert_eq!(a.value[0], 1);
        assert_eq!(a.value[1] as usize, 2 + "example.com".len());
        assert_eq!(&a.value[2..], b"example.com");
        let u = d
            .attr("Digest-User-Name")
            .unwrap()
            .encode_text(&d, "bob")
            .unwrap();
        assert_eq!((u.typ, u.value[0]), (DIGEST_ATTRIBUTES, 10));
        let r = d
            .attr("Digest-Response")
            .unwrap()
            .encode_text(&d, "abc")
            .unwrap();
        assert_eq!(r, Attr::new(206, b"abc"));
    }

    #[test]
    fn files_vendors_values_and_errors() {
        let mut d = Dict::builtin();
        d.parse(
            "VENDOR Cisco 9\n\
             ATTRIBUTE Cisco-AVPair 1 string Cisco\n\
             BEGIN-VENDOR Cisco\nATTRIBUTE Cisco-Other 2 integer\nEND-VENDOR Cisco\n\
             ATTRIBUTE Sip-Group 250 string # moved\n\
             VALUE Service-Type Sip-Session 99\n\
             ATTRIBUTE Framed-Extra 240 octets encrypt=1\n",
            "t",
            None,
            0,
        )
        .unwrap();
        let c = d.attr("cisco-avpair").unwrap().clone();
        assert_eq!((c.vendor, c.code), (9, 1));
        assert_eq!(d.attr("Cisco-Other").unwrap().vendor, 9);
        assert_eq!(d.attr("Sip-Group").unwrap().code, 250);
        assert_eq!(d.value("Service-Type", "Sip-Session"), Some(99));
        assert_eq!(d.attr("Framed-Extra").unwrap().vendor, 0);
        let a = c.encode_text(&d, "call-id=1").unwrap();
        assert_eq!(c.value_of(&a), Some(&b"call-id=1"[..]));
        d.parse(
            "ATTRIBUTE Ext-Thing 241.1 integer\nVALUE Ext-Thing One 1\n",
            "ext",
            None,
            0,
        )
        .unwrap();
        assert!(d.attr("Ext-Thing").is_none());
        let e = d.parse("ATTRIBUTE X\n", "f.dict", None, 0).unwrap_err();
        assert!(e.starts_with("f.dict:1:"), "{e}");
        let e = d.parse("\nBOGUS 1 2\n", "f.dict", None, 0).unwrap_err();
        assert!(e.starts_with("f.dict:2:"), "{e}");
        assert!(d.parse("ATTRIBUTE Y 3 weird\n", "f", None, 0).is_err());
        let st = d.attr("Service-Type").unwrap().clone();
        assert_eq!(
            st.encode_text(&d, "Group-Check").unwrap(),
            Attr::new(6, &12u32.to_be_bytes())
        );
        assert!(st.encode_text(&d, "nonsense").is_err());
    }

    #[test]
    fn include_resolves_relative_to_the_file() {
        let dir = std::env::temp_dir().join(format!("radius-dict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("main"),
            "$INCLUDE sub\nATTRIBUTE A-One 240 string\n",
        )
        .unwrap();
        std::fs::write(dir.join("sub"), "ATTRIBUTE A-Two 241 integer\n").unwrap();
        std::fs::write(dir.join("loop"), "$INCLUDE loop\n").unwrap();
        let mut d = Dict::default();
        d.load_file(&dir.join("main")).unwrap();
        assert_eq!(d.attr("A-Two").unwrap().code, 241);
        assert!(d.load_file(&dir.join("loop")).is_err());
        assert!(d.load_file(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

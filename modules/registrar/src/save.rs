//! `save()`: process a REGISTER against a usrloc domain (OpenSER 1.2 `save.c`).
//!
//! [`save`] is the whole decision logic without any I/O: it parses the request,
//! updates the domain and returns either the bindings to list in the 200 OK or the
//! error to answer with. The script function in `mod.rs` sends the reply.

use openser_core::parser::{HdrType, Method, NameAddr, SipMsg, Uri};
use usrloc::{ALL_METHODS, ContactInfo, Match, Q_UNSPECIFIED, SlotGuard, UDomain, UlError};

use super::RegParams;

/// `save()` flag: memory only (no DB write; everything is memory-only for now).
pub const SAVE_MEMORY_ONLY: u32 = 0x01;
/// `save()` flag: do not send a reply.
pub const SAVE_NO_REPLY: u32 = 0x02;
/// `save()` flag (Kamailio's `REG_SAVE_REPL_FL`): keep one contact per AOR — only the
/// first Contact of the REGISTER is used and every other binding of the AOR removed.
pub const SAVE_SINGLE_CONTACT: u32 = 0x04;

/// Registrar error codes (OpenSER's `rerr_t`), each with its reply and
/// `P-Registrar-Error` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegError {
    UlDelR,
    UlGetR,
    UlNewR,
    InvCseq,
    UlInsC,
    UlInsR,
    UlDelC,
    UlUpdC,
    ToUser,
    AorLen,
    AorParse,
    InvExp,
    InvQ,
    Parse,
    ToMiss,
    CidMiss,
    CsMiss,
    ParseExp,
    ParseCont,
    StarExp,
    StarCont,
    Unescape,
    TooMany,
    ContactLen,
    CallidLen,
    ParsePath,
    PathUnsup,
}

impl RegError {
    /// Reply code and reason phrase.
    pub fn reply(self) -> (u16, &'static str) {
        use RegError::*;
        match self {
            UlDelR | UlGetR | UlNewR | UlInsC | UlInsR | UlDelC | UlUpdC | AorLen => {
                (500, "Server Internal Error")
            }
            TooMany => (503, "Service Unavailable"),
            PathUnsup => (420, "Bad Extension"),
            _ => (400, "Bad Request"),
        }
    }

    /// The `P-Registrar-Error` text (1.2's `error_info`).
    pub fn text(self) -> &'static str {
        use RegError::*;
        match self {
            UlDelR => "Error while removing record from usrloc",
            UlGetR => "Error while looking up usrloc record",
            UlNewR => "Error while creating new usrloc record",
            InvCseq => "Invalid CSeq number",
            UlInsC => "Error while inserting contact",
            UlInsR => "Error while inserting record",
            UlDelC => "Error while deleting contact",
            UlUpdC => "Error while updating contact",
            ToUser => "Bad username in To",
            AorLen => "Address Of Record too long",
            AorParse => "Error while parsing AOR",
            InvExp => "Invalid expires param in contact",
            InvQ => "Invalid q param in contact",
            Parse => "Error while parsing message",
            ToMiss => "To header not found",
            CidMiss => "Call-ID header not found",
            CsMiss => "CSeq header not found",
            ParseExp => "Error while parsing expires",
            ParseCont => "Error while parsing Contact",
            StarExp => "* used in contact and expires is not zero",
            StarCont => "* used in contact and more than 1 contact",
            Unescape => "Error while unescaping username",
            TooMany => "Too many registered contacts",
            ContactLen => "Contact/received too long",
            CallidLen => "Callid too long",
            ParsePath => "Error while parsing path",
            PathUnsup => "Path not supported",
        }
    }
}

/// Per-call inputs of `save()` that come from the script context.
#[derive(Debug, Clone, Default)]
pub struct SaveInput {
    /// `save()` flags (`SAVE_*`).
    pub flags: u32,
    /// Value of `received_avp` (e.g. set by nathelper's `fix_nated_register`).
    pub received: Option<String>,
    /// AOR taken from `aor_avp` instead of the To URI.
    pub aor: Option<String>,
    /// Branch-0 flags of the REGISTER (stored as the contacts' `cflags`).
    pub bflags: u32,
    /// Socket text to store instead of the receiving socket (`sock_flag` set and the
    /// `sock_hdr_name` header present).
    pub socket: Option<String>,
}

/// Outcome of a successful `save()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The AOR's valid bindings after the update, best first.
    pub contacts: Vec<ContactInfo>,
    /// Path to echo in the 200 OK (`Path:` header value), per `path_mode`.
    pub path_echo: Option<String>,
}

/// Contacts longer than this are rejected (`R_CONTACT_LEN`; usrloc stores u16 lengths).
const MAX_FIELD: usize = 65535;
/// OpenSER's `MAX_AOR_LEN`.
const MAX_AOR_LEN: usize = 256;

/// Build the AOR from a URI (`extract_aor`): unescaped user, plus `@host` with
/// `use_domain` (after stripping `realm_prefix`); lowercased unless `case_sensitive`.
pub fn extract_aor(uri: &str, p: &RegParams, use_domain: bool) -> Result<String, RegError> {
    let u = Uri::parse(uri).map_err(|_| RegError::AorParse)?;
    let user = openser_core::parser::uri::unescape(&u.user);
    let mut aor = user;
    if use_domain {
        let mut host = u.host.as_str();
        if !p.realm_prefix.is_empty()
            && host.len() > p.realm_prefix.len()
            && host
                .get(..p.realm_prefix.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(&p.realm_prefix))
        {
            host = &host[p.realm_prefix.len()..];
        }
        aor.push('@');
        aor.push_str(host);
    }
    if aor.is_empty() || aor == "@" {
        return Err(RegError::ToUser);
    }
    if aor.len() > MAX_AOR_LEN {
        return Err(RegError::AorLen);
    }
    if !p.case_sensitive {
        aor.make_ascii_lowercase();
    }
    Ok(aor)
}

/// 1.2's method bits (`METHOD_INVITE` = 1 …), for `methods` / method filtering.
pub fn method_bit(m: Method) -> u32 {
    match m {
        Method::Invite => 1,
        Method::Cancel => 2,
        Method::Ack => 4,
        Method::Bye => 8,
        Method::Info => 16,
        Method::Register => 32,
        Method::Subscribe => 64,
        Method::Notify => 128,
        Method::Message => 256,
        Method::Options => 512,
        Method::Prack => 1024,
        Method::Update => 2048,
        Method::Refer => 4096,
        Method::Publish => 8192,
        Method::Other => 16384,
    }
}

/// Methods mask of the REGISTER's `Allow` headers ([`ALL_METHODS`] without any).
fn allowed_methods(msg: &SipMsg) -> u32 {
    if msg.first_of(HdrType::Allow).is_none() {
        return ALL_METHODS;
    }
    match msg.tokens(HdrType::Allow) {
        Ok(toks) => toks
            .iter()
            .map(|t| method_bit(Method::from_bytes(t.trim().as_bytes())))
            .fold(0, |a, b| a | b),
        Err(_) => ALL_METHODS,
    }
}

/// Parse a q value (`0`, `0.5`, `1.000`) into q × 100.
pub fn parse_q(s: &str) -> Option<i32> {
    let s = s.trim();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 3 {
        return None;
    }
    let i: i32 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f = 0i32;
    for (k, c) in frac.bytes().take(2).enumerate() {
        f += i32::from(c - b'0') * if k == 0 { 10 } else { 1 };
    }
    let q = i.checked_mul(100)?.checked_add(f)?;
    if q > 100 || (i == 1 && frac.bytes().any(|c| c != b'0')) {
        return None;
    }
    Some(q)
}

/// The Expires header value, or `default_expires` (`get_expires_hf`).
fn expires_hf(msg: &SipMsg, p: &RegParams) -> Result<i64, RegError> {
    match msg.expires() {
        Ok(Some(v)) => Ok(i64::from(v)),
        Ok(None) => Ok(i64::from(p.default_expires)),
        Err(_) => Err(RegError::ParseExp),
    }
}

/// Absolute expiry of one contact at `now` (`calc_contact_expires`): its `expires`
/// parameter (unparsable → 3600), else the Expires header, else `default_expires`;
/// non-zero values are shortened at random by up to `expires_range` percent
/// (`default_expires_range` for `default_expires`), then raised to `min_expires` and
/// capped at `max_expires`. 0 = remove.
pub fn contact_expires(
    msg: &SipMsg,
    c: &NameAddr,
    p: &RegParams,
    now: i64,
) -> Result<i64, RegError> {
    let (rel, range) = match c.expires {
        Some(sp) if sp.len > 0 => match msg.s(sp).trim().parse::<u32>() {
            Ok(v) => (i64::from(v), p.expires_range),
            Err(_) => (3600, p.expires_range),
        },
        _ => match msg.expires() {
            Ok(Some(v)) => (i64::from(v), p.expires_range),
            Ok(None) => (i64::from(p.default_expires), p.default_expires_range),
            Err(_) => return Err(RegError::ParseExp),
        },
    };
    let rel = randomize_expires(rel, range, openser_core::dns::resolver::rand_u64());
    Ok(clamp_expires(rel, p).map_or(0, |r| r + now))
}

/// Shorten a relative expiry `e` at random by up to `range` percent (Kamailio's
/// `randomize_expires`: registrations made at once, after a restart, do not all come
/// back at once): a value in [e − e × range / 100, e], chosen by `rnd`. 0 stays 0.
pub fn randomize_expires(e: i64, range: u32, rnd: u64) -> i64 {
    if e <= 0 || range == 0 {
        return e;
    }
    let low = e - e * i64::from(range.min(100)) / 100;
    let span = (e - low) as u64 + 1;
    low + (rnd % span) as i64
}

/// Clamp a relative expiry: `None` for 0 (remove), else the value raised to
/// `min_expires` and capped at `max_expires` (0 = no cap).
pub fn clamp_expires(rel: i64, p: &RegParams) -> Option<i64> {
    if rel == 0 {
        return None;
    }
    let mut e = rel.max(i64::from(p.min_expires));
    if p.max_expires != 0 {
        e = e.min(i64::from(p.max_expires));
    }
    Some(e.max(1))
}

/// Everything about the REGISTER that does not depend on the stored bindings.
struct Parsed {
    aor: String,
    star: bool,
    contacts: Vec<NameAddr>,
    callid: String,
    cseq: i32,
    user_agent: String,
    path: String,
    path_received: Option<String>,
    path_echo: Option<String>,
    methods: u32,
    socket: String,
}

/// The REGISTER's parts `save` needs, checked in 1.2's order; `dom`'s slot for the AOR
/// is prefetched as soon as the AOR is known (see [`save`]).
fn parse_register(
    msg: &SipMsg,
    p: &RegParams,
    inp: &SaveInput,
    dom: &UDomain,
) -> Result<Parsed, RegError> {
    if msg.first_of(HdrType::To).is_none() {
        return Err(RegError::ToMiss);
    }
    let callid = msg.callid().ok_or(RegError::CidMiss)?.trim().to_owned();
    if callid.len() > MAX_FIELD {
        return Err(RegError::CallidLen);
    }
    let cseq = msg.cseq().map_err(|_| RegError::CsMiss)?.num;
    // CSeq numbers are < 2^31 per RFC 3261; larger ones wrap like OpenSER's str2int.
    let cseq = cseq as i32;
    let list = msg.contacts().map_err(|_| RegError::ParseCont)?;
    let star = list.star;
    if star {
        // check_contacts(): `*` needs Expires: 0 and must be alone.
        if expires_hf(msg, p)? != 0 {
            return Err(RegError::StarExp);
        }
        if !list.contacts.is_empty() || msg.all_of(HdrType::Contact).count() > 1 {
            return Err(RegError::StarCont);
        }
    }
    // Expires header must be parsable if present.
    if msg.first_of(HdrType::Expires).is_some() && msg.expires().is_err() {
        return Err(RegError::ParseExp);
    }
    for c in &list.contacts {
        if c.uri.len as usize > MAX_FIELD {
            return Err(RegError::ContactLen);
        }
        if let Some(q) = c.q
            && parse_q(msg.s(q)).is_none()
        {
            return Err(RegError::InvQ);
        }
    }
    let aor = match &inp.aor {
        Some(a) => extract_aor(a, p, p.use_domain)?,
        None => {
            let to = msg.to().map_err(|_| RegError::ToMiss)?;
            extract_aor(msg.s(to.uri), p, p.use_domain)?
        }
    };
    dom.prefetch_slot(aor.as_bytes());
    // Path (RFC 3327).
    let (mut path, mut path_received, mut path_echo) = (String::new(), None, None);
    if p.use_path {
        let paths: Vec<&str> = msg
            .headers_by_name("Path")
            .into_iter()
            .map(str::trim)
            .collect();
        if !paths.is_empty() {
            path = paths.join(",");
            if path.len() > MAX_FIELD {
                return Err(RegError::ParsePath);
            }
            let supported = msg
                .tokens(HdrType::Supported)
                .map(|t| t.iter().any(|t| t.trim().eq_ignore_ascii_case("path")))
                .unwrap_or(false);
            match p.path_mode {
                0 => {}
                1 => {
                    if supported {
                        path_echo = Some(path.clone());
                    }
                }
                _ => {
                    if !supported {
                        return Err(RegError::PathUnsup);
                    }
                    path_echo = Some(path.clone());
                }
            }
            if p.path_use_received {
                path_received = first_path_received(&path)?;
            }
        }
    }
    let ua = msg.user_agent().unwrap_or("").trim();
    let user_agent = ua.get(..ua.len().min(MAX_FIELD)).unwrap_or("").to_owned();
    Ok(Parsed {
        aor,
        star,
        contacts: list.contacts,
        callid,
        cseq,
        user_agent,
        path,
        path_received,
        path_echo,
        methods: allowed_methods(msg),
        socket: inp.socket.clone().unwrap_or_else(|| socket_text(msg)),
    })
}

/// The `received` parameter of the first Path URI (`path_use_received`).
fn first_path_received(path: &str) -> Result<Option<String>, RegError> {
    let first = first_uri(path).ok_or(RegError::ParsePath)?;
    let u = Uri::parse(first).map_err(|_| RegError::ParsePath)?;
    Ok(u.param("received")
        .flatten()
        .map(|v| openser_core::parser::uri::unescape(v.trim_matches('"'))))
}

/// The first URI of a Path / Route value list (`<uri>` or bare).
pub fn first_uri(list: &str) -> Option<&str> {
    let s = list.trim_start();
    if let Some(rest) = s.strip_prefix('<') {
        return rest.split_once('>').map(|(u, _)| u.trim());
    }
    let end = s.find([',', ';']).unwrap_or(s.len());
    let u = s[..end].trim();
    (!u.is_empty()).then_some(u)
}

/// The receiving socket as `proto:ip:port` (the `socket` column).
pub fn socket_text(msg: &SipMsg) -> String {
    let a = msg.rcv.dst;
    if a.port() == 0 {
        return String::new();
    }
    // The receiving socket's text, made once at start-up.
    if let Some(s) = openser_core::transport::socket::sockets().get(msg.rcv.sock_idx)
        && s.addr == a
        && s.proto
            .as_str()
            .eq_ignore_ascii_case(msg.rcv.proto.as_str())
    {
        return s.sock_text.clone();
    }
    let proto = msg.rcv.proto.as_str().to_ascii_lowercase();
    match a.ip() {
        std::net::IpAddr::V6(ip) => format!("{proto}:[{ip}]:{}", a.port()),
        std::net::IpAddr::V4(ip) => format!("{proto}:{ip}:{}", a.port()),
    }
}

/// Build the ContactInfo for contact `c` with absolute expiry `expires`.
fn contact_info(
    msg: &SipMsg,
    c: &NameAddr,
    pr: &Parsed,
    p: &RegParams,
    inp: &SaveInput,
    expires: i64,
    now: i64,
) -> ContactInfo {
    let q = c.q.and_then(|q| parse_q(msg.s(q))).unwrap_or(p.default_q);
    let received = pr
        .path_received
        .clone()
        .or_else(|| inp.received.clone())
        .unwrap_or_default();
    ContactInfo {
        contact: msg.s(c.uri).to_owned(),
        received: if received.len() > MAX_FIELD {
            String::new()
        } else {
            received
        },
        path: pr.path.clone(),
        expires,
        q,
        callid: pr.callid.clone(),
        cseq: pr.cseq,
        flags: 0,
        cflags: inp.bflags,
        user_agent: pr.user_agent.clone(),
        socket: pr.socket.clone(),
        methods: pr.methods,
        last_modified: now,
        ..ContactInfo::default()
    }
}

fn ul_err(e: UlError, dflt: RegError) -> RegError {
    match e {
        UlError::TooLong => RegError::ContactLen,
        _ => dflt,
    }
}

/// Process a REGISTER (`save()`) at unix time `now`: the AOR's valid bindings
/// afterwards, or the error to reply with. On error no binding of the REGISTER is
/// half-applied beyond what OpenSER does (contacts processed before the failing one
/// stay updated, as in 1.2).
pub fn save(
    msg: &SipMsg,
    dom: &UDomain,
    p: &RegParams,
    inp: &SaveInput,
    now: i64,
) -> Result<Saved, RegError> {
    // In a table larger than the caches the AOR's slot and record are cache misses:
    // parse_register starts loading the slot as soon as it knows the AOR, the record
    // follows once the slot is in, and the lock-free work meanwhile hides both.
    let pr = parse_register(msg, p, inp, dom)?;
    let aor = pr.aor.as_bytes();
    // Every contact's expiry and binding before the lock (parse errors change nothing;
    // the slot lock is held for the table work only).
    let single = inp.flags & SAVE_SINGLE_CONTACT != 0;
    let n = if single { 1 } else { pr.contacts.len() };
    let contacts = &pr.contacts[..n.min(pr.contacts.len())];
    let mut exps = Vec::with_capacity(contacts.len());
    for c in contacts {
        exps.push(contact_expires(msg, c, p, now)?);
    }
    dom.prefetch_first_record(aor);
    let todo: Vec<Binding<'_>> = contacts
        .iter()
        .zip(exps)
        .map(|(c, e)| Binding {
            uri: msg.s(c.uri).as_bytes(),
            expires: e,
            info: (e != 0).then(|| contact_info(msg, c, &pr, p, inp, e, now)),
        })
        .collect();
    // With db_mode 3 a database failure is an error reply (500), not a 200 for
    // bindings that could not be read or stored (the flag is per process).
    let _ = usrloc::take_db_failure();
    // The slot lock is held only inside; usrloc's database writes go out after it.
    let res = dom.with_slot(aor, |g| {
        if usrloc::take_db_failure().is_some() {
            // The AOR's rows could not be read: change nothing.
            return Err(RegError::UlGetR);
        }
        save_locked(g, p, single, &pr, &todo, now)
    });
    match usrloc::take_db_failure() {
        Some(_) if res.is_ok() => Err(RegError::UlUpdC),
        _ => res,
    }
}

/// One Contact of a REGISTER, prepared before the slot lock is taken.
struct Binding<'m> {
    uri: &'m [u8],
    /// Absolute expiry; 0 removes the binding.
    expires: i64,
    /// What to store (None when `expires` is 0).
    info: Option<ContactInfo>,
}

/// [`save`] with the AOR's slot locked: `todo` holds the REGISTER's contacts (only the
/// first with `single`).
fn save_locked(
    g: &mut SlotGuard<'_>,
    p: &RegParams,
    single: bool,
    pr: &Parsed,
    todo: &[Binding<'_>],
    now: i64,
) -> Result<Saved, RegError> {
    let aor = pr.aor.as_bytes();
    if pr.star {
        // Contact: * with Expires: 0 — remove every binding.
        if let Some(r) = g.get_urecord(aor) {
            g.delete_urecord(r).map_err(|_| RegError::UlDelR)?;
        }
        return Ok(Saved {
            contacts: Vec::new(),
            path_echo: pr.path_echo.clone(),
        });
    }
    if todo.is_empty() {
        // Query: just list the current bindings.
        let list = match g.get_urecord(aor) {
            Some(r) => g
                .contacts(r)
                .map_err(|_| RegError::UlGetR)?
                .into_iter()
                .filter(|c| c.is_valid(now))
                .collect(),
            None => Vec::new(),
        };
        return Ok(Saved {
            contacts: list,
            path_echo: pr.path_echo.clone(),
        });
    }
    let (r, created) = match g.get_urecord(aor) {
        Some(r) => (r, false),
        None => {
            if todo.iter().all(|b| b.expires == 0) {
                // Nothing to store (new contacts with expires 0 are ignored).
                return Ok(Saved {
                    contacts: Vec::new(),
                    path_echo: pr.path_echo.clone(),
                });
            }
            (
                g.insert_urecord(aor)
                    .map_err(|e| ul_err(e, RegError::UlNewR))?,
                true,
            )
        }
    };
    let res = (|| {
        // test_max_contacts(): valid bindings after this REGISTER.
        if p.max_contacts > 0 {
            let mut num = if single {
                0
            } else {
                g.contacts(r)
                    .map_err(|_| RegError::UlGetR)?
                    .iter()
                    .filter(|c| c.is_valid(now))
                    .count() as i64
            };
            for b in todo {
                let e = b.expires;
                let m = g
                    .get_ucontact(r, b.uri, pr.callid.as_bytes(), pr.cseq, now)
                    .map_err(|_| RegError::UlGetR)?;
                match m {
                    _ if single => num += i64::from(e != 0),
                    Match::Found(_) if e == 0 => num -= 1,
                    Match::NotFound if e != 0 => num += 1,
                    _ => {}
                }
            }
            if num > i64::from(p.max_contacts) {
                return Err(RegError::TooMany);
            }
        }
        let mut kept: Vec<&[u8]> = Vec::new();
        for b in todo {
            let uri = b.uri;
            let m = g
                .get_ucontact(r, uri, pr.callid.as_bytes(), pr.cseq, now)
                .map_err(|_| RegError::UlGetR)?;
            match m {
                Match::InvalidCseq => return Err(RegError::InvCseq),
                // Retransmission: skipped silently, answered with the bindings.
                Match::Retransmission => kept.push(uri),
                Match::NotFound => {
                    if let Some(ci) = &b.info {
                        g.insert_ucontact(r, ci)
                            .map_err(|er| ul_err(er, RegError::UlInsC))?;
                        kept.push(uri);
                    }
                }
                Match::Found(id) => match &b.info {
                    Some(ci) => {
                        g.update_ucontact(r, id, ci)
                            .map_err(|er| ul_err(er, RegError::UlUpdC))?;
                        kept.push(uri);
                    }
                    None => g.delete_ucontact(r, id).map_err(|_| RegError::UlDelC)?,
                },
            }
        }
        if single {
            let ids = g.contact_ids(r).map_err(|_| RegError::UlGetR)?;
            let infos = g.contacts(r).map_err(|_| RegError::UlGetR)?;
            for (id, ci) in ids.into_iter().zip(infos) {
                if !kept.contains(&ci.contact.as_bytes()) {
                    g.delete_ucontact(r, id).map_err(|_| RegError::UlDelC)?;
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        if created {
            let _ = g.release_urecord(r);
        }
        return Err(e);
    }
    let list: Vec<ContactInfo> = g
        .contacts(r)
        .map_err(|_| RegError::UlGetR)?
        .into_iter()
        .filter(|c| c.is_valid(now))
        .collect();
    let _ = g.release_urecord(r);
    Ok(Saved {
        contacts: list,
        path_echo: pr.path_echo.clone(),
    })
}

/// `q` as 1.2's `q2str` prints it: `1`, `0`, `0.5`, `0.25`.
pub fn q_str(q: i32) -> Option<String> {
    if q == Q_UNSPECIFIED || q < 0 {
        return None;
    }
    if q >= 100 {
        return Some("1".into());
    }
    if q == 0 {
        return Some("0".into());
    }
    let mut s = format!("0.{q:02}");
    while s.ends_with('0') {
        s.pop();
    }
    Some(s)
}

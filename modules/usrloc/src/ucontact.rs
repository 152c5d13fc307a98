//! One contact (binding) of an address-of-record: the shm form [`UContact`] and the
//! private-memory form [`ContactInfo`] the registrar, MI and the DB layer work with.
//!
//! Memory: a contact is one shm allocation: the fixed-size [`UContact`] followed by
//! its strings back to back (contact, callid, user_agent, received, path, socket),
//! addressed by `u16` lengths; a second block only if an update makes them outgrow
//! the space they were allocated with.

use shm::{ShmPtr, ShmSafe, ShmStr};

use super::UlError;
use super::shmref::Tailed;

/// q value meaning "no q given" (OpenSER's `Q_UNSPECIFIED`); sorts below q=0.
pub const Q_UNSPECIFIED: i32 = -1;
/// Methods bit mask meaning "all methods" (no `methods` restriction).
pub const ALL_METHODS: u32 = 0xFFFF_FFFF;

/// Database synchronisation state of a contact (for db_mode 1/2; `ul_dump` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum ContactState {
    /// Not yet written to the database.
    #[default]
    New = 0,
    /// Identical to the database row.
    Sync = 1,
    /// Changed since the last write.
    Dirty = 2,
}

impl ContactState {
    fn from_u8(v: u8) -> ContactState {
        match v {
            1 => ContactState::Sync,
            2 => ContactState::Dirty,
            _ => ContactState::New,
        }
    }

    /// `CS_NEW` / `CS_SYNC` / `CS_DIRTY`, as `ul_dump` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactState::New => "CS_NEW",
            ContactState::Sync => "CS_SYNC",
            ContactState::Dirty => "CS_DIRTY",
        }
    }
}

/// A contact in private memory: every column of the 1.2 `location` table except the
/// AOR (username/domain), which belongs to the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInfo {
    /// Contact URI (`contact` column).
    pub contact: String,
    /// Source address the REGISTER came from, as a SIP URI (`received`); "" = none.
    pub received: String,
    /// Path header value (`path`); "" = none.
    pub path: String,
    /// Absolute expiry time (unix seconds); 0 = permanent.
    pub expires: i64,
    /// q × 100 (0..=100), or [`Q_UNSPECIFIED`].
    pub q: i32,
    /// Call-ID of the REGISTER.
    pub callid: String,
    /// CSeq number of the REGISTER.
    pub cseq: i32,
    /// Contact flags (`flags`).
    pub flags: u32,
    /// Branch flags (`cflags`), including `nat_bflag`.
    pub cflags: u32,
    /// User-Agent header value.
    pub user_agent: String,
    /// Receiving socket as text, `proto:ip:port` (e.g. `udp:127.0.0.1:5060`); "" = none.
    pub socket: String,
    /// Allowed methods bit mask ([`ALL_METHODS`] when not restricted).
    pub methods: u32,
    /// Unix time of the last insert/update.
    pub last_modified: i64,
    /// Database state.
    pub state: ContactState,
}

impl Default for ContactInfo {
    fn default() -> Self {
        ContactInfo {
            contact: String::new(),
            received: String::new(),
            path: String::new(),
            expires: 0,
            q: Q_UNSPECIFIED,
            callid: String::new(),
            cseq: 0,
            flags: 0,
            cflags: 0,
            user_agent: String::new(),
            socket: String::new(),
            methods: ALL_METHODS,
            last_modified: 0,
            state: ContactState::New,
        }
    }
}

impl ContactInfo {
    /// A contact is valid (usable by lookup, listed in 200 OK) if permanent or not yet
    /// expired at `now`.
    pub fn is_valid(&self, now: i64) -> bool {
        self.expires == 0 || self.expires > now
    }

    /// Whether `expires` has passed at `now` (the timer deletes such contacts).
    pub fn is_expired(&self, now: i64) -> bool {
        !self.is_valid(now)
    }
}

/// Indexes of the strings inside the contact's string block (the others follow in the
/// order `Packed::new` and `UContact::to_info` name them: user_agent, received, path,
/// socket).
const F_CONTACT: usize = 0;
const F_CALLID: usize = 1;
const NFIELDS: usize = 6;

/// A contact in shared memory, linked into its record's list. Its strings follow the
/// struct in the same allocation (`shmref::alloc_tailed`, `cap` bytes), so matching a
/// binding by contact URI and Call-ID reads adjacent cache lines of one block; only
/// strings that outgrow `cap` on an update move to a block of their own (`ext`).
///
/// Field order: what a refresh does not touch (`prev`, `ext` while unused) opens the
/// struct; everything `get_ucontact` reads and `update` writes sits at its end, right
/// before the strings, so one REGISTER touches as few cache lines as the block allows.
#[repr(C)]
pub(super) struct UContact {
    pub(super) prev: ShmPtr<UContact>,
    /// The strings when they no longer fit the inline space (`OUT_OF_LINE` set);
    /// empty otherwise.
    ext: ShmStr,
    pub(super) next: ShmPtr<UContact>,
    pub(super) expires: i64,
    pub(super) last_modified: i64,
    pub(super) q: i32,
    pub(super) cseq: i32,
    pub(super) flags: u32,
    pub(super) cflags: u32,
    pub(super) methods: u32,
    lens: [u16; NFIELDS],
    /// Bytes of string space after the struct (set at allocation, never raised).
    cap: u16,
    pub(super) state: u8,
    /// Whether the strings are in `ext` (1) rather than inline (0).
    out_of_line: u8,
}

// SAFETY: #[repr(C)] plain data: integers, shm pointers and a shm string only.
#[allow(unsafe_code)]
unsafe impl ShmSafe for UContact {}

impl Tailed for UContact {
    fn tail_len(&self) -> usize {
        usize::from(self.cap)
    }
}

/// The string block of a contact, built in private memory before the allocation.
pub(super) struct Packed {
    bytes: Vec<u8>,
    lens: [u16; NFIELDS],
}

impl Packed {
    pub(super) fn new(ci: &ContactInfo) -> Result<Packed, UlError> {
        let fields: [&str; NFIELDS] = [
            &ci.contact,
            &ci.callid,
            &ci.user_agent,
            &ci.received,
            &ci.path,
            &ci.socket,
        ];
        let mut lens = [0u16; NFIELDS];
        let mut total = 0usize;
        for (len, f) in lens.iter_mut().zip(fields) {
            *len = u16::try_from(f.len()).map_err(|_| UlError::TooLong)?;
            total += f.len();
        }
        let mut bytes = Vec::with_capacity(total);
        for f in fields {
            bytes.extend_from_slice(f.as_bytes());
        }
        Ok(Packed { bytes, lens })
    }
}

/// Inline string space for `len` bytes: what the allocator's 16-byte rounding of the
/// block leaves after the struct anyway, so a later update of a few more bytes (a new
/// `received`, a longer Call-ID) still fits without a second block.
fn inline_cap(len: usize) -> Option<u16> {
    let obj = std::mem::size_of::<UContact>();
    let cap = (obj + len).next_multiple_of(16) - obj;
    u16::try_from(cap).ok()
}

impl UContact {
    /// Allocate the contact with its strings (not linked). On failure nothing stays
    /// allocated.
    pub(super) fn alloc(ci: &ContactInfo, last_modified: i64) -> Result<ShmPtr<UContact>, UlError> {
        let packed = Packed::new(ci)?;
        // Strings longer than a u16 of inline space (a huge Path) go out of line.
        let (cap, ext) = match inline_cap(packed.bytes.len()) {
            Some(cap) => (cap, ShmStr::empty()),
            None => (0, alloc_str(&packed.bytes)?),
        };
        let c = UContact {
            next: ShmPtr::null(),
            prev: ShmPtr::null(),
            ext,
            out_of_line: u8::from(!ext.is_empty()),
            expires: ci.expires,
            last_modified,
            q: ci.q,
            cseq: ci.cseq,
            flags: ci.flags,
            cflags: ci.cflags,
            methods: ci.methods,
            lens: packed.lens,
            cap,
            state: ContactState::New as u8,
        };
        let inline = if ext.is_empty() {
            &packed.bytes[..]
        } else {
            &[]
        };
        match super::shmref::alloc_tailed(c, inline, usize::from(cap)) {
            Some(p) => Ok(p),
            None => {
                super::shmref::dispose_str(ext);
                Err(UlError::NoMemory)
            }
        }
    }

    /// Replace every field from `ci`; `tail` is the contact's inline string space. The
    /// strings are rewritten only when their bytes change: in place when they fit,
    /// else into a block of their own; on allocation failure the contact is left
    /// unchanged.
    pub(super) fn update(
        &mut self,
        tail: &mut [u8],
        ci: &ContactInfo,
        last_modified: i64,
    ) -> Result<(), UlError> {
        let packed = Packed::new(ci)?;
        if packed.lens != self.lens || packed.bytes != self.strs(tail) {
            if let Some(dst) = tail.get_mut(..packed.bytes.len()) {
                dst.copy_from_slice(&packed.bytes);
                let old = std::mem::replace(&mut self.ext, ShmStr::empty());
                super::shmref::dispose_str(old);
                self.out_of_line = 0;
            } else {
                let strs = alloc_str(&packed.bytes)?;
                let old = std::mem::replace(&mut self.ext, strs);
                super::shmref::dispose_str(old);
                self.out_of_line = u8::from(!self.ext.is_empty());
            }
            self.lens = packed.lens;
        }
        self.expires = ci.expires;
        self.last_modified = last_modified;
        self.q = ci.q;
        self.cseq = ci.cseq;
        self.flags = ci.flags;
        self.cflags = ci.cflags;
        self.methods = ci.methods;
        Ok(())
    }

    /// Release the out-of-line string block, if any (the caller frees the contact).
    pub(super) fn take_strs(&mut self) -> ShmStr {
        self.lens = [0; NFIELDS];
        self.out_of_line = 0;
        std::mem::replace(&mut self.ext, ShmStr::empty())
    }

    /// All strings, concatenated in `F_*` order (`tail`: the inline string space).
    fn strs<'a>(&'a self, tail: &'a [u8]) -> &'a [u8] {
        if self.out_of_line != 0 {
            return self.ext.as_bytes();
        }
        let used: usize = self.lens.iter().map(|&l| usize::from(l)).sum();
        tail.get(..used).unwrap_or(&[])
    }

    fn field<'a>(&'a self, tail: &'a [u8], i: usize) -> &'a [u8] {
        let start: usize = self.lens[..i].iter().map(|&l| usize::from(l)).sum();
        let end = start + usize::from(self.lens[i]);
        self.strs(tail).get(start..end).unwrap_or(&[])
    }

    pub(super) fn contact<'a>(&'a self, tail: &'a [u8]) -> &'a [u8] {
        self.field(tail, F_CONTACT)
    }

    pub(super) fn callid<'a>(&'a self, tail: &'a [u8]) -> &'a [u8] {
        self.field(tail, F_CALLID)
    }

    pub(super) fn state(&self) -> ContactState {
        ContactState::from_u8(self.state)
    }

    /// A private copy of the contact (`tail`: its inline string space).
    pub(super) fn to_info(&self, tail: &[u8]) -> ContactInfo {
        let all = self.strs(tail);
        let mut f: [String; NFIELDS] = Default::default();
        let mut at = 0usize;
        for (out, &len) in f.iter_mut().zip(&self.lens) {
            let end = at + usize::from(len);
            *out = String::from_utf8_lossy(all.get(at..end).unwrap_or(&[])).into_owned();
            at = end;
        }
        let [contact, callid, user_agent, received, path, socket] = f;
        ContactInfo {
            contact,
            received,
            path,
            expires: self.expires,
            q: self.q,
            callid,
            cseq: self.cseq,
            flags: self.flags,
            cflags: self.cflags,
            user_agent,
            socket,
            methods: self.methods,
            last_modified: self.last_modified,
            state: self.state(),
        }
    }
}

fn alloc_str(bytes: &[u8]) -> Result<ShmStr, UlError> {
    super::shmref::alloc_str(bytes).ok_or(UlError::NoMemory)
}

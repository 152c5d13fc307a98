//! Records (one per address-of-record) and the contact-list operations on them. All
//! operations run on a [`SlotGuard`], i.e. with the slot lock held.

use shm::{ShmPtr, ShmSafe};

use super::shmref::{Tailed, dispose, get, get_mut, get_tailed, get_tailed_mut};
use super::ucontact::{ContactInfo, ContactState, UContact};
use super::udomain::SlotGuard;
use super::{UlCbType, UlError, run_callbacks};

/// A record in shared memory: the AOR and its contacts, linked into its slot. The AOR's
/// bytes follow the struct in the same allocation (`shmref::alloc_tailed`), and what a
/// slot walk reads (`next`, `hash`) opens the struct, so passing over a record of
/// another AOR touches one cache line and finding the right one adds at most the next.
#[repr(C)]
pub(super) struct URecord {
    pub(super) next: ShmPtr<URecord>,
    pub(super) hash: u32,
    /// Length of the AOR stored after the struct (never changed after allocation).
    pub(super) aor_len: u32,
    pub(super) prev: ShmPtr<URecord>,
    /// Contacts, ordered by q (descending) or newest first (`desc_time_order`).
    pub(super) contacts: ShmPtr<UContact>,
    pub(super) ncontacts: u32,
}

// SAFETY: #[repr(C)] plain data: shm pointers and integers.
#[allow(unsafe_code)]
unsafe impl ShmSafe for URecord {}

impl Tailed for URecord {
    fn tail_len(&self) -> usize {
        self.aor_len as usize
    }
}

/// A record of the locked slot. Only meaningful with the guard it came from; every
/// use is checked against the slot's list, so a stale id yields
/// [`UlError::NotFound`], never a dangling access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordId(pub(super) ShmPtr<URecord>);

/// A contact of a record of the locked slot (checked like [`RecordId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactId(pub(super) ShmPtr<UContact>);

/// Result of [`SlotGuard::get_ucontact`] (OpenSER's 0 / 1 / -1 / -2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The binding exists (and the CSeq, if the Call-ID matched, is newer).
    Found(ContactId),
    /// No such binding.
    NotFound,
    /// Same Call-ID with a lower CSeq, or an equal CSeq older than `cseq_delay`.
    InvalidCseq,
    /// Same Call-ID and CSeq within `cseq_delay` of the last update: a retransmission.
    Retransmission,
}

impl SlotGuard<'_> {
    /// The AOR of a record of this slot (stored after it).
    pub(super) fn rec_aor(&self, rp: ShmPtr<URecord>) -> &[u8] {
        get_tailed(self, rp).map_or(&[], |(_, aor)| aor)
    }

    /// A contact of this slot with its inline string space.
    fn contact_tailed(&self, cp: ShmPtr<UContact>) -> Option<(&UContact, &[u8])> {
        get_tailed(self, cp)
    }

    /// A private copy of a contact of this slot.
    pub(super) fn contact_info(&self, cp: ShmPtr<UContact>) -> Option<ContactInfo> {
        self.contact_tailed(cp).map(|(c, t)| c.to_info(t))
    }

    /// Checked access to a record of this slot.
    pub(super) fn check_record(&self, r: RecordId) -> Result<ShmPtr<URecord>, UlError> {
        if !r.0.is_null() && r.0 == self.known.get() {
            return Ok(r.0);
        }
        let mut p = get(self, self.head())
            .map(|h| h.first.load())
            .unwrap_or(ShmPtr::null());
        while let Some(rec) = get(self, p) {
            if p == r.0 {
                self.known.set(p);
                return Ok(p);
            }
            p = rec.next;
        }
        Err(UlError::NotFound)
    }

    fn check_contact(&self, r: RecordId, c: ContactId) -> Result<ShmPtr<UContact>, UlError> {
        let rp = self.check_record(r)?;
        let mut p = get(self, rp).map(|r| r.contacts).unwrap_or(ShmPtr::null());
        while let Some(uc) = get(self, p) {
            if p == c.0 {
                return Ok(p);
            }
            p = uc.next;
        }
        Err(UlError::NotFound)
    }

    /// The AOR of a record.
    pub fn aor(&self, r: RecordId) -> Result<Vec<u8>, UlError> {
        let p = self.check_record(r)?;
        Ok(self.rec_aor(p).to_vec())
    }

    /// Number of contacts of a record.
    pub fn contact_count(&self, r: RecordId) -> Result<usize, UlError> {
        let p = self.check_record(r)?;
        Ok(get(self, p).map_or(0, |r| r.ncontacts as usize))
    }

    /// Find a binding (OpenSER's `get_ucontact`): matched by contact URI (exact bytes)
    /// or, with `matching_mode` 1, by contact URI and Call-ID; then CSeq checks as the
    /// registrar needs them (see [`Match`]). `now` is the current unix time.
    pub fn get_ucontact(
        &self,
        r: RecordId,
        contact: &[u8],
        callid: &[u8],
        cseq: i32,
        now: i64,
    ) -> Result<Match, UlError> {
        let rp = self.check_record(r)?;
        let by_callid = self.domain().matching_mode == 1;
        let mut p = get(self, rp).map(|r| r.contacts).unwrap_or(ShmPtr::null());
        while let Some((c, t)) = self.contact_tailed(p) {
            if c.contact(t) == contact && (!by_callid || c.callid(t) == callid) {
                if by_callid || c.callid(t) == callid {
                    if cseq < c.cseq {
                        return Ok(Match::InvalidCseq);
                    }
                    if cseq == c.cseq {
                        return Ok(if c.last_modified + self.domain().cseq_delay > now {
                            Match::Retransmission
                        } else {
                            Match::InvalidCseq
                        });
                    }
                }
                return Ok(Match::Found(ContactId(p)));
            }
            p = c.next;
        }
        Ok(Match::NotFound)
    }

    /// A private copy of one contact.
    pub fn contact(&self, r: RecordId, c: ContactId) -> Result<ContactInfo, UlError> {
        let p = self.check_contact(r, c)?;
        self.contact_info(p).ok_or(UlError::NotFound)
    }

    /// Private copies of all contacts of a record, in list order (best first).
    pub fn contacts(&self, r: RecordId) -> Result<Vec<ContactInfo>, UlError> {
        Ok(self
            .contact_ids(r)?
            .into_iter()
            .filter_map(|id| self.contact_info(id.0))
            .collect())
    }

    /// Ids of all contacts of a record, in list order.
    pub fn contact_ids(&self, r: RecordId) -> Result<Vec<ContactId>, UlError> {
        let rp = self.check_record(r)?;
        let mut out = Vec::new();
        let mut p = get(self, rp).map(|r| r.contacts).unwrap_or(ShmPtr::null());
        while let Some(c) = get(self, p) {
            out.push(ContactId(p));
            p = c.next;
        }
        Ok(out)
    }

    /// Add a binding (`insert_ucontact`). `ci.last_modified` is stored as given
    /// (the caller passes the current time); the state starts as `CS_NEW`.
    pub fn insert_ucontact(&mut self, r: RecordId, ci: &ContactInfo) -> Result<ContactId, UlError> {
        let rp = self.check_record(r)?;
        let cp = UContact::alloc(ci, ci.last_modified)?;
        self.lower_due(ci.expires);
        self.clear_empty(rp);
        self.link_contact(rp, cp);
        if let Some(rec) = get_mut(self, rp) {
            rec.ncontacts += 1;
        }
        self.domain().stats().contacts_inc();
        self.notify(UlCbType::Insert, rp, cp);
        Ok(ContactId(cp))
    }

    /// Replace a binding's fields with `ci` (`update_ucontact`): re-sorted if its q
    /// changed (or moved to the front with `desc_time_order`); state NEW stays NEW,
    /// SYNC becomes DIRTY. On error the binding is unchanged.
    pub fn update_ucontact(
        &mut self,
        r: RecordId,
        c: ContactId,
        ci: &ContactInfo,
    ) -> Result<(), UlError> {
        let cp = self.check_contact(r, c)?;
        let rp = r.0;
        let Some((uc, tail)) = get_tailed_mut(self, cp) else {
            return Err(UlError::NotFound);
        };
        let old_q = uc.q;
        uc.update(tail, ci, ci.last_modified)?;
        if uc.state() == ContactState::Sync {
            uc.state = ContactState::Dirty as u8;
        }
        self.lower_due(ci.expires);
        let first = get(self, rp).map(|r| r.contacts) == Some(cp);
        let reorder = if self.domain().desc_time_order {
            !first
        } else {
            old_q != ci.q
        };
        if reorder {
            self.unlink_contact(rp, cp);
            self.link_contact(rp, cp);
        }
        self.notify(UlCbType::Update, rp, cp);
        Ok(())
    }

    /// Set the database state of a binding (for the DB layer).
    pub fn set_contact_state(
        &mut self,
        r: RecordId,
        c: ContactId,
        state: ContactState,
    ) -> Result<(), UlError> {
        let cp = self.check_contact(r, c)?;
        if let Some(uc) = get_mut(self, cp) {
            uc.state = state as u8;
        }
        Ok(())
    }

    /// Remove a binding (`delete_ucontact`), firing the DELETE callbacks first. The
    /// record stays even if empty: call [`SlotGuard::release_urecord`] afterwards.
    pub fn delete_ucontact(&mut self, r: RecordId, c: ContactId) -> Result<(), UlError> {
        let cp = self.check_contact(r, c)?;
        self.notify(UlCbType::Delete, r.0, cp);
        self.remove_contact(r.0, cp);
        Ok(())
    }

    /// Unlink, free and count a contact known to belong to `rp`.
    pub(super) fn remove_contact(&mut self, rp: ShmPtr<URecord>, cp: ShmPtr<UContact>) {
        self.unlink_contact(rp, cp);
        if let Some(rec) = get_mut(self, rp) {
            rec.ncontacts = rec.ncontacts.saturating_sub(1);
        }
        if get(self, rp).is_some_and(|r| r.contacts.is_null()) {
            // A record left without contacts is the walk's to free.
            self.note_empty(rp);
        }
        let strs = get_mut(self, cp).map(UContact::take_strs);
        if let Some(s) = strs {
            super::shmref::dispose_str(s);
        }
        dispose(cp);
        self.domain().stats().contacts_dec();
    }

    /// Fire callbacks of `kind` for contact `cp` of record `rp` (lock held).
    pub(super) fn notify(&self, kind: UlCbType, rp: ShmPtr<URecord>, cp: ShmPtr<UContact>) {
        let aor = || self.rec_aor(rp);
        if super::db::write_through()
            && get(self, rp).is_some()
            && let Some(ci) = self.contact_info(cp)
        {
            super::db::queue(kind, self.domain().name(), aor(), &ci);
        } else if super::db::write_back()
            && matches!(kind, UlCbType::Delete | UlCbType::Expire)
            && get(self, rp).is_some()
            && let Some(c) = get(self, cp)
            && c.state() != ContactState::New
            && let Some(ci) = self.contact_info(cp)
        {
            // Write-back: only the removal of a binding the database has goes out now.
            super::db::queue(kind, self.domain().name(), aor(), &ci);
        }
        if !super::has_callbacks(kind) {
            return;
        }
        if get(self, rp).is_some()
            && let Some(ci) = self.contact_info(cp)
        {
            run_callbacks(kind, self.domain().name(), aor(), &ci);
        }
    }

    /// Insert `cp` into the record's list at its place: before the first contact with
    /// a lower q (after equal ones), or at the front with `desc_time_order`.
    fn link_contact(&mut self, rp: ShmPtr<URecord>, cp: ShmPtr<UContact>) {
        let q = get(self, cp).map_or(0, |c| c.q);
        let head = get(self, rp).map(|r| r.contacts).unwrap_or(ShmPtr::null());
        let mut prev = ShmPtr::null();
        let mut next = head;
        if !self.domain().desc_time_order {
            while let Some(c) = get(self, next) {
                if c.q < q {
                    break;
                }
                prev = next;
                next = c.next;
            }
        }
        if let Some(c) = get_mut(self, cp) {
            c.prev = prev;
            c.next = next;
        }
        if let Some(n) = get_mut(self, next) {
            n.prev = cp;
        }
        match get_mut(self, prev) {
            Some(p) => p.next = cp,
            None => {
                if let Some(rec) = get_mut(self, rp) {
                    rec.contacts = cp;
                }
            }
        }
    }

    fn unlink_contact(&mut self, rp: ShmPtr<URecord>, cp: ShmPtr<UContact>) {
        let (prev, next) =
            get(self, cp).map_or((ShmPtr::null(), ShmPtr::null()), |c| (c.prev, c.next));
        if let Some(n) = get_mut(self, next) {
            n.prev = prev;
        }
        match get_mut(self, prev) {
            Some(p) => p.next = next,
            None => {
                if let Some(rec) = get_mut(self, rp) {
                    rec.contacts = next;
                }
            }
        }
        if let Some(c) = get_mut(self, cp) {
            c.prev = ShmPtr::null();
            c.next = ShmPtr::null();
        }
    }
}

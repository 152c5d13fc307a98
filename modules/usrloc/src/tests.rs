//! usrloc unit tests. They share the process-wide shm segment (initialised once) and
//! each uses its own domain name, so they can run in parallel threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use super::*;

static INIT: Once = Once::new();
/// Serialises the fork test against tests that take private locks (callbacks), so a
/// child is never forked while another thread holds one.
static FORK_GUARD: Mutex<()> = Mutex::new(());
/// Serialises `errors_do_not_leak` (which compares the segment's global usage) against
/// tests that allocate large blocks and against every domain creation (`dom`).
static BIG_ALLOCS: Mutex<()> = Mutex::new(());

fn setup() {
    INIT.call_once(|| {
        // Another module's tests may have initialised the segment already.
        let _ = shm::init(256 << 20);
    });
    assert!(shm::is_initialized());
}

fn dom(name: &str, f: impl FnOnce(&mut UsrlocParams)) -> &'static UDomain {
    setup();
    let mut p = UsrlocParams::default();
    f(&mut p);
    // A domain's slot array (1 MiB and more) is allocated while no test that
    // compares global shm usage is measuring (those take the lock after `dom`).
    let _quiet = BIG_ALLOCS.lock().unwrap_or_else(|e| e.into_inner());
    register_udomain_with(name, &p).expect("domain")
}

fn ci(contact: &str, q: i32, expires: i64, callid: &str, cseq: i32) -> ContactInfo {
    ContactInfo {
        contact: contact.to_owned(),
        q,
        expires,
        callid: callid.to_owned(),
        cseq,
        user_agent: "test-agent/1.0".to_owned(),
        socket: "udp:127.0.0.1:5060".to_owned(),
        last_modified: 1000,
        ..ContactInfo::default()
    }
}

/// Save-like helper: insert or update one binding under the slot lock.
fn save(d: &UDomain, aor: &str, c: &ContactInfo) -> Result<(), UlError> {
    let mut g = d.lock_slot(aor.as_bytes());
    let r = g.get_or_insert_urecord(aor.as_bytes())?;
    match g.get_ucontact(r, c.contact.as_bytes(), c.callid.as_bytes(), c.cseq, 1000)? {
        Match::Found(id) => g.update_ucontact(r, id, c),
        Match::NotFound => g.insert_ucontact(r, c).map(|_| ()),
        Match::InvalidCseq | Match::Retransmission => Ok(()),
    }
}

fn uris(v: &[ContactInfo]) -> Vec<&str> {
    v.iter().map(|c| c.contact.as_str()).collect()
}

#[test]
fn defaults_match_openser() {
    let p = UsrlocParams::default();
    assert_eq!(p.db_mode, 0);
    assert_eq!(p.timer_interval, 60);
    assert_eq!(p.hash_size, 0, "auto: sized from the shm segment");
    assert_eq!(super::udomain::auto_hash_bits(32 << 20), 13);
    assert_eq!(super::udomain::auto_hash_bits(1536 << 20), 18);
    assert_eq!(
        super::udomain::auto_hash_bits(1 << 20),
        9,
        "at least 1.2's 512"
    );
    assert_eq!(super::udomain::auto_hash_bits(1 << 40), 20);
    assert_eq!(p.cseq_delay, 20);
    assert_eq!(p.matching_mode, 0);
    assert_eq!(p.columns.user_agent, "user_agent");
    assert_eq!(p.nat_bflag_mask(), 0);
    let d = dom("t_defaults", |p| p.hash_size = 1);
    assert_eq!(d.size(), 512);
    let d = dom("t_small", |p| p.hash_size = 4);
    assert_eq!(d.size(), 16);
    // Registering again returns the same domain.
    assert!(std::ptr::eq(
        d,
        register_udomain_with("t_small", &UsrlocParams::default()).unwrap()
    ));
}

#[test]
fn insert_lookup_update_delete() {
    let d = dom("t_basic", |_| {});
    assert!(d.get_contacts(b"alice").is_none());
    let mut c = ci("sip:alice@10.0.0.1:5060", 100, 5000, "cid-1", 1);
    c.received = "sip:1.2.3.4:5060".to_owned();
    c.path = "<sip:edge.example.com;lr>".to_owned();
    c.flags = 3;
    c.cflags = 0x40;
    c.methods = 0x1f;
    save(d, "alice", &c).unwrap();
    assert_eq!(d.users(), 1);
    assert_eq!(d.contacts(), 1);
    let got = d.get_contacts(b"ALICE").expect("case-insensitive AOR");
    assert_eq!(got, vec![c.clone()]);

    // Update: same Call-ID, higher CSeq.
    let mut c2 = c.clone();
    c2.cseq = 2;
    c2.expires = 6000;
    c2.user_agent = "other-agent".to_owned();
    c2.last_modified = 1000;
    save(d, "alice", &c2).unwrap();
    assert_eq!(d.get_contacts(b"alice").unwrap(), vec![c2.clone()]);
    assert_eq!(d.contacts(), 1);

    // CSeq checks.
    {
        let g = d.lock_slot(b"alice");
        let r = g.get_urecord(b"alice").unwrap();
        let u = c.contact.as_bytes();
        assert_eq!(
            g.get_ucontact(r, u, b"cid-1", 1, 1005).unwrap(),
            Match::InvalidCseq
        );
        assert_eq!(
            g.get_ucontact(r, u, b"cid-1", 2, 1005).unwrap(),
            Match::Retransmission
        );
        assert_eq!(
            g.get_ucontact(r, u, b"cid-1", 2, 1021).unwrap(),
            Match::InvalidCseq
        );
        assert!(matches!(
            g.get_ucontact(r, u, b"cid-1", 3, 1005).unwrap(),
            Match::Found(_)
        ));
        // Other Call-ID: no CSeq check in matching_mode 0.
        assert!(matches!(
            g.get_ucontact(r, u, b"cid-x", 1, 1005).unwrap(),
            Match::Found(_)
        ));
        assert_eq!(
            g.get_ucontact(r, b"sip:nobody@x", b"cid-1", 9, 1005)
                .unwrap(),
            Match::NotFound
        );
    }

    // Delete the contact, then release the empty record.
    {
        let mut g = d.lock_slot(b"alice");
        let r = g.get_urecord(b"alice").unwrap();
        let Match::Found(id) = g.get_ucontact(r, c.contact.as_bytes(), b"", 99, 0).unwrap() else {
            panic!("contact missing");
        };
        g.delete_ucontact(r, id).unwrap();
        // Stale id now rejected.
        assert_eq!(g.delete_ucontact(r, id), Err(UlError::NotFound));
        assert_eq!(g.release_urecord(r), Ok(true));
        assert_eq!(g.release_urecord(r), Err(UlError::NotFound));
    }
    assert!(d.get_contacts(b"alice").is_none());
    assert_eq!((d.users(), d.contacts()), (0, 0));
}

#[test]
fn wrong_slot_and_delete_aor() {
    let d = dom("t_slot", |_| {});
    let mut g = d.lock_slot(b"bob");
    let other = (0..1000)
        .map(|i| format!("x{i}"))
        .find(|a| d.slot_of(a.as_bytes()) != g.slot())
        .unwrap();
    assert_eq!(g.insert_urecord(other.as_bytes()), Err(UlError::WrongSlot));
    assert_eq!(g.insert_urecord(b""), Err(UlError::TooLong));
    drop(g);
    save(d, "bob", &ci("sip:bob@a", 10, 0, "c", 1)).unwrap();
    save(d, "bob", &ci("sip:bob@b", 20, 0, "c2", 1)).unwrap();
    assert_eq!(d.contacts(), 2);
    assert!(d.delete_aor(b"bob"));
    assert!(!d.delete_aor(b"bob"));
    assert_eq!((d.users(), d.contacts()), (0, 0));
}

#[test]
fn q_ordering() {
    let d = dom("t_q", |_| {});
    save(d, "u", &ci("sip:a@h", 50, 0, "1", 1)).unwrap();
    save(d, "u", &ci("sip:b@h", 100, 0, "2", 1)).unwrap();
    save(d, "u", &ci("sip:c@h", Q_UNSPECIFIED, 0, "3", 1)).unwrap();
    save(d, "u", &ci("sip:d@h", 50, 0, "4", 1)).unwrap();
    save(d, "u", &ci("sip:e@h", 0, 0, "5", 1)).unwrap();
    let v = d.get_contacts(b"u").unwrap();
    assert_eq!(
        uris(&v),
        ["sip:b@h", "sip:a@h", "sip:d@h", "sip:e@h", "sip:c@h"]
    );
    // Raising a's q re-sorts it to the front.
    save(d, "u", &ci("sip:e@h", 100, 0, "5", 2)).unwrap();
    let v = d.get_contacts(b"u").unwrap();
    assert_eq!(
        uris(&v),
        ["sip:b@h", "sip:e@h", "sip:a@h", "sip:d@h", "sip:c@h"]
    );
}

#[test]
fn desc_time_order() {
    let d = dom("t_time", |p| p.desc_time_order = true);
    save(d, "u", &ci("sip:a@h", 100, 0, "1", 1)).unwrap();
    save(d, "u", &ci("sip:b@h", 10, 0, "2", 1)).unwrap();
    save(d, "u", &ci("sip:c@h", 50, 0, "3", 1)).unwrap();
    assert_eq!(
        uris(&d.get_contacts(b"u").unwrap()),
        ["sip:c@h", "sip:b@h", "sip:a@h"]
    );
    // An update moves the contact to the front.
    save(d, "u", &ci("sip:a@h", 100, 0, "1", 2)).unwrap();
    assert_eq!(
        uris(&d.get_contacts(b"u").unwrap()),
        ["sip:a@h", "sip:c@h", "sip:b@h"]
    );
}

#[test]
fn matching_mode_contact_and_callid() {
    let d = dom("t_mm1", |p| p.matching_mode = 1);
    save(d, "u", &ci("sip:a@h", 10, 0, "call-1", 5)).unwrap();
    // Same contact, other Call-ID: a separate binding.
    save(d, "u", &ci("sip:a@h", 10, 0, "call-2", 1)).unwrap();
    let v = d.get_contacts(b"u").unwrap();
    assert_eq!(v.len(), 2);
    let g = d.lock_slot(b"u");
    let r = g.get_urecord(b"u").unwrap();
    assert_eq!(
        g.get_ucontact(r, b"sip:a@h", b"call-1", 4, 1000).unwrap(),
        Match::InvalidCseq
    );
    assert!(matches!(
        g.get_ucontact(r, b"sip:a@h", b"call-2", 2, 1000).unwrap(),
        Match::Found(_)
    ));
    assert_eq!(
        g.get_ucontact(r, b"sip:a@h", b"call-3", 9, 1000).unwrap(),
        Match::NotFound
    );
    let Match::Found(id) = g.get_ucontact(r, b"sip:a@h", b"call-1", 6, 1000).unwrap() else {
        panic!()
    };
    assert_eq!(g.contact(r, id).unwrap().callid, "call-1");
}

static EXPIRED: AtomicUsize = AtomicUsize::new(0);
static INSERTED: AtomicUsize = AtomicUsize::new(0);

fn count_cb(kind: UlCbType, domain: &str, _aor: &[u8], _c: &ContactInfo) {
    if domain != "t_expire" {
        return;
    }
    match kind {
        UlCbType::Expire => EXPIRED.fetch_add(1, Ordering::SeqCst),
        UlCbType::Insert => INSERTED.fetch_add(1, Ordering::SeqCst),
        _ => 0,
    };
}

#[test]
fn expiry_timer_and_callbacks() {
    let d = dom("t_expire", |_| {});
    {
        let _f = FORK_GUARD.lock().unwrap();
        register_ulcb(UlCbType::Expire as u32 | UlCbType::Insert as u32, count_cb);
    }
    save(d, "a", &ci("sip:a1@h", 10, 100, "1", 1)).unwrap();
    save(d, "a", &ci("sip:a2@h", 10, 200, "2", 1)).unwrap();
    save(d, "b", &ci("sip:b1@h", 10, 150, "3", 1)).unwrap();
    save(d, "p", &ci("sip:p@h", 10, 0, "4", 1)).unwrap();
    assert_eq!(INSERTED.load(Ordering::SeqCst), 4);
    assert_eq!((d.users(), d.contacts()), (3, 4));
    d.timer(99);
    assert_eq!(d.contacts(), 4);
    d.timer(100);
    assert_eq!(uris(&d.get_contacts(b"a").unwrap()), ["sip:a2@h"]);
    assert_eq!(EXPIRED.load(Ordering::SeqCst), 1);
    assert!(d.get_contacts(b"a").unwrap()[0].is_valid(199));
    d.timer(1_000_000);
    assert!(d.get_contacts(b"a").is_none());
    assert!(d.get_contacts(b"b").is_none());
    assert_eq!(
        uris(&d.get_contacts(b"p").unwrap()),
        ["sip:p@h"],
        "permanent stays"
    );
    assert_eq!((d.users(), d.contacts(), d.expires()), (1, 1, 3));
    assert_eq!(EXPIRED.load(Ordering::SeqCst), 3);
    d.reset_expires();
    assert_eq!(d.expires(), 0);
    assert!(registered_users() >= 1);
}

/// The amortised walk skips a slot until its `due`: `due` follows the earliest expiry
/// down (insert, update to an earlier time), is only a lower bound after an update to a
/// later time (the walk at the stale time keeps the contact and moves `due` on), is
/// "at once" for a record left without contacts, and 0 when nothing can expire.
#[test]
fn expiry_walk_visits_a_slot_when_due() {
    let d = dom("t_due", |_| {});
    let due = |aor: &str| {
        let g = d.lock_slot(aor.as_bytes());
        let v = g.slot_due();
        g.unlock_then_flush();
        v
    };
    save(d, "a", &ci("sip:a1@h", 10, 500, "1", 1)).unwrap();
    assert_eq!(
        due("a"),
        500,
        "a new record that got its contact under the same lock is not due at once"
    );
    d.expire_step(10, 1);
    assert_eq!(due("a"), 500);
    save(d, "a", &ci("sip:a1@h", 10, 300, "1", 2)).unwrap();
    assert_eq!(due("a"), 300, "an earlier expiry lowers due");
    d.expire_step(299, 1);
    assert_eq!(d.get_contacts(b"a").map(|v| v.len()), Some(1));
    d.expire_step(300, 1);
    assert!(d.get_contacts(b"a").is_none(), "expired at its due");
    assert_eq!(due("a"), 0);

    save(d, "b", &ci("sip:b1@h", 10, 400, "2", 1)).unwrap();
    d.expire_step(10, 1);
    save(d, "b", &ci("sip:b1@h", 10, 900, "2", 2)).unwrap();
    assert_eq!(due("b"), 400, "a later expiry leaves the lower bound");
    d.expire_step(400, 1);
    assert_eq!(
        d.get_contacts(b"b").map(|v| v.len()),
        Some(1),
        "refreshed: kept"
    );
    assert_eq!(due("b"), 900);
    d.expire_step(900, 1);
    assert!(d.get_contacts(b"b").is_none());

    save(d, "c", &ci("sip:c1@h", 10, 5000, "3", 1)).unwrap();
    d.expire_step(10, 1);
    let users = d.users();
    {
        let mut g = d.lock_slot(b"c");
        let r = g.get_urecord(b"c").unwrap();
        let id = g.contact_ids(r).unwrap()[0];
        g.delete_ucontact(r, id).unwrap();
        assert!(g.get_urecord(b"c").is_some(), "left empty");
        g.unlock_then_flush();
    }
    assert_eq!(due("c"), 1);
    d.expire_step(11, 1);
    assert_eq!(
        d.users(),
        users - 1,
        "the empty record is freed by the walk"
    );

    // A record created and left without a contact when the lock goes is due at once.
    let users = d.users();
    {
        let mut g = d.lock_slot(b"e");
        g.insert_urecord(b"e").unwrap();
        g.unlock_then_flush();
    }
    assert_eq!(due("e"), 1);
    assert_eq!(d.users(), users + 1);
    d.expire_step(12, 1);
    assert_eq!(
        d.users(),
        users,
        "the record never given a contact is freed"
    );
    // Emptied and freed under the same lock: nothing left for the walk.
    save(d, "f", &ci("sip:f1@h", 10, 700, "5", 1)).unwrap();
    {
        let mut g = d.lock_slot(b"f");
        let r = g.get_urecord(b"f").unwrap();
        let id = g.contact_ids(r).unwrap()[0];
        g.delete_ucontact(r, id).unwrap();
        assert!(g.release_urecord(r).unwrap());
        g.unlock_then_flush();
    }
    assert_ne!(due("f"), 1, "a freed record leaves no walk behind");

    save(d, "p", &ci("sip:p@h", 10, 0, "4", 1)).unwrap();
    d.expire_step(10, 1);
    assert_eq!(due("p"), 0, "a permanent binding is never due");
    d.expire_step(i64::MAX, 1);
    assert!(d.get_contacts(b"p").is_some());
}

#[test]
fn all_contacts_by_cflags() {
    let d = dom("t_nat", |_| {});
    let mut c = ci("sip:nat@h", 10, 0, "1", 1);
    c.cflags = 0x10 | 0x1;
    save(d, "n1", &c).unwrap();
    let mut c = ci("sip:plain@h", 10, 0, "2", 1);
    c.cflags = 0x1;
    save(d, "n2", &c).unwrap();
    let mut c = ci("sip:gone@h", 10, 50, "3", 1);
    c.cflags = 0x10;
    save(d, "n3", &c).unwrap();
    let v: Vec<_> = get_all_ucontacts(0x10, 100)
        .into_iter()
        .filter(|c| c.contact.ends_with("@h") && c.callid.len() == 1)
        .collect();
    assert_eq!(uris(&v), ["sip:nat@h"]);
}

#[test]
fn strings_over_64k_in_all_are_kept_out_of_line() {
    use super::shmref::inject;
    let d = dom("t_bigstr", |p| p.hash_size = 4);
    let _quiet = BIG_ALLOCS.lock().unwrap_or_else(|e| e.into_inner());
    let base = inject::live();
    let mut big = ci("sip:big@h", 10, 0, "1", 1);
    big.path = format!("<sip:{}>", "p".repeat(40_000));
    big.user_agent = "u".repeat(40_000);
    let mut g = d.lock_slot(b"big");
    let r = g.get_or_insert_urecord(b"big").unwrap();
    let id = g.insert_ucontact(r, &big).unwrap();
    assert_eq!(g.contact(r, id).unwrap(), big);
    // A refresh with the same strings matches and keeps them; a small one moves inline.
    assert!(matches!(
        g.get_ucontact(r, b"sip:big@h", b"1", 2, 1000),
        Ok(Match::Found(x)) if x == id
    ));
    let small = ci("sip:big@h", 10, 0, "1", 3);
    g.update_ucontact(r, id, &small).unwrap();
    assert_eq!(g.contact(r, id).unwrap(), small);
    g.delete_urecord(r).unwrap();
    drop(g);
    assert_eq!(inject::live(), base);
}

#[test]
fn errors_do_not_leak() {
    let d = dom("t_err", |_| {});
    let _quiet = BIG_ALLOCS.lock().unwrap_or_else(|e| e.into_inner());
    save(d, "x", &ci("sip:x@h", 10, 0, "1", 1)).unwrap();
    let before = shm::stats().used;
    let mut g = d.lock_slot(b"x");
    let r = g.get_urecord(b"x").unwrap();
    let long = ci(&format!("sip:{}@h", "a".repeat(70_000)), 10, 0, "2", 1);
    assert_eq!(g.insert_ucontact(r, &long).err(), Some(UlError::TooLong));
    let ids = g.contact_ids(r).unwrap();
    assert_eq!(g.update_ucontact(r, ids[0], &long), Err(UlError::TooLong));
    assert_eq!(
        g.contacts(r).unwrap()[0].contact,
        "sip:x@h",
        "unchanged after failed update"
    );
    let too_big_aor = "u".repeat(70_000);
    let other = d.lock_slot(too_big_aor.as_bytes()).slot();
    drop(g);
    let mut g2 = d.lock_index(other);
    assert!(g2.insert_urecord(too_big_aor.as_bytes()).is_err());
    drop(g2);
    // Other threads' tests allocate concurrently; ours allocated nothing.
    let after = shm::stats().used;
    assert!(after <= before + 64 * 1024, "leak? {before} -> {after}");
    let mut g = d.lock_slot(b"x");
    let r = g.get_urecord(b"x").unwrap();
    g.delete_urecord(r).unwrap();
}

#[test]
fn hash_spread() {
    // 512 slots (1.2's table) so that 10,000 AORs fill every slot.
    let d = dom("t_spread", |p| p.hash_size = 9);
    for i in 0..10_000 {
        let aor = format!("user{i}");
        let mut g = d.lock_slot(aor.as_bytes());
        g.insert_urecord(aor.as_bytes()).unwrap();
    }
    let counts = d.slot_counts();
    let mean = 10_000.0 / counts.len() as f64;
    let max = *counts.iter().max().unwrap();
    let min = *counts.iter().min().unwrap();
    eprintln!(
        "usrloc: 10000 AORs over {} slots: min {min} max {max} mean {mean}",
        counts.len()
    );
    assert!(f64::from(max) <= 4.0 * mean, "max {max} mean {mean}");
    assert!(min > 0, "empty slot");
    assert_eq!(counts.iter().sum::<u32>(), 10_000);
    // Records with AORs differing only in case share a slot.
    assert_eq!(d.slot_of(b"User42"), d.slot_of(b"user42"));
    for i in 0..10_000 {
        assert!(d.delete_aor(format!("USER{i}").as_bytes()));
    }
    assert_eq!(d.users(), 0);
}

/// Bytes of shm per registered contact (one AOR each), allocator overhead included.
#[test]
fn memory_per_contact() {
    let d = dom("t_mem", |_| {});
    // Global shm usage is compared: not beside the probe's big table.
    let _quiet = BIG_ALLOCS.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 100_000;
    let before = shm::stats().real_used;
    for i in 0..N {
        let aor = format!("user{i:05}");
        let c = ContactInfo {
            contact: format!("sip:user{i:05}@127.0.0.1:5070"),
            callid: format!("{i:08x}-5f3a9c2e7d1b4a60b8e3c2d1a0f9e8d7@127.0.0.1"),
            user_agent: "Linphone/3.6.1 (eXosip2)".to_owned(),
            socket: "udp:127.0.0.1:5060".to_owned(),
            expires: 4_000_000_000,
            q: Q_UNSPECIFIED,
            cseq: 20,
            last_modified: 1000,
            ..ContactInfo::default()
        };
        save(d, &aor, &c).unwrap();
    }
    let per = (shm::stats().real_used - before) as f64 / N as f64;
    eprintln!("usrloc: {per:.1} bytes of shm per contact (record + contact + strings)");
    assert_eq!(d.contacts(), N as u64);
    assert!(per <= 575.0, "{per} bytes per contact");
    d.timer(4_000_000_000);
    assert_eq!((d.users(), d.contacts()), (0, 0));
}

#[allow(unsafe_code)]
mod fork {
    /// fork(2); in the child, run `f` and `_exit` with its status.
    pub(super) fn spawn(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only touches shm, its own stack and the (fork-safe) glibc
        // allocator, then leaves with `_exit` without running the parent's destructors.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let rc = f();
            // SAFETY: terminating the child immediately is always allowed.
            unsafe { libc::_exit(rc) };
        }
        pid
    }

    pub(super) fn wait(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128
        }
    }
}

#[test]
fn fork_processes_share_the_table() {
    let d = dom("t_fork", |p| p.hash_size = 4);
    const PER: usize = 2000;
    let pids: Vec<i32> = {
        let _f = FORK_GUARD.lock().unwrap();
        (0..2)
            .map(|k| {
                fork::spawn(move || {
                    shm::set_process_slot(k + 1);
                    for i in 0..PER {
                        let aor = format!("p{k}-{i}");
                        let c = ci(&format!("sip:{aor}@h"), 10, 0, "cid", 1);
                        if save(d, &aor, &c).is_err() {
                            return 1;
                        }
                    }
                    0
                })
            })
            .collect()
    };
    for pid in pids {
        assert_eq!(fork::wait(pid), 0);
    }
    assert_eq!(d.users(), 2 * PER as u64);
    assert_eq!(d.contacts(), 2 * PER as u64);
    for k in 0..2 {
        for i in 0..PER {
            let aor = format!("p{k}-{i}");
            let v = d.get_contacts(aor.as_bytes()).expect("record from child");
            assert_eq!(v[0].contact, format!("sip:{aor}@h"));
        }
    }
    assert_eq!(d.dump().len(), 2 * PER);
}

#[test]
fn allocation_failures_leave_nothing_behind() {
    use super::shmref::inject;
    let d = dom("t_nomem", |_| {});
    let base = inject::live();

    // insert_urecord: 1 allocation (the record with its AOR).
    for n in 1..=1 {
        let mut g = d.lock_slot(b"m");
        inject::fail_nth(n);
        assert_eq!(g.insert_urecord(b"m"), Err(UlError::NoMemory));
        assert!(g.get_urecord(b"m").is_none());
        assert_eq!(inject::live(), base, "insert_urecord, failure {n}");
    }
    assert_eq!(d.users(), 0);

    let mut g = d.lock_slot(b"m");
    let r = g.insert_urecord(b"m").unwrap();
    let c = ci("sip:m@h", 10, 0, "1", 1);
    let with_rec = inject::live();
    // insert_ucontact: 1 allocation (the contact with its strings).
    for n in 1..=1 {
        inject::fail_nth(n);
        assert_eq!(g.insert_ucontact(r, &c).err(), Some(UlError::NoMemory));
        assert_eq!(g.contact_count(r), Ok(0));
        assert_eq!(inject::live(), with_rec, "insert_ucontact, failure {n}");
    }
    assert_eq!(d.contacts(), 0);
    let id = g.insert_ucontact(r, &c).unwrap();
    let with_contact = inject::live();
    // update with strings that outgrow the inline space: 1 allocation; on failure the
    // old binding is intact.
    let mut c2 = c.clone();
    c2.user_agent = "a much longer user agent/2.0 ".repeat(8);
    c2.cseq = 2;
    inject::fail_nth(1);
    assert_eq!(g.update_ucontact(r, id, &c2), Err(UlError::NoMemory));
    assert_eq!(g.contact(r, id).unwrap(), c);
    assert_eq!(inject::live(), with_contact);
    // Strings moved out of line, then back into the inline space (freeing the block).
    g.update_ucontact(r, id, &c2).unwrap();
    assert_eq!(g.contact(r, id).unwrap(), c2);
    assert_eq!(inject::live(), with_contact + 1);
    let mut c4 = c.clone();
    c4.user_agent = String::new();
    c4.received = "sip:1.2.3.4".to_owned();
    c4.cseq = 3;
    inject::fail_nth(1);
    g.update_ucontact(r, id, &c4).unwrap();
    assert_eq!(g.contact(r, id).unwrap(), c4);
    assert_eq!(inject::live(), with_contact);
    g.update_ucontact(r, id, &c).unwrap();
    assert_eq!(g.contact(r, id).unwrap(), c);
    // Unchanged strings: no allocation at all.
    let mut c3 = c.clone();
    c3.cseq = 3;
    inject::fail_nth(1);
    g.update_ucontact(r, id, &c3).unwrap();
    inject::fail_nth(0);
    g.delete_urecord(r).unwrap();
    drop(g);
    assert_eq!(inject::live(), base);

    // Domain creation: 2 allocations (statistics, the slot array).
    let p = UsrlocParams {
        hash_size: 2,
        ..UsrlocParams::default()
    };
    for n in 1..=2 {
        inject::fail_nth(n);
        assert!(matches!(
            UDomain::new("t_nomem2", &p),
            Err(UlError::NoMemory)
        ));
        assert_eq!(inject::live(), base, "UDomain::new, failure {n}");
    }
    inject::fail_nth(0);
}

/// Refreshes of a table sized as the server sizes it with `-m 4096` (2^20 slots),
/// done the way the registrar's `save` does (get_urecord, get_ucontact,
/// update_ucontact, contacts, release_urecord): every one finds its binding and
/// updates it (the bytes per binding are `memory_per_contact`'s to check). Also the cache-miss probe of `bench/ul_cachegrind.sh`, which runs it under
/// `valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*probe_refreshes*'`
/// with `UL_PROBE_N` users (default 2,000 here) and `UL_PROBE_R` refreshes (default
/// 4,000, cycling through the users).
#[test]
fn refresh_cost_probe() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("UL_PROBE_N", 2_000);
    let r = env("UL_PROBE_R", 4_000);
    INIT.call_once(|| {
        let _ = shm::init(1 << 30);
    });
    let d = dom("probe", |p| p.hash_size = 20);
    // Megabytes of bindings: not beside the tests that compare global shm usage.
    let _quiet = BIG_ALLOCS.lock().unwrap_or_else(|e| e.into_inner());
    let info = |i: usize, cseq: i32| ContactInfo {
        contact: format!("sip:user{i}@127.0.0.1:5080"),
        callid: format!("{i}-4711@127.0.0.1"),
        cseq,
        expires: 100_000,
        q: Q_UNSPECIFIED,
        received: String::new(),
        user_agent: String::new(),
        socket: "udp:127.0.0.1:5060".to_owned(),
        last_modified: 1000,
        ..ContactInfo::default()
    };
    let used0 = shm::stats().real_used;
    for i in 1..=n {
        save(d, &format!("user{i}"), &info(i, 1)).expect("preload");
    }
    let used1 = shm::stats().real_used;
    eprintln!(
        "probe: {n} contacts, {} shm bytes per contact",
        (used1 - used0) / n.max(1)
    );
    // Private copies of what the refreshes need, built before the measured part.
    let work: Vec<(String, ContactInfo)> = (0..r)
        .map(|k| {
            let i = k % n + 1;
            (format!("user{i}"), info(i, 2 + (k / n) as i32))
        })
        .collect();
    let done = probe_refreshes(d, &work);
    assert_eq!(done, r);
}

#[inline(never)]
fn probe_refreshes(d: &UDomain, work: &[(String, ContactInfo)]) -> usize {
    let mut done = 0;
    for (aor, c) in work {
        let mut g = d.lock_slot(aor.as_bytes());
        let Some(r) = g.get_urecord(aor.as_bytes()) else {
            continue;
        };
        if let Ok(Match::Found(id)) =
            g.get_ucontact(r, c.contact.as_bytes(), c.callid.as_bytes(), c.cseq, 1000)
            && g.update_ucontact(r, id, c).is_ok()
        {
            done += g.contacts(r).map_or(0, |l| usize::from(!l.is_empty()));
        }
        let _ = g.release_urecord(r);
    }
    done
}

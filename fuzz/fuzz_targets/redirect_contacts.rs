#![no_main]
//! uac_redirect's reading of a 3xx reply's Contacts (q values, ordering) must never
//! panic, and what it returns is ordered by q, highest first.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(c) = uac_redirect::reply_contacts(data, |u| !u.contains("deny")) {
        assert!(c.len() <= uac_redirect::MAX_CONTACTS_PER_REPLY);
        assert!(c.windows(2).all(|w| w[0].q >= w[1].q));
        assert!(c.iter().all(|x| (0..=1000).contains(&x.q)));
    }
});

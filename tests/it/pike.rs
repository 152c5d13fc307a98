//! pike: a flood of 2,000 requests from 127.0.0.2 is blocked once it passes the
//! density while 127.0.0.3 is served throughout; the block lifts when the flood
//! stops, the tree empties after remove_latency and shared memory is back where it
//! was before the flood.

use super::permissions::{ask, req_from, sock_on};
use crate::harness::*;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "mi_fifo.so"
loadmodule "pike.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("pike", "sampling_time_unit", 2)
modparam("pike", "reqs_density_per_unit", 30)
modparam("pike", "remove_latency", 2)
route {
    if (!pike_check_req()) { drop; };
    sl_send_reply("200", "OK");
}
"#;

#[test]
fn flood_blocked_neighbour_served_memory_released() {
    let s = Server::start(CFG, &[]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let warm = sock_on("127.0.0.1");
    assert_eq!(
        ask(
            &warm,
            s.addr(),
            &req_from(&warm, "OPTIONS", "sip:x@127.0.0.1", "sip:w@h", "w0", "")
        ),
        "SIP/2.0 200 OK"
    );
    let baseline = stat(&dir, "shmem:used_size");

    let flood = sock_on("127.0.0.2");
    flood.set_nonblocking(true).unwrap();
    let good = sock_on("127.0.0.3");
    let mut answered = 0;
    let mut buf = vec![0u8; 4096];
    let mut drain = |answered: &mut u32| {
        while let Ok((n, _)) = crate::harness::recv_from(&flood, &mut buf) {
            if buf[..n].starts_with(b"SIP/2.0 200") {
                *answered += 1;
            }
        }
    };
    for i in 0..2000u32 {
        let m = req_from(
            &flood,
            "OPTIONS",
            "sip:x@127.0.0.1",
            "sip:f@h",
            &format!("f{i}"),
            "",
        );
        // a full socket buffer on our side is just a lost request
        let _ = flood.send_to(m.as_bytes(), s.addr());
        if i % 100 == 50 {
            let r = ask(
                &good,
                s.addr(),
                &req_from(
                    &good,
                    "OPTIONS",
                    "sip:x@127.0.0.1",
                    "sip:g@h",
                    &format!("g{i}"),
                    "",
                ),
            );
            assert_eq!(
                r, "SIP/2.0 200 OK",
                "127.0.0.3 refused during the flood at {i}"
            );
            drain(&mut answered);
        }
    }
    let list = mi(&dir, "pike_list", &[]);
    assert!(list.contains("127.0.0.2"), "{list}");
    assert!(!list.contains("127.0.0.3"), "{list}");
    std::thread::sleep(Duration::from_millis(300));
    drain(&mut answered);
    assert!(answered >= 30, "served until the density: {answered}");
    assert!(
        answered < 200,
        "the flood was not blocked: {answered} of 2000 answered"
    );
    assert!(
        s.log().contains("ALARM - TOO MANY HITS on 127.0.0.2"),
        "{}",
        s.log()
    );

    // the block lifts once the source is quiet
    flood.set_nonblocking(false).unwrap();
    flood
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut n = 0;
    let lifted = wait_until(Duration::from_secs(30), || {
        n += 1;
        std::thread::sleep(Duration::from_millis(500));
        let m = req_from(
            &flood,
            "OPTIONS",
            "sip:x@127.0.0.1",
            "sip:f@h",
            &format!("l{n}"),
            "",
        );
        ask(&flood, s.addr(), &m) == "SIP/2.0 200 OK"
    });
    assert!(lifted, "127.0.0.2 still blocked");
    // nothing left in the tree after remove_latency, memory back at the baseline
    assert!(
        wait_until(Duration::from_secs(60), || stat(&dir, "pike:tree_nodes")
            == 0),
        "tree not emptied"
    );
    assert!(!mi(&dir, "pike_list", &[]).contains("127.0.0"));
    assert_eq!(stat(&dir, "shmem:used_size"), baseline);
}

//! The cost of one NAT ping round over N NAT'd contacts (default 100,000): fills a
//! usrloc table in shm, then runs one whole round of the pinger (every slot copied out
//! under its lock, then one 4-byte UDP keep-alive per contact, sent to a socket on
//! 127.0.0.1 that nobody reads). Prints the wall time of the round; for instruction
//! counts run it under callgrind with collection limited to the round:
//!
//! ```text
//! cargo build --release -p nathelper --example ping_round
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*ping_round*round*' \
//!     target/release/examples/ping_round 100000
//! ```

use std::net::UdpSocket;
use std::time::Instant;

use openser_core::transport::socket::{bind_udp, set_sockets};
use usrloc::ContactInfo;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    shm::init(512 << 20).expect("shm");
    usrloc::P.nat_bflag.set(6);
    usrloc::P.hash_size.set(12);
    nathelper::P.ping_nated_only.set(true);
    nathelper::P.natping_interval.set(30);
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    let sink_port = sink.local_addr().unwrap().port();
    let si = bind_udp("127.0.0.1:0".parse().unwrap(), "udp".into(), 1 << 20).expect("bind");
    let sock_text = format!("udp:127.0.0.1:{}", si.port);
    set_sockets(vec![si], vec![]);
    let d = usrloc::register_udomain("location").expect("domain");
    let now = openser_core::clock::now();
    for i in 0..n {
        let aor = format!("user{i}");
        let ci = ContactInfo {
            contact: format!("sip:{aor}@10.0.{}.{}:5060", (i >> 8) & 255, i & 255),
            received: format!("sip:127.0.0.1:{sink_port}"),
            expires: now + 3600,
            callid: format!("reg-{i}"),
            cseq: 1,
            cflags: 1 << 6,
            socket: sock_text.clone(),
            ..ContactInfo::default()
        };
        d.with_slot(aor.as_bytes(), |g| {
            let r = g.get_or_insert_urecord(aor.as_bytes()).expect("record");
            g.insert_ucontact(r, &ci).expect("contact");
        });
    }
    let t = Instant::now();
    let sent = ping_round_once(now);
    let el = t.elapsed();
    println!(
        "contacts {n} slots {} pings {sent} round {:.1} ms ({:.2} us/contact)",
        usrloc::total_slots(),
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e6 / n.max(1) as f64
    );
    drop(sink);
}

#[inline(never)]
fn ping_round_once(now: i64) -> usize {
    nathelper::ping::round_now(now)
}

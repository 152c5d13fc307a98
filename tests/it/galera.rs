//! Several openser instances behind a dispatcher, sharing a MariaDB Galera cluster
//! (issue 20).

use crate::harness::galera::Galera;

/// The cluster harness itself: three nodes synced, the schema replicated, a row
/// written on one node read on the others; a node stopped and restarted rejoins and
/// catches up.
#[test]
fn galera_cluster_harness() {
    let Some(mut g) = Galera::start(3) else {
        return;
    };
    eprintln!("galera: 3 nodes synced in {:?}", g.startup);
    g.sql(
        0,
        "INSERT INTO openser.location (username, contact) VALUES ('h1', 'sip:h1@127.0.0.1')",
    );
    g.wait_for(
        2,
        "SELECT COUNT(*) FROM openser.location WHERE username='h1'",
        "1",
    );
    g.stop_node(1);
    assert_eq!(g.status(0, "wsrep_cluster_size"), "2");
    g.sql(
        2,
        "INSERT INTO openser.location (username, contact) VALUES ('h2', 'sip:h2@127.0.0.1')",
    );
    g.restart_node(1);
    g.wait_for(1, "SELECT COUNT(*) FROM openser.location", "2");
    assert_eq!(g.status(0, "wsrep_cluster_size"), "3");
}

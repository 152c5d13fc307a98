//! mtree: a prefix tree read from the database (SQLite, the `mtree` table made by
//! openser_sqlite.sh) routes requests to the gateway of the longest matching prefix;
//! a change of the table is picked up by MI `mt_reload`.

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;
use std::process::Command;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "db_sqlite.so"
loadmodule "mtree.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("mtree", "db_url", "{URL}")
modparam("mtree", "mtree", "name=routes;dbtable=mtree")
route {
    if (!mt_match("routes", "$rU", 0)) {
        sl_send_reply("404", "No route");
        exit;
    }
    $du = $avp(s:tvalue);
    forward();
}
"#;

fn sql(db: &Engine, statement: &str) {
    let out = Command::new("sqlite3")
        .arg(db.path())
        .arg(statement)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where a request for `user` went: 0 or 1 (the gateway that got it), or the reply.
fn route(s: &Server, c: &Client, gws: &[Client; 2], user: &str, id: &str) -> Result<usize, String> {
    c.send(
        s.addr(),
        &request(
            "INVITE",
            &format!("sip:{user}@127.0.0.1"),
            c.port(),
            id,
            1,
            "",
        ),
    );
    for (i, gw) in gws.iter().enumerate() {
        if let Some((m, _)) = gw.recv_timeout(Duration::from_millis(300))
            && m.contains(&format!("Call-ID: {id}\r\n"))
        {
            return Ok(i);
        }
    }
    match c.recv_timeout(Duration::from_secs(2)) {
        Some((m, _)) => Err(m.lines().next().unwrap_or_default().to_string()),
        None => Err("nothing".into()),
    }
}

#[test]
fn prefix_lookup_from_the_database_routes_and_reloads() {
    let Some(db) = Engine::start(Kind::Sqlite) else {
        return;
    };
    let gws = [Client::new(), Client::new()];
    let gw = |i: usize| format!("sip:127.0.0.1:{}", gws[i].port());
    sql(
        &db,
        &format!(
            "INSERT INTO mtree (tprefix, tvalue) VALUES ('1', '{}'), ('1212', '{}'), ('4420', '{}');",
            gw(0),
            gw(1),
            gw(0)
        ),
    );
    let s = Server::start(&CFG.replace("{URL}", &db.url()), &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let c = Client::new();
    assert_eq!(
        route(&s, &c, &gws, "12125551234", "mt1"),
        Ok(1),
        "{}",
        s.log()
    );
    assert_eq!(route(&s, &c, &gws, "13125551234", "mt2"), Ok(0));
    assert_eq!(route(&s, &c, &gws, "442012345", "mt3"), Ok(0));
    assert_eq!(
        route(&s, &c, &gws, "4412345", "mt4"),
        Err("SIP/2.0 404 No route".into())
    );
    let list = mi(&dir, "mt_list", &["routes"]);
    assert!(
        list.contains(&format!("tprefix=1212 tvalue={}", gw(1))),
        "{list}"
    );
    assert_eq!(list.matches("entry::").count(), 3, "{list}");
    // the table changes: nothing moves until the reload, then every worker follows
    sql(
        &db,
        &format!(
            "UPDATE mtree SET tvalue = '{}' WHERE tprefix = '1212'; INSERT INTO mtree (tprefix, tvalue) VALUES ('44', '{}');",
            gw(0),
            gw(1)
        ),
    );
    assert_eq!(route(&s, &c, &gws, "12125550000", "mt5"), Ok(1));
    let r = mi(&dir, "mt_reload", &[]);
    assert!(r.starts_with("200"), "{r}");
    for i in 0..4 {
        // several requests: both workers must have the new tree
        assert_eq!(
            route(&s, &c, &gws, "12125550000", &format!("mt6-{i}")),
            Ok(0)
        );
        assert_eq!(route(&s, &c, &gws, "4412345", &format!("mt7-{i}")), Ok(1));
    }
    let summary = mi(&dir, "mt_summary", &[]);
    assert!(summary.contains("name=routes items=4"), "{summary}");
    // a reload that cannot read the table keeps the trees
    sql(&db, "ALTER TABLE mtree RENAME TO mtree_gone;");
    let r = mi(&dir, "mt_reload", &[]);
    assert!(r.starts_with("500"), "{r}");
    assert_eq!(route(&s, &c, &gws, "4412345", "mt8"), Ok(1));
}

//! `avp_db_load`, `avp_db_store`, `avp_db_delete` and `avp_db_query` over `core::db`.
//!
//! The preference table (1.2's `usr_preferences`): `uuid`, `username`, `domain`,
//! `attribute`, `type`, `value`. `type` bit 1 (value 2) says the attribute name is an
//! integer id, bit 0 (value 1) that the value is an integer; 0 is a string name with a
//! string value.

use openser_core::cfg::pv::AvpName;
use openser_core::db::{DbConn, DbVal, Key, Row};
use openser_core::script::{AvpId, AvpList, PvValue};

use crate::parse::{DbName, DbParam, KeyKind, Scheme};

/// `type` bits.
pub const DB_NAME_INT: i64 = 2;
pub const DB_VAL_INT: i64 = 1;

/// The column names (parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub uuid: String,
    pub attribute: String,
    pub value: String,
    pub type_: String,
    pub username: String,
    pub domain: String,
}

/// The key values of one operation, from its source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub uuid: Option<String>,
    pub username: Option<String>,
    pub domain: Option<String>,
}

/// The keys a source gives: a uuid as is; a URI's user, and its host for `/domain`,
/// or for `/uri` when `use_domain` is on.
pub fn keys_of(kind: KeyKind, text: &str, use_domain: bool) -> Result<Keys, String> {
    if kind == KeyKind::Uuid {
        return Ok(Keys {
            uuid: Some(text.to_string()),
            ..Keys::default()
        });
    }
    let u = openser_core::parser::Uri::parse(text)
        .map_err(|e| format!("failed to parse uri <{text}>: {e}"))?;
    if u.user.is_empty() || u.host.is_empty() {
        return Err(format!("incomplete uri <{text}>"));
    }
    let mut k = Keys::default();
    if matches!(kind, KeyKind::Uri | KeyKind::Username) {
        k.username = Some(u.user.to_string());
    }
    if kind == KeyKind::Domain || (kind == KeyKind::Uri && use_domain) {
        k.domain = Some(u.host.to_string());
    }
    Ok(k)
}

/// The attribute text of an AVP id.
pub fn attr_text(id: &AvpId) -> String {
    match id {
        AvpId::Int(i) => i.to_string(),
        AvpId::Str(s) => s.clone(),
    }
}

/// The AVP id of a fixed name (None for a name taken from a PV).
pub fn fixed_id(n: &AvpName) -> Option<AvpId> {
    match n {
        AvpName::Int(i) => Some(AvpId::Int(*i)),
        AvpName::Str(s) | AvpName::Alias(s) => Some(AvpId::Str(s.clone())),
        AvpName::Pv(_) => None,
    }
}

fn selection<'a>(cols: &'a Columns, scheme: Option<&'a Scheme>, k: &Keys) -> Vec<Key> {
    let col = |sc: Option<&'a Option<String>>, dflt: &'a str| -> &'a str {
        sc.and_then(|c| c.as_deref()).unwrap_or(dflt)
    };
    let mut keys = Vec::new();
    if let Some(u) = &k.uuid {
        keys.push(Key::eq(
            col(scheme.map(|s| &s.uuid_col), &cols.uuid),
            u.as_str(),
        ));
    }
    if let Some(u) = &k.username {
        keys.push(Key::eq(
            col(scheme.map(|s| &s.username_col), &cols.username),
            u.as_str(),
        ));
    }
    if let Some(d) = &k.domain {
        keys.push(Key::eq(
            col(scheme.map(|s| &s.domain_col), &cols.domain),
            d.as_str(),
        ));
    }
    keys
}

fn text(v: &DbVal) -> Option<String> {
    match v {
        DbVal::Null => None,
        v => v.as_str().map(|s| s.into_owned()),
    }
}

/// One row of a plain load (value, attribute, type) as an AVP, if `name` accepts it.
/// `id`: the name the caller asked for (None = the row's own).
fn row_avp(
    row: &Row,
    name: &DbName,
    id: Option<&AvpId>,
) -> Result<Option<(AvpId, PvValue)>, String> {
    let (Some(v), Some(a), Some(t)) = (
        row.first().and_then(text),
        row.get(1).and_then(text),
        row.get(2)
            .and_then(|v| v.as_int().or_else(|| text(v)?.trim().parse().ok())),
    ) else {
        return Err("row contains NULL or badly typed fields".into());
    };
    let name_int = t & DB_NAME_INT != 0;
    match name {
        DbName::AnyInt if !name_int => return Ok(None),
        DbName::AnyStr if name_int => return Ok(None),
        DbName::Avp(AvpName::Int(_)) if !name_int => return Ok(None),
        DbName::Avp(AvpName::Str(_) | AvpName::Alias(_)) if name_int => return Ok(None),
        _ => {}
    }
    let id = match id {
        Some(id) => id.clone(),
        None if name_int => AvpId::Int(
            a.trim()
                .parse()
                .map_err(|_| format!("name is not an id as the type says <{a}>"))?,
        ),
        None => AvpId::Str(a),
    };
    let val = if t & DB_VAL_INT != 0 {
        PvValue::Int(
            v.trim()
                .parse()
                .map_err(|_| format!("value is not an integer as the type says <{v}>"))?,
        )
    } else {
        PvValue::Str(v)
    };
    Ok(Some((id, val)))
}

/// Load the AVPs of `keys` named by `p` (`id`: the name's id when it was given,
/// evaluated for a dynamic one). Returns how many were added.
pub fn load(
    conn: &mut dyn DbConn,
    cols: &Columns,
    table: &str,
    keys: &Keys,
    p: &DbParam,
    id: Option<&AvpId>,
    avps: &mut AvpList,
) -> Result<usize, String> {
    let mut sel = selection(cols, p.scheme.as_ref(), keys);
    let mut n = 0;
    if let Some(sc) = &p.scheme {
        let table = sc.table.as_deref().unwrap_or(table);
        let value_col = sc.value_col.as_deref().unwrap_or(&cols.value);
        let rows = conn
            .query(table, &sel, &[value_col], None)
            .map_err(|e| e.to_string())?;
        let Some(id) = id else {
            return Err("a db_scheme needs a complete AVP name".into());
        };
        for r in rows {
            let v = match r.first() {
                Some(DbVal::Int(i)) if sc.int_value => PvValue::Int(*i),
                Some(DbVal::Int(i)) => PvValue::Str(i.to_string()),
                Some(v) => match text(v) {
                    Some(t) if sc.int_value => match t.trim().parse() {
                        Ok(i) => PvValue::Int(i),
                        Err(_) => {
                            openser_core::log_err!("value is not an integer <{t}>");
                            continue;
                        }
                    },
                    Some(t) => PvValue::Str(t),
                    None => {
                        openser_core::log_err!("empty or wrong type for 'value' using scheme");
                        continue;
                    }
                },
                None => continue,
            };
            avps.add(id.clone(), v);
            n += 1;
        }
        return Ok(n);
    }
    if let Some(id) = id {
        sel.push(Key::eq(&cols.attribute, attr_text(id)));
    }
    let ret = [
        cols.value.as_str(),
        cols.attribute.as_str(),
        cols.type_.as_str(),
    ];
    let rows = conn
        .query(table, &sel, &ret, None)
        .map_err(|e| e.to_string())?;
    for r in &rows {
        match row_avp(r, &p.name, id) {
            Ok(Some((i, v))) => {
                avps.add(i, v);
                n += 1;
            }
            Ok(None) => {}
            Err(e) => openser_core::log_err!("{e}"),
        }
    }
    Ok(n)
}

/// Store `items` (name, value) under `keys`. Returns how many rows were written.
pub fn store(
    conn: &mut dyn DbConn,
    cols: &Columns,
    table: &str,
    keys: &Keys,
    items: &[(AvpId, PvValue)],
) -> Result<usize, String> {
    let mut n = 0;
    for (id, v) in items {
        let (vtext, vint) = match v {
            PvValue::Int(i) => (i.to_string(), true),
            PvValue::Str(s) => (s.clone(), false),
            PvValue::Null => continue,
        };
        let name_bit = if matches!(id, AvpId::Int(_)) {
            DB_NAME_INT
        } else {
            0
        };
        let t = name_bit | if vint { DB_VAL_INT } else { 0 };
        let mut row: Vec<(&str, DbVal)> = vec![
            (
                cols.uuid.as_str(),
                keys.uuid.clone().unwrap_or_default().into(),
            ),
            (
                cols.username.as_str(),
                keys.username.clone().unwrap_or_else(|| "0".into()).into(),
            ),
            (
                cols.domain.as_str(),
                keys.domain.clone().unwrap_or_default().into(),
            ),
            (cols.attribute.as_str(), attr_text(id).into()),
            (cols.type_.as_str(), DbVal::Int(t)),
        ];
        row.push((cols.value.as_str(), vtext.into()));
        conn.insert(table, &row).map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

/// Delete the rows of `keys` (and of the attribute `id`, when given).
pub fn delete(
    conn: &mut dyn DbConn,
    cols: &Columns,
    table: &str,
    keys: &Keys,
    id: Option<&AvpId>,
) -> Result<u64, String> {
    let mut sel = selection(cols, None, keys);
    if let Some(id) = id {
        sel.push(Key::eq(&cols.attribute, attr_text(id)));
    }
    conn.delete(table, &sel).map_err(|e| e.to_string())
}

/// The AVPs of a raw query's result: column j of each row to `dest[j]` (`i:j+1` beyond
/// the list), NULLs skipped, the first row ending up newest (as 1.2).
pub fn query_avps(rows: &[Row], dest: &[AvpId], avps: &mut AvpList) {
    for r in rows.iter().rev() {
        for (j, v) in r.iter().enumerate() {
            let val = match v {
                DbVal::Null => continue,
                DbVal::Int(i) => PvValue::Int(*i),
                v => match v.as_str() {
                    Some(s) => PvValue::Str(s.into_owned()),
                    None => continue,
                },
            };
            let id = dest.get(j).cloned().unwrap_or(AvpId::Int(j as i64 + 1));
            avps.add(id, val);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openser_core::db::MemDb;

    fn cols() -> Columns {
        Columns {
            uuid: "uuid".into(),
            attribute: "attribute".into(),
            value: "value".into(),
            type_: "type".into(),
            username: "username".into(),
            domain: "domain".into(),
        }
    }

    fn pref(user: &str, dom: &str, attr: &str, t: i64, v: &str) -> Vec<(&'static str, DbVal)> {
        vec![
            ("uuid", DbVal::from("")),
            ("username", DbVal::from(user.to_string())),
            ("domain", DbVal::from(dom.to_string())),
            ("attribute", DbVal::from(attr.to_string())),
            ("type", DbVal::Int(t)),
            ("value", DbVal::from(v.to_string())),
        ]
    }

    #[test]
    fn keys_from_sources() {
        let k = keys_of(KeyKind::Uri, "sip:alice@a.com", false).unwrap();
        assert_eq!(
            (k.username.as_deref(), k.domain.as_deref()),
            (Some("alice"), None)
        );
        let k = keys_of(KeyKind::Uri, "sip:alice@a.com", true).unwrap();
        assert_eq!(k.domain.as_deref(), Some("a.com"));
        let k = keys_of(KeyKind::Domain, "sip:alice@a.com", false).unwrap();
        assert_eq!((k.username, k.domain.as_deref()), (None, Some("a.com")));
        let k = keys_of(KeyKind::Uuid, "1234", false).unwrap();
        assert_eq!(k.uuid.as_deref(), Some("1234"));
        assert!(keys_of(KeyKind::Uri, "sip:a.com", false).is_err());
    }

    #[test]
    fn load_filters_by_name_type() {
        let mut db = MemDb::with_rows(
            "usr_preferences",
            vec![
                pref("alice", "a.com", "fwd", 0, "sip:bob@b.com"),
                pref("alice", "a.com", "7", DB_NAME_INT | DB_VAL_INT, "42"),
                pref("bob", "a.com", "fwd", 0, "sip:x@y"),
            ],
        );
        let keys = Keys {
            username: Some("alice".into()),
            ..Keys::default()
        };
        let mut l = AvpList::new();
        let p = crate::parse::db_param("a", None).unwrap();
        assert_eq!(
            load(&mut db, &cols(), "usr_preferences", &keys, &p, None, &mut l),
            Ok(2)
        );
        assert_eq!(l.get(&AvpId::Int(7)), Some(&PvValue::Int(42)));
        assert_eq!(
            l.get(&AvpId::Str("fwd".into())),
            Some(&PvValue::Str("sip:bob@b.com".into()))
        );
        let mut l = AvpList::new();
        let p = crate::parse::db_param("s", None).unwrap();
        assert_eq!(
            load(&mut db, &cols(), "usr_preferences", &keys, &p, None, &mut l),
            Ok(1)
        );
        let mut l = AvpList::new();
        let p = crate::parse::db_param("$avp(s:fwd)", None).unwrap();
        let id = AvpId::Str("fwd".into());
        assert_eq!(
            load(
                &mut db,
                &cols(),
                "usr_preferences",
                &keys,
                &p,
                Some(&id),
                &mut l
            ),
            Ok(1)
        );
        // the query asked for the attribute
        let (_, k, c) = db.queries.last().unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(c, &["value", "attribute", "type"]);
    }

    #[test]
    fn load_with_scheme() {
        let mut db = MemDb::with_rows(
            "subscriber",
            vec![vec![
                ("uuid", DbVal::from("u1")),
                ("first_name", DbVal::from("Alice")),
            ]],
        );
        let sc = crate::parse::scheme("s1:table=subscriber;value_col=first_name").unwrap();
        let p = crate::parse::db_param("$avp(s:fn)/$s1", Some(std::slice::from_ref(&sc))).unwrap();
        let keys = keys_of(KeyKind::Uuid, "u1", false).unwrap();
        let id = AvpId::Str("fn".into());
        let mut l = AvpList::new();
        assert_eq!(
            load(
                &mut db,
                &cols(),
                "usr_preferences",
                &keys,
                &p,
                Some(&id),
                &mut l
            ),
            Ok(1)
        );
        assert_eq!(l.get(&id), Some(&PvValue::Str("Alice".into())));
    }

    #[test]
    fn store_rows() {
        let mut db = MemDb::with_rows("usr_preferences", vec![]);
        let keys = keys_of(KeyKind::Uri, "sip:alice@a.com", true).unwrap();
        let items = [
            (AvpId::Int(5), PvValue::Int(3)),
            (AvpId::Str("e".into()), PvValue::Str("x@y".into())),
        ];
        assert_eq!(
            store(&mut db, &cols(), "usr_preferences", &keys, &items),
            Ok(2)
        );
        let t = |i: usize| {
            db.rows[i]
                .1
                .iter()
                .find(|(c, _)| c == "type")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(t(0), Some(DbVal::Int(3)));
        assert_eq!(t(1), Some(DbVal::Int(0)));
    }

    #[test]
    fn query_result_order() {
        let rows = vec![
            vec![DbVal::from("a"), DbVal::Int(1)],
            vec![DbVal::from("b"), DbVal::Null],
        ];
        let mut l = AvpList::new();
        query_avps(&rows, &[AvpId::Str("x".into())], &mut l);
        assert_eq!(
            l.get_all(&AvpId::Str("x".into())),
            [&PvValue::Str("a".into()), &PvValue::Str("b".into())]
        );
        assert_eq!(l.get(&AvpId::Int(2)), Some(&PvValue::Int(1)));
    }
}

//! Statement building shared by the SQL drivers (sqlite, postgres): identifiers quoted
//! (and refused when they could break out of the quotes), every value a bound
//! parameter, NULL keys compared with `IS [NOT] NULL`. A driver supplies its
//! [`Dialect`]: the identifier quote and the placeholder form (`?` or `$n`).

use super::{DbError, DbVal, Key, Op};

/// How a driver spells identifiers and parameters.
#[derive(Clone, Copy, Debug)]
pub struct Dialect {
    /// Driver name, for messages.
    pub name: &'static str,
    /// The identifier quote character (`"` for SQLite and PostgreSQL).
    pub quote: char,
    /// Placeholders are numbered (`$1`, `$2`, … as PostgreSQL) instead of `?`.
    pub numbered: bool,
}

/// A statement and its bound values, in placeholder order.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub sql: String,
    pub params: Vec<DbVal>,
}

impl Dialect {
    /// `name` quoted; refused when empty or holding the quote character or NUL.
    pub fn ident(&self, name: &str) -> Result<String, DbError> {
        if name.is_empty() || name.contains(self.quote) || name.contains('\0') {
            return Err(DbError(format!(
                "{}: invalid identifier '{name}'",
                self.name
            )));
        }
        Ok(format!("{q}{name}{q}", q = self.quote))
    }

    fn mark(&self, params: &[DbVal]) -> String {
        if self.numbered {
            format!("${}", params.len())
        } else {
            "?".to_string()
        }
    }

    fn push(&self, sql: &mut String, params: &mut Vec<DbVal>, v: &DbVal) {
        params.push(v.clone());
        sql.push_str(&self.mark(params));
    }

    fn where_clause(
        &self,
        keys: &[Key],
        sql: &mut String,
        params: &mut Vec<DbVal>,
    ) -> Result<(), DbError> {
        for (i, k) in keys.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.push_str(&self.ident(&k.col)?);
            match (&k.val, k.op) {
                (DbVal::Null, Op::Eq) => sql.push_str(" IS NULL"),
                (DbVal::Null, Op::Ne) => sql.push_str(" IS NOT NULL"),
                (v, op) => {
                    sql.push(' ');
                    sql.push_str(op.sql());
                    sql.push(' ');
                    self.push(sql, params, v);
                }
            }
        }
        Ok(())
    }

    /// `ORDER BY` from "col [ASC|DESC]".
    pub fn order(&self, order: &str) -> Result<String, DbError> {
        let mut it = order.split_whitespace();
        let col = it
            .next()
            .ok_or_else(|| DbError(format!("{}: empty order", self.name)))?;
        let dir = match it.next() {
            None => "",
            Some(d) if d.eq_ignore_ascii_case("asc") => " ASC",
            Some(d) if d.eq_ignore_ascii_case("desc") => " DESC",
            Some(d) => {
                return Err(DbError(format!(
                    "{}: invalid order direction '{d}'",
                    self.name
                )));
            }
        };
        if it.next().is_some() {
            return Err(DbError(format!("{}: invalid order '{order}'", self.name)));
        }
        Ok(format!(" ORDER BY {}{dir}", self.ident(col)?))
    }

    pub fn select(
        &self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
    ) -> Result<Stmt, DbError> {
        let cols = if cols.is_empty() {
            "*".to_string()
        } else {
            cols.iter()
                .map(|c| self.ident(c))
                .collect::<Result<Vec<_>, _>>()?
                .join(",")
        };
        let mut sql = format!("SELECT {cols} FROM {}", self.ident(table)?);
        let mut params = Vec::new();
        self.where_clause(keys, &mut sql, &mut params)?;
        if let Some(o) = order {
            sql.push_str(&self.order(o)?);
        }
        Ok(Stmt { sql, params })
    }

    /// [`Dialect::select`] returning at most `limit` rows (`LIMIT`, an integer, not a
    /// parameter: both engines take it as literal text).
    pub fn select_limit(
        &self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
        limit: usize,
    ) -> Result<Stmt, DbError> {
        let mut st = self.select(table, keys, cols, order)?;
        st.sql.push_str(&format!(" LIMIT {limit}"));
        Ok(st)
    }

    /// `verb INTO table (cols) VALUES (...)` (`verb` is `INSERT` or `REPLACE`).
    pub fn insert(&self, verb: &str, table: &str, vals: &[(&str, DbVal)]) -> Result<Stmt, DbError> {
        if vals.is_empty() {
            return Err(DbError(format!(
                "{}: {verb} into {table} without values",
                self.name
            )));
        }
        let cols = vals
            .iter()
            .map(|(c, _)| self.ident(c))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let mut sql = format!("{verb} INTO {} ({cols}) VALUES (", self.ident(table)?);
        let mut params = Vec::new();
        for (i, (_, v)) in vals.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            self.push(&mut sql, &mut params, v);
        }
        sql.push(')');
        Ok(Stmt { sql, params })
    }

    pub fn update(
        &self,
        table: &str,
        keys: &[Key],
        set: &[(&str, DbVal)],
    ) -> Result<Stmt, DbError> {
        if set.is_empty() {
            return Err(DbError(format!(
                "{}: update of {table} without values",
                self.name
            )));
        }
        let mut sql = format!("UPDATE {} SET ", self.ident(table)?);
        let mut params = Vec::new();
        for (i, (c, v)) in set.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&self.ident(c)?);
            sql.push('=');
            self.push(&mut sql, &mut params, v);
        }
        self.where_clause(keys, &mut sql, &mut params)?;
        Ok(Stmt { sql, params })
    }

    pub fn delete(&self, table: &str, keys: &[Key]) -> Result<Stmt, DbError> {
        let mut sql = format!("DELETE FROM {}", self.ident(table)?);
        let mut params = Vec::new();
        self.where_clause(keys, &mut sql, &mut params)?;
        Ok(Stmt { sql, params })
    }
}

/// `YYYY-MM-DD HH:MM:SS` in the process's local time (how DATETIME values are sent
/// to the SQL servers, as 1.2's `time2str`).
pub fn local_datetime(t: i64) -> Option<String> {
    let (y, mo, d, h, mi, s) = crate::sys::local_time(t)?;
    Some(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
}

/// Seconds since the epoch of a local `YYYY-MM-DD[ HH:MM:SS[.frac]]` (a `T` separator
/// and a trailing zone offset or fraction are tolerated and the offset ignored, as
/// 1.2's `str2time` reads local time). `0000-00-00 ...` is 0.
pub fn parse_local_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) =
        if b.len() >= 19 && (b[10] == b' ' || b[10] == b'T') && b[13] == b':' && b[16] == b':' {
            (num(11..13)?, num(14..16)?, num(17..19)?)
        } else if b.len() == 10 {
            (0, 0, 0)
        } else {
            return None;
        };
    if y == 0 && mo == 0 && d == 0 {
        return Some(0);
    }
    crate::sys::local_mktime(i32::try_from(y).ok()?, mo, d, h, mi, sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Dialect = Dialect {
        name: "t",
        quote: '"',
        numbered: false,
    };
    const PG: Dialect = Dialect {
        name: "t",
        quote: '"',
        numbered: true,
    };

    #[test]
    fn statements() {
        let s = Q
            .select(
                "location",
                &[
                    Key::eq("username", "a'b"),
                    Key::op("q", Op::Gt, DbVal::Double(0.5)),
                    Key::eq("received", DbVal::Null),
                ],
                &["contact"],
                Some("q desc"),
            )
            .unwrap();
        assert_eq!(
            s.sql,
            "SELECT \"contact\" FROM \"location\" WHERE \"username\" = ? AND \"q\" > ? AND \"received\" IS NULL ORDER BY \"q\" DESC"
        );
        assert_eq!(s.params, vec![DbVal::from("a'b"), DbVal::Double(0.5)]);
        let s = PG
            .update(
                "t",
                &[Key::eq("id", 3), Key::op("x", Op::Ne, DbVal::Null)],
                &[("a", 1.into()), ("b", DbVal::Null)],
            )
            .unwrap();
        assert_eq!(
            s.sql,
            "UPDATE \"t\" SET \"a\"=$1,\"b\"=$2 WHERE \"id\" = $3 AND \"x\" IS NOT NULL"
        );
        assert_eq!(s.params.len(), 3);
        let s = PG
            .insert("INSERT", "t", &[("a", 1.into()), ("b", "x".into())])
            .unwrap();
        assert_eq!(s.sql, "INSERT INTO \"t\" (\"a\",\"b\") VALUES ($1,$2)");
        assert_eq!(PG.delete("t", &[]).unwrap().sql, "DELETE FROM \"t\"");
        assert!(Q.select("t\"; DROP TABLE x; --", &[], &[], None).is_err());
        assert!(Q.select("t", &[], &["a\0"], None).is_err());
        assert!(Q.select("t", &[], &[], Some("a; DROP")).is_err());
        assert!(Q.insert("INSERT", "t", &[]).is_err());
        assert!(Q.update("t", &[], &[]).is_err());
    }

    #[test]
    fn datetime_text() {
        let t = 1_200_000_000;
        let s = local_datetime(t).unwrap();
        assert_eq!(parse_local_datetime(&s), Some(t));
        assert_eq!(parse_local_datetime(&format!("{s}.123+01")), Some(t));
        assert_eq!(parse_local_datetime(&s.replace(' ', "T")), Some(t));
        assert_eq!(parse_local_datetime("0000-00-00 00:00:00"), Some(0));
        assert!(parse_local_datetime("2020-01-01").is_some());
        for bad in ["", "2020", "abcd-ef-gh 00:00:00", "2020-01-01 x"] {
            assert_eq!(parse_local_datetime(bad), None, "{bad}");
        }
    }
}

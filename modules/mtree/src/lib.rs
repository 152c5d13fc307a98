//! mtree (SIP Router 3.1 / Kamailio `modules/mtree`; not in OpenSER 1.2): prefix trees
//! loaded from the database, matched from the script (number routing, prefix-to-value
//! tables).
//!
//! Trees: `modparam("mtree", "mtree", "name=NAME;dbtable=TABLE")` (repeatable) loads
//! the rows (`tprefix_column` "tprefix", `tvalue_column` "tvalue") of TABLE as tree
//! NAME; `db_table` (no default), if set, also loads every tree of a table of several
//! trees, the tree named by its `tname_column` ("tname"). A prefix may use only the
//! characters of `char_list` ("0123456789*#+"); other rows are skipped with an error.
//! `db_url` as every module (default the read-only 1.2 URL).
//!
//! `mt_match(mtree, pv, mode)` (every route): matches the value of `pv` (or a string
//! with PVs) against tree `mtree` (a name, may contain PVs), using the leading
//! characters that are in `char_list`. Mode 0: the longest matching prefix; its value
//! goes into `pv_value` (default `$avp(s:tvalue)`). Mode 1: every matching prefix,
//! shortest first; their values are added to `pv_values` (default `$avp(s:tvalues)`),
//! the longest's also to `pv_value`. Returns 1 on a match, −1 when nothing matches or
//! the tree is unknown.
//!
//! MI: `mt_reload [name]` re-reads the trees (a single tree by name, or all) — the
//! new trees are built in private memory, published in shared memory as one image
//! replacing the old one under its lock (the old one is freed), and every process
//! takes the new image at its next match (a generation counter); a failed read keeps
//! the old trees. `mt_list name [prefix]` lists a tree (prefix and value per line),
//! optionally the entries under `prefix`. `mt_summary` lists the trees and their
//! sizes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::cfg::pv::PvSpec;
use openser_core::db::DbConn;
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, MiExport, ModParamValue, ModuleExports, Param, StrParam,
};
use openser_core::route::ANY_ROUTE;
use openser_core::script::{Ctx, PvValue};
use openser_core::state::Registry;

pub use shm::SharedBlob as Image;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "mtree",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("db_table", &P.db_table),
        Param::func("mtree", add_tree),
        Param::str("tname_column", &P.tname_column),
        Param::str("tprefix_column", &P.tprefix_column),
        Param::str("tvalue_column", &P.tvalue_column),
        Param::str_with("char_list", &P.char_list, check_char_list),
        Param::str_with("pv_value", &P.pv_value, check_avp),
        Param::str_with("pv_values", &P.pv_values, check_avp),
    ],
    cmds: &[CmdExport::new("mt_match", 3, 3, ANY_ROUTE, cmd_mt_match).fixup(fixup_match)],
    mi: &[
        MiExport::new("mt_reload", mi_reload),
        MiExport::new("mt_list", mi_list),
        MiExport::new("mt_summary", mi_summary).no_input(),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with Kamailio's defaults.
pub struct Params {
    pub db_url: StrParam,
    pub db_table: StrParam,
    pub tname_column: StrParam,
    pub tprefix_column: StrParam,
    pub tvalue_column: StrParam,
    pub char_list: StrParam,
    pub pv_value: StrParam,
    pub pv_values: StrParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(openser_core::db::DEFAULT_RO_URL),
    db_table: StrParam::new(""),
    tname_column: StrParam::new("tname"),
    tprefix_column: StrParam::new("tprefix"),
    tvalue_column: StrParam::new("tvalue"),
    char_list: StrParam::new("0123456789*#+"),
    pv_value: StrParam::new("$avp(s:tvalue)"),
    pv_values: StrParam::new("$avp(s:tvalues)"),
};

/// Trees declared by `mtree`: (name, table).
static DECLARED: Registry<(String, String)> = Registry::new();

/// The published image of every tree, made by `mod_init`.
static IMAGE: OnceLock<&'static Image> = OnceLock::new();

/// `pv_value` and `pv_values`, parsed in `mod_init`.
static OUT: OnceLock<(PvSpec, PvSpec)> = OnceLock::new();

thread_local! {
    /// This process's copy of the trees and the generation it was taken at.
    static LOCAL: RefCell<(u64, Trees)> = RefCell::new((u64::MAX, Trees::default()));
}

fn check_char_list(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("empty char_list".into())
    } else {
        Ok(())
    }
}

fn check_avp(s: &str) -> Result<(), String> {
    let (spec, n) = openser_core::cfg::pv::parse_pv(s.trim())?;
    if n != s.trim().len() || !openser_core::cfg::pv::is_avp_name(&spec.name) {
        return Err(format!("'{s}' is not an AVP"));
    }
    Ok(())
}

/// An `mtree` value: `name=NAME;dbtable=TABLE`.
pub fn parse_def(v: &str) -> Result<(String, String), String> {
    let (mut name, mut table) = (None, None);
    for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, val) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}': expected key=value"))?;
        let val = val.trim();
        match k.trim() {
            "name" if !val.is_empty() => name = Some(val.to_string()),
            "dbtable" if !val.is_empty() => table = Some(val.to_string()),
            "type" | "multi" => {} // Kamailio's value types: every value is a string here
            k => return Err(format!("bad attribute '{k}' (name, dbtable)")),
        }
    }
    Ok((
        name.ok_or("no tree name (name=...)")?,
        table.ok_or("no table (dbtable=...)")?,
    ))
}

fn add_tree(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("a string expected".into());
    };
    let (name, table) = parse_def(s)?;
    let mut all = DECLARED.lock();
    if all.iter().any(|(n, _)| *n == name) {
        return Err(format!("tree '{name}' declared twice"));
    }
    all.push((name, table));
    Ok(())
}

/// A prefix tree (private copy): prefixes to values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tree {
    pub entries: HashMap<String, String>,
    pub longest: usize,
}

impl Tree {
    pub fn insert(&mut self, prefix: &str, value: &str) {
        self.longest = self.longest.max(prefix.len());
        self.entries.insert(prefix.to_string(), value.to_string());
    }

    /// The matching prefixes' (prefix, value), shortest first, of `key`'s leading
    /// characters that are in `chars`.
    pub fn matches<'a>(&'a self, key: &str, chars: &str) -> Vec<(&'a str, &'a str)> {
        let usable = key
            .bytes()
            .take_while(|b| chars.as_bytes().contains(b))
            .count()
            .min(self.longest);
        (1..=usable)
            .filter_map(|n| self.entries.get_key_value(key.get(..n)?))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Entries in prefix order.
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        v.sort();
        v
    }
}

/// Every tree by name.
pub type Trees = HashMap<String, Tree>;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The shared image of the trees: per entry its tree, prefix and value, each a
/// 32-bit length and bytes.
pub fn encode(trees: &Trees) -> Vec<u8> {
    let mut out = Vec::new();
    let mut names: Vec<&String> = trees.keys().collect();
    names.sort();
    for name in names {
        // an empty tree is kept as one record with an empty prefix
        put_str(&mut out, name);
        put_str(&mut out, "");
        put_str(&mut out, "");
        for (p, v) in trees[name].sorted() {
            put_str(&mut out, name);
            put_str(&mut out, p);
            put_str(&mut out, v);
        }
    }
    out
}

fn get_str<'a>(b: &'a [u8], i: &mut usize) -> Option<&'a str> {
    let n = u32::from_le_bytes(b.get(*i..*i + 4)?.try_into().ok()?) as usize;
    let s = b.get(*i + 4..(*i + 4).checked_add(n)?)?;
    *i += 4 + n;
    std::str::from_utf8(s).ok()
}

/// The trees of an image (a damaged tail is ignored).
pub fn decode(b: &[u8]) -> Trees {
    let mut trees = Trees::new();
    let mut i = 0;
    while i < b.len() {
        let (Some(t), Some(p), Some(v)) =
            (get_str(b, &mut i), get_str(b, &mut i), get_str(b, &mut i))
        else {
            break;
        };
        let tree = trees.entry(t.to_string()).or_default();
        if !p.is_empty() {
            tree.insert(p, v);
        }
    }
    trees
}

fn valid_prefix(p: &str, chars: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| chars.as_bytes().contains(&b))
}

fn add_rows(
    tree: &mut Tree,
    name: &str,
    rows: impl Iterator<Item = (String, String)>,
    chars: &str,
) {
    for (p, v) in rows {
        let p = p.trim();
        if valid_prefix(p, chars) {
            tree.insert(p, &v);
        } else {
            openser_core::log_err!(
                "mtree {name}: prefix '{p}' skipped (characters outside char_list)"
            );
        }
    }
}

/// Read the trees (all, or only `only`) from the database.
pub fn load(conn: &mut dyn DbConn, only: Option<&str>) -> Result<Trees, String> {
    let chars = P.char_list.get();
    let (pc, vc) = (P.tprefix_column.get(), P.tvalue_column.get());
    let mut trees = Trees::new();
    let declared = DECLARED.lock().clone();
    for (name, table) in declared {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let rows = conn
            .query(&table, &[], &[pc, vc], None)
            .map_err(|e| format!("table {table}: {e}"))?;
        let tree = trees.entry(name.clone()).or_default();
        let pairs = rows.iter().filter_map(|r| {
            Some((
                r.first()?.as_str()?.into_owned(),
                r.get(1)
                    .and_then(|v| v.as_str())
                    .map(|s| s.into_owned())
                    .unwrap_or_default(),
            ))
        });
        add_rows(tree, &name, pairs, chars);
    }
    let table = P.db_table.get();
    if !table.is_empty() {
        let rows = conn
            .query(table, &[], &[P.tname_column.get(), pc, vc], None)
            .map_err(|e| format!("table {table}: {e}"))?;
        for r in &rows {
            let Some(name) = r.first().and_then(|v| v.as_str()) else {
                continue;
            };
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let p = r
                .get(1)
                .and_then(|v| v.as_str())
                .map(|s| s.into_owned())
                .unwrap_or_default();
            let v = r
                .get(2)
                .and_then(|v| v.as_str())
                .map(|s| s.into_owned())
                .unwrap_or_default();
            let tree = trees.entry(name.to_string()).or_default();
            add_rows(tree, &name, std::iter::once((p, v)), chars);
        }
    }
    Ok(trees)
}

/// Read the trees and publish them (one tree, or all); returns how many entries.
fn reload_with(conn: &mut dyn DbConn, image: &Image, only: Option<&str>) -> Result<usize, String> {
    let fresh = load(conn, only)?;
    let mut trees = match only {
        Some(_) => decode(&image.read().1),
        None => Trees::new(),
    };
    let n = fresh.values().map(|t| t.entries.len()).sum();
    trees.extend(fresh);
    if !image.replace(&encode(&trees)) {
        return Err("out of shared memory".into());
    }
    Ok(n)
}

fn mod_init() -> Result<(), String> {
    let parse = |s: &str| openser_core::cfg::pv::parse_pv(s.trim()).map(|(spec, _)| spec);
    let out = (parse(P.pv_value.get())?, parse(P.pv_values.get())?);
    let _ = OUT.set(out);
    if DECLARED.lock().is_empty() && P.db_table.get().is_empty() {
        return Err("mtree: no tree (modparam \"mtree\" or \"db_table\")".into());
    }
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("mtree: {e}"))?;
    let image = Image::new_static("mtree trees")
        .ok_or_else(|| "mtree: no shared memory for the trees".to_string())?;
    // a connection of the attendant's own, closed before it forks
    let mut conn = openser_core::db::connect(P.db_url.get())
        .map_err(|e| format!("mtree: can't connect to the database: {e}"))?;
    let n = reload_with(conn.as_mut(), image, None)
        .map_err(|e| format!("mtree: loading the trees failed: {e}"))?;
    drop(conn);
    openser_core::log_dbg!("{n} mtree entries loaded");
    let _ = IMAGE.set(image);
    Ok(())
}

/// Run `f` on this process's current copy of the trees.
fn with_trees<T>(f: impl FnOnce(&Trees) -> T) -> Option<T> {
    let image = IMAGE.get()?;
    let g = image.generation();
    Some(LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != g {
            let (g, bytes) = image.read();
            *l = (g, decode(&bytes));
        }
        f(&l.1)
    }))
}

fn fixup_match(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = openser_core::script::fixup::default_fixup(&args[..2])?;
    let mode = match &args[2].value {
        ArgValue::Int(i) => *i,
        _ => openser_core::script::fixup::int_arg(&args[2], "mode")?,
    };
    if !(0..=1).contains(&mode) {
        return Err(format!("mt_match: mode {mode} not supported (0 or 1)"));
    }
    out.push(FixedArg::Int(mode));
    Ok(out)
}

fn set_avp(ctx: &mut Ctx, spec: &PvSpec, v: &str) {
    let lhs = openser_core::script::interp::Lhs::Avp(spec.clone());
    openser_core::script::pv::assign(ctx, &lhs, PvValue::Str(v.to_string()));
}

fn cmd_mt_match(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let tree = ctx.arg_str(&args[0]);
    let key = ctx.arg_str(&args[1]);
    let mode = matches!(args.get(2), Some(FixedArg::Int(1)));
    let chars = P.char_list.get();
    let found = with_trees(|t| {
        t.get(&tree).map(|t| {
            t.matches(&key, chars)
                .into_iter()
                .map(|(_, v)| v.to_string())
                .collect::<Vec<_>>()
        })
    })
    .flatten();
    let Some(values) = found else {
        openser_core::log_err!("mtree '{tree}' not found");
        return -1;
    };
    let Some(last) = values.last() else {
        return -1;
    };
    let Some((one, all)) = OUT.get() else {
        return -1;
    };
    set_avp(ctx, one, last);
    if mode {
        for v in &values {
            set_avp(ctx, all, v);
        }
    }
    1
}

// ---------------------------------------------------------------------------
// MI

fn mi_reload(args: &[MiArg]) -> MiReply {
    let Some(image) = IMAGE.get() else {
        return MiReply::err(500, "mtree not initialised");
    };
    let only = args
        .first()
        .map(|a| a.value.trim())
        .filter(|s| !s.is_empty());
    if let Some(o) = only
        && with_trees(|t| t.contains_key(o)) != Some(true)
    {
        return MiReply::err(404, "No such tree");
    }
    match openser_core::db::with_conn(P.db_url.get(), |c| reload_with(c, image, only)) {
        Ok(Ok(_)) => MiReply::ok(Vec::new()),
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("mtree reload failed: {e}");
            MiReply::err(500, "Reload failed")
        }
    }
}

fn mi_list(args: &[MiArg]) -> MiReply {
    let Some(name) = args.first().map(|a| a.value.trim().to_string()) else {
        return MiReply::err(400, "Too few or too many arguments");
    };
    let under = args
        .get(1)
        .map(|a| a.value.trim().to_string())
        .unwrap_or_default();
    let rows = with_trees(|t| {
        t.get(&name).map(|t| {
            t.sorted()
                .into_iter()
                .filter(|(p, _)| p.starts_with(&under))
                .map(|(p, v)| {
                    MiNode::new("entry", "")
                        .attr("tprefix", p)
                        .attr("tvalue", v)
                })
                .collect::<Vec<_>>()
        })
    })
    .flatten();
    match rows {
        Some(r) => MiReply::ok(r),
        None => MiReply::err(404, "No such tree"),
    }
}

fn mi_summary(_: &[MiArg]) -> MiReply {
    let rows = with_trees(|t| {
        let mut names: Vec<_> = t.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        names
            .into_iter()
            .map(|(n, t)| {
                MiNode::new("tree", "")
                    .attr("name", n.clone())
                    .attr("items", t.entries.len().to_string())
            })
            .collect::<Vec<_>>()
    })
    .unwrap_or_default();
    MiReply::ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        assert_eq!(
            parse_def("name=routes;dbtable=mtree"),
            Ok(("routes".into(), "mtree".into()))
        );
        assert!(parse_def("name=x").is_err());
        assert!(parse_def("dbtable=x").is_err());
        assert!(parse_def("name=x;dbtable=y;color=red").is_err());
    }

    #[test]
    fn longest_and_all_matches() {
        let mut t = Tree::default();
        for (p, v) in [
            ("1", "nanp"),
            ("1212", "nyc"),
            ("12125", "nyc-5"),
            ("44", "uk"),
        ] {
            t.insert(p, v);
        }
        let chars = "0123456789*#+";
        let m = t.matches("12125551234", chars);
        assert_eq!(m, [("1", "nanp"), ("1212", "nyc"), ("12125", "nyc-5")]);
        assert_eq!(t.matches("1213", chars), [("1", "nanp")]);
        assert!(t.matches("33", chars).is_empty());
        // only the leading characters of char_list count
        assert_eq!(t.matches("1x212", chars), [("1", "nanp")]);
        assert!(t.matches("", chars).is_empty());
    }

    #[test]
    fn image_round_trip() {
        let mut trees = Trees::new();
        let mut a = Tree::default();
        a.insert("49", "de");
        a.insert("4930", "berlin\twith tab");
        trees.insert("a".into(), a);
        trees.insert("empty".into(), Tree::default());
        let img = encode(&trees);
        assert_eq!(decode(&img), trees);
        // a cut image keeps what is whole
        let cut = decode(&img[..img.len() - 3]);
        assert!(cut.contains_key("a"));
        assert!(decode(&[1, 2]).is_empty());
    }

    #[test]
    fn rows_outside_char_list_are_skipped() {
        let mut t = Tree::default();
        add_rows(
            &mut t,
            "t",
            [("12", "ok"), ("1a", "bad"), ("", "empty")]
                .into_iter()
                .map(|(p, v)| (p.to_string(), v.to_string())),
            "0123456789",
        );
        assert_eq!(t.sorted(), [("12", "ok")]);
    }
}

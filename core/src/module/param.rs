//! Typed module parameters: the cells a module keeps its `modparam` values in, and the
//! rows of its exports table that bind a parameter name to a cell.
//!
//! A cell is written only while the configuration loads (the attendant, before the
//! first fork) and read everywhere after: it is configuration, not per-process state
//! (see `crate::state`). Values are checked here, once, so a bad `modparam` is reported
//! at its `file:line:col` and a module never sees an out-of-range value.
//!
//! ```ignore
//! pub static P: TmParams = TmParams { fr_timer: IntParam::new(30), … };
//! params: &[Param::int("fr_timer", &P.fr_timer), Param::int_range("T1_timer", &P.t1, 100, 60_000)],
//! ```

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{PoisonError, RwLock};

use crate::cfg::ast::ModParamValue;

/// An integer parameter with its 1.2 default.
pub struct IntParam(AtomicI64);

impl IntParam {
    pub const fn new(default: i64) -> IntParam {
        IntParam(AtomicI64::new(default))
    }
    #[inline]
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// The value as `u32` (rows with a range keep it in bounds; 0 otherwise).
    #[inline]
    pub fn get_u32(&self) -> u32 {
        u32::try_from(self.get()).unwrap_or(0)
    }
    /// Set the value (the config loader; unit tests).
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A yes/no parameter (1.2 takes any integer: non-zero is true).
pub struct BoolParam(AtomicBool);

impl BoolParam {
    pub const fn new(default: bool) -> BoolParam {
        BoolParam(AtomicBool::new(default))
    }
    #[inline]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, v: bool) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A string parameter with its 1.2 default. The text lives for the whole run (a
/// `modparam` is set a handful of times at start-up), so readers get a `&'static str`.
pub struct StrParam {
    default: &'static str,
    value: RwLock<Option<&'static str>>,
}

impl StrParam {
    pub const fn new(default: &'static str) -> StrParam {
        StrParam {
            default,
            value: RwLock::new(None),
        }
    }
    /// The value, or the default when `modparam` did not set it.
    pub fn get(&self) -> &'static str {
        self.value
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or(self.default)
    }
    /// Whether `modparam` set it (even to the default's text).
    pub fn is_set(&self) -> bool {
        self.value
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
    /// Set the value (the config loader; unit tests).
    pub fn set(&self, v: &str) {
        let v: &'static str = Box::leak(v.to_owned().into_boxed_str());
        *self.value.write().unwrap_or_else(PoisonError::into_inner) = Some(v);
    }
}

/// A module-specific setter (1.2's `USE_FUNC_PARAM`): for values with a syntax of
/// their own (column lists, AVP specs) or parameters that may be given many times.
pub type ParamFn = fn(&ModParamValue) -> Result<(), String>;

/// What a parameter row binds to.
pub enum ParamKind {
    Int {
        cell: &'static IntParam,
        min: i64,
        max: i64,
    },
    /// An integer checked by a function of the module (its message is reported as is).
    IntWith(&'static IntParam, fn(i64) -> Result<(), String>),
    Bool(&'static BoolParam),
    Str(&'static StrParam),
    /// A string with a syntax of its own, checked when set (the checker's message is
    /// reported as is).
    StrWith(&'static StrParam, fn(&str) -> Result<(), String>),
    Func(ParamFn),
    /// Accepted for 1.2 configs, without effect here; the reason is logged when set.
    NoEffect(&'static str),
}

/// One `modparam` a module accepts.
pub struct Param {
    pub name: &'static str,
    pub kind: ParamKind,
}

impl Param {
    /// Any integer.
    pub const fn int(name: &'static str, cell: &'static IntParam) -> Param {
        Param::int_range(name, cell, i64::MIN, i64::MAX)
    }
    /// An integer that must lie in `min..=max`.
    pub const fn int_range(
        name: &'static str,
        cell: &'static IntParam,
        min: i64,
        max: i64,
    ) -> Param {
        Param {
            name,
            kind: ParamKind::Int { cell, min, max },
        }
    }
    /// A non-negative integer that fits `u32` (timers, sizes, counts).
    pub const fn uint(name: &'static str, cell: &'static IntParam) -> Param {
        Param::int_range(name, cell, 0, u32::MAX as i64)
    }
    /// An integer checked by `check` (for values with holes or a message of 1.2's).
    pub const fn int_with(
        name: &'static str,
        cell: &'static IntParam,
        check: fn(i64) -> Result<(), String>,
    ) -> Param {
        Param {
            name,
            kind: ParamKind::IntWith(cell, check),
        }
    }
    pub const fn bool(name: &'static str, cell: &'static BoolParam) -> Param {
        Param {
            name,
            kind: ParamKind::Bool(cell),
        }
    }
    pub const fn str(name: &'static str, cell: &'static StrParam) -> Param {
        Param {
            name,
            kind: ParamKind::Str(cell),
        }
    }
    /// A string checked by `check` when set (an AVP spec, a non-empty path).
    pub const fn str_with(
        name: &'static str,
        cell: &'static StrParam,
        check: fn(&str) -> Result<(), String>,
    ) -> Param {
        Param {
            name,
            kind: ParamKind::StrWith(cell, check),
        }
    }
    pub const fn func(name: &'static str, f: ParamFn) -> Param {
        Param {
            name,
            kind: ParamKind::Func(f),
        }
    }
    /// A 1.2 parameter that has no effect in this implementation; `why` is logged.
    pub const fn no_effect(name: &'static str, why: &'static str) -> Param {
        Param {
            name,
            kind: ParamKind::NoEffect(why),
        }
    }

    /// Check and store a `modparam` value; the error text names the parameter.
    pub fn set(&self, module: &str, v: &ModParamValue) -> Result<(), String> {
        match &self.kind {
            ParamKind::Int { cell, min, max } => {
                let i = v.int(module, self.name)?;
                if i < *min || i > *max {
                    return Err(format!(
                        "{module}: parameter {} out of range: {i} (allowed {})",
                        self.name,
                        range_text(*min, *max)
                    ));
                }
                cell.set(i);
            }
            ParamKind::IntWith(cell, check) => {
                let i = v.int(module, self.name)?;
                check(i)?;
                cell.set(i);
            }
            ParamKind::Bool(cell) => cell.set(v.flag(module, self.name)?),
            ParamKind::Str(cell) => cell.set(&v.text()),
            ParamKind::StrWith(cell, check) => {
                let s = v.text();
                check(&s)?;
                cell.set(&s);
            }
            ParamKind::Func(f) => f(v)?,
            ParamKind::NoEffect(why) => {
                crate::log_warn!(
                    "{module}: parameter {} has no effect in openser-rs ({why})",
                    self.name
                );
            }
        }
        Ok(())
    }
}

fn range_text(min: i64, max: i64) -> String {
    match (min, max) {
        (i64::MIN, m) => format!("at most {m}"),
        (m, i64::MAX) => format!("at least {m}"),
        (a, b) => format!("{a}..{b}"),
    }
}

impl ModParamValue {
    /// The value as an integer. As in 1.2, an integer parameter takes a number, not a
    /// quoted string (`"30"` is a type mismatch); `module` and `name` label the error:
    /// `usrloc: parameter db_mode needs an integer`.
    pub fn int(&self, module: &str, name: &str) -> Result<i64, String> {
        match self {
            ModParamValue::Int(i) => Ok(*i),
            ModParamValue::Str(_) => Err(format!("{module}: parameter {name} needs an integer")),
        }
    }

    /// The value as a flag: integers (non-zero = true) or yes/no/on/off/true/false.
    pub fn flag(&self, module: &str, name: &str) -> Result<bool, String> {
        match self {
            ModParamValue::Int(i) => Ok(*i != 0),
            ModParamValue::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "on" | "true" | "enable" => Ok(true),
                "no" | "off" | "false" | "disable" => Ok(false),
                t => t
                    .parse::<i64>()
                    .map(|i| i != 0)
                    .map_err(|_| format!("{module}: parameter {name} needs yes/no or a number")),
            },
        }
    }

    /// The value as text (an integer in decimal).
    pub fn text(&self) -> String {
        match self {
            ModParamValue::Int(i) => i.to_string(),
            ModParamValue::Str(s) => s.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static N: IntParam = IntParam::new(5);
    static B: BoolParam = BoolParam::new(false);
    static S: StrParam = StrParam::new("dflt");

    #[test]
    fn typed_rows_check_and_store() {
        let r = Param::int_range("n", &N, 1, 10);
        assert_eq!(N.get(), 5);
        r.set("m", &ModParamValue::Int(7)).unwrap();
        assert_eq!(N.get(), 7);
        let e = r.set("m", &ModParamValue::Int(11)).unwrap_err();
        assert_eq!(e, "m: parameter n out of range: 11 (allowed 1..10)");
        assert_eq!(N.get(), 7, "a rejected value changes nothing");
        let e = r.set("m", &ModParamValue::Str("9".into())).unwrap_err();
        assert_eq!(
            e, "m: parameter n needs an integer",
            "1.2: no quoted numbers"
        );

        let b = Param::bool("b", &B);
        b.set("m", &ModParamValue::Str("yes".into())).unwrap();
        assert!(B.get());
        b.set("m", &ModParamValue::Int(0)).unwrap();
        assert!(!B.get());
        assert!(b.set("m", &ModParamValue::Str("maybe".into())).is_err());

        assert_eq!(S.get(), "dflt");
        assert!(!S.is_set());
        Param::str("s", &S)
            .set("m", &ModParamValue::Str("mysql://x".into()))
            .unwrap();
        assert_eq!(S.get(), "mysql://x");
        assert!(S.is_set());
    }
}

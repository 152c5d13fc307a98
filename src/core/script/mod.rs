//! The script engine: fixup of the parsed configuration into an executable tree,
//! the interpreter, pseudo-variables, AVPs, transformations and core actions.

pub mod actions;
pub mod avp;
pub mod ctx;
pub mod fixup;
pub mod interp;
pub mod pv;
pub mod transform;

pub use avp::{AvpId, AvpList};
pub use ctx::{Branch, Ctx, Q_UNSPECIFIED};
pub use fixup::{Script, fixup};
pub use interp::{route_index, run_route};

/// A format string: literal text and PVs, expanded per message.
pub type PvFormat = Vec<crate::core::cfg::pv::FmtPart>;

/// A pseudo-variable value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PvValue {
    #[default]
    Null,
    Int(i64),
    Str(String),
}

impl PvValue {
    /// The value as text (`Null` gives `<null>`, as OpenSER prints it).
    pub fn to_text(&self) -> String {
        match self {
            PvValue::Null => "<null>".into(),
            PvValue::Int(i) => i.to_string(),
            PvValue::Str(s) => s.clone(),
        }
    }

    /// Append the value as text to `out`.
    pub fn push_to(&self, out: &mut String) {
        match self {
            PvValue::Null => out.push_str("<null>"),
            PvValue::Int(i) => {
                use std::fmt::Write;
                let _ = write!(out, "{i}");
            }
            PvValue::Str(s) => out.push_str(s),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, PvValue::Null)
    }

    /// Integer value: Int as is, Str parsed (leading sign and digits), else None.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            PvValue::Int(i) => Some(*i),
            PvValue::Str(s) => s.trim().parse::<i64>().ok(),
            PvValue::Null => None,
        }
    }
}

//! diversion (OpenSER 1.2 `modules/diversion`): the Diversion header of
//! draft-levy-sip-diversion (RFC 5806), which tells the next hop — a voicemail
//! server, a gateway — why and from which address a call was redirected.
//!
//! `add_diversion(reason)` (REQUEST, FAILURE): insert
//! `Diversion: <original Request-URI>;reason=<reason><suffix>` before the topmost
//! Diversion header of the request, or after the last header when it has none. The URI
//! is the Request-URI as received (before any rewriting), as 1.2 does. Several calls
//! for one message add their headers in call order. Returns 1 (−1 for a reply).
//!
//! Parameter `suffix` (default ""): text appended to every Diversion header, for
//! further parameters (`;counter=1`). 1.2 documented it but never appended it; here it
//! is appended as documented.

use openser_core::module::{CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "diversion",
    params: &[Param::str("suffix", &SUFFIX)],
    cmds: &[CmdExport::new(
        "add_diversion",
        1,
        1,
        REQUEST_ROUTE | FAILURE_ROUTE,
        cmd_add_diversion,
    )],
    ..ModuleExports::EMPTY
};

pub static SUFFIX: StrParam = StrParam::new("");

/// The header line.
pub fn diversion_line(uri: &str, reason: &str, suffix: &str) -> String {
    format!("Diversion: <{uri}>;reason={reason}{suffix}\r\n")
}

fn cmd_add_diversion(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    if !ctx.msg.is_request() {
        return -1;
    }
    let reason = match args.first() {
        Some(a) => ctx.arg_str(a),
        None => String::new(),
    };
    let line = diversion_line(ctx.msg.orig_ruri(), &reason, SUFFIX.get());
    let msg = &mut *ctx.msg;
    match msg.header_indices("Diversion").first() {
        Some(&i) => {
            if !msg.add_header_before(i, &line) {
                openser_core::log_err!("can't insert the Diversion header");
                return -1;
            }
        }
        None => msg.add_header_after_last(&line),
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_line() {
        assert_eq!(
            diversion_line("sip:bob@example.com", "user-busy", ""),
            "Diversion: <sip:bob@example.com>;reason=user-busy\r\n"
        );
        assert_eq!(
            diversion_line("sip:1@h", "no-answer", ";counter=1"),
            "Diversion: <sip:1@h>;reason=no-answer;counter=1\r\n"
        );
    }
}

//! tlsops (OpenSER 1.2 `modules/tlsops`): what the script can ask about the TLS
//! connection a request came on, to decide (e.g. only peers with a verified
//! certificate may relay).
//!
//! `is_peer_verified()` (REQUEST): 1 when the request came over TLS, the peer
//! presented a certificate and it was verified against `tls_ca_list` (with
//! `tls_verify_client=1`); −1 otherwise.
//!
//! Pseudo-variables (`<null>` when the message did not come over TLS, or for a
//! certificate field when the peer sent none):
//! `$tls_version` (`TLSv1.2`/`TLSv1.3`), `$tls_description` (OpenSSL's one-line
//! description of the suite), `$tls_cipher_info` (the suite's OpenSSL name),
//! `$tls_cipher_bits`, `$tls_peer_version` (the X.509 version field: 2 for v3),
//! `$tls_peer_serial` (decimal), `$tls_peer_subject` / `$tls_peer_issuer`
//! (`/C=../O=../CN=..`), `$tls_peer_subject_cn` / `$tls_peer_issuer_cn`,
//! `$tls_peer_verified`, `$tls_peer_revoked` (always 0: no CRLs are loaded, as in 1.2
//! without a CRL), `$tls_peer_expired`, `$tls_peer_selfsigned`, `$tls_peer_notBefore`,
//! `$tls_peer_notAfter`.
//!
//! The session summary comes from tcp main with each message (see
//! `openser_core::transport::tls`). 1.2's `$tls_my_*` (this server's own certificate)
//! and the subjectAltName variables are not provided.

use openser_core::cfg::ast::PvSpec;
use openser_core::module::{CmdExport, FixedArg, ModuleExports, PvExport};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::{Ctx, PvValue};
use openser_core::transport::tls::{self, TlsInfo};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "tlsops",
    cmds: &[CmdExport::new(
        "is_peer_verified",
        0,
        0,
        REQUEST_ROUTE,
        cmd_is_peer_verified,
    )],
    pvs: &[
        PvExport::new("tls_version", pv_version),
        PvExport::new("tls_description", pv_description),
        PvExport::new("tls_cipher_info", pv_cipher),
        PvExport::new("tls_cipher_bits", pv_bits),
        PvExport::new("tls_peer_version", pv_peer_version),
        PvExport::new("tls_peer_serial", pv_peer_serial),
        PvExport::new("tls_peer_subject", pv_peer_subject),
        PvExport::new("tls_peer_issuer", pv_peer_issuer),
        PvExport::new("tls_peer_subject_cn", pv_peer_subject_cn),
        PvExport::new("tls_peer_issuer_cn", pv_peer_issuer_cn),
        PvExport::new("tls_peer_verified", pv_peer_verified),
        PvExport::new("tls_peer_revoked", pv_peer_revoked),
        PvExport::new("tls_peer_expired", pv_peer_expired),
        PvExport::new("tls_peer_selfsigned", pv_peer_selfsigned),
        PvExport::new("tls_peer_notBefore", pv_peer_not_before),
        PvExport::new("tls_peer_notAfter", pv_peer_not_after),
    ],
    ..ModuleExports::EMPTY
};

fn cmd_is_peer_verified(_ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    match tls::current() {
        Some(t) if t.peer_cert && t.peer_verified => 1,
        _ => -1,
    }
}

/// A session field (`<null>` off TLS).
fn session(f: impl Fn(&TlsInfo) -> PvValue) -> PvValue {
    tls::current().map(|t| f(&t)).unwrap_or(PvValue::Null)
}

/// A field of the peer's certificate (`<null>` off TLS or without one).
fn peer(f: impl Fn(&TlsInfo) -> PvValue) -> PvValue {
    match tls::current() {
        Some(t) if t.peer_cert => f(&t),
        _ => PvValue::Null,
    }
}

fn flag(b: bool) -> PvValue {
    PvValue::Int(i64::from(b))
}

fn pv_version(_: &mut Ctx, _: &PvSpec) -> PvValue {
    session(|t| PvValue::Str(t.version.clone()))
}
fn pv_description(_: &mut Ctx, _: &PvSpec) -> PvValue {
    session(|t| PvValue::Str(t.description.clone()))
}
fn pv_cipher(_: &mut Ctx, _: &PvSpec) -> PvValue {
    session(|t| PvValue::Str(t.cipher.clone()))
}
fn pv_bits(_: &mut Ctx, _: &PvSpec) -> PvValue {
    session(|t| PvValue::Int(i64::from(t.bits)))
}
fn pv_peer_version(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Int(i64::from(t.peer_version)))
}
fn pv_peer_serial(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Str(t.peer_serial.clone()))
}
fn pv_peer_subject(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Str(t.peer_subject.clone()))
}
fn pv_peer_issuer(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Str(t.peer_issuer.clone()))
}
fn pv_peer_subject_cn(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Str(t.peer_subject_cn.clone()))
}
fn pv_peer_issuer_cn(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Str(t.peer_issuer_cn.clone()))
}
/// 1 only for a certificate that was verified; 0 on TLS without one.
fn pv_peer_verified(_: &mut Ctx, _: &PvSpec) -> PvValue {
    session(|t| flag(t.peer_cert && t.peer_verified))
}
fn pv_peer_revoked(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|_| flag(false))
}
fn pv_peer_expired(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| flag(t.peer_expired))
}
fn pv_peer_selfsigned(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| flag(t.peer_selfsigned))
}
fn pv_peer_not_before(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Str(t.peer_not_before.clone()))
}
fn pv_peer_not_after(_: &mut Ctx, _: &PvSpec) -> PvValue {
    peer(|t| PvValue::Str(t.peer_not_after.clone()))
}

//! Internal errors and the reply they turn into (OpenSER's `err2reason_phrase`, used by
//! `sl_reply_error()`).

use crate::parser::{ParseError, ParseErrorKind};

/// Internal error classes (OpenSER's `E_*` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SipError {
    /// Unspecified error (E_UNSPEC).
    Unspec,
    /// Out of (pkg or shm) memory (E_OUT_OF_MEM).
    NoMemory,
    /// Bad request-URI or other URI (E_BAD_URI).
    BadUri,
    /// Malformed request (E_BAD_REQ).
    BadReq,
    /// Bad or missing Via (E_BAD_VIA).
    BadVia,
    /// Bad header / message parse error.
    BadHeader,
    /// Transaction tuple incomplete (E_BAD_TUPEL).
    BadTuple,
    /// Max-Forwards reached zero.
    TooManyHops,
    /// Destination could not be resolved (E_BAD_ADDRESS).
    BadAddress,
    /// Send to next hop failed (E_SEND).
    SendFailed,
    /// No destination to forward to (E_NO_DESTINATION).
    NoDestination,
    /// Too many branches (E_TOO_MANY_BRANCHES).
    TooManyBranches,
    /// Invalid q value (E_Q_INV_CHAR, E_Q_EMPTY, E_Q_TOO_BIG, E_Q_DEC_MISSING).
    BadQ,
    /// Bad To header (E_BAD_TO).
    BadTo,
    /// Internal bug (E_BUG).
    Bug,
    /// Administratively prohibited (E_ADM_PROHIBITED).
    AdmProhibited,
    /// Error in upstream server response (E_BAD_SERVER).
    BadServer,
    /// Message too big.
    TooBig,
}

impl SipError {
    /// The (code, reason) `sl_reply_error()` answers with.
    pub fn reply(self) -> (u16, &'static str) {
        match self {
            SipError::NoMemory => (500, "I'm terribly sorry, server error occurred (1/SL)"),
            SipError::BadUri => (400, "Bad Request-URI"),
            SipError::BadReq => (400, "Bad Request"),
            SipError::BadVia => (400, "Bad Via"),
            SipError::BadHeader => (400, "Bad Header"),
            SipError::BadTuple => (400, "Transaction tuple incomplete"),
            SipError::TooManyHops => (483, "Too Many Hops"),
            SipError::BadAddress => (478, "Unresolvable destination"),
            SipError::SendFailed => (477, "Unfortunately error on sending to next hop occurred"),
            SipError::NoDestination => (500, "No destination available"),
            SipError::TooManyBranches => (500, "Forking capacity exceeded"),
            SipError::BadQ => (400, "Invalid q value"),
            SipError::BadTo => (400, "Bad To header"),
            SipError::AdmProhibited => (403, "Administratively prohibited"),
            SipError::BadServer => (500, "Error in upstream server response"),
            SipError::TooBig => (513, "Message Too Large"),
            SipError::Bug | SipError::Unspec => (500, "I'm terribly sorry, server error occurred"),
        }
    }

    /// The error class for a parse failure.
    pub fn from_parse(e: &ParseError) -> SipError {
        match e.kind {
            ParseErrorKind::BadUri => SipError::BadUri,
            ParseErrorKind::BadVia => SipError::BadVia,
            ParseErrorKind::TooBig => SipError::TooBig,
            ParseErrorKind::MissingHeader | ParseErrorKind::DuplicateHeader => SipError::BadReq,
            _ => SipError::BadHeader,
        }
    }
}

impl From<&ParseError> for SipError {
    fn from(e: &ParseError) -> SipError {
        SipError::from_parse(e)
    }
}

//! The stable codes of the protocol: why a join was refused ([`DenialCode`],
//! sent in `denied`) and why a message could not be applied ([`ErrorCode`],
//! sent in `error`).
//!
//! Clients switch on these codes, so each serialises to the exact string
//! docs/protocol.md names. A refusal's sentence for people is written here
//! once, next to its code, so every place that refuses says the same thing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why someone may not join (the `denied` message). After a `denied` the
/// server closes the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialCode {
    /// The first message was not a `join`, or it came too late.
    JoinRequired,
    /// The link's signature, claims or session do not check out.
    TokenInvalid,
    /// The link's time window has closed.
    TokenExpired,
    /// The link's time window has not opened yet (`opens_at` says when).
    NotYetOpen,
    /// The person is not (or no longer) on the session's roster.
    NotOnRoster,
    /// The clinic withdrew this person's links.
    Revoked,
    /// The clinician removed this person for the rest of the session.
    Removed,
    /// The clinician declined this person for now.
    DeniedByClinician,
    SessionCancelled,
    SessionEnded,
    /// Too many failed joins from this address.
    RateLimited,
    /// The session is end-to-end encrypted (`required`) and the client did
    /// not say it can encrypt (`"e2ee": true` in `join`).
    E2eeRequired,
}

impl DenialCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DenialCode::JoinRequired => "join_required",
            DenialCode::TokenInvalid => "token_invalid",
            DenialCode::TokenExpired => "token_expired",
            DenialCode::NotYetOpen => "not_yet_open",
            DenialCode::NotOnRoster => "not_on_roster",
            DenialCode::Revoked => "revoked",
            DenialCode::Removed => "removed",
            DenialCode::DeniedByClinician => "denied_by_clinician",
            DenialCode::SessionCancelled => "session_cancelled",
            DenialCode::SessionEnded => "session_ended",
            DenialCode::RateLimited => "rate_limited",
            DenialCode::E2eeRequired => "e2ee_required",
        }
    }

    /// The sentence shown to the person. `not_yet_open` is told with the
    /// time it opens by whoever has that time; this is its general form.
    pub fn message(self) -> &'static str {
        match self {
            DenialCode::JoinRequired => "The first message must be a join.",
            DenialCode::TokenInvalid => {
                "This link is not valid. Please use the link your clinic sent you."
            }
            DenialCode::TokenExpired => {
                "This link has expired. Please ask your clinic for a new one."
            }
            DenialCode::NotYetOpen => "This session is not open yet.",
            DenialCode::NotOnRoster => {
                "You are not on the list for this session. Please contact your clinic."
            }
            DenialCode::Revoked => "This link has been withdrawn by your clinic.",
            DenialCode::Removed => "You were removed from this session by your clinician.",
            DenialCode::DeniedByClinician => "Your clinician could not let you in right now.",
            DenialCode::SessionCancelled => "This session has been cancelled.",
            DenialCode::SessionEnded => "This session has ended.",
            DenialCode::RateLimited => {
                "Too many failed attempts from your network. Please wait a minute and try again."
            }
            DenialCode::E2eeRequired => {
                "This session is end-to-end encrypted, and this browser cannot encrypt the call. Please join with a current Chrome, Edge, Firefox or Safari."
            }
        }
    }
}

impl fmt::Display for DenialCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message could not be applied (the `error` message). The socket
/// stays open unless the server also closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a protocol message, or one whose fields do not parse (SDP too).
    BadMessage,
    /// A valid message at the wrong moment.
    BadState,
    /// Only the clinician may do this.
    NotAllowed,
    /// The server failed; trying again may work.
    Internal,
    /// The server is restarting; reconnect.
    ServerRestart,
    /// The server cannot record this right now (its attendance ledger
    /// cannot be written), so it was not done; try again in a moment.
    Unavailable,
    /// The connection sent more messages than allowed; it is closed.
    RateLimited,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::BadState => "bad_state",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::Internal => "internal",
            ErrorCode::ServerRestart => "server_restart",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire strings are the contract: serde and `as_str` agree on each.
    #[test]
    fn codes_serialise_to_their_documented_strings() {
        use DenialCode::*;
        for code in [
            JoinRequired,
            TokenInvalid,
            TokenExpired,
            NotYetOpen,
            NotOnRoster,
            Revoked,
            Removed,
            DeniedByClinician,
            SessionCancelled,
            SessionEnded,
            DenialCode::RateLimited,
            E2eeRequired,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
        use ErrorCode::*;
        for code in [
            BadMessage,
            BadState,
            NotAllowed,
            Internal,
            ServerRestart,
            Unavailable,
            ErrorCode::RateLimited,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
        assert_eq!(
            DenialCode::DeniedByClinician.as_str(),
            "denied_by_clinician"
        );
        assert_eq!(ErrorCode::ServerRestart.as_str(), "server_restart");
        assert_eq!(ErrorCode::Unavailable.as_str(), "unavailable");
        assert_eq!(ErrorCode::RateLimited.as_str(), "rate_limited");
    }
}

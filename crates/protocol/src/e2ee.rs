//! End-to-end encryption (issue 19): the room's mode and the bounds of the
//! key material clients exchange through the server.
//!
//! The server never holds a key that opens media: clients publish ECDH
//! public keys (`e2ee_public_key`) and send each other media keys wrapped
//! for one recipient (`e2ee_media_key`). The server only checks that these
//! blobs are small, well-formed base64 and relays them; what they mean is
//! the clients' business (docs/security.md, "End-to-end encryption").

use std::fmt;

use serde::{Deserialize, Serialize};

/// A session's `e2ee` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum E2eeMode {
    /// Media is protected in transit (DTLS-SRTP) only; the server sees it.
    /// Sessions stored before E2EE existed read as this.
    #[default]
    Off,
    /// End-to-end encrypted while every client in the room can do it;
    /// otherwise the whole room falls back to DTLS-SRTP only.
    Preferred,
    /// Only clients that can encrypt end to end may join.
    Required,
}

impl E2eeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            E2eeMode::Off => "off",
            E2eeMode::Preferred => "preferred",
            E2eeMode::Required => "required",
        }
    }

    /// Reads a setting as written in the API and the configuration.
    pub fn parse(text: &str) -> Option<E2eeMode> {
        match text {
            "off" => Some(E2eeMode::Off),
            "preferred" => Some(E2eeMode::Preferred),
            "required" => Some(E2eeMode::Required),
            _ => None,
        }
    }
}

impl fmt::Display for E2eeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What each participant is told of the room's encryption, in `joined` and
/// in `e2ee` whenever it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct E2eeState {
    pub mode: E2eeMode,
    /// Whether media in the room is end-to-end encrypted now: the mode is
    /// not `off` and everyone in the room said they can do it.
    pub active: bool,
}

/// The longest `public_key` (base64 of an uncompressed P-256 point is 88
/// characters; room for larger curves later).
pub const MAX_PUBLIC_KEY: usize = 256;
/// The longest `wrapped` media key (a 16-byte key sealed with AES-GCM and
/// its 12-byte IV is 60 characters of base64).
pub const MAX_WRAPPED_KEY: usize = 512;

/// Whether `value` is 1 to `max` bytes of standard base64 (padding
/// allowed): a sentence naming `field` when it is not.
pub(crate) fn check_base64(field: &str, value: &str, max: usize) -> Result<(), String> {
    let body = value.trim_end_matches('=');
    let ok = !value.is_empty()
        && value.len() <= max
        && value.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if ok {
        Ok(())
    } else {
        Err(format!("{field}: not base64 of at most {max} bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_serialise_to_their_documented_strings() {
        for mode in [E2eeMode::Off, E2eeMode::Preferred, E2eeMode::Required] {
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                serde_json::json!(mode.as_str())
            );
            assert_eq!(E2eeMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(E2eeMode::parse("on"), None);
        assert_eq!(E2eeMode::default(), E2eeMode::Off);
    }

    #[test]
    fn key_material_must_be_short_base64() {
        assert!(check_base64("k", "BAb+/9==", 16).is_ok());
        for bad in ["", "a b", "abc===", "ab\"c", &"A".repeat(17)] {
            assert!(
                check_base64("k", bad, 16).unwrap_err().contains('k'),
                "{bad}"
            );
        }
    }
}

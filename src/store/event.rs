//! The attendance ledger's rows: every change of presence, as the server
//! saw it, with its own clock (docs/compliance.md).
//!
//! They live in the store because the store writes and chains them; the
//! rules that read them are in `attendance`. Kinds, reasons and modalities
//! are enums whose names are the stored strings; the row keeps strings so
//! that a ledger's bytes, and therefore its hashes, never depend on how the
//! code spells them.
//!
//! An event is stored once and never changed. Its hash covers its canonical
//! encoding (the JSON of [`Canonical`], fields in declaration order) and the
//! previous event's hash, so that editing, deleting or reordering any event
//! breaks the chain from that event on.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first event chains to.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Entered the waiting room.
    Waiting,
    /// Let into the room (by a clinician, or automatically).
    Admitted,
    /// Refused (`reason` holds the denial code).
    Denied,
    /// Media connected: presence starts.
    Joined,
    /// Presence ended (`reason` says why).
    Left,
    /// Removed by the clinician.
    Removed,
    /// A second device replaced this connection.
    Replaced,
    /// Video turned on or off (`modality`).
    MediaChanged,
    /// The patient's attestation at join (`detail`: state, at_home, private).
    Attestation,
    /// A clinician's note (`detail`: text, by); numbers never change.
    Annotation,
    /// The room opened or closed.
    SessionOpened,
    SessionClosed,
    /// A household went to a breakout (`detail`: household,
    /// with_clinician, ends_at) or came back (`detail`: household).
    BreakoutStarted,
    BreakoutEnded,
    /// The room's media became end-to-end encrypted (issue 19), or fell
    /// back to DTLS-SRTP only. No detail: never a key.
    E2eeStarted,
    E2eeEnded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Waiting => "waiting",
            EventKind::Admitted => "admitted",
            EventKind::Denied => "denied",
            EventKind::Joined => "joined",
            EventKind::Left => "left",
            EventKind::Removed => "removed",
            EventKind::Replaced => "replaced",
            EventKind::MediaChanged => "media_changed",
            EventKind::Attestation => "attestation",
            EventKind::Annotation => "annotation",
            EventKind::SessionOpened => "session_opened",
            EventKind::SessionClosed => "session_closed",
            EventKind::BreakoutStarted => "breakout_started",
            EventKind::BreakoutEnded => "breakout_ended",
            EventKind::E2eeStarted => "e2ee_started",
            EventKind::E2eeEnded => "e2ee_ended",
        }
    }
}

/// Why presence ended, or why the session closed: the `reason` of a
/// `left`, `removed`, `replaced` or `session_closed` event. (A `denied`
/// event's reason is its [`tandem_protocol::DenialCode`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reason {
    /// They left, or closed the page.
    Left,
    /// Their connection was lost; presence ended at its last sign of life.
    Network,
    /// The clinician removed them.
    Removed,
    /// A second device took their place.
    Replaced,
    /// The session reached its end (scheduled end plus overrun grace).
    SessionEnd,
    /// The clinician was away past the grace period: back to waiting.
    ClinicianAway,
    /// The server stopped or crashed; presence ended at the stop or the
    /// last heartbeat.
    ServerRestart,
    /// The clinic revoked their links.
    Revoked,
    /// The clinician ended the session.
    EndedByClinician,
    /// The clinic cancelled the session while it ran.
    SessionCancelled,
}

impl Reason {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Reason::Left => "left",
            Reason::Network => "network",
            Reason::Removed => "removed",
            Reason::Replaced => "replaced",
            Reason::SessionEnd => "session_end",
            Reason::ClinicianAway => "clinician_away",
            Reason::ServerRestart => "server_restart",
            Reason::Revoked => "revoked",
            Reason::EndedByClinician => "ended_by_clinician",
            Reason::SessionCancelled => "session_cancelled",
        }
    }
}

/// The stored strings of [`Reason`], for code that reads raw events.
pub mod reason {
    use super::Reason;

    pub const LEFT: &str = Reason::Left.as_str();
    pub const NETWORK: &str = Reason::Network.as_str();
    pub(crate) const REMOVED: &str = Reason::Removed.as_str();
    pub(crate) const REPLACED: &str = Reason::Replaced.as_str();
    pub(crate) const SESSION_END: &str = Reason::SessionEnd.as_str();
    pub(crate) const SERVER_RESTART: &str = Reason::ServerRestart.as_str();
}

/// Whether video was on: the `modality` of `joined` and `media_changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    AudioVideo,
    AudioOnly,
}

impl Modality {
    pub(crate) const fn with_video(video: bool) -> Modality {
        if video {
            Modality::AudioVideo
        } else {
            Modality::AudioOnly
        }
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Modality::AudioVideo => "audio_video",
            Modality::AudioOnly => "audio_only",
        }
    }

    /// The modality a stored string names; anything else is none.
    pub(crate) fn parse(stored: &str) -> Option<Modality> {
        [Modality::AudioVideo, Modality::AudioOnly]
            .into_iter()
            .find(|m| m.as_str() == stored)
    }
}

/// The stored strings of [`Modality`].
pub mod modality {
    use super::Modality;

    pub const AUDIO_VIDEO: &str = Modality::AudioVideo.as_str();
    pub const AUDIO_ONLY: &str = Modality::AudioOnly.as_str();
}

/// An event before it is stored: what the room and connections report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Milliseconds since the Unix epoch, UTC, server clock.
    pub at: i64,
    pub session: String,
    pub participant: Option<String>,
    pub role: Option<String>,
    /// Unique across restarts (boot id + connection number).
    pub connection: Option<String>,
    pub kind: EventKind,
    pub reason: Option<String>,
    pub modality: Option<String>,
    /// Free-form JSON object (attestation, annotation, denial message...).
    pub detail: Option<serde_json::Value>,
}

/// Typed readings of a stored row, for the rules that read the ledger.
/// The row itself keeps what was written, whatever a version calls it.
impl NewEvent {
    /// The `modality` column, when it names one.
    pub(crate) fn media_modality(&self) -> Option<Modality> {
        self.modality.as_deref().and_then(Modality::parse)
    }

    /// A text field of the `detail` object (an attestation's `state`, an
    /// annotation's `text` and `by`).
    pub(crate) fn detail_text(&self, field: &str) -> Option<&str> {
        self.detail.as_ref()?.get(field)?.as_str()
    }

    /// A yes/no field of the `detail` object (an attestation's `at_home`).
    pub(crate) fn detail_flag(&self, field: &str) -> Option<bool> {
        self.detail.as_ref()?.get(field)?.as_bool()
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// The exact bytes that are hashed: version, sequence number, every field.
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    seq: i64,
    at: i64,
    session: &'a str,
    participant: Option<&'a str>,
    role: Option<&'a str>,
    connection: Option<&'a str>,
    kind: &'static str,
    reason: Option<&'a str>,
    modality: Option<&'a str>,
    detail: Option<&'a serde_json::Value>,
}

/// SHA-256 (hex) of `prev_hash` followed by the canonical encoding of event
/// number `seq`.
pub fn chain_hash(prev_hash: &str, seq: i64, e: &NewEvent) -> String {
    let canonical = Canonical {
        v: 1,
        seq,
        at: e.at,
        session: &e.session,
        participant: e.participant.as_deref(),
        role: e.role.as_deref(),
        connection: e.connection.as_deref(),
        kind: e.kind.as_str(),
        reason: e.reason.as_deref(),
        modality: e.modality.as_deref(),
        detail: e.detail.as_ref(),
    };
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(serde_json::to_vec(&canonical).expect("canonical events serialise"));
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: i64) -> NewEvent {
        NewEvent {
            at,
            session: "s".into(),
            participant: Some("p".into()),
            role: Some("patient".into()),
            connection: Some("b-1".into()),
            kind: EventKind::Joined,
            reason: None,
            modality: Some(modality::AUDIO_VIDEO.into()),
            detail: None,
        }
    }

    #[test]
    fn every_field_and_the_chain_change_the_hash() {
        let base = chain_hash(GENESIS, 1, &event(1000));
        assert_eq!(base.len(), 64);
        assert_eq!(base, chain_hash(GENESIS, 1, &event(1000)));
        assert_ne!(base, chain_hash(GENESIS, 1, &event(1001)));
        assert_ne!(base, chain_hash(GENESIS, 2, &event(1000)));
        assert_ne!(base, chain_hash(&base, 1, &event(1000)));
        let mut other = event(1000);
        other.reason = Some("network".into());
        assert_ne!(base, chain_hash(GENESIS, 1, &other));
    }
}

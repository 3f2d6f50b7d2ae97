//! The signaling protocol (v1): every message a client and the server
//! exchange over `wss://HOST/v1/signal`, one JSON object per text frame.
//!
//! This file is the protocol's single definition in code. Names and fields
//! are a public contract (docs/protocol.md): add, never rename.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::code::{DenialCode, ErrorCode};
use crate::e2ee::{check_base64, E2eeMode, E2eeState, MAX_PUBLIC_KEY, MAX_WRAPPED_KEY};
use crate::RosterRole;

/// Which of a participant's two peer connections a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pc {
    /// Client offers, server answers: the participant's own audio and video.
    Pub,
    /// Server offers, client answers: everyone else's media.
    Sub,
}

/// An ICE candidate in the shape of `RTCIceCandidate.toJSON()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// Where the patient says they are, sent with `join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub state: String,
    pub at_home: bool,
    pub private: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// Everything a client may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Join {
        token: String,
        #[serde(default)]
        attestation: Option<Attestation>,
        /// The client can encrypt media end to end (issue 19). A client
        /// that does not say so is refused in `required` rooms and makes
        /// a `preferred` room fall back to DTLS-SRTP only.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        e2ee: bool,
    },
    /// The sender's ECDH (P-256) public key for this connection, base64 of
    /// the raw uncompressed point. Relayed to everyone in the room.
    E2eePublicKey {
        public_key: String,
    },
    /// The sender's media key, wrapped for `to` alone. Relayed to `to`
    /// only, never stored.
    E2eeMediaKey {
        to: String,
        key_id: u32,
        wrapped: String,
    },
    Offer {
        pc: Pc,
        sdp: String,
    },
    Answer {
        pc: Pc,
        sdp: String,
    },
    Candidate {
        pc: Pc,
        candidate: Option<IceCandidate>,
    },
    Media {
        audio: bool,
        video: bool,
    },
    Leave,
    Ping,
    Admit {
        participant: String,
    },
    Deny {
        participant: String,
    },
    AdmitAll,
    Remove {
        participant: String,
    },
    Mute {
        participant: String,
        kind: MediaKind,
        /// May the participant unmute themselves? (Tandem's extension;
        /// default true.) When false, only `allow_unmute` lifts the mute.
        #[serde(default = "yes")]
        allow_unmute: bool,
    },
    /// Lets a participant muted with `allow_unmute: false` unmute again.
    AllowUnmute {
        participant: String,
        kind: MediaKind,
    },
    End,
    /// Group sessions: moves one household into a private breakout, with
    /// the clinician or on their own.
    Breakout {
        household: String,
        #[serde(default)]
        with_clinician: bool,
        /// Its length: the couple returns by itself after this many
        /// minutes (1 to [`MAX_BREAKOUT_MINUTES`]), warned a minute before.
        /// Without it the breakout lasts until the clinician ends it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u32>,
    },
    /// Brings a household back from its breakout.
    EndBreakout {
        household: String,
    },
    /// "Bring everyone back": ends every breakout at once.
    EndAllBreakouts,
    /// "Message to breakouts": shows `text` to everyone in a breakout.
    BreakoutMessage {
        text: String,
    },
    /// "Raise hand": the sender wants to speak.
    RaiseHand,
    /// "Lower hand": the sender's own hand, or (clinician only) the hand of
    /// `participant`.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant: Option<String>,
    },
    /// Clinician only: shows one person large to everyone ("Spotlight");
    /// `null` ends it.
    Spotlight {
        participant: Option<String>,
    },
    /// Which simulcast layer the sender wants of each person's video, from
    /// the size of its tile: `high` for a large tile (pinned, spotlighted,
    /// the active speaker), `low` for a small one. People not named keep
    /// the server's choice. Replaces the previous preference.
    LayerPreference {
        layers: std::collections::BTreeMap<String, Layer>,
    },
}

impl ClientMessage {
    /// The message's `type` on the wire (for metrics: a fixed set, never
    /// the content).
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Media { .. } => "media",
            ClientMessage::Leave => "leave",
            ClientMessage::Ping => "ping",
            ClientMessage::Admit { .. } => "admit",
            ClientMessage::Deny { .. } => "deny",
            ClientMessage::AdmitAll => "admit_all",
            ClientMessage::Remove { .. } => "remove",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::AllowUnmute { .. } => "allow_unmute",
            ClientMessage::End => "end",
            ClientMessage::Breakout { .. } => "breakout",
            ClientMessage::EndBreakout { .. } => "end_breakout",
            ClientMessage::EndAllBreakouts => "end_all_breakouts",
            ClientMessage::BreakoutMessage { .. } => "breakout_message",
            ClientMessage::RaiseHand => "raise_hand",
            ClientMessage::LowerHand { .. } => "lower_hand",
            ClientMessage::Spotlight { .. } => "spotlight",
            ClientMessage::LayerPreference { .. } => "layer_preference",
            ClientMessage::E2eePublicKey { .. } => "e2ee_public_key",
            ClientMessage::E2eeMediaKey { .. } => "e2ee_media_key",
        }
    }
}

/// A simulcast layer a subscriber asks for (`layer_preference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Low,
    High,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct You {
    pub id: String,
    pub name: String,
    pub role: RosterRole,
    /// The participant's own household (a couple), if the roster gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Someone in the room, as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub name: String,
    pub role: RosterRole,
    pub audio: bool,
    pub video: bool,
    /// Their household: only in what clinicians receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<String>,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingPerson {
    pub id: String,
    pub name: String,
    pub role: RosterRole,
    pub since: DateTime<Utc>,
    /// Their household (`lobby` goes to clinicians only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<String>,
}

/// Someone whose hand is up, in the order hands were raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedHand {
    pub id: String,
    pub since: DateTime<Utc>,
}

/// Everything the server may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Waiting {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<WaitingReason>,
    },
    Joined {
        you: You,
        session: SessionInfo,
        participants: Vec<Participant>,
        ice_servers: Vec<IceServer>,
        /// The room's end-to-end encryption (issue 19).
        #[serde(default)]
        e2ee: E2eeState,
    },
    Denied {
        code: DenialCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opens_at: Option<DateTime<Utc>>,
    },
    Offer {
        pc: Pc,
        sdp: String,
    },
    Answer {
        pc: Pc,
        sdp: String,
    },
    Candidate {
        pc: Pc,
        candidate: Option<IceCandidate>,
    },
    ParticipantJoined {
        participant: Participant,
    },
    ParticipantLeft {
        participant: Participant,
    },
    Media {
        participant: String,
        audio: bool,
        video: bool,
    },
    Lobby {
        waiting: Vec<WaitingPerson>,
    },
    Muted {
        kind: MediaKind,
        /// Whether the participant may unmute themselves.
        allow_unmute: bool,
    },
    /// The clinician allows the participant to unmute `kind` again.
    UnmuteAllowed {
        kind: MediaKind,
    },
    /// A household's breakout started (`active`) or ended; sent to everyone
    /// in the room so that clients can show it.
    Breakout {
        household: String,
        active: bool,
        with_clinician: bool,
        /// When a timed breakout returns by itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at: Option<DateTime<Utc>>,
    },
    /// One minute before a timed breakout ends: to its members and to
    /// clinicians.
    BreakoutEnding {
        household: String,
        seconds_left: u64,
    },
    /// The clinician's "Message to breakouts", to everyone in a breakout
    /// (and the clinicians, as a receipt).
    BreakoutMessage {
        text: String,
        from: String,
    },
    /// Whether someone in a breakout the clinician is not in is speaking
    /// (from the audio level their packets carry); clinicians only.
    Speaking {
        participant: String,
        speaking: bool,
    },
    /// The raised hands, oldest first, to everyone in the room each time
    /// they change.
    Hands {
        raised: Vec<RaisedHand>,
    },
    /// The person everyone sees large (`null`: nobody).
    Spotlight {
        participant: Option<String>,
    },
    SessionEnding {
        seconds_left: u64,
    },
    /// The room's end-to-end encryption changed (someone who cannot do it
    /// entered a `preferred` room, or the last such person left).
    E2ee {
        mode: E2eeMode,
        active: bool,
    },
    /// Someone's ECDH public key for their current connection.
    E2eePublicKey {
        participant: String,
        public_key: String,
    },
    /// A media key `from` wrapped for this recipient alone.
    E2eeMediaKey {
        from: String,
        key_id: u32,
        wrapped: String,
    },
    Removed,
    Replaced,
    Ended,
    /// The session's room is on another node of the cluster (issue 17):
    /// open a socket at `url` and send the same `join` there. The server
    /// closes this socket after it. Sent in answer to `join` (before any
    /// `waiting` or `joined`), or to someone in the room whose room is
    /// handed over (a draining node).
    Redirect {
        /// The owner's signaling socket, `wss://NODE/v1/signal`, from its
        /// `node.public_url`.
        url: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong,
}

/// Why someone who was in the room is waiting again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitingReason {
    /// The clinician has been gone longer than the grace period.
    ClinicianAway,
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }

    /// What every client is told when the server stops: come back soon.
    pub fn server_restart() -> ServerMessage {
        ServerMessage::error(
            ErrorCode::ServerRestart,
            "The server is restarting. Please reconnect in a moment.",
        )
    }

    /// A refusal with its code's own sentence.
    pub fn denied(code: DenialCode) -> ServerMessage {
        ServerMessage::Denied {
            code,
            message: code.message().into(),
            opens_at: None,
        }
    }

    /// The refusal of a link whose window opens at `opens_at`.
    pub fn not_yet_open(opens_at: DateTime<Utc>) -> ServerMessage {
        ServerMessage::Denied {
            code: DenialCode::NotYetOpen,
            message: format!(
                "This session is not open yet. You can join from {}.",
                opens_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            opens_at: Some(opens_at),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages serialise")
    }
}

/// Parses one client frame; the error is a sentence for a `bad_message`.
/// The longest invite token accepted in `join` (a link's token is about
/// 400 bytes).
pub const MAX_TOKEN: usize = 4096;
/// The longest SDP accepted in `offer` and `answer`: a `sub` answer in the
/// largest group room (50 people, two m-lines each) is well under it.
pub const MAX_SDP: usize = 128 * 1024;
/// The longest `candidate` line (RFC 8839 lines are about 100 bytes).
pub const MAX_CANDIDATE: usize = 1024;
/// The longest `sdpMid` and `usernameFragment` (RFC 8839: a ufrag is at
/// most 256 characters).
pub const MAX_ICE_FIELD: usize = 256;
/// Participant ids are the clinic's ids (docs/api.md): 1 to 64 letters,
/// digits, `-`, `_`, `.` or `:`. Household ids: 1 to 64 characters.
pub const MAX_ID: usize = 64;
/// `attestation.state`'s value for someone outside the United States (the
/// browser client offers it beside the two-letter codes).
pub const OUTSIDE_US: &str = "OUTSIDE_US";
/// The longest breakout a clinician may set, in minutes (a session's
/// length is about this).
pub const MAX_BREAKOUT_MINUTES: u32 = 180;
/// The longest "Message to breakouts", in characters.
pub const MAX_BREAKOUT_MESSAGE: usize = 500;
/// The most people one `layer_preference` names (a group room's size
/// with room to spare).
pub const MAX_LAYER_PREFERENCES: usize = 64;

impl ClientMessage {
    /// Whether every string is within what the protocol needs: a sentence
    /// naming the first field that is not.
    pub fn check(&self) -> Result<(), String> {
        let at_most = |field: &str, value: &str, max: usize| {
            if value.len() > max {
                Err(format!("{field}: longer than {max} bytes"))
            } else {
                Ok(())
            }
        };
        let id = |field: &str, value: &str| {
            let ok = (1..=MAX_ID).contains(&value.len())
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{field}: not a participant id (1 to {MAX_ID} letters, digits, '-', '_', '.' or ':')"
                ))
            }
        };
        let household = |value: &str| {
            if (1..=MAX_ID).contains(&value.chars().count()) && !value.chars().any(char::is_control)
            {
                Ok(())
            } else {
                Err(format!(
                    "household: not a household id (1 to {MAX_ID} characters)"
                ))
            }
        };
        match self {
            ClientMessage::E2eePublicKey { public_key } => {
                check_base64("public_key", public_key, MAX_PUBLIC_KEY)
            }
            ClientMessage::E2eeMediaKey { to, wrapped, .. } => {
                id("to", to)?;
                check_base64("wrapped", wrapped, MAX_WRAPPED_KEY)
            }
            ClientMessage::Join {
                token, attestation, ..
            } => {
                at_most("token", token, MAX_TOKEN)?;
                if let Some(a) = attestation {
                    let two_letters =
                        a.state.len() == 2 && a.state.bytes().all(|b| b.is_ascii_uppercase());
                    if !two_letters && a.state != OUTSIDE_US {
                        return Err(format!(
                            "attestation.state: not a US state's two-letter code (like \"NY\") or {OUTSIDE_US:?}"
                        ));
                    }
                }
                Ok(())
            }
            ClientMessage::Offer { sdp, .. } | ClientMessage::Answer { sdp, .. } => {
                at_most("sdp", sdp, MAX_SDP)
            }
            ClientMessage::Candidate {
                candidate: Some(c), ..
            } => {
                at_most("candidate.candidate", &c.candidate, MAX_CANDIDATE)?;
                at_most(
                    "candidate.sdpMid",
                    c.sdp_mid.as_deref().unwrap_or(""),
                    MAX_ICE_FIELD,
                )?;
                at_most(
                    "candidate.usernameFragment",
                    c.username_fragment.as_deref().unwrap_or(""),
                    MAX_ICE_FIELD,
                )
            }
            ClientMessage::Admit { participant }
            | ClientMessage::Deny { participant }
            | ClientMessage::Remove { participant }
            | ClientMessage::Mute { participant, .. }
            | ClientMessage::AllowUnmute { participant, .. } => id("participant", participant),
            ClientMessage::Breakout {
                household: h,
                minutes,
                ..
            } => {
                household(h)?;
                match minutes {
                    Some(m) if !(1..=MAX_BREAKOUT_MINUTES).contains(m) => {
                        Err(format!("minutes: from 1 to {MAX_BREAKOUT_MINUTES}"))
                    }
                    _ => Ok(()),
                }
            }
            ClientMessage::EndBreakout { household: h } => household(h),
            ClientMessage::BreakoutMessage { text } => {
                let length = text.trim().chars().count();
                if length == 0 || length > MAX_BREAKOUT_MESSAGE {
                    Err(format!("text: from 1 to {MAX_BREAKOUT_MESSAGE} characters"))
                } else {
                    Ok(())
                }
            }
            ClientMessage::LowerHand {
                participant: Some(p),
            }
            | ClientMessage::Spotlight {
                participant: Some(p),
            } => id("participant", p),
            ClientMessage::LayerPreference { layers } => {
                if layers.len() > MAX_LAYER_PREFERENCES {
                    return Err(format!("layers: at most {MAX_LAYER_PREFERENCES} people"));
                }
                layers.keys().try_for_each(|p| id("layers", p))
            }
            ClientMessage::LowerHand { participant: None }
            | ClientMessage::Spotlight { participant: None }
            | ClientMessage::EndAllBreakouts
            | ClientMessage::RaiseHand => Ok(()),
            ClientMessage::Candidate {
                candidate: None, ..
            }
            | ClientMessage::Media { .. }
            | ClientMessage::Leave
            | ClientMessage::Ping
            | ClientMessage::AdmitAll
            | ClientMessage::End => Ok(()),
        }
    }
}

/// Reads one client frame: a protocol message whose strings are within
/// [`ClientMessage::check`]'s limits, or a sentence saying what is wrong.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    let message = parse_unchecked(text)?;
    message.check().map_err(|problem| {
        let kind = serde_json::to_value(&message)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_default();
        format!("cannot accept the {kind:?} message: {problem}")
    })?;
    Ok(message)
}

fn parse_unchecked(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|e| {
        let known = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
        match known {
            Some(kind) => format!("cannot read the {kind:?} message: {e}"),
            None => format!("not a protocol message: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_parse_as_documented() {
        let cases = [
            (
                json!({"type": "join", "token": "t"}),
                ClientMessage::Join {
                    token: "t".into(),
                    attestation: None,
                    e2ee: false,
                },
            ),
            (
                json!({"type": "join", "token": "t", "e2ee": true}),
                ClientMessage::Join {
                    token: "t".into(),
                    attestation: None,
                    e2ee: true,
                },
            ),
            (
                json!({"type": "e2ee_public_key", "public_key": "BAbc"}),
                ClientMessage::E2eePublicKey {
                    public_key: "BAbc".into(),
                },
            ),
            (
                json!({"type": "e2ee_media_key", "to": "p1", "key_id": 3, "wrapped": "q83v"}),
                ClientMessage::E2eeMediaKey {
                    to: "p1".into(),
                    key_id: 3,
                    wrapped: "q83v".into(),
                },
            ),
            (
                json!({"type": "join", "token": "t", "attestation": {"state": "NY", "at_home": true, "private": true}}),
                ClientMessage::Join {
                    token: "t".into(),
                    attestation: Some(Attestation {
                        state: "NY".into(),
                        at_home: true,
                        private: true,
                    }),
                    e2ee: false,
                },
            ),
            (
                json!({"type": "offer", "pc": "pub", "sdp": "v=0"}),
                ClientMessage::Offer {
                    pc: Pc::Pub,
                    sdp: "v=0".into(),
                },
            ),
            (
                json!({"type": "answer", "pc": "sub", "sdp": "v=0"}),
                ClientMessage::Answer {
                    pc: Pc::Sub,
                    sdp: "v=0".into(),
                },
            ),
            (
                json!({"type": "candidate", "pc": "pub", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}),
                ClientMessage::Candidate {
                    pc: Pc::Pub,
                    candidate: Some(IceCandidate {
                        candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                        sdp_mid: Some("0".into()),
                        sdp_mline_index: Some(0),
                        username_fragment: None,
                    }),
                },
            ),
            (
                json!({"type": "candidate", "pc": "sub", "candidate": null}),
                ClientMessage::Candidate {
                    pc: Pc::Sub,
                    candidate: None,
                },
            ),
            (
                json!({"type": "media", "audio": false, "video": true}),
                ClientMessage::Media {
                    audio: false,
                    video: true,
                },
            ),
            (json!({"type": "leave"}), ClientMessage::Leave),
            (json!({"type": "ping"}), ClientMessage::Ping),
            (
                json!({"type": "admit", "participant": "p"}),
                ClientMessage::Admit {
                    participant: "p".into(),
                },
            ),
            (json!({"type": "admit_all"}), ClientMessage::AdmitAll),
            (
                json!({"type": "mute", "participant": "p", "kind": "audio"}),
                ClientMessage::Mute {
                    participant: "p".into(),
                    kind: MediaKind::Audio,
                    allow_unmute: true,
                },
            ),
            (
                json!({"type": "mute", "participant": "p", "kind": "video", "allow_unmute": false}),
                ClientMessage::Mute {
                    participant: "p".into(),
                    kind: MediaKind::Video,
                    allow_unmute: false,
                },
            ),
            (
                json!({"type": "breakout", "household": "h1", "with_clinician": true}),
                ClientMessage::Breakout {
                    household: "h1".into(),
                    with_clinician: true,
                    minutes: None,
                },
            ),
            (
                json!({"type": "breakout", "household": "h1", "minutes": 10}),
                ClientMessage::Breakout {
                    household: "h1".into(),
                    with_clinician: false,
                    minutes: Some(10),
                },
            ),
            (
                json!({"type": "end_all_breakouts"}),
                ClientMessage::EndAllBreakouts,
            ),
            (
                json!({"type": "breakout_message", "text": "Two minutes left"}),
                ClientMessage::BreakoutMessage {
                    text: "Two minutes left".into(),
                },
            ),
            (json!({"type": "raise_hand"}), ClientMessage::RaiseHand),
            (
                json!({"type": "lower_hand"}),
                ClientMessage::LowerHand { participant: None },
            ),
            (
                json!({"type": "lower_hand", "participant": "p1"}),
                ClientMessage::LowerHand {
                    participant: Some("p1".into()),
                },
            ),
            (
                json!({"type": "spotlight", "participant": null}),
                ClientMessage::Spotlight { participant: None },
            ),
            (
                json!({"type": "layer_preference", "layers": {"p1": "high", "p2": "low"}}),
                ClientMessage::LayerPreference {
                    layers: [("p1".into(), Layer::High), ("p2".into(), Layer::Low)]
                        .into_iter()
                        .collect(),
                },
            ),
            (
                json!({"type": "end_breakout", "household": "h1"}),
                ClientMessage::EndBreakout {
                    household: "h1".into(),
                },
            ),
            (json!({"type": "end"}), ClientMessage::End),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(&text.to_string()).unwrap(), expected, "{text}");
            assert_eq!(Some(expected.type_name()), text["type"].as_str());
        }
    }

    #[test]
    fn bad_frames_are_explained() {
        for text in [
            "not json",
            "{}",
            r#"{"type": "dance"}"#,
            r#"{"type": "offer", "pc": "both", "sdp": ""}"#,
            r#"{"type": "join"}"#,
            r#"{"type": "media", "audio": "yes", "video": true}"#,
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        assert!(parse(r#"{"type": "join"}"#)
            .unwrap_err()
            .contains("\"join\""));
    }

    #[test]
    fn strings_are_limited_to_what_the_protocol_needs() {
        let attest = |state: &str| {
            json!({"type": "join", "token": "t", "attestation": {"state": state, "at_home": true, "private": true}})
                .to_string()
        };
        for state in ["NY", "DC", "PR", OUTSIDE_US] {
            assert!(parse(&attest(state)).is_ok(), "{state}");
        }
        for state in [
            "",
            "N",
            "ny",
            "New York",
            "NYC",
            "N1",
            "ÉÉ",
            &"A".repeat(10_000),
        ] {
            let problem = parse(&attest(state)).unwrap_err();
            assert!(
                problem.contains("attestation.state"),
                "{state:?}: {problem}"
            );
        }
        let long = |n: usize| "a".repeat(n);
        let cases = [
            (
                json!({"type": "join", "token": long(MAX_TOKEN + 1)}),
                "token",
            ),
            (
                json!({"type": "offer", "pc": "pub", "sdp": long(MAX_SDP + 1)}),
                "sdp",
            ),
            (
                json!({"type": "answer", "pc": "sub", "sdp": long(MAX_SDP + 1)}),
                "sdp",
            ),
            (
                json!({"type": "candidate", "pc": "pub", "candidate": {"candidate": long(MAX_CANDIDATE + 1)}}),
                "candidate.candidate",
            ),
            (
                json!({"type": "candidate", "pc": "pub", "candidate": {"candidate": "c", "sdpMid": long(257)}}),
                "candidate.sdpMid",
            ),
            (
                json!({"type": "admit", "participant": long(MAX_ID + 1)}),
                "participant",
            ),
            (json!({"type": "deny", "participant": ""}), "participant"),
            (
                json!({"type": "remove", "participant": "pat 1"}),
                "participant",
            ),
            (
                json!({"type": "mute", "participant": "x<y", "kind": "audio"}),
                "participant",
            ),
            (
                json!({"type": "allow_unmute", "participant": long(65), "kind": "audio"}),
                "participant",
            ),
            (
                json!({"type": "breakout", "household": long(MAX_ID + 1)}),
                "household",
            ),
            (
                json!({"type": "end_breakout", "household": ""}),
                "household",
            ),
            (
                json!({"type": "breakout", "household": "h", "minutes": 0}),
                "minutes",
            ),
            (
                json!({"type": "breakout", "household": "h", "minutes": MAX_BREAKOUT_MINUTES + 1}),
                "minutes",
            ),
            (json!({"type": "breakout_message", "text": "  "}), "text"),
            (
                json!({"type": "breakout_message", "text": long(MAX_BREAKOUT_MESSAGE + 1)}),
                "text",
            ),
            (
                json!({"type": "lower_hand", "participant": "a b"}),
                "participant",
            ),
            (
                json!({"type": "spotlight", "participant": ""}),
                "participant",
            ),
            (
                json!({"type": "layer_preference", "layers": {"a b": "high"}}),
                "layers",
            ),
            (
                json!({"type": "e2ee_public_key", "public_key": long(MAX_PUBLIC_KEY + 1)}),
                "public_key",
            ),
            (
                json!({"type": "e2ee_public_key", "public_key": "not base64!"}),
                "public_key",
            ),
            (
                json!({"type": "e2ee_media_key", "to": "a b", "key_id": 1, "wrapped": "AA=="}),
                "to",
            ),
            (
                json!({"type": "e2ee_media_key", "to": "p", "key_id": 1, "wrapped": long(MAX_WRAPPED_KEY + 1)}),
                "wrapped",
            ),
        ];
        for (message, field) in cases {
            let problem = parse(&message.to_string()).unwrap_err();
            assert!(problem.contains(field), "{field}: {problem}");
        }
        for ok in [
            json!({"type": "join", "token": long(MAX_TOKEN)}),
            json!({"type": "offer", "pc": "pub", "sdp": long(MAX_SDP)}),
            json!({"type": "admit", "participant": "clin-7.a:b_c"}),
            json!({"type": "breakout", "household": "Morgan household"}),
            json!({"type": "breakout", "household": "h", "minutes": MAX_BREAKOUT_MINUTES}),
        ] {
            assert!(parse(&ok.to_string()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn server_messages_serialise_as_documented() {
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerMessage::Redirect {
                url: "wss://node-2.clinic.example/v1/signal".into()
            }
            .to_json(),
            r#"{"type":"redirect","url":"wss://node-2.clinic.example/v1/signal"}"#
        );
        assert_eq!(
            ServerMessage::Waiting { reason: None }.to_json(),
            r#"{"type":"waiting"}"#
        );
        assert_eq!(
            ServerMessage::Denied {
                code: DenialCode::TokenInvalid,
                message: "m".into(),
                opens_at: None
            }
            .to_json(),
            r#"{"type":"denied","code":"token_invalid","message":"m"}"#
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::SessionEnding { seconds_left: 60 }).unwrap(),
            json!({"type": "session_ending", "seconds_left": 60})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::ParticipantLeft {
                participant: Participant {
                    id: "p".into(),
                    name: "N".into(),
                    role: RosterRole::Patient,
                    audio: true,
                    video: false,
                    household: None,
                }
            })
            .unwrap(),
            json!({"type": "participant_left", "participant": {"id": "p", "name": "N", "role": "patient", "audio": true, "video": false}})
        );
    }
}

//! Webhook events: the types a receiver can subscribe to, and the
//! payloads of the facts the store records.
//!
//! They live in the store because the store writes them, in the same
//! transaction as the fact each reports (`webhooks`); delivering them is
//! the `webhooks` module's.
//!
//! A payload carries ids, roles and times, never names, titles or
//! attestations: it leaves the clinic's server for another system, and
//! what identifies a person stays in Tandem. The body follows the
//! Standard Webhooks shape: `{"id", "type", "timestamp", "data"}`.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::event::{Event, EventKind};
use super::session::Session;

/// What happened. The names are the public `type` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum EventType {
    #[serde(rename = "session.scheduled")]
    SessionScheduled,
    #[serde(rename = "session.updated")]
    SessionUpdated,
    #[serde(rename = "session.cancelled")]
    SessionCancelled,
    #[serde(rename = "session.ended")]
    SessionEnded,
    #[serde(rename = "participant.waiting")]
    ParticipantWaiting,
    #[serde(rename = "participant.admitted")]
    ParticipantAdmitted,
    #[serde(rename = "participant.left")]
    ParticipantLeft,
    #[serde(rename = "attendance.finalized")]
    AttendanceFinalized,
    #[serde(rename = "ledger.verify_failed")]
    LedgerVerifyFailed,
}

impl EventType {
    pub(crate) const ALL: [EventType; 9] = [
        EventType::SessionScheduled,
        EventType::SessionUpdated,
        EventType::SessionCancelled,
        EventType::SessionEnded,
        EventType::ParticipantWaiting,
        EventType::ParticipantAdmitted,
        EventType::ParticipantLeft,
        EventType::AttendanceFinalized,
        EventType::LedgerVerifyFailed,
    ];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            EventType::SessionScheduled => "session.scheduled",
            EventType::SessionUpdated => "session.updated",
            EventType::SessionCancelled => "session.cancelled",
            EventType::SessionEnded => "session.ended",
            EventType::ParticipantWaiting => "participant.waiting",
            EventType::ParticipantAdmitted => "participant.admitted",
            EventType::ParticipantLeft => "participant.left",
            EventType::AttendanceFinalized => "attendance.finalized",
            EventType::LedgerVerifyFailed => "ledger.verify_failed",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// An event for the outbox: its id is given when it is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outgoing {
    pub kind: EventType,
    /// The session it is about (delivery order is kept per session).
    pub session: Option<String>,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The `data` object; `None` for `attendance.finalized`, whose figures
    /// are read from the ledger when it is first delivered.
    pub data: Option<Value>,
}

pub(crate) fn time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The full body of event `id`.
pub(crate) fn body(id: &str, kind: EventType, at: i64, data: &Value) -> Value {
    json!({ "id": id, "type": kind.as_str(), "timestamp": time(at), "data": data })
}

/// The events a ledger event reports, if any: knocks, admissions,
/// departures, the room's close (with the attendance that is now final).
pub(crate) fn from_ledger(e: &Event) -> Vec<Outgoing> {
    let ev = &e.event;
    let person = |kind: EventType, reason: Option<&str>| {
        let mut data = json!({
            "session_id": ev.session,
            "participant_id": ev.participant,
            "role": ev.role,
            "at": time(ev.at),
        });
        if let Some(reason) = reason {
            data["reason"] = json!(reason);
        }
        Outgoing {
            kind,
            session: Some(ev.session.clone()),
            at: ev.at,
            data: Some(data),
        }
    };
    match ev.kind {
        EventKind::Waiting => vec![person(EventType::ParticipantWaiting, None)],
        EventKind::Admitted => vec![person(EventType::ParticipantAdmitted, None)],
        EventKind::Left | EventKind::Removed | EventKind::Replaced => vec![person(
            EventType::ParticipantLeft,
            Some(ev.reason.as_deref().unwrap_or(ev.kind.as_str())),
        )],
        // The close ends every presence of the session: its attendance can
        // no longer change.
        EventKind::SessionClosed => vec![
            Outgoing {
                kind: EventType::SessionEnded,
                session: Some(ev.session.clone()),
                at: ev.at,
                data: Some(json!({
                    "session_id": ev.session,
                    "reason": ev.reason,
                    "ended_at": time(ev.at),
                })),
            },
            Outgoing {
                kind: EventType::AttendanceFinalized,
                session: Some(ev.session.clone()),
                at: ev.at,
                data: None,
            },
        ],
        _ => Vec::new(),
    }
}

/// `session.scheduled`, `session.updated`: the session's times and who is
/// on its roster, by id and role.
pub(crate) fn session_event(kind: EventType, s: &Session, now: DateTime<Utc>) -> Outgoing {
    Outgoing {
        kind,
        session: Some(s.id.to_string()),
        at: now.timestamp_millis(),
        data: Some(json!({
            "session_id": s.id,
            "kind": s.kind.as_str(),
            "starts_at": s.starts_at,
            "ends_at": s.ends_at,
            "timezone": s.timezone.name(),
            "participants": s.roster.iter().map(|p| json!({
                "participant_id": p.id,
                "role": p.role.as_str(),
            })).collect::<Vec<_>>(),
        })),
    }
}

/// `session.cancelled`.
pub(crate) fn session_cancelled(session: &str, now: DateTime<Utc>) -> Outgoing {
    Outgoing {
        kind: EventType::SessionCancelled,
        session: Some(session.to_owned()),
        at: now.timestamp_millis(),
        data: Some(json!({ "session_id": session, "cancelled_at": time(now.timestamp_millis()) })),
    }
}

/// `ledger.verify_failed`: which event broke the chain, and how.
pub(crate) fn verify_failed(
    seq: i64,
    expected_seq: i64,
    problem: &str,
    now: DateTime<Utc>,
) -> Outgoing {
    Outgoing {
        kind: EventType::LedgerVerifyFailed,
        session: None,
        at: now.timestamp_millis(),
        data: Some(json!({
            "seq": seq,
            "expected_seq": expected_seq,
            "problem": problem,
            "detected_at": time(now.timestamp_millis()),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event::NewEvent;

    fn ledger(kind: EventKind, reason: Option<&str>) -> Event {
        Event {
            seq: 1,
            event: NewEvent {
                at: 1_700_000_000_000,
                session: "s-1".into(),
                participant: Some("pat-1".into()),
                role: Some("patient".into()),
                connection: Some("b-1".into()),
                kind,
                reason: reason.map(Into::into),
                modality: None,
                detail: Some(json!({"state": "NY", "at_home": true})),
            },
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_type_name_parses_back() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        assert_eq!(EventType::parse("participant.joined"), None);
    }

    #[test]
    fn a_departure_says_why_and_carries_no_detail() {
        let out = from_ledger(&ledger(EventKind::Left, Some("network")));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventType::ParticipantLeft);
        let data = out[0].data.as_ref().unwrap();
        assert_eq!(data["reason"], "network");
        assert_eq!(data["participant_id"], "pat-1");
        assert!(data.get("state").is_none() && !data.to_string().contains("at_home"));
    }

    #[test]
    fn the_close_ends_the_session_and_finalizes_attendance() {
        let kinds: Vec<EventType> =
            from_ledger(&ledger(EventKind::SessionClosed, Some("session_end")))
                .iter()
                .map(|o| o.kind)
                .collect();
        assert_eq!(
            kinds,
            [EventType::SessionEnded, EventType::AttendanceFinalized]
        );
        assert!(from_ledger(&ledger(EventKind::Attestation, None)).is_empty());
        assert!(from_ledger(&ledger(EventKind::Joined, None)).is_empty());
    }
}

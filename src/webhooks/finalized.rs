//! The figures of `attendance.finalized`: each participant's attendance
//! from the session's report, once the room has closed (no attestations,
//! no names). Computed when the event is first delivered, from the closed
//! session's ledger, which no longer changes.

use serde_json::{json, Value};

use crate::attendance::report::SessionReport;

/// The `data` of `attendance.finalized`: each participant's figures from
/// the session's report (no attestations, no names).
pub(crate) fn attendance_finalized(report: &SessionReport) -> Value {
    json!({
        "session_id": report.session.id,
        "starts_at": report.session.starts_at,
        "ends_at": report.session.ends_at,
        "ended_at": report.session.ended_at,
        "participants": report.participants.iter().map(|p| json!({
            "participant_id": p.participant_id,
            "role": p.role,
            "attended_seconds": p.attended_seconds,
            "present_seconds": p.present_seconds,
            "audio_only_seconds": p.audio_only_seconds,
            "first_join": p.first_join,
            "last_leave": p.last_leave,
            "late_seconds": p.late_seconds,
            "early_leave_seconds": p.early_leave_seconds,
            "disconnects": p.disconnects,
        })).collect::<Vec<_>>(),
    })
}

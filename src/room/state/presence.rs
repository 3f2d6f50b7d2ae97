//! Where a presence ends: at its connection's last sign of life, never at
//! the moment the room decided (docs/compliance.md).

use super::*;

/// Presence ends where the evidence of it ends: every presence the room
/// ends (a second device, the session's end, the clinician away, a removal,
/// a revocation, a lost socket) ends at its connection's last sign of life,
/// never at the moment the room decided. A connection silent for longer
/// than [`SILENT_AFTER_MS`] by then had been lost unnoticed: its presence
/// ends as `network` (a disconnect), and for a replaced one that loss is
/// recorded before the `replaced`. `open` holds the connections whose
/// presence was open before the decision. A `left` the client asked for
/// (its `leave` or close frame is itself the last sign of life) is kept.
pub(super) fn end_at_last_sign_of_life(
    open: &[(ConnId, SignOfLife)],
    now: DateTime<Utc>,
    out: &mut Vec<Effect>,
) {
    let last_of = |conn: ConnId| {
        open.iter()
            .find(|(c, _)| *c == conn)
            .map(|(_, sign)| sign.last().min(now))
    };
    let silent = |t: DateTime<Utc>| (now - t).num_milliseconds() > SILENT_AFTER_MS;
    let mut i = 0;
    while i < out.len() {
        let mut lost = None;
        match &mut out[i] {
            Effect::Record(RoomEvent::Left {
                conn, reason, at, ..
            }) if *reason != Reason::Left => {
                if let Some(last) = last_of(*conn) {
                    // A lost socket brings its last frame; media may be later.
                    let end = at.map_or(last, |t| t.max(last).min(now));
                    if silent(end) {
                        *reason = Reason::Network;
                    }
                    *at = Some(end);
                }
            }
            Effect::Record(RoomEvent::Replaced {
                participant,
                old,
                at,
                ..
            }) => {
                if let Some(last) = last_of(*old) {
                    if silent(last) {
                        lost = Some(RoomEvent::Left {
                            participant: participant.clone(),
                            conn: *old,
                            reason: Reason::Network,
                            at: Some(last),
                        });
                    } else {
                        *at = Some(last);
                    }
                }
            }
            _ => {}
        }
        if let Some(lost) = lost {
            out.insert(i, Effect::Record(lost));
            i += 1;
        }
        i += 1;
    }
}

//! What happens as time passes: the clinician's grace, the warnings before
//! the room closes, the close itself, and finishing the room.

use super::*;

impl Room {
    pub(super) fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        if now >= self.closes_at {
            self.finish(Reason::SessionEnd, now, out);
            return;
        }
        self.breakout_timers(now, out);
        let left = (self.closes_at - now).num_seconds();
        // The smallest threshold crossed wins, so a late start warns once.
        for (i, threshold) in WARNINGS.into_iter().enumerate().rev() {
            if left <= threshold && !self.warned[i] {
                self.warned[..=i].iter_mut().for_each(|w| *w = true);
                for m in &self.members {
                    out.push(Effect::Send {
                        conn: m.conn,
                        message: ServerMessage::SessionEnding {
                            seconds_left: left.max(0) as u64,
                        },
                    });
                }
                break;
            }
        }
        if let Some(since) = self.clinician_away_since {
            if now - since >= self.clinician_grace && !self.clinician_in_room() {
                self.clinician_away_since = None;
                self.readmit.clear();
                // Nobody is left in the room to see hands or a spotlight.
                self.hands.clear();
                self.spotlight = None;
                let back: Vec<usize> = (0..self.members.len())
                    .filter(|&i| self.members[i].place == Place::InRoom)
                    .collect();
                for i in back {
                    let m = &mut self.members[i];
                    m.place = Place::Waiting { since: now };
                    m.joined = false;
                    m.public_key = None;
                    let (conn, id) = (m.conn, m.person.id.clone());
                    out.push(Effect::StopMedia { conn });
                    out.push(Effect::Send {
                        conn,
                        message: ServerMessage::Waiting {
                            reason: Some(WaitingReason::ClinicianAway),
                        },
                    });
                    out.push(Effect::Record(RoomEvent::Left {
                        participant: id.clone(),
                        conn,
                        reason: Reason::ClinicianAway,
                        at: None,
                    }));
                    out.push(Effect::Record(RoomEvent::Waiting {
                        participant: id,
                        conn,
                    }));
                }
                self.refresh_e2ee(None, out);
            }
        }
    }

    /// Everyone out for a server stop; the session goes on after it.
    pub(super) fn stop(&mut self, out: &mut Vec<Effect>) {
        self.close_breakouts(out);
        for m in std::mem::take(&mut self.members) {
            if m.place == Place::InRoom {
                out.push(Effect::StopMedia { conn: m.conn });
            }
            out.push(Effect::Close {
                conn: m.conn,
                message: ServerMessage::server_restart(),
            });
            out.push(Effect::Record(RoomEvent::Left {
                participant: m.person.id,
                conn: m.conn,
                reason: Reason::ServerRestart,
                at: None,
            }));
        }
    }

    /// Ends the session for everyone.
    pub(super) fn finish(&mut self, reason: Reason, _now: DateTime<Utc>, out: &mut Vec<Effect>) {
        // Stored before anyone is told, so no join can slip in after `ended`.
        if reason == Reason::EndedByClinician {
            out.push(Effect::PersistEnd);
        }
        self.close_breakouts(out);
        for m in std::mem::take(&mut self.members) {
            if m.place == Place::InRoom {
                out.push(Effect::StopMedia { conn: m.conn });
            }
            out.push(Effect::Close {
                conn: m.conn,
                message: ServerMessage::Ended,
            });
            out.push(Effect::Record(RoomEvent::Left {
                participant: m.person.id,
                conn: m.conn,
                reason: Reason::SessionEnd,
                at: None,
            }));
        }
        out.push(Effect::Record(RoomEvent::SessionEnded { reason }));
        out.push(Effect::Finished);
        self.finished = true;
    }

    /// The ledger closes every breakout still running (the room is ending
    /// or the server stopping); nobody is told, everyone is leaving.
    fn close_breakouts(&mut self, out: &mut Vec<Effect>) {
        for b in std::mem::take(&mut self.breakouts) {
            out.push(Effect::Record(RoomEvent::BreakoutEnded {
                household: b.household,
            }));
        }
    }
}

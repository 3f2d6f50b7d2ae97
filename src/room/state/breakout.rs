//! Breakouts in group sessions: the clinician sends one household (a
//! couple) to a private breakout, with them or on their own, optionally for
//! a number of minutes. A timed breakout warns its couple a minute before
//! and returns by itself; "Bring everyone back" ends them all; "Message to
//! breakouts" reaches every couple in one. The clinician sees who is
//! speaking in a breakout they are not in (a level, never media).
//!
//! Only clinicians and the household's own members hear of a breakout:
//! patients and partners learn no household but their own (issue 21).
//! Every start and end is recorded in the attendance ledger.

use super::*;

/// The warning before a timed breakout returns, in seconds.
pub(crate) const BREAKOUT_WARNING_SECS: i64 = 60;

impl Room {
    pub(super) fn breakout(
        &mut self,
        conn: ConnId,
        household: String,
        with_clinician: bool,
        minutes: Option<u32>,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let refuse = |message: &str, out: &mut Vec<Effect>| {
            out.push(Effect::Send {
                conn,
                message: ServerMessage::error(ErrorCode::BadState, message),
            })
        };
        if self.kind != SessionKind::Group {
            return refuse("breakouts are for group sessions", out);
        }
        if !self
            .roster
            .iter()
            .any(|p| p.household.as_deref() == Some(household.as_str()))
        {
            return refuse("no household with that id is on the roster", out);
        }
        if with_clinician
            && self
                .breakouts
                .iter()
                .any(|b| b.with_clinician && b.household != household)
        {
            return refuse("the clinician is already in a breakout", out);
        }
        let ends_at = minutes.map(|m| now + Duration::minutes(m.into()));
        match self.breakouts.iter_mut().find(|b| b.household == household) {
            Some(b) => {
                b.with_clinician = with_clinician;
                b.ends_at = ends_at;
                b.warned = false;
            }
            None => {
                let group = self.next_group;
                self.next_group += 1;
                self.breakouts.push(Breakout {
                    household: household.clone(),
                    group,
                    with_clinician,
                    ends_at,
                    warned: false,
                });
            }
        }
        out.push(Effect::Record(RoomEvent::BreakoutStarted {
            household: household.clone(),
            with_clinician,
            ends_at,
        }));
        self.regroup(out);
        let b = self.breakouts.iter().find(|b| b.household == household);
        let message = breakout_message(&household, b);
        self.tell_breakout(&household, message, out);
    }

    /// Ends one household's breakout; false when it has none.
    pub(super) fn end_breakout(&mut self, household: &str, out: &mut Vec<Effect>) -> bool {
        let before = self.breakouts.len();
        self.breakouts.retain(|b| b.household != household);
        if self.breakouts.len() == before {
            return false;
        }
        out.push(Effect::Record(RoomEvent::BreakoutEnded {
            household: household.to_owned(),
        }));
        self.regroup(out);
        self.tell_breakout(household, breakout_message(household, None), out);
        true
    }

    /// "Bring everyone back".
    pub(super) fn end_all_breakouts(&mut self, out: &mut Vec<Effect>) {
        let households: Vec<String> = self.breakouts.iter().map(|b| b.household.clone()).collect();
        for household in households {
            self.end_breakout(&household, out);
        }
    }

    /// "Message to breakouts": to everyone in a breakout, and to the
    /// clinicians as a receipt.
    pub(super) fn message_breakouts(&self, by: &str, text: String, out: &mut Vec<Effect>) {
        let from = self
            .members
            .iter()
            .find(|m| m.person.id == by)
            .map_or_else(|| by.to_owned(), |m| m.person.name.clone());
        let message = ServerMessage::BreakoutMessage {
            text: text.trim().to_owned(),
            from,
        };
        for m in self
            .in_room()
            .filter(|m| m.group != MAIN_ROOM || m.is_clinician())
        {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }

    /// Timed breakouts: the warning, then the return.
    pub(super) fn breakout_timers(&mut self, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        let mut due = Vec::new();
        let mut warn = Vec::new();
        for b in &mut self.breakouts {
            let Some(ends_at) = b.ends_at else { continue };
            let left = (ends_at - now).num_seconds();
            if now >= ends_at {
                due.push(b.household.clone());
            } else if left <= BREAKOUT_WARNING_SECS && !b.warned {
                b.warned = true;
                warn.push((b.household.clone(), left.max(0) as u64));
            }
        }
        for (household, seconds_left) in warn {
            let message = ServerMessage::BreakoutEnding {
                household: household.clone(),
                seconds_left,
            };
            self.tell_breakout(&household, message, out);
        }
        for household in due {
            self.end_breakout(&household, out);
        }
    }

    /// Someone in a breakout started or stopped speaking: clinicians who
    /// are not in that breakout see it.
    pub(super) fn speaking(&self, conn: ConnId, speaking: bool, out: &mut Vec<Effect>) {
        let Some(speaker) = self
            .in_room()
            .find(|m| m.conn == conn && m.group != MAIN_ROOM)
        else {
            return;
        };
        let message = ServerMessage::Speaking {
            participant: speaker.person.id.clone(),
            speaking,
        };
        for m in self
            .in_room()
            .filter(|m| m.is_clinician() && m.group != speaker.group)
        {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }

    /// The breakouts a person entering the room must know of: all of them
    /// for a clinician, their own household's for anyone else.
    pub(super) fn breakouts_for(&self, conn: ConnId, out: &mut Vec<Effect>) {
        let Some(me) = self.members.iter().find(|m| m.conn == conn) else {
            return;
        };
        for b in &self.breakouts {
            if me.is_clinician() || me.person.household.as_deref() == Some(b.household.as_str()) {
                out.push(Effect::Send {
                    conn,
                    message: breakout_message(&b.household, Some(b)),
                });
            }
        }
    }

    /// Puts everyone in the room into the group their household belongs to.
    fn regroup(&mut self, out: &mut Vec<Effect>) {
        for i in 0..self.members.len() {
            let group = self.group_of(&self.members[i].person);
            let m = &mut self.members[i];
            if m.place == Place::InRoom && m.group != group {
                m.group = group;
                out.push(Effect::SetGroup {
                    conn: m.conn,
                    group,
                });
            } else {
                m.group = group;
            }
        }
    }

    /// Tells the clinicians and the household's members in the room.
    fn tell_breakout(&self, household: &str, message: ServerMessage, out: &mut Vec<Effect>) {
        for m in self
            .in_room()
            .filter(|m| m.is_clinician() || m.person.household.as_deref() == Some(household))
        {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }
}

/// The `breakout` message for a household's breakout (`None`: it ended).
fn breakout_message(household: &str, breakout: Option<&Breakout>) -> ServerMessage {
    ServerMessage::Breakout {
        household: household.to_owned(),
        active: breakout.is_some(),
        with_clinician: breakout.is_some_and(|b| b.with_clinician),
        ends_at: breakout.and_then(|b| b.ends_at),
    }
}

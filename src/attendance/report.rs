//! The attendance report of one session (DESIGN.md "Session attendance
//! report (JSON)"), computed from the ledger's events alone.
//!
//! Pure: no database, no clock (`now` is an argument), no I/O. Every number
//! is made of the interval arithmetic in [`super::interval`] and floored,
//! never rounded up.
//!
//! # How events become presence
//!
//! - Events of other sessions are ignored; the rest are taken in ledger
//!   order (`seq`), while every time comes from the event's own `at`.
//! - The event's `participant` is the person whose presence changed (for
//!   `removed`, the person removed). Events of people not on the roster are
//!   ignored: they could not have joined.
//! - A presence interval belongs to one *connection*: it opens at a `joined`
//!   event and closes at the first later closing event of that connection:
//!   `left` (its `reason` is the end reason, verbatim; `left` when absent),
//!   `removed` (end reason `removed`) or `replaced` (end reason `replaced`).
//!   `session_closed` closes every open interval of the session with
//!   `session_end`. A closing event without a connection id closes every
//!   open connection of its participant (and a `joined` without one opens a
//!   connection keyed by the participant). A second `joined` on a connection
//!   already open changes nothing.
//! - A connection's close ends every piece of it: nothing stamped after the
//!   close extends it, even when it was recorded before the close (a mute
//!   of a connection that had already died, whose loss is recorded at its
//!   last sign of life 30 s later; a change after the last heartbeat before
//!   a crash). Pieces are cut at the close, those starting at or after it
//!   are dropped, and the last piece kept ends with the close's reason. A
//!   close before the connection's `joined` (a clock step, a recovery at the
//!   `joined` itself) leaves one empty interval, never a negative one.
//! - An interval still open when the report is made (a live session, or
//!   presence a crash recovery has not closed yet) is counted up to `now`
//!   and shown with the end reason [`OPEN`] (`"open"`), which is not one of
//!   the ledger's reasons; such a participant has no `last_leave` yet.
//! - Modality: a connection starts `audio_video` unless its `joined` event
//!   says `audio_only`; `media_changed` on that connection switches it. The
//!   interval is split there: the first piece ends with the end reason
//!   [`MEDIA_CHANGED`] (`"media_changed"`), the next starts at the same
//!   millisecond. A change at the very millisecond a piece started only
//!   relabels that piece, so no empty pieces appear (but see the close).
//!
//! # The numbers (per participant)
//!
//! With `P` = union of the participant's intervals (two devices or a
//! reconnect never count twice), `C` = union of every rostered clinician's
//! intervals and `W` = the session window `[starts_at, closes_at)`
//! (scheduled start to scheduled end plus the overrun grace):
//!
//! - `present_seconds` = ⌊|P ∩ W|⌋ s: time in the room.
//! - `attended_seconds` = ⌊|P ∩ C ∩ W|⌋ s and `attended_minutes` =
//!   ⌊|P ∩ C ∩ W| / 60 s⌋ (from the same milliseconds, not from the floored
//!   seconds). For a clinician's own row, attended = present.
//! - `audio_only_seconds` = ⌊|A ∩ W|⌋ s where `A` = union of the
//!   participant's audio-only pieces minus the union of their audio-video
//!   pieces: when two devices overlap and any has video, that time is
//!   audio-video. It is *presence* time, so it is at most `present_seconds`.
//!   The extra field `attended_audio_only_seconds` = ⌊|A ∩ C ∩ W|⌋ s is the
//!   audio-only part of attended time (what the weekly report sums, so that
//!   audio-only minutes never exceed the minutes total).
//! - `first_join`: the start of the earliest interval (even one before the
//!   window: early join); `last_leave`: the end of the latest interval, only
//!   when no interval is still open. Both RFC 3339 UTC with milliseconds, or
//!   null. The raw `intervals` are listed unclipped; only the numbers are
//!   clipped to the window.
//! - `late_seconds` = ⌊max(0, first_join − starts_at)⌋ s, 0 without a join.
//! - `early_leave_seconds` = ⌊max(0, ends_at − last_leave)⌋ s, 0 when there
//!   is no `last_leave` (never joined, or still present). In a live session
//!   it is provisional: the participant may come back.
//! - `disconnects` = the number of intervals whose end reason is `network`.
//! - `attestation`: the latest `attestation` event's `state`, `at_home`,
//!   `private` (nothing else from its detail) and `at`, or null.
//! - `annotations`: every `annotation` event about the participant, as
//!   `{at, by, text}`; annotations about no rostered participant go to the
//!   report's top-level `annotations`. They never change a number.
//! - `flags` (extra), only for a participant with `attended_seconds > 0` in
//!   a *finished* session (see below): [`FLAG_LATE`] when `late_seconds >
//!   0`; [`FLAG_LEFT_EARLY`] when they left at least a whole second before
//!   the session ended, i.e. before the earlier of `ends_at` and the room's
//!   close (`early_leave_seconds` itself is still counted from `ends_at`).
//!
//! # The numbers (per session)
//!
//! - `head_count`: rostered patients (role `patient`) with
//!   `attended_seconds > 0` (at least one whole attended second, the same
//!   test the weekly report uses for "attended"); for an individual session
//!   that is 1 or 0.
//! - Couple sessions only (0 otherwise), with `Pt` = union of the patients'
//!   presence and `Pa` = union of the partners': `conjoint_seconds` =
//!   ⌊|Pt ∩ Pa ∩ C ∩ W|⌋ s (90847 evidence) and `partner_only_seconds` =
//!   ⌊|(Pa ∩ C ∩ W) − Pt|⌋ s (90846 evidence), with their floored minutes
//!   as extra fields.
//! - `service_date`: the local date of `starts_at` in the session's own time
//!   zone (which defaults to the program's). The weekly report uses the
//!   same date.
//! - `ended_at` (extra, in `session`): when the room closed, the ledger's
//!   first `session_closed`, else the end the scheduler recorded; null
//!   while it has not. The session is *finished* when its status is not
//!   `scheduled` (ended, cancelled, or past its window) or it has an
//!   `ended_at`.
//! - `code_minimums` (extra): each time-based code of the session's kind
//!   ([`timed_codes`]) with its basis, the floored minutes of that basis,
//!   its minimum and whether they reach it: 90847 on the conjoint minutes,
//!   90846 on the partner-only minutes, 90832/90834/90837 on the patients'
//!   attended minutes (⌊|Pt ∩ C ∩ W| / 60 s⌋); none for group sessions.
//! - `flags` (extra), finished sessions only: [`FLAG_BELOW_CODE_MINIMUM`]
//!   when a patient or partner attended and no code of the session's kind
//!   is met; [`FLAG_ENDED_EARLY`] when the room closed before `ends_at`,
//!   with `minutes_short` = ⌊(ends_at − max(close, starts_at)) / 60 s⌋
//!   (0 otherwise).
//!
//! Every roster member has a row, clinician first, in roster order, with
//! zeros when absent. Rows carry ids (and the clinic's MRN when it gave
//! one), never names.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;

pub(crate) use super::event::Modality;
use super::event::{reason, Event, EventKind, NewEvent};
use super::interval::{floor_minutes, floor_seconds, Interval, Intervals, Millis};
use crate::auth::RosterRole;
use crate::schedule::{Session, SessionKind, SessionStatus};

/// End reason of an interval still open when the report was made.
pub(crate) const OPEN: &str = "open";
/// End reason of the piece of an interval before a modality change.
pub(crate) const MEDIA_CHANGED: &str = "media_changed";

/// Participant flags (attended participants of finished sessions only).
pub(crate) const FLAG_LATE: &str = "late";
pub(crate) const FLAG_LEFT_EARLY: &str = "left_early";
/// Session flags (finished sessions only).
pub(crate) const FLAG_BELOW_CODE_MINIMUM: &str = "below_code_minimum";
pub(crate) const FLAG_ENDED_EARLY: &str = "ended_early";

/// What a code's minutes are counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Patient ∩ partner ∩ clinician ∩ window (90847).
    Conjoint,
    /// (Partner ∩ clinician ∩ window) − patient (90846).
    PartnerOnly,
    /// Patient ∩ clinician ∩ window (90832, 90834, 90837).
    Attended,
}

impl Basis {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Basis::Conjoint => "conjoint",
            Basis::PartnerOnly => "partner_only",
            Basis::Attended => "attended",
        }
    }
}

/// The time-based codes of each session kind, their basis and their
/// minimum minutes (ATTENDANCE.md): 90847 (conjoint) and 90846 (partner
/// without the patient) are 50-minute codes billable from 26 minutes;
/// 90832/90834/90837 need 16/38/53 minutes. Group sessions bill 90853, which
/// is untimed.
pub(crate) fn timed_codes(kind: SessionKind) -> &'static [(&'static str, Basis, i64)] {
    match kind {
        SessionKind::Couple => &[
            ("90847", Basis::Conjoint, 26),
            ("90846", Basis::PartnerOnly, 26),
        ],
        SessionKind::Individual => &[
            ("90832", Basis::Attended, 16),
            ("90834", Basis::Attended, 38),
            ("90837", Basis::Attended, 53),
        ],
        SessionKind::Group => &[],
    }
}

/// One timed code checked against its own evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeMinimum {
    pub code: &'static str,
    pub basis: Basis,
    /// Whole minutes of the basis (floored).
    pub minutes: i64,
    pub minimum: i64,
    pub met: bool,
}

/// The report of one session. Field order and names follow DESIGN.md; the
/// fields DESIGN.md does not list are extras.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionReport {
    pub session: SessionInfo,
    /// The 42 CFR Part 2 notice, or null when disabled.
    pub notice: Option<String>,
    pub head_count: usize,
    pub conjoint_seconds: i64,
    pub partner_only_seconds: i64,
    pub participants: Vec<ParticipantReport>,
    /// Extra: floored minutes of the couple numbers.
    pub conjoint_minutes: i64,
    pub partner_only_minutes: i64,
    /// Extra: annotations about no rostered participant.
    pub annotations: Vec<Annotation>,
    /// Extra: the session's status at `generated_at`.
    pub status: SessionStatus,
    /// Extra: the `now` the report was computed at (open intervals end there).
    pub generated_at: String,
    /// Extra: each timed code of the session's kind against its own minutes.
    pub code_minimums: Vec<CodeMinimum>,
    /// Extra: `below_code_minimum`, `ended_early` (finished sessions only).
    pub flags: Vec<&'static str>,
    /// Extra: whole minutes between an early end and the scheduled end.
    pub minutes_short: i64,
    /// Extra: time each couple (household) spent in breakouts.
    pub breakouts: Vec<BreakoutReport>,
}

/// One household's breakouts in a group session: every interval from the
/// ledger's `breakout_started` to its `breakout_ended` (or the room's close;
/// one still running ends at `now` with `open: true`), and their total,
/// clipped to the session window, floored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakoutReport {
    pub household: String,
    pub seconds: i64,
    pub minutes: i64,
    pub intervals: Vec<BreakoutInterval>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakoutInterval {
    pub start: String,
    pub end: String,
    /// The clinician was in the breakout (when it started).
    pub with_clinician: bool,
    /// Still running at `generated_at`.
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub title: String,
    pub kind: SessionKind,
    pub starts_at: String,
    pub ends_at: String,
    pub timezone: String,
    /// `YYYY-MM-DD`, local date of `starts_at` in `timezone`.
    pub service_date: String,
    /// Extra: the end of the window (`ends_at` plus the overrun grace).
    pub closes_at: String,
    /// Extra: when the room closed (the ledger's `session_closed`, else the
    /// recorded end), or null.
    pub ended_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantReport {
    pub participant_id: String,
    pub role: RosterRole,
    pub attended_seconds: i64,
    pub attended_minutes: i64,
    pub present_seconds: i64,
    pub audio_only_seconds: i64,
    pub first_join: Option<String>,
    pub last_leave: Option<String>,
    pub late_seconds: i64,
    pub early_leave_seconds: i64,
    pub disconnects: usize,
    pub intervals: Vec<IntervalReport>,
    pub attestation: Option<Attestation>,
    /// Extra: the clinic's medical record number, when it supplied one.
    pub mrn: Option<String>,
    /// Extra: the audio-only part of the attended time.
    pub attended_audio_only_seconds: i64,
    /// Extra: an interval is still open at `generated_at`.
    pub still_present: bool,
    /// Extra: clinicians' notes about this participant.
    pub annotations: Vec<Annotation>,
    /// Extra: `late`, `left_early` (attended participants of finished
    /// sessions only).
    pub flags: Vec<&'static str>,
    /// `|P ∩ C ∩ W|` in milliseconds (not serialised; for the weekly report).
    #[serde(skip)]
    pub attended_ms: Millis,
    /// `|A ∩ C ∩ W|` in milliseconds (not serialised).
    #[serde(skip)]
    pub attended_audio_only_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalReport {
    pub start: String,
    pub end: String,
    pub modality: Modality,
    /// A ledger reason (`left`, `network`, `removed`, `replaced`,
    /// `session_end`, `clinician_away`, `server_restart`, `revoked`), or
    /// [`MEDIA_CHANGED`] or [`OPEN`].
    pub end_reason: String,
    /// Extra: the connection (device) this interval belongs to.
    pub connection: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attestation {
    pub state: Option<String>,
    pub at_home: Option<bool>,
    pub private: Option<bool>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annotation {
    pub at: String,
    pub by: Option<String>,
    pub text: Option<String>,
}

/// RFC 3339, UTC, milliseconds: `2025-03-03T14:00:00.000Z`.
pub(crate) fn rfc3339_ms(ms: Millis) -> String {
    let t = DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The local date of the session's scheduled start in its time zone.
pub(crate) fn service_date(session: &Session) -> NaiveDate {
    session
        .starts_at
        .with_timezone(&session.timezone)
        .date_naive()
}

/// One piece of one connection's presence at one modality.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    participant: String,
    connection: Option<String>,
    start: Millis,
    end: Millis,
    modality: Modality,
    end_reason: String,
}

impl Segment {
    fn interval(&self) -> Interval {
        Interval::new(self.start, self.end)
    }
}

/// A connection with an open piece.
struct Open {
    participant: String,
    connection: Option<String>,
    start: Millis,
    modality: Modality,
    /// Its earlier pieces (split at modality changes), kept until the
    /// connection closes: the close trims them all.
    pieces: Vec<Segment>,
}

/// This session's events, in ledger order.
fn session_events<'a>(session: &Session, events: &'a [Event]) -> Vec<&'a Event> {
    let id = session.id.to_string();
    let mut mine: Vec<&Event> = events.iter().filter(|e| e.event.session == id).collect();
    mine.sort_by_key(|e| e.seq);
    mine
}

/// The open connections an event about presence applies to: its connection
/// if open, or, without a connection id, every open one of its participant.
fn targets(open: &BTreeMap<String, Open>, e: &NewEvent) -> Vec<String> {
    match (&e.connection, &e.participant) {
        (Some(c), _) => open
            .contains_key(c)
            .then(|| c.clone())
            .into_iter()
            .collect(),
        (None, Some(p)) => open
            .iter()
            .filter(|(_, o)| &o.participant == p)
            .map(|(k, _)| k.clone())
            .collect(),
        (None, None) => Vec::new(),
    }
}

/// Closes connection `key` at `at`: every piece of it ends there at the
/// latest, whatever was stamped after the close (a mute of a connection
/// that had already died, a change after the last heartbeat); pieces that
/// would start at or after it are dropped. The last piece kept ends with
/// `why`. A close before the connection's first piece (a clock step, or a
/// recovery at its own `joined`) leaves one empty piece, never a negative
/// one.
fn close(
    open: &mut BTreeMap<String, Open>,
    key: &str,
    at: Millis,
    why: &str,
    out: &mut Vec<Segment>,
) {
    let Some(o) = open.remove(key) else {
        return;
    };
    let mut pieces = o.pieces;
    pieces.push(Segment {
        participant: o.participant,
        connection: o.connection,
        start: o.start,
        end: at.max(o.start),
        modality: o.modality,
        end_reason: why.to_owned(),
    });
    let first = pieces[0].clone();
    let mut kept: Vec<Segment> = pieces
        .into_iter()
        .filter(|p| p.start < at)
        .map(|p| Segment {
            end: p.end.min(at),
            ..p
        })
        .collect();
    if kept.is_empty() {
        kept.push(Segment {
            end: first.start,
            ..first
        });
    }
    if let Some(last) = kept.last_mut() {
        last.end_reason = why.to_owned();
    }
    out.extend(kept);
}

/// Every presence piece of the session, open ones ended at `now`.
fn presence_segments(events: &[&Event], now: Millis) -> Vec<Segment> {
    let mut open: BTreeMap<String, Open> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        let e = &e.event;
        match e.kind {
            EventKind::Joined => {
                let Some(participant) = e.participant.clone() else {
                    continue;
                };
                let key = e
                    .connection
                    .clone()
                    .unwrap_or_else(|| format!("participant:{participant}"));
                open.entry(key).or_insert(Open {
                    participant,
                    connection: e.connection.clone(),
                    start: e.at,
                    modality: e.media_modality().unwrap_or(Modality::AudioVideo),
                    pieces: Vec::new(),
                });
            }
            EventKind::MediaChanged => {
                let Some(new) = e.media_modality() else {
                    continue;
                };
                for key in targets(&open, e) {
                    let o = open.get_mut(&key).expect("targets are open");
                    if o.modality == new {
                        continue;
                    }
                    if e.at > o.start {
                        o.pieces.push(Segment {
                            participant: o.participant.clone(),
                            connection: o.connection.clone(),
                            start: o.start,
                            end: e.at,
                            modality: o.modality,
                            end_reason: MEDIA_CHANGED.to_owned(),
                        });
                        o.start = e.at;
                    }
                    o.modality = new;
                }
            }
            EventKind::Left | EventKind::Removed | EventKind::Replaced => {
                let why = match e.kind {
                    EventKind::Left => e.reason.as_deref().unwrap_or(reason::LEFT),
                    EventKind::Removed => reason::REMOVED,
                    _ => reason::REPLACED,
                };
                for key in targets(&open, e) {
                    close(&mut open, &key, e.at, why, &mut out);
                }
            }
            EventKind::SessionClosed => {
                let keys: Vec<String> = open.keys().cloned().collect();
                for key in keys {
                    close(&mut open, &key, e.at, reason::SESSION_END, &mut out);
                }
            }
            _ => {}
        }
    }
    let keys: Vec<String> = open.keys().cloned().collect();
    for key in keys {
        close(&mut open, &key, now, OPEN, &mut out);
    }
    out.sort_by(|a, b| (a.start, a.end, &a.connection).cmp(&(b.start, b.end, &b.connection)));
    out
}

/// Breakout time per household, from the ledger's breakout events
/// (docs/api.md, the session report's `breakouts`). A `breakout_started`
/// for a household already in one changes nothing (the clinician changed
/// its length or joined it); `session_closed` ends every breakout.
fn breakout_time(events: &[&Event], window: Interval, now: Millis) -> Vec<BreakoutReport> {
    // household -> (start, with_clinician) of the breakout running.
    let mut running: BTreeMap<String, (Millis, bool)> = BTreeMap::new();
    let mut done: BTreeMap<String, Vec<BreakoutInterval>> = BTreeMap::new();
    let mut spans: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    let mut end = |household: String, (start, with): (Millis, bool), at: Millis, open: bool| {
        let at = at.max(start);
        spans
            .entry(household.clone())
            .or_default()
            .push(Interval::new(start, at));
        done.entry(household).or_default().push(BreakoutInterval {
            start: rfc3339_ms(start),
            end: rfc3339_ms(at),
            with_clinician: with,
            open,
        });
    };
    for e in events {
        let e = &e.event;
        let household = e.detail_text("household").map(str::to_owned);
        match (e.kind, household) {
            (EventKind::BreakoutStarted, Some(h)) => {
                let with = e.detail_flag("with_clinician").unwrap_or(false);
                running.entry(h).or_insert((e.at, with));
            }
            (EventKind::BreakoutEnded, Some(h)) => {
                if let Some(started) = running.remove(&h) {
                    end(h, started, e.at, false);
                }
            }
            (EventKind::SessionClosed, _) => {
                for (h, started) in std::mem::take(&mut running) {
                    end(h, started, e.at, false);
                }
            }
            _ => {}
        }
    }
    for (h, started) in running {
        end(h, started, now, true);
    }
    done.into_iter()
        .map(|(household, intervals)| {
            let total = Intervals::union_of(spans.remove(&household).unwrap_or_default())
                .clip(window)
                .total();
            BreakoutReport {
                household,
                seconds: floor_seconds(total),
                minutes: floor_minutes(total),
                intervals,
            }
        })
        .collect()
}

fn union_where(segs: &[Segment], keep: impl Fn(&Segment) -> bool) -> Intervals {
    Intervals::union_of(segs.iter().filter(|s| keep(s)).map(Segment::interval))
}

fn annotation(e: &NewEvent) -> Annotation {
    Annotation {
        at: rfc3339_ms(e.at),
        by: e.detail_text("by").map(str::to_owned),
        text: e.detail_text("text").map(str::to_owned),
    }
}

/// The attendance report of `session` from its ledger `events` (events of
/// other sessions are ignored), as of `now`. `notice` is the 42 CFR Part 2
/// text when the notice is enabled. See the module documentation for every
/// rule.
pub fn session_report(
    session: &Session,
    events: &[Event],
    notice: Option<&str>,
    now: DateTime<Utc>,
) -> SessionReport {
    let now_ms = now.timestamp_millis();
    let events = session_events(session, events);
    let on_roster: HashSet<&str> = session.roster.iter().map(|p| p.id.as_str()).collect();
    let segs: Vec<Segment> = presence_segments(&events, now_ms)
        .into_iter()
        .filter(|s| on_roster.contains(s.participant.as_str()))
        .collect();
    let starts = session.starts_at.timestamp_millis();
    let ends = session.ends_at.timestamp_millis();
    let window = Interval::new(starts, session.closes_at().timestamp_millis());

    let presence = |id: &str| union_where(&segs, |s| s.participant == id);
    let of_role = |role: RosterRole| {
        session
            .roster
            .iter()
            .filter(|p| p.role == role)
            .fold(Intervals::default(), |acc, p| acc.union(&presence(&p.id)))
    };
    let clinicians = of_role(RosterRole::Clinician).clip(window);
    let status = session.status(now);
    // When the room closed: the ledger's first `session_closed`, else the
    // end the scheduler recorded.
    let ended = events
        .iter()
        .find(|e| e.event.kind == EventKind::SessionClosed)
        .map(|e| e.event.at)
        .or(session.ended_at.map(|t| t.timestamp_millis()));
    let finished = status != SessionStatus::Scheduled || ended.is_some();
    // A participant left early when they left before the session did.
    let session_end = ended.map_or(ends, |t| t.min(ends));

    let mut session_annotations = Vec::new();
    let mut annotations: BTreeMap<&str, Vec<Annotation>> = BTreeMap::new();
    let mut attestations: BTreeMap<&str, Attestation> = BTreeMap::new();
    for e in &events {
        let e = &e.event;
        let who = e.participant.as_deref().filter(|p| on_roster.contains(p));
        match (e.kind, who) {
            (EventKind::Annotation, Some(p)) => {
                annotations.entry(p).or_default().push(annotation(e))
            }
            (EventKind::Annotation, None) => session_annotations.push(annotation(e)),
            (EventKind::Attestation, Some(p)) => {
                attestations.insert(
                    p,
                    Attestation {
                        state: e.detail_text("state").map(str::to_owned),
                        at_home: e.detail_flag("at_home"),
                        private: e.detail_flag("private"),
                        at: rfc3339_ms(e.at),
                    },
                );
            }
            _ => {}
        }
    }

    let participants: Vec<ParticipantReport> = session
        .roster
        .iter()
        .map(|member| {
            let own: Vec<Segment> = segs
                .iter()
                .filter(|s| s.participant == member.id)
                .cloned()
                .collect();
            let p = union_where(&own, |_| true).clip(window);
            let video = union_where(&own, |s| s.modality == Modality::AudioVideo);
            let audio_only = union_where(&own, |s| s.modality == Modality::AudioOnly)
                .subtract(&video)
                .clip(window);
            let (attended_ms, attended_audio_only_ms) = if member.role == RosterRole::Clinician {
                (p.total(), audio_only.total())
            } else {
                (
                    p.intersect(&clinicians).total(),
                    audio_only.intersect(&clinicians).total(),
                )
            };
            let still_present = own.iter().any(|s| s.end_reason == OPEN);
            let first_join = own.iter().map(|s| s.start).min();
            let last_leave = if still_present {
                None
            } else {
                own.iter().map(|s| s.end).max()
            };
            let late_seconds = first_join.map_or(0, |t| floor_seconds(t - starts));
            let mut flags = Vec::new();
            if finished && floor_seconds(attended_ms) > 0 {
                if late_seconds > 0 {
                    flags.push(FLAG_LATE);
                }
                if last_leave.is_some_and(|t| floor_seconds(session_end - t) > 0) {
                    flags.push(FLAG_LEFT_EARLY);
                }
            }
            ParticipantReport {
                participant_id: member.id.clone(),
                role: member.role,
                attended_seconds: floor_seconds(attended_ms),
                attended_minutes: floor_minutes(attended_ms),
                present_seconds: floor_seconds(p.total()),
                audio_only_seconds: floor_seconds(audio_only.total()),
                first_join: first_join.map(rfc3339_ms),
                last_leave: last_leave.map(rfc3339_ms),
                late_seconds,
                early_leave_seconds: last_leave.map_or(0, |t| floor_seconds(ends - t)),
                disconnects: own
                    .iter()
                    .filter(|s| s.end_reason == reason::NETWORK)
                    .count(),
                intervals: own
                    .iter()
                    .map(|s| IntervalReport {
                        start: rfc3339_ms(s.start),
                        end: rfc3339_ms(s.end),
                        modality: s.modality,
                        end_reason: s.end_reason.clone(),
                        connection: s.connection.clone(),
                    })
                    .collect(),
                attestation: attestations.remove(member.id.as_str()),
                mrn: member.mrn.clone(),
                attended_audio_only_seconds: floor_seconds(attended_audio_only_ms),
                still_present,
                annotations: annotations.remove(member.id.as_str()).unwrap_or_default(),
                flags,
                attended_ms,
                attended_audio_only_ms,
            }
        })
        .collect();

    let head_count = participants
        .iter()
        .filter(|p| p.role == RosterRole::Patient && p.attended_seconds > 0)
        .map(|p| p.participant_id.as_str())
        .collect::<HashSet<_>>()
        .len();

    let patients = of_role(RosterRole::Patient);
    let (conjoint_ms, partner_only_ms) = if session.kind == SessionKind::Couple {
        let partners = of_role(RosterRole::Partner).intersect(&clinicians);
        (
            partners.intersect(&patients).total(),
            partners.subtract(&patients).total(),
        )
    } else {
        (0, 0)
    };

    // Each timed code on its own evidence.
    let patients_attended_ms = patients.intersect(&clinicians).total();
    let code_minimums: Vec<CodeMinimum> = timed_codes(session.kind)
        .iter()
        .map(|&(code, basis, minimum)| {
            let minutes = floor_minutes(match basis {
                Basis::Conjoint => conjoint_ms,
                Basis::PartnerOnly => partner_only_ms,
                Basis::Attended => patients_attended_ms,
            });
            CodeMinimum {
                code,
                basis,
                minutes,
                minimum,
                met: minutes >= minimum,
            }
        })
        .collect();
    let attended_by_client = participants.iter().any(|p| {
        matches!(p.role, RosterRole::Patient | RosterRole::Partner) && p.attended_seconds > 0
    });
    let mut flags = Vec::new();
    if finished
        && attended_by_client
        && !code_minimums.is_empty()
        && !code_minimums.iter().any(|c| c.met)
    {
        flags.push(FLAG_BELOW_CODE_MINIMUM);
    }
    let ended_early = ended.filter(|&t| finished && t < ends);
    if ended_early.is_some() {
        flags.push(FLAG_ENDED_EARLY);
    }
    let minutes_short = ended_early.map_or(0, |t| floor_minutes(ends - t.max(starts)));

    SessionReport {
        session: SessionInfo {
            id: session.id.to_string(),
            title: session.title.clone(),
            kind: session.kind,
            starts_at: rfc3339_ms(starts),
            ends_at: rfc3339_ms(ends),
            timezone: session.timezone.name().to_owned(),
            service_date: service_date(session).format("%Y-%m-%d").to_string(),
            closes_at: rfc3339_ms(window.end),
            ended_at: ended.map(rfc3339_ms),
        },
        notice: notice.map(str::to_owned),
        head_count,
        conjoint_seconds: floor_seconds(conjoint_ms),
        partner_only_seconds: floor_seconds(partner_only_ms),
        participants,
        conjoint_minutes: floor_minutes(conjoint_ms),
        partner_only_minutes: floor_minutes(partner_only_ms),
        annotations: session_annotations,
        status,
        generated_at: rfc3339_ms(now_ms),
        code_minimums,
        flags,
        minutes_short,
        breakouts: breakout_time(&events, window, now_ms),
    }
}

/// Builders shared by the report, weekly and export tests: sessions and
/// scripted ledgers with times relative to the session's start.
#[cfg(test)]
pub(crate) mod testkit {
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use chrono_tz::Tz;
    use serde_json::json;
    use uuid::Uuid;

    use crate::attendance::event::{chain_hash, modality, Event, EventKind, NewEvent, GENESIS};
    use crate::auth::RosterRole;
    use crate::schedule::{RosterEntry, Session, SessionKind, SessionSettings};

    pub(crate) const CLIN: &str = "c1";

    pub(crate) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// Seconds to milliseconds.
    pub(crate) fn s(secs: i64) -> i64 {
        secs * 1000
    }

    /// A session of `minutes` with a 10-minute overrun grace; the roster is
    /// clinician `c1` followed by `others`.
    pub(crate) fn session(
        n: u128,
        kind: SessionKind,
        starts_at: DateTime<Utc>,
        minutes: i64,
        tz: Tz,
        others: &[(&str, RosterRole)],
    ) -> Session {
        let mut roster = vec![entry(CLIN, RosterRole::Clinician)];
        roster.extend(others.iter().map(|&(id, role)| entry(id, role)));
        Session {
            id: Uuid::from_u128(n),
            title: format!("Session {n}"),
            kind,
            starts_at,
            ends_at: starts_at + Duration::minutes(minutes),
            timezone: tz,
            roster,
            settings: SessionSettings {
                auto_admit: true,
                early_join_minutes: 10,
                overrun_grace_minutes: 10,
                clinician_grace_minutes: 5,
                e2ee: tandem_protocol::E2eeMode::Off,
            },
            created_at: starts_at - Duration::days(7),
            cancelled_at: None,
            ended_at: None,
        }
    }

    fn entry(id: &str, role: RosterRole) -> RosterEntry {
        RosterEntry {
            id: id.into(),
            name: format!("Name of {id}"),
            role,
            household: None,
            mrn: None,
            revoked_at: None,
            removed_at: None,
        }
    }

    /// A scripted ledger; every time is milliseconds after the start.
    pub(crate) struct Ledger {
        pub session: Session,
        base: i64,
        pub events: Vec<NewEvent>,
    }

    impl Ledger {
        pub(crate) fn new(session: &Session) -> Ledger {
            Ledger {
                session: session.clone(),
                base: session.starts_at.timestamp_millis(),
                events: Vec::new(),
            }
        }

        fn push(
            &mut self,
            at: i64,
            kind: EventKind,
            who: Option<&str>,
            conn: Option<&str>,
            (reason, modality, detail): (Option<&str>, Option<&str>, Option<serde_json::Value>),
        ) -> &mut Self {
            let role = who
                .and_then(|w| self.session.member(w))
                .map(|m| m.role.as_str().to_owned());
            self.events.push(NewEvent {
                at: self.base + at,
                session: self.session.id.to_string(),
                participant: who.map(str::to_owned),
                role,
                connection: conn.map(str::to_owned),
                kind,
                reason: reason.map(str::to_owned),
                modality: modality.map(str::to_owned),
                detail,
            });
            self
        }

        pub(crate) fn join(&mut self, at: i64, who: &str, conn: &str) -> &mut Self {
            let av = Some(modality::AUDIO_VIDEO);
            self.push(
                at,
                EventKind::Joined,
                Some(who),
                Some(conn),
                (None, av, None),
            )
        }

        pub(crate) fn join_audio(&mut self, at: i64, who: &str, conn: &str) -> &mut Self {
            let ao = Some(modality::AUDIO_ONLY);
            self.push(
                at,
                EventKind::Joined,
                Some(who),
                Some(conn),
                (None, ao, None),
            )
        }

        pub(crate) fn leave(&mut self, at: i64, who: &str, conn: &str, why: &str) -> &mut Self {
            self.push(
                at,
                EventKind::Left,
                Some(who),
                Some(conn),
                (Some(why), None, None),
            )
        }

        pub(crate) fn media(&mut self, at: i64, who: &str, conn: &str, m: &str) -> &mut Self {
            self.push(
                at,
                EventKind::MediaChanged,
                Some(who),
                Some(conn),
                (None, Some(m), None),
            )
        }

        pub(crate) fn removed(&mut self, at: i64, who: &str, conn: &str) -> &mut Self {
            let r = Some("removed");
            self.push(
                at,
                EventKind::Removed,
                Some(who),
                Some(conn),
                (r, None, None),
            )
        }

        pub(crate) fn replaced(&mut self, at: i64, who: &str, conn: &str) -> &mut Self {
            let r = Some("replaced");
            self.push(
                at,
                EventKind::Replaced,
                Some(who),
                Some(conn),
                (r, None, None),
            )
        }

        pub(crate) fn closed(&mut self, at: i64) -> &mut Self {
            self.closed_for(at, "session_end")
        }

        /// `session_closed` with `why` (`ended_by_clinician`,
        /// `session_cancelled`, `session_end`).
        pub(crate) fn closed_for(&mut self, at: i64, why: &str) -> &mut Self {
            let r = Some(why);
            self.push(at, EventKind::SessionClosed, None, None, (r, None, None))
        }

        /// A household's breakout starts (`Some(with_clinician)`) or ends.
        pub(crate) fn breakout(
            &mut self,
            at: i64,
            household: &str,
            started: Option<bool>,
        ) -> &mut Self {
            let (kind, d) = match started {
                Some(with) => (
                    EventKind::BreakoutStarted,
                    json!({"household": household, "with_clinician": with}),
                ),
                None => (EventKind::BreakoutEnded, json!({"household": household})),
            };
            self.push(at, kind, None, None, (None, None, Some(d)))
        }

        pub(crate) fn waiting(&mut self, at: i64, who: &str, conn: &str) -> &mut Self {
            self.push(
                at,
                EventKind::Waiting,
                Some(who),
                Some(conn),
                (None, None, None),
            )
        }

        pub(crate) fn annotate(&mut self, at: i64, who: Option<&str>, text: &str) -> &mut Self {
            let d = Some(json!({"text": text, "by": CLIN}));
            self.push(at, EventKind::Annotation, who, None, (None, None, d))
        }

        pub(crate) fn attest(&mut self, at: i64, who: &str, state: &str, home: bool) -> &mut Self {
            let d = Some(json!({"state": state, "at_home": home, "private": true, "consent": "x"}));
            self.push(at, EventKind::Attestation, Some(who), None, (None, None, d))
        }

        /// Clinician `c1` present on connection `c1-a` from `from` to `to`.
        pub(crate) fn clinician(&mut self, from: i64, to: i64) -> &mut Self {
            self.join(from, CLIN, "c1-a")
                .leave(to, CLIN, "c1-a", "left")
        }

        /// The stored, hash-chained events, in the order scripted.
        pub(crate) fn events(&self) -> Vec<Event> {
            stored(self.events.clone())
        }
    }

    /// Stores events in the given order: sequence numbers and hash chain.
    pub(crate) fn stored(events: Vec<NewEvent>) -> Vec<Event> {
        let mut prev = GENESIS.to_owned();
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let seq = i as i64 + 1;
                let hash = chain_hash(&prev, seq, &event);
                let stored = Event {
                    seq,
                    event,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                stored
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use crate::attendance::event::modality::{AUDIO_ONLY, AUDIO_VIDEO};
    use chrono::Duration;
    use chrono_tz::America::New_York;
    use proptest::prelude::*;

    /// Monday 2025-03-03 09:00 in New York; 50 minutes, window to +60 min.
    fn start() -> DateTime<Utc> {
        utc(2025, 3, 3, 14, 0)
    }

    fn individual() -> Session {
        session(
            1,
            SessionKind::Individual,
            start(),
            50,
            New_York,
            &[("p1", RosterRole::Patient)],
        )
    }

    /// What one row must say; computed by hand from the script.
    struct Row {
        id: &'static str,
        attended: i64,
        minutes: i64,
        present: i64,
        audio_only: i64,
        late: i64,
        early: i64,
        disconnects: usize,
        reasons: &'static [&'static str],
    }

    const fn row(id: &'static str, attended: i64, minutes: i64, present: i64) -> Row {
        Row {
            id,
            attended,
            minutes,
            present,
            audio_only: 0,
            late: 0,
            early: 0,
            disconnects: 0,
            reasons: &[],
        }
    }

    struct Case {
        name: &'static str,
        script: fn(&mut Ledger),
        /// Seconds after the start; `None`: long after the session.
        now: Option<i64>,
        head_count: usize,
        rows: Vec<Row>,
    }

    fn check(session: &Session, case: &Case) {
        let mut ledger = Ledger::new(session);
        (case.script)(&mut ledger);
        let now = match case.now {
            Some(secs) => session.starts_at + Duration::seconds(secs),
            None => session.ends_at + Duration::hours(3),
        };
        let report = session_report(session, &ledger.events(), None, now);
        assert_eq!(
            report.head_count, case.head_count,
            "{}: head count",
            case.name
        );
        assert_eq!(
            report.participants.len(),
            session.roster.len(),
            "{}",
            case.name
        );
        for want in &case.rows {
            let got = report
                .participants
                .iter()
                .find(|p| p.participant_id == want.id)
                .unwrap_or_else(|| panic!("{}: no row for {}", case.name, want.id));
            let ctx = format!("{} / {}", case.name, want.id);
            assert_eq!(got.attended_seconds, want.attended, "{ctx}: attended");
            assert_eq!(got.attended_minutes, want.minutes, "{ctx}: minutes");
            assert_eq!(got.present_seconds, want.present, "{ctx}: present");
            assert_eq!(got.audio_only_seconds, want.audio_only, "{ctx}: audio only");
            assert_eq!(got.late_seconds, want.late, "{ctx}: late");
            assert_eq!(got.early_leave_seconds, want.early, "{ctx}: early");
            assert_eq!(got.disconnects, want.disconnects, "{ctx}: disconnects");
            let reasons: Vec<&str> = got
                .intervals
                .iter()
                .map(|i| i.end_reason.as_str())
                .collect();
            assert_eq!(reasons, want.reasons, "{ctx}: intervals");
        }
    }

    #[test]
    fn individual_sessions() {
        let cases = vec![
            Case {
                name: "patient +10..+70 s, clinician +0..+120 s",
                script: |l| {
                    l.clinician(0, s(120)).join(s(10), "p1", "p1-a").leave(
                        s(70),
                        "p1",
                        "p1-a",
                        "left",
                    );
                },
                now: None,
                head_count: 1,
                rows: vec![
                    Row {
                        late: 10,
                        early: 2930,
                        reasons: &["left"],
                        ..row("p1", 60, 1, 60)
                    },
                    Row {
                        early: 2880,
                        reasons: &["left"],
                        ..row(CLIN, 120, 2, 120)
                    },
                ],
            },
            Case {
                name: "a reconnect gap is not attended and counts one disconnect",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .leave(s(100), "p1", "p1-a", "network")
                        .join(s(130), "p1", "p1-b")
                        .leave(s(3000), "p1", "p1-b", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    disconnects: 1,
                    reasons: &["network", "left"],
                    ..row("p1", 2970, 49, 2970)
                }],
            },
            Case {
                name: "two overlapping devices are not counted twice",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .join(s(50), "p1", "p1-b")
                        .leave(s(100), "p1", "p1-a", "left")
                        .leave(s(150), "p1", "p1-b", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    early: 2850,
                    reasons: &["left", "left"],
                    ..row("p1", 150, 2, 150)
                }],
            },
            Case {
                name: "an audio-only stretch splits the interval",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .media(s(30), "p1", "p1-a", AUDIO_ONLY)
                        .media(s(90), "p1", "p1-a", AUDIO_VIDEO)
                        .leave(s(120), "p1", "p1-a", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    audio_only: 60,
                    early: 2880,
                    reasons: &[MEDIA_CHANGED, MEDIA_CHANGED, "left"],
                    ..row("p1", 120, 2, 120)
                }],
            },
            Case {
                name: "overlap of an audio-only and a video device is video",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join_audio(0, "p1", "p1-a")
                        .join(s(50), "p1", "p1-b")
                        .leave(s(100), "p1", "p1-a", "left")
                        .leave(s(150), "p1", "p1-b", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    audio_only: 50,
                    early: 2850,
                    reasons: &["left", "left"],
                    ..row("p1", 150, 2, 150)
                }],
            },
            Case {
                name: "a change of modality at the joining millisecond relabels",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .media(0, "p1", "p1-a", AUDIO_ONLY)
                        .media(s(10), "p1", "p1-a", AUDIO_ONLY)
                        .leave(s(3000), "p1", "p1-a", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    audio_only: 3000,
                    reasons: &["left"],
                    ..row("p1", 3000, 50, 3000)
                }],
            },
            Case {
                name: "late and early leave",
                script: |l| {
                    l.clinician(0, s(3000)).join(s(300), "p1", "p1-a").leave(
                        s(2400),
                        "p1",
                        "p1-a",
                        "left",
                    );
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    late: 300,
                    early: 600,
                    reasons: &["left"],
                    ..row("p1", 2100, 35, 2100)
                }],
            },
            Case {
                name: "time without the clinician is presence, not attendance",
                script: |l| {
                    l.clinician(s(100), s(400)).join(0, "p1", "p1-a").leave(
                        s(600),
                        "p1",
                        "p1-a",
                        "left",
                    );
                },
                now: None,
                head_count: 1,
                rows: vec![
                    Row {
                        early: 2400,
                        reasons: &["left"],
                        ..row("p1", 300, 5, 600)
                    },
                    Row {
                        late: 100,
                        early: 2600,
                        reasons: &["left"],
                        ..row(CLIN, 300, 5, 300)
                    },
                ],
            },
            Case {
                name: "59.999 s is 59 seconds and 0 minutes",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .leave(59_999, "p1", "p1-a", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    early: 2940,
                    reasons: &["left"],
                    ..row("p1", 59, 0, 59)
                }],
            },
            Case {
                name: "119.999 s is 1 minute",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .leave(119_999, "p1", "p1-a", "network");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    early: 2880,
                    disconnects: 1,
                    reasons: &["network"],
                    ..row("p1", 119, 1, 119)
                }],
            },
            Case {
                name: "the window clips an early join and the overrun",
                script: |l| {
                    l.clinician(-s(300), s(3900))
                        .join(-s(120), "p1", "p1-a")
                        .leave(s(3700), "p1", "p1-a", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![
                    Row {
                        reasons: &["left"],
                        ..row("p1", 3600, 60, 3600)
                    },
                    Row {
                        reasons: &["left"],
                        ..row(CLIN, 3600, 60, 3600)
                    },
                ],
            },
            Case {
                name: "a live session counts open intervals up to now",
                script: |l| {
                    l.join(0, CLIN, "c1-a").join(s(30), "p1", "p1-a");
                },
                now: Some(90),
                head_count: 1,
                rows: vec![
                    Row {
                        late: 30,
                        reasons: &[OPEN],
                        ..row("p1", 60, 1, 60)
                    },
                    Row {
                        reasons: &[OPEN],
                        ..row(CLIN, 90, 1, 90)
                    },
                ],
            },
            Case {
                name: "session_closed closes everyone",
                script: |l| {
                    l.join(0, CLIN, "c1-a")
                        .join(0, "p1", "p1-a")
                        .join(s(60), "p1", "p1-b")
                        .closed(s(1800))
                        .leave(s(1900), "p1", "p1-a", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![
                    Row {
                        early: 1200,
                        reasons: &["session_end", "session_end"],
                        ..row("p1", 1800, 30, 1800)
                    },
                    Row {
                        early: 1200,
                        reasons: &["session_end"],
                        ..row(CLIN, 1800, 30, 1800)
                    },
                ],
            },
            Case {
                name: "removed and replaced end intervals",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .join(s(500), "p1", "p1-b")
                        .replaced(s(500), "p1", "p1-a")
                        .removed(s(900), "p1", "p1-b")
                        .leave(s(950), "p1", "p1-b", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    early: 2100,
                    reasons: &["replaced", "removed"],
                    ..row("p1", 900, 15, 900)
                }],
            },
            Case {
                name: "waiting is not presence; the absent have a zero row",
                script: |l| {
                    l.clinician(0, s(3000)).waiting(0, "p1", "p1-a");
                },
                now: None,
                head_count: 0,
                rows: vec![row("p1", 0, 0, 0)],
            },
            Case {
                name: "without a clinician nothing is attended",
                script: |l| {
                    l.join(0, "p1", "p1-a")
                        .leave(s(600), "p1", "p1-a", "clinician_away");
                },
                now: None,
                head_count: 0,
                rows: vec![
                    Row {
                        early: 2400,
                        reasons: &["clinician_away"],
                        ..row("p1", 0, 0, 600)
                    },
                    row(CLIN, 0, 0, 0),
                ],
            },
            Case {
                name: "a left event without a reason ends as left",
                script: |l| {
                    l.clinician(0, s(3000)).join(0, "p1", "p1-a");
                    let mut e = l.events().pop().unwrap().event;
                    e.kind = EventKind::Left;
                    e.at += s(30);
                    e.reason = None;
                    e.modality = None;
                    l.events.push(e);
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    early: 2970,
                    reasons: &["left"],
                    ..row("p1", 30, 0, 30)
                }],
            },
        ];
        for case in &cases {
            check(&individual(), case);
        }
    }

    /// Issue 20, fault 1: a piece of presence ends at its connection's close,
    /// whatever was stamped after it.
    #[test]
    fn events_after_a_close_never_extend_presence() {
        let cases = vec![
            Case {
                // The clinician mutes a patient whose connection has silently
                // died: the mute is stamped 10 s after the last frame, the
                // loss is recorded (at the last frame) about 30 s later.
                name: "a mute stamped after a silent loss",
                script: |l| {
                    l.clinician(0, s(3600))
                        .join(0, "p1", "p1-a")
                        .media(s(3245), "p1", "p1-a", AUDIO_ONLY)
                        .leave(s(3235), "p1", "p1-a", "network");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    disconnects: 1,
                    reasons: &["network"],
                    ..row("p1", 3235, 53, 3235)
                }],
            },
            Case {
                // A video toggle after the last heartbeat, then a crash:
                // recovery closes at the heartbeat (+1805 s).
                name: "a video toggle after the last heartbeat, then a crash",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .media(s(600), "p1", "p1-a", AUDIO_ONLY)
                        .media(s(1807), "p1", "p1-a", AUDIO_VIDEO)
                        .leave(s(1805), "p1", "p1-a", "server_restart");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    audio_only: 1205,
                    early: 1195,
                    reasons: &[MEDIA_CHANGED, "server_restart"],
                    ..row("p1", 1805, 30, 1805)
                }],
            },
            Case {
                name: "the session's close trims a later-stamped change too",
                script: |l| {
                    l.join(0, CLIN, "c1-a")
                        .join(0, "p1", "p1-a")
                        .media(s(1210), "p1", "p1-a", AUDIO_ONLY)
                        .closed(s(1200));
                },
                now: None,
                head_count: 1,
                rows: vec![
                    Row {
                        early: 1800,
                        reasons: &["session_end"],
                        ..row("p1", 1200, 20, 1200)
                    },
                    Row {
                        early: 1800,
                        reasons: &["session_end"],
                        ..row(CLIN, 1200, 20, 1200)
                    },
                ],
            },
            Case {
                name: "a close before the joining time is one empty interval",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(s(600), "p1", "p1-a")
                        .media(s(610), "p1", "p1-a", AUDIO_ONLY)
                        .leave(s(590), "p1", "p1-a", "server_restart");
                },
                now: None,
                head_count: 0,
                rows: vec![Row {
                    late: 600,
                    early: 2400,
                    reasons: &["server_restart"],
                    ..row("p1", 0, 0, 0)
                }],
            },
        ];
        for case in &cases {
            check(&individual(), case);
        }
        // The mute case, in full: last leave at the last frame.
        let mut l = Ledger::new(&individual());
        (cases[0].script)(&mut l);
        let r = session_report(
            &individual(),
            &l.events(),
            None,
            start() + Duration::hours(3),
        );
        let p = &r.participants[1];
        assert_eq!(p.last_leave.as_deref(), Some("2025-03-03T14:53:55.000Z"));
        assert_eq!(p.intervals.len(), 1);
        assert_eq!(p.intervals[0].end, "2025-03-03T14:53:55.000Z");
        assert_eq!(p.attended_audio_only_seconds, 0);
    }

    /// Issue 20, fault 2: the ledger the room writes for a reconnect. The
    /// room ends the old connection at its last sign of life; when it had
    /// gone silent, as a loss (`left`, `network`) before the `replaced`.
    #[test]
    fn a_reconnect_ends_the_old_connection_at_its_last_sign_of_life() {
        let cases = vec![
            Case {
                name: "dead for 20 s before the reconnect: one disconnect",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .leave(s(1000), "p1", "p1-a", "network")
                        .replaced(s(1020), "p1", "p1-a")
                        .join(s(1022), "p1", "p1-b")
                        .leave(s(3000), "p1", "p1-b", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    disconnects: 1,
                    reasons: &["network", "left"],
                    ..row("p1", 2978, 49, 2978)
                }],
            },
            Case {
                name: "a second device while the first is alive: no disconnect",
                script: |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .replaced(s(1000), "p1", "p1-a")
                        .join(s(1002), "p1", "p1-b")
                        .leave(s(3000), "p1", "p1-b", "left");
                },
                now: None,
                head_count: 1,
                rows: vec![Row {
                    reasons: &["replaced", "left"],
                    ..row("p1", 2998, 49, 2998)
                }],
            },
        ];
        for case in &cases {
            check(&individual(), case);
        }
    }

    /// (name, script, conjoint seconds, partner-only seconds)
    type CoupleCase = (&'static str, fn(&mut Ledger), i64, i64);

    #[test]
    fn couple_sessions() {
        let couple = session(
            2,
            SessionKind::Couple,
            start(),
            50,
            New_York,
            &[("p1", RosterRole::Patient), ("p2", RosterRole::Partner)],
        );
        let cases: Vec<CoupleCase> = vec![
            (
                "patient 0..1200, partner 0..1800, clinician throughout",
                |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p1", "p1-a")
                        .leave(s(1200), "p1", "p1-a", "left")
                        .join(0, "p2", "p2-a")
                        .leave(s(1800), "p2", "p2-a", "left");
                },
                1200,
                600,
            ),
            (
                "the clinician leaves at 1500",
                |l| {
                    l.clinician(0, s(1500))
                        .join(0, "p1", "p1-a")
                        .leave(s(1200), "p1", "p1-a", "left")
                        .join(0, "p2", "p2-a")
                        .leave(s(1800), "p2", "p2-a", "left");
                },
                1200,
                300,
            ),
            (
                "partner alone first, then both (patient on two devices)",
                |l| {
                    l.clinician(0, s(3000))
                        .join(0, "p2", "p2-a")
                        .join(s(600), "p1", "p1-a")
                        .join(s(700), "p1", "p1-b")
                        .leave(s(800), "p1", "p1-a", "network")
                        .leave(s(3000), "p1", "p1-b", "left")
                        .leave(s(3000), "p2", "p2-a", "left");
                },
                2400,
                600,
            ),
            ("nobody came", |_| {}, 0, 0),
        ];
        for (name, script, conjoint, partner_only) in cases {
            let mut ledger = Ledger::new(&couple);
            script(&mut ledger);
            let r = session_report(&couple, &ledger.events(), None, couple.closes_at());
            assert_eq!(r.conjoint_seconds, conjoint, "{name}");
            assert_eq!(r.partner_only_seconds, partner_only, "{name}");
            assert_eq!(r.conjoint_minutes, conjoint / 60, "{name}");
            assert_eq!(r.partner_only_minutes, partner_only / 60, "{name}");
            assert_eq!(r.head_count, usize::from(conjoint > 0), "{name}");
        }
        // Other kinds never report couple numbers.
        let mut ledger = Ledger::new(&individual());
        ledger.clinician(0, s(3000)).join(0, "p1", "p1-a");
        let r = session_report(
            &individual(),
            &ledger.events(),
            None,
            start() + Duration::hours(2),
        );
        assert_eq!((r.conjoint_seconds, r.partner_only_seconds), (0, 0));
    }

    #[test]
    fn group_head_count_is_distinct_patients_with_attended_time() {
        let group = session(
            3,
            SessionKind::Group,
            start(),
            50,
            New_York,
            &[
                ("a", RosterRole::Patient),
                ("b", RosterRole::Patient),
                ("c", RosterRole::Patient),
                ("d", RosterRole::Patient),
                ("e", RosterRole::Partner),
                ("o", RosterRole::Observer),
            ],
        );
        let mut l = Ledger::new(&group);
        l.clinician(0, s(3000))
            // a: two devices, counted once.
            .join(0, "a", "a-1")
            .join(s(10), "a", "a-2")
            .leave(s(3000), "a", "a-1", "left")
            .leave(s(3000), "a", "a-2", "left")
            // b: only waited.
            .waiting(0, "b", "b-1")
            // c: came after the clinician left.
            .join(s(3000), "c", "c-1")
            .leave(s(3300), "c", "c-1", "left")
            // d: a short stay.
            .join(s(100), "d", "d-1")
            .leave(s(200), "d", "d-1", "left")
            // e and o are not patients.
            .join(0, "e", "e-1")
            .join(0, "o", "o-1");
        let r = session_report(&group, &l.events(), None, group.closes_at());
        assert_eq!(r.head_count, 2);
        let by_id = |id: &str| {
            r.participants
                .iter()
                .find(|p| p.participant_id == id)
                .unwrap()
        };
        assert_eq!(by_id("a").attended_seconds, 3000);
        assert_eq!(by_id("c").present_seconds, 300);
        assert_eq!(by_id("c").attended_seconds, 0);
        assert_eq!(by_id("d").attended_minutes, 1);
        assert_eq!(by_id("e").attended_seconds, 3000);
        assert_eq!(by_id("o").last_leave, None);
        assert!(by_id("o").still_present);
        assert_eq!((r.conjoint_seconds, r.partner_only_seconds), (0, 0));
        // Roster order, clinician first.
        let ids: Vec<&str> = r
            .participants
            .iter()
            .map(|p| p.participant_id.as_str())
            .collect();
        assert_eq!(ids, ["c1", "a", "b", "c", "d", "e", "o"]);
    }

    #[test]
    fn times_attestation_and_annotations() {
        let session = individual();
        let mut l = Ledger::new(&session);
        l.clinician(0, s(3000))
            .attest(s(9), "p1", "NJ", false)
            .attest(s(10), "p1", "NY", true)
            .join(s(10) + 5, "p1", "p1-a")
            .annotate(s(20), Some("p1"), "left early: crisis")
            .annotate(s(21), None, "room note")
            .leave(s(70), "p1", "p1-a", "left");
        let plain: Vec<Event> = l
            .events()
            .into_iter()
            .filter(|e| e.event.kind != EventKind::Annotation)
            .collect();
        let now = start() + Duration::hours(2);
        let r = session_report(&session, &l.events(), Some("NOTICE"), now);
        let p = &r.participants[1];
        assert_eq!(p.first_join.as_deref(), Some("2025-03-03T14:00:10.005Z"));
        assert_eq!(p.last_leave.as_deref(), Some("2025-03-03T14:01:10.000Z"));
        assert_eq!(p.intervals[0].start, "2025-03-03T14:00:10.005Z");
        assert_eq!(p.intervals[0].connection.as_deref(), Some("p1-a"));
        assert_eq!(
            p.attestation,
            Some(Attestation {
                state: Some("NY".into()),
                at_home: Some(true),
                private: Some(true),
                at: "2025-03-03T14:00:10.000Z".into(),
            })
        );
        assert_eq!(p.annotations.len(), 1);
        assert_eq!(p.annotations[0].text.as_deref(), Some("left early: crisis"));
        assert_eq!(p.annotations[0].by.as_deref(), Some(CLIN));
        assert_eq!(r.annotations.len(), 1);
        assert_eq!(r.participants[0].attestation, None);
        assert_eq!(r.notice.as_deref(), Some("NOTICE"));
        assert_eq!(r.generated_at, "2025-03-03T16:00:00.000Z");
        assert_eq!(r.status, SessionStatus::Ended);
        assert_eq!(r.session.service_date, "2025-03-03");
        assert_eq!(r.session.starts_at, "2025-03-03T14:00:00.000Z");
        assert_eq!(r.session.closes_at, "2025-03-03T15:00:00.000Z");
        // Annotations change no number.
        let without = session_report(&session, &plain, Some("NOTICE"), now);
        for (a, b) in r.participants.iter().zip(&without.participants) {
            let mut a = a.clone();
            a.annotations.clear();
            assert_eq!(&a, b);
        }
    }

    #[test]
    fn service_date_is_local() {
        // 23:30 in New York is already the next day in UTC.
        let late = session(
            4,
            SessionKind::Individual,
            utc(2025, 3, 4, 4, 30),
            50,
            New_York,
            &[("p1", RosterRole::Patient)],
        );
        let r = session_report(&late, &[], None, late.starts_at);
        assert_eq!(r.session.service_date, "2025-03-03");
        assert_eq!(r.session.timezone, "America/New_York");
        assert_eq!(r.status, SessionStatus::Scheduled);
    }

    #[test]
    fn other_sessions_and_strangers_are_ignored_and_seq_orders() {
        let session = individual();
        let other = session_with_id(99);
        let mut mine = Ledger::new(&session);
        mine.clinician(0, s(3000))
            .join(0, "p1", "p1-a")
            .leave(s(600), "p1", "p1-a", "left");
        mine.join(0, "stranger", "x-1");
        let mut theirs = Ledger::new(&other);
        theirs.clinician(0, s(3000)).join(0, "p1", "p1-z");
        let mut all: Vec<NewEvent> = mine.events.clone();
        all.extend(theirs.events.clone());
        let now = start() + Duration::hours(2);
        let r = session_report(&session, &stored(all), None, now);
        assert_eq!(r.participants[1].attended_seconds, 600);
        assert_eq!(r.participants.len(), 2);
        // Input order does not matter; sequence numbers do.
        let mut reversed = mine.events();
        reversed.reverse();
        assert_eq!(
            session_report(&session, &reversed, None, now),
            session_report(&session, &mine.events(), None, now)
        );
    }

    fn session_with_id(n: u128) -> Session {
        session(
            n,
            SessionKind::Individual,
            start(),
            50,
            New_York,
            &[("p1", RosterRole::Patient)],
        )
    }

    #[test]
    fn breakout_time_is_listed_per_couple() {
        let session = individual();
        let mut l = Ledger::new(&session);
        l.clinician(0, s(3000))
            .breakout(s(600), "h1", Some(false))
            // A change of length or company is the same breakout.
            .breakout(s(700), "h1", Some(true))
            .breakout(s(900), "h1", None)
            .breakout(s(1000), "h2", Some(false))
            .breakout(s(1200), "h1", Some(false))
            .breakout(s(1290), "h1", None)
            // An end without a start is nothing.
            .breakout(s(1300), "h3", None);
        let r = session_report(
            &session,
            &l.events(),
            None,
            start() + Duration::seconds(1500),
        );
        let v = serde_json::to_value(&r.breakouts).unwrap();
        assert_eq!(v[0]["household"], "h1");
        assert_eq!(v[0]["seconds"], 300 + 90);
        assert_eq!(v[0]["minutes"], 6);
        assert_eq!(v[0]["intervals"].as_array().unwrap().len(), 2);
        assert_eq!(v[0]["intervals"][0]["with_clinician"], false);
        assert_eq!(v[1]["household"], "h2");
        assert_eq!(v[1]["seconds"], 500, "still running: up to now");
        assert_eq!(v[1]["intervals"][0]["open"], true);
        assert_eq!(r.breakouts.len(), 2);
        // The room's close ends it.
        l.closed(s(1600));
        let r = session_report(
            &session,
            &l.events(),
            None,
            start() + Duration::seconds(4000),
        );
        assert_eq!(r.breakouts[1].seconds, 600);
        assert!(!r.breakouts[1].intervals[0].open);
    }

    #[test]
    fn json_has_the_contract_fields() {
        let session = individual();
        let mut l = Ledger::new(&session);
        l.clinician(0, s(3000))
            .attest(0, "p1", "NY", true)
            .join(0, "p1", "p1-a");
        let r = session_report(&session, &l.events(), None, start() + Duration::minutes(5));
        let v = serde_json::to_value(&r).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        for k in [
            "session",
            "notice",
            "head_count",
            "conjoint_seconds",
            "partner_only_seconds",
            "participants",
        ] {
            assert!(keys(&v).contains(&k.to_string()), "{k}");
        }
        assert!(v["notice"].is_null());
        for k in [
            "id",
            "title",
            "kind",
            "starts_at",
            "ends_at",
            "timezone",
            "service_date",
        ] {
            assert!(keys(&v["session"]).contains(&k.to_string()), "session.{k}");
        }
        assert_eq!(v["session"]["kind"], "individual");
        let p = &v["participants"][1];
        for k in [
            "participant_id",
            "role",
            "attended_seconds",
            "attended_minutes",
            "present_seconds",
            "audio_only_seconds",
            "first_join",
            "last_leave",
            "late_seconds",
            "early_leave_seconds",
            "disconnects",
            "intervals",
            "attestation",
        ] {
            assert!(keys(p).contains(&k.to_string()), "participant.{k}");
        }
        assert!(!keys(p).contains(&"name".to_string()));
        assert!(!keys(p).contains(&"attended_ms".to_string()));
        assert_eq!(p["role"], "patient");
        assert_eq!(p["intervals"][0]["modality"], "audio_video");
        assert_eq!(p["intervals"][0]["end_reason"], "open");
        assert!(p["last_leave"].is_null());
        assert_eq!(
            keys(&p["attestation"]),
            ["at", "at_home", "private", "state"]
                .map(String::from)
                .to_vec()
        );
        assert_eq!(v["participants"][0]["role"], "clinician");
    }

    /// One connection in a generated timeline: whole seconds relative to the
    /// start, and an optional switch of modality part-way.
    #[derive(Debug, Clone)]
    struct Conn {
        start: i64,
        len: i64,
        audio_only_first: bool,
        switch_after: Option<i64>,
        network: bool,
    }

    fn arb_conns() -> impl Strategy<Value = Vec<Conn>> {
        prop::collection::vec(
            (
                -700i64..4000,
                1i64..1500,
                any::<bool>(),
                prop::option::of(0i64..1500),
                any::<bool>(),
            )
                .prop_map(|(start, len, audio_only_first, switch_after, network)| {
                    Conn {
                        start,
                        len,
                        audio_only_first,
                        switch_after: switch_after.filter(|&t| t < len),
                        network,
                    }
                }),
            0..5,
        )
    }

    /// The modality of a connection during second `t`, if it is open then.
    fn modality_at(c: &Conn, t: i64) -> Option<bool> {
        if t < c.start || t >= c.start + c.len {
            return None;
        }
        let switched = c.switch_after.is_some_and(|k| t >= c.start + k);
        Some(c.audio_only_first != switched)
    }

    fn script(l: &mut Ledger, who: &str, conns: &[Conn], all: &mut Vec<(i64, usize, NewEvent)>) {
        // Each connection's own events, then merged by time across people.
        for (n, c) in conns.iter().enumerate() {
            let id = format!("{who}-{n}");
            let mut tmp = Ledger::new(&l.session);
            if c.audio_only_first {
                tmp.join_audio(s(c.start), who, &id);
            } else {
                tmp.join(s(c.start), who, &id);
            }
            if let Some(k) = c.switch_after {
                let m = if c.audio_only_first {
                    AUDIO_VIDEO
                } else {
                    AUDIO_ONLY
                };
                tmp.media(s(c.start + k), who, &id, m);
            }
            tmp.leave(
                s(c.start + c.len),
                who,
                &id,
                if c.network { "network" } else { "left" },
            );
            for (i, e) in tmp.events.into_iter().enumerate() {
                all.push((e.at, i, e));
            }
        }
    }

    proptest! {
        /// Every number agrees with counting seconds one by one.
        #[test]
        fn numbers_agree_with_counting_seconds(patient in arb_conns(), clinician in arb_conns()) {
            let session = individual();
            let mut l = Ledger::new(&session);
            let mut all = Vec::new();
            script(&mut l, "p1", &patient, &mut all);
            script(&mut l, CLIN, &clinician, &mut all);
            // By time; at equal times a connection's own order is kept and
            // closing before opening does not matter for membership.
            all.sort_by_key(|(at, i, _)| (*at, *i));
            let events = stored(all.into_iter().map(|(_, _, e)| e).collect());
            let r = session_report(&session, &events, None, start() + Duration::hours(5));
            let (mut present, mut attended, mut audio_only) = (0, 0, 0);
            for t in 0..3600 {
                let here: Vec<bool> = patient.iter().filter_map(|c| modality_at(c, t)).collect();
                let clin = clinician.iter().any(|c| modality_at(c, t).is_some());
                if !here.is_empty() {
                    present += 1;
                    attended += i64::from(clin);
                    audio_only += i64::from(here.iter().all(|&ao| ao));
                }
            }
            let p = &r.participants[1];
            prop_assert_eq!(p.present_seconds, present);
            prop_assert_eq!(p.attended_seconds, attended);
            prop_assert_eq!(p.attended_minutes, attended / 60);
            prop_assert_eq!(p.audio_only_seconds, audio_only);
            prop_assert!(p.attended_audio_only_seconds <= p.attended_seconds.min(p.audio_only_seconds));
            prop_assert_eq!(p.disconnects, patient.iter().filter(|c| c.network).count());
            let first = patient.iter().map(|c| c.start).min();
            prop_assert_eq!(p.late_seconds, first.map_or(0, |f| f.max(0)));
            let last = patient.iter().map(|c| c.start + c.len).max();
            prop_assert_eq!(p.early_leave_seconds, last.map_or(0, |l| (3000 - l).max(0)));
            prop_assert_eq!(r.head_count, usize::from(attended > 0));
            // The clinician's attended time is their presence.
            prop_assert_eq!(r.participants[0].attended_seconds, r.participants[0].present_seconds);
        }

        /// Attended ≤ present ≤ window, whatever the script.
        #[test]
        fn attended_never_exceeds_presence(patient in arb_conns(), clinician in arb_conns(), now in 0i64..6000) {
            let session = individual();
            let mut l = Ledger::new(&session);
            let mut all = Vec::new();
            script(&mut l, "p1", &patient, &mut all);
            script(&mut l, CLIN, &clinician, &mut all);
            all.sort_by_key(|(at, i, _)| (*at, *i));
            let events = stored(all.into_iter().map(|(_, _, e)| e).collect());
            let r = session_report(&session, &events, None, start() + Duration::seconds(now));
            for p in &r.participants {
                prop_assert!(p.attended_seconds <= p.present_seconds);
                prop_assert!(p.present_seconds <= 3600);
                prop_assert!(p.audio_only_seconds <= p.present_seconds);
                prop_assert!(p.attended_minutes * 60 <= p.attended_seconds);
            }
        }
    }
}

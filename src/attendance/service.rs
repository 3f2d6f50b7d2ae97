//! Reading attendance, always audited: the one path by which the API and
//! the CLI produce reports, so that every export is recorded (who, when,
//! what filter, how many rows, the SHA-256 of the file) and carries the
//! configured 42 CFR Part 2 notice.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::json;
use uuid::Uuid;

use super::chain_check::{Break, ChainWatch};
use super::event::{EventKind, NewEvent};
use super::export;
use super::ledger::{verify, Ledger, LedgerError, LedgerFailure, Verification};
use super::report::session_report;
use super::weekly::{parse_week, week_bounds, weekly_report};
use crate::auth::RosterRole;
use crate::config::AttendanceSection;
use crate::schedule::{Session, SessionStatus};
use crate::store::{ExportRecord, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    pub(crate) fn parse(s: Option<&str>) -> Result<Format, String> {
        match s.unwrap_or("json") {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(format!("unknown format {other:?}; use json or csv")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// A produced file.
#[derive(Debug, Clone)]
pub struct Export {
    pub bytes: Vec<u8>,
    pub rows: usize,
    pub sha256: String,
    pub format: Format,
}

#[derive(Debug, thiserror::Error)]
pub enum AttendanceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not act on this (a clinician not on the session's
    /// roster).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The ledger cannot be written (or holds events not yet on disk): a
    /// report now could be incomplete, and its export cannot be audited.
    #[error(transparent)]
    Unavailable(#[from] LedgerFailure),
}

/// The audited reader. Cheap to clone.
#[derive(Clone)]
pub struct Attendance {
    store: Store,
    ledger: Ledger,
    config: AttendanceSection,
    program_timezone: Tz,
}

impl Attendance {
    pub fn new(ledger: Ledger, config: AttendanceSection, program_timezone: Tz) -> Attendance {
        Attendance {
            store: ledger.store().clone(),
            ledger,
            config,
            program_timezone,
        }
    }

    /// Whether the ledger can be written now (`/healthz`).
    pub(crate) async fn ledger_health(&self) -> Result<(), LedgerFailure> {
        self.ledger.health().await
    }

    /// Nothing is reported while the ledger cannot be written: events may
    /// be waiting in memory, and the export could not be audited.
    async fn complete(&self) -> Result<(), AttendanceError> {
        Ok(self.ledger.health().await?)
    }

    fn notice(&self) -> Option<&str> {
        self.config
            .notice_enabled
            .then_some(self.config.notice.as_str())
    }

    async fn audit(
        &self,
        actor: &str,
        what: &str,
        filter: serde_json::Value,
        format: Format,
        (bytes, rows): (Vec<u8>, usize),
        now: DateTime<Utc>,
    ) -> Result<Export, AttendanceError> {
        let sha256 = export::sha256_hex(&bytes);
        self.store
            .record_export(&ExportRecord {
                id: 0,
                at: now.timestamp_millis(),
                actor: actor.to_owned(),
                what: what.to_owned(),
                filter: filter.to_string(),
                format: format.as_str().to_owned(),
                rows: rows as i64,
                sha256: sha256.clone(),
            })
            .await?;
        tracing::info!(actor, what, %filter, rows, sha256 = %sha256, "attendance exported");
        Ok(Export {
            bytes,
            rows,
            sha256,
            format,
        })
    }

    async fn session(&self, id: Uuid) -> Result<Session, AttendanceError> {
        self.store
            .session(id)
            .await?
            .ok_or(AttendanceError::NotFound("session"))
    }

    /// One session's attendance.
    pub(crate) async fn session_export(
        &self,
        id: Uuid,
        format: Format,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Export, AttendanceError> {
        self.complete().await?;
        let session = self.session(id).await?;
        let events = self.store.session_events(&id.to_string()).await?;
        let report = session_report(&session, &events, self.notice(), now);
        let rendered = match format {
            Format::Json => export::session_json(&report),
            Format::Csv => export::session_csv(&report),
        };
        self.audit(
            actor,
            "session",
            json!({ "session": id }),
            format,
            rendered,
            now,
        )
        .await
    }

    /// Every session overlapping `[from, to)`.
    pub(crate) async fn range_export(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        format: Format,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Export, AttendanceError> {
        if to <= from {
            return Err(AttendanceError::Invalid {
                field: "to",
                message: "must be after from".into(),
            });
        }
        self.complete().await?;
        let mut reports = Vec::new();
        for session in self
            .store
            .sessions_between(Some(from), Some(to), 10_000)
            .await?
        {
            let events = self.store.session_events(&session.id.to_string()).await?;
            let report = session_report(&session, &events, self.notice(), now);
            // A cancelled session is left out unless some of it was attended.
            if report.status == SessionStatus::Cancelled
                && report.participants.iter().all(|p| p.attended_ms == 0)
            {
                continue;
            }
            reports.push(report);
        }
        let rendered = match format {
            Format::Json => export::range_json(&reports, self.notice()),
            Format::Csv => export::range_csv(&reports, self.notice()),
        };
        let filter = json!({ "from": from, "to": to });
        self.audit(actor, "range", filter, format, rendered, now)
            .await
    }

    /// The weekly IOP report for `week` (`YYYY-Www`) in the program's zone.
    pub async fn weekly_export(
        &self,
        week: &str,
        format: Format,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Export, AttendanceError> {
        let (year, number) = parse_week(week).map_err(|message| AttendanceError::Invalid {
            field: "week",
            message,
        })?;
        self.complete().await?;
        let (from, to) = week_bounds(year, number, self.program_timezone, self.config.week_start);
        let mut sessions = Vec::new();
        // A session belongs to the week of its service date in its own zone,
        // which is up to 26 hours from the program's: two days either side
        // hold every candidate; the report picks the ones of this week.
        let window = (from - Duration::days(2), to + Duration::days(2));
        for session in self
            .store
            .sessions_between(Some(window.0), Some(window.1), 100_000)
            .await?
        {
            let events = self.store.session_events(&session.id.to_string()).await?;
            sessions.push((session, events));
        }
        let report = weekly_report(&sessions, week, self.program_timezone, &self.config, now)
            .map_err(|message| AttendanceError::Invalid {
                field: "week",
                message,
            })?;
        let rendered = match format {
            Format::Json => export::weekly_json(&report),
            Format::Csv => export::weekly_csv(&report),
        };
        self.audit(
            actor,
            "weekly",
            json!({ "week": week }),
            format,
            rendered,
            now,
        )
        .await
    }

    /// Recomputes the hash chain (recorded in the audit log too).
    pub(crate) async fn verify(
        &self,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Verification, AttendanceError> {
        self.complete().await?;
        let verification = verify(&self.store).await?;
        if let Verification::Broken {
            seq,
            expected_seq,
            problem,
        } = &verification
        {
            self.report_break(
                &Break {
                    seq: *seq,
                    expected_seq: *expected_seq,
                    problem: problem.clone(),
                },
                now,
            )
            .await?;
        }
        let body = serde_json::to_vec(&verification).expect("serialisable");
        let rows = match &verification {
            Verification::Ok { events, .. } => *events as usize,
            Verification::Broken { .. } => 0,
        };
        self.audit(actor, "verify", json!({}), Format::Json, (body, rows), now)
            .await?;
        Ok(verification)
    }

    /// The scheduled verification (`attendance.verify_every_secs`): a break
    /// `watch` has not seen reported yet is logged and raised as a
    /// `ledger.verify_failed` webhook. Not an export, so not audited.
    pub(crate) async fn check_chain(
        &self,
        watch: &mut ChainWatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Break>, AttendanceError> {
        self.complete().await?;
        let verification = verify(&self.store).await?;
        let found = watch.observe(&verification, now);
        if let Some(found) = &found {
            self.report_break(found, now).await?;
        }
        Ok(found)
    }

    /// A broken chain: an error in the log, and the webhook event.
    async fn report_break(&self, found: &Break, now: DateTime<Utc>) -> Result<(), AttendanceError> {
        tracing::error!(
            seq = found.seq,
            expected_seq = found.expected_seq,
            problem = %found.problem,
            "the attendance ledger failed verification"
        );
        let failed =
            crate::store::outbox::verify_failed(found.seq, found.expected_seq, &found.problem, now);
        self.store
            .record_webhook_events(&[failed], now.timestamp_millis())
            .await?;
        Ok(())
    }

    /// A clinician's note on a participant's attendance: a new event; no
    /// number changes. `clinician`: the roster id of the clinician writing
    /// it, who must be the session's clinician (`None`: an admin, any
    /// session).
    pub(crate) async fn annotate(
        &self,
        session: Uuid,
        participant: &str,
        text: &str,
        by: &str,
        clinician: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, AttendanceError> {
        let s = self.session(session).await?;
        if let Some(clinician) = clinician {
            let on_roster = s
                .roster
                .iter()
                .any(|p| p.id == clinician && p.role == RosterRole::Clinician);
            if !on_roster {
                return Err(AttendanceError::Forbidden(
                    "a clinician may annotate only sessions where they are the clinician on the roster",
                ));
            }
        }
        let member = s
            .member(participant)
            .ok_or(AttendanceError::NotFound("participant"))?;
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 500 {
            return Err(AttendanceError::Invalid {
                field: "text",
                message: "must be 1 to 500 characters".into(),
            });
        }
        let seq = self
            .ledger
            .append(vec![NewEvent {
                at: now.timestamp_millis(),
                session: session.to_string(),
                participant: Some(participant.to_owned()),
                role: Some(member.role.as_str().to_owned()),
                connection: None,
                kind: EventKind::Annotation,
                reason: None,
                modality: None,
                detail: Some(json!({ "text": text, "by": by })),
            }])
            .await?;
        tracing::info!(session = %session, participant, by, seq, "attendance annotated");
        Ok(seq)
    }

    pub(crate) async fn audit_log(&self) -> Result<Vec<ExportRecord>, AttendanceError> {
        Ok(self.store.exports().await?)
    }
}

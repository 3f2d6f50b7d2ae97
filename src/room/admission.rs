//! Whether an invite lets its holder into a session right now.
//!
//! The signature proves the server issued the link; the roster decides
//! whether it still counts. This check runs on every join and every
//! reconnect, so a revoked, cancelled or expired link stops working at once
//! even though the token itself cannot be recalled.

use chrono::{DateTime, Utc};

use tandem_protocol::{DenialCode, ServerMessage};

use crate::auth::invite::{InviteClaims, TokenError};
use crate::schedule::{RosterEntry, Session, SessionStatus};

/// Why a link does not let its holder in. Each has a stable `code` (the
/// signaling protocol's `denied` codes) and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TokenInvalid,
    TokenExpired,
    NotYetOpen { opens_at: DateTime<Utc> },
    NotOnRoster,
    Revoked,
    Removed,
    SessionCancelled,
    SessionEnded,
}

impl Refusal {
    pub(crate) fn code(&self) -> DenialCode {
        match self {
            Refusal::TokenInvalid => DenialCode::TokenInvalid,
            Refusal::TokenExpired => DenialCode::TokenExpired,
            Refusal::NotYetOpen { .. } => DenialCode::NotYetOpen,
            Refusal::NotOnRoster => DenialCode::NotOnRoster,
            Refusal::Revoked => DenialCode::Revoked,
            Refusal::Removed => DenialCode::Removed,
            Refusal::SessionCancelled => DenialCode::SessionCancelled,
            Refusal::SessionEnded => DenialCode::SessionEnded,
        }
    }

    /// The `denied` message that tells the person.
    pub(crate) fn message(&self) -> ServerMessage {
        match self {
            Refusal::NotYetOpen { opens_at } => ServerMessage::not_yet_open(*opens_at),
            other => ServerMessage::denied(other.code()),
        }
    }
}

/// Decides whether a verified (or refused) token admits its holder to
/// `session` (the session named by the token's `sid`, `None` when no such
/// session exists) at `now`. On success returns the roster entry.
///
/// The session's own state is judged first (cancelled, ended), so people are
/// told the most useful reason; then the link's window; then the roster.
pub fn check_invite(
    token: Result<InviteClaims, TokenError>,
    session: Option<&Session>,
    now: DateTime<Utc>,
) -> Result<&RosterEntry, Refusal> {
    let (claims, window) = match token {
        Ok(claims) => (claims, None),
        Err(TokenError::Invalid) => return Err(Refusal::TokenInvalid),
        Err(TokenError::Expired { claims, .. }) => (*claims, Some(Refusal::TokenExpired)),
        Err(TokenError::NotYetOpen { opens_at, claims }) => {
            (*claims, Some(Refusal::NotYetOpen { opens_at }))
        }
    };
    let session = session
        .filter(|s| s.id == claims.sid)
        .ok_or(Refusal::TokenInvalid)?;
    match session.status(now) {
        SessionStatus::Cancelled => return Err(Refusal::SessionCancelled),
        SessionStatus::Ended => return Err(Refusal::SessionEnded),
        SessionStatus::Scheduled => {}
    }
    if let Some(refusal) = window {
        return Err(refusal);
    }
    let member = session.member(&claims.sub).ok_or(Refusal::NotOnRoster)?;
    if member.role != claims.role {
        return Err(Refusal::TokenInvalid);
    }
    if member.revoked_at.is_some_and(|at| at <= now) {
        return Err(Refusal::Revoked);
    }
    if member.removed_at.is_some() {
        return Err(Refusal::Removed);
    }
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::RosterRole;
    use crate::schedule::{SessionKind, SessionSettings};
    use chrono::Duration;
    use uuid::Uuid;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn person(id: &str, role: RosterRole) -> RosterEntry {
        RosterEntry {
            id: id.into(),
            name: "N".into(),
            role,
            household: None,
            mrn: None,
            revoked_at: None,
            removed_at: None,
        }
    }

    fn session() -> Session {
        Session {
            id: Uuid::new_v4(),
            title: "S".into(),
            kind: SessionKind::Couple,
            starts_at: t("2026-03-02T15:00:00Z"),
            ends_at: t("2026-03-02T16:00:00Z"),
            timezone: chrono_tz::UTC,
            roster: vec![
                person("c", RosterRole::Clinician),
                person("p", RosterRole::Patient),
                person("q", RosterRole::Partner),
            ],
            settings: SessionSettings {
                auto_admit: false,
                early_join_minutes: 15,
                overrun_grace_minutes: 30,
                clinician_grace_minutes: 5,
                e2ee: tandem_protocol::E2eeMode::Off,
            },
            created_at: t("2026-03-01T00:00:00Z"),
            cancelled_at: None,
            ended_at: None,
        }
    }

    fn claims(s: &Session, who: &str, role: RosterRole) -> InviteClaims {
        InviteClaims::new(who, s.id, role, s.opens_at(), s.closes_at(), s.created_at)
    }

    /// Runs the token window check as `invite::verify` would, at `now`.
    fn windowed(c: InviteClaims, now: DateTime<Utc>) -> Result<InviteClaims, TokenError> {
        if now.timestamp() < c.nbf {
            Err(TokenError::NotYetOpen {
                opens_at: c.opens_at(),
                claims: Box::new(c),
            })
        } else if now.timestamp() >= c.exp {
            Err(TokenError::Expired {
                expired_at: c.closes_at(),
                claims: Box::new(c),
            })
        } else {
            Ok(c)
        }
    }

    fn code(result: Result<&RosterEntry, Refusal>) -> &'static str {
        result.map_or_else(|r| r.code().as_str(), |_| "admit")
    }

    #[test]
    fn decisions_for_every_case() {
        let base = session();
        let mut cancelled = session();
        cancelled.cancelled_at = Some(t("2026-03-02T14:00:00Z"));
        let mut revoked = session();
        revoked.roster[2].revoked_at = Some(t("2026-03-02T15:10:00Z"));
        let mut removed = session();
        removed.roster[1].removed_at = Some(t("2026-03-02T15:05:00Z"));
        let mut ended = session();
        ended.ended_at = Some(t("2026-03-02T15:15:00Z"));
        let other = session();

        let during = t("2026-03-02T15:20:00Z");
        let opens = base.opens_at();
        let closes = base.closes_at();
        let cases: Vec<(&str, &Session, InviteClaims, DateTime<Utc>, &str)> = vec![
            (
                "patient during the session",
                &base,
                claims(&base, "p", RosterRole::Patient),
                during,
                "admit",
            ),
            (
                "clinician during the session",
                &base,
                claims(&base, "c", RosterRole::Clinician),
                during,
                "admit",
            ),
            (
                "one second before the window",
                &base,
                claims(&base, "p", RosterRole::Patient),
                opens - Duration::seconds(1),
                "not_yet_open",
            ),
            (
                "first second of the window",
                &base,
                claims(&base, "p", RosterRole::Patient),
                opens,
                "admit",
            ),
            (
                "last second of the window",
                &base,
                claims(&base, "p", RosterRole::Patient),
                closes - Duration::seconds(1),
                "admit",
            ),
            (
                "first second after the window",
                &base,
                claims(&base, "p", RosterRole::Patient),
                closes,
                "session_ended",
            ),
            (
                "not on the roster",
                &base,
                claims(&base, "stranger", RosterRole::Patient),
                during,
                "not_on_roster",
            ),
            (
                "role differs from the roster",
                &base,
                claims(&base, "p", RosterRole::Clinician),
                during,
                "token_invalid",
            ),
            (
                "cancelled session",
                &cancelled,
                claims(&cancelled, "p", RosterRole::Patient),
                during,
                "session_cancelled",
            ),
            (
                "revoked, after revocation",
                &revoked,
                claims(&revoked, "q", RosterRole::Partner),
                during,
                "revoked",
            ),
            (
                "revoked, someone else",
                &revoked,
                claims(&revoked, "p", RosterRole::Patient),
                during,
                "admit",
            ),
            (
                "token for another session",
                &other,
                claims(&base, "p", RosterRole::Patient),
                during,
                "token_invalid",
            ),
        ];
        for (case, session, claims, now, expected) in cases {
            let got = code(check_invite(windowed(claims, now), Some(session), now));
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn an_expired_link_for_a_running_session_is_token_expired() {
        let s = session();
        let mut c = claims(&s, "p", RosterRole::Patient);
        c.exp = t("2026-03-02T15:05:00Z").timestamp();
        let now = t("2026-03-02T15:05:00Z");
        assert_eq!(
            code(check_invite(windowed(c, now), Some(&s), now)),
            "token_expired"
        );
    }

    #[test]
    fn not_yet_open_carries_the_opening_time() {
        let s = session();
        let now = s.opens_at() - Duration::minutes(1);
        let result = check_invite(
            windowed(claims(&s, "p", RosterRole::Patient), now),
            Some(&s),
            now,
        );
        assert_eq!(
            result.unwrap_err(),
            Refusal::NotYetOpen {
                opens_at: s.opens_at()
            }
        );
    }

    #[test]
    fn an_invalid_signature_or_unknown_session_is_token_invalid() {
        let now = t("2026-03-02T15:20:00Z");
        assert_eq!(
            code(check_invite(Err(TokenError::Invalid), None, now)),
            "token_invalid"
        );
        let s = session();
        assert_eq!(
            code(check_invite(
                Ok(claims(&s, "p", RosterRole::Patient)),
                None,
                now
            )),
            "token_invalid"
        );
    }
}

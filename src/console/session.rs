//! A console session: the cookie a person gets after signing in, and when
//! it ends (HIPAA's automatic logoff).
//!
//! It ends after `console.idle_timeout_minutes` without activity (default
//! 15), and 12 hours after sign-in whatever the activity. Between the
//! password and the second factor a session is only half signed in: it
//! allows nothing but the code, for at most 5 minutes. Pure: the time is
//! an argument.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// The longest a console session lasts.
pub const ABSOLUTE: Duration = Duration::hours(12);
/// The longest between the password and the code.
pub const SECOND_FACTOR_WINDOW: Duration = Duration::minutes(5);
/// The page warns this long before an idle logoff.
pub const WARNING: Duration = Duration::minutes(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Password right; the TOTP code is still to come.
    SecondFactor,
    SignedIn,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::SecondFactor => "second_factor",
            Stage::SignedIn => "signed_in",
        }
    }

    pub fn parse(raw: &str) -> Option<Stage> {
        match raw {
            "second_factor" => Some(Stage::SecondFactor),
            "signed_in" => Some(Stage::SignedIn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id: Uuid,
    pub account_id: Uuid,
    pub csrf_token: String,
    pub stage: Stage,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Why a session is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    SignedOut,
    Idle,
    Absolute,
    SecondFactorTooLate,
}

impl Ended {
    /// What the sign-in audit records.
    pub fn audit_event(self) -> &'static str {
        match self {
            Ended::SignedOut => "signed_out",
            Ended::Idle => "timed_out_idle",
            Ended::Absolute => "timed_out_absolute",
            Ended::SecondFactorTooLate => "second_factor_expired",
        }
    }
}

impl ConsoleSession {
    /// When the session ends unless there is activity first.
    pub fn expires_at(&self, idle: Duration) -> DateTime<Utc> {
        match self.stage {
            Stage::SecondFactor => self.created_at + SECOND_FACTOR_WINDOW,
            Stage::SignedIn => (self.last_seen_at + idle).min(self.created_at + ABSOLUTE),
        }
    }

    /// Whether it is still good at `now`; why not otherwise.
    pub fn check(&self, idle: Duration, now: DateTime<Utc>) -> Result<(), Ended> {
        if self.ended_at.is_some() {
            return Err(Ended::SignedOut);
        }
        match self.stage {
            Stage::SecondFactor if now >= self.created_at + SECOND_FACTOR_WINDOW => {
                Err(Ended::SecondFactorTooLate)
            }
            Stage::SignedIn if now >= self.created_at + ABSOLUTE => Err(Ended::Absolute),
            Stage::SignedIn if now >= self.last_seen_at + idle => Err(Ended::Idle),
            _ => Ok(()),
        }
    }
}

/// When the page should warn of an idle logoff: a minute before, or half
/// way for timeouts of two minutes or less.
pub fn warn_before(idle: Duration) -> Duration {
    if idle <= WARNING * 2 {
        idle / 2
    } else {
        WARNING
    }
}

/// The idle timeout of `console.idle_timeout_minutes`.
pub fn idle_timeout(minutes: f64) -> Duration {
    Duration::milliseconds((minutes * 60_000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-03-02T{s}Z").parse().unwrap()
    }

    fn session(stage: Stage) -> ConsoleSession {
        ConsoleSession {
            id: Uuid::new_v4(),
            account_id: Uuid::new_v4(),
            csrf_token: "c".into(),
            stage,
            created_at: t("08:00:00"),
            last_seen_at: t("08:00:00"),
            ended_at: None,
        }
    }

    #[test]
    fn fifteen_idle_minutes_end_a_session_activity_keeps_it() {
        let idle = idle_timeout(15.0);
        let mut s = session(Stage::SignedIn);
        assert_eq!(s.check(idle, t("08:14:59")), Ok(()));
        assert_eq!(s.check(idle, t("08:15:00")), Err(Ended::Idle));
        s.last_seen_at = t("08:14:00");
        assert_eq!(s.check(idle, t("08:28:59")), Ok(()));
        assert_eq!(s.expires_at(idle), t("08:29:00"));
    }

    #[test]
    fn twelve_hours_is_the_most_whatever_the_activity() {
        let idle = idle_timeout(15.0);
        let mut s = session(Stage::SignedIn);
        s.last_seen_at = t("19:59:00");
        assert_eq!(s.expires_at(idle), t("20:00:00"));
        assert_eq!(s.check(idle, t("20:00:00")), Err(Ended::Absolute));
    }

    #[test]
    fn the_code_must_follow_the_password_within_five_minutes() {
        let idle = idle_timeout(15.0);
        let s = session(Stage::SecondFactor);
        assert_eq!(s.check(idle, t("08:04:59")), Ok(()));
        assert_eq!(
            s.check(idle, t("08:05:00")),
            Err(Ended::SecondFactorTooLate)
        );
    }

    #[test]
    fn the_warning_comes_a_minute_before_or_half_way_for_short_timeouts() {
        assert_eq!(warn_before(idle_timeout(15.0)), Duration::minutes(1));
        assert_eq!(warn_before(idle_timeout(0.5)), Duration::seconds(15));
    }
}

//! Failed sign-ins, counted per account and per address, and the lock-out
//! they lead to. The rules, as pure functions of counts and times; the
//! counts are kept in the database (src/store/sign_in.rs), so that every
//! node of a cluster counts the same failures.
//!
//! Five failures of one account within 15 minutes lock that account for
//! 15 minutes, whatever address tries; twenty failures from one address
//! (guessing many accounts) lock that address for 15 minutes. A success
//! clears the account's count. While locked, even the right password is
//! refused: an attacker learns nothing from trying.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

/// Failures of one account before it is locked.
pub const ACCOUNT_LIMIT: u32 = 5;
/// Failures from one address before it is locked.
pub const ADDRESS_LIMIT: u32 = 20;
/// How far back failures count, and how long a lock-out lasts.
pub const WINDOW: Duration = Duration::minutes(15);

/// Whom failures count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// An account, by its (normalized) email, whatever address tries.
    Account(&'a str),
    /// An address, whichever accounts it tries.
    Address(IpAddr),
}

impl Subject<'_> {
    /// How the database names it.
    pub fn key(self) -> String {
        match self {
            Subject::Account(email) => format!("account:{email}"),
            Subject::Address(address) => format!("address:{address}"),
        }
    }

    fn limit(self) -> u32 {
        match self {
            Subject::Account(_) => ACCOUNT_LIMIT,
            Subject::Address(_) => ADDRESS_LIMIT,
        }
    }

    /// Its lock-out, until `until`.
    pub fn locked(self, until: DateTime<Utc>) -> Locked {
        match self {
            Subject::Account(_) => Locked::Account { until },
            Subject::Address(_) => Locked::Address { until },
        }
    }

    /// The lock-out that `recent` failures within [`WINDOW`] before `now`
    /// (the one at `now` included) start, if they reach the limit.
    pub fn lockout(self, recent: u32, now: DateTime<Utc>) -> Option<Locked> {
        (recent >= self.limit()).then(|| self.locked(now + WINDOW))
    }
}

/// Who is locked out, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Account { until: DateTime<Utc> },
    Address { until: DateTime<Utc> },
}

impl Locked {
    pub fn until(self) -> DateTime<Utc> {
        match self {
            Locked::Account { until } | Locked::Address { until } => until,
        }
    }

    /// The sentence the person reads.
    pub fn message(self, now: DateTime<Utc>) -> String {
        let minutes = ((self.until() - now).num_seconds() + 59) / 60;
        let minutes = minutes.max(1);
        let plural = if minutes == 1 { "" } else { "s" };
        match self {
            Locked::Account { .. } => format!(
                "Too many failed sign-ins: this account is locked for {minutes} more minute{plural}. \
                 Try again later, or ask an administrator."
            ),
            Locked::Address { .. } => format!(
                "Too many failed sign-ins from this network: signing in from here is paused for \
                 {minutes} more minute{plural}."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-03-02T{s}Z").parse().unwrap()
    }

    #[test]
    fn the_fifth_failure_of_an_account_locks_it_for_fifteen_minutes() {
        let account = Subject::Account("a@x.example");
        assert_eq!(account.lockout(4, t("09:00:04")), None);
        let locked = account.lockout(5, t("09:00:05")).unwrap();
        assert_eq!(
            locked,
            Locked::Account {
                until: t("09:15:05")
            }
        );
        assert!(locked
            .message(t("09:10:00"))
            .contains("locked for 6 more minutes"));
        assert!(locked
            .message(t("09:15:00"))
            .contains("locked for 1 more minute."));
    }

    #[test]
    fn an_address_is_paused_at_its_twentieth_failure() {
        let here = Subject::Address("10.0.0.9".parse().unwrap());
        assert_eq!(here.lockout(19, t("09:00:00")), None);
        let locked = here.lockout(20, t("09:00:00")).unwrap();
        assert_eq!(
            locked,
            Locked::Address {
                until: t("09:15:00")
            }
        );
        assert!(locked.message(t("09:01:00")).contains("from this network"));
    }

    #[test]
    fn subjects_are_named_apart() {
        assert_eq!(Subject::Account("a@x.example").key(), "account:a@x.example");
        assert_eq!(
            Subject::Address("10.0.0.9".parse().unwrap()).key(),
            "address:10.0.0.9"
        );
    }
}

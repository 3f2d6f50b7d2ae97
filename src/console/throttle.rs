//! Failed sign-ins, counted per account and per address, and the lock-out
//! they lead to. A pure state machine: the caller passes the time.
//!
//! Five failures of one account within 15 minutes lock that account for
//! 15 minutes, whatever address tries; twenty failures from one address
//! (guessing many accounts) lock that address for 15 minutes. A success
//! clears the account's count. While locked, even the right password is
//! refused: an attacker learns nothing from trying.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

/// Failures of one account before it is locked.
pub const ACCOUNT_LIMIT: u32 = 5;
/// Failures from one address before it is locked.
pub const ADDRESS_LIMIT: u32 = 20;
/// How far back failures count, and how long a lock-out lasts.
pub const WINDOW: Duration = Duration::minutes(15);

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

#[derive(Debug, Default, Clone)]
struct Record {
    failures: Vec<DateTime<Utc>>,
    locked_until: Option<DateTime<Utc>>,
}

impl Record {
    fn locked(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Counts a failure at `now`; the lock-out it starts, if any.
    fn fail(&mut self, now: DateTime<Utc>, limit: u32) -> Option<DateTime<Utc>> {
        self.failures.retain(|t| now - *t < WINDOW);
        self.failures.push(now);
        if self.failures.len() as u32 >= limit {
            self.failures.clear();
            self.locked_until = Some(now + WINDOW);
            return self.locked_until;
        }
        None
    }
}

/// The failures seen by this server.
#[derive(Debug, Default)]
pub struct Throttle {
    accounts: HashMap<String, Record>,
    addresses: HashMap<IpAddr, Record>,
}

impl Throttle {
    /// Whether `email` from `address` may try now.
    pub fn check(&self, email: &str, address: IpAddr, now: DateTime<Utc>) -> Result<(), Locked> {
        if let Some(until) = self.accounts.get(email).and_then(|r| r.locked(now)) {
            return Err(Locked::Account { until });
        }
        if let Some(until) = self.addresses.get(&address).and_then(|r| r.locked(now)) {
            return Err(Locked::Address { until });
        }
        Ok(())
    }

    /// A failed attempt; the lock-out it started, if any.
    pub fn failed(&mut self, email: &str, address: IpAddr, now: DateTime<Utc>) -> Option<Locked> {
        self.forget_old(now);
        let account = self
            .accounts
            .entry(email.to_owned())
            .or_default()
            .fail(now, ACCOUNT_LIMIT)
            .map(|until| Locked::Account { until });
        let address = self
            .addresses
            .entry(address)
            .or_default()
            .fail(now, ADDRESS_LIMIT)
            .map(|until| Locked::Address { until });
        account.or(address)
    }

    /// A successful sign-in clears the account's failures.
    pub fn succeeded(&mut self, email: &str) {
        self.accounts.remove(email);
    }

    /// Ends an account's lock-out (an admin reset it).
    pub fn unlock(&mut self, email: &str) {
        self.accounts.remove(email);
    }

    /// Drops records with nothing left to remember, so memory stays bounded
    /// by recent failures.
    fn forget_old(&mut self, now: DateTime<Utc>) {
        let stale =
            |r: &Record| r.locked(now).is_none() && r.failures.iter().all(|t| now - *t >= WINDOW);
        self.accounts.retain(|_, r| !stale(r));
        self.addresses.retain(|_, r| !stale(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-03-02T{s}Z").parse().unwrap()
    }

    #[test]
    fn five_failures_lock_the_account_for_fifteen_minutes() {
        let mut throttle = Throttle::default();
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        let there: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..4 {
            assert_eq!(
                throttle.failed("a@x.example", here, t(&format!("09:00:0{i}"))),
                None
            );
        }
        let locked = throttle.failed("a@x.example", here, t("09:00:05")).unwrap();
        assert_eq!(
            locked,
            Locked::Account {
                until: t("09:15:05")
            }
        );
        // From anywhere, even with the right password (the caller checks first).
        assert!(throttle.check("a@x.example", there, t("09:10:00")).is_err());
        assert!(throttle.check("b@x.example", here, t("09:10:00")).is_ok());
        assert!(locked
            .message(t("09:10:00"))
            .contains("locked for 6 more minutes"));
        assert!(throttle.check("a@x.example", here, t("09:15:05")).is_ok());
    }

    #[test]
    fn failures_spread_out_or_cleared_by_a_success_do_not_lock() {
        let mut throttle = Throttle::default();
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        for minute in 0..10 {
            let at = t(&format!("09:{:02}:00", minute * 4));
            assert_eq!(throttle.failed("a@x.example", here, at), None);
        }
        for _ in 0..4 {
            throttle.failed("b@x.example", here, t("10:00:00"));
        }
        throttle.succeeded("b@x.example");
        assert_eq!(throttle.failed("b@x.example", here, t("10:00:01")), None);
    }

    #[test]
    fn one_address_guessing_many_accounts_is_paused() {
        let mut throttle = Throttle::default();
        let here: IpAddr = "10.0.0.9".parse().unwrap();
        let mut locked = None;
        for i in 0..ADDRESS_LIMIT {
            locked = throttle.failed(&format!("u{i}@x.example"), here, t("09:00:00"));
        }
        assert_eq!(
            locked,
            Some(Locked::Address {
                until: t("09:15:00")
            })
        );
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        assert!(throttle
            .check("new@x.example", here, t("09:01:00"))
            .is_err());
        assert!(throttle
            .check("new@x.example", other, t("09:01:00"))
            .is_ok());
    }
}

//! Failed joins per source address: a guessing or flooding client is slowed
//! down without touching anyone already in a session (only failures count,
//! and only for the address that fails). Attempts still being checked count
//! too: of many attempts sent at once, no more than the limit are checked
//! before their outcome is known, and the others wait their turn. And messages per connection
//! ([`MessageRate`]): a socket that floods is closed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// Addresses tracked before old entries are swept.
const SWEEP_AT: usize = 10_000;

/// What a join attempt may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Be checked (it is counted in flight until finished).
    Go,
    /// Wait until an attempt of the same address finishes, then ask again:
    /// the failures and the attempts in flight reach the limit, and those
    /// may fail.
    Wait,
    /// Refused: the address used up its failures for the last minute.
    Refused,
}

#[derive(Debug)]
pub(crate) struct FailedJoins {
    per_minute: u32,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
    /// Attempts begun and not yet finished, per address.
    in_flight: HashMap<IpAddr, u32>,
}

impl FailedJoins {
    /// Allows `per_minute` failures per address in any 60 s; 0 is no limit.
    pub(crate) fn new(per_minute: u32) -> FailedJoins {
        FailedJoins {
            per_minute,
            by_address: HashMap::new(),
            in_flight: HashMap::new(),
        }
    }

    fn recent(&mut self, address: IpAddr, now: Instant) -> &mut VecDeque<Instant> {
        let times = self.by_address.entry(address).or_default();
        while times
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
        {
            times.pop_front();
        }
        times
    }

    /// True when `address` has used up its failures for the last minute.
    #[cfg(test)]
    pub(crate) fn is_blocked(&mut self, address: IpAddr, now: Instant) -> bool {
        let limit = self.per_minute as usize;
        limit > 0 && self.recent(address, now).len() >= limit
    }

    /// Starts a join attempt from `address` at `now`: [`Turn::Go`] counts
    /// it in flight until [`FailedJoins::finish`]; nothing is counted
    /// otherwise.
    pub(crate) fn begin(&mut self, address: IpAddr, now: Instant) -> Turn {
        let limit = self.per_minute as usize;
        let in_flight = self.in_flight.get(&address).copied().unwrap_or(0) as usize;
        if limit > 0 {
            let failures = self.recent(address, now).len();
            if failures >= limit {
                return Turn::Refused;
            }
            if failures + in_flight >= limit {
                return Turn::Wait;
            }
        }
        *self.in_flight.entry(address).or_default() += 1;
        Turn::Go
    }

    /// Ends an attempt started with [`FailedJoins::begin`]; a failed one
    /// counts for the next minute.
    pub(crate) fn finish(&mut self, address: IpAddr, now: Instant, failed: bool) {
        if let Some(n) = self.in_flight.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&address);
            }
        }
        if failed {
            self.record_failure(address, now);
        }
    }

    pub(crate) fn record_failure(&mut self, address: IpAddr, now: Instant) {
        if self.by_address.len() >= SWEEP_AT {
            self.by_address.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|&t| now.saturating_duration_since(t) < WINDOW)
            });
        }
        self.recent(address, now).push_back(now);
    }
}

/// Messages of one connection: a token bucket holding `burst` messages,
/// refilled at `per_second`. A connection that empties it is over the limit.
#[derive(Debug, Clone)]
pub(crate) struct MessageRate {
    per_second: u32,
    burst: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl MessageRate {
    /// `per_second` on average, `burst` at once; `per_second` 0: no limit.
    pub(crate) fn new(per_second: u32, burst: u32) -> MessageRate {
        let burst = burst.max(1);
        MessageRate {
            per_second,
            burst,
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Counts one message at `now`: false when it is over the limit.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if self.per_second == 0 {
            return true;
        }
        if let Some(last) = self.last {
            let refill =
                now.saturating_duration_since(last).as_secs_f64() * f64::from(self.per_second);
            self.tokens = (self.tokens + refill).min(f64::from(self.burst));
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_a_flood_is_over_the_limit() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(10, 50);
        for i in 0..50 {
            assert!(rate.allow(t0), "message {i} of the burst");
        }
        assert!(!rate.allow(t0), "the 51st at once");
        // A tenth of a second later, one more.
        assert!(rate.allow(t0 + Duration::from_millis(100)));
        assert!(!rate.allow(t0 + Duration::from_millis(100)));
        // Ten a second, for a minute, never runs out.
        let mut rate = MessageRate::new(10, 50);
        for i in 0..600 {
            assert!(rate.allow(t0 + Duration::from_millis(100 * i)), "{i}");
        }
        // A flood of 10,000 gets the burst and what refills meanwhile.
        let mut rate = MessageRate::new(10, 50);
        let allowed = (0..10_000)
            .filter(|i| rate.allow(t0 + Duration::from_micros(*i)))
            .count();
        assert_eq!(allowed, 50);
        assert!(MessageRate::new(0, 0).allow(t0), "0 is no limit");
    }

    #[test]
    fn the_eleventh_failure_in_a_minute_is_blocked_and_the_window_slides() {
        let mut limiter = FailedJoins::new(10);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(
                !limiter.is_blocked(a, t0 + Duration::from_secs(i)),
                "failure {i}"
            );
            limiter.record_failure(a, t0 + Duration::from_secs(i));
        }
        assert!(limiter.is_blocked(a, t0 + Duration::from_secs(10)));
        assert!(
            !limiter.is_blocked(b, t0 + Duration::from_secs(10)),
            "another address is not affected"
        );
        // One minute after the first failure, one slot frees up.
        assert!(limiter.is_blocked(a, t0 + Duration::from_millis(59_999)));
        assert!(!limiter.is_blocked(a, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let mut limiter = FailedJoins::new(10);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        // 40 at once: 10 are checked, 30 wait.
        let turns: Vec<Turn> = (0..40).map(|_| limiter.begin(a, t0)).collect();
        assert_eq!(turns.iter().filter(|t| **t == Turn::Go).count(), 10);
        assert_eq!(turns.iter().filter(|t| **t == Turn::Wait).count(), 30);
        assert_eq!(limiter.begin(b, t0), Turn::Go, "another address");
        limiter.finish(b, t0, false);
        // One fails: still 9 in flight, and those may fail too.
        limiter.finish(a, t0, true);
        assert_eq!(limiter.begin(a, t0), Turn::Wait);
        // All 10 failed: the waiting ones are refused, for a minute.
        for _ in 0..9 {
            limiter.finish(a, t0, true);
        }
        assert_eq!(limiter.begin(a, t0), Turn::Refused);
        assert_eq!(
            limiter.begin(a, t0 + Duration::from_secs(59)),
            Turn::Refused
        );
        assert_eq!(limiter.begin(a, t0 + Duration::from_secs(60)), Turn::Go);
        // Attempts that succeed free their place at once and count nothing:
        // many good joins at once only wait their turn.
        let mut limiter = FailedJoins::new(2);
        assert_eq!(
            (limiter.begin(a, t0), limiter.begin(a, t0)),
            (Turn::Go, Turn::Go)
        );
        assert_eq!(limiter.begin(a, t0), Turn::Wait, "two in flight");
        limiter.finish(a, t0, false);
        assert_eq!(limiter.begin(a, t0), Turn::Go, "one finished well");
        limiter.finish(a, t0, false);
        limiter.finish(a, t0, false);
        assert!(limiter.in_flight.is_empty() && limiter.recent(a, t0).is_empty());
    }

    #[test]
    fn zero_means_no_limit() {
        let mut limiter = FailedJoins::new(0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..100 {
            limiter.record_failure(a, t0);
        }
        assert!(!limiter.is_blocked(a, t0));
        assert!((0..100).all(|_| limiter.begin(a, t0) == Turn::Go));
    }
}

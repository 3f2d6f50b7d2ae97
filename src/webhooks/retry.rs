//! When to try a failed delivery again: exponential backoff with jitter.
//!
//! A pure function of the attempt number and a random number, so that the
//! schedule can be tested and documented exactly. With the defaults
//! (`webhooks.retry_base_seconds = 5`, `webhooks.max_attempts = 15`) the
//! nominal waits are 5 s, 10 s, 20 s, ... 40 960 s: about 22.8 hours in
//! all, so a receiver that is down for most of a day still gets every
//! event. Each wait is drawn from [½, 1] of its nominal value, so that
//! deliveries that failed together do not all come back at once.

use std::time::Duration;

/// How retries are spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    /// The first wait (nominal); each next one doubles.
    pub base: Duration,
    /// Attempts in all, the first included; after the last, the delivery
    /// has failed.
    pub max_attempts: u32,
}

/// The longest single wait, whatever the base.
const MAX_WAIT: Duration = Duration::from_secs(12 * 3600);

impl Schedule {
    /// How long to wait after failed attempt number `attempt` (1 = the
    /// first), given `random` in [0, 1); `None` when that was the last.
    pub(crate) fn wait_after(&self, attempt: u32, random: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let nominal = self
            .base
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(30))
            .min(MAX_WAIT);
        Some(nominal.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Schedule = Schedule {
        base: Duration::from_secs(5),
        max_attempts: 15,
    };

    #[test]
    fn waits_double_then_stop_after_the_last_attempt() {
        assert_eq!(DEFAULT.wait_after(1, 1.0), Some(Duration::from_secs(5)));
        assert_eq!(DEFAULT.wait_after(2, 1.0), Some(Duration::from_secs(10)));
        assert_eq!(DEFAULT.wait_after(3, 1.0), Some(Duration::from_secs(20)));
        assert_eq!(DEFAULT.wait_after(15, 0.3), None);
        assert_eq!(DEFAULT.wait_after(16, 0.3), None);
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_wait() {
        for attempt in 1..15 {
            let full = DEFAULT.wait_after(attempt, 1.0).unwrap();
            let half = DEFAULT.wait_after(attempt, 0.0).unwrap();
            assert_eq!(half * 2, full);
            let mid = DEFAULT.wait_after(attempt, 0.42).unwrap();
            assert!(half <= mid && mid <= full);
        }
    }

    #[test]
    fn the_default_schedule_spans_about_a_day() {
        let total: Duration = (1..15).filter_map(|a| DEFAULT.wait_after(a, 1.0)).sum();
        assert!(
            total > Duration::from_secs(20 * 3600) && total <= Duration::from_secs(24 * 3600),
            "{total:?}"
        );
    }
}

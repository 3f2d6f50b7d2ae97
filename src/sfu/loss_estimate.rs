//! How much a joint session's subscriber can receive, judged by the loss
//! its receiver reports.
//!
//! A group room's subscriber has its link estimated by str0m (transport-wide
//! congestion control and a pacer), because its simulcast layers are chosen
//! among many videos all the time. A joint session forwards the best layers
//! unless the link is congested ([`super::layers`]), so it needs only two
//! things: how far down to go when the receiver reports heavy loss, and
//! when to try the better picture again. str0m's estimator costs a full
//! timeout round per paced packet, about a tenth of a shard's CPU
//! (docs/benchmarks.md); this adds one packet's bytes to a meter.
//!
//! The rules are those of the loss-based half of Google's congestion
//! control (draft-ietf-rmcat-gcc): heavy loss (over [`HEAVY_LOSS`]) cuts
//! the limit to what was sent times `1 - loss / 2`; loss between that and
//! [`super::layers::CONGESTED_LOSS`] holds it. Going up differs: with no
//! padding to probe with, the only probe is the better layer itself, so
//! the limit doubles on a clean report, first [`FIRST_BACKOFF`] after the
//! cut, then every [`TRIAL`] while the link stays clean. A raise that
//! meets heavy loss within its trial doubles the wait before the next one
//! (up to [`MAX_BACKOFF`]): a link that really is slow sees the large
//! picture for a second now and then, not every few seconds.
//!
//! A plain state machine: reports and time come in, the limit comes out.

use std::time::{Duration, Instant};

use super::layers::RateMeter;

/// Loss from which a report cuts the limit (GCC's 10 %).
pub(crate) const HEAVY_LOSS: f32 = 0.10;

/// Below this loss a report is clean and may raise the limit: the loss
/// that makes a link congested ([`super::layers::CONGESTED_LOSS`]).
const CLEAN_LOSS: f32 = super::layers::CONGESTED_LOSS;

/// How long after a cut reports of heavy loss are the old rate's: the
/// lower layer starts only at its next keyframe, and the report after that
/// still covers part of the old rate (reports come about once a second).
/// Cutting on them would take the subscriber below the layer that fits.
const CUT_SPACING: Duration = Duration::from_secs(3);

/// How long after a cut the better picture is first tried again.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(15);

/// The longest wait between tries on a link that stays slow.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// How long a raise must stay free of heavy loss to count as a success
/// (and before the next raise).
pub(crate) const TRIAL: Duration = Duration::from_secs(5);

/// A limit raised to this lifts it: the link carries what a joint session
/// sends (see [`super::peer::INITIAL_ESTIMATE_BPS`]).
const UNLIMITED_FROM: u64 = super::peer::INITIAL_ESTIMATE_BPS;

/// A subscriber's limit from what it is sent and its loss reports.
#[derive(Debug, Clone)]
pub(crate) struct LossEstimate {
    /// What the subscriber is sent: a cut starts from it.
    sent: RateMeter,
    /// Bits per second the link carries; `None` while no loss says so.
    limit: Option<u64>,
    /// The last cut.
    cut_at: Option<Instant>,
    /// The wait from a cut to the next raise.
    backoff: Duration,
    /// The earliest next raise.
    raise_at: Option<Instant>,
    /// The last raise, while on trial.
    raised_at: Option<Instant>,
}

impl Default for LossEstimate {
    fn default() -> LossEstimate {
        LossEstimate {
            sent: RateMeter::default(),
            limit: None,
            cut_at: None,
            backoff: FIRST_BACKOFF,
            raise_at: None,
            raised_at: None,
        }
    }
}

impl LossEstimate {
    /// Bits per second the link is judged to carry, if its loss said so.
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// `bytes` of media sent to the subscriber at `now`.
    pub(crate) fn on_sent(&mut self, now: Instant, bytes: usize) {
        self.sent.add(now, bytes);
    }

    /// A receiver report's `loss` (a fraction) at `now`.
    pub(crate) fn on_report(&mut self, now: Instant, loss: f32) {
        self.judge(now, loss, self.sent.rate_bps());
    }

    /// The rules, for a report of `loss` while the subscriber was sent
    /// `sent_bps` (0: nothing measured yet).
    fn judge(&mut self, now: Instant, loss: f32, sent_bps: u64) {
        if loss >= HEAVY_LOSS {
            self.on_heavy_loss(now, loss, sent_bps);
        } else if loss < CLEAN_LOSS {
            self.on_clean(now);
        }
    }

    fn on_heavy_loss(&mut self, now: Instant, loss: f32, sent_bps: u64) {
        let failed_raise = self
            .raised_at
            .take()
            .is_some_and(|at| now.saturating_duration_since(at) < TRIAL);
        let settling = self
            .cut_at
            .is_some_and(|at| now.saturating_duration_since(at) < CUT_SPACING);
        if sent_bps == 0 || (settling && !failed_raise) {
            return;
        }
        if failed_raise {
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        // In thousandths, so that a loss of 40 % keeps exactly 80 %.
        let lost = (f64::from(loss.min(1.0)) * 1000.0).round() as u64;
        let cut = (u128::from(sent_bps) * u128::from(2000 - lost) / 2000) as u64;
        self.limit = Some(self.limit.map_or(cut, |limit| limit.min(cut)));
        self.cut_at = Some(now);
        self.raise_at = Some(now + self.backoff);
    }

    fn on_clean(&mut self, now: Instant) {
        if self
            .raised_at
            .is_some_and(|at| now.saturating_duration_since(at) >= TRIAL)
        {
            self.raised_at = None;
            self.backoff = FIRST_BACKOFF;
        }
        let (Some(limit), Some(raise_at)) = (self.limit, self.raise_at) else {
            return;
        };
        if now < raise_at {
            return;
        }
        let raised = limit.saturating_mul(2);
        self.limit = (raised < UNLIMITED_FROM).then_some(raised);
        self.raised_at = Some(now);
        self.raise_at = Some(now + TRIAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn heavy_loss_cuts_to_what_was_sent_less_half_the_loss() {
        let t0 = Instant::now();
        let mut link = LossEstimate::default();
        assert_eq!(link.limit(), None, "no loss, no limit");
        link.judge(t0, 0.05, 1_000_000);
        assert_eq!(link.limit(), None, "moderate loss holds");
        link.judge(t0 + S(1), 0.40, 1_000_000);
        assert_eq!(link.limit(), Some(800_000));
    }

    #[test]
    fn reports_of_the_old_rate_right_after_a_cut_do_not_cut_again() {
        let t0 = Instant::now();
        let mut link = LossEstimate::default();
        link.judge(t0, 0.40, 1_000_000);
        // The queue still drains, the lower layer waits for a keyframe.
        link.judge(t0 + S(1), 0.40, 700_000);
        link.judge(t0 + S(2), 0.20, 300_000);
        assert_eq!(link.limit(), Some(800_000));
        // Still heavy once that is over: the lower rate did not fit either.
        link.judge(t0 + CUT_SPACING, 0.20, 500_000);
        assert_eq!(link.limit(), Some(450_000));
        // Nothing sent, nothing learned.
        link.judge(t0 + S(5), 0.50, 0);
        assert_eq!(link.limit(), Some(450_000));
    }

    #[test]
    fn a_clean_link_is_tried_again_after_the_backoff_and_then_each_trial() {
        let t0 = Instant::now();
        let mut link = LossEstimate::default();
        link.judge(t0, 0.50, 800_000);
        assert_eq!(link.limit(), Some(600_000));
        link.judge(t0 + FIRST_BACKOFF - S(1), 0.0, 300_000);
        assert_eq!(link.limit(), Some(600_000), "not before the backoff");
        link.judge(t0 + FIRST_BACKOFF, 0.0, 300_000);
        assert_eq!(link.limit(), Some(1_200_000));
        link.judge(t0 + FIRST_BACKOFF + S(1), 0.03, 300_000);
        link.judge(t0 + FIRST_BACKOFF + TRIAL, 0.0, 1_100_000);
        assert_eq!(link.limit(), Some(2_400_000), "the next raise, a trial on");
        link.judge(t0 + FIRST_BACKOFF + TRIAL * 2, 0.0, 2_000_000);
        assert_eq!(link.limit(), Some(4_800_000));
        link.judge(t0 + FIRST_BACKOFF + TRIAL * 3, 0.0, 2_000_000);
        assert_eq!(link.limit(), None, "a joint session's rate: no limit");
    }

    #[test]
    fn a_raise_that_meets_heavy_loss_doubles_the_wait_and_a_success_resets_it() {
        let t0 = Instant::now();
        let mut link = LossEstimate::default();
        link.judge(t0, 0.50, 800_000);
        let raised = t0 + FIRST_BACKOFF;
        link.judge(raised, 0.0, 300_000);
        assert_eq!(link.limit(), Some(1_200_000));
        // The better layer does not fit: cut, and wait twice as long.
        let failed = raised + S(2);
        link.judge(failed, 0.45, 1_100_000);
        assert_eq!(link.limit(), Some(852_500));
        link.judge(failed + FIRST_BACKOFF, 0.0, 300_000);
        assert_eq!(link.limit(), Some(852_500), "the wait doubled");
        let raised = failed + FIRST_BACKOFF * 2;
        link.judge(raised, 0.0, 300_000);
        assert_eq!(link.limit(), Some(1_705_000));
        // This one holds through its trial: the wait is back to the first.
        link.judge(raised + TRIAL, 0.0, 1_100_000);
        assert_eq!(link.limit(), Some(3_410_000));
        let cut = raised + TRIAL + S(30);
        link.judge(cut, 0.30, 3_000_000);
        assert_eq!(link.limit(), Some(2_550_000));
        link.judge(cut + FIRST_BACKOFF - S(1), 0.0, 1_000_000);
        assert_eq!(link.limit(), Some(2_550_000));
        link.judge(cut + FIRST_BACKOFF, 0.0, 1_000_000);
        assert_eq!(link.limit(), None, "tried again after the first backoff");
    }

    #[test]
    fn the_wait_between_tries_is_bounded() {
        let t0 = Instant::now();
        let mut link = LossEstimate::default();
        link.judge(t0, 0.50, 800_000);
        let mut now = t0;
        for _ in 0..10 {
            now += MAX_BACKOFF;
            link.judge(now, 0.0, 300_000);
            now += S(1);
            link.judge(now, 0.50, 1_000_000);
        }
        assert_eq!(link.backoff, MAX_BACKOFF);
    }
}

//! Simulcast: which layer of a published video each subscriber receives.
//!
//! A browser that sends simulcast encodes its camera two or three times at
//! different sizes. In a group room each subscriber gets, per video, the
//! best layer that fits its share of its own bandwidth estimate, so a room
//! of twenty still plays on a home connection. In a small room (a joint
//! session) everyone gets the best layer, unless their link is congested:
//! then the estimate decides too, and a patient on a weak link keeps a
//! smaller picture and their audio rather than a frozen, lossy large one.
//! Congested means the subscriber's receiver reports show loss
//! ([`CONGESTED_LOSS`]), and it lasts until the estimate carries the best
//! layers again: str0m's estimate alone dips for a few seconds now and then
//! on a healthy link (seen on a two-core machine under load), and a joint
//! session should not drop to a small picture for that. A group room's
//! estimate is str0m's: while a congested subscriber gets less than the
//! best, the shard asks its estimator to probe for the rate of the best
//! ([`wanted`]), so the better layer comes back when the link recovers. A
//! joint session's estimate is made from the loss itself, and probes with
//! the better layer ([`super::loss_estimate`]). Layers are ranked by their
//! measured bitrate, not by their names, which are the sender's choice.
//! A subscriber may say which size it shows each video at (LiveKit's
//! "adaptive stream"): small tiles then get the low layer and large ones
//! the high layer ([`choose_preferred`]).

use std::time::{Duration, Instant};

use tandem_protocol::Layer;

/// Rooms up to this many people receive the best layer unless congested. A
/// joint session is three (a couple and their clinician), and four leaves
/// room for a co-therapist or an interpreter.
pub(crate) const SMALL_ROOM: usize = 4;

/// The fraction of packets a receiver reports lost over a second from which
/// its link counts as congested. A healthy link loses well under 1 %.
pub(crate) const CONGESTED_LOSS: f32 = 0.02;

/// How long a report of loss keeps a link congested, at least: random
/// loss comes and goes from one report to the next, and a picture that
/// switches size every second is worse than a small one.
pub(crate) const CONGESTION_MEMORY: Duration = Duration::from_secs(10);

/// Whether a link that last reported loss at `at` still counts as
/// congested at `now`: for [`CONGESTION_MEMORY`], and then until its
/// `share` of the estimate carries the best layer (`best_bps`) again.
pub(crate) fn still_congested(now: Instant, at: Instant, share: u64, best_bps: u64) -> bool {
    now.saturating_duration_since(at) < CONGESTION_MEMORY || share < best_bps
}

/// The bandwidth a subscriber's layer choice may use for one video: its
/// `share` of the estimate in a group room or when its link is congested,
/// no limit in a small room on a healthy link.
pub(crate) fn budget(room_size: usize, congested: bool, share: u64) -> u64 {
    if room_size <= SMALL_ROOM && !congested {
        u64::MAX
    } else {
        share
    }
}

/// A layer's bitrate over the last [`RateMeter::WINDOW`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    rate_bps: u64,
}

impl RateMeter {
    /// A second holds about 30 frames of a camera, so a keyframe's burst is
    /// averaged with the frames around it: a shorter window would let the
    /// layers change rank at every keyframe and subscribers switch with it.
    pub(crate) const WINDOW: Duration = Duration::from_secs(1);

    pub(crate) fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            self.rate_bps = self.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
    }

    /// Bits per second measured over the last full window (0 before one).
    pub(crate) fn rate_bps(&self) -> u64 {
        self.rate_bps
    }
}

/// Picks the layer (an index into `rates`, one measured bitrate per layer)
/// for a subscriber whose share of its bandwidth for this video is
/// `budget_bps`. `None` when there are no layers.
pub(crate) fn choose(rates: &[u64], budget_bps: u64) -> Option<usize> {
    let best = (0..rates.len()).max_by_key(|&i| (rates[i], std::cmp::Reverse(i)))?;
    let fitting = (0..rates.len())
        .filter(|&i| rates[i] > 0 && rates[i] <= budget_bps)
        .max_by_key(|&i| rates[i]);
    let lowest = (0..rates.len())
        .filter(|&i| rates[i] > 0)
        .min_by_key(|&i| rates[i]);
    fitting.or(lowest).or(Some(best))
}

/// The layer for a subscriber that said which size it shows this video
/// at (`layer_preference`): `high` (a large tile: pinned, spotlighted, the
/// active speaker) gets the best layer its whole bandwidth estimate
/// carries, not just a share of it; `low` (a small tile) gets the lowest
/// measured layer. Without a preference, [`choose`] decides.
pub(crate) fn choose_preferred(
    rates: &[u64],
    share_bps: u64,
    estimate_bps: u64,
    preferred: Option<Layer>,
) -> Option<usize> {
    match preferred {
        None => choose(rates, share_bps),
        Some(Layer::High) => choose(rates, estimate_bps),
        Some(Layer::Low) => (0..rates.len())
            .filter(|&i| rates[i] > 0)
            .min_by_key(|&i| rates[i])
            .or_else(|| choose(rates, share_bps)),
    }
}

/// What a subscriber receiving layer `chosen` of a video with layer rates
/// `rates` would like its bandwidth to be: `(next, best)`, the rate of the
/// next layer up (the traffic worth sustaining to get there) and the rate
/// of the best layer (what to probe for). Both are the chosen layer's rate
/// when it is the best, or when the subscriber shows the video in a small
/// tile (`low`): it wants no more than it gets.
pub(crate) fn wanted(rates: &[u64], chosen: Option<usize>, preferred: Option<Layer>) -> (u64, u64) {
    let current = chosen.and_then(|i| rates.get(i)).copied().unwrap_or(0);
    if preferred == Some(Layer::Low) {
        return (current, current);
    }
    let best = rates.iter().copied().max().unwrap_or(0);
    let next = rates
        .iter()
        .copied()
        .filter(|&rate| rate > current)
        .min()
        .unwrap_or(current);
    (next, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_lasts_its_memory_then_until_the_estimate_carries_the_best() {
        let at = Instant::now();
        let later = |s| at + Duration::from_secs(s);
        assert!(still_congested(later(5), at, 5_000_000, 1_500_000));
        assert!(still_congested(later(11), at, 1_000_000, 1_500_000));
        assert!(!still_congested(later(11), at, 1_500_000, 1_500_000));
    }

    #[test]
    fn small_rooms_get_the_best_layer_unless_congested() {
        let rates = [150_000, 500_000, 1_500_000];
        assert_eq!(choose(&rates, budget(3, false, 400_000)), Some(2));
        assert_eq!(choose(&rates, budget(3, true, 400_000)), Some(0));
        assert_eq!(choose(&rates, budget(12, false, 400_000)), Some(0));
    }

    #[test]
    fn a_preference_picks_the_layer_for_the_tile() {
        let rates = [150_000, 500_000, 1_500_000];
        // Twelve videos on 3 Mbit/s: 250 kbit/s each.
        let (share, estimate) = (250_000, 3_000_000);
        assert_eq!(choose_preferred(&rates, share, estimate, None), Some(0));
        assert_eq!(
            choose_preferred(&rates, share, estimate, Some(Layer::High)),
            Some(2)
        );
        assert_eq!(
            choose_preferred(&rates, 2_000_000, estimate, Some(Layer::Low)),
            Some(0)
        );
        // Nothing measured yet: the usual choice.
        assert_eq!(
            choose_preferred(&[0, 0], share, estimate, Some(Layer::Low)),
            Some(0)
        );
    }

    #[test]
    fn each_subscriber_gets_what_fits_its_budget() {
        let rates = [150_000, 500_000, 1_500_000];
        assert_eq!(choose(&rates, 5_000_000), Some(2));
        assert_eq!(choose(&rates, 2_000_000), Some(2));
        assert_eq!(choose(&rates, 1_000_000), Some(1));
        assert_eq!(choose(&rates, 300_000), Some(0));
        // Nothing fits: the lowest layer rather than nothing.
        assert_eq!(choose(&rates, 10_000), Some(0));
        // Layers ranked by rate whatever their order.
        assert_eq!(choose(&[1_500_000, 150_000, 500_000], 600_000), Some(2));
    }

    #[test]
    fn unmeasured_layers_fall_back() {
        assert_eq!(choose(&[], 1_000_000), None);
        assert_eq!(choose(&[0, 0], 1_000_000), Some(0));
        assert_eq!(choose(&[0, 400_000], 100_000), Some(1));
    }

    #[test]
    fn below_the_best_layer_the_next_one_up_and_the_best_are_wanted() {
        let rates = [150_000, 1_500_000, 500_000];
        assert_eq!(wanted(&rates, Some(0), None), (500_000, 1_500_000));
        assert_eq!(wanted(&rates, Some(2), None), (1_500_000, 1_500_000));
        assert_eq!(wanted(&rates, Some(1), None), (1_500_000, 1_500_000));
        assert_eq!(wanted(&rates, None, None), (150_000, 1_500_000));
        assert_eq!(wanted(&[], None, None), (0, 0));
        // A small tile wants what it gets.
        assert_eq!(
            wanted(&rates, Some(0), Some(Layer::Low)),
            (150_000, 150_000)
        );
    }

    #[test]
    fn the_meter_measures_bits_per_second() {
        let t0 = Instant::now();
        let mut meter = RateMeter::default();
        for i in 0..100 {
            meter.add(t0 + Duration::from_millis(i * 10), 1250);
        }
        assert_eq!(meter.rate_bps(), 0, "no full window yet");
        meter.add(t0 + Duration::from_millis(1000), 1250);
        assert_eq!(meter.rate_bps(), 1_000_000);
    }
}

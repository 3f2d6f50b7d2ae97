//! A media shard's figures, kept off the forwarding path.
//!
//! Forwarding a packet adds to plain integers in the shard's own
//! [`Forwarded`] (no atomic, no lock, no label); once per wake of the loop
//! (a batch of up to 32 datagrams) [`ShardMetrics::after_wake`] adds them
//! to counter handles made once at start-up. How busy the loop was and how
//! many commands wait for it are reported once a second.

use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};

use super::{FORWARDED_BYTES, FORWARDED_PACKETS, SHARD_BUSY_RATIO, SHARD_QUEUE_DEPTH};

/// How often the busy ratio and the queue depth are reported.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What forwarding did since the last wake: [audio, video].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forwarded {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

impl Forwarded {
    /// One packet with `payload` bytes forwarded to one subscriber.
    #[inline]
    pub(crate) fn add(&mut self, video: bool, payload: usize) {
        let i = usize::from(video);
        self.packets[i] += 1;
        self.bytes[i] += payload as u64;
    }
}

/// One shard's metric handles and the busy time of its current window.
pub(crate) struct ShardMetrics {
    packets: [Counter; 2],
    bytes: [Counter; 2],
    busy_ratio: Gauge,
    queue_depth: Gauge,
    window_start: Instant,
    busy: Duration,
    shard: usize,
}

/// Each shard's last busy ratio, for the load a cluster node publishes.
static BUSY: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

/// The busiest shard's last busy ratio, 0.0 to 1.0.
pub(crate) fn busiest() -> f64 {
    BUSY.lock()
        .map(|all| all.iter().copied().fold(0.0, f64::max))
        .unwrap_or(0.0)
}

impl ShardMetrics {
    pub(crate) fn new(shard: usize, now: Instant) -> ShardMetrics {
        let index = shard;
        let shard = shard.to_string();
        let by_kind = |name: &'static str| {
            ["audio", "video"].map(|kind| metrics::counter!(name, "kind" => kind))
        };
        ShardMetrics {
            packets: by_kind(FORWARDED_PACKETS),
            bytes: by_kind(FORWARDED_BYTES),
            busy_ratio: metrics::gauge!(SHARD_BUSY_RATIO, "shard" => shard.clone()),
            queue_depth: metrics::gauge!(SHARD_QUEUE_DEPTH, "shard" => shard),
            window_start: now,
            busy: Duration::ZERO,
            shard: index,
        }
    }

    /// After a wake that worked for `worked`: adds what was forwarded (and
    /// empties `forwarded`).
    #[inline]
    pub(crate) fn after_wake(&mut self, forwarded: &mut Forwarded, worked: Duration) {
        self.busy += worked;
        if *forwarded == Forwarded::default() {
            return;
        }
        for i in 0..2 {
            if forwarded.packets[i] > 0 {
                self.packets[i].increment(forwarded.packets[i]);
                self.bytes[i].increment(forwarded.bytes[i]);
            }
        }
        *forwarded = Forwarded::default();
    }

    /// Once every [`REPORT_EVERY`]: the share of the window spent working,
    /// and the commands waiting now.
    pub(crate) fn report(&mut self, now: Instant, queue_depth: usize) {
        let ratio = busy_ratio(self.busy, now.saturating_duration_since(self.window_start));
        self.busy_ratio.set(ratio);
        if let Ok(mut all) = BUSY.lock() {
            if all.len() <= self.shard {
                all.resize(self.shard + 1, 0.0);
            }
            all[self.shard] = ratio;
        }
        self.queue_depth.set(queue_depth as f64);
        self.window_start = now;
        self.busy = Duration::ZERO;
    }
}

/// `busy` over `window`, between 0 and 1 (0 for an empty window).
fn busy_ratio(busy: Duration, window: Duration) -> f64 {
    if window.is_zero() {
        return 0.0;
    }
    (busy.as_secs_f64() / window.as_secs_f64()).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_adds_by_kind() {
        let mut f = Forwarded::default();
        f.add(false, 100);
        f.add(true, 1000);
        f.add(true, 200);
        assert_eq!(f.packets, [1, 2]);
        assert_eq!(f.bytes, [100, 1200]);
    }

    #[test]
    fn the_busy_ratio_is_a_share_of_the_window() {
        let ms = Duration::from_millis;
        assert_eq!(busy_ratio(ms(250), ms(1000)), 0.25);
        assert_eq!(busy_ratio(ms(1200), ms(1000)), 1.0);
        assert_eq!(busy_ratio(ms(5), Duration::ZERO), 0.0);
    }
}

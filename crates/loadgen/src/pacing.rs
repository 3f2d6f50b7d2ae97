//! When a synthetic track sends: audio as one packet every 20 ms, video as
//! frames (30 a second by default) of a few packets each, as an encoder and
//! a browser's packetizer would, so the SFU sees the bursts it would see
//! from real clients.

use std::time::{Duration, Instant};

/// How far behind a track may fall before it skips ahead instead of
/// catching up: a generator that stalled for a second must not then send a
/// second's worth of packets in one burst.
const MAX_BEHIND: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct Cadence {
    /// Ticks (audio packets, video frames) per second.
    ticks_per_second: u32,
    packets_per_second: u32,
    interval: Duration,
    next: Instant,
    /// Remainder of packets owed, in 1/ticks_per_second units.
    owed: u32,
}

impl Cadence {
    /// `packets_per_second` spread over `ticks_per_second` ticks, the first
    /// at `start`.
    pub fn new(start: Instant, ticks_per_second: u32, packets_per_second: u32) -> Cadence {
        let ticks_per_second = ticks_per_second.clamp(1, packets_per_second.max(1));
        Cadence {
            ticks_per_second,
            packets_per_second,
            interval: Duration::from_secs(1) / ticks_per_second,
            next: start,
            owed: 0,
        }
    }

    /// When the next tick is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// The number of packets of the tick due at `now` (0 when none is due),
    /// moving on to the next tick.
    pub fn take(&mut self, now: Instant) -> u32 {
        if now < self.next {
            return 0;
        }
        if now.duration_since(self.next) > MAX_BEHIND {
            self.next = now;
        }
        self.next += self.interval;
        self.owed += self.packets_per_second;
        let packets = self.owed / self.ticks_per_second;
        self.owed %= self.ticks_per_second;
        packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_second(cadence: &mut Cadence, start: Instant, step: Duration) -> (u32, u32) {
        let (mut packets, mut ticks) = (0, 0);
        let mut now = start;
        while now < start + Duration::from_secs(1) {
            let n = cadence.take(now);
            if n > 0 {
                ticks += 1;
            }
            packets += n;
            now += step;
        }
        (packets, ticks)
    }

    #[test]
    fn video_sends_its_packet_rate_in_frames() {
        let start = Instant::now();
        let mut video = Cadence::new(start, 30, 110);
        let (packets, frames) = one_second(&mut video, start, Duration::from_millis(1));
        assert_eq!((packets, frames), (110, 30));
    }

    #[test]
    fn audio_sends_one_packet_every_20_ms() {
        let start = Instant::now();
        let mut audio = Cadence::new(start, 50, 50);
        assert_eq!(audio.take(start), 1);
        assert_eq!(audio.take(start + Duration::from_millis(10)), 0);
        assert_eq!(audio.next(), start + Duration::from_millis(20));
        let mut audio = Cadence::new(start, 50, 50);
        assert_eq!(
            one_second(&mut audio, start, Duration::from_micros(500)),
            (50, 50)
        );
    }

    #[test]
    fn a_stall_skips_ahead_instead_of_bursting() {
        let start = Instant::now();
        let mut audio = Cadence::new(start, 50, 50);
        audio.take(start);
        let late = start + Duration::from_secs(2);
        assert_eq!(audio.take(late), 1);
        assert_eq!(audio.take(late), 0, "no catch-up burst after a stall");
        assert_eq!(audio.next(), late + Duration::from_millis(20));
    }
}

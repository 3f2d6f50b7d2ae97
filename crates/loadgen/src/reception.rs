//! What one receiver saw of one remote track: which packets arrived, which
//! came twice (a retransmission of a packet that was only late) and which
//! came after a later one.
//!
//! Loss is counted from unique packets, so a NACK answered after a packet
//! had already arrived late never makes loss look smaller than it was.

/// How many sequence numbers behind the newest a duplicate is still
/// recognised. A packet older than that is counted as new (and reordered).
const WINDOW: u32 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The newest packet so far.
    InOrder,
    /// A packet older than one already seen, arriving for the first time.
    Reordered,
    /// A packet that had already arrived.
    Duplicate,
}

#[derive(Debug, Clone, Default)]
pub struct TrackReception {
    newest: Option<u32>,
    /// Bit `i` is set when `newest - i` arrived.
    seen: u128,
    /// Unique packets sent inside the measurement window.
    pub unique_in_window: u64,
    /// The first and last sequence numbers received of those sent inside
    /// the window: a simulcast layer is only forwarded while a subscriber
    /// gets it, so its loss is counted over this span.
    pub window_span: Option<(u32, u32)>,
    pub reordered: u64,
    pub duplicates: u64,
}

impl TrackReception {
    /// Records packet `seq`; `in_window` says whether it was sent inside the
    /// measurement window, which is what loss is computed over.
    pub fn record(&mut self, seq: u32, in_window: bool) -> Arrival {
        let arrival = match self.newest {
            None => {
                self.newest = Some(seq);
                self.seen = 1;
                Arrival::InOrder
            }
            Some(newest) if seq > newest => {
                let ahead = seq - newest;
                self.seen = if ahead >= WINDOW {
                    0
                } else {
                    self.seen << ahead
                };
                self.seen |= 1;
                self.newest = Some(seq);
                Arrival::InOrder
            }
            Some(newest) => {
                let behind = newest - seq;
                if behind < WINDOW && self.seen & (1u128 << behind) != 0 {
                    Arrival::Duplicate
                } else {
                    if behind < WINDOW {
                        self.seen |= 1u128 << behind;
                    }
                    Arrival::Reordered
                }
            }
        };
        match arrival {
            Arrival::Duplicate => self.duplicates += 1,
            Arrival::Reordered => self.reordered += 1,
            Arrival::InOrder => {}
        }
        if in_window && arrival != Arrival::Duplicate {
            self.unique_in_window += 1;
            self.window_span = Some(match self.window_span {
                None => (seq, seq),
                Some((first, last)) => (first.min(seq), last.max(seq)),
            });
        }
        arrival
    }

    /// Packets of the window's span ([`Self::window_span`]): what a
    /// subscriber that got this layer over that span should have received.
    pub fn expected_in_span(&self) -> u64 {
        self.window_span
            .map_or(0, |(first, last)| u64::from(last - first) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_late_and_twice_are_told_apart() {
        let mut r = TrackReception::default();
        assert_eq!(r.record(10, true), Arrival::InOrder);
        assert_eq!(r.record(12, true), Arrival::InOrder);
        assert_eq!(r.record(11, true), Arrival::Reordered);
        assert_eq!(r.record(11, true), Arrival::Duplicate);
        assert_eq!(r.record(12, true), Arrival::Duplicate);
        assert_eq!(r.record(13, true), Arrival::InOrder);
        assert_eq!((r.unique_in_window, r.reordered, r.duplicates), (4, 1, 2));
    }

    #[test]
    fn only_packets_sent_in_the_window_count_towards_it() {
        let mut r = TrackReception::default();
        r.record(0, false);
        r.record(1, true);
        r.record(2, true);
        r.record(3, false);
        assert_eq!(r.unique_in_window, 2);
    }

    #[test]
    fn a_layers_span_counts_its_gaps_but_not_before_or_after() {
        let mut r = TrackReception::default();
        assert_eq!(r.expected_in_span(), 0);
        r.record(5, false);
        r.record(10, true);
        r.record(12, true);
        r.record(11, true);
        r.record(15, true);
        r.record(40, false);
        assert_eq!(r.window_span, Some((10, 15)));
        assert_eq!((r.expected_in_span(), r.unique_in_window), (6, 4));
    }

    #[test]
    fn a_jump_beyond_the_window_forgets_what_came_before() {
        let mut r = TrackReception::default();
        r.record(0, true);
        assert_eq!(r.record(1_000, true), Arrival::InOrder);
        assert_eq!(r.record(999, true), Arrival::Reordered);
        assert_eq!(r.record(999, true), Arrival::Duplicate);
        // Too old to tell: counted once more as a late packet, not lost.
        assert_eq!(r.record(0, true), Arrival::Reordered);
    }

    #[test]
    fn a_long_run_in_order_has_no_false_duplicates() {
        let mut r = TrackReception::default();
        for seq in 0..10_000 {
            assert_eq!(r.record(seq, true), Arrival::InOrder);
        }
        assert_eq!(r.unique_in_window, 10_000);
    }
}

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
        }
        arrival
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

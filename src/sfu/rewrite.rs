//! Per-subscriber rewriting of RTP sequence numbers and timestamps.
//!
//! A subscriber's forwarded track is one continuous RTP stream even when its
//! source changes (a simulcast layer switch) and even when it starts late in
//! the publisher's stream. Sequence numbers therefore start near zero for
//! every subscriber, so the SRTP rollover counter starts at zero as a late
//! joiner's receiver expects, and continue by one across a switch; the
//! timestamp continues with a plausible step. Gaps inside one source (loss)
//! are kept, so the receiver's NACKs still name the right packets.
//!
//! Plain arithmetic, no I/O: the forwarding loop calls [`Rewriter::rewrite`]
//! once per packet per subscriber.

/// What one forwarded packet becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rewritten {
    /// Extended sequence number for the subscriber's stream.
    pub seq: u64,
    pub timestamp: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Rewriter {
    state: Option<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    source: u32,
    seq_offset: i64,
    ts_offset: u32,
    last_seq: u64,
    last_ts: u32,
}

/// The first sequence number a subscriber sees: low, so the extended
/// sequence has no rollover for a long time, but not zero.
const FIRST_SEQ: u64 = 1;

impl Rewriter {
    /// Rewrites a packet of `source` (the publisher's SSRC) with extended
    /// sequence number `seq` and RTP timestamp `timestamp`. `ts_step` is the
    /// timestamp advance to assume across a source switch (one frame).
    /// Returns `None` for a packet older than the current source's start
    /// (it would map below the subscriber's first sequence number).
    pub(crate) fn rewrite(
        &mut self,
        source: u32,
        seq: u64,
        timestamp: u32,
        ts_step: u32,
    ) -> Option<Rewritten> {
        let state = match self.state {
            Some(s) if s.source == source => s,
            Some(s) => {
                // Switch: continue right after what the subscriber last saw.
                let next_seq = s.last_seq + 1;
                let next_ts = s.last_ts.wrapping_add(ts_step);
                State {
                    source,
                    seq_offset: seq as i64 - next_seq as i64,
                    ts_offset: timestamp.wrapping_sub(next_ts),
                    last_seq: s.last_seq,
                    last_ts: s.last_ts,
                }
            }
            None => State {
                source,
                seq_offset: seq as i64 - FIRST_SEQ as i64,
                ts_offset: timestamp.wrapping_sub(1),
                last_seq: 0,
                last_ts: 0,
            },
        };
        let out_seq = seq as i64 - state.seq_offset;
        if out_seq < FIRST_SEQ as i64 {
            return None;
        }
        let out = Rewritten {
            seq: out_seq as u64,
            timestamp: timestamp.wrapping_sub(state.ts_offset),
        };
        let newer = out.seq > state.last_seq;
        self.state = Some(State {
            last_seq: if newer { out.seq } else { state.last_seq },
            last_ts: if newer { out.timestamp } else { state.last_ts },
            ..state
        });
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_subscriber_starts_near_zero_and_keeps_gaps() {
        let mut r = Rewriter::default();
        let start = 3 * 65_536 + 100; // the publisher has rolled over three times
        let a = r.rewrite(7, start, 1_000_000, 3000).unwrap();
        assert_eq!(a.seq, 1);
        let b = r.rewrite(7, start + 1, 1_003_000, 3000).unwrap();
        assert_eq!((b.seq, b.timestamp.wrapping_sub(a.timestamp)), (2, 3000));
        // A lost packet stays a gap.
        let c = r.rewrite(7, start + 3, 1_006_000, 3000).unwrap();
        assert_eq!(c.seq, 4);
        // A reordered packet keeps its place.
        let d = r.rewrite(7, start + 2, 1_006_000, 3000).unwrap();
        assert_eq!(d.seq, 3);
        // Older than the first forwarded packet: dropped.
        assert_eq!(r.rewrite(7, start - 5, 990_000, 3000), None);
    }

    #[test]
    fn a_source_switch_continues_the_stream() {
        let mut r = Rewriter::default();
        let mut last = None;
        for i in 0..10 {
            last = r.rewrite(1, 500 + i, 90_000 + 3000 * i as u32, 3000);
        }
        let last = last.unwrap();
        let switched = r.rewrite(2, 40_000, 7_777_777, 3000).unwrap();
        assert_eq!(switched.seq, last.seq + 1);
        assert_eq!(switched.timestamp, last.timestamp.wrapping_add(3000));
        let next = r.rewrite(2, 40_001, 7_780_777, 3000).unwrap();
        assert_eq!(next.seq, last.seq + 2);
        assert_eq!(next.timestamp, last.timestamp.wrapping_add(6000));
    }

    #[test]
    fn timestamps_wrap_around() {
        let mut r = Rewriter::default();
        let a = r.rewrite(1, 10, u32::MAX - 1000, 3000).unwrap();
        let b = r.rewrite(1, 11, 2000, 3000).unwrap();
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 3001);
    }
}

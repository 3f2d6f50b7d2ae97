//! Who is speaking, from the audio level a sender writes into each audio
//! packet (RFC 6464 `ssrc-audio-level` header extension; browsers send it).
//!
//! The shard reads the level as it forwards, without decoding anything.
//! Speech is not a single loud packet: a person speaks from the first
//! packet above [`SPEAKING_DBOV`] until [`QUIET_FOR`] passes without one, so
//! the indicator does not flicker between syllables. Only changes are
//! reported. Used for the clinician's view of breakouts they are not in
//! (docs/protocol.md, `speaking`).

use std::time::{Duration, Instant};

/// Louder than this (dBov, 0 is the loudest, -127 silence) is speech. A
/// voice at a normal distance from a laptop microphone is about -20 to
/// -35 dBov after the browser's gain control; room noise is below -50.
pub(crate) const SPEAKING_DBOV: i8 = -45;

/// How long without a loud packet before speech is over.
pub(crate) const QUIET_FOR: Duration = Duration::from_millis(800);

/// One publisher's speech state.
#[derive(Debug, Default, Clone)]
pub(crate) struct Speech {
    last_loud: Option<Instant>,
    speaking: bool,
}

impl Speech {
    /// An audio packet with `level` (dBov) arrived at `now`: the new state
    /// when it changed.
    pub(crate) fn observe(&mut self, now: Instant, level: i8) -> Option<bool> {
        if level > SPEAKING_DBOV {
            self.last_loud = Some(now);
        }
        let speaking = self
            .last_loud
            .is_some_and(|t| now.saturating_duration_since(t) < QUIET_FOR);
        (speaking != self.speaking).then(|| {
            self.speaking = speaking;
            speaking
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_starts_at_a_loud_packet_and_ends_after_a_quiet_stretch() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut speech = Speech::default();
        assert_eq!(speech.observe(ms(0), -127), None, "silence is not news");
        assert_eq!(speech.observe(ms(20), -25), Some(true));
        assert_eq!(speech.observe(ms(40), -25), None, "only changes");
        // A pause between words is still speech.
        assert_eq!(speech.observe(ms(500), -90), None);
        assert_eq!(speech.observe(ms(800), -90), None);
        assert_eq!(speech.observe(ms(900), -90), Some(false));
        assert_eq!(speech.observe(ms(920), -60), None, "room noise");
        assert_eq!(speech.observe(ms(940), -30), Some(true));
    }
}

//! Draining a str0m `Rtc`: the loop that every peer connection runs after
//! each input, on the server's shards and in the load generator alike.
//!
//! str0m's rule is to call `poll_output` until it returns a timeout. It also
//! releases newly written media on a timeout it asks for at once: going back
//! to an event loop's timer for that would add up to a millisecond (tokio's
//! timer resolution) to every packet. So a timeout already due is handled
//! here, a bounded number of times, so that one connection cannot keep a
//! loop to itself.

use std::time::{Duration, Instant};

use str0m::net::Transmit;
use str0m::{Event, Input, Output, Rtc, RtcError};

/// How many due timeouts one drain handles before it leaves the rest to the
/// caller's timer. Each round releases one packet of str0m's pacer (see
/// [`PACER_STEP`]), so the bound is a burst: a video frame to one
/// subscriber, or a group room's frames that met in one wake, is a few to a
/// few dozen packets. The bound only keeps a connection that asks again and
/// again from holding the loop; the pacer itself stops a burst at its
/// budget (40 ms of its rate) by asking for a later time.
const MAX_DUE_TIMEOUTS: usize = 64;

/// How far ahead a timeout still counts as due. str0m's pacer, after each
/// packet it lets out, asks for a timeout one microsecond after the last
/// one it was given, only so that its clock moves between packets; the
/// packet behind it is due at once. Handling that timeout here (at the
/// same `now`: str0m ignores a time before one it has seen, and its pacer
/// is happy with no time passing) releases a subscriber's burst in one
/// drain instead of one packet per wake of the caller's loop, so the burst
/// leaves in one batch (one UDP GSO message) and a millisecond of timer
/// resolution is not added per packet.
const PACER_STEP: Duration = Duration::from_micros(1);

/// Polls `rtc` until it wants its next timeout: `transmit` gets every
/// datagram to send and `event` every event. Returns when that timeout is.
/// A timeout already due is judged against the clock, read at each one.
pub fn drain(
    rtc: &mut Rtc,
    transmit: impl FnMut(Transmit),
    event: impl FnMut(Event),
) -> Result<Instant, RtcError> {
    drain_with_clock(rtc, Instant::now, transmit, event)
}

/// [`drain`] at a given time, for a caller that does not read the clock
/// itself (the shard's sans-I/O core, driven by a test's clock or the
/// loop's).
pub fn drain_at(
    rtc: &mut Rtc,
    now: Instant,
    transmit: impl FnMut(Transmit),
    event: impl FnMut(Event),
) -> Result<Instant, RtcError> {
    drain_with_clock(rtc, || now, transmit, event)
}

fn drain_with_clock(
    rtc: &mut Rtc,
    mut clock: impl FnMut() -> Instant,
    mut transmit: impl FnMut(Transmit),
    mut event: impl FnMut(Event),
) -> Result<Instant, RtcError> {
    let mut due_timeouts = 0;
    // Whether anything came out since the last timeout handled here. A
    // pacer step releases a packet; a step ahead after one that released
    // nothing is not the pacer's, and waits for its time.
    let mut released = true;
    loop {
        match rtc.poll_output()? {
            Output::Timeout(at) => {
                let now = clock();
                let due = at <= now || (released && at <= now + PACER_STEP);
                if !due || due_timeouts == MAX_DUE_TIMEOUTS {
                    return Ok(at);
                }
                due_timeouts += 1;
                released = false;
                // A refused timeout shows at the next poll, if it matters.
                let _ = rtc.handle_input(Input::Timeout(now));
            }
            Output::Transmit(t) => {
                released = true;
                transmit(t);
            }
            Output::Event(e) => {
                released = true;
                event(e);
            }
        }
    }
}

//! Draining a str0m `Rtc`: the loop that every peer connection runs after
//! each input, on the server's shards and in the load generator alike.
//!
//! str0m's rule is to call `poll_output` until it returns a timeout. It also
//! releases newly written media on a timeout it asks for at once: going back
//! to an event loop's timer for that would add up to a millisecond (tokio's
//! timer resolution) to every packet. So a timeout already due is handled
//! here, a bounded number of times, so that one connection cannot keep a
//! loop to itself.

use std::time::Instant;

use str0m::net::Transmit;
use str0m::{Event, Input, Output, Rtc, RtcError};

/// How many due timeouts one drain handles before it leaves the rest to the
/// caller's timer. Each round releases what str0m's pacer lets out at that
/// moment, so a few rounds cover what one input queued; the bound only keeps
/// a connection that asks again and again from holding the loop. (A bound,
/// not a measured optimum: the latency it was added for, up to 1 ms per
/// forwarded packet, went with the first round.)
const MAX_DUE_TIMEOUTS: usize = 4;

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
    loop {
        match rtc.poll_output()? {
            Output::Timeout(at) => {
                let now = clock();
                if at > now || due_timeouts == MAX_DUE_TIMEOUTS {
                    return Ok(at);
                }
                due_timeouts += 1;
                // A refused timeout shows at the next poll, if it matters.
                let _ = rtc.handle_input(Input::Timeout(now));
            }
            Output::Transmit(t) => transmit(t),
            Output::Event(e) => event(e),
        }
    }
}

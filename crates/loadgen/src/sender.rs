//! What one synthetic participant publishes: an audio and a video track
//! paced like a browser's (Opus-sized packets, VP8-shaped frames), written
//! from pre-built payloads that carry a stamp (publisher, track, sequence
//! number, send time), either into str0m's RTP stream or as plain RTP to
//! the bare relay.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::rtp::RtpWrite;
use str0m::Rtc;
use tokio::net::UdpSocket;

use super::pacing::Cadence;
use super::participant::{Failure, Shared};
use super::report::Outcome;
use super::stamp::{self, Stamp, Track};

/// The participant's two tracks: when each sends and what.
pub(crate) struct Sender {
    tracks: [Outgoing; 2],
}

struct Outgoing {
    track: Track,
    /// Audio packets or video frames per second.
    ticks_per_second: u32,
    mid: Option<Mid>,
    pt: Option<Pt>,
    cadence: Cadence,
    stamp_seq: u32,
    rtp_seq: u64,
    rtp_time: u32,
    ssrc: u32,
    first: Vec<u8>,
    rest: Vec<u8>,
}

impl Sender {
    pub(crate) fn new(
        now: Instant,
        rtc: &Rtc,
        mids: [Mid; 2],
        publisher: u32,
        shared: &Shared,
    ) -> Result<Sender, Failure> {
        let pt_of = |codec: Codec| {
            rtc.codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        };
        let mut sender = Sender::plain(now, publisher, shared);
        sender.tracks[0].mid = Some(mids[0]);
        sender.tracks[0].pt = Some(pt_of(Codec::Opus).ok_or("no_opus")?);
        sender.tracks[1].mid = Some(mids[1]);
        sender.tracks[1].pt = Some(pt_of(Codec::Vp8).ok_or("no_vp8")?);
        Ok(sender)
    }

    pub(crate) fn plain(now: Instant, publisher: u32, shared: &Shared) -> Sender {
        let traffic = shared.traffic;
        // Real clients' frames are not in step with each other: each track
        // starts at a random point of its first interval, or a thousand
        // participants would send their frames in the same instant.
        let phase = |per_second: u32| {
            now + Duration::from_secs(1).mul_f64(rand::random::<f64>()) / per_second.max(1)
        };
        let outgoing = |track: Track, cadence: Cadence, len: usize| Outgoing {
            track,
            ticks_per_second: match track {
                Track::Audio => traffic.audio_pps.max(1),
                Track::Video => traffic.video_fps.max(1),
            },
            mid: None,
            pt: None,
            cadence,
            stamp_seq: 0,
            rtp_seq: 1,
            rtp_time: 0,
            ssrc: publisher
                .wrapping_mul(2)
                .wrapping_add(track.index() as u32 + 1),
            first: stamp::template(track, len, true, traffic.e2ee),
            rest: stamp::template(track, len, false, traffic.e2ee),
        };
        Sender {
            tracks: [
                outgoing(
                    Track::Audio,
                    Cadence::new(
                        phase(traffic.audio_pps),
                        traffic.audio_pps,
                        traffic.audio_pps,
                    ),
                    stamp::AUDIO_PAYLOAD,
                ),
                outgoing(
                    Track::Video,
                    Cadence::new(
                        phase(traffic.video_fps),
                        traffic.video_fps,
                        traffic.video_pps,
                    ),
                    traffic.video_payload(),
                ),
            ],
        }
    }

    pub(crate) fn next(&self) -> Instant {
        self.tracks[0]
            .cadence
            .next()
            .min(self.tracks[1].cadence.next())
    }

    /// Takes the packets due at `now` from both tracks, stamped and counted,
    /// and hands each to `write` with its track and marker bit.
    fn take_due(
        &mut self,
        now: Instant,
        shared: &Shared,
        outcome: &mut Outcome,
        mut write: impl FnMut(&Outgoing, Vec<u8>, bool, &mut Outcome),
    ) {
        for out in &mut self.tracks {
            let packets = out.cadence.take(now);
            for i in 0..packets {
                let payload = out.stamped(now, i == 0, shared, outcome);
                let marker = out.track == Track::Video && i + 1 == packets;
                write(out, payload, marker, outcome);
                out.rtp_seq += 1;
            }
            out.advance_time(packets);
        }
    }

    /// Writes the packets due at `now` into the `pub` connection.
    pub(crate) fn send_due(
        &mut self,
        now: Instant,
        rtc: &mut Rtc,
        shared: &Shared,
        outcome: &mut Outcome,
    ) {
        self.take_due(now, shared, outcome, |out, payload, marker, outcome| {
            let (Some(mid), Some(pt)) = (out.mid, out.pt) else {
                return;
            };
            let mut api = rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                outcome.error("no_send_stream");
                return;
            };
            // Video is kept for retransmission, as a browser does, so the
            // server's NACKs to publishers are answered.
            tx.write_rtp(
                RtpWrite::new(pt, out.rtp_seq.into(), out.rtp_time, now, payload)
                    .marker(marker)
                    .nackable(out.track == Track::Video),
            );
        });
    }

    /// Sends the packets due at `now` as plain RTP on a connected socket.
    pub(crate) fn send_plain(
        &mut self,
        now: Instant,
        socket: &UdpSocket,
        shared: &Shared,
        outcome: &mut Outcome,
    ) {
        self.take_due(now, shared, outcome, |out, payload, marker, outcome| {
            let mut datagram = Vec::with_capacity(12 + payload.len());
            datagram.push(0x80);
            let pt = if out.track == Track::Audio { 111 } else { 96 };
            datagram.push(pt | if marker { 0x80 } else { 0 });
            datagram.extend_from_slice(&(out.rtp_seq as u16).to_be_bytes());
            datagram.extend_from_slice(&out.rtp_time.to_be_bytes());
            datagram.extend_from_slice(&out.ssrc.to_be_bytes());
            datagram.extend_from_slice(&payload);
            match socket.try_send(&datagram) {
                // The relay is not listening (yet): the hello is retried.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => outcome.error(format!("udp_send_{:?}", e.kind())),
                Ok(_) => {}
            }
        });
    }
}

impl Outgoing {
    /// The next payload of this track, stamped, counted as sent.
    fn stamped(
        &mut self,
        now: Instant,
        frame_start: bool,
        shared: &Shared,
        outcome: &mut Outcome,
    ) -> Vec<u8> {
        let mut payload = if frame_start {
            self.first.clone()
        } else {
            self.rest.clone()
        };
        let sent_ns = shared.clock.ns(now);
        Stamp {
            publisher: outcome.index,
            track: self.track,
            seq: self.stamp_seq,
            sent_ns,
        }
        .write(&mut payload);
        self.stamp_seq = self.stamp_seq.wrapping_add(1);
        if shared.clock.in_window(sent_ns) {
            outcome.sent_in_window[self.track.index()] += 1;
        }
        shared.live.sent.fetch_add(1, Ordering::Relaxed);
        payload
    }

    /// Audio timestamps advance one packet's duration at 48 kHz (960 at 50
    /// packets/s), video one frame's at 90 kHz (3000 at 30 fps) per tick
    /// that sent packets.
    fn advance_time(&mut self, packets: u32) {
        if packets == 0 {
            return;
        }
        let step = match self.track {
            Track::Audio => 48_000 / self.ticks_per_second * packets,
            Track::Video => 90_000 / self.ticks_per_second,
        };
        self.rtp_time = self.rtp_time.wrapping_add(step);
    }
}

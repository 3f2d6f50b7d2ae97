//! What one synthetic participant publishes: an audio and a video track
//! paced like a browser's (Opus-sized packets, VP8-shaped frames), written
//! from pre-built payloads that carry a stamp (publisher, track, layer,
//! sequence number, send time), either into str0m's RTP stream or as plain
//! RTP to the bare relay.
//!
//! With simulcast the video is sent three times, as a browser sends its
//! camera: layers `q`, `h` and `f` (a tenth, a quarter and all of the video
//! bitrate, each at least a packet per frame). Every frame is an interframe
//! except the first of each layer and the next one after the SFU asks for
//! a keyframe of that layer (a PLI or FIR), which is what an SFU waits
//! for before it switches a subscriber to the layer.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::RtpWrite;
use str0m::Rtc;
use tokio::net::UdpSocket;

use super::pacing::Cadence;
use super::participant::{Failure, Shared, Traffic};
use super::report::Outcome;
use super::stamp::{self, Stamp, Track};

/// The simulcast layers a publisher sends, lowest first (Chrome's and
/// LiveKit's names), and each one's share of the video bitrate.
pub(crate) const LAYERS: [(&str, u64); 3] = [("q", 10), ("h", 4), ("f", 1)];

/// The participant's tracks (audio, then video or its layers): when each
/// sends and what.
pub(crate) struct Sender {
    tracks: Vec<Outgoing>,
}

struct Outgoing {
    track: Track,
    /// The simulcast layer (0 lowest), 0 without simulcast.
    layer: u8,
    rid: Option<Rid>,
    /// The next frame starts with a keyframe.
    keyframe_due: bool,
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
    key: Vec<u8>,
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
        let mut sender = Sender::build(now, publisher, shared, shared.traffic.simulcast);
        let (opus, vp8) = (pt_of(Codec::Opus), pt_of(Codec::Vp8));
        for out in &mut sender.tracks {
            out.mid = Some(mids[out.track.index()]);
            out.pt = Some(match out.track {
                Track::Audio => opus.ok_or("no_opus")?,
                Track::Video => vp8.ok_or("no_vp8")?,
            });
        }
        Ok(sender)
    }

    /// Plain RTP for the bare relay (which forwards everything, so it gets
    /// no simulcast).
    pub(crate) fn plain(now: Instant, publisher: u32, shared: &Shared) -> Sender {
        Sender::build(now, publisher, shared, false)
    }

    fn build(now: Instant, publisher: u32, shared: &Shared, simulcast: bool) -> Sender {
        let traffic = shared.traffic;
        // Real clients' frames are not in step with each other: each track
        // starts at a random point of its first interval, or a thousand
        // participants would send their frames in the same instant.
        let phase = |per_second: u32| {
            now + Duration::from_secs(1).mul_f64(rand::random::<f64>()) / per_second.max(1)
        };
        let outgoing = |track: Track, layer: u8, cadence: Cadence, len: usize| Outgoing {
            track,
            layer,
            rid: (simulcast && track == Track::Video)
                .then(|| Rid::from(LAYERS[usize::from(layer)].0)),
            keyframe_due: true,
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
                .wrapping_mul(4)
                .wrapping_add(track.index() as u32 + u32::from(layer) + 1),
            first: stamp::template(track, len, true, traffic.e2ee),
            rest: stamp::template(track, len, false, traffic.e2ee),
            key: stamp::keyframe_template(len, traffic.e2ee),
        };
        let mut tracks = vec![outgoing(
            Track::Audio,
            0,
            Cadence::new(
                phase(traffic.audio_pps),
                traffic.audio_pps,
                traffic.audio_pps,
            ),
            stamp::AUDIO_PAYLOAD,
        )];
        let video_phase = phase(traffic.video_fps);
        if simulcast {
            for (layer, (_, divisor)) in LAYERS.iter().enumerate() {
                let (pps, len) = layer_shape(&traffic, *divisor);
                let cadence = Cadence::new(video_phase, traffic.video_fps, pps);
                tracks.push(outgoing(Track::Video, layer as u8, cadence, len));
            }
        } else {
            let cadence = Cadence::new(video_phase, traffic.video_fps, traffic.video_pps);
            tracks.push(outgoing(Track::Video, 0, cadence, traffic.video_payload()));
        }
        Sender { tracks }
    }

    pub(crate) fn next(&self) -> Instant {
        self.tracks
            .iter()
            .map(|t| t.cadence.next())
            .min()
            .expect("an audio track at least")
    }

    /// The SFU asked for a keyframe of a video layer (`None`: every layer).
    pub(crate) fn keyframe_wanted(&mut self, rid: Option<Rid>) {
        for out in &mut self.tracks {
            if out.track == Track::Video && (rid.is_none() || out.rid == rid) {
                out.keyframe_due = true;
            }
        }
    }

    /// Takes the packets due at `now` from both tracks, stamped and counted,
    /// and hands each to `write` with its track and marker bit.
    fn take_due(
        &mut self,
        now: Instant,
        shared: &Shared,
        outcome: &mut Outcome,
        mut write: impl FnMut(&Outgoing, Vec<u8>, bool, &mut Outcome),
    ) -> u32 {
        let mut taken = 0;
        for out in &mut self.tracks {
            let packets = out.cadence.take(now);
            let keyframe = packets > 0 && std::mem::take(&mut out.keyframe_due);
            for i in 0..packets {
                let payload = out.stamped(now, i == 0, keyframe, shared, outcome);
                let marker = out.track == Track::Video && i + 1 == packets;
                write(out, payload, marker, outcome);
                out.rtp_seq += 1;
            }
            out.advance_time(packets);
            taken += packets;
        }
        taken
    }

    /// Writes the packets due at `now` into the `pub` connection; how many.
    pub(crate) fn send_due(
        &mut self,
        now: Instant,
        rtc: &mut Rtc,
        shared: &Shared,
        outcome: &mut Outcome,
    ) -> u32 {
        self.take_due(now, shared, outcome, |out, payload, marker, outcome| {
            let (Some(mid), Some(pt)) = (out.mid, out.pt) else {
                return;
            };
            let mut api = rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, out.rid) else {
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
        })
    }

    /// Sends the packets due at `now` as plain RTP on a connected socket.
    pub(crate) fn send_plain(
        &mut self,
        now: Instant,
        socket: &UdpSocket,
        shared: &Shared,
        outcome: &mut Outcome,
    ) {
        let _ = self.take_due(now, shared, outcome, |out, payload, marker, outcome| {
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
        keyframe: bool,
        shared: &Shared,
        outcome: &mut Outcome,
    ) -> Vec<u8> {
        let mut payload = match (frame_start, keyframe) {
            (true, true) => self.key.clone(),
            (true, false) => self.first.clone(),
            (false, _) => self.rest.clone(),
        };
        let sent_ns = shared.clock.ns(now);
        Stamp {
            publisher: outcome.index,
            track: self.track,
            layer: self.layer,
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

/// Packets per second and bytes per packet of the layer that carries
/// `1 / divisor` of the video bitrate: at least a packet per frame.
fn layer_shape(traffic: &Traffic, divisor: u64) -> (u32, usize) {
    let pps = (traffic.video_pps / divisor as u32)
        .max(traffic.video_fps)
        .max(1);
    let bytes = traffic.video_bitrate_bps / divisor / 8 / u64::from(pps);
    (
        pps,
        (bytes as usize).clamp(stamp::STAMP_LEN + 2, stamp::MAX_PAYLOAD),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic() -> Traffic {
        Traffic {
            audio_pps: 50,
            video_pps: 110,
            video_fps: 30,
            video_bitrate_bps: 1_200_000,
            e2ee: false,
            simulcast: true,
        }
    }

    #[test]
    fn layers_carry_a_tenth_a_quarter_and_all_of_the_bitrate() {
        let t = traffic();
        let shapes: Vec<(u32, usize)> = LAYERS.iter().map(|(_, d)| layer_shape(&t, *d)).collect();
        // q: 120 kbit/s in 30 one-packet frames; h: 300 kbit/s; f: all.
        assert_eq!(shapes, [(30, 500), (30, 1_250), (110, 1_363)]);
        assert_eq!(shapes[2].1, t.video_payload());
    }

    fn sender(simulcast: bool) -> (Sender, Shared) {
        let (_stop, stop) = tokio::sync::watch::channel(false);
        let shared = Shared::for_tests(
            Traffic {
                simulcast,
                ..traffic()
            },
            stop,
        );
        let sender = Sender::build(Instant::now(), 7, &shared, simulcast);
        (sender, shared)
    }

    /// The payloads `take_due` hands out over the `ms` milliseconds from
    /// `start`, as (track, layer, keyframe start, marker) per packet.
    fn sent(
        sender: &mut Sender,
        shared: &Shared,
        start: Instant,
        ms: u64,
    ) -> Vec<(Track, u8, bool, bool)> {
        let mut outcome = Outcome::new(7, 0);
        let mut out = Vec::new();
        for t in 0..ms {
            let now = start + Duration::from_millis(t);
            sender.take_due(now, shared, &mut outcome, |o, payload, marker, _| {
                let stamp = Stamp::read(&payload).expect("stamped");
                assert_eq!((stamp.track, stamp.layer), (o.track, o.layer));
                let key = o.track == Track::Video && payload[0] == 0x10 && payload[1] & 1 == 0;
                out.push((o.track, o.layer, key, marker));
            });
        }
        out
    }

    #[test]
    fn a_simulcast_sender_sends_three_layers_each_starting_with_a_keyframe() {
        let (mut sender, shared) = sender(true);
        assert_eq!(sender.tracks.len(), 4);
        let rids: Vec<Option<Rid>> = sender.tracks.iter().map(|t| t.rid).collect();
        assert_eq!(
            rids,
            [None, Some("q".into()), Some("h".into()), Some("f".into())]
        );
        let packets = sent(&mut sender, &shared, Instant::now(), 1_000);
        for layer in 0..3u8 {
            let video: Vec<_> = packets
                .iter()
                .filter(|p| p.0 == Track::Video && p.1 == layer)
                .collect();
            // 30 frames a second, from a random point of the first frame's
            // interval: 29 or more packets in the second stepped through.
            assert!(video.len() >= 29, "layer {layer}: {}", video.len());
            assert!(video[0].2, "layer {layer} starts with a keyframe");
            assert_eq!(video.iter().filter(|p| p.2).count(), 1, "then interframes");
        }
        // Audio starts at a random point of its first 20 ms: 50 packets in
        // the 1,000 ms stepped through, or 49 when it starts in the last
        // millisecond of that interval (the 50th is then due at 1,000 ms).
        let audio = packets.iter().filter(|p| p.0 == Track::Audio).count();
        assert!((49..=50).contains(&audio), "{audio}");
    }

    #[test]
    fn a_keyframe_request_is_answered_on_the_layer_asked_for() {
        let (mut sender, shared) = sender(true);
        let start = Instant::now();
        let ms = Duration::from_millis(100);
        sent(&mut sender, &shared, start, 100);
        sender.keyframe_wanted(Some("h".into()));
        let next = sent(&mut sender, &shared, start + ms, 100);
        let keys: Vec<u8> = next.iter().filter(|p| p.2).map(|p| p.1).collect();
        assert_eq!(keys, [1]);
        sender.keyframe_wanted(None);
        let next = sent(&mut sender, &shared, start + 2 * ms, 100);
        let mut keys: Vec<u8> = next.iter().filter(|p| p.2).map(|p| p.1).collect();
        keys.sort();
        assert_eq!(keys, [0, 1, 2]);
    }

    #[test]
    fn without_simulcast_one_video_track_and_no_rids() {
        let (sender, _shared) = sender(false);
        assert_eq!(sender.tracks.len(), 2);
        assert!(sender
            .tracks
            .iter()
            .all(|t| t.rid.is_none() && t.layer == 0));
    }
}

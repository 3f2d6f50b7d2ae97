//! Media: a publisher's RTP packet to each subscriber of its room and group,
//! simulcast layer choice and switches, and keyframe requests.
//!
//! A publisher's `RtpPacket` event is written straight into each
//! subscriber's `StreamTx`; the payload is shared (`Arc`), so forwarding
//! costs no task, lock, channel hop, copy or heap allocation of ours. The
//! subscriber is only marked written; [`ShardCore::flush`] drains it once
//! per batch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::{RtpPacket, RtpWrite};

use super::core::ShardCore;
use crate::sfu::keyframe::{is_h264_keyframe, is_vp8_keyframe};
use crate::sfu::layers;
use crate::sfu::peer::MAX_LAYERS;
use crate::sfu::{ConnId, Pc, PeerEvent};
use tandem_protocol::{Layer, MediaKind as SignalKind};

/// How long a forwarded video packet stays ready for a retransmission. A
/// receiver asks again for a lost packet within a round trip or two, and a
/// browser's own sender keeps about a second; str0m's default is three
/// seconds. The payload, shared by every subscriber of a publisher, lives
/// as long as any cache holds it, so three seconds of every publisher's
/// video was half of the server's memory per participant
/// (docs/benchmarks.md).
const RETRANSMIT_WITHIN: Duration = Duration::from_secs(1);

/// The most packets that cache holds per stream: a second of a 2.5 Mbit/s
/// screen share is about 250.
const RETRANSMIT_PACKETS: usize = 1000;

/// str0m's cap on retransmissions, as a share of a stream's bitrate.
const RETRANSMIT_RATIO_CAP: Option<f32> = Some(0.15);

/// The RTP timestamp step assumed for one audio frame where a subscriber's
/// stream changes source: Opus runs a 48 kHz RTP clock (RFC 7587) and
/// browsers send 20 ms frames, so 48,000 × 0.020 = 960.
pub(super) const AUDIO_FRAME_TICKS: u32 = 960;

/// The same for one video frame: video RTP clocks run at 90 kHz (RFC 7741,
/// RFC 6184) and a camera sends about 30 frames a second, so
/// 90,000 / 30 = 3,000. (Only a plausible step is needed: the receiver
/// plays video by the timestamps that follow.)
pub(super) const VIDEO_FRAME_TICKS: u32 = 3000;

impl ShardCore {
    /// Stops (or resumes) forwarding one kind of a peer's media.
    pub(super) fn on_block(&mut self, now: Instant, conn: ConnId, kind: SignalKind, blocked: bool) {
        let kind = match kind {
            SignalKind::Audio => MediaKind::Audio,
            SignalKind::Video => MediaKind::Video,
        };
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.set_blocked(kind, blocked);
        if !blocked && kind == MediaKind::Video {
            // Subscribers need a keyframe to show the video again.
            let tracks: Vec<Mid> = peer
                .published
                .iter()
                .filter(|t| t.kind == kind)
                .map(|t| t.mid)
                .collect();
            for mid in tracks {
                self.request_keyframe(now, conn, mid, None);
            }
        }
    }

    /// A subscriber's layer preference (`layer_preference`), applied to
    /// the videos it receives now and kept for those it receives later.
    pub(super) fn on_prefer(&mut self, conn: ConnId, layers: BTreeMap<String, Layer>) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let wanted: Vec<Option<Layer>> = peer
            .subscriptions
            .iter()
            .map(|s| {
                self.peers
                    .get(&s.publisher)
                    .and_then(|p| layers.get(&p.participant).copied())
            })
            .collect();
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        for (sub, preferred) in peer.subscriptions.iter_mut().zip(wanted) {
            sub.preferred = preferred;
        }
        peer.preferred = layers;
    }

    pub(super) fn on_connected(&mut self, now: Instant, conn: ConnId, pc: Pc) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.tell(PeerEvent::Connected { pc });
        if pc == Pc::Sub {
            peer.subscribe_connected = true;
            let videos: Vec<(ConnId, Mid)> = peer
                .subscriptions
                .iter()
                .filter(|s| s.kind == MediaKind::Video && s.negotiated)
                .map(|s| (s.publisher, s.source))
                .collect();
            for (publisher, source) in videos {
                self.request_keyframe(now, publisher, source, None);
            }
        }
    }

    /// A subscriber lost its picture: ask the publisher (throttled).
    pub(super) fn on_keyframe_request(&mut self, now: Instant, conn: ConnId, mid: Mid) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let Some(sub) = peer.subscriptions.iter().find(|s| s.mid == mid) else {
            return;
        };
        let (publisher, source, layer) = (sub.publisher, sub.source, sub.layer.or(sub.target));
        self.request_keyframe(now, publisher, source, layer);
    }

    /// Asks a publisher for a keyframe of one track (one layer, or all),
    /// at most once per layer per [`crate::sfu::keyframe::REQUEST_INTERVAL`].
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ConnId,
        source: Mid,
        layer: Option<usize>,
    ) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(track) = peer.published.iter_mut().find(|t| t.mid == source) else {
            return;
        };
        if track.layers.is_empty() {
            // A track without simulcast has one unnamed layer.
            track.layers.push(Default::default());
        }
        let (first, end) = match layer {
            Some(l) => (l, l + 1),
            None => (0, track.layers.len()),
        };
        let mut requested = false;
        for entry in track.layers.iter_mut().take(end).skip(first) {
            if !entry.keyframes.allow(now) {
                continue;
            }
            if let Some(rx) = peer
                .publish
                .direct_api()
                .stream_rx_by_mid(source, entry.rid)
            {
                rx.request_keyframe(KeyframeRequestKind::Pli);
                requested = true;
            }
        }
        if requested {
            self.drain(now, publisher, Pc::Pub);
        }
    }

    /// Forwards one packet of `publisher` to every subscriber in its room
    /// and group.
    pub(super) fn forward(&mut self, now: Instant, publisher: ConnId, packet: RtpPacket) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        // The track and layer of this SSRC: learned once per SSRC.
        let known = peer
            .published
            .iter()
            .position(|t| t.layers.iter().any(|l| l.ssrc == Some(ssrc)));
        let (track_index, rid) = match known {
            Some(i) => (i, None),
            None => {
                let (mid, rid) = match peer.publish.direct_api().stream_rx(&ssrc) {
                    Some(rx) => (rx.mid(), rx.rid()),
                    None => return,
                };
                match peer.published.iter().position(|t| t.mid == mid) {
                    Some(i) => (i, rid),
                    None => return,
                }
            }
        };
        let Some(params) = peer
            .publish
            .codec_config()
            .params()
            .iter()
            .find(|p| p.pt() == packet.header.payload_type)
            .copied()
        else {
            return;
        };
        let track = &mut peer.published[track_index];
        let Some(layer) = track.layer_of(ssrc, rid) else {
            return;
        };
        track.layers[layer].meter.add(now, packet.payload.len());
        let (rates, layer_count) = track.rates();
        let source = track.mid;
        let kind = track.kind;
        let simulcast = layer_count > 1;
        let keyframe = simulcast
            && match params.spec().codec {
                Codec::Vp8 => is_vp8_keyframe(&packet.payload),
                Codec::H264 => is_h264_keyframe(&packet.payload),
                _ => false,
            };
        if kind == MediaKind::Audio {
            if let Some(level) = packet.header.ext_vals.audio_level {
                if let Some(speaking) = peer.speech.observe(now, level) {
                    peer.tell(PeerEvent::Speaking { speaking });
                }
            }
        }
        if peer.is_blocked(kind) {
            return;
        }
        let ts_step = if kind == MediaKind::Audio {
            AUDIO_FRAME_TICKS
        } else {
            VIDEO_FRAME_TICKS
        };
        let room = peer.room;
        let group = peer.group;
        let mut wanted_keyframes = [false; MAX_LAYERS];

        let Some(members) = self.rooms.get(&room) else {
            return;
        };
        let room_size = members.len();
        for &conn in members {
            if conn == publisher {
                continue;
            }
            let Some(subscriber) = self.peers.get_mut(&conn) else {
                continue;
            };
            if !subscriber.subscribe_connected || subscriber.group != group {
                continue;
            }
            // What the layer choice needs of the subscriber (simulcast only):
            // its estimate, its budget for this video, and whether its
            // link is congested (which may end here).
            let bandwidth = simulcast.then(|| {
                let estimate = subscriber.egress_bps;
                let share = estimate / subscriber.video_subscriptions().max(1) as u64;
                let best_rate = rates[..layer_count].iter().copied().max().unwrap_or(0);
                subscriber.congested_at = subscriber
                    .congested_at
                    .filter(|&at| layers::still_congested(now, at, share, best_rate));
                let congested = subscriber.congested_at.is_some();
                (
                    estimate,
                    layers::budget(room_size, congested, share),
                    congested,
                )
            });
            let Some(sub) = subscriber
                .subscriptions
                .iter_mut()
                .find(|s| s.publisher == publisher && s.source == source && s.negotiated)
            else {
                continue;
            };
            if let Some((estimate, budget, congested)) = bandwidth {
                // Switch layers only on a keyframe of the new one; until it
                // comes, the old layer (if any) goes on.
                let rates = &rates[..layer_count];
                let choice = layers::choose_preferred(rates, budget, estimate, sub.preferred);
                // Only a congested link probes (core.rs), so only its
                // subscriptions need to say what they would like.
                sub.wanted_bps = if congested {
                    layers::wanted(rates, choice, sub.preferred)
                } else {
                    (0, 0)
                };
                sub.target = if choice == sub.layer { None } else { choice };
                if let Some(target) = sub.target {
                    if target == layer && keyframe {
                        sub.layer = Some(target);
                        sub.target = None;
                    } else {
                        wanted_keyframes[target] = true;
                    }
                }
                if sub.layer != Some(layer) {
                    continue;
                }
            }
            let Some(out_pt) = subscriber
                .subscribe
                .codec_config()
                .match_params(params)
                .map(|p| p.pt())
            else {
                continue;
            };
            let Some(out) =
                sub.rewriter
                    .rewrite(*ssrc, *packet.seq_no, packet.header.timestamp, ts_step)
            else {
                continue;
            };
            let mut api = subscriber.subscribe.direct_api();
            let known = sub
                .stream
                .is_some_and(|ssrc| api.stream_tx(&ssrc).is_some_and(|tx| tx.mid() == sub.mid));
            if !known {
                sub.stream = api.stream_tx_by_mid(sub.mid, None).map(|tx| {
                    tx.set_rtx_cache(RETRANSMIT_PACKETS, RETRANSMIT_WITHIN, RETRANSMIT_RATIO_CAP);
                    tx.ssrc()
                });
            }
            let Some(tx) = sub.stream.and_then(|ssrc| api.stream_tx(&ssrc)) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    out.seq.into(),
                    out.timestamp,
                    packet.timestamp,
                    packet.payload.clone(),
                )
                .marker(packet.header.marker)
                .nackable(kind == MediaKind::Video),
            );
            if let Some(link) = subscriber.loss_estimate.as_mut() {
                link.on_sent(now, packet.payload.len());
            }
            self.written.push(conn);
            self.forwarded
                .add(kind == MediaKind::Video, packet.payload.len());
        }
        for (layer, wanted) in wanted_keyframes.into_iter().enumerate() {
            if wanted {
                self.request_keyframe(now, publisher, source, Some(layer));
            }
        }
    }
}

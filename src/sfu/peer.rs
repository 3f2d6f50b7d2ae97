//! One participant inside a shard: its two peer connections, what it
//! publishes, what it receives, and the state of its `sub` negotiation.

use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::change::SdpPendingOffer;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::rtp::Ssrc;
use str0m::{Candidate, Rtc, RtcConfig};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::keyframe::Throttle;
use super::layers::RateMeter;
use super::loss_estimate::LossEstimate;
use super::rewrite::Rewriter;
use super::{ConnId, PeerEvent};
use tandem_protocol::Pc;

/// The most simulcast layers a published video may have. Browsers send at
/// most three; one more leaves room for a sender that sends four. A fixed
/// bound lets forwarding keep per-layer figures in arrays on the stack
/// (no allocation per packet); layers beyond it are not forwarded.
pub(crate) const MAX_LAYERS: usize = 4;

/// The bandwidth a subscriber is assumed to have before its estimate comes.
///
/// str0m paces a connection's media at its estimate and queues what does
/// not fit (up to half a second). A start below what a room sends would make
/// the first seconds of every call lag: a joint session forwards about
/// 2.5 Mbit/s to each person. So the start is generous, and the estimate
/// falls within a second or two where a subscriber's network is slower
/// (measured with `tandem load-test`, docs/benchmarks.md).
pub(crate) const INITIAL_ESTIMATE_BPS: u64 = 5_000_000;

/// What one audio track is assumed to need: Opus for speech runs at 30–50
/// kbit/s with its headers.
const AUDIO_ALLOWANCE_BPS: u64 = 64_000;

/// One simulcast layer (or the only encoding) of a published track.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    pub rid: Option<Rid>,
    pub ssrc: Option<Ssrc>,
    pub meter: RateMeter,
    pub keyframes: Throttle,
}

/// A track this participant publishes (an m-line of its `pub` connection).
#[derive(Debug)]
pub(crate) struct Published {
    pub mid: Mid,
    pub kind: MediaKind,
    pub layers: Vec<Layer>,
}

impl Published {
    /// The layer a packet of `ssrc` (with `rid` from the stream) belongs to,
    /// learning new SSRCs as they appear.
    pub(crate) fn layer_of(&mut self, ssrc: Ssrc, rid: Option<Rid>) -> Option<usize> {
        if let Some(i) = self.layers.iter().position(|l| l.ssrc == Some(ssrc)) {
            return Some(i);
        }
        let i = match self
            .layers
            .iter()
            .position(|l| l.rid == rid && l.ssrc.is_none())
        {
            Some(i) => i,
            None if self.layers.len() < MAX_LAYERS => {
                self.layers.push(Layer {
                    rid,
                    ..Layer::default()
                });
                self.layers.len() - 1
            }
            None => return None,
        };
        self.layers[i].ssrc = Some(ssrc);
        Some(i)
    }

    /// Measured bitrates of the layers, for [`super::layers::choose`].
    pub(crate) fn rates(&self) -> ([u64; MAX_LAYERS], usize) {
        let mut rates = [0; MAX_LAYERS];
        for (i, layer) in self.layers.iter().enumerate() {
            rates[i] = layer.meter.rate_bps();
        }
        (rates, self.layers.len())
    }
}

/// Someone else's track as this participant receives it (an m-line of its
/// `sub` connection).
#[derive(Debug)]
pub(crate) struct Subscription {
    pub publisher: ConnId,
    pub source: Mid,
    pub mid: Mid,
    pub kind: MediaKind,
    /// The subscriber has accepted an offer containing this m-line.
    pub negotiated: bool,
    pub rewriter: Rewriter,
    /// The layer the subscriber asked for (from its tile's size).
    pub preferred: Option<tandem_protocol::Layer>,
    /// The layer being forwarded now.
    pub layer: Option<usize>,
    /// A layer to switch to at its next keyframe.
    pub target: Option<usize>,
    /// For simulcast video: the rates of the next layer up and of the best
    /// ([`super::layers::wanted`]).
    pub wanted_bps: (u64, u64),
    /// The SSRC of this m-line's send stream, learned at the first packet:
    /// str0m finds a stream by SSRC in a map, by mid only by walking them
    /// all, once per packet per subscriber.
    pub stream: Option<Ssrc>,
}

/// A change to the `sub` connection waiting for the next offer.
#[derive(Debug)]
pub(crate) enum Change {
    Add {
        publisher: ConnId,
        participant: String,
        source: Mid,
        kind: MediaKind,
    },
    Deactivate {
        mid: Mid,
    },
}

pub(crate) struct Peer {
    pub room: Uuid,
    pub participant: String,
    pub events: mpsc::UnboundedSender<PeerEvent>,
    pub publish: Rtc,
    pub subscribe: Rtc,
    pub publish_deadline: Instant,
    pub subscribe_deadline: Instant,
    pub published: Vec<Published>,
    pub subscriptions: Vec<Subscription>,
    pub wanted: Vec<Change>,
    pub pending: Option<SdpPendingOffer>,
    pub subscribe_connected: bool,
    pub egress_bps: u64,
    /// What the `sub` connection's estimator was last told to sustain and
    /// probe for ([`Peer::wanted_bitrate`]).
    pub bwe_wanted: (u64, u64),
    /// A joint session's subscriber (no estimator on `sub`): what its loss
    /// reports say the link carries, which becomes `egress_bps`.
    pub loss_estimate: Option<LossEstimate>,
    /// When the subscriber last reported loss on `sub`
    /// ([`super::layers::CONGESTED_LOSS`]); cleared by
    /// [`super::layers::still_congested`].
    pub congested_at: Option<Instant>,
    /// Candidates were trickled to the client for this connection.
    pub trickled_pub: bool,
    pub trickled_sub: bool,
    /// Media flows only between peers of the same group (breakouts).
    pub group: u32,
    /// Kinds of this peer's media not forwarded: [audio, video].
    pub blocked: [bool; 2],
    /// Raised by every packet either peer connection receives.
    pub sign_of_life: super::SignOfLife,
    /// The layer this subscriber wants of each publisher's video, by
    /// participant id (`layer_preference`).
    pub preferred: std::collections::BTreeMap<String, tandem_protocol::Layer>,
    /// Whether this publisher is speaking, from its audio levels.
    pub speech: super::speech::Speech,
    /// Tracks offered on `sub` so far (each offer's track id is unique).
    pub offered: u32,
}

/// Which of a participant's two connections [`new_rtc`] makes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Link {
    /// `pub`: media from the participant.
    Publisher,
    /// `sub`: media to the participant, with or without an estimate of the
    /// link ([`crate::sfu::Joining::estimate_bandwidth`]).
    Subscriber { estimate_bandwidth: bool },
}

/// A new ICE-lite peer connection of shard `shard` in RTP mode with the
/// shard's candidates; its ICE ufrag names the shard (see
/// [`super::https_port`]).
pub(crate) fn new_rtc(now: Instant, shard: usize, candidates: &[Candidate], link: Link) -> Rtc {
    let mut config = RtcConfig::new()
        .set_local_ice_credentials(super::https_port::local_credentials(shard))
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true);
    match link {
        Link::Publisher => {}
        Link::Subscriber { estimate_bandwidth } => {
            // Receiver reports' loss, once a second: what tells a congested
            // link from a momentary dip of the estimate (see super::layers),
            // and, without str0m's, what the estimate is made of (see
            // super::loss_estimate).
            config = config.set_stats_interval(Some(std::time::Duration::from_secs(1)));
            if estimate_bandwidth {
                config = config.enable_bwe(Some(Bitrate::bps(INITIAL_ESTIMATE_BPS)));
            }
        }
    }
    let mut rtc = config.build(now);
    for candidate in candidates {
        rtc.add_local_candidate(candidate.clone());
    }
    rtc
}

impl Peer {
    pub(crate) fn new(
        now: Instant,
        joining: super::Joining,
        shard: usize,
        candidates: &[Candidate],
    ) -> Peer {
        let super::Joining {
            room,
            participant,
            events,
            sign_of_life,
            estimate_bandwidth,
        } = joining;
        Peer {
            room,
            participant,
            events,
            publish: new_rtc(now, shard, candidates, Link::Publisher),
            subscribe: new_rtc(
                now,
                shard,
                candidates,
                Link::Subscriber { estimate_bandwidth },
            ),
            publish_deadline: now,
            subscribe_deadline: now,
            published: Vec::new(),
            subscriptions: Vec::new(),
            wanted: Vec::new(),
            pending: None,
            subscribe_connected: false,
            egress_bps: INITIAL_ESTIMATE_BPS,
            bwe_wanted: (0, 0),
            loss_estimate: (!estimate_bandwidth).then(LossEstimate::default),
            congested_at: None,
            trickled_pub: false,
            trickled_sub: false,
            group: 0,
            blocked: [false; 2],
            sign_of_life,
            preferred: Default::default(),
            speech: Default::default(),
            offered: 0,
        }
    }

    /// One of the two peer connections and when it next wants a timeout.
    pub(crate) fn connection(&mut self, pc: Pc) -> (&mut Rtc, &mut Instant) {
        match pc {
            Pc::Pub => (&mut self.publish, &mut self.publish_deadline),
            Pc::Sub => (&mut self.subscribe, &mut self.subscribe_deadline),
        }
    }

    pub(crate) fn tell(&self, event: PeerEvent) {
        let _ = self.events.send(event);
    }

    pub(crate) fn is_blocked(&self, kind: MediaKind) -> bool {
        self.blocked[usize::from(kind == MediaKind::Video)]
    }

    pub(crate) fn set_blocked(&mut self, kind: MediaKind, blocked: bool) {
        self.blocked[usize::from(kind == MediaKind::Video)] = blocked;
    }

    /// What this participant's `sub` connection would like to carry:
    /// `(sustain, probe for)`, summed over what it receives (audio at a
    /// flat allowance, a single-layer video at what it sends).
    pub(crate) fn wanted_bitrate(&self) -> (u64, u64) {
        self.subscriptions
            .iter()
            .filter(|s| s.negotiated)
            .map(|s| match s.kind {
                MediaKind::Audio => (AUDIO_ALLOWANCE_BPS, AUDIO_ALLOWANCE_BPS),
                MediaKind::Video => s.wanted_bps,
            })
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// Number of videos this participant receives, to share its bandwidth.
    pub(crate) fn video_subscriptions(&self) -> usize {
        self.subscriptions
            .iter()
            .filter(|s| s.kind == MediaKind::Video)
            .count()
    }
}

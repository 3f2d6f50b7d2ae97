//! A shard core and str0m clients wired together in memory: datagrams are
//! moved between them by address, signaling events are answered as a
//! browser would, and time is a fake clock advanced to the next timeout.
//! The shard's tests use it, and so does the fuzz target that feeds a
//! connected shard arbitrary datagrams (`sfu::fuzzing`); a normal build
//! leaves it out.

// The fuzz target uses only the part that connects clients.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::sfu::shard::core::ShardCore;
use crate::sfu::shard::forward::{AUDIO_FRAME_TICKS, VIDEO_FRAME_TICKS};
use crate::sfu::{Command, ConnId, Joining, Pc, PeerEvent};

/// The shard's announced UDP and ICE-TCP addresses.
pub(crate) const SHARD_UDP: &str = "10.0.0.1:3478";
pub(crate) const SHARD_TCP: &str = "10.0.0.1:3479";

/// The fake clock's smallest step, when something is due at once: about
/// the resolution of the real loop's timer.
const TICK: Duration = Duration::from_millis(1);

/// Rounds of passing datagrams around before the clock must move.
const MAX_ROUNDS: usize = 200;

/// One peer connection of a client.
pub(crate) struct Side {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    deadline: Instant,
    /// Everything str0m reported, in order.
    pub events: Vec<Event>,
    /// Datagrams it produced while taking one in, for the next round.
    outbox: Vec<Transmit>,
}

impl Side {
    fn new(now: Instant, addr: SocketAddr) -> Side {
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("a host candidate"));
        Side {
            rtc,
            addr,
            deadline: now,
            events: Vec::new(),
            outbox: Vec::new(),
        }
    }

    /// Takes one datagram in and polls what it produced, as a client's
    /// loop does: in RTP mode str0m holds only the last received packet
    /// until it is polled, so a burst fed without polling would lose all
    /// but its last packet in the client, not in the shard.
    fn receive(&mut self, now: Instant, receive: Receive) {
        let _ = self.rtc.handle_input(Input::Receive(now, receive));
        self.poll_into(None);
    }

    /// Polls until str0m wants a timeout: events are kept, datagrams go to
    /// `to_core`, or to the outbox for the next round.
    fn poll_into(&mut self, mut to_core: Option<&mut Vec<Transmit>>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => match to_core.as_deref_mut() {
                    Some(to_core) => to_core.push(t),
                    None => self.outbox.push(t),
                },
                Ok(Output::Event(e)) => self.events.push(e),
                Ok(Output::Timeout(at)) => {
                    self.deadline = at;
                    return;
                }
                Err(error) => panic!("client failed: {error}"),
            }
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Connected))
    }

    /// The media packets received so far (not the padding str0m sends to
    /// probe the bandwidth).
    pub(crate) fn rtp(&self) -> impl Iterator<Item = &RtpPacket> {
        self.events.iter().filter_map(|e| match e {
            Event::RtpPacket(p) if !p.payload.is_empty() => Some(p),
            _ => None,
        })
    }

    /// Keyframe requests received so far (the publisher's side).
    pub(crate) fn keyframe_requests(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::KeyframeRequest(_)))
            .count()
    }
}

/// A participant's browser: a `pub` and a `sub` connection.
pub(crate) struct Client {
    pub conn: ConnId,
    pub publish: Side,
    pub subscribe: Side,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    /// Every event the shard sent this client, in order.
    pub signals: Vec<PeerEvent>,
    /// Answer `sub` offers and apply `pub` answers on their own.
    pub auto: bool,
    pending: Option<SdpPendingOffer>,
    /// Packets written per published stream (mid and rid), for sequence
    /// numbers and timestamps.
    written: HashMap<(Mid, Option<String>), u32>,
}

impl Client {
    pub(crate) fn rejected(&self) -> Vec<tandem_protocol::ErrorCode> {
        self.signals
            .iter()
            .filter_map(|s| match s {
                PeerEvent::Rejected { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    /// The `sub` offers received so far.
    pub(crate) fn offers(&self) -> Vec<&str> {
        self.signals
            .iter()
            .filter_map(|s| match s {
                PeerEvent::Offer { pc: Pc::Sub, sdp } => Some(sdp.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// The tracks a client published.
pub(crate) struct Tracks {
    pub audio: Option<Mid>,
    pub video: Option<Mid>,
}

pub(crate) struct Sim {
    pub now: Instant,
    pub core: ShardCore,
    pub clients: Vec<Client>,
    pub udp: SocketAddr,
    /// Every datagram the core sent, by destination, for routing checks.
    pub sent: Vec<SocketAddr>,
    /// RTP datagrams to each address still to be lost on the way, as a
    /// network loses them ([`Sim::lose_rtp_to`]).
    losses: HashMap<SocketAddr, usize>,
    /// Whether clients joining from now on have their link estimated (a
    /// group room's; [`crate::sfu::Joining`]).
    pub estimate_bandwidth: bool,
}

impl Sim {
    pub(crate) fn new() -> Sim {
        let now = Instant::now();
        let udp = SHARD_UDP.parse().unwrap();
        let tcp = SHARD_TCP.parse().unwrap();
        Sim {
            now,
            core: ShardCore::new(0, udp, tcp, None, now),
            clients: Vec::new(),
            udp,
            sent: Vec::new(),
            losses: HashMap::new(),
            estimate_bandwidth: true,
        }
    }

    /// A participant joins `room`; returns its index in `clients`.
    pub(crate) fn join(&mut self, room: Uuid) -> usize {
        let index = self.clients.len();
        let conn = 100 + index as ConnId;
        let (tx, rx) = mpsc::unbounded_channel();
        let ip = format!("10.1.0.{}", index + 1);
        let client = Client {
            conn,
            publish: Side::new(self.now, format!("{ip}:4000").parse().unwrap()),
            subscribe: Side::new(self.now, format!("{ip}:4001").parse().unwrap()),
            events: rx,
            signals: Vec::new(),
            auto: true,
            pending: None,
            written: HashMap::new(),
        };
        self.clients.push(client);
        self.command(Command::Join {
            conn,
            joining: Joining {
                room,
                participant: format!("p{index}"),
                events: tx,
                sign_of_life: Default::default(),
                estimate_bandwidth: self.estimate_bandwidth,
            },
        });
        index
    }

    pub(crate) fn command(&mut self, command: Command) {
        self.core.handle_command(self.now, command);
        self.core.flush(self.now);
    }

    /// The `pub` offer of client `i` with audio and/or video (simulcast
    /// with `rids` when there are any). The shard's answer is applied when
    /// the client is `auto`.
    pub(crate) fn publish(&mut self, i: usize, audio: bool, video: bool, rids: &[&str]) -> Tracks {
        let client = &mut self.clients[i];
        let mut api = client.publish.rtc.sdp_api();
        let audio =
            audio.then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let video = video.then(|| {
            let simulcast = (!rids.is_empty()).then(|| {
                let mut s = Simulcast::new();
                for rid in rids {
                    s.add_send_layer(SimulcastLayer::new(rid));
                }
                s
            });
            api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast)
        });
        let (offer, pending) = api.apply().expect("a change to offer");
        client.pending = Some(pending);
        let command = Command::Offer {
            conn: client.conn,
            pc: Pc::Pub,
            sdp: offer.to_sdp_string(),
        };
        self.command(command);
        Tracks { audio, video }
    }

    /// Writes one RTP packet on client `i`'s published track `mid` (layer
    /// `rid`). Video payloads are one-packet VP8 frames: a payload
    /// descriptor, then a key- or interframe header, then `tag`.
    pub(crate) fn send(
        &mut self,
        i: usize,
        mid: Mid,
        rid: Option<&str>,
        keyframe: bool,
        tag: &[u8],
    ) {
        self.send_with(i, mid, rid, keyframe, tag, ExtensionValues::default());
    }

    /// Writes one audio packet whose RFC 6464 header extension says the
    /// sender's level is `level` dBov (0 loudest, -127 silence).
    pub(crate) fn send_audio_level(&mut self, i: usize, mid: Mid, level: i8, tag: &[u8]) {
        let ext = ExtensionValues {
            audio_level: Some(level),
            voice_activity: Some(level > -127),
            ..Default::default()
        };
        self.send_with(i, mid, None, false, tag, ext);
    }

    fn send_with(
        &mut self,
        i: usize,
        mid: Mid,
        rid: Option<&str>,
        keyframe: bool,
        tag: &[u8],
        ext: ExtensionValues,
    ) {
        let now = self.now;
        let client = &mut self.clients[i];
        let rtc = &mut client.publish.rtc;
        let kind = rtc.media(mid).expect("a published mid").kind();
        let codec = if kind == MediaKind::Audio {
            Codec::Opus
        } else {
            Codec::Vp8
        };
        let pt = rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .expect("a negotiated codec")
            .pt();
        let mut payload = Vec::with_capacity(tag.len() + 2);
        if kind == MediaKind::Video {
            // S=1, partition 0; then the VP8 header's P bit (0: keyframe).
            payload.extend_from_slice(&[0x10, if keyframe { 0x00 } else { 0x01 }]);
        }
        payload.extend_from_slice(tag);
        let n = client
            .written
            .entry((mid, rid.map(str::to_owned)))
            .or_default();
        *n += 1;
        let n = *n;
        let step = if kind == MediaKind::Audio {
            AUDIO_FRAME_TICKS
        } else {
            VIDEO_FRAME_TICKS
        };
        let mut api = rtc.direct_api();
        let tx = api
            .stream_tx_by_mid(mid, rid.map(Into::into))
            .expect("a stream for the track");
        tx.write_rtp(
            RtpWrite::new(pt, u64::from(n).into(), n * step, now, payload)
                .marker(true)
                .ext_vals(ext),
        );
    }

    /// Moves datagrams and signaling until nothing moves, then advances the
    /// clock to the next timeout, until `duration` has passed.
    pub(crate) fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            for _ in 0..MAX_ROUNDS {
                if !self.round() {
                    break;
                }
            }
            if self.now >= end {
                return;
            }
            let mut next = self.core.poll_timeout().min(end);
            for c in &self.clients {
                next = next.min(c.publish.deadline).min(c.subscribe.deadline);
            }
            self.now = next.max(self.now + TICK).min(end);
            let now = self.now;
            // Every client hears the time, due or not: str0m starts DTLS
            // from the last time it was given, and a connection idle since
            // it was built (a `sub` offer answered late) would otherwise
            // start with its retransmission timer already expired and send
            // its first flight twice, which str0m on the other side does
            // not survive.
            for c in &mut self.clients {
                for side in [&mut c.publish, &mut c.subscribe] {
                    let _ = side.rtc.handle_input(Input::Timeout(now));
                }
            }
            if self.core.poll_timeout() <= now {
                self.core.handle_timeout(now);
            }
            self.core.flush(now);
        }
    }

    /// Loses the next `count` RTP datagrams the core sends to client `i`'s
    /// `sub` connection.
    pub(crate) fn lose_rtp_to(&mut self, i: usize, count: usize) {
        self.losses.insert(self.clients[i].subscribe.addr, count);
    }

    /// Moves datagrams and signaling until nothing moves, with the clock
    /// standing still: what one wake of the real loop delivers.
    pub(crate) fn settle(&mut self) {
        // A client's loop gives str0m the time after writing media (its
        // pacer releases what was written on a timeout): the same time.
        let now = self.now;
        for c in &mut self.clients {
            for side in [&mut c.publish, &mut c.subscribe] {
                let _ = side.rtc.handle_input(Input::Timeout(now));
            }
        }
        for _ in 0..MAX_ROUNDS {
            if !self.round() {
                return;
            }
        }
    }

    /// One round: clients' output to the core, the core's output to the
    /// clients, signaling. True when anything moved.
    fn round(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        let mut to_core: Vec<Transmit> = Vec::new();
        for c in &mut self.clients {
            for side in [&mut c.publish, &mut c.subscribe] {
                to_core.append(&mut side.outbox);
                side.poll_into(Some(&mut to_core));
            }
        }
        for t in to_core {
            moved = true;
            if t.destination == self.udp {
                self.core
                    .handle_datagram(now, t.proto, t.source, t.destination, &t.contents);
            }
        }
        self.core.flush(now);
        while let Some(t) = self.core.poll_transmit() {
            moved = true;
            self.sent.push(t.destination);
            let side = self
                .clients
                .iter_mut()
                .flat_map(|c| [&mut c.publish, &mut c.subscribe])
                .find(|s| s.addr == t.destination);
            // RTP, not RTCP (RFC 5761: RTCP packet types 192-223 in the
            // second byte) and not DTLS or STUN (first byte 128-191).
            let rtp = matches!(t.contents.first(), Some(128..=191))
                && !matches!(t.contents.get(1).map(|b| b & 0x7f), Some(64..=95));
            if let (true, Some(lose)) = (rtp, self.losses.get_mut(&t.destination)) {
                if *lose > 0 {
                    *lose -= 1;
                    continue;
                }
            }
            if let Some(side) = side {
                let receive = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                    .expect("a datagram str0m can parse");
                side.receive(now, receive);
            }
        }
        for i in 0..self.clients.len() {
            while let Ok(signal) = self.clients[i].events.try_recv() {
                moved = true;
                self.clients[i].signals.push(signal.clone());
                if self.clients[i].auto {
                    self.react(i, signal);
                }
            }
        }
        moved
    }

    /// Answers the last `sub` offer client `i` received, as a browser would.
    pub(crate) fn answer_last_offer(&mut self, i: usize) {
        let sdp = self.clients[i]
            .offers()
            .last()
            .expect("an offer")
            .to_string();
        self.react(i, PeerEvent::Offer { pc: Pc::Sub, sdp });
    }

    /// What a browser does with a signaling message.
    fn react(&mut self, i: usize, signal: PeerEvent) {
        let client = &mut self.clients[i];
        match signal {
            PeerEvent::Answer { pc: Pc::Pub, sdp } => {
                let answer = SdpAnswer::from_sdp_string(&sdp).expect("the shard's answer parses");
                let pending = client.pending.take().expect("an offer waiting");
                client
                    .publish
                    .rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .expect("the shard's answer is acceptable");
            }
            PeerEvent::Offer { pc: Pc::Sub, sdp } => {
                let offer = SdpOffer::from_sdp_string(&sdp).expect("the shard's offer parses");
                let answer = client
                    .subscribe
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("the shard's offer is acceptable");
                let command = Command::Answer {
                    conn: client.conn,
                    pc: Pc::Sub,
                    sdp: answer.to_sdp_string(),
                };
                self.command(command);
            }
            PeerEvent::Candidate {
                pc,
                candidate: Some(candidate),
            } => {
                let side = match pc {
                    Pc::Pub => &mut client.publish,
                    Pc::Sub => &mut client.subscribe,
                };
                let candidate =
                    Candidate::from_sdp_string(&candidate.candidate).expect("a valid candidate");
                side.rtc.add_remote_candidate(candidate);
            }
            _ => {}
        }
    }
}

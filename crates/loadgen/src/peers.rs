//! A participant's two peer connections (`pub` and `sub`), driven by str0m
//! exactly as a browser's would be, whichever SFU is on the other side:
//! the Tandem target and the Janus target share this, so that media,
//! payload sizes, pacing and latency stamps are the same for both.
//!
//! Reception is batched: once a socket is readable, every datagram already
//! queued on either socket is taken in the same wake, so a loaded generator
//! spends its time on packets, not on wake-ups. Each datagram is still
//! drained from str0m before the next is handed in: in RTP mode str0m keeps
//! only the last received packet until it is polled.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use super::arrival::{self, ArrivalTime, Datagram};
use super::participant::{Failure, Participant, Shared};
use super::sender::{Sender, LAYERS};

/// Datagrams taken from one socket per wake before the connections are
/// drained (a bound on how long the other socket waits).
pub(crate) const RECEIVE_BATCH: usize = 64;

pub(crate) struct Peers {
    publish: Conn,
    subscribe: Conn,
    pending: Option<SdpPendingOffer>,
    mids: Option<[Mid; 2]>,
    sender: Option<Sender>,
    pub_buf: Vec<u8>,
    sub_buf: Vec<u8>,
}

impl Peers {
    pub(crate) async fn bind(ip: IpAddr) -> Result<Peers, Failure> {
        let now = Instant::now();
        Ok(Peers {
            publish: Conn::bind(ip, now).await?,
            subscribe: Conn::bind(ip, now).await?,
            pending: None,
            mids: None,
            sender: None,
            pub_buf: vec![0u8; 2048],
            sub_buf: vec![0u8; 2048],
        })
    }

    /// The `pub` offer: one sendonly audio and one sendonly video track,
    /// the video in three simulcast layers if `simulcast`, listed lowest
    /// first (as LiveKit's client does; Tandem ranks layers by their
    /// measured bitrate, so the order does not matter to it) or, with
    /// `highest_first`, as janus.js lists them (Janus takes the first rid
    /// for the best layer).
    pub(crate) fn offer(&mut self, simulcast: bool, highest_first: bool) -> String {
        let mut api = self.publish.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let layers = simulcast.then(|| {
            let mut s = Simulcast::new();
            let mut rids: Vec<&str> = LAYERS.iter().map(|(rid, _)| *rid).collect();
            if highest_first {
                rids.reverse();
            }
            for rid in rids {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers);
        let (offer, pending) = api.apply().expect("adding media always makes an offer");
        self.pending = Some(pending);
        self.mids = Some([audio, video]);
        offer.to_sdp_string()
    }

    /// The SFU's answer to the `pub` offer.
    pub(crate) fn accept_answer(&mut self, sdp: &str) -> Result<(), Failure> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|_| "bad_answer")?;
        let pending = self.pending.take().ok_or("unexpected_answer")?;
        // Drained at the next tick.
        self.publish.deadline = Instant::now();
        self.publish
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|_| "bad_answer".into())
    }

    /// The SFU's offer for the `sub` connection; the answer.
    pub(crate) fn accept_offer(&mut self, sdp: &str) -> Result<String, Failure> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|_| "bad_offer")?;
        let answer = self
            .subscribe
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|_| "bad_offer")?;
        self.subscribe.deadline = Instant::now();
        Ok(answer.to_sdp_string())
    }

    /// When the connections next need attention: a str0m timeout or the
    /// next packet to send.
    pub(crate) fn wake_at(&self) -> Instant {
        let wake = self.publish.deadline.min(self.subscribe.deadline);
        match &self.sender {
            Some(s) => wake.min(s.next()),
            None => wake,
        }
    }

    /// Waits until either socket is readable, then hands str0m every
    /// datagram queued on both (up to [`RECEIVE_BATCH`] each). Cancel-safe.
    pub(crate) async fn receive(&mut self) -> Result<(), Failure> {
        let (first, on_pub) = tokio::select! {
            r = arrival::receive(&self.publish.socket, &mut self.pub_buf) => (r, true),
            r = arrival::receive(&self.subscribe.socket, &mut self.sub_buf) => (r, false),
        };
        let first = first.map_err(|_| "udp_receive")?;
        let (conn, buf) = if on_pub {
            (&mut self.publish, &self.pub_buf)
        } else {
            (&mut self.subscribe, &self.sub_buf)
        };
        conn.receive(&first, &buf[..first.len]);
        self.publish.receive_queued(&mut self.pub_buf);
        self.subscribe.receive_queued(&mut self.sub_buf);
        Ok(())
    }

    /// Everything due at `now`: str0m's timeouts, the packets to send, and
    /// both connections drained (events to `me`). True once, when the
    /// `pub` connection has just connected and media starts.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        shared: &Shared,
        me: &mut Participant,
    ) -> Result<bool, Failure> {
        // A connection is drained here only if something happened to it
        // since [`Self::receive`] drained it: a timeout, or packets written.
        let publish_due = self.publish.deadline <= now;
        if publish_due {
            let _ = self.publish.rtc.handle_input(Input::Timeout(now));
        }
        let written = match &mut self.sender {
            Some(s) => s.send_due(now, &mut self.publish.rtc, shared, &mut me.outcome),
            None => 0,
        };
        if publish_due || written > 0 {
            self.publish.drain(now, None);
        }
        if self.subscribe.deadline <= now {
            let _ = self.subscribe.rtc.handle_input(Input::Timeout(now));
            self.subscribe.drain(now, None);
        }
        let mut connected = false;
        for (_, event) in self.publish.events.drain(..) {
            match event {
                Event::Connected => {
                    let mids = self.mids.ok_or("connected_without_tracks")?;
                    self.sender = Some(Sender::new(
                        now,
                        &self.publish.rtc,
                        mids,
                        me.seat.index,
                        shared,
                    )?);
                    connected = true;
                }
                Event::KeyframeRequest(request) => {
                    if let Some(sender) = &mut self.sender {
                        sender.keyframe_wanted(request.rid);
                    }
                }
                // str0m may reconnect (consent is checked again), so this
                // is counted, not fatal; what it costs shows as loss.
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    me.outcome.error("ice_disconnected")
                }
                _ => {}
            }
        }
        for (at, event) in self.subscribe.events.drain(..) {
            match event {
                Event::RtpPacket(packet) => me.on_packet(shared, at, &packet.payload),
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    me.outcome.error("ice_disconnected")
                }
                _ => {}
            }
        }
        let errors = self.publish.errors.drain(..);
        for error in errors.chain(self.subscribe.errors.drain(..)) {
            me.outcome.error(error);
        }
        Ok(connected)
    }
}

/// One peer connection and its socket.
struct Conn {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    deadline: Instant,
    /// Events drained and not yet handled, with when they arrived (for a
    /// packet's latency).
    events: Vec<(ArrivalTime, Event)>,
    /// Error kinds for the report, not yet counted.
    errors: Vec<String>,
}

impl Conn {
    async fn bind(ip: IpAddr, now: Instant) -> Result<Conn, Failure> {
        let socket = UdpSocket::bind((ip, 0)).await.map_err(|_| "udp_bind")?;
        let local = socket.local_addr().map_err(|_| "udp_bind")?;
        arrival::stamp_arrivals(&socket);
        // Sends are `try_send_to` from the drain; tokio refuses them until
        // it has seen the new socket writable once.
        socket.writable().await.map_err(|_| "udp_bind")?;
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let candidate = Candidate::host(local, "udp").map_err(|_| "candidate")?;
        rtc.add_local_candidate(candidate);
        Ok(Conn {
            rtc,
            socket,
            local,
            deadline: now,
            events: Vec::new(),
            errors: Vec::new(),
        })
    }

    /// Hands str0m one datagram and drains the connection at once.
    fn receive(&mut self, datagram: &Datagram, data: &[u8]) {
        let now = Instant::now();
        if let Ok(contents) = Receive::new(Protocol::Udp, datagram.from, self.local, data) {
            let _ = self.rtc.handle_input(Input::Receive(now, contents));
        }
        self.drain(now, datagram.wire);
    }

    /// The datagrams already queued on the socket, without waiting.
    fn receive_queued(&mut self, buf: &mut [u8]) {
        for _ in 0..RECEIVE_BATCH {
            match arrival::try_receive(&self.socket, buf) {
                Ok(datagram) => self.receive(&datagram, &buf[..datagram.len]),
                Err(_) => break,
            }
        }
    }

    /// Drains the connection ([`tandem::sfu::drain`]): datagrams go out,
    /// events are collected with the time they were drained and, when a
    /// received datagram caused them, the time the kernel queued it.
    fn drain(&mut self, now: Instant, wire: Option<Instant>) {
        let socket = &self.socket;
        let (events, errors) = (&mut self.events, &mut self.errors);
        let drained = tandem::sfu::drain(
            &mut self.rtc,
            |t| {
                if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
                    errors.push(format!("udp_send_{:?}", e.kind()));
                }
            },
            |event| events.push((ArrivalTime { seen: now, wire }, event)),
        );
        self.deadline = drained.unwrap_or_else(|_| {
            errors.push("peer_connection".into());
            now + Duration::from_secs(1)
        });
    }
}

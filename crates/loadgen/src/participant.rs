//! One synthetic participant: a signaling socket and, for media, the two
//! peer connections a browser would have (`pub` and `sub`), driven by str0m
//! on the client side as well.
//!
//! Each participant is one task. Its loop waits for a datagram on either
//! connection, a signaling message, its next packet to send or str0m's next
//! timeout, whichever comes first, then drains both connections. Media is
//! written straight into the `pub` connection's RTP stream from pre-built
//! payloads, so the generator spends nothing on encoding.
//!
//! With `--relay` the same participant speaks plain RTP to a bare UDP relay
//! instead: no signaling, no ICE, no DTLS or SRTP. That run is the
//! machine's ceiling that the SFU's figures are compared with.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::arrival::{self, ArrivalTime};
use super::peers::{Peers, RECEIVE_BATCH};
use super::reception::Arrival;
use super::relay;
use super::report::Outcome;
use super::schedule::{index_of, Seat};
use super::sender::Sender;
use super::stamp::{Stamp, Track};
use tandem_protocol::{Attestation, ClientMessage, Pc, ServerMessage};

/// What every participant sends.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub audio_pps: u32,
    pub video_pps: u32,
    pub video_fps: u32,
    pub video_bitrate_bps: u64,
    /// End-to-end encrypted rooms (issue 19): sessions `required`, joins
    /// say `e2ee`, and payloads are opaque past the bytes the SFU reads.
    pub e2ee: bool,
    /// Video is published as three simulcast layers (`q`, `h`, `f`).
    pub simulcast: bool,
}

impl Traffic {
    /// Bytes per video packet for the chosen bitrate and packet rate.
    pub fn video_payload(&self) -> usize {
        (self.video_bitrate_bps / 8 / u64::from(self.video_pps.max(1))) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Signaling and media through the server.
    Media,
    /// Signaling only: join, get admitted, stay connected.
    Signaling,
    /// Plain RTP through a bare UDP relay at this address.
    Relay(SocketAddr),
    /// Signaling and media through a Janus VideoRoom (the peer SFU), its
    /// rooms numbered from this one.
    Janus(u64),
}

/// The run's clock and measurement window, shared by every participant.
/// Times are nanoseconds since the run began, as in the packet stamps.
pub struct Clock {
    epoch: Instant,
    window_start: AtomicU64,
    window_end: AtomicU64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
        }
    }

    pub fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    pub fn open_window(&self, start: Instant, length: Duration) {
        self.window_end
            .store(self.ns(start + length), Ordering::SeqCst);
        self.window_start.store(self.ns(start), Ordering::SeqCst);
    }

    pub fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start.load(Ordering::Relaxed)
            && ns < self.window_end.load(Ordering::Relaxed)
    }

    fn window_start_ns(&self) -> u64 {
        self.window_start.load(Ordering::SeqCst)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Running totals for the progress display.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub ready: AtomicU64,
    pub failed: AtomicU64,
}

/// What all participants of a run share.
pub struct Shared {
    pub mode: Mode,
    /// Each node's signaling socket (one for a single server).
    pub signal_urls: Vec<String>,
    pub tls: Arc<rustls::ClientConfig>,
    pub bind_ip: IpAddr,
    pub traffic: Traffic,
    pub room_size: usize,
    pub clock: Clock,
    /// Limits how many participants are joining at once; a permit is held
    /// from connecting until the participant's own media flows.
    pub joining: Arc<Semaphore>,
    pub live: Live,
    pub stop: watch::Receiver<bool>,
    /// Join again when the signaling connection drops (`--rejoin`).
    pub rejoin: bool,
}

#[cfg(test)]
impl Shared {
    /// What the sender's tests need: `traffic` and a clock; no server.
    pub(crate) fn for_tests(traffic: Traffic, stop: watch::Receiver<bool>) -> Shared {
        Shared {
            mode: Mode::Media,
            signal_urls: Vec::new(),
            tls: crate::schedule::client_tls(None).expect("the public roots"),
            bind_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            traffic,
            room_size: 3,
            clock: Clock::new(),
            joining: Arc::new(Semaphore::new(1)),
            live: Live::default(),
            stop,
            rejoin: false,
        }
    }
}

/// Why a participant stopped early, as an error kind for the report.
pub(crate) type Failure = String;

/// How long after the run stops a participant may take to leave.
const STOP_GRACE: Duration = Duration::from_secs(3);

type Link = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `redirect`s followed in a row before a join counts as failed: as many
/// as the browser client follows (docs/protocol.md).
const MAX_REDIRECTS: u32 = 3;
/// How long a dropped participant keeps trying to get back in (a node's
/// rooms move once its lease has run out: well under this).
const REJOIN_WITHIN: Duration = Duration::from_secs(60);
/// The pause between two attempts to get back in.
const REJOIN_PAUSE: Duration = Duration::from_millis(250);

/// How a `join` ended, short of a refusal.
enum Entry {
    /// In the room; the publishers already there.
    Admitted(HashSet<u32>),
    /// Sent to the node that holds the room.
    Redirected(String),
}

/// Runs one participant until the run stops; its counts.
pub async fn run(shared: Arc<Shared>, seat: Seat) -> Outcome {
    let mut me = Participant {
        outcome: Outcome::new(seat.index, seat.room),
        seat,
        expected_first: HashSet::new(),
        seen_tracks: HashSet::new(),
        started: Instant::now(),
        ready_at: None,
        unshown_received: 0,
    };
    let mut stop = shared.stop.clone();
    let result = tokio::select! {
        result = async {
            match shared.mode {
                Mode::Media => me.media(&shared).await,
                Mode::Signaling => me.signaling_only(&shared).await,
                Mode::Relay(relay) => me.relay(&shared, relay).await,
                Mode::Janus(rooms) => me.janus(&shared, rooms).await,
            }
        } => result,
        // Someone still waiting for a join slot, a connection or admission
        // when the run stops (their clinician never came, say) must not
        // hold the run up; everyone else leaves well within this grace.
        _ = async {
            let _ = stop.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(STOP_GRACE).await;
        } => Err("did_not_leave".into()),
    };
    if let Err(kind) = result {
        if me.ready_at.is_none() {
            shared.live.failed.fetch_add(1, Ordering::Relaxed);
        }
        me.outcome.error(kind);
    }
    let window_start = shared.clock.window_start_ns();
    me.outcome.ready = me
        .ready_at
        .is_some_and(|at| shared.clock.ns(at) <= window_start);
    if !me.outcome.ready && me.outcome.errors.is_empty() {
        me.outcome.error("join_timeout");
    }
    me.outcome
}

pub(crate) struct Participant {
    pub(crate) seat: Seat,
    pub(crate) outcome: Outcome,
    /// Publishers already in the room when this participant was admitted:
    /// join time runs until their tracks arrive.
    pub(crate) expected_first: HashSet<u32>,
    seen_tracks: HashSet<(u32, Track)>,
    pub(crate) started: Instant,
    ready_at: Option<Instant>,
    /// Packets received and not yet added to [`Live::received`].
    unshown_received: u64,
}

impl Participant {
    async fn media(&mut self, shared: &Shared) -> Result<(), Failure> {
        let permit = shared.joining.clone().acquire_owned().await;
        self.started = Instant::now();
        let (mut link, others) = self.enter(shared, self.seat.index as usize).await?;
        self.expected_first = others;

        let mut peers = Peers::bind(shared.bind_ip).await?;
        let offer = peers.offer(shared.traffic.simulcast, false);
        send(
            &mut link,
            &ClientMessage::Offer {
                pc: Pc::Pub,
                sdp: offer,
            },
        )
        .await?;
        let mut permit = Some(permit);
        let mut stop = shared.stop.clone();

        loop {
            let wake = peers.wake_at();
            let woke = tokio::select! {
                r = peers.receive() => Wake::Media(r),
                m = link.next() => Wake::Signal(m),
                _ = tokio::time::sleep_until(wake.into()) => Wake::Timer,
                _ = stop.changed() => Wake::Stop,
            };
            match woke {
                Wake::Media(r) => r?,
                Wake::Signal(message) => match signal_message(message)? {
                    Some(ServerMessage::Answer { pc: Pc::Pub, sdp }) => {
                        peers.accept_answer(&sdp)?
                    }
                    Some(ServerMessage::Offer { pc: Pc::Sub, sdp }) => {
                        let sdp = peers.accept_offer(&sdp)?;
                        send(&mut link, &ClientMessage::Answer { pc: Pc::Sub, sdp }).await?;
                    }
                    Some(other) => self.in_room(&mut link, other).await?,
                    None => {}
                },
                Wake::Timer => {}
                Wake::Stop => break,
            }
            if peers.tick(Instant::now(), shared, self)? {
                permit.take();
            }
        }
        leave(&mut link).await;
        Ok(())
    }

    async fn signaling_only(&mut self, shared: &Shared) -> Result<(), Failure> {
        let permit = shared.joining.clone().acquire_owned().await;
        self.started = Instant::now();
        let first = self.seat.index as usize;
        let (mut link, _) = self.enter(shared, first).await?;
        let now = Instant::now();
        self.outcome.join_time = Some(now - self.started);
        self.became_ready(shared, now);
        drop(permit);
        let mut stop = shared.stop.clone();
        loop {
            tokio::select! {
                m = link.next() => match signal_message(m) {
                    Ok(Some(message)) => self.in_room(&mut link, message).await?,
                    Ok(None) => {}
                    Err(_) if shared.rejoin && !*stop.borrow() => {
                        link = self.rejoin(shared, &mut stop).await?;
                    }
                    Err(failure) => return Err(failure),
                },
                _ = stop.changed() => break,
            }
        }
        leave(&mut link).await;
        Ok(())
    }

    /// After the signaling connection dropped (its node died, say): joins
    /// again through each node in turn, as the browser client reconnects,
    /// until back in the room; records how long that took.
    async fn rejoin(
        &mut self,
        shared: &Shared,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Link, Failure> {
        let dropped = Instant::now();
        let mut attempt = self.seat.index as usize + 1;
        while dropped.elapsed() < REJOIN_WITHIN && !*stop.borrow() {
            match self.enter(shared, attempt).await {
                Ok((link, _)) => {
                    self.outcome.rejoin_times.push(dropped.elapsed());
                    return Ok(link);
                }
                // A node that is gone, or one that cannot place the room
                // yet (its old lease still running): the next one, soon.
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(REJOIN_PAUSE).await;
                }
            }
        }
        Err("rejoin_timeout".into())
    }

    async fn relay(&mut self, shared: &Shared, relay: SocketAddr) -> Result<(), Failure> {
        let permit = shared.joining.clone().acquire_owned().await;
        self.started = Instant::now();
        let socket = UdpSocket::bind((shared.bind_ip, 0))
            .await
            .map_err(|_| "udp_bind")?;
        socket.connect(relay).await.map_err(|_| "udp_connect")?;
        socket.writable().await.map_err(|_| "udp_connect")?;
        let hello = relay::hello(self.seat.room);
        socket.send(&hello).await.map_err(|_| "udp_send")?;
        let mut next_hello = Instant::now() + Duration::from_millis(500);
        drop(permit);
        let mut sender = Sender::plain(Instant::now(), self.seat.index, shared);
        let mut stop = shared.stop.clone();
        arrival::stamp_arrivals(&socket);
        let mut buf = vec![0u8; 2048];
        loop {
            let mut wake = sender.next();
            if self.ready_at.is_none() {
                wake = wake.min(next_hello);
            }
            tokio::select! {
                r = arrival::receive(&socket, &mut buf) => match r {
                    Ok(datagram) => {
                        self.on_packet(shared, datagram.seen_now(), &buf[..datagram.len]);
                        // Whatever else is queued, in the same wake.
                        for _ in 0..RECEIVE_BATCH {
                            let Ok(datagram) = arrival::try_receive(&socket, &mut buf) else {
                                break;
                            };
                            self.on_packet(shared, datagram.seen_now(), &buf[..datagram.len]);
                        }
                    }
                    // The relay is not (yet) listening: the hello is sent
                    // again until it is.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(_) => return Err("udp_receive".into()),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = stop.changed() => break,
            }
            let now = Instant::now();
            if self.ready_at.is_none() && now >= next_hello {
                let _ = socket.try_send(&hello);
                next_hello = now + Duration::from_millis(500);
            }
            sender.send_plain(now, &socket, shared, &mut self.outcome);
        }
        Ok(())
    }

    /// Connects and joins through node `turn` (modulo their number: the
    /// participants take turns, so that every node of a cluster sees
    /// arrivals), following
    /// `redirect`s to the node that holds the room; the admitted link and
    /// the publishers already in the room.
    async fn enter(
        &mut self,
        shared: &Shared,
        turn: usize,
    ) -> Result<(Link, HashSet<u32>), Failure> {
        let nodes = &shared.signal_urls;
        let mut url = nodes[turn % nodes.len()].clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut link = connect(shared, &url).await?;
            match self.join(&mut link, shared.traffic.e2ee).await? {
                Entry::Admitted(others) => {
                    self.outcome.node = Some(node_of(&url));
                    return Ok((link, others));
                }
                Entry::Redirected(to) => {
                    self.outcome.redirects += 1;
                    let _ = link.close(None).await;
                    url = to;
                }
            }
        }
        Err("too_many_redirects".into())
    }

    /// Sends `join` and waits until admitted (a clinician admits anyone
    /// waiting) or sent elsewhere.
    async fn join(&mut self, link: &mut Link, e2ee: bool) -> Result<Entry, Failure> {
        let attestation = (!self.seat.clinician).then(|| Attestation {
            state: "NY".into(),
            at_home: true,
            private: true,
        });
        let join = ClientMessage::Join {
            token: self.seat.token.clone(),
            attestation,
            e2ee,
        };
        send(link, &join).await?;
        loop {
            match signal_message(link.next().await)? {
                Some(ServerMessage::Joined { participants, .. }) => {
                    return Ok(Entry::Admitted(
                        participants
                            .iter()
                            .filter_map(|p| index_of(&p.id))
                            .collect(),
                    ));
                }
                Some(ServerMessage::Redirect { url }) => return Ok(Entry::Redirected(url)),
                Some(ServerMessage::Waiting { .. }) | None => {}
                Some(other) => self.in_room(link, other).await?,
            }
        }
    }

    /// Messages that need no peer connection; ends the participant on a
    /// refusal or the end of the session.
    async fn in_room(&mut self, link: &mut Link, message: ServerMessage) -> Result<(), Failure> {
        match message {
            ServerMessage::Lobby { waiting } if self.seat.clinician && !waiting.is_empty() => {
                send(link, &ClientMessage::AdmitAll).await
            }
            ServerMessage::Denied { code, .. } => Err(format!("denied_{code}")),
            ServerMessage::Waiting { .. } => Err("sent_back_to_waiting_room".into()),
            ServerMessage::Removed => Err("removed".into()),
            ServerMessage::Replaced => Err("replaced".into()),
            ServerMessage::Ended => Err("session_ended".into()),
            ServerMessage::Error { code, .. } => {
                self.outcome.error(format!("server_error_{code}"));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn on_packet(&mut self, shared: &Shared, at: ArrivalTime, payload: &[u8]) {
        let now = at.seen;
        let Some(stamp) = Stamp::read(payload) else {
            self.outcome.error("unstamped_packet");
            return;
        };
        // The shared count is for the progress display: added to in
        // batches, so that threads do not contend for it at every packet.
        self.unshown_received += 1;
        if self.unshown_received == 64 {
            shared.live.received.fetch_add(64, Ordering::Relaxed);
            self.unshown_received = 0;
        }
        let in_window = shared.clock.in_window(stamp.sent_ns);
        let arrival = self
            .outcome
            .received
            .entry((stamp.publisher, stamp.track, stamp.layer))
            .or_default()
            .record(stamp.seq, in_window);
        if in_window && arrival != Arrival::Duplicate {
            let added = shared.clock.ns(now).saturating_sub(stamp.sent_ns) / 1_000;
            let _ = self.outcome.latency_us.record(added.max(1));
            if let Some(wire) = at.wire {
                let added = shared.clock.ns(wire).saturating_sub(stamp.sent_ns) / 1_000;
                let _ = self.outcome.wire_latency_us.record(added.max(1));
            }
        }
        if self.seen_tracks.insert((stamp.publisher, stamp.track)) {
            let first_done = self.expected_first.iter().all(|p| {
                Track::ALL
                    .iter()
                    .all(|&t| self.seen_tracks.contains(&(*p, t)))
            });
            if first_done && !self.expected_first.is_empty() && self.outcome.join_time.is_none() {
                self.outcome.join_time = Some(now - self.started);
            }
            if self.seen_tracks.len() == (shared.room_size - 1) * Track::ALL.len() {
                self.became_ready(shared, now);
            }
        }
    }

    fn became_ready(&mut self, shared: &Shared, now: Instant) {
        if self.ready_at.is_none() {
            self.ready_at = Some(now);
            shared.live.ready.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Wake {
    Media(Result<(), Failure>),
    Signal(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Timer,
    Stop,
}

/// The node a signaling URL names, for the report: its host and port.
fn node_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => url.to_owned(),
    }
}

async fn connect(shared: &Shared, url: &str) -> Result<Link, Failure> {
    let connector = Connector::Rustls(shared.tls.clone());
    let (link, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(connector))
            .await
            .map_err(|_| "connect")?;
    Ok(link)
}

async fn send(link: &mut Link, message: &ClientMessage) -> Result<(), Failure> {
    let text = serde_json::to_string(message).map_err(|_| "encode")?;
    link.send(Message::text(text))
        .await
        .map_err(|_| "signaling_closed".into())
}

async fn leave(link: &mut Link) {
    let _ = send(link, &ClientMessage::Leave).await;
    let _ = link.close(None).await;
}

/// The server message in a frame; `None` for frames that carry none
/// (pings, pongs).
fn signal_message(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<ServerMessage>, Failure> {
    match frame {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| "unreadable_server_message".into()),
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err("signaling_closed".into()),
        Some(Ok(_)) => Ok(None),
    }
}

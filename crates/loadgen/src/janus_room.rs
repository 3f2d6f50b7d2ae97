//! A synthetic participant in a Janus VideoRoom, the peer SFU the bench
//! compares Tandem with: the same two peer connections ([`Peers`]), the same
//! media and stamps, only the signaling differs.
//!
//! Over one WebSocket (`janus-protocol`) the participant makes a session
//! with two VideoRoom handles: a publisher, which joins the room under the
//! participant's number and publishes with `configure`, and a subscriber,
//! which subscribes to the room's other publishers (`join` as subscriber,
//! later `subscribe` for those who come after) and answers each of Janus's
//! offers with `start`. One renegotiation at a time; publishers announced
//! meanwhile wait for the next. Keepalives hold the session open.
//!
//! The rooms themselves are created before anyone joins ([`create_rooms`]),
//! numbered from a base the run picks, so that runs never collide.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::janus::{self, Reply, Room};
use super::participant::{Failure, Participant, Shared};
use super::peers::Peers;
use super::schedule::{index_of, participant_id};

/// Janus drops a session it has not heard from in 60 s (its default
/// `session_timeout`).
const KEEPALIVE: Duration = Duration::from_secs(20);

/// A participant's feed id in Janus: its number plus one (Janus takes 0 as
/// "pick one for me").
fn feed_of(index: u32) -> u64 {
    u64::from(index) + 1
}

/// A session on Janus's WebSocket API.
struct Link {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: u64,
    transactions: u64,
}

impl Link {
    async fn connect(url: &str) -> Result<Link, Failure> {
        let mut request = url.into_client_request().map_err(|_| "janus_url")?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(janus::SUBPROTOCOL),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|_| "connect")?;
        let mut link = Link {
            ws,
            session: 0,
            transactions: 0,
        };
        let tx = link.transaction();
        link.session = link.call(janus::create_session(&tx), &tx).await?;
        Ok(link)
    }

    fn transaction(&mut self) -> String {
        self.transactions += 1;
        format!("t{}", self.transactions)
    }

    async fn send(&mut self, message: Value) -> Result<(), Failure> {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .map_err(|_| "signaling_closed".into())
    }

    /// The next message; `None` for frames that carry none.
    async fn next(&mut self) -> Result<Option<Reply>, Failure> {
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => janus::parse(&text)
                .map(Some)
                .map_err(|_| "unreadable_server_message".into()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err("signaling_closed".into()),
            Some(Ok(_)) => Ok(None),
        }
    }

    /// Sends a session-level request and waits for its `success`: the id it
    /// made (session, handle), or 0. Nothing else is expected meanwhile.
    async fn call(&mut self, request: Value, tx: &str) -> Result<u64, Failure> {
        self.send(request).await?;
        loop {
            match self.next().await? {
                Some(Reply::Success {
                    transaction,
                    id,
                    plugin,
                }) if transaction == tx => {
                    if let Some(Room::Error { code, .. }) = plugin {
                        return Err(format!("janus_{code}"));
                    }
                    return Ok(id.unwrap_or_default());
                }
                Some(Reply::Error {
                    transaction: Some(t),
                    code,
                    ..
                }) if t == tx => return Err(format!("janus_{code}")),
                _ => {}
            }
        }
    }

    async fn attach(&mut self) -> Result<u64, Failure> {
        let tx = self.transaction();
        let request = janus::attach(&tx, self.session);
        self.call(request, &tx).await
    }
}

/// Creates rooms `base` to `base + rooms - 1`, each for `size` publishers.
pub async fn create_rooms(url: &str, base: u64, rooms: usize, size: usize) -> anyhow::Result<()> {
    let mut link = Link::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("opening a Janus session at {url}"))?;
    let handle = link
        .attach()
        .await
        .map_err(|e| anyhow::anyhow!("attaching the VideoRoom plugin: {e}"))?;
    for room in base..base + rooms as u64 {
        let tx = link.transaction();
        let request = janus::create_room(&tx, link.session, handle, room, size);
        if let Err(e) = link.call(request, &tx).await {
            bail!("creating Janus room {room}: {e}");
        }
    }
    // Closing the WebSocket ends the session; the rooms stay.
    let _ = link.ws.close(None).await;
    Ok(())
}

/// Where the subscriber handle is.
#[derive(Debug, Default)]
struct Subscription {
    joined: bool,
    /// An offer asked for and not yet answered.
    negotiating: bool,
    /// Feeds subscribed to or asked for.
    feeds: HashSet<u64>,
    /// Feeds announced while a negotiation was under way.
    waiting: Vec<u64>,
}

impl Subscription {
    fn add(&mut self, feed: u64) {
        if self.feeds.insert(feed) {
            self.waiting.push(feed);
        }
    }
}

impl Participant {
    /// Joins Janus room `base + room` and stays until the run stops.
    pub(crate) async fn janus(&mut self, shared: &Shared, base: u64) -> Result<(), Failure> {
        let permit = shared.joining.clone().acquire_owned().await;
        self.started = Instant::now();
        let room = base + u64::from(self.seat.room);
        let own_feed = feed_of(self.seat.index);
        let mut link = Link::connect(&shared.signal_urls[0]).await?;
        let publisher = link.attach().await?;
        let subscriber = link.attach().await?;

        let tx = link.transaction();
        let display = participant_id(self.seat.index);
        link.send(janus::join_publisher(
            &tx,
            link.session,
            publisher,
            room,
            own_feed,
            &display,
        ))
        .await?;
        let mut subscription = Subscription::default();
        let private_id = loop {
            match link.next().await? {
                Some(Reply::Event {
                    room:
                        Room::Joined {
                            private_id,
                            publishers,
                        },
                    ..
                }) => {
                    for p in publishers {
                        if let Some(index) = p.display.as_deref().and_then(index_of) {
                            self.expected_first.insert(index);
                        }
                        subscription.add(p.feed);
                    }
                    break private_id;
                }
                Some(reply) => refused(&reply)?,
                None => {}
            }
        };

        let mut peers = Peers::bind(shared.bind_ip).await?;
        let tx = link.transaction();
        let offer = peers.offer(shared.traffic.simulcast, true);
        link.send(janus::configure(&tx, link.session, publisher, &offer))
            .await?;
        let mut permit = Some(permit);
        let mut stop = shared.stop.clone();
        let mut keepalive = Instant::now() + KEEPALIVE;

        loop {
            if !subscription.negotiating && !subscription.waiting.is_empty() {
                let feeds = std::mem::take(&mut subscription.waiting);
                let tx = link.transaction();
                let request = if subscription.joined {
                    janus::subscribe(&tx, link.session, subscriber, &feeds)
                } else {
                    janus::join_subscriber(&tx, link.session, subscriber, room, private_id, &feeds)
                };
                link.send(request).await?;
                subscription.joined = true;
                subscription.negotiating = true;
            }
            let wake = peers.wake_at().min(keepalive);
            tokio::select! {
                r = peers.receive() => r?,
                m = link.next() => match m? {
                    Some(Reply::Event { sender, room, jsep, .. }) => {
                        if let Room::Publishers(list) = &room {
                            for p in list {
                                if p.feed != own_feed {
                                    subscription.add(p.feed);
                                }
                            }
                        }
                        if let Room::Error { code, .. } = room {
                            return Err(format!("janus_{code}"));
                        }
                        match jsep {
                            Some(j) if !j.offer && sender == publisher => peers.accept_answer(&j.sdp)?,
                            Some(j) if j.offer && sender == subscriber => {
                                let answer = peers.accept_offer(&j.sdp)?;
                                let tx = link.transaction();
                                link.send(janus::start(&tx, link.session, subscriber, &answer)).await?;
                                subscription.negotiating = false;
                            }
                            Some(_) => return Err("unexpected_sdp".into()),
                            None => {}
                        }
                    }
                    Some(Reply::Hangup { .. }) => self.outcome.error("janus_hangup"),
                    Some(reply) => refused(&reply)?,
                    None => {}
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = stop.changed() => break,
            }
            let now = Instant::now();
            if now >= keepalive {
                let tx = link.transaction();
                link.send(janus::keepalive(&tx, link.session)).await?;
                keepalive = now + KEEPALIVE;
            }
            if peers.tick(now, shared, self)? {
                permit.take();
            }
        }
        let _ = link.ws.close(None).await;
        Ok(())
    }
}

/// Ends the participant on a refusal from Janus; anything else is let by.
fn refused(reply: &Reply) -> Result<(), Failure> {
    match reply {
        Reply::Error { code, .. } => Err(format!("janus_{code}")),
        Reply::Event {
            room: Room::Error { code, .. },
            ..
        } => Err(format!("janus_{code}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_are_numbered_from_one_and_announced_once() {
        assert_eq!(feed_of(0), 1);
        let mut subscription = Subscription::default();
        subscription.add(3);
        subscription.add(4);
        subscription.add(3);
        assert_eq!(subscription.waiting, [3, 4]);
        subscription.waiting.clear();
        subscription.add(4);
        assert!(subscription.waiting.is_empty());
    }
}

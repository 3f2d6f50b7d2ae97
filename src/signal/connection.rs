//! One signaling connection, from `join` to close.
//!
//! The first frame must be a `join` within [`JOIN_TIMEOUT`]; its token is
//! checked against the roster and the time window before anything else
//! happens (and failures count against the source address). Then the
//! connection belongs to its session's room ([`crate::live`]), which
//! decides whether it waits or enters. Once in the room, the connection
//! relays the client's SDP and candidates to the media shard, and the
//! shard's offers, answers and candidates back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::SignalContext;
use crate::live::{busy, ConnHandle, Outgoing};
use crate::nodes::owner::Routed;
use crate::room::admission::{self, Refusal};
use crate::room::rate_limit::Turn;
use crate::room::state::{Action, Input, LeaveReason};
use crate::schedule::RosterEntry;
use crate::sfu::{Command, ConnId, PeerEvent};
use tandem_protocol::{self as message, ClientMessage, DenialCode, ErrorCode, ServerMessage};

/// A connection that has not sent `join` by then is closed.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames larger than this are refused (a group room's SDP reaches tens of
/// KiB, DESIGN.md).
pub(crate) const MAX_FRAME: usize = 256 * 1024;

/// How often the server pings a client, and how long a silent client is
/// considered connected.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// How long a leaving client waits for the room to record its departure.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// How long a socket closed for flooding is read (and ignored) before it
/// is dropped.
const FLOOD_DRAIN: Duration = Duration::from_secs(1);

/// WebSocket close codes we use.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_RESTART: u16 = 1012;
/// The server cannot do it now (`error` `unavailable`); try again later.
const CLOSE_TRY_AGAIN: u16 = 1013;
/// The longest a link's check may wait for the database.
const INVITE_CHECK_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The close code that goes with the last message of a closed socket.
fn close_code(last: &ServerMessage) -> u16 {
    match last {
        ServerMessage::Error {
            code: ErrorCode::ServerRestart,
            ..
        } => CLOSE_RESTART,
        ServerMessage::Error {
            code: ErrorCode::Unavailable,
            ..
        } => CLOSE_TRY_AGAIN,
        _ => CLOSE_NORMAL,
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, message: &ServerMessage) -> bool {
    // Every refusal, whoever decided it (the link check or the room).
    if let ServerMessage::Denied { code, .. } = message {
        metrics::counter!(crate::metrics::JOIN_DENIALS, "code" => code.as_str()).increment(1);
    }
    sink.send(Message::Text(Utf8Bytes::from(message.to_json())))
        .await
        .is_ok()
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
    let _ = sink.close().await;
}

/// Sends an `unavailable` error saying `what`, then closes the socket
/// asking the client to try again: the server could not decide the join
/// (not a refusal of the person).
async fn unavailable(sink: &mut Sink, what: &str) {
    send(sink, &ServerMessage::error(ErrorCode::Unavailable, what)).await;
    close(sink, CLOSE_TRY_AGAIN, "unavailable").await;
}

/// Sends a `denied` message, then closes the socket.
async fn deny(sink: &mut Sink, denial: ServerMessage) {
    send(sink, &denial).await;
    close(sink, CLOSE_POLICY, "denied").await;
}

/// A join attempt, counted in flight against its address from the socket's
/// start until it is decided (when dropped): a failure only when marked.
struct Attempt<'a> {
    context: &'a SignalContext,
    address: IpAddr,
    failed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.context
            .failed_joins
            .lock()
            .expect("limiter lock")
            .finish(self.address, Instant::now(), self.failed);
        self.context.join_decided.notify_waiters();
    }
}

/// Waits for this address's turn to be checked: false when it is refused
/// (its failures are used up, or its turn did not come within the join
/// timeout).
async fn turn(context: &SignalContext, address: IpAddr) -> bool {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let decided = context.join_decided.notified();
        tokio::pin!(decided);
        decided.as_mut().enable();
        let turn = context
            .failed_joins
            .lock()
            .expect("limiter lock")
            .begin(address, Instant::now());
        match turn {
            Turn::Go => return true,
            Turn::Refused => return false,
            Turn::Wait => {
                if tokio::time::timeout_at(deadline, decided).await.is_err() {
                    return false;
                }
            }
        }
    }
}

pub(crate) async fn run(socket: WebSocket, context: Arc<SignalContext>, address: IpAddr) {
    let _open = crate::metrics::Held::connection(crate::metrics::WEBSOCKET);
    let (mut sink, mut stream) = socket.split();
    if !turn(&context, address).await {
        tracing::info!(code = %DenialCode::RateLimited, "join denied");
        deny(&mut sink, ServerMessage::denied(DenialCode::RateLimited)).await;
        return;
    }
    let mut attempt = Attempt {
        context: &context,
        address,
        failed: false,
    };

    // The first frame: a join, in time.
    let first = match tokio::time::timeout(JOIN_TIMEOUT, stream.next()).await {
        Err(_) => {
            attempt.failed = true;
            let late = ServerMessage::Denied {
                code: DenialCode::JoinRequired,
                message: "No join message was received in time.".into(),
                opens_at: None,
            };
            deny(&mut sink, late).await;
            return;
        }
        Ok(None | Some(Ok(Message::Close(_)))) => return,
        // A first frame over the size limit (or otherwise unreadable) is
        // not a join: refused like a later one, and counted.
        Ok(Some(Err(error))) => {
            tracing::debug!(%error, "first signaling frame refused");
            attempt.failed = true;
            close(&mut sink, CLOSE_TOO_BIG, "frame refused").await;
            return;
        }
        Ok(Some(Ok(frame))) => frame,
    };
    let token = match first {
        Message::Text(text) => match message::parse(&text) {
            Ok(ClientMessage::Join {
                token,
                attestation,
                e2ee,
            }) => {
                metrics::counter!(crate::metrics::SIGNAL_MESSAGES, "type" => "join").increment(1);
                Some((token, attestation, e2ee))
            }
            Err(explanation) if is_join(&text) => {
                // A join whose fields are out of bounds: say which.
                send(
                    &mut sink,
                    &ServerMessage::error(ErrorCode::BadMessage, explanation),
                )
                .await;
                None
            }
            _ => None,
        },
        _ => None,
    };
    let Some((token, attestation, e2ee)) = token else {
        attempt.failed = true;
        deny(&mut sink, ServerMessage::denied(DenialCode::JoinRequired)).await;
        return;
    };

    let now = Utc::now();
    let admitted =
        // Bounded: with the database away, the person hears "try again"
        // in a moment, not after the pool's own wait.
        match tokio::time::timeout(INVITE_CHECK_WITHIN, context.scheduler.resolve_invite(&token, now))
            .await
        {
            Ok(resolved) => resolved.map_err(|error| error.to_string()),
            Err(_) => Err("the database did not answer in time".to_owned()),
        }
            .map(|(verified, session)| {
                let member = admission::check_invite(verified, session.as_ref(), now)?.clone();
                Ok::<_, Refusal>((session.expect("admitted to a session that exists"), member))
            });
    let (session, member) = match admitted {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refusal)) => {
            attempt.failed = true;
            tracing::info!(code = %refusal.code(), "join denied");
            deny(&mut sink, refusal.message()).await;
            return;
        }
        Err(error) => {
            tracing::error!(%error, "cannot check an invite");
            unavailable(&mut sink, "The server could not check the link; try again.").await;
            return;
        }
    };

    drop(attempt);
    // In a cluster, the room may be another node's: the client goes there.
    let lease = match &context.cluster {
        None => None,
        Some(cluster) => match cluster.route(session.id).await {
            Ok(Routed::Here(lease)) => Some(lease),
            Ok(Routed::Redirect(url)) => {
                tracing::info!(session = %session.id, "join redirected to the room's node");
                send(&mut sink, &ServerMessage::Redirect { url }).await;
                close(&mut sink, CLOSE_NORMAL, "redirect").await;
                return;
            }
            outcome => {
                if let Err(error) = outcome {
                    tracing::error!(session = %session.id, %error, "cannot find the room's node");
                }
                unavailable(
                    &mut sink,
                    "The session's room cannot be opened right now; try again in a moment.",
                )
                .await;
                return;
            }
        },
    };
    metrics::counter!(crate::metrics::JOINS).increment(1);
    let connection = Connection {
        conn: context.rooms.next_conn(),
        room: session.id,
        context: context.clone(),
        member,
        sign_of_life: crate::sfu::SignOfLife::new(Utc::now()),
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<PeerEvent>();
    context.rooms.arrive(
        &session,
        connection.conn,
        connection.member.clone(),
        attestation,
        e2ee,
        ConnHandle {
            participant: connection.member.id.clone(),
            out: out_tx,
            peer_events: peer_tx,
            sign_of_life: connection.sign_of_life.clone(),
            lease,
        },
    );
    tracing::info!(session = %connection.room, participant = %connection.member.id, conn = connection.conn, "connected");
    let ended = connection
        .serve(&mut sink, &mut stream, &mut out_rx, &mut peer_rx)
        .await;
    if let Some(reason) = ended {
        context.rooms.input(
            connection.room,
            Input::Leave {
                conn: connection.conn,
                reason,
            },
        );
    }
    tracing::info!(session = %connection.room, participant = %connection.member.id, conn = connection.conn, "disconnected");
}

/// Whether `text` is meant as a `join` (a JSON object of that type).
fn is_join(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("join"))
}

/// A participant whose link was accepted.
struct Connection {
    context: Arc<SignalContext>,
    conn: ConnId,
    room: Uuid,
    member: RosterEntry,
    /// Raised by every frame (and, through the media shard, every packet).
    sign_of_life: crate::sfu::SignOfLife,
}

impl Connection {
    /// The connection's loop; returns why it ended, or `None` when the room
    /// already knows (a `leave` it recorded, or a close it decided).
    async fn serve(
        &self,
        sink: &mut Sink,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        out_rx: &mut mpsc::UnboundedReceiver<Outgoing>,
        peer_rx: &mut mpsc::UnboundedReceiver<PeerEvent>,
    ) -> Option<LeaveReason> {
        let mut shutdown = self.context.shutdown.clone();
        let mut rate = self.context.message_rate.clone();
        // In the room (peer connections exist), rather than waiting.
        let mut in_room = false;
        // The last frame from the client (pongs included): a silent network
        // loss ends presence here, not when it is noticed.
        let mut last_seen = Utc::now();
        let mut liveness = tokio::time::interval(PING_INTERVAL);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // The room's messages first: `joined` must reach the client
                // before the first offer for its peer connections.
                biased;
                out = out_rx.recv() => match out {
                    Some(Outgoing::Send(message)) => {
                        match &message {
                            ServerMessage::Joined { .. } => in_room = true,
                            ServerMessage::Waiting { .. } => in_room = false,
                            _ => {}
                        }
                        if !send(sink, &message).await {
                            return Some(LeaveReason::Network { last_seen });
                        }
                    }
                    Some(Outgoing::Close(message)) => {
                        send(sink, &message).await;
                        close(sink, close_code(&message), "closed by the server").await;
                        return None;
                    }
                    Some(Outgoing::Refused(message)) => {
                        if !send(sink, &message).await {
                            return Some(LeaveReason::Network { last_seen });
                        }
                    }
                    Some(Outgoing::Release) => {}
                    None => return None,
                },
                event = peer_rx.recv() => {
                    let Some(event) = event else { continue };
                    if let Some(message) = self.on_peer_event(event) {
                        if !send(sink, &message).await {
                            return Some(LeaveReason::Network { last_seen });
                        }
                    }
                }
                frame = stream.next() => {
                    if matches!(frame, Some(Ok(_))) {
                        last_seen = Utc::now();
                        self.sign_of_life.seen(last_seen);
                    }
                    if matches!(frame, Some(Ok(ref m)) if !matches!(m, Message::Close(_)))
                        && !rate.allow(Instant::now())
                    {
                        tracing::warn!(session = %self.room, conn = self.conn, "signaling socket over its message limit; closed");
                        send(sink, &ServerMessage::error(
                            ErrorCode::RateLimited,
                            "Too many messages; this connection is closed.",
                        )).await;
                        close(sink, CLOSE_POLICY, "too many messages").await;
                        // Read what it still sends for a moment: a socket
                        // closed with unread data is reset, and the reset
                        // would destroy the close frame on its way.
                        let _ = tokio::time::timeout(FLOOD_DRAIN, async {
                            while let Some(Ok(frame)) = stream.next().await {
                                if matches!(frame, Message::Close(_)) {
                                    break;
                                }
                            }
                        })
                        .await;
                        return Some(LeaveReason::Network { last_seen });
                    }
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if !self.on_message(sink, &text, in_room).await {
                                // The room records the departure durably,
                                // then releases the socket; or refuses it
                                // when it cannot be recorded (the client is
                                // told and stays). If it has nothing to
                                // record, nothing comes: go anyway.
                                let leave = Input::Leave { conn: self.conn, reason: LeaveReason::Left };
                                if !self.context.rooms.request(self.room, leave) {
                                    send(sink, &busy()).await;
                                    continue;
                                }
                                let answer = tokio::time::timeout(RELEASE_WAIT, async {
                                    loop {
                                        match out_rx.recv().await {
                                            Some(Outgoing::Release) | None => return None,
                                            // Still there until it is recorded.
                                            Some(Outgoing::Send(message)) => {
                                                send(sink, &message).await;
                                            }
                                            Some(last) => return Some(last),
                                        }
                                    }
                                })
                                .await;
                                match answer {
                                    Ok(Some(Outgoing::Refused(message))) => {
                                        send(sink, &message).await;
                                        continue;
                                    }
                                    Ok(Some(Outgoing::Close(message))) => {
                                        send(sink, &message).await;
                                        close(sink, close_code(&message), "closed by the server").await;
                                        return None;
                                    }
                                    Ok(_) => {
                                        close(sink, CLOSE_NORMAL, "left").await;
                                        return None;
                                    }
                                    // The room has not answered: the
                                    // departure follows as what happened.
                                    Err(_) => {
                                        close(sink, CLOSE_NORMAL, "left").await;
                                        return Some(LeaveReason::Left);
                                    }
                                }
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            send(sink, &ServerMessage::error(ErrorCode::BadMessage, "Messages are JSON text frames.")).await;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        // A close frame: the page was closed. No frame at all:
                        // the network went away.
                        Some(Ok(Message::Close(_))) => return Some(LeaveReason::Left),
                        None => return Some(LeaveReason::Network { last_seen }),
                        Some(Err(error)) => {
                            tracing::debug!(conn = self.conn, %error, "signaling socket error");
                            close(sink, CLOSE_TOO_BIG, "frame refused").await;
                            return Some(LeaveReason::Network { last_seen });
                        }
                    }
                }
                _ = liveness.tick() => {
                    if Utc::now() - last_seen > chrono::Duration::from_std(SILENCE_LIMIT).expect("small") {
                        tracing::info!(conn = self.conn, "signaling socket silent; connection lost");
                        return Some(LeaveReason::Network { last_seen });
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return Some(LeaveReason::Network { last_seen });
                    }
                }
                _ = shutdown.changed() => {
                    send(sink, &ServerMessage::server_restart()).await;
                    close(sink, CLOSE_RESTART, "server restart").await;
                    return Some(LeaveReason::Network { last_seen });
                }
            }
        }
    }

    fn on_peer_event(&self, event: PeerEvent) -> Option<ServerMessage> {
        match event {
            PeerEvent::Offer { pc, sdp } => Some(ServerMessage::Offer { pc, sdp }),
            PeerEvent::Answer { pc, sdp } => Some(ServerMessage::Answer { pc, sdp }),
            PeerEvent::Candidate { pc, candidate } => {
                Some(ServerMessage::Candidate { pc, candidate })
            }
            PeerEvent::Rejected { code, message } => Some(ServerMessage::error(code, message)),
            PeerEvent::Connected { pc } => {
                tracing::info!(session = %self.room, conn = self.conn, ?pc, "media connected");
                self.context
                    .rooms
                    .input(self.room, Input::Connected { conn: self.conn });
                None
            }
            PeerEvent::Speaking { speaking } => {
                self.context.rooms.input(
                    self.room,
                    Input::Speaking {
                        conn: self.conn,
                        speaking,
                    },
                );
                None
            }
            PeerEvent::Disconnected { pc } => {
                tracing::info!(session = %self.room, conn = self.conn, ?pc, "media disconnected");
                None
            }
        }
    }

    /// Handles one client frame; false when the client left.
    async fn on_message(&self, sink: &mut Sink, text: &str, in_room: bool) -> bool {
        let message = match message::parse(text) {
            Ok(m) => m,
            Err(explanation) => {
                metrics::counter!(crate::metrics::SIGNAL_MESSAGES, "type" => "invalid")
                    .increment(1);
                send(
                    sink,
                    &ServerMessage::error(ErrorCode::BadMessage, explanation),
                )
                .await;
                return true;
            }
        };
        metrics::counter!(crate::metrics::SIGNAL_MESSAGES, "type" => message.type_name())
            .increment(1);
        let (sfu, rooms, conn, room) =
            (&self.context.sfu, &self.context.rooms, self.conn, self.room);
        let mut taken = true;
        let mut clinician = |action| taken = rooms.request(room, Input::Clinician { conn, action });
        match message {
            ClientMessage::Join { .. } => {
                send(
                    sink,
                    &ServerMessage::error(ErrorCode::BadState, "You have already joined."),
                )
                .await;
            }
            ClientMessage::Offer { .. }
            | ClientMessage::Answer { .. }
            | ClientMessage::Candidate { .. }
                if !in_room =>
            {
                send(
                    sink,
                    &ServerMessage::error(
                        ErrorCode::BadState,
                        "Media starts once you are in the room.",
                    ),
                )
                .await;
            }
            ClientMessage::Offer { pc, sdp } => sfu.send(room, Command::Offer { conn, pc, sdp }),
            ClientMessage::Answer { pc, sdp } => sfu.send(room, Command::Answer { conn, pc, sdp }),
            ClientMessage::Candidate { pc, candidate } => sfu.send(
                room,
                Command::Candidate {
                    conn,
                    pc,
                    candidate: candidate.map(|c| c.candidate),
                },
            ),
            ClientMessage::Media { audio, video } => {
                taken = rooms.request(room, Input::Media { conn, audio, video })
            }
            ClientMessage::Leave => return false,
            ClientMessage::Ping => {
                send(sink, &ServerMessage::Pong).await;
            }
            ClientMessage::Admit { participant } => clinician(Action::Admit(participant)),
            ClientMessage::Deny { participant } => clinician(Action::Deny(participant)),
            ClientMessage::AdmitAll => clinician(Action::AdmitAll),
            ClientMessage::Remove { participant } => clinician(Action::Remove(participant)),
            ClientMessage::Mute {
                participant,
                kind,
                allow_unmute,
            } => clinician(Action::Mute {
                participant,
                kind,
                allow_unmute,
            }),
            ClientMessage::AllowUnmute { participant, kind } => {
                clinician(Action::AllowUnmute { participant, kind })
            }
            ClientMessage::End => clinician(Action::End),
            ClientMessage::Breakout {
                household,
                with_clinician,
                minutes,
            } => clinician(Action::Breakout {
                household,
                with_clinician,
                minutes,
            }),
            ClientMessage::EndBreakout { household } => {
                clinician(Action::EndBreakout { household })
            }
            ClientMessage::EndAllBreakouts => clinician(Action::EndAllBreakouts),
            ClientMessage::BreakoutMessage { text } => clinician(Action::BreakoutMessage(text)),
            ClientMessage::Spotlight { participant } => clinician(Action::Spotlight(participant)),
            ClientMessage::LowerHand {
                participant: Some(participant),
            } => clinician(Action::LowerHand(participant)),
            ClientMessage::RaiseHand => {
                taken = rooms.request(room, Input::Hand { conn, raised: true })
            }
            ClientMessage::LowerHand { participant: None } => {
                taken = rooms.request(
                    room,
                    Input::Hand {
                        conn,
                        raised: false,
                    },
                )
            }
            ClientMessage::LayerPreference { layers } => {
                sfu.send(room, Command::Prefer { conn, layers })
            }
            // Key material is relayed by the room and never logged here.
            ClientMessage::E2eePublicKey { public_key } => {
                taken = rooms.request(room, Input::PublicKey { conn, public_key })
            }
            ClientMessage::E2eeMediaKey {
                to,
                key_id,
                wrapped,
            } => {
                taken = rooms.request(
                    room,
                    Input::MediaKey {
                        conn,
                        to,
                        key_id,
                        wrapped,
                    },
                )
            }
        }
        if !taken {
            send(sink, &busy()).await;
        }
        true
    }
}

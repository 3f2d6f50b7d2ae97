//! One signaling connection, from `join` to close.
//!
//! The first frame must be a `join` within [`JOIN_TIMEOUT`]; its token is
//! checked against the roster and the time window before anything else
//! happens. Once admitted, the connection relays the client's SDP and
//! candidates to the media shard of its room, and the shard's offers,
//! answers and candidates back, alongside presence from the [`Hub`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::hub::{Member, Outgoing};
use super::message::{self, ClientMessage, Participant, ServerMessage, SessionInfo, You};
use super::SignalContext;
use crate::auth::RosterRole;
use crate::schedule::{RosterEntry, Session};
use crate::sfu::{Command, ConnId, PeerEvent};

/// A connection that has not sent `join` by then is closed.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames larger than this are refused (a group room's SDP reaches tens of
/// KiB, DESIGN.md).
pub const MAX_FRAME: usize = 256 * 1024;

/// WebSocket close codes we use.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_RESTART: u16 = 1012;

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, message: &ServerMessage) -> bool {
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

async fn deny(
    sink: &mut Sink,
    code: &str,
    message: String,
    opens_at: Option<chrono::DateTime<Utc>>,
) {
    send(
        sink,
        &ServerMessage::Denied {
            code: code.into(),
            message,
            opens_at,
        },
    )
    .await;
    close(sink, CLOSE_POLICY, "denied").await;
}

pub async fn run(socket: WebSocket, context: Arc<SignalContext>) {
    let (mut sink, mut stream) = socket.split();

    // The first frame: a join, in time.
    let first = match tokio::time::timeout(JOIN_TIMEOUT, stream.next()).await {
        Err(_) => {
            deny(
                &mut sink,
                "join_required",
                "No join message was received in time.".into(),
                None,
            )
            .await;
            return;
        }
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
        Ok(Some(Ok(frame))) => frame,
    };
    let token = match first {
        Message::Text(text) => match message::parse(&text) {
            Ok(ClientMessage::Join {
                token,
                attestation: _,
            }) => token,
            _ => {
                deny(
                    &mut sink,
                    "join_required",
                    "The first message must be a join.".into(),
                    None,
                )
                .await;
                return;
            }
        },
        _ => {
            deny(
                &mut sink,
                "join_required",
                "The first message must be a join.".into(),
                None,
            )
            .await;
            return;
        }
    };

    let now = Utc::now();
    let (session, member) = match context.scheduler.check_invite(&token, now).await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refusal)) => {
            let opens_at = match &refusal {
                crate::room::admission::Refusal::NotYetOpen { opens_at } => Some(*opens_at),
                _ => None,
            };
            tracing::info!(code = refusal.code(), "join denied");
            deny(&mut sink, refusal.code(), refusal.message(), opens_at).await;
            return;
        }
        Err(error) => {
            tracing::error!(%error, "cannot check an invite");
            send(
                &mut sink,
                &ServerMessage::error(
                    "internal",
                    "The server could not check the link; try again.",
                ),
            )
            .await;
            close(&mut sink, 1011, "internal error").await;
            return;
        }
    };

    Admitted::new(context, session, member)
        .run(sink, stream)
        .await;
}

/// A participant who passed the join check.
struct Admitted {
    context: Arc<SignalContext>,
    conn: ConnId,
    room: Uuid,
    session: Session,
    member: RosterEntry,
}

impl Admitted {
    fn new(context: Arc<SignalContext>, session: Session, member: RosterEntry) -> Admitted {
        Admitted {
            conn: context.hub.next_conn(),
            room: session.id,
            context,
            session,
            member,
        }
    }

    async fn run(self, mut sink: Sink, mut stream: futures_util::stream::SplitStream<WebSocket>) {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
        let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<PeerEvent>();
        let me = Participant {
            id: self.member.id.clone(),
            name: self.member.name.clone(),
            role: self.member.role,
            audio: true,
            video: true,
        };
        let (present, replaced) = self.context.hub.enter(
            self.room,
            Member {
                conn: self.conn,
                info: me,
                out: out_tx,
            },
        );
        if let Some(old) = replaced {
            let _ = old.out.send(Outgoing::Close(ServerMessage::Replaced));
            self.context
                .sfu
                .send(self.room, Command::Leave { conn: old.conn });
            tracing::info!(session = %self.room, participant = %self.member.id, "connection replaced by a new one");
        }
        tracing::info!(session = %self.room, participant = %self.member.id, conn = self.conn, "joined");

        let joined = ServerMessage::Joined {
            you: You {
                id: self.member.id.clone(),
                name: self.member.name.clone(),
                role: self.member.role,
            },
            session: SessionInfo {
                id: self.session.id.to_string(),
                title: self.session.title.clone(),
                kind: self.session.kind.as_str().into(),
                starts_at: self.session.starts_at,
                ends_at: self.session.ends_at,
            },
            participants: present,
            ice_servers: self.context.ice_servers.clone(),
        };
        if send(&mut sink, &joined).await {
            self.context.sfu.send(
                self.room,
                Command::Join {
                    conn: self.conn,
                    room: self.room,
                    participant: self.member.id.clone(),
                    events: peer_tx,
                },
            );
            self.serve(&mut sink, &mut stream, &mut out_rx, &mut peer_rx)
                .await;
        }

        self.context.hub.leave(self.room, self.conn);
        self.context
            .sfu
            .send(self.room, Command::Leave { conn: self.conn });
        tracing::info!(session = %self.room, participant = %self.member.id, conn = self.conn, "left");
    }

    /// The admitted connection's loop; returns when it should close.
    async fn serve(
        &self,
        sink: &mut Sink,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        out_rx: &mut mpsc::UnboundedReceiver<Outgoing>,
        peer_rx: &mut mpsc::UnboundedReceiver<PeerEvent>,
    ) {
        let mut shutdown = self.context.shutdown.clone();
        loop {
            tokio::select! {
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if !self.on_message(sink, &text).await {
                            close(sink, CLOSE_NORMAL, "left").await;
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        send(sink, &ServerMessage::error("bad_message", "Messages are JSON text frames.")).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(error)) => {
                        tracing::debug!(conn = self.conn, %error, "signaling socket error");
                        close(sink, CLOSE_TOO_BIG, "frame refused").await;
                        return;
                    }
                },
                out = out_rx.recv() => match out {
                    Some(Outgoing::Send(message)) => {
                        if !send(sink, &message).await {
                            return;
                        }
                    }
                    Some(Outgoing::Close(message)) => {
                        send(sink, &message).await;
                        close(sink, CLOSE_NORMAL, "closed by the server").await;
                        return;
                    }
                    None => return,
                },
                event = peer_rx.recv() => {
                    let Some(event) = event else { continue };
                    if let Some(message) = self.on_peer_event(event) {
                        if !send(sink, &message).await {
                            return;
                        }
                    }
                }
                _ = shutdown.changed() => {
                    send(sink, &ServerMessage::error(
                        "server_restart",
                        "The server is restarting. Please reconnect in a moment.",
                    )).await;
                    close(sink, CLOSE_RESTART, "server restart").await;
                    return;
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
                None
            }
            PeerEvent::Disconnected { pc } => {
                tracing::info!(session = %self.room, conn = self.conn, ?pc, "media disconnected");
                None
            }
        }
    }

    /// Handles one client frame; false when the client left.
    async fn on_message(&self, sink: &mut Sink, text: &str) -> bool {
        let message = match message::parse(text) {
            Ok(m) => m,
            Err(explanation) => {
                send(sink, &ServerMessage::error("bad_message", explanation)).await;
                return true;
            }
        };
        let sfu = &self.context.sfu;
        match message {
            ClientMessage::Join { .. } => {
                send(
                    sink,
                    &ServerMessage::error("bad_state", "You have already joined."),
                )
                .await;
            }
            ClientMessage::Offer { pc, sdp } => sfu.send(
                self.room,
                Command::Offer {
                    conn: self.conn,
                    pc,
                    sdp,
                },
            ),
            ClientMessage::Answer { pc, sdp } => sfu.send(
                self.room,
                Command::Answer {
                    conn: self.conn,
                    pc,
                    sdp,
                },
            ),
            ClientMessage::Candidate { pc, candidate } => sfu.send(
                self.room,
                Command::Candidate {
                    conn: self.conn,
                    pc,
                    candidate: candidate.map(|c| c.candidate),
                },
            ),
            ClientMessage::Media { audio, video } => {
                self.context
                    .hub
                    .set_media(self.room, self.conn, audio, video);
            }
            ClientMessage::Leave => return false,
            ClientMessage::Ping => {
                send(sink, &ServerMessage::Pong).await;
            }
            ClientMessage::Admit { .. }
            | ClientMessage::Deny { .. }
            | ClientMessage::AdmitAll
            | ClientMessage::Remove { .. }
            | ClientMessage::Mute { .. }
            | ClientMessage::End => {
                let message = if self.member.role == RosterRole::Clinician {
                    "The waiting room and clinician controls are not available in this version."
                } else {
                    "Only the clinician can do this."
                };
                send(sink, &ServerMessage::error("not_allowed", message)).await;
            }
        }
        true
    }
}

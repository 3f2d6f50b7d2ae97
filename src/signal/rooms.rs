//! Live rooms: one task per session in progress, owning its [`Room`] state
//! machine and carrying out what it decides.
//!
//! Connections send their arrivals, departures and clinician actions here;
//! the task applies them (and a tick every second for timers) and performs
//! the effects: messages to connections, peer connections started or
//! stopped in the SFU, removals and ends written to the database, room
//! events logged by id for the attendance ledger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::message::{IceServer, ServerMessage};
use crate::room::state::{Effect, Input, Room};
use crate::schedule::{Notice, RosterEntry, Scheduler, Session};
use crate::sfu::{Command, ConnId, PeerEvent, Sfu};

/// How often a room's timers are checked.
const TICK: Duration = Duration::from_secs(1);

/// What a connection's writer is asked to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Send(ServerMessage),
    /// Send the message, then close the socket (replaced, removed, ended).
    Close(ServerMessage),
}

/// How a room reaches one connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub participant: String,
    pub out: mpsc::UnboundedSender<Outgoing>,
    pub peer_events: mpsc::UnboundedSender<PeerEvent>,
}

enum RoomMessage {
    Arrive {
        conn: ConnId,
        person: RosterEntry,
        handle: ConnHandle,
    },
    Input(Input),
}

pub struct Rooms {
    live: Mutex<HashMap<Uuid, mpsc::UnboundedSender<RoomMessage>>>,
    next_conn: AtomicU64,
    sfu: Arc<Sfu>,
    scheduler: Scheduler,
    ice_servers: Vec<IceServer>,
}

impl Rooms {
    pub fn new(sfu: Arc<Sfu>, scheduler: Scheduler, ice_servers: Vec<IceServer>) -> Arc<Rooms> {
        let rooms = Arc::new(Rooms {
            live: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            sfu,
            scheduler: scheduler.clone(),
            ice_servers,
        });
        tokio::spawn(relay_notices(Arc::downgrade(&rooms), scheduler.subscribe()));
        rooms
    }

    pub fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A connection whose link was accepted arrives in its session's room
    /// (started on the first arrival).
    pub fn arrive(
        self: &Arc<Self>,
        session: &Session,
        conn: ConnId,
        person: RosterEntry,
        handle: ConnHandle,
    ) {
        let mut live = self.live.lock().expect("rooms lock");
        let sender = live.entry(session.id).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let room = Room::new(session, self.ice_servers.clone());
            tokio::spawn(run(self.clone(), room, rx));
            tx
        });
        let _ = sender.send(RoomMessage::Arrive {
            conn,
            person,
            handle,
        });
    }

    /// Passes `input` to the live room of `session`, if there is one.
    pub fn input(&self, session: Uuid, input: Input) {
        if let Some(sender) = self.live.lock().expect("rooms lock").get(&session) {
            let _ = sender.send(RoomMessage::Input(input));
        }
    }

    fn finished(&self, session: Uuid) {
        self.live.lock().expect("rooms lock").remove(&session);
    }
}

/// Forwards revocations and cancellations from the scheduler (REST, CLI)
/// to the rooms they concern.
async fn relay_notices(rooms: std::sync::Weak<Rooms>, mut notices: broadcast::Receiver<Notice>) {
    loop {
        let notice = match notices.recv().await {
            Ok(n) => n,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(rooms) = rooms.upgrade() else { return };
        match notice {
            Notice::Revoked {
                session,
                participant,
            } => rooms.input(session, Input::Revoked { participant }),
            Notice::Cancelled { session } => rooms.input(session, Input::Cancelled),
        }
    }
}

async fn run(
    rooms: Arc<Rooms>,
    mut room: Room,
    mut messages: mpsc::UnboundedReceiver<RoomMessage>,
) {
    let id = room.id();
    let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(session = %id, "room opened");
    while !room.is_finished() {
        let input = tokio::select! {
            message = messages.recv() => match message {
                Some(RoomMessage::Arrive { conn, person, handle }) => {
                    conns.insert(conn, handle);
                    Input::Arrive { conn, person }
                }
                Some(RoomMessage::Input(input)) => input,
                None => break,
            },
            _ = tick.tick() => Input::Tick,
        };
        let effects = room.handle(input, Utc::now());
        for effect in effects {
            carry_out(&rooms, id, effect, &mut conns).await;
        }
    }
    rooms.finished(id);
    // Anyone who arrived after the end hears it.
    while let Ok(RoomMessage::Arrive {
        conn,
        person,
        handle,
    }) = messages.try_recv()
    {
        conns.insert(conn, handle);
        for effect in room.handle(Input::Arrive { conn, person }, Utc::now()) {
            carry_out(&rooms, id, effect, &mut conns).await;
        }
    }
    tracing::info!(session = %id, "room closed");
}

async fn carry_out(
    rooms: &Rooms,
    room: Uuid,
    effect: Effect,
    conns: &mut HashMap<ConnId, ConnHandle>,
) {
    match effect {
        Effect::Send { conn, message } => {
            if let Some(handle) = conns.get(&conn) {
                let _ = handle.out.send(Outgoing::Send(message));
            }
        }
        Effect::Close { conn, message } => {
            if let Some(handle) = conns.remove(&conn) {
                let _ = handle.out.send(Outgoing::Close(message));
            }
        }
        Effect::StartMedia { conn } => {
            if let Some(handle) = conns.get(&conn) {
                rooms.sfu.send(
                    room,
                    Command::Join {
                        conn,
                        room,
                        participant: handle.participant.clone(),
                        events: handle.peer_events.clone(),
                    },
                );
            }
        }
        Effect::StopMedia { conn } => rooms.sfu.send(room, Command::Leave { conn }),
        Effect::SetGroup { conn, group } => rooms.sfu.send(room, Command::SetGroup { conn, group }),
        Effect::Block {
            conn,
            kind,
            blocked,
        } => rooms.sfu.send(
            room,
            Command::Block {
                conn,
                kind,
                blocked,
            },
        ),
        Effect::PersistRemoval { participant } => {
            if let Err(error) = rooms
                .scheduler
                .store()
                .mark_removed(room, &participant, Utc::now())
                .await
            {
                tracing::error!(session = %room, participant, %error, "cannot persist a removal");
            }
        }
        Effect::PersistEnd => {
            if let Err(error) = rooms.scheduler.store().end_session(room, Utc::now()).await {
                tracing::error!(session = %room, %error, "cannot persist the end of a session");
            }
        }
        Effect::Record(event) => tracing::info!(session = %room, ?event, "room event"),
        Effect::Finished => {}
    }
}

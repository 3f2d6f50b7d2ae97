//! Live rooms: one task per session in progress, owning its [`Room`] state
//! machine and carrying out what it decides.
//!
//! Connections send their arrivals, departures and clinician actions here;
//! the task applies them (and a tick every second for timers) and performs
//! the effects: messages to connections, peer connections started or
//! stopped in the SFU, removals and ends written to the database, room
//! events logged by id for the attendance ledger.
//!
//! Record before tell, also when the ledger cannot be written: what a
//! person asks for (an arrival, a clinician's action, a `leave`, their own
//! mute) is carried out only once its events are on disk; otherwise the
//! room goes back to how it was and the person gets `error` `unavailable`
//! and may try again. What simply happens (media connected, a lost
//! connection, the clock) cannot be refused: it is carried out, and the
//! ledger keeps its events in order, with their own times, until the disk
//! takes them ([`Ledger::record_fenced`]).
//!
//! In a cluster, a room acts only under its lease ([`lease::RoomLease`]):
//! it asks before every input whether it may still act, writes the ledger
//! under the lease's fence, and when it may not, it writes nothing more and
//! closes its people's sockets (`server_restart`) so that they reconnect to
//! the node that holds the room now. A single node's rooms have no lease.

pub(crate) mod lease;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::attendance::event::{EventKind, Modality, NewEvent, Reason};
use crate::attendance::ledger::{Ledger, LedgerError};
use crate::room::state::{Effect, Input, Occupancy, Room, RoomEvent};
use crate::room::takeover::Takeover;
use crate::schedule::SessionKind;
use crate::schedule::{Notice, RosterEntry, Scheduler, Session};
use crate::sfu::{Command, ConnId, Joining, PeerEvent, Sfu};
use crate::store::StoreError;
use lease::RoomLease;
use tandem_protocol::{Attestation, DenialCode, ErrorCode, IceServer, ServerMessage};

/// How often a room's timers are checked.
const TICK: Duration = Duration::from_secs(1);

/// Messages a room's queue holds. A full queue refuses a request or an
/// arrival (`error` `unavailable`: the room is busy); what happened
/// (a departure) waits for room in its own task. Other rooms are never
/// affected: each has its own queue and task.
pub(crate) const ROOM_QUEUE: usize = 256;

/// The room could not take a request (its queue is full, or it is gone).
pub(crate) fn busy() -> ServerMessage {
    ServerMessage::error(
        ErrorCode::Unavailable,
        "The room is busy, so this was not done. Please try again in a moment.",
    )
}

/// What a connection's writer is asked to do.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    Send(ServerMessage),
    /// Send the message, then close the socket (replaced, removed, ended).
    Close(ServerMessage),
    /// The departure the client asked for is recorded: close the socket.
    Release,
    /// What the client asked for was not done (`error` `unavailable`): send
    /// the message; the connection stays.
    Refused(ServerMessage),
}

/// How a room reaches one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub participant: String,
    pub out: mpsc::UnboundedSender<Outgoing>,
    pub peer_events: mpsc::UnboundedSender<PeerEvent>,
    /// Raised by its frames and media packets; read by the room.
    pub sign_of_life: crate::sfu::SignOfLife,
    /// In a cluster, the room's lease this node held when the join was
    /// routed here: a room opened by this arrival acts under it.
    pub lease: Option<Arc<RoomLease>>,
}

enum RoomMessage {
    Arrive {
        conn: ConnId,
        person: RosterEntry,
        attestation: Option<Attestation>,
        /// The client can encrypt end to end.
        e2ee: bool,
        handle: ConnHandle,
    },
    /// What a connection asked for: refused when it cannot be recorded.
    Request(Input),
    /// What happened: carried out, recorded as soon as the ledger can.
    Fact(Input),
}

pub(crate) struct Rooms {
    live: Mutex<HashMap<Uuid, mpsc::Sender<RoomMessage>>>,
    /// Sessions whose room has finished in this run: a join racing the end
    /// is refused rather than opening a new room.
    finished: Mutex<std::collections::HashSet<Uuid>>,
    next_conn: AtomicU64,
    /// Makes connection ids unique across restarts in the ledger.
    boot: String,
    sfu: Arc<Sfu>,
    scheduler: Scheduler,
    ledger: Ledger,
    heartbeat: Duration,
    ice_servers: Vec<IceServer>,
    /// The moment the server was told to stop, once it was.
    stopping: watch::Sender<Option<DateTime<Utc>>>,
    /// The rooms' tasks, awaited at a stop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Who waits and who is in each live room, for the staff console.
    occupancy: watch::Sender<HashMap<Uuid, Occupancy>>,
    /// False once the node drains: only rooms already live take arrivals.
    new_rooms: std::sync::atomic::AtomicBool,
}

impl Rooms {
    pub(crate) fn new(
        sfu: Arc<Sfu>,
        scheduler: Scheduler,
        ledger: Ledger,
        heartbeat: Duration,
        ice_servers: Vec<IceServer>,
    ) -> Arc<Rooms> {
        let rooms = Arc::new(Rooms {
            live: Mutex::new(HashMap::new()),
            finished: Mutex::new(Default::default()),
            next_conn: AtomicU64::new(0),
            boot: Uuid::new_v4().simple().to_string()[..12].to_owned(),
            sfu,
            scheduler: scheduler.clone(),
            ledger,
            heartbeat,
            ice_servers,
            stopping: watch::Sender::new(None),
            tasks: Mutex::new(Vec::new()),
            occupancy: watch::Sender::new(HashMap::new()),
            new_rooms: std::sync::atomic::AtomicBool::new(true),
        });
        tokio::spawn(relay_notices(Arc::downgrade(&rooms), scheduler.subscribe()));
        rooms
    }

    pub(crate) fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A connection whose link was accepted arrives in its session's room
    /// (started on the first arrival).
    pub(crate) fn arrive(
        self: &Arc<Self>,
        session: &Session,
        conn: ConnId,
        person: RosterEntry,
        attestation: Option<Attestation>,
        e2ee: bool,
        handle: ConnHandle,
    ) {
        let mut live = self.live.lock().expect("rooms lock");
        // A draining node opens no room: come back soon (to this node once
        // it has restarted, or in a cluster to another one).
        let closed_to_new = !self.new_rooms.load(std::sync::atomic::Ordering::SeqCst)
            && !live.contains_key(&session.id);
        // A lease claimed for a room that does not open here is released.
        let release_unused = |handle: &ConnHandle| {
            if let (Some(lease), false) = (&handle.lease, live.contains_key(&session.id)) {
                lease.finish();
            }
        };
        if self.stopping.borrow().is_some() || closed_to_new {
            release_unused(&handle);
            let _ = handle
                .out
                .send(Outgoing::Close(ServerMessage::server_restart()));
            return;
        }
        if self
            .finished
            .lock()
            .expect("rooms lock")
            .contains(&session.id)
        {
            release_unused(&handle);
            let _ = handle.out.send(Outgoing::Close(ServerMessage::denied(
                DenialCode::SessionEnded,
            )));
            return;
        }
        let sender = live.entry(session.id).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(ROOM_QUEUE);
            let room = Room::new(session, self.ice_servers.clone());
            let roles = session
                .roster
                .iter()
                .map(|p| (p.id.clone(), p.role.as_str()))
                .collect();
            let mut tasks = self.tasks.lock().expect("rooms lock");
            tasks.retain(|t| !t.is_finished());
            let lease = handle.lease.clone();
            tasks.push(tokio::spawn(run(self.clone(), room, roles, rx, lease)));
            tx
        });
        let arrival = RoomMessage::Arrive {
            conn,
            person,
            attestation,
            e2ee,
            handle,
        };
        // A full queue: the room is busy; the client may come back.
        if let Err(error) = sender.try_send(arrival) {
            if let RoomMessage::Arrive { handle, .. } = error.into_inner() {
                let _ = handle.out.send(Outgoing::Close(busy()));
            }
        }
    }

    /// The ledger's id of connection `conn`.
    fn connection_id(&self, conn: ConnId) -> String {
        format!("{}-{conn}", self.boot)
    }

    /// Passes what happened (`input`) to the live room of `session`, if
    /// there is one.
    pub(crate) fn input(&self, session: Uuid, input: Input) {
        if let Some(sender) = self.live.lock().expect("rooms lock").get(&session) {
            if let Err(mpsc::error::TrySendError::Full(fact)) =
                sender.try_send(RoomMessage::Fact(input))
            {
                // It happened: it waits for room, without holding up
                // whoever noticed it.
                let sender = sender.clone();
                tokio::spawn(async move {
                    let _ = sender.send(fact).await;
                });
            }
        }
    }

    /// Passes what a connection asked for (a clinician's action, its own
    /// mute, a `leave`) to the live room of `session`; false when there is
    /// no room to take it. When it cannot be recorded, the connection gets
    /// [`Outgoing::Refused`].
    pub(crate) fn request(&self, session: Uuid, input: Input) -> bool {
        match self.live.lock().expect("rooms lock").get(&session) {
            Some(sender) => sender.try_send(RoomMessage::Request(input)).is_ok(),
            None => false,
        }
    }

    /// For a server stop: from now on nobody enters; every live room ends
    /// everyone's presence at `at` with reason `server_restart`, recorded
    /// (or kept by the ledger) before their sockets are closed with `error`
    /// `server_restart`. Waits up to `wait` for the rooms; false when some
    /// did not finish in time.
    pub(crate) async fn shutdown(&self, at: DateTime<Utc>, wait: Duration) -> bool {
        {
            // Under the rooms' lock: an arrival either sees the stop or has
            // registered its room's task, which is awaited below.
            let _live = self.live.lock().expect("rooms lock");
            self.stopping.send_replace(Some(at));
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("rooms lock"));
        let deadline = tokio::time::Instant::now() + wait;
        let mut all = true;
        for task in tasks {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                all = false;
            }
        }
        if !all {
            tracing::error!("live rooms did not stop in time; their departures may be missing");
        }
        all
    }

    /// Whether `session`'s room is live on this node.
    pub(crate) fn is_live(&self, session: Uuid) -> bool {
        self.live.lock().expect("rooms lock").contains_key(&session)
    }

    /// For a drain: from now on only rooms already live take arrivals.
    pub(crate) fn stop_new_rooms(&self) {
        self.new_rooms
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Each live room and how many people are connected to it (waiting or
    /// in the room; a room that has not said yet counts as occupied).
    pub(crate) fn live_rooms(&self) -> Vec<(Uuid, usize)> {
        let occupancy = self.occupancy.borrow();
        self.live
            .lock()
            .expect("rooms lock")
            .keys()
            .map(|id| {
                let connected = occupancy
                    .get(id)
                    .map_or(1, |o| o.waiting.len() + o.in_room.len());
                (*id, connected)
            })
            .collect()
    }

    /// Who waits and who is in each live room, as it changes.
    pub(crate) fn occupancy(&self) -> watch::Receiver<HashMap<Uuid, Occupancy>> {
        self.occupancy.subscribe()
    }

    /// Publishes a room's occupancy when it changed; `None` for a room that
    /// closed.
    fn publish(&self, session: Uuid, occupancy: Option<Occupancy>) {
        self.occupancy.send_if_modified(|all| match occupancy {
            Some(now) if all.get(&session) != Some(&now) => {
                all.insert(session, now);
                true
            }
            Some(_) => false,
            None => all.remove(&session).is_some(),
        });
    }

    /// A room that lost its lease: gone from this node, but not finished
    /// (its people reconnect, and reach the node that holds it now, or this
    /// one again once it claims it anew).
    fn given_up(&self, session: Uuid) {
        self.publish(session, None);
        self.live.lock().expect("rooms lock").remove(&session);
    }

    fn finished(&self, session: Uuid) {
        self.publish(session, None);
        let mut live = self.live.lock().expect("rooms lock");
        self.finished.lock().expect("rooms lock").insert(session);
        live.remove(&session);
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
    roles: HashMap<String, &'static str>,
    mut messages: mpsc::Receiver<RoomMessage>,
    lease: Option<Arc<RoomLease>>,
) {
    let id = room.id();
    let media = RoomMedia {
        room: id,
        estimate_bandwidth: room.kind() == SessionKind::Group,
    };
    let recorder = Recorder {
        rooms: &rooms,
        session: id.to_string(),
        roles,
        fence: lease.as_ref().map(|l| l.fence()),
    };
    // In a cluster, the room acts only while its lease allows.
    let may_act = |now: DateTime<Utc>| lease.as_ref().is_none_or(|l| l.may_act(now));
    // Turns true when the lease is lost (never for a single node: its
    // branch below is off).
    let (_alone, never) = watch::channel(false);
    let mut lost = lease.as_ref().map_or(never, |l| l.lost());
    if let Some(fence) = &recorder.fence {
        // A room another node held (it died, froze or was cut off): the
        // presence it left open ends at each connection's last heartbeat.
        match crate::attendance::ledger::recover_session_presence(&rooms.ledger, fence.clone())
            .await
        {
            Ok(0) => {}
            Ok(closed) => {
                tracing::warn!(session = %id, closed, "presence left open by the room's previous node closed at its last heartbeat")
            }
            Err(error) => {
                tracing::error!(session = %id, %error, "presence left open by the room's previous node not closed")
            }
        }
    }
    let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(rooms.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A room that was live before (a restart, or in a cluster a takeover
    // from a node that stopped): the people the ledger says were in it go
    // back in without waiting while a clinician is present.
    match rooms.ledger.store().session_events(&id.to_string()).await {
        Ok(events) if !events.is_empty() => {
            room.take_over(Takeover::from_ledger(&events), Utc::now());
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(session = %id, %error, "cannot read who was in the room: everyone knocks again");
        }
    }
    recorder
        .fact(vec![recorder.session_event(
            EventKind::SessionOpened,
            None,
            Utc::now(),
        )])
        .await;
    tracing::info!(session = %id, "room opened");
    let mut stop = rooms.stopping.subscribe();
    let mut stopped = false;
    let mut gave_up = false;
    let mut gauges = Headcount::open();
    while !room.is_finished() {
        gauges.update(room.headcount());
        // A stop comes before anything else still queued.
        let stop_at = *stop.borrow_and_update();
        if let Some(at) = stop_at {
            let effects = room.handle(Input::Stop, at);
            let events = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Record(event) => Some(recorder.event(event, at)),
                    _ => None,
                })
                .collect();
            recorder.fact(events).await;
            for effect in effects {
                carry_out(&rooms, media, effect, &mut conns).await;
            }
            stopped = true;
            break;
        }
        if !may_act(Utc::now()) {
            gave_up = true;
            break;
        }
        // Who asked, when the input is a request that may be refused.
        let (input, asked) = tokio::select! {
            message = messages.recv() => match message {
                Some(RoomMessage::Arrive { conn, person, attestation, e2ee, handle }) => {
                    let sign_of_life = handle.sign_of_life.clone();
                    conns.insert(conn, handle);
                    (Input::Arrive { conn, person, attestation, sign_of_life, e2ee }, Some(Asked::Arrival(conn)))
                }
                Some(RoomMessage::Request(input)) => {
                    let asked = requester(&input).map(Asked::Request);
                    (input, asked)
                }
                Some(RoomMessage::Fact(input)) => (input, None),
                None => break,
            },
            _ = stop.changed() => continue,
            _ = async { lost.wait_for(|lost| *lost).await.is_ok() }, if lease.is_some() => continue,
            _ = tick.tick() => (Input::Tick, None),
            _ = heartbeat.tick() => {
                if !may_act(Utc::now()) {
                    continue;
                }
                // Each live connection's last sign of life, never the time
                // of writing: recovery must not count a silent stretch.
                let beats: Vec<(String, i64)> = room
                    .heartbeats(Utc::now())
                    .into_iter()
                    .map(|(c, at)| (rooms.connection_id(c), at.timestamp_millis()))
                    .collect();
                if let Err(error) = rooms.ledger.heartbeat(&beats).await {
                    tracing::error!(session = %id, %error, "presence heartbeat not written");
                }
                continue;
            }
        };
        let now = Utc::now();
        // A node frozen past its lease wakes here: it decides nothing more.
        if !may_act(now) {
            if let Some(Asked::Arrival(conn)) = asked {
                if let Some(handle) = conns.remove(&conn) {
                    let _ = handle
                        .out
                        .send(Outgoing::Close(ServerMessage::server_restart()));
                }
            }
            gave_up = true;
            break;
        }
        let departed = match &input {
            Input::Leave { conn, .. } => Some(*conn),
            _ => None,
        };
        let before = asked.map(|_| room.clone());
        let effects = room.handle(input, now);
        // Durable first, then told: the events of this decision are on disk
        // before any message announcing it leaves.
        let events = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Record(event) => Some(recorder.event(event, now)),
                _ => None,
            })
            .collect();
        match (asked, before) {
            (Some(asked), Some(before)) => {
                // A removal or an end is stored before its events are
                // recorded: what the ledger says happened is also what
                // the next join (after a restart too) is checked against.
                let recorded = match persist(&rooms, id, &effects).await {
                    Ok(()) => recorder.request(events).await.map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                if let Err(error) = recorded {
                    // Not carried out: as if it had not been asked.
                    tracing::warn!(session = %id, %error, "a request was refused: it cannot be recorded");
                    room = before;
                    refuse(asked, &mut conns);
                    continue;
                }
            }
            _ => {
                if let Err(error) = persist(&rooms, id, &effects).await {
                    tracing::error!(session = %id, %error, "cannot store a removal or an end");
                }
                recorder.fact(events).await
            }
        }
        for effect in effects {
            carry_out(&rooms, media, effect, &mut conns).await;
        }
        if let Some(conn) = departed {
            conns.remove(&conn);
        }
        rooms.publish(id, Some(room.occupancy()));
    }
    if gave_up {
        // Another node holds the room (or may, any moment): nothing more
        // is written for it here, and its people reconnect to reach it.
        rooms.given_up(id);
        for (conn, handle) in conns.drain() {
            rooms.sfu.send(id, Command::Leave { conn });
            let _ = handle
                .out
                .send(Outgoing::Close(ServerMessage::server_restart()));
        }
        turn_away_arrivals(&mut messages);
        tracing::warn!(session = %id, "room given up: this node no longer holds its lease");
        return;
    }
    if let Some(lease) = &lease {
        lease.finish();
    }
    if stopped {
        rooms.publish(id, None);
        turn_away_arrivals(&mut messages);
        tracing::info!(session = %id, "room stopped");
        return;
    }
    rooms.finished(id);
    // Anyone who arrived after the end hears it (whatever else is queued).
    while let Ok(message) = messages.try_recv() {
        let RoomMessage::Arrive {
            conn,
            person,
            handle,
            e2ee,
            ..
        } = message
        else {
            continue;
        };
        let sign_of_life = handle.sign_of_life.clone();
        conns.insert(conn, handle);
        let input = Input::Arrive {
            conn,
            person,
            attestation: None,
            sign_of_life,
            e2ee,
        };
        for effect in room.handle(input, Utc::now()) {
            carry_out(&rooms, media, effect, &mut conns).await;
        }
    }
    tracing::info!(session = %id, "room closed");
}

/// A live room's share of the session and participant gauges: counted in
/// while the room's task runs, taken back when it ends, however it ends.
struct Headcount {
    waiting: f64,
    in_room: f64,
}

impl Headcount {
    fn open() -> Headcount {
        metrics::gauge!(crate::metrics::SESSIONS_LIVE).increment(1.0);
        Headcount {
            waiting: 0.0,
            in_room: 0.0,
        }
    }

    /// The room now has `waiting` people waiting and `in_room` in the room.
    fn update(&mut self, (waiting, in_room): (usize, usize)) {
        let (waiting, in_room) = (waiting as f64, in_room as f64);
        let state = |s: &'static str| metrics::gauge!(crate::metrics::PARTICIPANTS, "state" => s);
        if waiting != self.waiting {
            state(crate::metrics::WAITING).increment(waiting - self.waiting);
            self.waiting = waiting;
        }
        if in_room != self.in_room {
            state(crate::metrics::IN_ROOM).increment(in_room - self.in_room);
            self.in_room = in_room;
        }
    }
}

impl Drop for Headcount {
    fn drop(&mut self) {
        self.update((0, 0));
        metrics::gauge!(crate::metrics::SESSIONS_LIVE).decrement(1.0);
    }
}

/// Who asked for an input that may be refused.
#[derive(Debug, Clone, Copy)]
enum Asked {
    /// A connection arriving: refused, it is closed (it may reconnect).
    Arrival(ConnId),
    /// A connection in the room or waiting: refused, it stays.
    Request(ConnId),
}

/// The connection a request came from.
fn requester(input: &Input) -> Option<ConnId> {
    match input {
        Input::Clinician { conn, .. }
        | Input::Media { conn, .. }
        | Input::Leave { conn, .. }
        | Input::Hand { conn, .. } => Some(*conn),
        _ => None,
    }
}

/// Tells whoever asked that it was not done.
fn refuse(asked: Asked, conns: &mut HashMap<ConnId, ConnHandle>) {
    let unavailable = |what: &str| {
        ServerMessage::error(
            ErrorCode::Unavailable,
            format!(
                "Attendance cannot be recorded right now, so {what}. Please try again in a moment."
            ),
        )
    };
    match asked {
        Asked::Arrival(conn) => {
            if let Some(handle) = conns.remove(&conn) {
                let message = unavailable("you cannot enter yet");
                let _ = handle.out.send(Outgoing::Close(message));
            }
        }
        Asked::Request(conn) => {
            if let Some(handle) = conns.get(&conn) {
                let message = unavailable("this was not done");
                let _ = handle.out.send(Outgoing::Refused(message));
            }
        }
    }
}

/// Turns room events into ledger events.
struct Recorder<'a> {
    rooms: &'a Rooms,
    session: String,
    roles: HashMap<String, &'static str>,
    /// In a cluster, the lease every write is made under.
    fence: Option<crate::store::cluster::Fence>,
}

impl Recorder<'_> {
    /// Records the events of a request: an error when they are not on disk.
    async fn request(&self, events: Vec<NewEvent>) -> Result<(), LedgerError> {
        self.rooms
            .ledger
            .append_fenced(events, self.fence.clone())
            .await
            .map(|_| ())
    }

    /// Records facts: on disk now, or kept by the ledger until they can be.
    async fn fact(&self, events: Vec<NewEvent>) {
        if let Err(error) = self
            .rooms
            .ledger
            .record_fenced(events, self.fence.clone())
            .await
        {
            tracing::error!(session = %self.session, %error, "attendance events not recorded");
        }
    }

    fn session_event(&self, kind: EventKind, reason: Option<&str>, now: DateTime<Utc>) -> NewEvent {
        NewEvent {
            at: now.timestamp_millis(),
            session: self.session.clone(),
            participant: None,
            role: None,
            connection: None,
            kind,
            reason: reason.map(str::to_owned),
            modality: None,
            detail: None,
        }
    }

    fn person_event(
        &self,
        participant: &str,
        conn: Option<ConnId>,
        kind: EventKind,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> NewEvent {
        NewEvent {
            participant: Some(participant.to_owned()),
            role: self.roles.get(participant).map(|r| (*r).to_owned()),
            connection: conn.map(|c| self.rooms.connection_id(c)),
            ..self.session_event(kind, reason, now)
        }
    }

    fn event(&self, event: &RoomEvent, now: DateTime<Utc>) -> NewEvent {
        let modality_of = |video: bool| Some(Modality::with_video(video).as_str().to_owned());
        match event {
            RoomEvent::Waiting { participant, conn } => {
                self.person_event(participant, Some(*conn), EventKind::Waiting, None, now)
            }
            RoomEvent::Joined {
                participant,
                conn,
                video,
            } => NewEvent {
                modality: modality_of(*video),
                ..self.person_event(participant, Some(*conn), EventKind::Joined, None, now)
            },
            RoomEvent::Attestation {
                participant,
                conn,
                attestation,
            } => NewEvent {
                detail: Some(json!({
                    "state": attestation.state,
                    "at_home": attestation.at_home,
                    "private": attestation.private,
                })),
                ..self.person_event(participant, Some(*conn), EventKind::Attestation, None, now)
            },
            RoomEvent::Admitted {
                participant,
                conn,
                by,
            } => NewEvent {
                detail: Some(json!({ "by": by })),
                ..self.person_event(participant, Some(*conn), EventKind::Admitted, None, now)
            },
            RoomEvent::Denied {
                participant,
                conn,
                code,
            } => self.person_event(
                participant,
                Some(*conn),
                EventKind::Denied,
                Some(code.as_str()),
                now,
            ),
            RoomEvent::Removed { participant, by } => NewEvent {
                detail: Some(json!({ "by": by })),
                ..self.person_event(
                    participant,
                    None,
                    EventKind::Removed,
                    Some(Reason::Removed.as_str()),
                    now,
                )
            },
            RoomEvent::Replaced {
                participant,
                old,
                new,
                at,
            } => NewEvent {
                detail: Some(json!({ "by_connection": self.rooms.connection_id(*new) })),
                ..self.person_event(
                    participant,
                    Some(*old),
                    EventKind::Replaced,
                    Some(Reason::Replaced.as_str()),
                    at.unwrap_or(now),
                )
            },
            RoomEvent::Left {
                participant,
                conn,
                reason,
                at,
            } => self.person_event(
                participant,
                Some(*conn),
                EventKind::Left,
                Some(reason.as_str()),
                at.unwrap_or(now),
            ),
            RoomEvent::MediaChanged {
                participant,
                conn,
                audio,
                video,
            } => NewEvent {
                modality: modality_of(*video),
                detail: Some(json!({ "audio": audio, "video": video })),
                ..self.person_event(participant, Some(*conn), EventKind::MediaChanged, None, now)
            },
            RoomEvent::SessionEnded { reason } => {
                self.session_event(EventKind::SessionClosed, Some(reason.as_str()), now)
            }
            RoomEvent::BreakoutStarted {
                household,
                with_clinician,
                ends_at,
            } => NewEvent {
                detail: Some(json!({
                    "household": household,
                    "with_clinician": with_clinician,
                    "ends_at": ends_at,
                })),
                ..self.session_event(EventKind::BreakoutStarted, None, now)
            },
            RoomEvent::BreakoutEnded { household } => NewEvent {
                detail: Some(json!({ "household": household })),
                ..self.session_event(EventKind::BreakoutEnded, None, now)
            },
            // That the room's media is (or no longer is) end-to-end
            // encrypted: never a key.
            RoomEvent::E2ee { active: true } => {
                self.session_event(EventKind::E2eeStarted, None, now)
            }
            RoomEvent::E2ee { active: false } => {
                self.session_event(EventKind::E2eeEnded, None, now)
            }
        }
    }
}

/// Stores the removals and the end among `effects` (the roster and the
/// session row, which admission reads); the first failure stops it.
async fn persist(rooms: &Rooms, room: Uuid, effects: &[Effect]) -> Result<(), StoreError> {
    let now = Utc::now();
    for effect in effects {
        match effect {
            Effect::PersistRemoval { participant } => {
                rooms.scheduler.remove(room, participant, now).await?
            }
            Effect::PersistEnd => rooms.scheduler.end(room, now).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Closes the room's queue and tells anyone who arrived meanwhile that the
/// server restarts (they reconnect, and find the room where it is now).
fn turn_away_arrivals(messages: &mut mpsc::Receiver<RoomMessage>) {
    messages.close();
    while let Ok(message) = messages.try_recv() {
        if let RoomMessage::Arrive { handle, .. } = message {
            let _ = handle
                .out
                .send(Outgoing::Close(ServerMessage::server_restart()));
        }
    }
}

/// What the room's effects need to address its media.
#[derive(Clone, Copy)]
struct RoomMedia {
    room: Uuid,
    /// Whether its participants' links are estimated
    /// ([`crate::sfu::Joining::estimate_bandwidth`]): a group room's, where
    /// simulcast layers are chosen among many videos.
    estimate_bandwidth: bool,
}

async fn carry_out(
    rooms: &Rooms,
    media: RoomMedia,
    effect: Effect,
    conns: &mut HashMap<ConnId, ConnHandle>,
) {
    let room = media.room;
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
                        joining: Joining {
                            room,
                            participant: handle.participant.clone(),
                            events: handle.peer_events.clone(),
                            sign_of_life: handle.sign_of_life.clone(),
                            estimate_bandwidth: media.estimate_bandwidth,
                        },
                    },
                );
            }
        }
        Effect::Release { conn } => {
            if let Some(handle) = conns.remove(&conn) {
                let _ = handle.out.send(Outgoing::Release);
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
        // Stored before anything was told (`persist`).
        Effect::PersistRemoval { .. } | Effect::PersistEnd => {}
        // Ids and kinds only: never an attestation's or a note's contents.
        Effect::Record(event) => {
            let (kind, participant, conn) = logged(&event);
            tracing::info!(session = %room, kind, participant, conn, "room event");
        }
        Effect::Finished => {}
    }
}

/// What a room event may say in the log: its kind, whom and which
/// connection it is about.
fn logged(event: &RoomEvent) -> (&'static str, &str, ConnId) {
    match event {
        RoomEvent::Waiting { participant, conn } => ("waiting", participant, *conn),
        RoomEvent::Joined {
            participant, conn, ..
        } => ("joined", participant, *conn),
        RoomEvent::Attestation {
            participant, conn, ..
        } => ("attestation", participant, *conn),
        RoomEvent::Admitted {
            participant, conn, ..
        } => ("admitted", participant, *conn),
        RoomEvent::Denied {
            participant, conn, ..
        } => ("denied", participant, *conn),
        RoomEvent::Removed { participant, .. } => ("removed", participant, 0),
        RoomEvent::Replaced {
            participant, old, ..
        } => ("replaced", participant, *old),
        RoomEvent::Left {
            participant, conn, ..
        } => ("left", participant, *conn),
        RoomEvent::MediaChanged {
            participant, conn, ..
        } => ("media_changed", participant, *conn),
        RoomEvent::SessionEnded { .. } => ("session_closed", "-", 0),
        // A household id is the clinic's id, not a name; still, the log
        // needs no more than the kind.
        RoomEvent::BreakoutStarted { .. } => ("breakout_started", "-", 0),
        RoomEvent::BreakoutEnded { .. } => ("breakout_ended", "-", 0),
        RoomEvent::E2ee { active: true } => ("e2ee_started", "-", 0),
        RoomEvent::E2ee { active: false } => ("e2ee_ended", "-", 0),
    }
}

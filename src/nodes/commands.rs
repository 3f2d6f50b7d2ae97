//! REST commands for rooms held by another node: the durable command table.
//!
//! A revocation or a cancellation is stored first (the roster, the
//! session), so no later join gets in anywhere. A person already in the
//! room must also be told, by the node that holds it. When that is
//! another node, [`forward`] queues a command row and the REST call is
//! answered once the row is durable (not once it is carried out: that is
//! within about a second). The holder reads its pending commands
//! ([`run`]): woken by PostgreSQL `NOTIFY`, and every second anyway,
//! because a notification sent while nobody listens is lost. It hands each
//! to its room and marks it done under the room's lease, so a node that
//! lost the lease marks nothing and the next holder carries it out.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use uuid::Uuid;

use super::Cluster;
use crate::live::Rooms;
use crate::room::state::Input;
use crate::store::cluster::{RoomCommand, RoomCommandKind, ROOM_COMMANDS_CHANNEL};
use crate::store::StoreError;

/// How often the table is read without a notification.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Queues `kind` for `session`'s room when its room is not live on this
/// node (this node's own rooms hear of it directly); durable when this
/// returns.
pub(crate) async fn forward(
    cluster: &Cluster,
    rooms: &Rooms,
    session: Uuid,
    kind: RoomCommandKind,
    participant: Option<&str>,
) -> Result<(), StoreError> {
    if rooms.is_live(session) {
        return Ok(());
    }
    cluster
        .store
        .queue_room_command(&session.to_string(), kind, participant, Utc::now())
        .await?;
    Ok(())
}

/// Carries out this node's pending commands until the server stops.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    rooms: Arc<Rooms>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none() {
            listener = listen(&cluster.database_url).await;
        }
        let woken = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ok = woken => if !ok { listener = None },
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = async { stopped.wait_for(|stop| *stop).await.is_ok() } => return,
        }
        if let Err(error) = carry_out(&cluster, &rooms).await {
            tracing::warn!(%error, "room commands not read; trying again");
        }
    }
}

async fn listen(url: &str) -> Option<PgListener> {
    let mut listener = PgListener::connect(url).await.ok()?;
    listener.listen(ROOM_COMMANDS_CHANNEL).await.ok()?;
    Some(listener)
}

async fn carry_out(cluster: &Cluster, rooms: &Rooms) -> Result<(), StoreError> {
    for command in cluster
        .store
        .pending_room_commands(&cluster.node.id)
        .await?
    {
        let Ok(session) = command.session_id.parse::<Uuid>() else {
            continue;
        };
        let now = Utc::now();
        match cluster.lease_of(session) {
            Some(lease) if lease.may_act(now) => {
                rooms.input(session, input(&command));
                cluster
                    .store
                    .complete_room_command(command.id, &lease.lease(), now)
                    .await?;
            }
            // No room of this node holds it (it ended, or was given up):
            // nobody is connected here to tell. Done, if the row is still
            // this node's; otherwise it waits for the next holder.
            _ => {
                if let Some(row) = cluster.store.room_lease(&command.session_id).await? {
                    if row.holder == *cluster.node.id && !rooms.is_live(session) {
                        cluster
                            .store
                            .complete_room_command(command.id, &row, now)
                            .await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// What a command asks of the room.
fn input(command: &RoomCommand) -> Input {
    match command.kind {
        RoomCommandKind::Revoke | RoomCommandKind::Remove => Input::Revoked {
            participant: command.participant.clone().unwrap_or_default(),
        },
        RoomCommandKind::End | RoomCommandKind::Cancel => Input::Cancelled,
    }
}

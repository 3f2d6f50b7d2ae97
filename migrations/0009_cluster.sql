-- Several nodes on one database (issue 17; src/cluster, src/store/cluster.rs).
-- A single node on SQLite writes none of these rows: it is alone, and every
-- room is its own. The tables exist here too so that the schema is one.
-- Times are Unix milliseconds, UTC.

-- One row per node: its heartbeat (every 2 s) and the load it publishes.
CREATE TABLE cluster_nodes (
    node_id          TEXT PRIMARY KEY NOT NULL,
    public_url       TEXT NOT NULL,
    -- The media addresses its shards advertise, as a JSON list of
    -- {"udp": "IP:PORT", "tcp": "IP:PORT"}.
    media            TEXT NOT NULL,
    started_at       INTEGER NOT NULL,
    last_beat        INTEGER NOT NULL,
    draining         INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1)),
    participants     INTEGER NOT NULL DEFAULT 0,
    max_participants INTEGER NOT NULL,
    -- The busiest shard's share of time spent working, in thousandths.
    busy_permille    INTEGER NOT NULL DEFAULT 0
) STRICT;

-- One row per session that has ever been live in the cluster. Never
-- deleted: a released lease only expires, so that the next claim still
-- increments the epoch and the old holder's writes stay fenced off.
CREATE TABLE room_leases (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES sessions (id),
    node_id    TEXT NOT NULL,
    epoch      INTEGER NOT NULL CHECK (epoch > 0),
    expires_at INTEGER NOT NULL,
    claimed_at INTEGER NOT NULL
) STRICT;

CREATE INDEX room_leases_by_node ON room_leases (node_id);

-- Commands for a live room held by another node (REST revoke, cancel...):
-- durable first, then carried out by the holder, which marks them done.
CREATE TABLE room_commands (
    id             INTEGER PRIMARY KEY NOT NULL,
    session_id     TEXT NOT NULL REFERENCES sessions (id),
    kind           TEXT NOT NULL CHECK (kind IN ('revoke', 'remove', 'end', 'cancel')),
    participant_id TEXT,
    created_at     INTEGER NOT NULL,
    done_at        INTEGER,
    done_by        TEXT,
    done_epoch     INTEGER
) STRICT;

CREATE INDEX room_commands_pending ON room_commands (session_id, id) WHERE done_at IS NULL;

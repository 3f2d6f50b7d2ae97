-- Several nodes on one database (issue 17; src/cluster, src/store/cluster.rs).
-- The same tables as migrations/0009_cluster.sql (SQLite), in PostgreSQL's
-- types. Times are Unix milliseconds, UTC.

-- One row per node: its heartbeat (every 2 s) and the load it publishes.
CREATE TABLE cluster_nodes (
    node_id          TEXT PRIMARY KEY NOT NULL,
    public_url       TEXT NOT NULL,
    media            TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    last_beat        BIGINT NOT NULL,
    draining         BIGINT NOT NULL DEFAULT 0 CHECK (draining IN (0, 1)),
    participants     BIGINT NOT NULL DEFAULT 0,
    max_participants BIGINT NOT NULL,
    busy_permille    BIGINT NOT NULL DEFAULT 0
);

-- Never deleted: a released lease only expires (fencing needs the epoch).
CREATE TABLE room_leases (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES sessions (id),
    node_id    TEXT NOT NULL,
    epoch      BIGINT NOT NULL CHECK (epoch > 0),
    expires_at BIGINT NOT NULL,
    claimed_at BIGINT NOT NULL
);

CREATE INDEX room_leases_by_node ON room_leases (node_id);

-- Commands for a live room held by another node.
CREATE TABLE room_commands (
    id             BIGSERIAL PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES sessions (id),
    kind           TEXT NOT NULL CHECK (kind IN ('revoke', 'remove', 'end', 'cancel')),
    participant_id TEXT,
    created_at     BIGINT NOT NULL,
    done_at        BIGINT,
    done_by        TEXT,
    done_epoch     BIGINT
);

CREATE INDEX room_commands_pending ON room_commands (session_id, id) WHERE done_at IS NULL;

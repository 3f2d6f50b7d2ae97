-- The attendance ledger: append-only, hash-chained (src/attendance/event.rs).
CREATE TABLE attendance_events (
    seq            INTEGER PRIMARY KEY NOT NULL,
    at             INTEGER NOT NULL,
    session_id     TEXT NOT NULL,
    participant_id TEXT,
    role           TEXT,
    connection_id  TEXT,
    kind           TEXT NOT NULL,
    reason         TEXT,
    modality       TEXT,
    detail         TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
) STRICT;

CREATE INDEX attendance_by_session ON attendance_events (session_id, seq);
CREATE INDEX attendance_by_connection ON attendance_events (connection_id, seq);

-- Tandem never updates or deletes an event; neither may anything else that
-- goes through SQLite without first dropping these (which verify detects).
CREATE TRIGGER attendance_events_no_update BEFORE UPDATE ON attendance_events
BEGIN SELECT RAISE(ABORT, 'attendance events are append-only'); END;
CREATE TRIGGER attendance_events_no_delete BEFORE DELETE ON attendance_events
BEGIN SELECT RAISE(ABORT, 'attendance events are append-only'); END;

-- The last durable sign of life of each connection with open presence.
CREATE TABLE presence_heartbeats (
    connection_id TEXT PRIMARY KEY NOT NULL,
    at            INTEGER NOT NULL
) STRICT;

-- Every read of attendance data: who, when, what, how many rows, which file.
CREATE TABLE export_audit (
    id      INTEGER PRIMARY KEY NOT NULL,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    what    TEXT NOT NULL,
    filter  TEXT NOT NULL,
    format  TEXT NOT NULL,
    rows    INTEGER NOT NULL,
    sha256  TEXT NOT NULL
) STRICT;

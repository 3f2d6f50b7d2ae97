-- PostgreSQL twin of migrations/0004: people, availability, series.

CREATE TABLE people (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('patient', 'partner', 'observer', 'clinician')),
    timezone      TEXT NOT NULL,
    household     TEXT,
    mrn           TEXT,
    -- The availability document (JSON, docs/api.md); NULL: none on file.
    availability  TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE series (
    id               TEXT PRIMARY KEY NOT NULL,
    title            TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('couple', 'group', 'individual')),
    timezone         TEXT NOT NULL,
    rrule            TEXT NOT NULL,
    -- Local wall-clock time in `timezone`, as the clinic gave it.
    first_starts_at  TEXT NOT NULL,
    duration_minutes BIGINT NOT NULL CHECK (duration_minutes > 0),
    created_at       BIGINT NOT NULL,
    cancelled_at     BIGINT
);

ALTER TABLE sessions ADD COLUMN series_id TEXT REFERENCES series (id);
-- 1 when the clinic placed the session over another one on purpose.
ALTER TABLE sessions ADD COLUMN allow_overlap BIGINT NOT NULL DEFAULT 0;
-- When the session was last moved.
ALTER TABLE sessions ADD COLUMN moved_at BIGINT;

CREATE INDEX sessions_by_series ON sessions (series_id, starts_at);
CREATE INDEX roster_by_participant ON roster (participant_id, session_id);

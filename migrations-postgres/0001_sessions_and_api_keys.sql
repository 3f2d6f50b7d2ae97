-- PostgreSQL twin of migrations/0001 (same tables, columns and
-- constraints). Times are Unix milliseconds, UTC, in BIGINT.

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    title         TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('couple', 'group', 'individual')),
    starts_at     BIGINT NOT NULL,
    ends_at       BIGINT NOT NULL CHECK (ends_at > starts_at),
    timezone      TEXT NOT NULL,
    settings      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    cancelled_at  BIGINT
);

CREATE INDEX sessions_by_time ON sessions (starts_at, ends_at);

CREATE TABLE roster (
    session_id     TEXT NOT NULL REFERENCES sessions (id),
    participant_id TEXT NOT NULL,
    position       BIGINT NOT NULL,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('patient', 'partner', 'observer', 'clinician')),
    household      TEXT,
    mrn            TEXT,
    revoked_at     BIGINT,
    PRIMARY KEY (session_id, participant_id)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    label       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'scheduler', 'compliance')),
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

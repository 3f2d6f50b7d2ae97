-- API keys may have the `metrics` role: a key for Prometheus that can read
-- GET /metrics and nothing else. SQLite cannot change a CHECK constraint,
-- so the table is rebuilt with the same rows.
CREATE TABLE api_keys_new (
    id          TEXT PRIMARY KEY NOT NULL,
    label       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'scheduler', 'compliance', 'metrics')),
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
INSERT INTO api_keys_new (id, label, role, key_hash, created_at, revoked_at)
    SELECT id, label, role, key_hash, created_at, revoked_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;

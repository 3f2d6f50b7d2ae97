-- Webhooks (docs/webhooks.md): the clinic's receivers, the durable outbox
-- of events, and one delivery per (receiver, event).
--
-- An event row is written in the same transaction as the fact it reports
-- (a ledger batch, a session's scheduling), together with one pending
-- delivery for each endpoint subscribed at that moment; the delivery
-- worker reads the deliveries. Portable SQL: no SQLite-only syntax.

CREATE TABLE webhook_endpoints (
    id            TEXT PRIMARY KEY NOT NULL,
    url           TEXT NOT NULL,
    description   TEXT NOT NULL,
    -- The subscribed event types as a JSON array of strings.
    events        TEXT NOT NULL,
    -- `whsec_` + base64 key: needed to sign, so stored as is (like the
    -- invite signing key, the database file is owner-only).
    secret        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- Set when a delivery ran out of retries; cleared by the next success.
    failing_since INTEGER
);

CREATE TABLE webhook_events (
    -- Outbox order: per session, events are delivered in this order.
    position   INTEGER PRIMARY KEY NOT NULL,
    -- The `webhook-id` of every delivery of this event (deduplication).
    id         TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    session_id TEXT,
    at         INTEGER NOT NULL,
    -- The JSON body; NULL until computed for `attendance.finalized`, whose
    -- figures are read from the (closed, unchangeable) ledger.
    payload    TEXT
);

CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event       INTEGER NOT NULL REFERENCES webhook_events (position),
    -- pending | delivered | failed
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    next_try_at INTEGER,
    last_error  TEXT,
    last_status INTEGER,
    created_at  INTEGER NOT NULL,
    delivered_at INTEGER
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_try_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
-- The first pending delivery of an endpoint and session (delivery order).
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, status, event);
CREATE INDEX webhook_events_by_session ON webhook_events (session_id, position);

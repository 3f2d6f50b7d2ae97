-- Several nodes on one database (issue 17), the same on both engines
-- (migrations-postgres/0008 is its twin):
--
-- A webhook delivery is claimed by the node that sends it, until a time
-- after which another node may (the first one died mid-attempt).
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until INTEGER;

-- The console's failed sign-ins, shared by every node so that a lock-out
-- holds whichever node the next attempt reaches. `kind` is `account` (the
-- email typed) or `address` (the client's IP address).
CREATE TABLE signin_failures (
    kind    TEXT NOT NULL CHECK (kind IN ('account', 'address')),
    subject TEXT NOT NULL,
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX signin_failures_by_subject ON signin_failures (kind, subject, at);

CREATE TABLE signin_lockouts (
    kind     TEXT NOT NULL CHECK (kind IN ('account', 'address')),
    subject  TEXT NOT NULL,
    until_at INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
) STRICT;

-- Failed console sign-ins and the lock-outs they lead to (src/console/throttle.rs,
-- src/store/sign_in.rs), kept in the database so that every node of a
-- cluster counts the same failures: an attacker gets five tries per account,
-- not five per node. Subjects are `account:<email>` or `address:<ip>`.
-- Times are Unix milliseconds, UTC.

-- One row per failure; counted over the last 15 minutes, then forgotten.
CREATE TABLE sign_in_failures (
    subject TEXT NOT NULL,
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX sign_in_failures_by_subject ON sign_in_failures (subject, at);
CREATE INDEX sign_in_failures_by_time ON sign_in_failures (at);

-- A subject locked out until `locked_until`.
CREATE TABLE sign_in_lockouts (
    subject      TEXT PRIMARY KEY NOT NULL,
    locked_until INTEGER NOT NULL
) STRICT;

-- PostgreSQL twin of migrations/0005 (the same text: it was written portable).
-- The staff console (issue 15): staff accounts, their one-time links,
-- console sessions (cookies) and the sign-in audit. Portable SQL (SQLite
-- and PostgreSQL): times are milliseconds since the epoch in BIGINT, ids
-- are text.

CREATE TABLE staff_accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- comma-separated: admin, scheduler, clinician, compliance
    roles TEXT NOT NULL,
    roster_id TEXT,
    password_hash TEXT,
    totp_secret TEXT,
    totp_last_step BIGINT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

-- One-time links: set-up (set a password, get the TOTP secret) and, for
-- the demo only, sign-in. Stored by SHA-256 of the secret.
CREATE TABLE staff_links (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES staff_accounts (id),
    purpose TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- Console sessions, stored by SHA-256 of the cookie.
CREATE TABLE console_sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES staff_accounts (id),
    csrf_token TEXT NOT NULL,
    stage TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    ended_at BIGINT
);

CREATE INDEX console_sessions_account ON console_sessions (account_id);

-- Every sign-in, sign-out, logoff and failure. `email` is what was typed
-- (an unknown email is recorded too); never a password or a code.
CREATE TABLE staff_signin_audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    account_id TEXT,
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    event TEXT NOT NULL
);

CREATE INDEX staff_signin_audit_at ON staff_signin_audit (at);

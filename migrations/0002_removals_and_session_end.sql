-- A clinician's removal bans a participant for the rest of the session, and
-- a clinician's end closes the session for good: both survive a restart.
ALTER TABLE roster ADD COLUMN removed_at INTEGER;
ALTER TABLE sessions ADD COLUMN ended_at INTEGER;

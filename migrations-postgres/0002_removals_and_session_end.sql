-- PostgreSQL twin of migrations/0002.
ALTER TABLE roster ADD COLUMN removed_at BIGINT;
ALTER TABLE sessions ADD COLUMN ended_at BIGINT;

-- PostgreSQL twin of migrations/0007: API keys may have the `metrics`
-- role. PostgreSQL changes the CHECK constraint in place.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('admin', 'scheduler', 'compliance', 'metrics'));

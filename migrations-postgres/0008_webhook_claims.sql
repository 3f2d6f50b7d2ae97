-- Several nodes on one database (issue 17), the same on both engines
-- (the twin of migrations/0008):
--
-- A webhook delivery is claimed by the node that sends it, until a time
-- after which another node may (the first one died mid-attempt).
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until BIGINT;


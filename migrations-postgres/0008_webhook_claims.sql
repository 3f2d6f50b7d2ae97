-- Several nodes on one database (issue 17), the same on both engines
-- (the twin of migrations/0008):
--
-- A webhook delivery is claimed by the node that sends it, until a time
-- after which another node may (the first one died mid-attempt). The
-- claimant's node id lets a node that restarts take back at once what it
-- held when it stopped, instead of waiting for its own claims to run out.
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until BIGINT;

ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;

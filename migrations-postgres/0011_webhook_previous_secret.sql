-- A rotated webhook secret keeps signing next to the new one for a while
-- (POST /v1/webhooks/{id}/rotate_secret, docs/webhooks.md), so that a
-- receiver can be given the new secret without refusing deliveries in
-- between: each delivery then carries both signatures, as the Standard
-- Webhooks specification allows. Times are Unix milliseconds, UTC.
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_until BIGINT;

-- Claims with leases: a row is claimed (claimed_by, lease_until_ms) before it is sent,
-- so two senders never send the same row, and a sender that died mid-send is known.
-- `ambiguous` counts sends whose outcome is unknown (timed out after the request went
-- out, or cut by a crash or the shutdown deadline).
ALTER TABLE notification_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE notification_outbox ADD COLUMN lease_until_ms BIGINT;
ALTER TABLE notification_outbox ADD COLUMN ambiguous BIGINT NOT NULL DEFAULT 0;

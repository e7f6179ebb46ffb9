-- Several writers (nodes) on one alerts table: `version` goes up with every full write
-- of a row, and a full write applies only over the version its writer read, so a node
-- never overwrites a state (resolve, re-fire, ack, silence) it has not seen. Counts
-- are written as increments, never as totals.
ALTER TABLE alerts ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
-- Receipt-journal segments whose increments are in the database: a segment replayed
-- after a crash is applied only if it is not listed here (increments are not idempotent).
CREATE TABLE IF NOT EXISTS journal_applied (
    segment TEXT   PRIMARY KEY,
    at_ms   BIGINT NOT NULL
);
-- The node whose transaction appended a feed row (a node skips its own when it
-- follows the feed).
ALTER TABLE alert_changes ADD COLUMN node TEXT;

-- The alert change feed (several nodes): every committed change of an alert, written
-- in the transaction that made it. Writers take a transaction-level advisory lock
-- before appending, so `seq` order is commit order; the leader's dispatcher reads
-- `seq > cursor` (woken by NOTIFY watchpost_alert_changes, polled as a fallback).
CREATE TABLE IF NOT EXISTS alert_changes (
    seq      BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    at_ms    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_changes_at ON alert_changes (at_ms);

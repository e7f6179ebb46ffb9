-- Heartbeats (dead man's switches): a job pings at least every `period_ms`; past the
-- due time plus `grace_ms` it is down and HeartbeatMissing fires. The due time is
-- stored, so a restart keeps it.
CREATE TABLE IF NOT EXISTS heartbeats (
    name             TEXT   PRIMARY KEY,
    ping_key         TEXT   NOT NULL UNIQUE,
    period_ms        BIGINT NOT NULL,
    grace_ms         BIGINT NOT NULL,
    severity         TEXT   NOT NULL,
    labels           TEXT   NOT NULL,
    configured       BIGINT NOT NULL,
    status           TEXT   NOT NULL,
    created_ms       BIGINT NOT NULL,
    last_ping_ms     BIGINT,
    last_start_ms    BIGINT,
    last_duration_ms BIGINT,
    next_due_ms      BIGINT,
    changed_ms       BIGINT NOT NULL
);

-- Alerts keyed by fingerprint (source + sorted labels), their event log, and silences.
-- Timestamps are Unix milliseconds; labels, annotations and details are JSON text.
CREATE TABLE IF NOT EXISTS alerts (
    id            BIGSERIAL PRIMARY KEY,
    fingerprint   TEXT    NOT NULL UNIQUE,
    source        TEXT    NOT NULL,
    alertname     TEXT,
    message       TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    risk_score    BIGINT  NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL,
    silenced_by   TEXT    NOT NULL DEFAULT '[]',
    inhibited_by  TEXT,
    labels        TEXT    NOT NULL DEFAULT '{}',
    annotations   TEXT    NOT NULL DEFAULT '{}',
    generator_url TEXT,
    starts_at_ms  BIGINT  NOT NULL,
    ends_at_ms    BIGINT,
    first_seen_ms BIGINT  NOT NULL,
    last_seen_ms  BIGINT  NOT NULL,
    count         BIGINT  NOT NULL DEFAULT 1,
    recent_rate   DOUBLE PRECISION NOT NULL DEFAULT 0,
    ack_by        TEXT,
    ack_at_ms     BIGINT,
    ack_comment   TEXT
);
CREATE INDEX IF NOT EXISTS alerts_starts_at ON alerts (starts_at_ms);
CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts (last_seen_ms);
CREATE INDEX IF NOT EXISTS alerts_state_ends ON alerts (state, ends_at_ms);
CREATE INDEX IF NOT EXISTS alerts_severity ON alerts (severity, id);
CREATE INDEX IF NOT EXISTS alerts_source ON alerts (source, id);

CREATE TABLE IF NOT EXISTS alert_events (
    id       BIGSERIAL PRIMARY KEY,
    alert_id BIGINT  NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    kind     TEXT    NOT NULL,
    at_ms    BIGINT  NOT NULL,
    detail   TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id, id);
CREATE INDEX IF NOT EXISTS alert_events_at ON alert_events (at_ms);

CREATE TABLE IF NOT EXISTS silences (
    id           TEXT    PRIMARY KEY,
    matchers     TEXT    NOT NULL,
    starts_at_ms BIGINT  NOT NULL,
    ends_at_ms   BIGINT  NOT NULL,
    created_by   TEXT    NOT NULL,
    comment      TEXT    NOT NULL DEFAULT '',
    updated_ms   BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS silences_ends ON silences (ends_at_ms);

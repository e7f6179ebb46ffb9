-- Notification outbox: every notification is written here before it is sent; the
-- sender drains pending rows. One row per message (chat and part) or webhook call.
CREATE TABLE IF NOT EXISTS notification_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    receiver        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    part            BIGINT  NOT NULL DEFAULT 1,
    parts           BIGINT  NOT NULL DEFAULT 1,
    payload         TEXT    NOT NULL,
    alert_ids       TEXT    NOT NULL DEFAULT '[]',
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        BIGINT  NOT NULL DEFAULT 0,
    created_ms      BIGINT  NOT NULL,
    next_attempt_ms BIGINT  NOT NULL,
    updated_ms      BIGINT  NOT NULL,
    delivered_ms    BIGINT,
    last_error      TEXT,
    response        TEXT
);
CREATE INDEX IF NOT EXISTS notification_outbox_state_target ON notification_outbox (state, target, id);
CREATE INDEX IF NOT EXISTS notification_outbox_receiver ON notification_outbox (receiver, id);
CREATE INDEX IF NOT EXISTS notification_outbox_updated ON notification_outbox (updated_ms);

-- What each receiver was last told about each aggregation group (Alertmanager's
-- notification log), so that a restart does not notify again.
CREATE TABLE IF NOT EXISTS notification_log (
    group_key  TEXT   NOT NULL,
    receiver   TEXT   NOT NULL,
    entry      TEXT   NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (group_key, receiver)
);

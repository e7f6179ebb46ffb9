-- The alert change feed of a cluster (PostgreSQL only; with SQLite one process owns
-- the file and changes go to its dispatcher in memory). Kept for the same schema.
CREATE TABLE IF NOT EXISTS alert_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    at_ms    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_changes_at ON alert_changes (at_ms);

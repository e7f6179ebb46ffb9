-- Cluster membership: one row per node (`watchpost serve` process), its heartbeat
-- refreshed every cluster.heartbeat_interval (PostgreSQL: the database's clock).
CREATE TABLE IF NOT EXISTS cluster_nodes (
    id           TEXT   PRIMARY KEY,
    address      TEXT   NOT NULL,
    version      TEXT   NOT NULL,
    started_ms   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    backend_pid  BIGINT
);
-- The leadership term: one row. `epoch` is the fencing token, incremented at every
-- takeover; claims of outbox rows carry it and fail once it has moved on.
CREATE TABLE IF NOT EXISTS cluster_leader (
    id       INTEGER PRIMARY KEY,
    epoch    BIGINT  NOT NULL,
    node_id  TEXT,
    since_ms BIGINT  NOT NULL
);
INSERT INTO cluster_leader (id, epoch, node_id, since_ms) VALUES (1, 0, NULL, 0)
    ON CONFLICT (id) DO NOTHING;
-- The epoch under which a row was claimed: a claim from an earlier term is stale.
ALTER TABLE notification_outbox ADD COLUMN claim_epoch BIGINT;

-- Agents (`watchpost agent` on other hosts). `node`, `session` (the agent process) and
-- `connection` (one WebSocket) name what holds the agent (NULL when disconnected); the holder refreshes `last_seen_ms` every
-- few seconds, so an agent whose node died goes stale too. `down` is set when
-- AgentDown fires (disconnected longer than agents.grace) and cleared on reconnect:
-- conditional updates make exactly one node raise or resolve it.
CREATE TABLE IF NOT EXISTS agents (
    name               TEXT   PRIMARY KEY,
    host               TEXT   NOT NULL,
    version            TEXT   NOT NULL,
    address            TEXT   NOT NULL,
    node               TEXT,
    session            TEXT,
    connection         TEXT,
    connected_since_ms BIGINT,
    last_seen_ms       BIGINT NOT NULL,
    samples_received   BIGINT NOT NULL,
    down               BIGINT NOT NULL,
    created_ms         BIGINT NOT NULL
);

-- Live GraphQL WebSocket connections, per web session and node (web-session API).
CREATE TABLE ws_connections (
    conn_id     TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES web_sessions (session_id) ON DELETE CASCADE,
    node        TEXT NOT NULL,
    pid         TEXT NOT NULL,
    opened_at   INTEGER NOT NULL
);
CREATE INDEX ws_connections_session ON ws_connections (session_id);

-- Node heartbeats: a connection's node is alive while its heartbeat is recent.
CREATE TABLE nodes (
    node        TEXT PRIMARY KEY,
    site        TEXT NOT NULL,
    heartbeat   INTEGER NOT NULL
);

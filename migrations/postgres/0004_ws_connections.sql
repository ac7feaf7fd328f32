-- Live GraphQL WebSocket connections, per web session and node (web-session API).
CREATE TABLE ws_connections (
    conn_id     uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES web_sessions (session_id) ON DELETE CASCADE,
    node        text NOT NULL,
    pid         text NOT NULL,
    opened_at   timestamp with time zone NOT NULL
);
CREATE INDEX ws_connections_session ON ws_connections (session_id);

-- Node heartbeats: a connection's node is alive while its heartbeat is recent.
CREATE TABLE nodes (
    node        text PRIMARY KEY,
    site        text NOT NULL,
    heartbeat   timestamp with time zone NOT NULL
);

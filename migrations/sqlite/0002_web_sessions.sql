-- One row per Login: the token (only its SHA-256 hash), the console session of SPEC §7 and the
-- web session of SPEC §6 share it.
CREATE TABLE web_sessions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- browserSessionId
    session_id      TEXT NOT NULL UNIQUE,               -- sessionId / session_id (UUID)
    token_hash      TEXT NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    domain          TEXT NOT NULL,
    site            TEXT NOT NULL,
    node            TEXT NOT NULL,
    console_type    INTEGER NOT NULL,
    host            TEXT NOT NULL,
    login_time      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    logout_time     INTEGER
);
CREATE INDEX web_sessions_user ON web_sessions (user_id, login_time);
CREATE INDEX web_sessions_open ON web_sessions (site, expires_at) WHERE logout_time IS NULL;

-- Failed logins by source address (SPEC §5: the 11th within a minute gets 429), kept in the
-- database so that every node counts every node's failures. `at` is UNIX seconds. Each new
-- failure deletes the rows that have left the one-minute window, so the table holds about a
-- minute of failures.
CREATE TABLE login_failures (
    ip  text NOT NULL,
    at  bigint NOT NULL
);
CREATE INDEX login_failures_ip ON login_failures (ip, at);
CREATE INDEX login_failures_at ON login_failures (at);

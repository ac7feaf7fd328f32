-- radacct keeps FreeRADIUS 3.x's column names and meanings. As in FreeRADIUS's own SQLite
-- queries, times are UNIX seconds (INTEGER).
CREATE TABLE radacct (
    radacctid           INTEGER PRIMARY KEY AUTOINCREMENT,
    acctsessionid       TEXT NOT NULL,
    acctuniqueid        TEXT NOT NULL UNIQUE,
    username            TEXT,
    realm               TEXT,
    nasipaddress        TEXT NOT NULL,
    nasportid           TEXT,
    nasporttype         TEXT,
    acctstarttime       INTEGER,
    acctupdatetime      INTEGER,
    acctstoptime        INTEGER,
    acctinterval        INTEGER,
    acctsessiontime     INTEGER,
    acctauthentic       TEXT,
    connectinfo_start   TEXT,
    connectinfo_stop    TEXT,
    acctinputoctets     INTEGER,
    acctoutputoctets    INTEGER,
    calledstationid     TEXT,
    callingstationid    TEXT,
    acctterminatecause  TEXT,
    servicetype         TEXT,
    framedprotocol      TEXT,
    framedipaddress     TEXT,
    framedipv6address   TEXT,
    framedipv6prefix    TEXT,
    framedinterfaceid   TEXT,
    delegatedipv6prefix TEXT,
    class               TEXT,
    -- radacctd's own: Acct-Interim-Interval when the NAS sends it (stale-session reaper).
    acctinteriminterval INTEGER
);

-- Open sessions of a user (getOnlineSessions), oldest first.
CREATE INDEX radacct_open_user ON radacct (username, acctstarttime) WHERE acctstoptime IS NULL;
-- Accounting-On/Off bulk close.
CREATE INDEX radacct_bulk_close ON radacct (nasipaddress, acctstarttime) WHERE acctstoptime IS NULL;
-- Who had this IPv4 address at that moment.
CREATE INDEX radacct_framed_ip ON radacct (framedipaddress, acctstarttime) WHERE framedipaddress IS NOT NULL;
-- The archiver's scan of closed sessions.
CREATE INDEX radacct_closed ON radacct (acctstoptime) WHERE acctstoptime IS NOT NULL;

-- Closed sessions moved out of radacct by the archiver (same columns).
CREATE TABLE radacct_history (
    radacctid           INTEGER PRIMARY KEY,
    acctsessionid       TEXT NOT NULL,
    acctuniqueid        TEXT NOT NULL,
    username            TEXT,
    realm               TEXT,
    nasipaddress        TEXT NOT NULL,
    nasportid           TEXT,
    nasporttype         TEXT,
    acctstarttime       INTEGER,
    acctupdatetime      INTEGER,
    acctstoptime        INTEGER,
    acctinterval        INTEGER,
    acctsessiontime     INTEGER,
    acctauthentic       TEXT,
    connectinfo_start   TEXT,
    connectinfo_stop    TEXT,
    acctinputoctets     INTEGER,
    acctoutputoctets    INTEGER,
    calledstationid     TEXT,
    callingstationid    TEXT,
    acctterminatecause  TEXT,
    servicetype         TEXT,
    framedprotocol      TEXT,
    framedipaddress     TEXT,
    framedipv6address   TEXT,
    framedipv6prefix    TEXT,
    framedinterfaceid   TEXT,
    delegatedipv6prefix TEXT,
    class               TEXT,
    acctinteriminterval INTEGER
);
CREATE UNIQUE INDEX radacct_history_uid ON radacct_history (acctuniqueid);
CREATE INDEX radacct_history_user ON radacct_history (username, acctstarttime);
CREATE INDEX radacct_history_framed_ip ON radacct_history (framedipaddress, acctstarttime) WHERE framedipaddress IS NOT NULL;
CREATE INDEX radacct_history_start ON radacct_history (acctstarttime);

-- Both tables, for reporting tools written against radacct.
CREATE VIEW radacct_all AS
    SELECT * FROM radacct
    UNION ALL
    SELECT * FROM radacct_history;

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid            TEXT NOT NULL UNIQUE,
    login           TEXT NOT NULL,
    domain          TEXT NOT NULL,
    password_hash   TEXT,
    role            TEXT NOT NULL DEFAULT 'subscriber' CHECK (role IN ('admin', 'operator', 'subscriber')),
    created_at      INTEGER NOT NULL DEFAULT (unixepoch()),
    UNIQUE (domain, login)
);

-- FreeRADIUS's nas table, plus the CoA port for Disconnect-Requests.
CREATE TABLE nas (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    nasname     TEXT NOT NULL UNIQUE,
    shortname   TEXT NOT NULL,
    type        TEXT NOT NULL DEFAULT 'other',
    ports       INTEGER,
    secret      TEXT NOT NULL,
    server      TEXT,
    community   TEXT,
    description TEXT,
    coa_port    INTEGER NOT NULL DEFAULT 3799
);

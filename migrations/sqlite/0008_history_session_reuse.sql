-- A NAS may use an Acct-Session-Id again (counters that restart after a reboot), so that a new
-- session gets the acctuniqueid of one archived months ago. Both belong in the history, as they
-- are on PostgreSQL (whose partitioned radacct_history has no unique acctuniqueid): before this,
-- archiving the new session overwrote the old one. One row per acctuniqueid and start time.
DROP INDEX radacct_history_uid;
CREATE UNIQUE INDEX radacct_history_uid ON radacct_history (acctuniqueid, acctstarttime);

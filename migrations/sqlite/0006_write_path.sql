-- radacct_user_start (username, acctstarttime) answers getOnlineSessions as well: a user has a
-- handful of sessions in radacct (closed ones move to history), so the open-only copy of that
-- index only cost every Start an index insert.
DROP INDEX radacct_open_user;

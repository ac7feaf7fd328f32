-- Leave room in each page so an Interim-Update, which changes no indexed column, is a HOT update
-- (no new entry in any of radacct's indexes). New pages only; existing ones fill as before.
ALTER TABLE radacct SET (fillfactor = 85);
-- radacct_user_start (username, acctstarttime) answers getOnlineSessions as well: a user has a
-- handful of sessions in radacct (closed ones move to history), so the open-only copy of that
-- index only cost every Start an index insert.
DROP INDEX radacct_open_user;

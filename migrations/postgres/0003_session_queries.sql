-- All open sessions in start order (onlineSessions and its cursor pagination).
CREATE INDEX radacct_open_start ON radacct (acctstarttime, radacctid) WHERE acctstoptime IS NULL;
-- A user's sessions by start time, open or closed (sessionHistory).
CREATE INDEX radacct_user_start ON radacct (username, acctstarttime);

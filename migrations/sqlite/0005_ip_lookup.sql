-- Who had this IPv6 address or prefix at that moment (prefixes are stored as network/length,
-- host bits cleared, so an address is looked up by its enclosing networks).
CREATE INDEX radacct_framed_ip6 ON radacct (framedipv6address, acctstarttime) WHERE framedipv6address IS NOT NULL;
CREATE INDEX radacct_framed_prefix6 ON radacct (framedipv6prefix, acctstarttime) WHERE framedipv6prefix IS NOT NULL;
CREATE INDEX radacct_delegated_prefix6 ON radacct (delegatedipv6prefix, acctstarttime) WHERE delegatedipv6prefix IS NOT NULL;
CREATE INDEX radacct_history_framed_ip6 ON radacct_history (framedipv6address, acctstarttime) WHERE framedipv6address IS NOT NULL;
CREATE INDEX radacct_history_framed_prefix6 ON radacct_history (framedipv6prefix, acctstarttime) WHERE framedipv6prefix IS NOT NULL;
CREATE INDEX radacct_history_delegated_prefix6 ON radacct_history (delegatedipv6prefix, acctstarttime) WHERE delegatedipv6prefix IS NOT NULL;
-- Retention of history by stop time.
CREATE INDEX radacct_history_stop ON radacct_history (acctstoptime);

//! PostgreSQL backend: every SQL statement radacctd runs on PostgreSQL. Commits are durable
//! (`synchronous_commit` is left on). Several nodes may share the database: the accounting
//! statements are idempotent per event and the reaper takes an advisory lock so only one node
//! reaps at a time.
//!
//! The accounting ladder follows FreeRADIUS 3.2's stock `queries.conf`, applied set-wise per
//! stage (see [`super::plan`]): every statement reads the stage's events from one JSON array.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::events::{Change, EventBus, LiveConnections, PG_CHANNEL, PG_LOGOUT_CHANNEL};
use sqlx::{PgPool, Row};

use super::sessions::{enclosing_prefixes, session_row, After, OnlineFilter, SessionRow};
use super::users::{
    user_row, web_session_row, NewWebSession, UserRow, WebSessionRow, WsConnectionRow,
};
use super::{
    events_json, new_users_json, Archived, NasRow, Plan, Result, Stage, Step, StoreError,
    PG_PIPELINE_DEPTH,
};

const POOL_SIZE: u32 = 8;
/// Sessions closed per reaper statement.
const REAP_CHUNK: i64 = 5_000;
/// Advisory lock key held by the node that reaps stale sessions ("radacctd" reaper).
const REAPER_LOCK: i64 = 0x7261_6461_6363_7401;
/// Advisory lock key held by the node that refreshes planner statistics.
const STATISTICS_LOCK: i64 = 0x7261_6461_6363_7403;
/// How often the statistics keeper looks at the tables.
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(15);
/// Tables the write path's plans depend on.
const ANALYZED_TABLES: [&str; 2] = ["radacct", "users"];
/// A table is analyzed once more rows than this share of it (plus [`ANALYZE_MIN_ROWS`]) changed
/// since its last ANALYZE: autovacuum's default rule.
const ANALYZE_SHARE: f64 = 0.1;
const ANALYZE_MIN_ROWS: i64 = 1_000;
/// Advisory lock key held (per connection) by the node that vacuums.
const VACUUM_LOCK: i64 = 0x7261_6461_6363_7404;
/// Tables that gather dead rows: Interim-Updates and Stops leave old row versions in `radacct`,
/// the archiver and Accounting-On delete or rewrite thousands at a time, and the others take
/// an update per login, heartbeat or logout; failed logins are inserted and deleted a minute
/// later.
const VACUUMED_TABLES: [&str; 5] = [
    "radacct",
    "users",
    "nodes",
    "web_sessions",
    "login_failures",
];
/// A table is vacuumed once it has more dead rows, or rows inserted since its last VACUUM, than
/// this share of its live ones (plus [`VACUUM_MIN_ROWS`]): autovacuum's default rules. The
/// second keeps the visibility map current, which index-only scans need.
const VACUUM_SHARE: f64 = 0.2;
const VACUUM_MIN_ROWS: i64 = 1_000;
/// How fast radacctd's own VACUUM goes: autovacuum's default throttle, so that it takes the
/// disk in short turns and ingest does not queue behind it.
const VACUUM_COST_DELAY: &str = "2ms";

#[derive(Debug, Clone)]
pub struct PgStore {
    /// API queries, the reaper, the archiver, web sessions.
    pub(crate) pool: PgPool,
    /// The writer's own connections (one per batch in flight), so accounting never queues
    /// for a connection behind API requests.
    writer: PgPool,
}

/// The stage's events as rows: `e(t, uid, ...)`.
macro_rules! events {
    () => {
        "WITH e AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(t bigint, uid text, sid text, \
         username text, nas inet, port_id text, port_type text, authentic text, connect_info text, \
         called text, calling text, service text, protocol text, ip inet, ip6 inet, prefix6 inet, \
         ifid text, delegated6 inet, class text, session_time bigint, input_octets bigint, \
         output_octets bigint, cause text, interim_interval bigint)) "
    };
}

macro_rules! columns {
    () => {
        "(acctsessionid, acctuniqueid, username, realm, nasipaddress, nasportid, nasporttype, \
         acctstarttime, acctupdatetime, acctstoptime, acctsessiontime, acctauthentic, \
         connectinfo_start, connectinfo_stop, acctinputoctets, acctoutputoctets, calledstationid, \
         callingstationid, acctterminatecause, servicetype, framedprotocol, framedipaddress, \
         framedipv6address, framedipv6prefix, framedinterfaceid, delegatedipv6prefix, class, \
         acctinteriminterval) "
    };
}

const START: &str = concat!(
    events!(),
    "INSERT INTO radacct ",
    columns!(),
    "SELECT sid, uid, username, NULL, nas, port_id, port_type, to_timestamp(t), to_timestamp(t), \
     NULL, 0, authentic, connect_info, NULL, 0, 0, called, calling, NULL, service, protocol, ip, \
     ip6, prefix6, ifid, delegated6, class, interim_interval FROM e \
     WHERE (to_timestamp(e.t) > (SELECT max(acctstoptime) FROM radacct_history) \
       OR NOT EXISTS (SELECT 1 FROM radacct_history h WHERE h.acctuniqueid = e.uid \
       AND h.acctstarttime = to_timestamp(e.t) OFFSET 0)) \
     ON CONFLICT (acctuniqueid) DO UPDATE SET acctstarttime = EXCLUDED.acctstarttime, \
     acctupdatetime = EXCLUDED.acctupdatetime, connectinfo_start = EXCLUDED.connectinfo_start"
);

// `START` inserts nothing for a repeated Start of an archived session (`START_ARCHIVED` takes it).
// Only a Start no later than the newest stop in the history can be one (a session stops after it
// starts), so any other Start skips the probe of `radacct_history` (`max` is one descent of each
// partition's stop index, once per statement): with years of history, that probe by a random
// `acctuniqueid` would read a cold index page for every Start.
//
// A repeated Start (same session, same event time) of a session already archived: rewrites what
// a duplicate Start rewrites, in `radacct_history`, instead of re-opening the session in
// `radacct`. The start time picks the monthly partition, so each event probes one partition's
// index (the `OFFSET 0` in `START` keeps that a probe per event, never a hash of the history).
const START_ARCHIVED: &str = concat!(
    events!(),
    "UPDATE radacct_history h SET acctstarttime = to_timestamp(e.t), \
     acctupdatetime = to_timestamp(e.t), connectinfo_start = e.connect_info FROM e \
     WHERE h.acctuniqueid = e.uid AND h.acctstarttime = to_timestamp(e.t)"
);

// The updates name their rows twice: joined to `e`, and as `acctuniqueid = ANY(ARRAY(...))`.
// The planner cannot estimate `jsonb_to_recordset` (it assumes 100 rows), and with the join alone
// it hashes the batch and scans every open session (8-14 ms at 20,000 open sessions); the array
// turns that into one unique-index probe per event (under 1.5 ms). An Interim-Update's "still
// open" is written `(acctstoptime IS NULL) IS TRUE`, which the planner cannot match to the partial
// indexes on open sessions: after the archiver or an Accounting-On has closed most rows, the
// statistics say hardly any session is open, and with a plain `IS NULL` the planner then scanned
// a whole partial index (every open session, and the dead entries) per batch instead of probing
// the unique index: 20 ms a statement, and ingest fell to a tenth (found by `--history`).
const INTERIM_UPDATE: &str = concat!(
    events!(),
    "UPDATE radacct r SET framedipaddress = e.ip, framedipv6address = e.ip6, \
     framedipv6prefix = e.prefix6, framedinterfaceid = e.ifid, delegatedipv6prefix = e.delegated6, \
     acctsessiontime = e.session_time, \
     acctinterval = e.t - EXTRACT(EPOCH FROM COALESCE(r.acctupdatetime, r.acctstarttime))::bigint, \
     acctupdatetime = to_timestamp(e.t), acctinputoctets = e.input_octets, \
     acctoutputoctets = e.output_octets, \
     acctinteriminterval = COALESCE(e.interim_interval, r.acctinteriminterval) \
     FROM e WHERE r.acctuniqueid = e.uid AND r.acctuniqueid = ANY(ARRAY(SELECT uid FROM e)) \
     AND (r.acctstoptime IS NULL) IS TRUE"
);

const INTERIM_INSERT: &str = concat!(
    events!(),
    "INSERT INTO radacct ",
    columns!(),
    "SELECT sid, uid, username, NULL, nas, port_id, port_type, \
     to_timestamp(t - COALESCE(session_time, 0)), to_timestamp(t), NULL, session_time, authentic, \
     connect_info, NULL, input_octets, output_octets, called, calling, NULL, service, protocol, ip, \
     ip6, prefix6, ifid, delegated6, class, interim_interval FROM e \
     WHERE NOT EXISTS (SELECT 1 FROM radacct r WHERE r.acctuniqueid = e.uid) \
     AND NOT EXISTS (SELECT 1 FROM radacct_history h WHERE h.acctuniqueid = e.uid) \
     ON CONFLICT (acctuniqueid) DO NOTHING"
);

const STOP_UPDATE: &str = concat!(
    events!(),
    "UPDATE radacct r SET acctstoptime = to_timestamp(e.t), acctupdatetime = to_timestamp(e.t), \
     acctsessiontime = COALESCE(e.session_time, e.t - EXTRACT(EPOCH FROM r.acctstarttime)::bigint), \
     acctinputoctets = e.input_octets, acctoutputoctets = e.output_octets, \
     acctterminatecause = e.cause, framedipaddress = e.ip, framedipv6address = e.ip6, \
     framedipv6prefix = e.prefix6, framedinterfaceid = e.ifid, delegatedipv6prefix = e.delegated6, \
     connectinfo_stop = e.connect_info FROM e \
     WHERE r.acctuniqueid = e.uid AND r.acctuniqueid = ANY(ARRAY(SELECT uid FROM e))"
);

/// Stop for a session already archived: update it where it is (the newest, when a NAS used the
/// session's id again and both sessions are archived).
const STOP_UPDATE_HISTORY: &str = concat!(
    events!(),
    "UPDATE radacct_history h SET acctstoptime = to_timestamp(e.t), \
     acctupdatetime = to_timestamp(e.t), \
     acctsessiontime = COALESCE(e.session_time, e.t - EXTRACT(EPOCH FROM h.acctstarttime)::bigint), \
     acctinputoctets = e.input_octets, acctoutputoctets = e.output_octets, \
     acctterminatecause = e.cause, framedipaddress = e.ip, framedipv6address = e.ip6, \
     framedipv6prefix = e.prefix6, framedinterfaceid = e.ifid, delegatedipv6prefix = e.delegated6, \
     connectinfo_stop = e.connect_info FROM e \
     WHERE h.acctuniqueid = e.uid AND h.acctuniqueid = ANY(ARRAY(SELECT uid FROM e)) \
     AND NOT EXISTS (SELECT 1 FROM radacct r WHERE r.acctuniqueid = e.uid) \
     AND h.acctstarttime = \
       (SELECT max(h2.acctstarttime) FROM radacct_history h2 WHERE h2.acctuniqueid = e.uid)"
);

const STOP_INSERT: &str = concat!(
    events!(),
    "INSERT INTO radacct ",
    columns!(),
    "SELECT sid, uid, username, NULL, nas, port_id, port_type, \
     to_timestamp(t - COALESCE(session_time, 0)), to_timestamp(t), to_timestamp(t), session_time, \
     authentic, connect_info, NULL, input_octets, output_octets, called, calling, cause, service, \
     protocol, ip, ip6, prefix6, ifid, delegated6, class, interim_interval FROM e \
     WHERE NOT EXISTS (SELECT 1 FROM radacct r WHERE r.acctuniqueid = e.uid) \
     AND NOT EXISTS (SELECT 1 FROM radacct_history h WHERE h.acctuniqueid = e.uid) \
     ON CONFLICT (acctuniqueid) DO NOTHING"
);

const NAS_REBOOT: &str = "UPDATE radacct SET acctstoptime = to_timestamp($1), \
     acctupdatetime = to_timestamp($1), \
     acctsessiontime = $1 - EXTRACT(EPOCH FROM acctstarttime)::bigint, acctterminatecause = $2 \
     WHERE acctstoptime IS NULL AND nasipaddress = $3::inet AND acctstarttime <= to_timestamp($1)";

// In login order: two batches in flight that both create users then wait for each other in the
// same order, never in a cycle. The `NOT EXISTS` keeps known users from using up identity
// values; its `OFFSET 0` keeps it a per-name probe of the (domain, login) index: without it the
// planner, which takes the batch for 100 rows, turns it into a hash anti-join over a scan of
// every user (2 ms a batch at 5,000 users, growing with the table; the probes take 0.1 ms).
const NEW_USERS: &str = "INSERT INTO users (uuid, login, domain, role) \
     SELECT u.uuid, u.login, $2, 'subscriber' FROM jsonb_to_recordset($1::jsonb) AS u(login text, uuid uuid) \
     WHERE NOT EXISTS (SELECT 1 FROM users x WHERE x.domain = $2 AND x.login = u.login OFFSET 0) \
     ORDER BY u.login ON CONFLICT DO NOTHING";

const CLOSE_STALE: &str = "UPDATE radacct SET \
     acctstoptime = COALESCE(acctupdatetime, acctstarttime), \
     acctterminatecause = 'Stale-Session', \
     acctsessiontime = COALESCE(acctsessiontime, \
       EXTRACT(EPOCH FROM COALESCE(acctupdatetime, acctstarttime) - acctstarttime)::bigint) \
     WHERE radacctid IN (SELECT radacctid FROM radacct WHERE acctstoptime IS NULL \
       AND COALESCE(acctupdatetime, acctstarttime) < to_timestamp($1 - CASE \
         WHEN acctinteriminterval > 0 THEN 3 * acctinteriminterval + 60 \
         WHEN acctinterval > 0 THEN 3 * acctinterval + 60 \
         ELSE $2 END) \
       LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING acctuniqueid";

/// How radacctd connects to `url`: as application `radacctd`, and without JIT compilation unless
/// the URL's `options` set `jit` themselves. PostgreSQL compiles a plan to machine code once its
/// estimated cost passes `jit_above_cost`; that pays off for analytics over millions of rows, but
/// radacctd's statements are small and many, and one estimate gone wrong (partitions without
/// statistics made a batch of Starts look like 108,000 cost units) then costs tens of
/// milliseconds of compilation per statement: in the `--history` fill on PostgreSQL, 65 % of the
/// writer's CPU went to LLVM and ingest fell from 20,000 to 6,000 packets/s.
pub fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)?.application_name("radacctd");
    if options.get_options().is_some_and(|o| o.contains("jit")) {
        return Ok(options);
    }
    Ok(options.options([("jit", "off")]))
}

/// The writer's connections: `options` without sequential scans, and with generic plans only.
///
/// Sequential scans: every statement of the write path finds its rows by key (`acctuniqueid`,
/// the user's name, the NAS), each key has an index, and a scan of a whole table is never the
/// right plan for them at any size. The planner can still pick one: a prepared statement gets
/// a generic plan after five executions, made from the statistics of that moment and kept until
/// the table's statistics change. Made while `radacct` was empty (a new database, or after a
/// TRUNCATE), that plan scans all of `radacct` for every batch as the table grows, until the
/// next ANALYZE (in tests: 70 ms instead of 7 ms for a batch of 200 Stops at 20,000 rows). With
/// sequential scans off the planner takes the index whatever the statistics say; it still falls
/// back to a scan where no index fits.
///
/// Generic plans: each statement takes its batch as one JSON parameter, whose contents the
/// planner cannot see, so a plan made for the values at hand ("custom") is never better than
/// the generic one, only dearer: PostgreSQL still made one for some executions, and a Start's
/// costs 0.8 ms of planning over the history partitions it checks (`pg_stat_statements` during
/// a `--history 500000` fill: 2,362 plans for 13,155 executions, 1.8 s in all; with
/// `force_generic_plan` 14 plans, 2 ms).
pub fn writer_options(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("enable_seqscan", "off"),
        ("plan_cache_mode", "force_generic_plan"),
    ])
}

impl PgStore {
    /// Closes both pools.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    pub async fn connect(url: &str) -> Result<Self> {
        let options = connect_options(url)?;
        // One direct connection first, so a refused connection, a bad password or a missing
        // database is reported as such rather than as a pool timeout.
        use sqlx::Connection;
        sqlx::PgConnection::connect_with(&options)
            .await?
            .close()
            .await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let writer = PgPoolOptions::new()
            .max_connections(PG_PIPELINE_DEPTH as u32)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(writer_options(options))
            .await?;
        Ok(Self { pool, writer })
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn apply(&self, plan: &Plan<'_>, changes: &[Change], domain: &str) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        if !plan.usernames.is_empty() {
            sqlx::query(NEW_USERS)
                .bind(new_users_json(&plan.usernames))
                .bind(domain)
                .execute(&mut *tx)
                .await?;
        }
        for step in &plan.steps {
            match step {
                Step::Sessions(stage) => apply_stage(&mut tx, stage).await?,
                Step::Reboot(r) => {
                    sqlx::query(NAS_REBOOT)
                        .bind(r.t)
                        .bind(&r.cause)
                        .bind(&r.nas)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        notify_changes(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps the planner statistics of the written tables fresh until `shutdown`: every
    /// [`STATISTICS_INTERVAL`], ANALYZE each of [`ANALYZED_TABLES`] and of the partitions of
    /// `radacct_history` that changed by more than autovacuum's threshold since its last
    /// ANALYZE. Autovacuum does the same when it is on, about once a minute; this does not rely
    /// on it. Stale statistics are not harmless here: after the archiver moved most of `radacct`
    /// away, or an Accounting-On closed a NAS's sessions, they say that hardly any session is
    /// open, and the planner then scans whole partial indexes of open sessions for each batch
    /// (ingest fell to a tenth in the `--history` benchmark on a server without autovacuum, and
    /// recovered with fresh statistics). A history partition without statistics makes the
    /// planner guess thousands of rows per `acctuniqueid` in the archived-session probe of a
    /// Start (cost 108,000 for a batch instead of 1,400).
    pub async fn keep_statistics(self, shutdown: CancellationToken) {
        super::every(
            STATISTICS_INTERVAL,
            &shutdown,
            "planner statistics refresh",
            || async { self.analyze_changed_tables().await.map(|_| ()) },
        )
        .await
    }

    /// ANALYZEs the tables of [`ANALYZED_TABLES`] and the history partitions that changed
    /// enough; returns how many. One node at a time (advisory lock); the others return 0.
    pub async fn analyze_changed_tables(&self) -> Result<usize> {
        let changed: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() \
             AND (relname = ANY($1) OR relid IN \
               (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'radacct_history'::regclass)) \
             AND n_mod_since_analyze > $2 + $3 * GREATEST(n_live_tup, 0) \
             ORDER BY relname",
        )
        .bind(&ANALYZED_TABLES[..])
        .bind(ANALYZE_MIN_ROWS)
        .bind(ANALYZE_SHARE)
        .fetch_all(&self.pool)
        .await?;
        let mut analyzed = 0;
        // A name from the catalog goes into SQL only if radacctd names its tables so.
        for table in changed.iter().filter(|t| {
            ANALYZED_TABLES.contains(&t.as_str())
                || *t == HISTORY_DEFAULT_PARTITION
                || partition_month(t).is_some()
        }) {
            let mut tx = self.pool.begin().await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(STATISTICS_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                return Ok(analyzed);
            }
            let started = std::time::Instant::now();
            sqlx::query(&format!("ANALYZE {table}"))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::debug!(
                table = table.as_str(),
                ms = started.elapsed().as_millis() as u64,
                "refreshed planner statistics"
            );
            analyzed += 1;
        }
        Ok(analyzed)
    }

    /// Removes dead rows from radacctd's tables until `shutdown`, where autovacuum will not: on
    /// a server running with `autovacuum = off`, or for a table whose `autovacuum_enabled`
    /// storage parameter is off. Every [`STATISTICS_INTERVAL`], each of [`VACUUMED_TABLES`] with
    /// more dead or newly inserted rows than autovacuum would allow is vacuumed, throttled as
    /// autovacuum is.
    /// Without it, `radacct` on such a server only grows: in the 10,000,000-session `--history`
    /// fill it reached 8 GB of heap and indexes for 4 million live rows and 16 million dead
    /// ones, and the archiver's batches read their way through the dead ones.
    pub async fn keep_vacuumed(self, shutdown: CancellationToken) {
        super::every(
            STATISTICS_INTERVAL,
            &shutdown,
            "vacuum where autovacuum is off",
            || async { self.vacuum_dead_rows().await.map(|_| ()) },
        )
        .await
    }

    /// VACUUMs the tables of [`VACUUMED_TABLES`] that autovacuum leaves alone and that have
    /// enough dead or newly inserted rows; returns how many. One node at a time (advisory lock, on a connection of
    /// its own that is closed afterwards: VACUUM cannot run inside a transaction, so the lock
    /// is a session lock and must not outlive the work on a pooled connection).
    pub async fn vacuum_dead_rows(&self) -> Result<usize> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1) \
             AND (s.n_dead_tup > $2 + $3 * GREATEST(s.n_live_tup, 0) \
               OR s.n_ins_since_vacuum > $2 + $3 * GREATEST(s.n_live_tup, 0)) \
             AND (NOT current_setting('autovacuum')::bool OR EXISTS \
               (SELECT 1 FROM unnest(c.reloptions) o \
                WHERE o LIKE 'autovacuum\\_enabled=%' AND NOT substr(o, 20)::bool)) \
             ORDER BY s.relname",
        )
        .bind(&VACUUMED_TABLES[..])
        .bind(VACUUM_MIN_ROWS)
        .bind(VACUUM_SHARE)
        .fetch_all(&self.pool)
        .await?;
        // A name from the catalog goes into SQL only if it is one of radacctd's own.
        let due: Vec<&str> = VACUUMED_TABLES
            .into_iter()
            .filter(|t| due.iter().any(|d| d == t))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect_with(&self.pool.connect_options()).await?;
        let result = vacuum_locked(&mut conn, &due).await;
        // Closing the connection releases the session lock, whatever happened.
        let _ = conn.close().await;
        result
    }

    /// Feeds this node's event bus from every node's NOTIFYs, and closes the WebSockets of
    /// web sessions closed on any node, until shutdown. The listener reconnects by itself when
    /// the connection drops.
    pub async fn relay_events(
        self,
        bus: EventBus,
        live: std::sync::Arc<LiveConnections>,
        shutdown: CancellationToken,
    ) {
        let mut listener = loop {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut l) => match l.listen_all([PG_CHANNEL, PG_LOGOUT_CHANNEL]).await {
                    Ok(()) => break l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for session events; retrying")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect to LISTEN for session events; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.recv() => match n {
                    Ok(n) if n.channel() == PG_LOGOUT_CHANNEL => match serde_json::from_str::<Vec<String>>(n.payload()) {
                        Ok(ids) => live.close_sessions(&ids),
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed logout notification"),
                    },
                    Ok(n) => match serde_json::from_str::<Vec<Change>>(n.payload()) {
                        Ok(changes) => bus.publish(changes),
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed session-event notification"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "session-event listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    /// Closes stale sessions [`REAP_CHUNK`] at a time, each chunk announced to every node
    /// (NOTIFY, delivered on commit); returns the closed sessions' `acctuniqueid`s.
    pub async fn close_stale(&self, now: i64, stale_after: Option<i64>) -> Result<Vec<String>> {
        let mut closed = Vec::new();
        loop {
            let mut tx = self.pool.begin().await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(REAPER_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                // Another node is reaping right now.
                return Ok(closed);
            }
            let uids: Vec<String> = sqlx::query_scalar(CLOSE_STALE)
                .bind(now)
                .bind(stale_after)
                .bind(REAP_CHUNK)
                .fetch_all(&mut *tx)
                .await?;
            let n = uids.len();
            notify_changes(&mut tx, &crate::events::stale_closed(uids.clone())).await?;
            tx.commit().await?;
            closed.extend(uids);
            if n < REAP_CHUNK as usize {
                return Ok(closed);
            }
        }
    }

    pub async fn nas_list(&self) -> Result<Vec<NasRow>> {
        let rows =
            sqlx::query("SELECT nasname, shortname, secret, coa_port FROM nas ORDER BY nasname")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(NasRow {
                    nasname: r.try_get("nasname")?,
                    shortname: r.try_get("shortname")?,
                    secret: r.try_get("secret")?,
                    coa_port: u16::try_from(r.try_get::<i32, _>("coa_port")?).unwrap_or(3799),
                })
            })
            .collect()
    }

    pub async fn nas_add(&self, row: &NasRow) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO nas (nasname, shortname, secret, coa_port) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (nasname) DO NOTHING",
        )
        .bind(&row.nasname)
        .bind(&row.shortname)
        .bind(&row.secret)
        .bind(i32::from(row.coa_port))
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "NAS {} already exists",
                row.nasname
            )));
        }
        Ok(())
    }

    pub async fn nas_del(&self, nasname: &str) -> Result<bool> {
        let result = sqlx::query("DELETE FROM nas WHERE nasname = $1")
            .bind(nasname)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// NOTIFY payloads stay under PostgreSQL's 8000-byte limit.
const NOTIFY_MAX: usize = 7000;

/// Announces `changes` to every listening node when (and only if) `tx` commits.
async fn notify_changes(tx: &mut sqlx::PgConnection, changes: &[Change]) -> Result<()> {
    for payload in notify_payloads(changes) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PG_CHANNEL)
            .bind(payload)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The changes as JSON arrays of at most [`NOTIFY_MAX`] bytes each.
fn notify_payloads(changes: &[Change]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::from("[");
    for change in changes {
        let item = serde_json::to_string(change).expect("a session change serialises");
        if item.len() + 2 > NOTIFY_MAX {
            continue; // absurdly long user name or id: not worth an event
        }
        if current.len() + item.len() + 2 > NOTIFY_MAX {
            current.push(']');
            payloads.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&item);
    }
    if current.len() > 1 {
        current.push(']');
        payloads.push(current);
    }
    payloads
}

async fn apply_stage(tx: &mut sqlx::PgConnection, stage: &Stage<'_>) -> Result<()> {
    if !stage.starts.is_empty() {
        let json = events_json(&stage.starts);
        let stored = sqlx::query(START)
            .bind(&json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Every Start inserts or updates a row, unless its session is archived.
        if stored < stage.starts.len() as u64 {
            sqlx::query(START_ARCHIVED)
                .bind(&json)
                .execute(&mut *tx)
                .await?;
        }
    }
    if !stage.interims.is_empty() {
        let json = events_json(&stage.interims);
        let updated = sqlx::query(INTERIM_UPDATE)
            .bind(&json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Each acctuniqueid appears once per stage, so fewer updates means some have no row.
        if updated < stage.interims.len() as u64 {
            sqlx::query(INTERIM_INSERT)
                .bind(&json)
                .execute(&mut *tx)
                .await?;
        }
    }
    if !stage.stops.is_empty() {
        let json = events_json(&stage.stops);
        let updated = sqlx::query(STOP_UPDATE)
            .bind(&json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated < stage.stops.len() as u64 {
            sqlx::query(STOP_UPDATE_HISTORY)
                .bind(&json)
                .execute(&mut *tx)
                .await?;
            sqlx::query(STOP_INSERT)
                .bind(&json)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

// ---- users and web sessions ---------------------------------------------------------------

const USER_COLUMNS: &str =
    "SELECT id::bigint AS id, uuid::text AS uuid, login, domain, role, password_hash FROM users ";

const SESSION_COLUMNS: &str = "SELECT s.id, s.session_id::text AS session_id, s.user_id::bigint AS user_id, \
     u.uuid::text AS user_uuid, u.login, u.role, s.domain, s.site, s.node, s.console_type::bigint AS console_type, \
     s.host, EXTRACT(EPOCH FROM s.login_time)::bigint AS login_time, \
     EXTRACT(EPOCH FROM s.expires_at)::bigint AS expires_at, \
     EXTRACT(EPOCH FROM s.logout_time)::bigint AS logout_time \
     FROM web_sessions s JOIN users u ON u.id = s.user_id ";

impl PgStore {
    pub async fn record_login_failure(&self, ip: &str, at: i64, forget_before: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM login_failures WHERE at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO login_failures (ip, at) VALUES ($1, $2)")
            .bind(ip)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn recent_login_failures(
        &self,
        ip: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT at FROM login_failures WHERE ip = $1 AND at > $2 ORDER BY at DESC LIMIT $3",
        )
        .bind(ip)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn user_by_login(&self, domain: &str, login: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("{USER_COLUMNS}WHERE domain = $1 AND login = $2"))
            .bind(domain)
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(user_row!(r))).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("{USER_COLUMNS}WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(user_row!(r))).transpose()
    }

    pub async fn user_by_uuid(&self, uuid: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("{USER_COLUMNS}WHERE uuid::text = $1"))
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(user_row!(r))).transpose()
    }

    pub async fn user_list(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(&format!("{USER_COLUMNS}ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(user_row!(r))).collect()
    }

    pub async fn user_create(
        &self,
        domain: &str,
        login: &str,
        role: &str,
        hash: Option<&str>,
    ) -> Result<UserRow> {
        let created: Option<i32> = sqlx::query_scalar(
            "INSERT INTO users (uuid, login, domain, role, password_hash) VALUES (gen_random_uuid(), $1, $2, $3, $4) \
             ON CONFLICT (domain, login) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash \
             WHERE users.password_hash IS NULL RETURNING id",
        )
        .bind(login)
        .bind(domain)
        .bind(role)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        if created.is_none() {
            return Err(StoreError::Conflict(format!("user {login} already exists")));
        }
        self.user_by_login(domain, login)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("user {login} vanished")))
    }

    pub async fn user_set_password(&self, domain: &str, login: &str, hash: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE users SET password_hash = $3 WHERE domain = $1 AND login = $2")
            .bind(domain)
            .bind(login)
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn user_delete(&self, domain: &str, login: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM users WHERE domain = $1 AND login = $2")
            .bind(domain)
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn admin_exists(&self) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn session_create(&self, s: &NewWebSession<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO web_sessions (session_id, token_hash, user_id, domain, site, node, console_type, host, \
             login_time, expires_at) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9), to_timestamp($10)) \
             RETURNING id",
        )
        .bind(s.session_id)
        .bind(s.token_hash)
        .bind(i32::try_from(s.user_id).unwrap_or(i32::MAX))
        .bind(s.domain)
        .bind(s.site)
        .bind(s.node)
        .bind(i32::try_from(s.console_type).unwrap_or(i32::MAX))
        .bind(s.host)
        .bind(s.login_time)
        .bind(s.expires_at)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn session_by_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<WebSessionRow>> {
        let row = sqlx::query(&format!(
            "{SESSION_COLUMNS}WHERE s.token_hash = $1 AND s.logout_time IS NULL AND s.expires_at > to_timestamp($2)"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(web_session_row!(r))).transpose()
    }

    pub async fn console_sessions(
        &self,
        user_id: i64,
        now: i64,
        since: i64,
        only_open: bool,
    ) -> Result<Vec<WebSessionRow>> {
        let rows = sqlx::query(&format!(
            "{SESSION_COLUMNS}WHERE s.user_id = $1 AND ((s.logout_time IS NULL AND s.expires_at > to_timestamp($2)) \
             OR (NOT $4 AND COALESCE(s.logout_time, s.expires_at) >= to_timestamp($3))) ORDER BY s.login_time, s.id"
        ))
        .bind(i32::try_from(user_id).unwrap_or(i32::MAX))
        .bind(now)
        .bind(since)
        .bind(only_open)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(web_session_row!(r))).collect()
    }
}

// ---- reading sessions ---------------------------------------------------------------------

const SESSION_ROW: &str =
    "SELECT radacctid, acctsessionid, acctuniqueid, username, host(nasipaddress) AS nasipaddress, \
     nasportid, nasporttype, EXTRACT(EPOCH FROM acctstarttime)::bigint AS acctstarttime, \
     EXTRACT(EPOCH FROM acctupdatetime)::bigint AS acctupdatetime, \
     EXTRACT(EPOCH FROM acctstoptime)::bigint AS acctstoptime, acctsessiontime, acctinputoctets, \
     acctoutputoctets, connectinfo_start, connectinfo_stop, calledstationid, callingstationid, \
     acctterminatecause, host(framedipaddress) AS framedipaddress, \
     host(framedipv6address) AS framedipv6address, framedipv6prefix::text AS framedipv6prefix, \
     delegatedipv6prefix::text AS delegatedipv6prefix ";

impl PgStore {
    pub async fn online_sessions_of(&self, username: &str) -> Result<Vec<SessionRow>> {
        // `IS TRUE`: the user's index, never a partial index of every open session (see
        // INTERIM_UPDATE).
        let rows = sqlx::query(&format!(
            "{SESSION_ROW}FROM radacct WHERE username = $1 AND (acctstoptime IS NULL) IS TRUE \
             ORDER BY radacct.acctstarttime, radacct.radacctid"
        ))
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(session_row!(r))).collect()
    }

    pub async fn online_sessions(
        &self,
        f: &OnlineFilter,
        after: Option<After>,
        limit: i64,
    ) -> Result<Vec<SessionRow>> {
        let rows = sqlx::query(&format!(
            "{SESSION_ROW}FROM radacct WHERE acctstoptime IS NULL \
             AND ($1::inet IS NULL OR nasipaddress = $1::inet) \
             AND ($2::text IS NULL OR left(username, length($2)) = $2) \
             AND ($3::inet IS NULL OR framedipaddress = $3::inet) \
             AND ($4::bigint IS NULL OR (acctstarttime, radacctid) > (to_timestamp($4), $5)) \
             ORDER BY radacct.acctstarttime, radacct.radacctid LIMIT $6"
        ))
        .bind(&f.nas)
        .bind(f.username_prefix.as_deref())
        .bind(&f.framed_ip)
        .bind(after.map(|a| a.start))
        .bind(after.map(|a| a.id))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(session_row!(r))).collect()
    }

    pub async fn session_history(
        &self,
        username: &str,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<SessionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM ({SESSION_ROW}FROM radacct WHERE username = $1 AND acctstarttime < to_timestamp($3) \
               AND (acctstoptime IS NULL OR acctstoptime >= to_timestamp($2)) \
             UNION ALL {SESSION_ROW}FROM radacct_history WHERE username = $1 \
               AND acctstarttime < to_timestamp($3) AND acctstoptime >= to_timestamp($2)) s \
             ORDER BY acctstarttime, radacctid LIMIT $4"
        ))
        .bind(username)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(session_row!(r))).collect()
    }

    pub async fn online_counts_by_nas(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT host(nasipaddress) AS nasipaddress, COUNT(*) AS n FROM radacct WHERE acctstoptime IS NULL \
             GROUP BY nasipaddress ORDER BY nasipaddress",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("nasipaddress")?, r.try_get("n")?)))
            .collect()
    }

    pub async fn session_by_id(&self, radacctid: i64) -> Result<Option<SessionRow>> {
        let row = sqlx::query(&format!("{SESSION_ROW}FROM radacct WHERE radacctid = $1"))
            .bind(radacctid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(session_row!(r))).transpose()
    }

    /// The rows of these sessions, from `radacct` or (`archived`) from `radacct_history`.
    pub async fn nas_closed_uids(&self, nas: &str, t: i64, cause: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT acctuniqueid FROM radacct WHERE acctstoptime = to_timestamp($2) AND nasipaddress = $1::inet AND acctterminatecause = $3",
        )
        .bind(nas)
        .bind(t)
        .bind(cause)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn sessions_by_uids(
        &self,
        uids: &[String],
        archived: bool,
    ) -> Result<Vec<SessionRow>> {
        let table = if archived {
            "radacct_history"
        } else {
            "radacct"
        };
        let rows = sqlx::query(&format!(
            "{SESSION_ROW}FROM {table} WHERE acctuniqueid = ANY($1) ORDER BY acctstarttime"
        ))
        .bind(uids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(session_row!(r))).collect()
    }
}

// ---- web sessions across nodes --------------------------------------------------------------

impl PgStore {
    pub async fn node_heartbeat(&self, node: &str, site: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (node, site, heartbeat) VALUES ($1, $2, to_timestamp($3)) \
             ON CONFLICT (node) DO UPDATE SET site = EXCLUDED.site, heartbeat = EXCLUDED.heartbeat",
        )
        .bind(node)
        .bind(site)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn ws_open(
        &self,
        conn_id: &str,
        session_id: &str,
        node: &str,
        pid: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO ws_connections (conn_id, session_id, node, pid, opened_at) \
             VALUES ($1::uuid, $2::uuid, $3, $4, to_timestamp($5))",
        )
        .bind(conn_id)
        .bind(session_id)
        .bind(node)
        .bind(pid)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn ws_close(&self, conn_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM ws_connections WHERE conn_id = $1::uuid")
            .bind(conn_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ws_forget_node(&self, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM ws_connections WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn open_web_sessions(&self, now: i64) -> Result<Vec<WebSessionRow>> {
        let rows = sqlx::query(&format!(
            "{SESSION_COLUMNS}WHERE s.logout_time IS NULL AND s.expires_at > to_timestamp($1) ORDER BY s.login_time, s.id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(web_session_row!(r))).collect()
    }

    pub async fn open_ws_connections(
        &self,
        now: i64,
        alive_since: i64,
    ) -> Result<Vec<WsConnectionRow>> {
        let rows = sqlx::query(
            "SELECT c.conn_id::text AS conn_id, c.session_id::text AS session_id, c.node, c.pid, \
             COALESCE(n.heartbeat >= to_timestamp($2), false) AS alive \
             FROM ws_connections c JOIN web_sessions s ON s.session_id = c.session_id \
             LEFT JOIN nodes n ON n.node = c.node \
             WHERE s.logout_time IS NULL AND s.expires_at > to_timestamp($1) ORDER BY c.opened_at, c.conn_id",
        )
        .bind(now)
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WsConnectionRow {
                    conn_id: r.try_get("conn_id")?,
                    session_id: r.try_get("session_id")?,
                    node: r.try_get("node")?,
                    pid: r.try_get("pid")?,
                    alive: r.try_get("alive")?,
                })
            })
            .collect()
    }

    /// Closes open sessions and tells every node (NOTIFY) so their WebSockets close.
    /// Deletes web sessions logged out or expired before `before` (their `ws_connections` rows
    /// go with them), in batches; returns how many.
    pub async fn purge_web_sessions(&self, before: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM web_sessions WHERE id IN (SELECT id FROM web_sessions \
                 WHERE COALESCE(logout_time, expires_at) < to_timestamp($1) LIMIT $2)",
            )
            .bind(before)
            .bind(super::WEB_SESSION_PURGE_CHUNK)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if n < super::WEB_SESSION_PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    pub async fn close_web_sessions(
        &self,
        session_ids: &[String],
        now: i64,
    ) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let closed: Vec<String> = sqlx::query_scalar(
            "UPDATE web_sessions SET logout_time = to_timestamp($2) \
             WHERE session_id::text = ANY($1) AND logout_time IS NULL AND expires_at > to_timestamp($2) \
             RETURNING session_id::text",
        )
        .bind(session_ids)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if !closed.is_empty() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(PG_LOGOUT_CHANNEL)
                .bind(serde_json::to_string(&closed).expect("strings serialise"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(closed)
    }
}

// ---- history: archive, retention, IP lookup -------------------------------------------------

/// Advisory lock key held by the node that archives ("radacctd" archiver).
pub const ARCHIVER_LOCK: i64 = 0x7261_6461_6363_7402;

const STALE_LIMIT: &str = "(CASE WHEN acctinteriminterval > 0 THEN 3 * acctinteriminterval + 60 \
     WHEN acctinterval > 0 THEN 3 * acctinterval + 60 ELSE $4::bigint END)";

/// VACUUMs `tables` on `conn` if this connection gets [`VACUUM_LOCK`]; returns how many.
async fn vacuum_locked(conn: &mut sqlx::PgConnection, tables: &[&'static str]) -> Result<usize> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(VACUUM_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(0);
    }
    use sqlx::Executor;
    // Plain statements (no parameters) go over the simple protocol, outside any transaction.
    conn.execute(format!("SET vacuum_cost_delay = '{VACUUM_COST_DELAY}'").as_str())
        .await?;
    for table in tables {
        let started = std::time::Instant::now();
        conn.execute(format!("VACUUM {table}").as_str()).await?;
        tracing::info!(
            table,
            ms = started.elapsed().as_millis() as u64,
            "vacuumed dead rows (autovacuum is off for it)"
        );
    }
    Ok(tables.len())
}

/// Where history rows go that no monthly partition takes.
const HISTORY_DEFAULT_PARTITION: &str = "radacct_history_default";

/// `radacct_history_yYYYYmMM`, the partition of one month (UTC).
fn partition_name(year: i32, month: u32) -> String {
    format!("radacct_history_y{year:04}m{month:02}")
}

/// The month of a partition named by [`partition_name`]; `None` for any other name, so a name
/// read from the catalog is only ever put into SQL when radacctd could have written it itself.
fn partition_month(name: &str) -> Option<(i32, u32)> {
    let (y, m) = name.strip_prefix("radacct_history_y")?.split_once('m')?;
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (name == partition_name(y, m)).then_some((y, m))
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

impl PgStore {
    /// Creates the monthly partition of `radacct_history` for (year, month) if it is missing.
    async fn ensure_partition(conn: &mut sqlx::PgConnection, year: i32, month: u32) -> Result<()> {
        let (ny, nm) = next_month(year, month);
        // Names and bounds come from integers, never from input.
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF radacct_history \
             FOR VALUES FROM ('{year:04}-{month:02}-01 00:00:00+00') TO ('{ny:04}-{nm:02}-01 00:00:00+00')",
            partition_name(year, month)
        );
        sqlx::query(&ddl).execute(conn).await?;
        Ok(())
    }

    /// Creates this month's and the next two months' partitions ahead of time. Partitions are
    /// only created under the archiver lock (`CREATE TABLE IF NOT EXISTS` is not safe against a
    /// concurrent creator); a node that does not get it leaves the work to the one that has it.
    pub async fn ensure_partitions_ahead(&self, now: i64) -> Result<()> {
        let Some(t) = chrono::DateTime::from_timestamp(now, 0) else {
            return Ok(());
        };
        let (mut y, mut m) = (chrono::Datelike::year(&t), chrono::Datelike::month(&t));
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ARCHIVER_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(());
        }
        for _ in 0..3 {
            Self::ensure_partition(&mut tx, y, m).await?;
            (y, m) = next_month(y, m);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Moves up to `batch` sessions that stopped in `from..cutoff`, earliest first, to
    /// `radacct_history` in one transaction (a crash leaves each row in exactly one table),
    /// creating the monthly partitions they need first. Only one node archives at a time
    /// (advisory lock); on the others this moves nothing.
    pub async fn archive_batch(&self, from: i64, cutoff: i64, batch: i64) -> Result<Archived> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ARCHIVER_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(Archived::default());
        }
        // The scan starts at `from`, where the pass's previous batch ended: the index entries of
        // the rows moved before stay behind as dead ones until VACUUM (longer while any
        // transaction is open), and a scan from the lowest stop time read through all of them:
        // 80-170 ms a batch behind 1.8 million of them, against 2 ms from `from`. The second is
        // rounded down: a stop time written by another tool may have a fraction, and rounding it
        // up would leave the rows of that same stop time behind for the rest of the pass.
        let rows = sqlx::query(
            "SELECT radacctid, floor(EXTRACT(EPOCH FROM acctstoptime))::bigint AS stop, \
             EXTRACT(YEAR FROM acctstarttime AT TIME ZONE 'UTC')::int AS y, \
             EXTRACT(MONTH FROM acctstarttime AT TIME ZONE 'UTC')::int AS m FROM radacct \
             WHERE acctstoptime IS NOT NULL AND acctstoptime >= to_timestamp($1) \
             AND acctstoptime < to_timestamp($2) \
             ORDER BY acctstoptime LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(from)
        .bind(cutoff)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            // Ended here, not when the dropped transaction's rollback reaches the server: until
            // then its lock would make the next batch, on another connection, find it taken.
            tx.commit().await?;
            return Ok(Archived::default());
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut months = std::collections::BTreeSet::new();
        let mut last_stop = None;
        for r in &rows {
            ids.push(r.try_get::<i64, _>("radacctid")?);
            last_stop = last_stop.max(r.try_get::<Option<i64>, _>("stop")?);
            if let (Some(y), Some(m)) = (
                r.try_get::<Option<i32>, _>("y")?,
                r.try_get::<Option<i32>, _>("m")?,
            ) {
                months.insert((y, u32::try_from(m).unwrap_or(1)));
            }
        }
        for (y, m) in months {
            Self::ensure_partition(&mut tx, y, m).await?;
        }
        let moved = sqlx::query(
            "WITH moved AS (DELETE FROM radacct WHERE radacctid = ANY($1) RETURNING *) \
             INSERT INTO radacct_history SELECT * FROM moved",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Archived { moved, last_stop })
    }

    /// Drops the monthly partitions that ended before `cutoff` and deletes older rows of the
    /// default partition in batches; returns how many partitions were dropped.
    pub async fn expire_history(&self, cutoff: i64) -> Result<u64> {
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'radacct_history'::regclass",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut dropped = 0;
        for name in partitions {
            let Some((y, m)) = partition_month(&name) else {
                continue;
            };
            let (ny, nm) = next_month(y, m);
            let end = chrono::NaiveDate::from_ymd_opt(ny, nm, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp());
            if end.is_some_and(|end| end <= cutoff) {
                sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                    .execute(&self.pool)
                    .await?;
                tracing::info!(partition = %name, "dropped history past its retention");
                dropped += 1;
            }
        }
        loop {
            let n = sqlx::query(
                "DELETE FROM radacct_history_default WHERE radacctid IN \
                 (SELECT radacctid FROM radacct_history_default WHERE acctstoptime < to_timestamp($1) LIMIT $2)",
            )
            .bind(cutoff)
            .bind(REAP_CHUNK)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if n < REAP_CHUNK as u64 {
                break;
            }
        }
        Ok(dropped)
    }

    pub async fn sessions_by_ip(
        &self,
        ip: std::net::IpAddr,
        at: i64,
        stale_after: Option<i64>,
    ) -> Result<Vec<SessionRow>> {
        let address_match = "(framedipaddress = $1::inet OR framedipv6address = $1::inet \
             OR framedipv6prefix = ANY($2::text[]::inet[]) OR delegatedipv6prefix = ANY($2::text[]::inet[]))";
        let rows = sqlx::query(&format!(
            "SELECT * FROM ({SESSION_ROW}FROM radacct WHERE {address_match} AND acctstarttime <= to_timestamp($3) \
               AND (acctstoptime > to_timestamp($3) OR (acctstoptime IS NULL AND ({STALE_LIMIT} IS NULL \
                 OR $3 < EXTRACT(EPOCH FROM COALESCE(acctupdatetime, acctstarttime))::bigint + {STALE_LIMIT}))) \
             UNION ALL {SESSION_ROW}FROM radacct_history WHERE {address_match} \
               AND acctstarttime <= to_timestamp($3) AND acctstoptime > to_timestamp($3)) s \
             ORDER BY acctstarttime, radacctid"
        ))
        .bind(ip.to_string())
        .bind(enclosing_prefixes(ip))
        .bind(at)
        .bind(stale_after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(session_row!(r))).collect()
    }
}

//! SQLite backend: every SQL statement radacctd runs on SQLite. WAL journal with
//! `synchronous=NORMAL` (a commit survives a process crash; a power loss may lose the last
//! transactions, as documented for WAL mode).
//!
//! The accounting ladder follows FreeRADIUS 3.2's stock `queries.conf`, applied set-wise per
//! stage (see [`super::plan`]): every statement reads the stage's events from one JSON array.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio_util::sync::CancellationToken;

use super::sessions::{enclosing_prefixes, session_row, After, OnlineFilter, SessionRow};
use super::users::{
    user_row, web_session_row, NewWebSession, UserRow, WebSessionRow, WsConnectionRow,
};
use super::{events_json, new_users_json, Archived, NasRow, Plan, Result, Stage, Step, StoreError};

/// Connections in the pool: one writer at a time plus readers (WAL lets them run together).
const POOL_SIZE: u32 = 4;
/// How long a statement waits for another writer's lock before failing (and being retried).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// History rows deleted per transaction by retention.
const EXPIRE_CHUNK: i64 = 5_000;
/// Stale sessions the reaper reads at a time.
const REAP_SCAN: i64 = 50_000;
/// Sessions the reaper closes per transaction: SQLite has one write lock, and ingest waits
/// while the reaper holds it (about 10 ms for this many).
const REAP_CHUNK: usize = 1_000;
/// How often the checkpointer copies committed WAL pages into the database file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// WAL pages at which a committing connection checkpoints by itself (SQLite's default is 1,000).
/// The checkpointer has copied nearly all of them by then, so this checkpoint only finishes the
/// copy (about [`CHECKPOINT_INTERVAL`]'s worth) and lets the next write start the WAL over; it
/// also bounds the WAL if the checkpointer cannot run. At full ingest speed the WAL grows by
/// about 16,000 pages a second, so a commit pays for a checkpoint every few seconds rather than
/// several times a second (at 4,096 or 16,384 pages the p99 was still 30-35 ms: see README).
const WAL_AUTOCHECKPOINT_PAGES: &str = "65536";
/// The WAL file is cut back to this size (bytes) when it starts over, so a WAL that grew behind
/// a long reader gives the space back. One cycle of [`WAL_AUTOCHECKPOINT_PAGES`] frames of
/// 4,120 bytes is about 270 MB, so each cycle also cuts about 14 MB off and regrows it; the soak
/// measured no difference without a limit, and a limit of 0 (truncate at every restart) made
/// the p99 several times worse (README, "Soak").
const WAL_SIZE_LIMIT: &str = "268435456";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// API queries, the reaper, the archiver, web sessions.
    pub(crate) pool: SqlitePool,
    /// The writer's own connection, so accounting never queues for a connection behind API
    /// requests (SQLite's write lock still orders it with the other writes).
    writer: SqlitePool,
    /// The checkpointer's own connection (see [`SqliteStore::checkpoint_wal`]).
    checkpointer: SqlitePool,
}

/// The stage's events as rows: `e(t, uid, ...)`.
macro_rules! events {
    () => {
        // Each event is parsed once (into JSONB); `->>` on the text `value` of json_each would
        // parse it again for every column.
        "WITH j AS MATERIALIZED (SELECT jsonb(value) AS v FROM json_each(?1)), \
         e AS (SELECT v ->> 't' AS t, v ->> 'uid' AS uid, v ->> 'sid' AS sid, \
         v ->> 'username' AS username, v ->> 'nas' AS nas, v ->> 'port_id' AS port_id, \
         v ->> 'port_type' AS port_type, v ->> 'authentic' AS authentic, \
         v ->> 'connect_info' AS connect_info, v ->> 'called' AS called, \
         v ->> 'calling' AS calling, v ->> 'service' AS service, v ->> 'protocol' AS protocol, \
         v ->> 'ip' AS ip, v ->> 'ip6' AS ip6, v ->> 'prefix6' AS prefix6, \
         v ->> 'ifid' AS ifid, v ->> 'delegated6' AS delegated6, v ->> 'class' AS class, \
         v ->> 'session_time' AS session_time, v ->> 'input_octets' AS input_octets, \
         v ->> 'output_octets' AS output_octets, v ->> 'cause' AS cause, \
         v ->> 'interim_interval' AS interim_interval FROM j) "
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

/// Start: insert; a duplicate Start (open or stopped session) rewrites only the start time,
/// update time and `connectinfo_start`, as the stock query and its fallback do. A repeated Start
/// of an archived session inserts nothing (`START_ARCHIVED` takes it). Only a Start no later
/// than the newest stop in the history can be one (a session stops after it starts), so any
/// other Start skips the probe of `radacct_history`: with years of history, that probe by a
/// random `acctuniqueid` would read a cold index page for every Start.
const START: &str = concat!(
    events!(),
    "INSERT INTO radacct ",
    columns!(),
    "SELECT sid, uid, username, NULL, nas, port_id, port_type, t, t, NULL, 0, authentic, \
     connect_info, NULL, 0, 0, called, calling, NULL, service, protocol, ip, ip6, prefix6, ifid, \
     delegated6, class, interim_interval FROM e \
     WHERE (e.t > (SELECT max(acctstoptime) FROM radacct_history) \
       OR NOT EXISTS (SELECT 1 FROM radacct_history h WHERE h.acctuniqueid = e.uid \
       AND h.acctstarttime = e.t)) \
     ON CONFLICT (acctuniqueid) DO UPDATE SET acctstarttime = excluded.acctstarttime, \
     acctupdatetime = excluded.acctupdatetime, connectinfo_start = excluded.connectinfo_start"
);

/// A repeated Start (same session, same event time) of a session already archived: rewrites
/// what a duplicate Start rewrites, in `radacct_history`, instead of re-opening the session.
const START_ARCHIVED: &str = concat!(
    events!(),
    "UPDATE radacct_history SET acctstarttime = e.t, acctupdatetime = e.t, \
     connectinfo_start = e.connect_info FROM e \
     WHERE radacct_history.acctuniqueid = e.uid AND radacct_history.acctstarttime = e.t"
);

/// Interim-Update of an open session.
const INTERIM_UPDATE: &str = concat!(
    events!(),
    "UPDATE radacct SET framedipaddress = e.ip, framedipv6address = e.ip6, \
     framedipv6prefix = e.prefix6, framedinterfaceid = e.ifid, delegatedipv6prefix = e.delegated6, \
     acctsessiontime = e.session_time, \
     acctinterval = e.t - COALESCE(radacct.acctupdatetime, radacct.acctstarttime), \
     acctupdatetime = e.t, acctinputoctets = e.input_octets, acctoutputoctets = e.output_octets, \
     acctinteriminterval = COALESCE(e.interim_interval, radacct.acctinteriminterval) \
     FROM e WHERE radacct.acctuniqueid = e.uid AND radacct.acctstoptime IS NULL"
);

/// Interim-Update with no row anywhere: insert an open row that started Acct-Session-Time ago.
const INTERIM_INSERT: &str = concat!(
    events!(),
    "INSERT INTO radacct ",
    columns!(),
    "SELECT sid, uid, username, NULL, nas, port_id, port_type, t - COALESCE(session_time, 0), t, \
     NULL, session_time, authentic, connect_info, NULL, input_octets, output_octets, called, \
     calling, NULL, service, protocol, ip, ip6, prefix6, ifid, delegated6, class, interim_interval \
     FROM e WHERE NOT EXISTS (SELECT 1 FROM radacct r WHERE r.acctuniqueid = e.uid) \
     AND NOT EXISTS (SELECT 1 FROM radacct_history h WHERE h.acctuniqueid = e.uid) \
     ON CONFLICT (acctuniqueid) DO NOTHING"
);

/// Stop: set the stop data of the session, open or already stopped (the last Stop wins).
const STOP_UPDATE: &str = concat!(
    events!(),
    "UPDATE radacct SET acctstoptime = e.t, acctupdatetime = e.t, \
     acctsessiontime = COALESCE(e.session_time, e.t - radacct.acctstarttime), \
     acctinputoctets = e.input_octets, acctoutputoctets = e.output_octets, \
     acctterminatecause = e.cause, framedipaddress = e.ip, framedipv6address = e.ip6, \
     framedipv6prefix = e.prefix6, framedinterfaceid = e.ifid, delegatedipv6prefix = e.delegated6, \
     connectinfo_stop = e.connect_info FROM e WHERE radacct.acctuniqueid = e.uid"
);

/// Stop for a session already archived: update it where it is (the newest, when a NAS used the
/// session's id again and both sessions are archived).
const STOP_UPDATE_HISTORY: &str = concat!(
    events!(),
    ", x AS (SELECT * FROM e WHERE NOT EXISTS (SELECT 1 FROM radacct r WHERE r.acctuniqueid = e.uid)) \
     UPDATE radacct_history SET acctstoptime = x.t, acctupdatetime = x.t, \
     acctsessiontime = COALESCE(x.session_time, x.t - radacct_history.acctstarttime), \
     acctinputoctets = x.input_octets, acctoutputoctets = x.output_octets, \
     acctterminatecause = x.cause, framedipaddress = x.ip, framedipv6address = x.ip6, \
     framedipv6prefix = x.prefix6, framedinterfaceid = x.ifid, delegatedipv6prefix = x.delegated6, \
     connectinfo_stop = x.connect_info FROM x WHERE radacct_history.acctuniqueid = x.uid \
     AND radacct_history.acctstarttime = \
       (SELECT max(h.acctstarttime) FROM radacct_history h WHERE h.acctuniqueid = x.uid)"
);

/// Stop with no row anywhere: insert a closed row.
const STOP_INSERT: &str = concat!(
    events!(),
    "INSERT INTO radacct ",
    columns!(),
    "SELECT sid, uid, username, NULL, nas, port_id, port_type, t - COALESCE(session_time, 0), t, t, \
     session_time, authentic, connect_info, NULL, input_octets, output_octets, called, calling, \
     cause, service, protocol, ip, ip6, prefix6, ifid, delegated6, class, interim_interval \
     FROM e WHERE NOT EXISTS (SELECT 1 FROM radacct r WHERE r.acctuniqueid = e.uid) \
     AND NOT EXISTS (SELECT 1 FROM radacct_history h WHERE h.acctuniqueid = e.uid) \
     ON CONFLICT (acctuniqueid) DO NOTHING"
);

/// Accounting-On/Off: close every open session of the NAS that started at or before the event.
const NAS_REBOOT: &str = "UPDATE radacct SET acctstoptime = ?1, acctupdatetime = ?1, \
     acctsessiontime = ?1 - acctstarttime, acctterminatecause = ?2 \
     WHERE acctstoptime IS NULL AND nasipaddress = ?3 AND acctstarttime <= ?1";

/// Users first seen in accounting (no password: they cannot log in).
const NEW_USERS: &str = "INSERT INTO users (uuid, login, domain, role) \
     SELECT value ->> 'uuid', value ->> 'login', ?2, 'subscriber' FROM json_each(?1) \
     WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.domain = ?2 AND u.login = value ->> 'login') \
     ON CONFLICT DO NOTHING";

/// Open sessions that are stale at ?1: no packet for 3 x interval + 60 s, or for `stale_after`
/// (?2, NULL = never) when no interval is known.
macro_rules! stale {
    () => {
        "acctstoptime IS NULL AND COALESCE(acctupdatetime, acctstarttime) < ?1 - CASE \
         WHEN acctinteriminterval > 0 THEN 3 * acctinteriminterval + 60 \
         WHEN acctinterval > 0 THEN 3 * acctinterval + 60 \
         ELSE ?2 END"
    };
}

/// Up to ?3 stale sessions. Read on a pool connection: the scan of every open session takes no
/// write lock, so ingest does not wait for it.
const STALE_SESSIONS: &str = concat!(
    "SELECT radacctid FROM radacct WHERE ",
    stale!(),
    " LIMIT ?3"
);

/// Closes the listed sessions (?3, a JSON array of ids) that are still open and stale: a packet
/// may have come in since they were found. Stop time = last update.
const CLOSE_STALE: &str = concat!(
    "UPDATE radacct SET acctstoptime = COALESCE(acctupdatetime, acctstarttime), \
     acctterminatecause = 'Stale-Session', \
     acctsessiontime = COALESCE(acctsessiontime, COALESCE(acctupdatetime, acctstarttime) - acctstarttime) \
     WHERE radacctid IN (SELECT value FROM json_each(?3)) AND ",
    stale!(),
    " RETURNING acctuniqueid"
);

/// `[1,2,3]`.
fn json_ids(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", list.join(","))
}

async fn open_pool(options: SqliteConnectOptions, size: u32) -> Result<SqlitePool> {
    Ok(SqlitePoolOptions::new()
        .max_connections(size)
        // A write that fails with SQLITE_FULL (disk full) can make SQLite roll the whole
        // transaction back by itself; sqlx's ROLLBACK then fails and it keeps counting the
        // connection as inside a transaction, so its next `begin` only opens a SAVEPOINT,
        // and after one more failure a transaction stays open for good: later "commits" on
        // that connection commit nothing (packets were answered for data that was never
        // stored) while its write lock locks out every other connection. Such a
        // connection is closed (which rolls back whatever it holds) instead of reused.
        .before_acquire(|conn, _| {
            Box::pin(async move {
                use sqlx::Connection;
                Ok(!conn.is_in_transaction())
            })
        })
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

/// The options of every connection radacctd opens to the database at `url`.
///
/// `temp_store = MEMORY`: inside a transaction, a statement that can fail part-way (every
/// `INSERT ... ON CONFLICT` and multi-row `UPDATE` of the write path) keeps the original of
/// each page it changes in a statement journal, which SQLite writes to a temporary file once it
/// passes 64 KiB, as a batch's statements do. Those writes took a fifth of the writer's thread
/// (`perf`, Starts of a NAS reboot storm); in memory the storm's Starts go about 1.3x as fast
/// and the mixed ingest about 1.14x (README, Performance). A statement journal holds at most the
/// pages one statement changes; a sort without an index also stays in memory, and radacctd's
/// reads are paged.
pub fn connect_options(url: &str) -> Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT)
        .pragma("temp_store", "MEMORY"))
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = connect_options(url)?;
        let pool = open_pool(options.clone(), POOL_SIZE).await?;
        let writer = open_pool(options.clone(), 1).await?;
        let checkpointer = open_pool(options, 1).await?;
        Ok(Self {
            pool,
            writer,
            checkpointer,
        })
    }

    /// Closes every pool.
    pub async fn close(&self) {
        self.writer.close().await;
        self.checkpointer.close().await;
        self.pool.close().await;
    }

    /// Copies committed WAL pages into the database file every [`CHECKPOINT_INTERVAL`], until
    /// `shutdown`. A PASSIVE checkpoint takes no lock the writer needs, so the copy and its fsync
    /// run beside the commits instead of inside one. Left to itself, SQLite checkpoints on the
    /// committing connection every 1,000 pages: several times a second under load (each batch
    /// of Starts dirties about a page per index per session), and every packet of the batches
    /// behind it waits. Measured in the README (Performance, Ingest).
    pub async fn checkpoint_wal(self, shutdown: CancellationToken) {
        super::every(CHECKPOINT_INTERVAL, &shutdown, "WAL checkpoint", || async {
            let started = std::time::Instant::now();
            let (busy, wal_pages, copied): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&self.checkpointer)
                    .await?;
            tracing::trace!(
                ms = started.elapsed().as_millis() as u64,
                busy,
                wal_pages,
                copied,
                "WAL checkpoint"
            );
            Ok(())
        })
        .await
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn apply(&self, plan: &Plan<'_>, domain: &str) -> Result<()> {
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
        tx.commit().await?;
        Ok(())
    }

    /// Finds stale sessions without the write lock, then closes them in short transactions
    /// ([`REAP_CHUNK`] each), checking again that each is still stale.
    pub async fn close_stale(&self, now: i64, stale_after: Option<i64>) -> Result<Vec<String>> {
        let mut closed = Vec::new();
        loop {
            let ids: Vec<i64> = sqlx::query_scalar(STALE_SESSIONS)
                .bind(now)
                .bind(stale_after)
                .bind(REAP_SCAN)
                .fetch_all(&self.pool)
                .await?;
            for chunk in ids.chunks(REAP_CHUNK) {
                let uids: Vec<String> = sqlx::query_scalar(CLOSE_STALE)
                    .bind(now)
                    .bind(stale_after)
                    .bind(json_ids(chunk))
                    .fetch_all(&self.pool)
                    .await?;
                closed.extend(uids);
            }
            if (ids.len() as i64) < REAP_SCAN {
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
                    coa_port: u16::try_from(r.try_get::<i64, _>("coa_port")?).unwrap_or(3799),
                })
            })
            .collect()
    }

    pub async fn nas_add(&self, row: &NasRow) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO nas (nasname, shortname, secret, coa_port) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (nasname) DO NOTHING",
        )
        .bind(&row.nasname)
        .bind(&row.shortname)
        .bind(&row.secret)
        .bind(i64::from(row.coa_port))
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
        let result = sqlx::query("DELETE FROM nas WHERE nasname = ?1")
            .bind(nasname)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

async fn apply_stage(tx: &mut sqlx::SqliteConnection, stage: &Stage<'_>) -> Result<()> {
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

const USER_COLUMNS: &str = "SELECT id, uuid, login, domain, role, password_hash FROM users ";

const SESSION_COLUMNS: &str =
    "SELECT s.id, s.session_id, s.user_id, u.uuid AS user_uuid, u.login, u.role, \
     s.domain, s.site, s.node, s.console_type, s.host, s.login_time, s.expires_at, s.logout_time \
     FROM web_sessions s JOIN users u ON u.id = s.user_id ";

impl SqliteStore {
    pub async fn record_login_failure(&self, ip: &str, at: i64, forget_before: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM login_failures WHERE at < ?1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO login_failures (ip, at) VALUES (?1, ?2)")
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
            "SELECT at FROM login_failures WHERE ip = ?1 AND at > ?2 ORDER BY at DESC LIMIT ?3",
        )
        .bind(ip)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn user_by_login(&self, domain: &str, login: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("{USER_COLUMNS}WHERE domain = ?1 AND login = ?2"))
            .bind(domain)
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(user_row!(r))).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("{USER_COLUMNS}WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(user_row!(r))).transpose()
    }

    pub async fn user_by_uuid(&self, uuid: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("{USER_COLUMNS}WHERE uuid = ?1"))
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
        let created = sqlx::query(
            "INSERT INTO users (uuid, login, domain, role, password_hash) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (domain, login) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash \
             WHERE users.password_hash IS NULL RETURNING id",
        )
        .bind(uuid::Uuid::new_v4().to_string())
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
        let r = sqlx::query("UPDATE users SET password_hash = ?3 WHERE domain = ?1 AND login = ?2")
            .bind(domain)
            .bind(login)
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn user_delete(&self, domain: &str, login: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM users WHERE domain = ?1 AND login = ?2")
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
             login_time, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
        )
        .bind(s.session_id)
        .bind(s.token_hash)
        .bind(s.user_id)
        .bind(s.domain)
        .bind(s.site)
        .bind(s.node)
        .bind(s.console_type)
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
            "{SESSION_COLUMNS}WHERE s.token_hash = ?1 AND s.logout_time IS NULL AND s.expires_at > ?2"
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
            "{SESSION_COLUMNS}WHERE s.user_id = ?1 AND ((s.logout_time IS NULL AND s.expires_at > ?2) \
             OR (?4 = 0 AND COALESCE(s.logout_time, s.expires_at) >= ?3)) ORDER BY s.login_time, s.id"
        ))
        .bind(user_id)
        .bind(now)
        .bind(since)
        .bind(only_open)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(web_session_row!(r))).collect()
    }
}

// ---- reading sessions ---------------------------------------------------------------------

const SESSION_ROW: &str = "SELECT radacctid, acctsessionid, acctuniqueid, username, nasipaddress, nasportid, \
     nasporttype, acctstarttime, acctupdatetime, acctstoptime, acctsessiontime, acctinputoctets, \
     acctoutputoctets, connectinfo_start, connectinfo_stop, calledstationid, callingstationid, \
     acctterminatecause, framedipaddress, framedipv6address, framedipv6prefix, delegatedipv6prefix ";

impl SqliteStore {
    pub async fn online_sessions_of(&self, username: &str) -> Result<Vec<SessionRow>> {
        let rows = sqlx::query(&format!(
            "{SESSION_ROW}FROM radacct WHERE username = ?1 AND acctstoptime IS NULL \
             ORDER BY acctstarttime, radacctid"
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
             AND (?1 IS NULL OR nasipaddress = ?1) \
             AND (?2 IS NULL OR substr(username, 1, length(?2)) = ?2) \
             AND (?3 IS NULL OR framedipaddress = ?3) \
             AND (?4 IS NULL OR (acctstarttime, radacctid) > (?4, ?5)) \
             ORDER BY acctstarttime, radacctid LIMIT ?6"
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
            "SELECT * FROM ({SESSION_ROW}FROM radacct WHERE username = ?1 AND acctstarttime < ?3 \
               AND (acctstoptime IS NULL OR acctstoptime >= ?2) \
             UNION ALL {SESSION_ROW}FROM radacct_history WHERE username = ?1 AND acctstarttime < ?3 \
               AND acctstoptime >= ?2) ORDER BY acctstarttime, radacctid LIMIT ?4"
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
            "SELECT nasipaddress, COUNT(*) AS n FROM radacct WHERE acctstoptime IS NULL \
             GROUP BY nasipaddress ORDER BY nasipaddress",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("nasipaddress")?, r.try_get("n")?)))
            .collect()
    }

    pub async fn session_by_id(&self, radacctid: i64) -> Result<Option<SessionRow>> {
        let row = sqlx::query(&format!("{SESSION_ROW}FROM radacct WHERE radacctid = ?1"))
            .bind(radacctid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(session_row!(r))).transpose()
    }

    /// The rows of these sessions, from `radacct` or (`archived`) from `radacct_history`.
    pub async fn nas_closed_uids(&self, nas: &str, t: i64, cause: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT acctuniqueid FROM radacct WHERE acctstoptime = ?2 AND nasipaddress = ?1 AND acctterminatecause = ?3",
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
        let json = serde_json::to_string(uids).expect("strings serialise");
        let rows = sqlx::query(&format!(
            "{SESSION_ROW}FROM {table} WHERE acctuniqueid IN (SELECT value FROM json_each(?1)) \
             ORDER BY acctstarttime"
        ))
        .bind(json)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(session_row!(r))).collect()
    }
}

// ---- web sessions across nodes --------------------------------------------------------------

impl SqliteStore {
    pub async fn node_heartbeat(&self, node: &str, site: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (node, site, heartbeat) VALUES (?1, ?2, ?3) \
             ON CONFLICT (node) DO UPDATE SET site = excluded.site, heartbeat = excluded.heartbeat",
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
        sqlx::query("INSERT INTO ws_connections (conn_id, session_id, node, pid, opened_at) VALUES (?1, ?2, ?3, ?4, ?5)")
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
        sqlx::query("DELETE FROM ws_connections WHERE conn_id = ?1")
            .bind(conn_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ws_forget_node(&self, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM ws_connections WHERE node = ?1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn open_web_sessions(&self, now: i64) -> Result<Vec<WebSessionRow>> {
        let rows = sqlx::query(&format!(
            "{SESSION_COLUMNS}WHERE s.logout_time IS NULL AND s.expires_at > ?1 ORDER BY s.login_time, s.id"
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
            "SELECT c.conn_id, c.session_id, c.node, c.pid, COALESCE(n.heartbeat >= ?2, 0) AS alive \
             FROM ws_connections c JOIN web_sessions s ON s.session_id = c.session_id \
             LEFT JOIN nodes n ON n.node = c.node \
             WHERE s.logout_time IS NULL AND s.expires_at > ?1 ORDER BY c.opened_at, c.conn_id",
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

    /// Deletes web sessions logged out or expired before `before` (their `ws_connections` rows
    /// go with them), in batches; returns how many.
    pub async fn purge_web_sessions(&self, before: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM web_sessions WHERE id IN (SELECT id FROM web_sessions \
                 WHERE COALESCE(logout_time, expires_at) < ?1 LIMIT ?2)",
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
        let json = serde_json::to_string(session_ids).expect("strings serialise");
        let closed = sqlx::query_scalar(
            "UPDATE web_sessions SET logout_time = ?2 WHERE session_id IN (SELECT value FROM json_each(?1)) \
             AND logout_time IS NULL AND expires_at > ?2 RETURNING session_id",
        )
        .bind(json)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(closed)
    }
}

// ---- history: archive, retention, IP lookup -------------------------------------------------

/// The stale limit of an open session (see the reaper), NULL = never stale.
const STALE_LIMIT: &str = "(CASE WHEN acctinteriminterval > 0 THEN 3 * acctinteriminterval + 60 \
     WHEN acctinterval > 0 THEN 3 * acctinterval + 60 ELSE ?4 END)";

impl SqliteStore {
    /// Moves up to `batch` sessions that stopped before `cutoff` to `radacct_history`, in one
    /// transaction (a crash leaves each row in exactly one table). Returns how many moved.
    pub async fn archive_batch(&self, from: i64, cutoff: i64, batch: i64) -> Result<Archived> {
        // IMMEDIATE: it reads, then writes; a deferred transaction cannot upgrade to a writer
        // once the accounting writer has committed in between, and would fail under load.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT radacctid, acctstoptime FROM radacct WHERE acctstoptime IS NOT NULL \
             AND acctstoptime >= ?1 AND acctstoptime < ?2 ORDER BY acctstoptime LIMIT ?3",
        )
        .bind(from)
        .bind(cutoff)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            // Ended now, so the write lock is not held until the dropped transaction's rollback.
            tx.commit().await?;
            return Ok(Archived::default());
        }
        let ids: Vec<i64> = rows.iter().map(|&(id, _)| id).collect();
        let last_stop = rows.iter().map(|&(_, stop)| stop).max();
        let json = json_ids(&ids);
        // A session id used again (a later start) is another row; the same session archived
        // twice cannot happen (a Start of an archived session updates it in the history), and
        // would keep the newer copy.
        sqlx::query(
            "INSERT INTO radacct_history SELECT * FROM radacct WHERE radacctid IN (SELECT value FROM json_each(?1)) \
             ORDER BY radacctid ON CONFLICT (acctuniqueid, acctstarttime) DO UPDATE SET \
             radacctid = excluded.radacctid, acctsessionid = excluded.acctsessionid, username = excluded.username, \
             realm = excluded.realm, nasipaddress = excluded.nasipaddress, nasportid = excluded.nasportid, \
             nasporttype = excluded.nasporttype, acctstarttime = excluded.acctstarttime, \
             acctupdatetime = excluded.acctupdatetime, acctstoptime = excluded.acctstoptime, \
             acctinterval = excluded.acctinterval, acctsessiontime = excluded.acctsessiontime, \
             acctauthentic = excluded.acctauthentic, connectinfo_start = excluded.connectinfo_start, \
             connectinfo_stop = excluded.connectinfo_stop, acctinputoctets = excluded.acctinputoctets, \
             acctoutputoctets = excluded.acctoutputoctets, calledstationid = excluded.calledstationid, \
             callingstationid = excluded.callingstationid, acctterminatecause = excluded.acctterminatecause, \
             servicetype = excluded.servicetype, framedprotocol = excluded.framedprotocol, \
             framedipaddress = excluded.framedipaddress, framedipv6address = excluded.framedipv6address, \
             framedipv6prefix = excluded.framedipv6prefix, framedinterfaceid = excluded.framedinterfaceid, \
             delegatedipv6prefix = excluded.delegatedipv6prefix, class = excluded.class, \
             acctinteriminterval = excluded.acctinteriminterval",
        )
        .bind(&json)
        .execute(&mut *tx)
        .await?;
        let moved =
            sqlx::query("DELETE FROM radacct WHERE radacctid IN (SELECT value FROM json_each(?1))")
                .bind(&json)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(Archived { moved, last_stop })
    }

    /// Deletes history that stopped before `cutoff`, in batches; returns how many rows.
    pub async fn expire_history(&self, cutoff: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM radacct_history WHERE radacctid IN \
                 (SELECT radacctid FROM radacct_history WHERE acctstoptime < ?1 LIMIT ?2)",
            )
            .bind(cutoff)
            .bind(EXPIRE_CHUNK)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if n < EXPIRE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    pub async fn sessions_by_ip(
        &self,
        ip: std::net::IpAddr,
        at: i64,
        stale_after: Option<i64>,
    ) -> Result<Vec<SessionRow>> {
        let prefixes = serde_json::to_string(&enclosing_prefixes(ip)).expect("strings serialise");
        let address_match = "(framedipaddress = ?1 OR framedipv6address = ?1 \
             OR framedipv6prefix IN (SELECT value FROM json_each(?2)) \
             OR delegatedipv6prefix IN (SELECT value FROM json_each(?2)))";
        let rows = sqlx::query(&format!(
            "SELECT * FROM ({SESSION_ROW}FROM radacct WHERE {address_match} AND acctstarttime <= ?3 \
               AND (acctstoptime > ?3 OR (acctstoptime IS NULL AND ({STALE_LIMIT} IS NULL \
                 OR ?3 < COALESCE(acctupdatetime, acctstarttime) + {STALE_LIMIT}))) \
             UNION ALL {SESSION_ROW}FROM radacct_history WHERE {address_match} AND acctstarttime <= ?3 \
               AND acctstoptime > ?3) ORDER BY acctstarttime, radacctid"
        ))
        .bind(ip.to_string())
        .bind(prefixes)
        .bind(at)
        .bind(stale_after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(session_row!(r))).collect()
    }
}

//! The store: every SQL statement radacctd runs lives in [`sqlite`] or [`postgres`]; this
//! module holds what both share: connecting and migrating, the error classification the
//! writer relies on, and [`plan`], which splits a batch of events into stages that can each be
//! applied with a handful of set-based statements.
//!
//! Batches travel to the database as one JSON array per statement (`json_each` on SQLite,
//! `jsonb_to_recordset` on PostgreSQL), so a batch of a thousand events costs a handful of
//! statements, not a thousand round trips.

pub mod archiver;
pub mod postgres;
pub mod reaper;
pub mod sessions;
pub mod sqlite;
pub mod users;
pub mod writer;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::radius::accounting::{Event, NasReboot, SessionEvent, SessionKind};
use sessions::{After, OnlineFilter, SessionRow};
use users::{NewWebSession, UserRow, WebSessionRow, WsConnectionRow};

/// Batches the writer commits at once on PostgreSQL (see [`Store::pipeline_depth`]).
pub const PG_PIPELINE_DEPTH: usize = 2;

/// A storage failure, classified for the writer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether retrying the same work later may succeed (connection lost, database locked or
    /// full, deadlock), as opposed to a value the database will never accept.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                // PostgreSQL SQLSTATE classes: 22 data exception, 23 integrity violation,
                // 42 syntax or access rule: permanent. SQLite primary codes: 18 TOOBIG,
                // 19 CONSTRAINT, 20 MISMATCH, 25 RANGE: permanent.
                let permanent_pg = code.len() == 5
                    && (code.starts_with("22") || code.starts_with("23") || code.starts_with("42"));
                let permanent_sqlite = code
                    .parse::<i32>()
                    .map(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
                    .unwrap_or(false);
                !(permanent_pg || permanent_sqlite)
            }
            StoreError::Database(sqlx::Error::ColumnDecode { .. })
            | StoreError::Database(sqlx::Error::Decode(_))
            | StoreError::Database(sqlx::Error::TypeNotFound { .. })
            | StoreError::Database(sqlx::Error::ColumnNotFound(_))
            | StoreError::Migrate(_)
            | StoreError::Conflict(_) => false,
            StoreError::Database(_) => true,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database behind radacctd.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// What one archiver batch moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Archived {
    /// Sessions moved to `radacct_history`.
    pub moved: u64,
    /// The latest stop time among them (Unix seconds): the next batch of the pass starts there.
    pub last_stop: Option<i64>,
}

/// A `nas` table row as the CLI and the client table see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NasRow {
    pub nasname: String,
    pub shortname: String,
    #[serde(skip)]
    pub secret: String,
    pub coa_port: u16,
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Connects (creating an SQLite file if needed) without migrating.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::connect(url).await?))
        } else {
            Ok(Store::Postgres(postgres::PgStore::connect(url).await?))
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.migrate().await,
            Store::Postgres(s) => s.migrate().await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Answers when the database answers.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
        }
    }

    /// How many batches the writer commits at once. PostgreSQL runs two transactions side by
    /// side (one executes while the other waits for its WAL flush); SQLite has one writer.
    pub fn pipeline_depth(&self) -> usize {
        match self {
            Store::Sqlite(_) => 1,
            Store::Postgres(_) => PG_PIPELINE_DEPTH,
        }
    }

    /// Whether committed changes are published by the writer (SQLite, one node) rather than by
    /// the database to every node (PostgreSQL NOTIFY).
    pub fn publishes_locally(&self) -> bool {
        matches!(self, Store::Sqlite(_))
    }

    /// Applies a batch of events in one transaction, in order, and commits it.
    pub async fn apply(&self, events: &[&Event], domain: &str) -> Result<()> {
        let plan = plan(events);
        match self {
            Store::Sqlite(s) => s.apply(&plan, domain).await,
            Store::Postgres(s) => {
                s.apply(
                    &plan,
                    &crate::events::changes(events.iter().copied()),
                    domain,
                )
                .await
            }
        }
    }

    /// Closes stale sessions (see [`reaper`]); returns their `acctuniqueid`s. On PostgreSQL
    /// every node has been told of them (NOTIFY); on SQLite the caller publishes them.
    pub async fn close_stale(&self, now: i64, stale_after: Option<i64>) -> Result<Vec<String>> {
        match self {
            Store::Sqlite(s) => s.close_stale(now, stale_after).await,
            Store::Postgres(s) => s.close_stale(now, stale_after).await,
        }
    }

    pub async fn nas_list(&self) -> Result<Vec<NasRow>> {
        match self {
            Store::Sqlite(s) => s.nas_list().await,
            Store::Postgres(s) => s.nas_list().await,
        }
    }

    pub async fn nas_add(&self, row: &NasRow) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.nas_add(row).await,
            Store::Postgres(s) => s.nas_add(row).await,
        }
    }

    /// Deletes a NAS; returns whether it existed.
    pub async fn nas_del(&self, nasname: &str) -> Result<bool> {
        match self {
            Store::Sqlite(s) => s.nas_del(nasname).await,
            Store::Postgres(s) => s.nas_del(nasname).await,
        }
    }

    /// Records a failed login from `ip` at `at` and deletes every failure before `forget_before`.
    pub async fn record_login_failure(&self, ip: &str, at: i64, forget_before: i64) -> Result<()> {
        dispatch!(self, s => s.record_login_failure(ip, at, forget_before).await)
    }

    /// The times of the newest `limit` failed logins from `ip` after `since`, newest first.
    pub async fn recent_login_failures(
        &self,
        ip: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        dispatch!(self, s => s.recent_login_failures(ip, since, limit).await)
    }

    pub async fn user_by_login(&self, domain: &str, login: &str) -> Result<Option<UserRow>> {
        dispatch!(self, s => s.user_by_login(domain, login).await)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        dispatch!(self, s => s.user_by_id(id).await)
    }

    pub async fn user_by_uuid(&self, uuid: &str) -> Result<Option<UserRow>> {
        dispatch!(self, s => s.user_by_uuid(uuid).await)
    }

    pub async fn user_list(&self) -> Result<Vec<UserRow>> {
        dispatch!(self, s => s.user_list().await)
    }

    /// Creates a user, or gives a role and password to one first seen in accounting (which has
    /// no password). A user that already has a password is a [`StoreError::Conflict`].
    pub async fn user_create(
        &self,
        domain: &str,
        login: &str,
        role: &str,
        hash: Option<&str>,
    ) -> Result<UserRow> {
        dispatch!(self, s => s.user_create(domain, login, role, hash).await)
    }

    pub async fn user_set_password(&self, domain: &str, login: &str, hash: &str) -> Result<bool> {
        dispatch!(self, s => s.user_set_password(domain, login, hash).await)
    }

    pub async fn user_delete(&self, domain: &str, login: &str) -> Result<bool> {
        dispatch!(self, s => s.user_delete(domain, login).await)
    }

    pub async fn admin_exists(&self) -> Result<bool> {
        dispatch!(self, s => s.admin_exists().await)
    }

    /// Records a Login; returns its `browserSessionId`.
    pub async fn session_create(&self, session: &NewWebSession<'_>) -> Result<i64> {
        dispatch!(self, s => s.session_create(session).await)
    }

    /// The open, unexpired session holding this token hash.
    pub async fn session_by_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<WebSessionRow>> {
        dispatch!(self, s => s.session_by_token(token_hash, now).await)
    }

    /// A user's console sessions: open ones, and (unless `only_open`) those closed since `since`.
    pub async fn console_sessions(
        &self,
        user_id: i64,
        now: i64,
        since: i64,
        only_open: bool,
    ) -> Result<Vec<WebSessionRow>> {
        dispatch!(self, s => s.console_sessions(user_id, now, since, only_open).await)
    }

    /// A user's open sessions, oldest first (the partial index on open sessions).
    pub async fn online_sessions_of(&self, username: &str) -> Result<Vec<SessionRow>> {
        dispatch!(self, s => s.online_sessions_of(username).await)
    }

    /// Open sessions matching `filter`, in (start time, radacctid) order, after the cursor.
    pub async fn online_sessions(
        &self,
        filter: &OnlineFilter,
        after: Option<After>,
        limit: i64,
    ) -> Result<Vec<SessionRow>> {
        dispatch!(self, s => s.online_sessions(filter, after, limit).await)
    }

    /// A user's sessions (live and archived) that overlap [from, to).
    pub async fn session_history(
        &self,
        username: &str,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<SessionRow>> {
        dispatch!(self, s => s.session_history(username, from, to, limit).await)
    }

    pub async fn online_counts_by_nas(&self) -> Result<Vec<(String, i64)>> {
        dispatch!(self, s => s.online_counts_by_nas().await)
    }

    pub async fn session_by_id(&self, radacctid: i64) -> Result<Option<SessionRow>> {
        dispatch!(self, s => s.session_by_id(radacctid).await)
    }

    /// The `acctuniqueid`s of the sessions of `nas` that an Accounting-On/Off at `t` closed
    /// with `cause` (any other session of the NAS closed at that second with that cause too).
    pub async fn nas_closed_uids(&self, nas: &str, t: i64, cause: &str) -> Result<Vec<String>> {
        dispatch!(self, s => s.nas_closed_uids(nas, t, cause).await)
    }

    /// The rows of these sessions (by `acctuniqueid`), live or archived; unknown ones are
    /// left out. The history is read only for those not found live (a late Stop of an
    /// archived session), as on PostgreSQL it means a probe in every monthly partition.
    /// Archived rows come oldest first: when a NAS used a session id again, the newest row of
    /// that `acctuniqueid` is the last.
    pub async fn sessions_by_uids(&self, uids: &[String]) -> Result<Vec<SessionRow>> {
        let mut rows = dispatch!(self, s => s.sessions_by_uids(uids, false).await)?;
        if rows.len() < uids.len() {
            let found: HashSet<&str> = rows.iter().map(|r| r.acctuniqueid.as_str()).collect();
            let missing: Vec<String> = uids
                .iter()
                .filter(|u| !found.contains(u.as_str()))
                .cloned()
                .collect();
            rows.extend(dispatch!(self, s => s.sessions_by_uids(&missing, true).await)?);
        }
        Ok(rows)
    }

    pub async fn node_heartbeat(&self, node: &str, site: &str, now: i64) -> Result<()> {
        dispatch!(self, s => s.node_heartbeat(node, site, now).await)
    }

    pub async fn ws_open(
        &self,
        conn_id: &str,
        session_id: &str,
        node: &str,
        pid: &str,
        now: i64,
    ) -> Result<()> {
        dispatch!(self, s => s.ws_open(conn_id, session_id, node, pid, now).await)
    }

    pub async fn ws_close(&self, conn_id: &str) -> Result<()> {
        dispatch!(self, s => s.ws_close(conn_id).await)
    }

    /// Forgets the connections a node held before it restarted.
    pub async fn ws_forget_node(&self, node: &str) -> Result<()> {
        dispatch!(self, s => s.ws_forget_node(node).await)
    }

    /// Every open, unexpired web session.
    pub async fn open_web_sessions(&self, now: i64) -> Result<Vec<WebSessionRow>> {
        dispatch!(self, s => s.open_web_sessions(now).await)
    }

    /// WebSocket connections of open sessions; `alive` when their node's heartbeat is at or
    /// after `alive_since`.
    pub async fn open_ws_connections(
        &self,
        now: i64,
        alive_since: i64,
    ) -> Result<Vec<WsConnectionRow>> {
        dispatch!(self, s => s.open_ws_connections(now, alive_since).await)
    }

    /// Closes these sessions (those still open); returns the ones it closed. On PostgreSQL every
    /// node is told, so their WebSocket connections close too.
    pub async fn close_web_sessions(
        &self,
        session_ids: &[String],
        now: i64,
    ) -> Result<Vec<String>> {
        dispatch!(self, s => s.close_web_sessions(session_ids, now).await)
    }

    /// Moves one batch of the sessions that stopped in `from..cutoff` (Unix seconds), earliest
    /// stop first, to `radacct_history` (see [`archiver`]); nothing on a node that does not hold
    /// the archiver lock.
    pub async fn archive_batch(&self, from: i64, cutoff: i64, batch: i64) -> Result<Archived> {
        dispatch!(self, s => s.archive_batch(from, cutoff, batch).await)
    }

    /// Removes history that stopped before `cutoff` (whole months on PostgreSQL).
    pub async fn expire_history(&self, cutoff: i64) -> Result<u64> {
        dispatch!(self, s => s.expire_history(cutoff).await)
    }

    /// Sessions, live or archived, whose IPv4 address, IPv6 address or IPv6 prefix held `ip` at
    /// `at`: started at or before it and stopped after it, or open and not yet stale.
    pub async fn sessions_by_ip(
        &self,
        ip: std::net::IpAddr,
        at: i64,
        stale_after: Option<i64>,
    ) -> Result<Vec<SessionRow>> {
        dispatch!(self, s => s.sessions_by_ip(ip, at, stale_after).await)
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// The database's upkeep, until `shutdown`: web sessions closed longer than
    /// `web_session_retention` ago are deleted; SQLite checkpoints its WAL beside the writer;
    /// PostgreSQL keeps the planner statistics of the written tables fresh, and vacuums them
    /// where autovacuum is off.
    pub async fn housekeeping(
        self,
        web_session_retention: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        let database = async {
            match self.clone() {
                Store::Sqlite(s) => s.checkpoint_wal(shutdown.clone()).await,
                Store::Postgres(s) => {
                    tokio::join!(
                        s.clone().keep_statistics(shutdown.clone()),
                        s.keep_vacuumed(shutdown.clone())
                    );
                }
            }
        };
        let retention = i64::try_from(web_session_retention.as_secs()).unwrap_or(i64::MAX / 2);
        let web_sessions = every(
            WEB_SESSION_PURGE_INTERVAL,
            &shutdown,
            "deleting old web sessions",
            || async {
                let before = chrono::Utc::now().timestamp().saturating_sub(retention);
                let n = self.purge_web_sessions(before).await?;
                if n > 0 {
                    tracing::debug!(n, "deleted web sessions closed before sessions.retention");
                }
                Ok(())
            },
        );
        tokio::join!(database, web_sessions);
    }

    /// Deletes the web sessions (and their WebSocket connection records) that were logged out
    /// or expired before `before`, in batches; returns how many.
    pub async fn purge_web_sessions(&self, before: i64) -> Result<u64> {
        dispatch!(self, s => s.purge_web_sessions(before).await)
    }
}

/// How often web sessions past `sessions.retention` are deleted (and once at start).
const WEB_SESSION_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
/// Web sessions deleted per statement by that purge.
const WEB_SESSION_PURGE_CHUNK: i64 = 5_000;

/// Runs `step` every `interval` until `shutdown` (background upkeep). A failure is logged when
/// it starts and when it ends, not at every tick. Shutdown does not wait for a step: upkeep may
/// run for minutes (a throttled VACUUM of a large table) or wait on a lock another client holds,
/// and every step is safe to abandon (a transaction left unfinished is rolled back).
async fn every<F, Fut>(
    interval: std::time::Duration,
    shutdown: &CancellationToken,
    what: &str,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = step() => outcome,
        };
        match outcome {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("{what} works again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "{what} failed; will retry");
            }
            Err(_) => {}
        }
    }
}

/// One step of a batch.
#[derive(Debug, Default)]
pub struct Stage<'a> {
    pub starts: Vec<&'a SessionEvent>,
    pub interims: Vec<&'a SessionEvent>,
    pub stops: Vec<&'a SessionEvent>,
}

#[derive(Debug)]
pub enum Step<'a> {
    /// Session events with pairwise distinct `acctuniqueid`s: they touch disjoint rows, so the
    /// order among them does not matter.
    Sessions(Stage<'a>),
    /// Accounting-On/Off: a barrier that closes sessions of one NAS.
    Reboot(&'a NasReboot),
}

/// A batch split into steps that preserve every order that matters.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Distinct non-empty user names of the batch, each to exist in `users`.
    pub usernames: Vec<&'a str>,
    pub steps: Vec<Step<'a>>,
}

/// Splits a batch so that (1) the events of one session apply in arrival order, each in a
/// later stage than the one before it, and (2) an Accounting-On/Off applies after everything
/// before it and before everything after it.
pub fn plan<'a>(events: &[&'a Event]) -> Plan<'a> {
    let mut steps: Vec<Step<'_>> = Vec::new();
    // First step index that session events may use (just after the last barrier).
    let mut floor = 0usize;
    let mut last_step_of: HashMap<&str, usize> = HashMap::new();
    let mut seen_users = HashSet::new();
    let mut usernames = Vec::new();
    for &event in events {
        match event {
            Event::NasReboot(reboot) => {
                steps.push(Step::Reboot(reboot));
                floor = steps.len();
                last_step_of.clear();
            }
            Event::Session(s) => {
                let s: &SessionEvent = s;
                if !s.username.is_empty() && seen_users.insert(s.username.as_str()) {
                    usernames.push(s.username.as_str());
                }
                let index = last_step_of.get(s.uid.as_str()).map_or(floor, |&i| i + 1);
                while steps.len() <= index {
                    steps.push(Step::Sessions(Stage::default()));
                }
                let Step::Sessions(stage) = &mut steps[index] else {
                    unreachable!("indexes at or past the floor are session stages");
                };
                match s.kind {
                    SessionKind::Start => stage.starts.push(s),
                    SessionKind::Interim => stage.interims.push(s),
                    SessionKind::Stop => stage.stops.push(s),
                }
                last_step_of.insert(s.uid.as_str(), index);
            }
        }
    }
    Plan { usernames, steps }
}

/// A new user row for a user name first seen in accounting.
#[derive(Debug, Serialize)]
pub(crate) struct NewUser<'a> {
    pub login: &'a str,
    pub uuid: String,
}

pub(crate) fn new_users_json(usernames: &[&str]) -> String {
    let users: Vec<NewUser<'_>> = usernames
        .iter()
        .map(|login| NewUser {
            login,
            uuid: uuid::Uuid::new_v4().to_string(),
        })
        .collect();
    serde_json::to_string(&users).expect("user names serialise")
}

pub(crate) fn events_json(events: &[&SessionEvent]) -> String {
    serde_json::to_string(events).expect("session events serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ev(kind: SessionKind, uid: &str) -> Event {
        Event::Session(Box::new(SessionEvent {
            kind,
            t: 1,
            uid: uid.into(),
            sid: String::new(),
            username: format!("user-{uid}"),
            nas: "127.0.0.1".into(),
            port_id: None,
            port_type: String::new(),
            authentic: String::new(),
            connect_info: String::new(),
            called: String::new(),
            calling: String::new(),
            service: String::new(),
            protocol: String::new(),
            ip: None,
            ip6: None,
            prefix6: None,
            ifid: None,
            delegated6: None,
            class: None,
            session_time: None,
            input_octets: 0,
            output_octets: 0,
            cause: String::new(),
            interim_interval: None,
        }))
    }

    fn shape(plan: &Plan<'_>) -> Vec<String> {
        plan.steps
            .iter()
            .map(|s| match s {
                Step::Reboot(_) => "reboot".to_owned(),
                Step::Sessions(st) => format!(
                    "s{} i{} p{}",
                    st.starts.iter().map(|e| e.uid.as_str()).collect::<String>(),
                    st.interims
                        .iter()
                        .map(|e| e.uid.as_str())
                        .collect::<String>(),
                    st.stops.iter().map(|e| e.uid.as_str()).collect::<String>()
                ),
            })
            .collect()
    }

    #[test]
    fn events_of_one_session_land_in_successive_stages() {
        use SessionKind::*;
        let events = [
            ev(Start, "a"),
            ev(Start, "b"),
            ev(Interim, "a"),
            ev(Stop, "a"),
            ev(Stop, "b"),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let p = plan(&refs);
        assert_eq!(shape(&p), vec!["sab i p", "s ia pb", "s i pa"]);
        assert_eq!(p.usernames, vec!["user-a", "user-b"]);
    }

    #[test]
    fn a_reboot_is_a_barrier() {
        use SessionKind::*;
        let reboot = Event::NasReboot(NasReboot {
            nas: "127.0.0.1".into(),
            t: 1,
            cause: "NAS-Reboot".into(),
        });
        let events = [ev(Start, "a"), reboot, ev(Start, "b"), ev(Interim, "a")];
        let refs: Vec<&Event> = events.iter().collect();
        let p = plan(&refs);
        assert_eq!(shape(&p), vec!["sa i p", "reboot", "sb ia p"]);
    }
}

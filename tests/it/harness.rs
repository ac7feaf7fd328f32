//! The shared test harness: a database per test (SQLite file or a fresh PostgreSQL database),
//! a radacctd node started in-process on port 0, a NAS that sends signed packets over UDP, and
//! helpers that read `radacct` back with SQL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use radacctd::app::App;
use radacctd::config::{Config, Layer};
use radacctd::metrics::Metrics;
use radacctd::radius::builder::{is_accounting_response, Request};
use radacctd::radius::dict;
use sqlx::Row;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "testing123";
/// The bootstrap admin's password in every test node.
pub const ADMIN_PASSWORD: &str = "admin-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod name { sqlite, postgres }` tests that call `name(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::harness::Backend::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL server tests use (trust auth): `RADACCTD_TEST_PG` or the local default.
pub fn pg_server() -> String {
    std::env::var("RADACCTD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database that exists for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// PostgreSQL: the database name, dropped at the end.
    pg_name: Option<String>,
    /// SQLite: the directory holding the file.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("radacctd.db").display());
                Self {
                    backend,
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("radacctd_test_{}", uuid::Uuid::new_v4().simple());
                let admin = pg_admin().await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                Self {
                    backend,
                    url: format!("{}/{name}", pg_server()),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    /// Drops a PostgreSQL test database (SQLite files go with their temp dir).
    pub async fn drop_db(&self) {
        if let Some(name) = &self.pg_name {
            let admin = pg_admin().await;
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }

    /// An SQLite database at `path`, in a directory the caller owns (e.g. a small file system
    /// mounted for the test).
    pub fn sqlite_at(path: &std::path::Path) -> Self {
        Self {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", path.display()),
            pg_name: None,
            _dir: None,
        }
    }

    pub fn pg_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }

    /// The same database for a second node; dropping it leaves the database alone.
    pub fn shared(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            pg_name: None,
            _dir: None,
        }
    }
}

pub async fn pg_admin() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/postgres", pg_server()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} is required for the tests: {e}",
                pg_server()
            )
        })
}

/// A config for tests: loopback, port 0, the test database.
pub fn test_config(db: &TestDb) -> Config {
    let mut layer = Layer::from_toml(&format!(
        r#"
        database_url = "{}"
        node = "test-node"
        admin_password = "{ADMIN_PASSWORD}"
        [radius]
        listen = ["127.0.0.1:0"]
        [http]
        listen = "127.0.0.1:0"
        "#,
        db.url
    ))
    .expect("test config parses");
    layer.site = Some("central".into());
    layer.resolve().expect("test config is valid")
}

/// A running node.
pub struct TestApp {
    pub db: TestDb,
    pub radius: SocketAddr,
    pub http: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    store: radacctd::store::Store,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pool: Pool,
}

/// A connection to the test database for assertions.
pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new(backend).await;
    spawn_app_on(db, tweak).await
}

pub async fn spawn_app_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&db);
    tweak(&mut config);
    let app = App::build(config).await.expect("app builds");
    let radius = app.radius_addrs()[0];
    let http = app.http_addr();
    let metrics = app.metrics();
    let shutdown = app.shutdown_token();
    let store = app.store();
    let handle = tokio::spawn(app.run_until_stopped());
    let pool = match db.backend {
        Backend::Sqlite => Pool::Sqlite(
            sqlx::SqlitePool::connect(&db.url)
                .await
                .expect("sqlite pool"),
        ),
        Backend::Postgres => Pool::Postgres(sqlx::PgPool::connect(&db.url).await.expect("pg pool")),
    };
    TestApp {
        db,
        radius,
        http,
        metrics,
        shutdown,
        store,
        handle: Some(handle),
        pool,
    }
}

/// One `radacct` row, read the same way on both databases (times as UNIX seconds, addresses
/// as text).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Session {
    pub radacctid: i64,
    pub acctsessionid: String,
    pub acctuniqueid: String,
    pub username: Option<String>,
    pub realm: Option<String>,
    pub nasipaddress: String,
    pub nasportid: Option<String>,
    pub nasporttype: Option<String>,
    pub acctstarttime: Option<i64>,
    pub acctupdatetime: Option<i64>,
    pub acctstoptime: Option<i64>,
    pub acctinterval: Option<i64>,
    pub acctsessiontime: Option<i64>,
    pub acctauthentic: Option<String>,
    pub connectinfo_start: Option<String>,
    pub connectinfo_stop: Option<String>,
    pub acctinputoctets: Option<i64>,
    pub acctoutputoctets: Option<i64>,
    pub calledstationid: Option<String>,
    pub callingstationid: Option<String>,
    pub acctterminatecause: Option<String>,
    pub servicetype: Option<String>,
    pub framedprotocol: Option<String>,
    pub framedipaddress: Option<String>,
    pub framedipv6address: Option<String>,
    pub framedipv6prefix: Option<String>,
    pub framedinterfaceid: Option<String>,
    pub delegatedipv6prefix: Option<String>,
    pub class: Option<String>,
}

const PG_SELECT: &str = "SELECT radacctid, acctsessionid, acctuniqueid, username, realm, host(nasipaddress) AS nasipaddress, \
    nasportid, nasporttype, EXTRACT(EPOCH FROM acctstarttime)::bigint AS acctstarttime, \
    EXTRACT(EPOCH FROM acctupdatetime)::bigint AS acctupdatetime, EXTRACT(EPOCH FROM acctstoptime)::bigint AS acctstoptime, \
    acctinterval, acctsessiontime, acctauthentic, connectinfo_start, connectinfo_stop, acctinputoctets, acctoutputoctets, \
    calledstationid, callingstationid, acctterminatecause, servicetype, framedprotocol, host(framedipaddress) AS framedipaddress, \
    host(framedipv6address) AS framedipv6address, framedipv6prefix::text AS framedipv6prefix, framedinterfaceid, \
    delegatedipv6prefix::text AS delegatedipv6prefix, class FROM ";

const SQLITE_SELECT: &str = "SELECT radacctid, acctsessionid, acctuniqueid, username, realm, nasipaddress, nasportid, nasporttype, \
    acctstarttime, acctupdatetime, acctstoptime, acctinterval, acctsessiontime, acctauthentic, connectinfo_start, \
    connectinfo_stop, acctinputoctets, acctoutputoctets, calledstationid, callingstationid, acctterminatecause, \
    servicetype, framedprotocol, framedipaddress, framedipv6address, framedipv6prefix, framedinterfaceid, \
    delegatedipv6prefix, class FROM ";

macro_rules! session_from_row {
    ($r:expr) => {
        Session {
            radacctid: $r.get("radacctid"),
            acctsessionid: $r.get("acctsessionid"),
            acctuniqueid: $r.get("acctuniqueid"),
            username: $r.get("username"),
            realm: $r.get("realm"),
            nasipaddress: $r.get("nasipaddress"),
            nasportid: $r.get("nasportid"),
            nasporttype: $r.get("nasporttype"),
            acctstarttime: $r.get("acctstarttime"),
            acctupdatetime: $r.get("acctupdatetime"),
            acctstoptime: $r.get("acctstoptime"),
            acctinterval: $r.get("acctinterval"),
            acctsessiontime: $r.get("acctsessiontime"),
            acctauthentic: $r.get("acctauthentic"),
            connectinfo_start: $r.get("connectinfo_start"),
            connectinfo_stop: $r.get("connectinfo_stop"),
            acctinputoctets: $r.get("acctinputoctets"),
            acctoutputoctets: $r.get("acctoutputoctets"),
            calledstationid: $r.get("calledstationid"),
            callingstationid: $r.get("callingstationid"),
            acctterminatecause: $r.get("acctterminatecause"),
            servicetype: $r.get("servicetype"),
            framedprotocol: $r.get("framedprotocol"),
            framedipaddress: $r.get("framedipaddress"),
            framedipv6address: $r.get("framedipv6address"),
            framedipv6prefix: $r.get("framedipv6prefix"),
            framedinterfaceid: $r.get("framedinterfaceid"),
            delegatedipv6prefix: $r.get("delegatedipv6prefix"),
            class: $r.get("class"),
        }
    };
}

/// Every row of `table` (`radacct`, `radacct_history` or `radacct_all`), by radacctid.
pub async fn rows_in(pool: &Pool, table: &str) -> Vec<Session> {
    assert!(matches!(
        table,
        "radacct" | "radacct_history" | "radacct_all"
    ));
    match pool {
        Pool::Sqlite(p) => sqlx::query(&format!("{SQLITE_SELECT}{table} ORDER BY radacctid"))
            .fetch_all(p)
            .await
            .expect("select radacct")
            .iter()
            .map(|r| session_from_row!(r))
            .collect(),
        Pool::Postgres(p) => sqlx::query(&format!("{PG_SELECT}{table} ORDER BY radacctid"))
            .fetch_all(p)
            .await
            .expect("select radacct")
            .iter()
            .map(|r| session_from_row!(r))
            .collect(),
    }
}

/// Every `radacct` row of the database at `url` (for tests that run the binary).
pub async fn radacct_at(url: &str) -> Vec<Session> {
    let pool = if url.starts_with("sqlite:") {
        Pool::Sqlite(sqlx::SqlitePool::connect(url).await.expect("open SQLite"))
    } else {
        Pool::Postgres(
            sqlx::PgPool::connect(url)
                .await
                .expect("connect PostgreSQL"),
        )
    };
    let rows = rows_in(&pool, "radacct").await;
    match pool {
        Pool::Sqlite(p) => p.close().await,
        Pool::Postgres(p) => p.close().await,
    }
    rows
}

impl TestApp {
    /// Every row of `table` (`radacct` or `radacct_history`), by radacctid.
    pub async fn rows(&self, table: &str) -> Vec<Session> {
        rows_in(&self.pool, table).await
    }

    pub async fn sessions(&self) -> Vec<Session> {
        self.rows("radacct").await
    }

    /// The one row with this Acct-Session-Id.
    pub async fn session(&self, acctsessionid: &str) -> Session {
        let rows: Vec<Session> = self
            .sessions()
            .await
            .into_iter()
            .filter(|s| s.acctsessionid == acctsessionid)
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "expected one row for {acctsessionid}, got {rows:#?}"
        );
        rows.into_iter().next().expect("one row")
    }

    /// `SELECT COUNT(*) FROM table`.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.pool {
            Pool::Sqlite(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
            Pool::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement on the test database (for sabotage and setup).
    pub async fn execute(&self, sql: &str) {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Pool::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Logins of the accounting users (role subscriber; the bootstrap admin is left out), sorted.
    pub async fn user_logins(&self) -> Vec<String> {
        let sql = "SELECT login FROM users WHERE role = 'subscriber' ORDER BY login";
        match &self.pool {
            Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .expect("select users")
    }

    /// The node's store, to call what its background tasks call (e.g. the reaper).
    pub fn store(&self) -> radacctd::store::Store {
        self.store.clone()
    }

    pub fn nas(&self) -> Nas {
        Nas::new(self.radius, SECRET)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Stops the node (graceful drain) and drops its database.
    pub async fn stop(self) {
        let took = self.stop_timed().await;
        assert!(took < Duration::from_secs(15), "node took {took:?} to stop");
    }

    /// Stops the node and drops its database; returns how long the node took to stop (it must
    /// stop cleanly within a minute).
    pub async fn stop_timed(mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(60), handle)
                .await
                .expect("node stops within a minute")
                .expect("node task joins")
                .expect("node stops cleanly");
        }
        let took = started.elapsed();
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
        self.db.drop_db().await;
        took
    }
}

/// A simulated NAS on 127.0.0.1 that sends signed Accounting-Requests.
pub struct Nas {
    server: SocketAddr,
    pub secret: Vec<u8>,
    next_id: AtomicU8,
}

impl Nas {
    pub fn new(server: SocketAddr, secret: &str) -> Self {
        Self {
            server,
            secret: secret.as_bytes().to_vec(),
            next_id: AtomicU8::new(0),
        }
    }

    /// A request with a fresh identifier.
    pub fn request(&self, status_type: u32) -> Request {
        Request::accounting(
            status_type,
            &self.secret,
            self.next_id.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// A session packet with the usual attributes of a BRAS.
    pub fn session(&self, status_type: u32, user: &str, session_id: &str) -> Request {
        self.request(status_type)
            .string(dict::USER_NAME, user)
            .string(dict::ACCT_SESSION_ID, session_id)
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
            .u32(dict::NAS_PORT, 7)
            .u32(dict::NAS_PORT_TYPE, 15)
    }

    /// Sends a datagram and returns the verified answer, or None after `wait`.
    pub async fn send_bytes(&self, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind NAS socket");
        self.send_on(&socket, bytes, wait).await
    }

    pub async fn send_on(
        &self,
        socket: &UdpSocket,
        bytes: &[u8],
        wait: Duration,
    ) -> Option<Vec<u8>> {
        socket.send_to(bytes, self.server).await.expect("send");
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (n, _) = tokio::time::timeout(left, socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let response = buf[..n].to_vec();
            if is_accounting_response(&response, bytes, &self.secret) {
                return Some(response);
            }
        }
    }

    /// Sends and requires an authentic Accounting-Response.
    pub async fn send(&self, request: Request) -> Vec<u8> {
        let bytes = request.encode();
        self.send_bytes(&bytes, Duration::from_secs(10))
            .await
            .expect("an authentic Accounting-Response within 10 s")
    }

    /// Sends and requires silence.
    pub async fn send_unanswered(&self, bytes: &[u8]) {
        assert!(
            self.send_bytes(bytes, Duration::from_millis(500))
                .await
                .is_none(),
            "expected no answer"
        );
    }
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestApp {
    /// Every row of `table`, every column, as text, sorted: a snapshot to compare before and
    /// after input that must change nothing.
    pub async fn snapshot(&self, table: &str) -> Vec<String> {
        snapshot_of(&self.pool, table).await
    }

    /// Snapshots of the tables that accounting and the APIs write.
    pub async fn snapshot_all(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out = Vec::new();
        for table in WRITTEN_TABLES {
            out.push((table, self.snapshot(table).await));
        }
        out
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        let r = reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), reqwest::StatusCode::OK, "GET /metrics");
        r.text().await.expect("metrics text")
    }
}

/// The tables radacctd writes on behalf of packets and HTTP requests.
pub const WRITTEN_TABLES: [&str; 6] = [
    "radacct",
    "radacct_history",
    "users",
    "web_sessions",
    "ws_connections",
    "nas",
];

/// Every row of `table` as text (sorted), on either database.
pub async fn snapshot_of(pool: &Pool, table: &str) -> Vec<String> {
    assert!(
        table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "table name {table}"
    );
    let mut rows: Vec<String> = match pool {
        Pool::Sqlite(p) => {
            let columns: Vec<String> =
                sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(p)
                    .await
                    .expect("table columns");
            assert!(!columns.is_empty(), "no table {table}");
            let row = columns
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            sqlx::query_scalar(&format!("SELECT {row} FROM {table}"))
                .fetch_all(p)
                .await
                .expect("snapshot")
        }
        Pool::Postgres(p) => sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(p)
            .await
            .expect("snapshot"),
    };
    rows.sort();
    rows
}

/// `radacctd_dropped_packets_total{reason="..."}` from a `/metrics` text, by reason.
pub fn dropped_by_reason(metrics: &str) -> std::collections::BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("radacctd_dropped_packets_total{reason=\""))
        .filter_map(|rest| {
            let (reason, value) = rest.split_once("\"}")?;
            Some((reason.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

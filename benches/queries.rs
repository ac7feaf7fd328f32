//! The query benchmark: the read side of radacctd over HTTP against a large `radacct`.
//!
//! ```text
//! cargo bench --bench queries -- [--backend sqlite|postgres|both] [--rows 1000000] [--open 50000]
//!                                [--users 10000] [--nases 20] [--requests 2000] [--clients 16]
//!                                [--page-requests 500] [--runs 3] [--pg postgres://postgres@127.0.0.1:5432]
//!                                [--idle-wait 120] [--keep] [--enforce-targets]
//! ```
//!
//! Per backend: a fresh database (an SQLite file in a temp dir, or a new PostgreSQL database that
//! is dropped afterwards); `App::build` applies the migrations and creates the admin; then
//! `users` and `radacct` are filled directly with SQL, server-side (`generate_series` on
//! PostgreSQL, a recursive CTE on SQLite), in transactions of 100,000 rows: `--rows` sessions over
//! the last 30 days, of which `--open` (started within the last day) are still open, spread over
//! `--users` user names (`user00001`, ...; each a `users` row, role `subscriber`) and `--nases`
//! NASes (a user mostly on its home NAS), with a random 32-hex `acctuniqueid`, framed IPv4
//! addresses, octets and terminate causes. Then `ANALYZE` (PostgreSQL: `VACUUM (ANALYZE)`, so
//! autovacuum does not start in the middle of the measurements; SQLite: a WAL checkpoint too).
//! The node used for the measurements is built after the fill, so that every connection of its
//! pool sees the fresh statistics. It runs with `accounting.stale_after` and
//! `accounting.archive_after` off: nothing may close or move the generated sessions while they
//! are measured (the reaper still runs its query every 30 s).
//!
//! Before the runs, the answers are checked against SQL: `getOnlineSessions` of 20 random users
//! (ids, order and count), an unknown `userId` (404), both pages of `onlineSessions` for every
//! user-name prefix used, and `onlineCountsByNas`. During the runs every answer is checked too
//! (status, no `errors`, the expected number of sessions or NASes); a wrong answer fails the
//! bench.
//!
//! Each run (on the same database and node) measures, with one HTTP client (keep-alive) on its
//! own thread and runtime, after a short warm-up:
//! 1. the seed query `getOnlineSessions(userId)` (`POST /getOnlineSessions`) for `--requests`
//!    random users that have open sessions, one request at a time: p50 / p99 / max latency;
//! 2. the same with `--clients` concurrent clients: requests per second and latency;
//! 3. `onlineSessions(first: 50, usernamePrefix: ...)`, page 1 and page 2 (with the `after` cursor
//!    of page 1), and `onlineCountsByNas`, `--page-requests` each, one at a time.
//!
//! Latency runs from sending the request to having read the whole answer. The target is a
//! `getOnlineSessions` p99 under 5 ms (sequential) on both databases; a miss is reported, and is
//! an error only with `--enforce-targets`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use base64::Engine;
use clap::{Parser, ValueEnum};
use radacctd::app::App;
use radacctd::config::Layer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::Connection;

/// getOnlineSessions p99 (sequential) must stay under this.
const TARGET_P99_MS: f64 = 5.0;
/// Rows per fill statement (and transaction).
const FILL_CHUNK: u64 = 100_000;
/// Page size of `onlineSessions`.
const PAGE: usize = 50;
/// User-name prefixes the `onlineSessions` phases cycle through.
const PREFIXES: usize = 10;
/// Users whose `getOnlineSessions` answer is compared with SQL row by row.
const VERIFY_USERS: usize = 20;
/// Untimed requests before each run's phases.
const WARMUP: usize = 200;
/// A run is flagged when the machine was busier than this (cores) just before it.
const BUSY_BEFORE_RUN: f64 = 0.3;

/// The seed query, exactly as SPEC §4 documents it.
const SEED_QUERY: &str = "query getOnlineSessions($userId: Int!) {\n  getOnlineSessions(userId: $userId) {\n    id sessionId nasIpAddress nasPortId nasPortType startTime\n    connectInfoStart callingStationId framedIpAddress\n  }\n}";
const PAGE_QUERY: &str = "query page($prefix: String!, $after: String) {\n  onlineSessions(first: 50, usernamePrefix: $prefix, after: $after) {\n    edges { cursor node { id sessionId userName nasIpAddress startTime framedIpAddress } }\n    pageInfo { hasNextPage endCursor }\n  }\n}";
const COUNTS_QUERY: &str = "query counts { onlineCountsByNas { nasIpAddress online } }";

#[derive(Debug, Parser)]
#[command(about = "radacctd query benchmark (GraphQL reads over HTTP on a large radacct)")]
struct Args {
    /// Which database(s) to measure.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Sessions in `radacct`.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Of which open (`acctstoptime` NULL).
    #[arg(long, default_value_t = 50_000)]
    open: u64,
    /// Distinct user names (each a `users` row).
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Distinct NAS-IP-Addresses.
    #[arg(long, default_value_t = 20)]
    nases: u64,
    /// getOnlineSessions requests per phase (sequential, then concurrent).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Concurrent clients of the second getOnlineSessions phase.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests of each onlineSessions page and of onlineCountsByNas per run.
    #[arg(long, default_value_t = 500)]
    page_requests: usize,
    /// Measurement runs per backend (on the same filled database).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// PostgreSQL server (trust auth) where a database per backend run is created and dropped.
    /// Default: RADACCTD_TEST_PG, else postgres://postgres@127.0.0.1:5432.
    #[arg(long)]
    pg: Option<String>,
    /// Before each run, wait up to this many seconds for the machine to be idle; 0 = do not wait.
    #[arg(long, default_value_t = 120)]
    idle_wait: u64,
    /// Keep the databases (and print where they are), e.g. to look at query plans.
    #[arg(long)]
    keep: bool,
    /// Exit non-zero when the getOnlineSessions target is missed.
    #[arg(long)]
    enforce_targets: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("queries bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool> {
    ensure!(
        args.open >= 1 && args.open <= args.rows,
        "--open must be between 1 and --rows"
    );
    ensure!(
        args.users >= 1 && args.nases >= 1 && args.nases <= 250,
        "--users must be at least 1 and --nases 1-250"
    );
    ensure!(
        args.requests >= 1 && args.page_requests >= 1 && args.runs >= 1 && args.clients >= 1,
        "--requests, --page-requests, --runs and --clients must be at least 1"
    );
    let pg = args
        .pg
        .clone()
        .or_else(|| std::env::var("RADACCTD_TEST_PG").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".to_owned());
    let backends: &[Backend] = match args.backend {
        BackendArg::Sqlite => &[Backend::Sqlite],
        BackendArg::Postgres => &[Backend::Postgres],
        BackendArg::Both => &[Backend::Sqlite, Backend::Postgres],
    };
    println!(
        "queries: {} rows in radacct ({} open), {} users, {} NASes; getOnlineSessions {} requests \
         sequential + {} with {} clients, onlineSessions pages and onlineCountsByNas {} each; \
         {} run(s) per backend, {} CPU(s)",
        fmt_int(args.rows as f64),
        fmt_int(args.open as f64),
        fmt_int(args.users as f64),
        args.nases,
        fmt_int(args.requests as f64),
        fmt_int(args.requests as f64),
        args.clients,
        fmt_int(args.page_requests as f64),
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let mut ok = true;
    let mut summaries = Vec::new();
    for &backend in backends {
        println!();
        match bench_backend(args, backend, &pg) {
            Ok(outcome) => {
                ok &= outcome.failures == 0;
                summaries.push((backend, outcome));
            }
            Err(e) => {
                println!("{}: FAILED: {e:#}", backend.name());
                ok = false;
            }
        }
    }

    println!();
    let mut all_met = true;
    for (backend, outcome) in &summaries {
        let (line, met) = summary(*backend, outcome);
        println!("{line}");
        all_met &= met;
    }
    if !all_met && args.enforce_targets {
        println!("a target was missed (--enforce-targets)");
    }
    Ok(ok && (all_met || !args.enforce_targets))
}

// ---- one backend ------------------------------------------------------------------------------

/// What one backend's runs measured.
struct Outcome {
    fill: FillReport,
    runs: Vec<RunResult>,
    /// Wrong or failed answers during the runs.
    failures: usize,
}

fn bench_backend(args: &Args, backend: Backend, pg: &str) -> Result<Outcome> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("radacctd")
        .build()
        .context("cannot start the server runtime")?;
    // The client side (fill, checks, HTTP load) runs on this thread, apart from the node.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client runtime")?;

    let db = client_rt.block_on(BenchDb::create(backend, pg))?;
    let outcome = bench_on(args, &server_rt, &client_rt, &db);
    if args.keep {
        println!("{}: database kept at {}", backend.name(), db.url);
        db.keep();
    } else {
        client_rt.block_on(db.drop_db())?;
    }
    outcome
}

fn bench_on(
    args: &Args,
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    db: &BenchDb,
) -> Result<Outcome> {
    let name = db.backend.name();
    let admin_password = uuid::Uuid::new_v4().simple().to_string();

    // A first node only to migrate and create the admin; closed before the fill.
    server_rt.block_on(async {
        let app = App::build(node_config(&db.url, &admin_password)?)
            .await
            .context("radacctd does not build")?;
        app.store().close().await;
        anyhow::Ok(())
    })?;

    let shape = Shape::new(args);
    let fill = client_rt.block_on(fill(db, &shape))?;
    println!("{name}: {}", fill.line());

    // The measured node: every pooled connection opens after ANALYZE.
    let config = node_config(&db.url, &admin_password)?;
    let webservice = config.http.webservice_path.clone();
    let (http, shutdown, handle) = server_rt.block_on(async {
        let app = App::build(config)
            .await
            .context("radacctd does not build")?;
        let http = app.http_addr();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        anyhow::Ok((http, shutdown, handle))
    })?;

    let measured = client_rt.block_on(async {
        let client = Http::login(
            &format!("http://{http}"),
            &webservice,
            &admin_password,
            args.clients,
        )
        .await?;
        let sql = SqlPool::open(db).await?;
        let result = measure(args, &shape, &client, &sql, name).await;
        sql.close().await;
        result
    });

    shutdown.cancel();
    let stopped = server_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .context("radacctd did not stop within 30 s")?
            .context("the radacctd task failed")?
            .context("radacctd stopped with an error")
    });
    let (runs, failures) = measured?;
    stopped?;
    Ok(Outcome {
        fill,
        runs,
        failures,
    })
}

fn node_config(url: &str, admin_password: &str) -> Result<radacctd::config::Config> {
    Layer::from_toml(&format!(
        "database_url = \"{url}\"\nnode = \"bench\"\nadmin_password = \"{admin_password}\"\n\
         [radius]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [accounting]\nstale_after = \"off\"\narchive_after = \"off\"\n"
    ))
    .and_then(Layer::resolve)
    .context("bench config")
}

/// Checks the answers against SQL, then measures `--runs` times.
async fn measure(
    args: &Args,
    shape: &Shape,
    client: &Http,
    sql: &SqlPool,
    name: &str,
) -> Result<(Vec<RunResult>, usize)> {
    let truth = Truth::read(sql, shape).await?;
    ensure!(
        !truth.online.is_empty(),
        "no user has an open session after the fill"
    );
    let checked = verify(client, sql, &truth).await?;
    println!("{name}: answers match SQL ({checked})");

    let mut runs = Vec::new();
    let mut failures = 0;
    for i in 0..args.runs {
        let (background, waited) = wait_for_idle(Duration::from_secs(args.idle_wait));
        let cpu0 = CpuSample::take();
        let r = one_run(args, client, &truth, i as u64).await;
        let cpu1 = CpuSample::take();
        let r = RunResult {
            phases: r,
            busy: CpuSample::busy_cores(&cpu0, &cpu1),
            background,
            waited,
        };
        println!("{name} run {}/{}: {}", i + 1, args.runs, r.describe());
        failures += r.phases.iter().map(|p| p.failures).sum::<usize>();
        runs.push(r);
    }
    Ok((runs, failures))
}

// ---- the database -----------------------------------------------------------------------------

struct BenchDb {
    backend: Backend,
    url: String,
    /// PostgreSQL: the server URL and the database name to drop.
    pg: Option<(String, String)>,
    /// SQLite: the directory holding the file (removed on drop).
    dir: Option<tempfile::TempDir>,
}

impl BenchDb {
    async fn create(backend: Backend, pg_server: &str) -> Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("radacctd-queries")
                    .tempdir()
                    .context("cannot create a temp dir")?;
                let url = format!("sqlite://{}", dir.path().join("radacctd.db").display());
                Ok(Self {
                    backend,
                    url,
                    pg: None,
                    dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let name = format!("radacctd_queries_{}", uuid::Uuid::new_v4().simple());
                let mut admin = pg_admin(pg_server).await?;
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                admin.close().await?;
                Ok(Self {
                    backend,
                    url: format!("{pg_server}/{name}"),
                    pg: Some((pg_server.to_owned(), name)),
                    dir: None,
                })
            }
        }
    }

    async fn drop_db(&self) -> Result<()> {
        if let Some((server, name)) = &self.pg {
            let mut admin = pg_admin(server).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .with_context(|| format!("DROP DATABASE {name}"))?;
            admin.close().await?;
        }
        Ok(())
    }

    /// Leaves the database (and the SQLite temp dir) in place.
    fn keep(self) {
        if let Some(dir) = self.dir {
            let _ = dir.keep();
        }
    }

    fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("radacctd.db"))
    }
}

async fn pg_admin(server: &str) -> Result<sqlx::PgConnection> {
    sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("PostgreSQL at {server} is required (trust auth)"))
}

/// A pool on the bench database, for the fill's follow-up reads and the checks.
enum SqlPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl SqlPool {
    async fn open(db: &BenchDb) -> Result<Self> {
        Ok(match db.backend {
            Backend::Sqlite => SqlPool::Sqlite(sqlx::SqlitePool::connect(&db.url).await?),
            Backend::Postgres => SqlPool::Postgres(sqlx::PgPool::connect(&db.url).await?),
        })
    }

    async fn close(&self) {
        match self {
            SqlPool::Sqlite(p) => p.close().await,
            SqlPool::Postgres(p) => p.close().await,
        }
    }

    /// `(users.id, login, open sessions)` of every subscriber.
    async fn users(&self) -> Result<Vec<(i64, String, i64)>> {
        Ok(match self {
            SqlPool::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT u.id, u.login, (SELECT COUNT(*) FROM radacct r \
                     WHERE r.username = u.login AND r.acctstoptime IS NULL) \
                     FROM users u WHERE u.role = 'subscriber' ORDER BY u.id",
                )
                .fetch_all(p)
                .await?
            }
            SqlPool::Postgres(p) => {
                sqlx::query_as(
                    "SELECT u.id::bigint, u.login, (SELECT COUNT(*) FROM radacct r \
                     WHERE r.username = u.login AND r.acctstoptime IS NULL) \
                     FROM users u WHERE u.role = 'subscriber' ORDER BY u.id",
                )
                .fetch_all(p)
                .await?
            }
        })
    }

    /// radacctids of a user's open sessions in the documented order.
    async fn open_ids(&self, login: &str) -> Result<Vec<i64>> {
        Ok(match self {
            SqlPool::Sqlite(p) => {
                sqlx::query_scalar(
                    "SELECT radacctid FROM radacct WHERE username = ?1 AND acctstoptime IS NULL \
                     ORDER BY acctstarttime, radacctid",
                )
                .bind(login)
                .fetch_all(p)
                .await?
            }
            SqlPool::Postgres(p) => {
                sqlx::query_scalar(
                    "SELECT radacctid FROM radacct WHERE username = $1 AND acctstoptime IS NULL \
                     ORDER BY acctstarttime, radacctid",
                )
                .bind(login)
                .fetch_all(p)
                .await?
            }
        })
    }

    /// radacctids of the open sessions whose user name starts with `prefix` (plain letters and
    /// digits), in (start, id) order.
    async fn prefix_ids(&self, prefix: &str) -> Result<Vec<i64>> {
        // substr rather than LIKE: SQLite's LIKE ignores case, and the answer must not depend
        // on that here.
        Ok(match self {
            SqlPool::Sqlite(p) => {
                sqlx::query_scalar(
                    "SELECT radacctid FROM radacct WHERE acctstoptime IS NULL \
                     AND substr(username, 1, length(?1)) = ?1 ORDER BY acctstarttime, radacctid",
                )
                .bind(prefix)
                .fetch_all(p)
                .await?
            }
            SqlPool::Postgres(p) => {
                sqlx::query_scalar(
                    "SELECT radacctid FROM radacct WHERE acctstoptime IS NULL \
                     AND left(username, length($1)) = $1 ORDER BY acctstarttime, radacctid",
                )
                .bind(prefix)
                .fetch_all(p)
                .await?
            }
        })
    }

    /// Open sessions per NAS address (text).
    async fn counts_by_nas(&self) -> Result<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> =
            match self {
                SqlPool::Sqlite(p) => {
                    sqlx::query_as(
                        "SELECT nasipaddress, COUNT(*) FROM radacct WHERE acctstoptime IS NULL \
                     GROUP BY nasipaddress",
                    )
                    .fetch_all(p)
                    .await?
                }
                SqlPool::Postgres(p) => sqlx::query_as(
                    "SELECT host(nasipaddress), COUNT(*) FROM radacct WHERE acctstoptime IS NULL \
                     GROUP BY nasipaddress",
                )
                .fetch_all(p)
                .await?,
            };
        Ok(rows.into_iter().collect())
    }
}

// ---- the fill ---------------------------------------------------------------------------------

/// What the generated data looks like.
struct Shape {
    rows: u64,
    open: u64,
    users: u64,
    nases: u64,
    /// Digits of the number in a user name (`user00042`).
    width: usize,
    /// UNIX seconds the generated times are relative to.
    now: i64,
}

impl Shape {
    fn new(args: &Args) -> Self {
        Self {
            rows: args.rows,
            open: args.open,
            users: args.users,
            nases: args.nases,
            width: args.users.to_string().len().max(5),
            now: chrono::Utc::now().timestamp(),
        }
    }

    fn closed(&self) -> u64 {
        self.rows - self.open
    }

    /// The user-name prefixes of the `onlineSessions` phases: `user000`, `user001`, ... (each
    /// about 1% of the users with the default 10,000).
    fn prefixes(&self) -> Vec<String> {
        (0..PREFIXES)
            .map(|k| format!("user{k:0w$}", w = self.width - 2))
            .collect()
    }

    /// The numbers every generated column derives from, for row `i` (0-based): `h` a 32-bit
    /// hash of `i`; `u` the user (0-based); `dur` a closed session's length; `st` the start
    /// (closed sessions spread over 30 days ago .. 1 day ago in row order, open ones over the
    /// last day); `nas` the user's home NAS (one session in ten elsewhere); `mac` the user's
    /// device; `upd` the last update (open: up to 5 minutes ago).
    fn numbers(&self) -> [String; 9] {
        let (closed, open, now) = (self.closed(), self.open, self.now);
        let (closed_n, open_n) = (closed.max(1), open.max(1));
        [
            "(i * 2654435761) % 4294967296".to_owned(),
            format!("i >= {closed}"),
            format!("h % {}", self.users),
            "60 + (h / 4096) % 28800".to_owned(),
            format!(
                "CASE WHEN open THEN {now} - 86400 + ((i - {closed}) * 86000) / {open_n} - h % 600 \
                 ELSE {now} - 2592000 + (i * 2505600) / {closed_n} + h % 3600 END"
            ),
            format!(
                "(u + CASE WHEN (h / 1048576) % 10 = 0 THEN h / 64 ELSE 0 END) % {}",
                self.nases
            ),
            "(u * 2654435761) % 4294967296".to_owned(),
            // max / greatest: filled in per backend.
            format!("{now} - h % 300"),
            "st + dur".to_owned(),
        ]
    }
}

const RADACCT_COLUMNS: &str = "(acctsessionid, acctuniqueid, username, realm, nasipaddress, \
     nasportid, nasporttype, acctstarttime, acctupdatetime, acctstoptime, acctinterval, \
     acctsessiontime, acctauthentic, connectinfo_start, connectinfo_stop, acctinputoctets, \
     acctoutputoctets, calledstationid, callingstationid, acctterminatecause, servicetype, \
     framedprotocol, framedipaddress, framedipv6address, framedipv6prefix, framedinterfaceid, \
     delegatedipv6prefix, class, acctinteriminterval)";

/// Terminate cause of a closed session.
const CAUSE: &str = "CASE h % 4 WHEN 0 THEN 'Lost-Carrier' WHEN 1 THEN 'Idle-Timeout' \
     WHEN 2 THEN 'Session-Timeout' ELSE 'User-Request' END";
const PORT_TYPE: &str =
    "CASE h % 10 WHEN 0 THEN 'Wireless-802.11' WHEN 1 THEN 'Virtual' ELSE 'Ethernet' END";

/// Rows `lo..hi` of `radacct`, SQLite.
fn sqlite_radacct(s: &Shape, lo: u64, hi: u64) -> String {
    let [h, open, u, dur, st, nas, mac, upd_open, upd_closed] = s.numbers();
    let closed = s.closed();
    let w = s.width;
    format!(
        "WITH RECURSIVE s(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {hi}), \
         a AS (SELECT i, {h} AS h, {open} AS open FROM s), \
         b AS (SELECT *, {u} AS u, {dur} AS dur, {st} AS st FROM a), \
         c AS (SELECT *, {nas} AS nas, {mac} AS mac, \
               CASE WHEN open THEN max(st, {upd_open}) ELSE {upd_closed} END AS upd FROM b) \
         INSERT INTO radacct {RADACCT_COLUMNS} \
         SELECT printf('%08X', 268435456 + i), lower(hex(randomblob(16))), printf('user%0{w}d', u + 1), \
           NULL, '10.255.0.' || (nas + 1), 'ge-0/' || (h / 8 % 4) || '/' || (h / 32 % 48), {PORT_TYPE}, \
           st, upd, CASE WHEN open THEN NULL ELSE st + dur END, NULL, upd - st, 'RADIUS', \
           '1000BASE-T', CASE WHEN open THEN NULL ELSE '1000BASE-T' END, \
           (h % 1000003) * 997, (h % 999983) * 4099, 'bras-' || (nas + 1), \
           printf('02-00-%02X-%02X-%02X-%02X', mac / 16777216, mac / 65536 % 256, mac / 256 % 256, mac % 256), \
           CASE WHEN open THEN NULL ELSE {CAUSE} END, 'Framed-User', 'PPP', \
           CASE WHEN open THEN '100.' || (64 + (i - {closed}) / 65536 % 64) || '.' || ((i - {closed}) / 256 % 256) || '.' || ((i - {closed}) % 256) \
                ELSE '100.' || (64 + h / 65536 % 64) || '.' || (h / 256 % 256) || '.' || (h % 256) END, \
           NULL, NULL, NULL, NULL, NULL, NULL \
         FROM c"
    )
}

/// Rows `lo..hi` of `radacct`, PostgreSQL (the same numbers as on SQLite).
fn pg_radacct(s: &Shape, lo: u64, hi: u64) -> String {
    let [h, open, u, dur, st, nas, mac, upd_open, upd_closed] = s.numbers();
    let closed = s.closed();
    let w = s.width;
    format!(
        "INSERT INTO radacct {RADACCT_COLUMNS} \
         SELECT upper(lpad(to_hex(268435456 + i), 8, '0')), md5('radacctd-bench-' || i), \
           'user' || lpad((u + 1)::text, {w}, '0'), NULL, '10.255.0.0'::inet + (nas + 1), \
           'ge-0/' || (h / 8 % 4) || '/' || (h / 32 % 48), {PORT_TYPE}, \
           to_timestamp(st), to_timestamp(upd), CASE WHEN open THEN NULL ELSE to_timestamp(st + dur) END, \
           NULL, upd - st, 'RADIUS', '1000BASE-T', CASE WHEN open THEN NULL ELSE '1000BASE-T' END, \
           (h % 1000003) * 997, (h % 999983) * 4099, 'bras-' || (nas + 1), \
           upper(regexp_replace(lpad(to_hex(mac), 8, '0'), '(..)(..)(..)(..)', '02-00-\\1-\\2-\\3-\\4')), \
           CASE WHEN open THEN NULL ELSE {CAUSE} END, 'Framed-User', 'PPP', \
           CASE WHEN open THEN '100.64.0.0'::inet + ((i - {closed}) % 4194304) \
                ELSE '100.64.0.0'::inet + (h % 4194304) END, \
           NULL, NULL, NULL, NULL, NULL, NULL \
         FROM generate_series({lo}::bigint, {hi}::bigint - 1) AS i, \
           LATERAL (SELECT {h} AS h, {open} AS open) a, \
           LATERAL (SELECT {u} AS u, {dur} AS dur, {st} AS st) b, \
           LATERAL (SELECT {nas} AS nas, {mac} AS mac, \
                    CASE WHEN open THEN greatest(st, {upd_open}) ELSE {upd_closed} END AS upd) c"
    )
}

struct FillReport {
    users: Duration,
    radacct: Duration,
    analyze: Duration,
    rows: u64,
    size: Option<u64>,
    /// PostgreSQL: how much of radacct VACUUM could mark all-visible (a transaction open
    /// elsewhere on the server can prevent it; then no index-only scans).
    note: Option<String>,
}

impl FillReport {
    fn total(&self) -> Duration {
        self.users + self.radacct + self.analyze
    }

    fn line(&self) -> String {
        let mut out = format!(
            "fill {:.1} s: users {:.2} s, radacct {:.1} s ({} rows/s), ANALYZE {:.1} s",
            self.total().as_secs_f64(),
            self.users.as_secs_f64(),
            self.radacct.as_secs_f64(),
            fmt_int(self.rows as f64 / self.radacct.as_secs_f64().max(1e-9)),
            self.analyze.as_secs_f64(),
        );
        if let Some(size) = self.size {
            let _ = write!(out, "; database {} MB", size / 1_000_000);
        }
        if let Some(note) = &self.note {
            let _ = write!(out, "; {note}");
        }
        out
    }
}

async fn fill(db: &BenchDb, s: &Shape) -> Result<FillReport> {
    let chunks: Vec<(u64, u64)> = (0..s.rows)
        .step_by(FILL_CHUNK as usize)
        .map(|lo| (lo, (lo + FILL_CHUNK).min(s.rows)))
        .collect();
    let w = s.width;
    let users_count = s.users;
    match db.backend {
        Backend::Sqlite => {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
            // A bulk load: no fsync, a page cache that holds the indexes.
            let options = SqliteConnectOptions::from_str(&db.url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Off)
                .pragma("cache_size", "-524288")
                .pragma("temp_store", "memory");
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            let t0 = Instant::now();
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(&format!(
                "WITH RECURSIVE s(u) AS (SELECT 1 UNION ALL SELECT u + 1 FROM s WHERE u < {users_count}) \
                 INSERT INTO users (uuid, login, domain, role) \
                 SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || \
                   substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + abs(random()) % 4, 1) || \
                   substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))), \
                   printf('user%0{w}d', u), 'master.domain', 'subscriber' FROM s"
            ))
            .execute(&mut *tx)
            .await
            .context("filling users")?;
            tx.commit().await?;
            let users = t0.elapsed();
            let t1 = Instant::now();
            for &(lo, hi) in &chunks {
                let mut tx = conn.begin().await?;
                sqlx::raw_sql(&sqlite_radacct(s, lo, hi))
                    .execute(&mut *tx)
                    .await
                    .context("filling radacct")?;
                tx.commit().await?;
            }
            let radacct = t1.elapsed();
            let t2 = Instant::now();
            sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await
                .context("ANALYZE")?;
            let analyze = t2.elapsed();
            conn.close().await?;
            let size = db
                .sqlite_path()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len());
            Ok(FillReport {
                users,
                radacct,
                analyze,
                rows: s.rows,
                size,
                note: None,
            })
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::raw_sql("SET synchronous_commit = off")
                .execute(&mut conn)
                .await?;
            let t0 = Instant::now();
            sqlx::raw_sql(&format!(
                "INSERT INTO users (uuid, login, domain, role) \
                 SELECT gen_random_uuid(), 'user' || lpad(u::text, {w}, '0'), 'master.domain', 'subscriber' \
                 FROM generate_series(1, {users_count}) AS u"
            ))
            .execute(&mut conn)
            .await
            .context("filling users")?;
            let users = t0.elapsed();
            let t1 = Instant::now();
            for &(lo, hi) in &chunks {
                let mut tx = conn.begin().await?;
                sqlx::raw_sql(&pg_radacct(s, lo, hi))
                    .execute(&mut *tx)
                    .await
                    .context("filling radacct")?;
                tx.commit().await?;
            }
            let radacct = t1.elapsed();
            let t2 = Instant::now();
            // VACUUM too: sets the visibility map and keeps autovacuum out of the measurements.
            sqlx::raw_sql("VACUUM (ANALYZE) radacct")
                .execute(&mut conn)
                .await
                .context("VACUUM (ANALYZE) radacct")?;
            sqlx::raw_sql("ANALYZE users")
                .execute(&mut conn)
                .await
                .context("ANALYZE users")?;
            let analyze = t2.elapsed();
            let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut conn)
                .await?;
            let (pages, visible): (i32, i32) = sqlx::query_as(
                "SELECT relpages, relallvisible FROM pg_class WHERE relname = 'radacct'",
            )
            .fetch_one(&mut conn)
            .await?;
            conn.close().await?;
            Ok(FillReport {
                users,
                radacct,
                analyze,
                rows: s.rows,
                size: u64::try_from(size).ok(),
                note: Some(format!(
                    "{:.0}% of radacct's pages all-visible",
                    f64::from(visible) * 100.0 / f64::from(pages.max(1))
                )),
            })
        }
    }
}

// ---- what the answers must be -----------------------------------------------------------------

struct Truth {
    /// Users with open sessions: (users.id, login, how many).
    online: Vec<(i64, String, i64)>,
    /// An id no user has.
    unknown_id: i64,
    /// Per prefix: the open sessions' ids in page order.
    prefixes: Vec<(String, Vec<i64>)>,
    /// Open sessions per NAS.
    nas_counts: HashMap<String, i64>,
    open: i64,
}

impl Truth {
    async fn read(sql: &SqlPool, shape: &Shape) -> Result<Self> {
        let users = sql.users().await?;
        ensure!(
            users.len() as u64 == shape.users,
            "{} subscriber rows in users, expected {}",
            users.len(),
            shape.users
        );
        let open: i64 = users.iter().map(|u| u.2).sum();
        ensure!(
            open as u64 == shape.open,
            "{open} open sessions of known users, expected {}",
            shape.open
        );
        let unknown_id = users.iter().map(|u| u.0).max().unwrap_or(0) + 1000;
        let online = users.into_iter().filter(|u| u.2 > 0).collect();
        let mut prefixes = Vec::new();
        for p in shape.prefixes() {
            let ids = sql.prefix_ids(&p).await?;
            // Page 2 must exist to be measured.
            if ids.len() > PAGE {
                prefixes.push((p, ids));
            }
        }
        ensure!(
            !prefixes.is_empty(),
            "no user-name prefix has more than {PAGE} open sessions (more --open?)"
        );
        Ok(Self {
            online,
            unknown_id,
            prefixes,
            nas_counts: sql.counts_by_nas().await?,
            open,
        })
    }
}

/// Compares answers with SQL in detail; returns what was checked.
async fn verify(client: &Http, sql: &SqlPool, truth: &Truth) -> Result<String> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut sessions = 0;
    for _ in 0..VERIFY_USERS {
        let (id, login, n) = &truth.online[rng.gen_range(0..truth.online.len())];
        let (_, status, v) = client.post("/getOnlineSessions", &seed_body(*id)).await?;
        ensure!(status == 200, "getOnlineSessions({id}): HTTP {status}: {v}");
        let got: Vec<i64> = v["data"]["getOnlineSessions"]
            .as_array()
            .with_context(|| format!("getOnlineSessions({id}): no list: {v}"))?
            .iter()
            .map(|s| s["id"].as_i64().unwrap_or(-1))
            .collect();
        let want = sql.open_ids(login).await?;
        ensure!(
            want.len() as i64 == *n && got == want,
            "getOnlineSessions({id}) of {login}: got ids {got:?}, SQL says {want:?}"
        );
        for s in v["data"]["getOnlineSessions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let start = s["startTime"].as_str().unwrap_or_default();
            ensure!(
                start.len() == 20 && start.ends_with('Z'),
                "getOnlineSessions({id}): startTime {start:?} is not RFC 3339 UTC in seconds"
            );
        }
        sessions += got.len();
    }

    let (_, status, v) = client
        .post("/getOnlineSessions", &seed_body(truth.unknown_id))
        .await?;
    ensure!(
        status == 404,
        "getOnlineSessions of an unknown user: HTTP {status}, expected 404: {v}"
    );

    for (prefix, ids) in &truth.prefixes {
        let (_, status, v1) = client.post("/graphql", &page_body(prefix, None)).await?;
        ensure!(
            status == 200,
            "onlineSessions({prefix}): HTTP {status}: {v1}"
        );
        let page1 = page_ids(&v1);
        let cursor = v1["data"]["onlineSessions"]["pageInfo"]["endCursor"]
            .as_str()
            .with_context(|| format!("onlineSessions({prefix}): no endCursor: {v1}"))?;
        ensure!(
            v1["data"]["onlineSessions"]["pageInfo"]["hasNextPage"] == json!(true),
            "onlineSessions({prefix}): hasNextPage is not true with {} sessions",
            ids.len()
        );
        let (_, status, v2) = client
            .post("/graphql", &page_body(prefix, Some(cursor)))
            .await?;
        ensure!(
            status == 200,
            "onlineSessions({prefix}, page 2): HTTP {status}: {v2}"
        );
        let page2 = page_ids(&v2);
        let want2 = &ids[PAGE..ids.len().min(2 * PAGE)];
        ensure!(
            page1 == ids[..PAGE] && page2 == want2,
            "onlineSessions({prefix}): pages {page1:?} / {page2:?}, SQL says {:?} / {want2:?}",
            &ids[..PAGE]
        );
    }

    let (_, status, v) = client.post("/graphql", &counts_body()).await?;
    ensure!(status == 200, "onlineCountsByNas: HTTP {status}: {v}");
    let got: HashMap<String, i64> = v["data"]["onlineCountsByNas"]
        .as_array()
        .with_context(|| format!("onlineCountsByNas: no list: {v}"))?
        .iter()
        .map(|c| {
            (
                c["nasIpAddress"].as_str().unwrap_or_default().to_owned(),
                c["online"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    ensure!(
        got == truth.nas_counts,
        "onlineCountsByNas: {got:?}, SQL says {:?}",
        truth.nas_counts
    );

    Ok(format!(
        "getOnlineSessions of {VERIFY_USERS} users ({sessions} sessions), an unknown user → 404, \
         onlineSessions pages 1-2 of {} prefixes, onlineCountsByNas of {} NASes ({} open)",
        truth.prefixes.len(),
        truth.nas_counts.len(),
        truth.open
    ))
}

fn page_ids(v: &Value) -> Vec<i64> {
    v["data"]["onlineSessions"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| e["node"]["id"].as_i64().unwrap_or(-1))
                .collect()
        })
        .unwrap_or_default()
}

fn seed_body(user_id: i64) -> String {
    json!({"query": SEED_QUERY, "variables": {"userId": user_id}, "operationName": "getOnlineSessions"})
        .to_string()
}

fn page_body(prefix: &str, after: Option<&str>) -> String {
    json!({"query": PAGE_QUERY, "variables": {"prefix": prefix, "after": after}, "operationName": "page"})
        .to_string()
}

fn counts_body() -> String {
    json!({"query": COUNTS_QUERY, "operationName": "counts"}).to_string()
}

// ---- HTTP -------------------------------------------------------------------------------------

/// One keep-alive client, logged in as the admin.
struct Http {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Http {
    async fn login(base: &str, webservice: &str, password: &str, clients: usize) -> Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients.max(1) * 2)
            .tcp_nodelay(true)
            .build()?;
        let r = client
            .post(format!("{base}{webservice}/Login"))
            .json(&json!({
                "username": "admin",
                "password": base64::engine::general_purpose::STANDARD.encode(password),
            }))
            .send()
            .await
            .context("Login")?;
        let status = r.status();
        let v: Value = r.json().await.context("Login answer")?;
        ensure!(status == 200, "Login: HTTP {status}: {v}");
        let token = v["token"]
            .as_str()
            .with_context(|| format!("Login: no token in {v}"))?
            .to_owned();
        Ok(Self {
            client,
            base: base.to_owned(),
            token,
        })
    }

    /// Posts a GraphQL body; returns the latency (µs, up to the whole answer read), the status
    /// and the parsed answer.
    async fn post(&self, path: &str, body: &str) -> Result<(u32, u16, Value)> {
        let start = Instant::now();
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header("Authtoken", &self.token)
            .body(body.to_owned())
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await.with_context(|| format!("POST {path}"))?;
        let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((micros, status, v))
    }
}

// ---- a run ------------------------------------------------------------------------------------

/// One request of a phase and what its answer must hold: a number of sessions (or NASes).
struct Req {
    path: &'static str,
    body: String,
    expect: Expect,
}

enum Expect {
    /// `getOnlineSessions` with this many sessions.
    Seed(usize),
    /// An `onlineSessions` page with this many edges.
    Page(usize),
    /// `onlineCountsByNas` with these NASes summing to this.
    Counts(usize, i64),
}

impl Expect {
    /// `Err` describes a wrong answer; `Ok` gives the number of sessions/NASes answered.
    fn check(&self, status: u16, v: &Value) -> Result<usize, String> {
        if status != 200 || v.get("errors").is_some() {
            return Err(format!("HTTP {status}: {v}"));
        }
        match *self {
            Expect::Seed(n) => {
                let list = v["data"]["getOnlineSessions"].as_array();
                match list {
                    Some(l) if l.len() == n => Ok(n),
                    _ => Err(format!("expected {n} sessions: {v}")),
                }
            }
            Expect::Page(n) => {
                let edges = v["data"]["onlineSessions"]["edges"].as_array();
                match edges {
                    Some(e) if e.len() == n => Ok(n),
                    _ => Err(format!("expected a page of {n}: {v}")),
                }
            }
            Expect::Counts(nases, total) => {
                let list = v["data"]["onlineCountsByNas"].as_array();
                let sum: i64 = list
                    .into_iter()
                    .flatten()
                    .map(|c| c["online"].as_i64().unwrap_or(0))
                    .sum();
                match list {
                    Some(l) if l.len() == nases && sum == total => Ok(nases),
                    _ => Err(format!("expected {nases} NASes, {total} open: {v}")),
                }
            }
        }
    }
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    clients: usize,
    /// Latencies in µs, sorted.
    latencies: Vec<u32>,
    elapsed: Duration,
    /// Sessions (or NASes) in all answers.
    items: usize,
    failures: usize,
    first_failure: Option<String>,
}

impl Phase {
    fn ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p) as f64 / 1000.0
    }

    fn mean_ms(&self) -> f64 {
        let sum: u64 = self.latencies.iter().map(|&l| u64::from(l)).sum();
        sum as f64 / self.latencies.len().max(1) as f64 / 1000.0
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn line(&self) -> String {
        let mode = if self.clients > 1 {
            format!("{} clients", self.clients)
        } else {
            "sequential".to_owned()
        };
        let mut out = format!(
            "{:<22} {:<11} {:>6} req {:>7} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  \
             mean {:>6.2} ms  ({:.1} per answer)",
            self.name,
            mode,
            fmt_int(self.latencies.len() as f64),
            fmt_int(self.rate()),
            self.ms(50.0),
            self.ms(99.0),
            self.ms(100.0),
            self.mean_ms(),
            self.items as f64 / self.latencies.len().max(1) as f64,
        );
        if self.failures > 0 {
            let _ = write!(
                out,
                "\n      {} WRONG ANSWER(S), first: {}",
                self.failures,
                self.first_failure.as_deref().unwrap_or("?")
            );
        }
        out
    }
}

/// Sends `reqs` with `clients` concurrent clients (1 = one after the other).
async fn phase(name: &'static str, client: &Http, reqs: &[Req], clients: usize) -> Result<Phase> {
    let next = AtomicUsize::new(0);
    let worker = || async {
        let mut lat = Vec::new();
        let mut items = 0;
        let mut failures = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(req) = reqs.get(i) else { break };
            let (micros, status, v) = client.post(req.path, &req.body).await?;
            lat.push(micros);
            match req.expect.check(status, &v) {
                Ok(n) => items += n,
                Err(e) => failures.push(e),
            }
        }
        anyhow::Ok((lat, items, failures))
    };
    let start = Instant::now();
    let results = futures_util::future::join_all((0..clients).map(|_| worker())).await;
    let elapsed = start.elapsed();
    let mut out = Phase {
        name,
        clients,
        latencies: Vec::with_capacity(reqs.len()),
        elapsed,
        items: 0,
        failures: 0,
        first_failure: None,
    };
    for r in results {
        let (lat, items, failures) = r?;
        out.latencies.extend(lat);
        out.items += items;
        out.failures += failures.len();
        if out.first_failure.is_none() {
            out.first_failure = failures.into_iter().next();
        }
    }
    out.latencies.sort_unstable();
    Ok(out)
}

async fn one_run(args: &Args, client: &Http, truth: &Truth, run: u64) -> Vec<Phase> {
    match one_run_inner(args, client, truth, run).await {
        Ok(p) => p,
        Err(e) => vec![Phase {
            name: "run",
            clients: 1,
            latencies: Vec::new(),
            elapsed: Duration::ZERO,
            items: 0,
            failures: 1,
            first_failure: Some(format!("{e:#}")),
        }],
    }
}

async fn one_run_inner(args: &Args, client: &Http, truth: &Truth, run: u64) -> Result<Vec<Phase>> {
    let mut rng = StdRng::seed_from_u64(1000 + run);
    let mut seed_reqs = |n: usize| -> Vec<Req> {
        (0..n)
            .map(|_| {
                let (id, _, open) = &truth.online[rng.gen_range(0..truth.online.len())];
                Req {
                    path: "/getOnlineSessions",
                    body: seed_body(*id),
                    expect: Expect::Seed(*open as usize),
                }
            })
            .collect()
    };
    let warmup = seed_reqs(WARMUP);
    let sequential = seed_reqs(args.requests);
    let concurrent = seed_reqs(args.requests);

    // Page 1 of each prefix, and the cursor that leads to page 2 (read now, untimed).
    let mut cursors = Vec::new();
    for (prefix, ids) in &truth.prefixes {
        let (_, status, v) = client.post("/graphql", &page_body(prefix, None)).await?;
        let cursor = v["data"]["onlineSessions"]["pageInfo"]["endCursor"]
            .as_str()
            .with_context(|| format!("onlineSessions({prefix}): HTTP {status}: {v}"))?
            .to_owned();
        cursors.push((prefix.clone(), cursor, ids.len()));
    }
    let pick = |k: usize| &cursors[k % cursors.len()];
    let page1: Vec<Req> = (0..args.page_requests)
        .map(|k| {
            let (prefix, _, _) = pick(k);
            Req {
                path: "/graphql",
                body: page_body(prefix, None),
                expect: Expect::Page(PAGE),
            }
        })
        .collect();
    let page2: Vec<Req> = (0..args.page_requests)
        .map(|k| {
            let (prefix, cursor, n) = pick(k);
            Req {
                path: "/graphql",
                body: page_body(prefix, Some(cursor)),
                expect: Expect::Page((n - PAGE).min(PAGE)),
            }
        })
        .collect();
    let counts: Vec<Req> = (0..args.page_requests)
        .map(|_| Req {
            path: "/graphql",
            body: counts_body(),
            expect: Expect::Counts(truth.nas_counts.len(), truth.open),
        })
        .collect();

    phase("warm-up", client, &warmup, 1).await?;
    for reqs in [&page1, &page2, &counts] {
        phase("warm-up", client, &reqs[..reqs.len().min(20)], 1).await?;
    }
    Ok(vec![
        phase("getOnlineSessions", client, &sequential, 1).await?,
        phase("getOnlineSessions", client, &concurrent, args.clients).await?,
        phase("onlineSessions page 1", client, &page1, 1).await?,
        phase("onlineSessions page 2", client, &page2, 1).await?,
        phase("onlineCountsByNas", client, &counts, 1).await?,
    ])
}

struct RunResult {
    /// getOnlineSessions sequential, concurrent, page 1, page 2, counts.
    phases: Vec<Phase>,
    /// Cores busy (whole machine) during the run.
    busy: Option<f64>,
    /// Cores busy just before the run.
    background: Option<f64>,
    waited: Duration,
}

impl RunResult {
    fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(b) = self.busy {
            let _ = write!(out, "machine {b:.2} cores busy during the run");
        }
        for p in &self.phases {
            let _ = write!(out, "\n    {}", p.line());
        }
        if self.waited >= Duration::from_secs(1) {
            let _ = write!(
                out,
                "\n    (waited {} s for other processes to leave the CPUs alone)",
                self.waited.as_secs()
            );
        }
        if let Some(busy) = self.background.filter(|&b| b > BUSY_BEFORE_RUN) {
            let _ = write!(
                out,
                "\n    WARNING: {busy:.2} cores were busy before the run started (other \
                 processes): this run's figures are not reliable"
            );
        }
        out
    }
}

/// Medians across runs; whether the target was met.
fn summary(backend: Backend, outcome: &Outcome) -> (String, bool) {
    let runs = &outcome.runs;
    let med = |i: usize, f: &dyn Fn(&Phase) -> f64| -> f64 {
        median(
            &runs
                .iter()
                .filter_map(|r| r.phases.get(i).map(f))
                .collect::<Vec<_>>(),
        )
    };
    let complete = runs.iter().all(|r| r.phases.len() == 5);
    let p99 = med(0, &|p| p.ms(99.0));
    let met = complete && !runs.is_empty() && p99 < TARGET_P99_MS && outcome.failures == 0;
    let mut out = format!(
        "{} (median of {} run(s); {}):\n  getOnlineSessions sequential: p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms, {} req/s — target p99 < {TARGET_P99_MS} ms: {}",
        backend.name(),
        runs.len(),
        outcome.fill.line(),
        med(0, &|p| p.ms(50.0)),
        p99,
        med(0, &|p| p.ms(100.0)),
        fmt_int(med(0, &Phase::rate)),
        if met { "met" } else { "MISSED" },
    );
    if complete {
        let _ = write!(
            out,
            "\n  getOnlineSessions {} clients: {} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            runs[0].phases[1].clients,
            fmt_int(med(1, &Phase::rate)),
            med(1, &|p| p.ms(50.0)),
            med(1, &|p| p.ms(99.0)),
            med(1, &|p| p.ms(100.0)),
        );
        for (i, name) in [
            (2, "onlineSessions(first: 50, usernamePrefix) page 1"),
            (3, "onlineSessions page 2 (after cursor)"),
            (4, "onlineCountsByNas"),
        ] {
            let _ = write!(
                out,
                "\n  {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                med(i, &|p| p.ms(50.0)),
                med(i, &|p| p.ms(99.0)),
                med(i, &|p| p.ms(100.0)),
            );
        }
    }
    if outcome.failures > 0 {
        let _ = write!(out, "\n  {} WRONG OR FAILED ANSWER(S)", outcome.failures);
    }
    (out, met)
}

// ---- CPU use (Linux /proc; absent elsewhere) --------------------------------------------------

struct CpuSample {
    /// /proc/stat: (busy, total) ticks of all CPUs.
    ticks: Option<(u64, u64)>,
    cpus: usize,
}

impl CpuSample {
    fn take() -> Self {
        let ticks = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            let line = s.lines().next()?;
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
            Some((total - idle, total))
        });
        Self {
            ticks,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn busy_cores(a: &Self, b: &Self) -> Option<f64> {
        let ((b0, t0), (b1, t1)) = (a.ticks?, b.ticks?);
        Some((b1 - b0) as f64 / (t1 - t0).max(1) as f64 * b.cpus as f64)
    }
}

/// Waits until the machine is nearly idle (or `limit` passes); returns the busy cores seen
/// last and how long it waited.
fn wait_for_idle(limit: Duration) -> (Option<f64>, Duration) {
    let start = Instant::now();
    loop {
        let a = CpuSample::take();
        std::thread::sleep(Duration::from_millis(500));
        let busy = CpuSample::busy_cores(&a, &CpuSample::take());
        if busy.is_none_or(|b| b <= BUSY_BEFORE_RUN) || start.elapsed() >= limit {
            return (
                busy,
                start.elapsed().saturating_sub(Duration::from_millis(500)),
            );
        }
    }
}

// ---- small helpers ----------------------------------------------------------------------------

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of sorted values (`p` = 100 is the maximum).
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `31200.4` → `31,200`.
fn fmt_int(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

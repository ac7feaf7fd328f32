//! The ingest benchmark: radacctd in-process against a closed-loop NAS fleet over UDP.
//!
//! ```text
//! cargo bench --bench ingest -- [--backend sqlite|postgres|both] [--sessions 20000]
//!                               [--in-flight 256] [--runs 5] [--sockets 4] [--users 5000]
//!                               [--nases 10] [--pg postgres://postgres@127.0.0.1:5432]
//!                               [--idle-wait 300] [--enforce-targets]
//! cargo bench --bench ingest -- --storm [--sessions 100000] [--backend ...] [--runs 3]
//! ```
//!
//! `--storm` measures a NAS reboot storm (SPEC §9) instead: one NAS opens `sessions` sessions
//! (Starts only), then sends Accounting-On; the bench reports the time to its answer and checks
//! that every one of those sessions is closed, while a second NAS keeps sending (one packet at
//! a time, its latencies reported); then the rebooted NAS opens `sessions` new sessions, whose
//! rate is compared with the first wave's.
//!
//! Each run gets a fresh database (an SQLite file in a temp dir, or a new PostgreSQL database
//! that is dropped afterwards) and a fresh node (`App::build` + `run_until_stopped`) on its own
//! multi-threaded tokio runtime, with the default durability (SQLite WAL + synchronous=NORMAL,
//! PostgreSQL synchronous_commit as the server has it, normally on). The load generator runs on
//! a separate single-threaded runtime on its own OS thread and sends from a few UDP sockets on
//! 127.0.0.1: `sessions` x (Start, Interim-Update, Interim-Update, Stop), each session's packets
//! strictly in order (the next only after the previous is acknowledged), `in-flight` packets
//! outstanding overall (split evenly over the sockets), a retransmit after 1 s without answer.
//! An identifier is never reused on a socket while it is in flight.
//!
//! Packets are built before the clock starts (with realistic attributes; Event-Timestamps of
//! Start, Interim, Interim, Stop 300 s apart, the Stop one to two minutes before the run) and only get their identifier and Request Authenticator at send
//! time, so the load generator spends its CPU on sockets, not on building attributes.
//!
//! Per packet, latency runs from the first send to a verified (authentic) Accounting-Response.
//! Throughput is acknowledged packets per second over the whole run. After each run the node
//! is stopped and SQL checks that every session is in `radacct` exactly once, closed by its
//! Stop; a mismatch is an error (non-zero exit). Missed targets are reported, and are an error
//! only with `--enforce-targets`.
//!
//! Each run also prints what the node says about itself (commits, average batch size and
//! commit time from `radacctd_batch_size` / `radacctd_commit_seconds`, drops) and where the CPU
//! went (from /proc: radacctd, the load generator thread, PostgreSQL, the rest). The machine
//! should be otherwise idle: a run first waits (up to `--idle-wait` seconds) for other
//! processes to calm down, and runs disturbed by them before or during the load are flagged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use md5::{Digest, Md5};
use radacctd::app::App;
use radacctd::config::{Layer, DEFAULT_LOCAL_SECRET};
use radacctd::metrics::{DropReason, Metrics};
use radacctd::radius::builder::{is_accounting_response, Request};
use radacctd::radius::dict::{self, status};
use tokio::net::UdpSocket;

/// Throughput targets (acknowledged packets per second) and the latency limit.
const TARGET_SQLITE: f64 = 27_000.0;
const TARGET_POSTGRES: f64 = 23_000.0;
const TARGET_P99_MS: f64 = 20.0;

/// A NAS retransmits after this long without an answer.
const RETRANSMIT_AFTER: Duration = Duration::from_secs(1);
/// How often in-flight packets are checked for a due retransmit.
const RETRANSMIT_SCAN: Duration = Duration::from_millis(50);
/// A run fails when no packet at all was acknowledged for this long.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// RADIUS identifiers per socket.
const IDS_PER_SOCKET: usize = 256;
/// Packets per session: Start, Interim-Update, Interim-Update, Stop.
const STEPS: usize = 4;
/// The rebooting NAS of `--storm` (NAS-IP-Address of every wave session), and the other one.
const STORM_NAS: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const OTHER_NAS: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 1);
/// `--storm`: the Accounting-On must be answered, all sessions closed, within this.
const TARGET_STORM_MS: f64 = 2_000.0;
/// Simulated seconds between a session's packets (its Acct-Session-Time grows by this).
const INTERIM_SECONDS: u32 = 300;

#[derive(Debug, Parser)]
#[command(about = "radacctd ingest benchmark (closed-loop RADIUS accounting load)")]
struct Args {
    /// Which database(s) to measure.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Sessions per run (each is 4 packets).
    #[arg(long, default_value_t = 20_000)]
    sessions: usize,
    /// Packets outstanding at any time, over all sockets.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Runs per backend (each on a fresh database and node).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// UDP sockets the load generator sends from (at least in-flight / 256).
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Distinct User-Names.
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// Distinct NAS-IP-Addresses (only data: all traffic comes from 127.0.0.1).
    #[arg(long, default_value_t = 10)]
    nases: usize,
    /// PostgreSQL server (trust auth) where a database per run is created and dropped.
    /// Default: RADACCTD_TEST_PG, else postgres://postgres@127.0.0.1:5432.
    #[arg(long)]
    pg: Option<String>,
    /// Exit non-zero when a median misses a target.
    #[arg(long)]
    enforce_targets: bool,
    /// Before each run, wait up to this many seconds for the machine to be idle (other
    /// processes using under a quarter of a core); 0 = do not wait. A run that starts on a
    /// busy machine is flagged.
    #[arg(long, default_value_t = 300)]
    idle_wait: u64,
    /// Measure a NAS reboot storm instead (see the top of this file).
    #[arg(long)]
    storm: bool,
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

    fn target(self) -> f64 {
        match self {
            Backend::Sqlite => TARGET_SQLITE,
            Backend::Postgres => TARGET_POSTGRES,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ingest bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every requested backend; `Ok(false)` when a run failed (or a target was enforced
/// and missed).
fn run(args: &Args) -> Result<bool> {
    ensure!(args.sessions > 0, "--sessions must be at least 1");
    ensure!(args.in_flight > 0, "--in-flight must be at least 1");
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        args.users > 0 && args.nases > 0 && args.nases <= 250,
        "--users must be at least 1 and --nases 1-250"
    );
    let sockets = args
        .sockets
        .max(args.in_flight.div_ceil(IDS_PER_SOCKET))
        .min(args.in_flight);
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
    let setup = Setup {
        sessions: args.sessions,
        in_flight: args.in_flight,
        sockets,
        users: args.users,
        nases: args.nases,
        pg,
        idle_wait: Duration::from_secs(args.idle_wait),
        steps: if args.storm { 1 } else { STEPS },
    };
    if args.storm {
        return storm::run(&setup, backends, args.runs);
    }

    println!(
        "ingest: {} sessions x {} packets per run, {} in flight over {} sockets, {} users, \
         {} NASes, {} run(s) per backend, {} CPU(s)",
        fmt_int(setup.sessions as f64),
        setup.steps,
        setup.in_flight,
        setup.sockets,
        setup.users,
        setup.nases,
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let mut failed_runs = 0;
    let mut summaries = Vec::new();
    for &backend in backends {
        let mut results = Vec::new();
        for i in 0..args.runs {
            let run = format!("{} run {}/{}", backend.name(), i + 1, args.runs);
            match one_run(&setup, backend) {
                Ok(r) => {
                    println!("{run}: {}", r.line());
                    results.push(r);
                }
                Err(e) => {
                    // A wrong row count (or a node that stops answering) fails the bench, but
                    // the other runs still say something.
                    println!("{run}: FAILED: {e:#}");
                    failed_runs += 1;
                }
            }
        }
        summaries.push((backend, results));
    }

    println!();
    let mut all_met = true;
    for (backend, results) in &summaries {
        if results.is_empty() {
            println!("{}: no successful run", backend.name());
            all_met = false;
            continue;
        }
        let (line, met) = summary(*backend, results);
        println!("{line}");
        all_met &= met;
    }
    if failed_runs > 0 {
        println!("{failed_runs} run(s) FAILED");
    }
    if !all_met && args.enforce_targets {
        println!("a target was missed (--enforce-targets)");
    }
    Ok(failed_runs == 0 && (all_met || !args.enforce_targets))
}

struct Setup {
    sessions: usize,
    in_flight: usize,
    sockets: usize,
    users: usize,
    nases: usize,
    pg: String,
    idle_wait: Duration,
    /// Packets per session: 4, or 1 (Starts only) for `--storm`.
    steps: usize,
}

/// What one run measured.
struct RunResult {
    packets: u64,
    elapsed: Duration,
    /// Per-packet latency, microseconds, sorted.
    latencies: Vec<u32>,
    retransmits: u64,
    /// Datagrams that were no authentic answer to a packet in flight (late duplicates).
    stray: u64,
    server: ServerStats,
    cpu: CpuUse,
    /// Cores busy in the half second before the load started (should be about 0).
    background_cores: Option<f64>,
    /// How long the run waited for other processes to calm down.
    waited_for_idle: Duration,
    db_note: String,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p) as f64 / 1000.0
    }

    fn mean_ms(&self) -> f64 {
        let sum: u64 = self.latencies.iter().map(|&l| u64::from(l)).sum();
        sum as f64 / self.latencies.len().max(1) as f64 / 1000.0
    }

    /// Whether other processes took CPU before or during the run.
    fn disturbed(&self) -> bool {
        self.background_cores.is_some_and(|b| b > BUSY_BEFORE_RUN)
            || self.cpu.rest().is_some_and(|r| r > BUSY_DURING_RUN)
    }

    fn line(&self) -> String {
        let s = &self.server;
        let secs = self.elapsed.as_secs_f64();
        let mut out = format!(
            "{} packets in {:.2} s = {} acked/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             (mean {:.2} ms), retransmits {}",
            fmt_int(self.packets as f64),
            secs,
            fmt_int(self.rate()),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.percentile_ms(100.0),
            self.mean_ms(),
            self.retransmits,
        );
        if self.stray > 0 {
            let _ = write!(out, ", stray answers {}", self.stray);
        }
        let _ = write!(
            out,
            "\n    server: {} commits, avg batch {:.1} events, avg commit {:.2} ms, writer busy {:.0}% \
             of the run",
            fmt_int(s.commits),
            s.batch_sum / s.commits.max(1.0),
            s.commit_seconds_sum * 1000.0 / s.commits.max(1.0),
            s.commit_seconds_sum / secs * 100.0,
        );
        match s.largest_batch {
            Some(le) => {
                let _ = write!(out, ", largest batch <= {le:.0}");
            }
            None => out.push_str(", largest batch past the last bucket"),
        }
        match s.slowest_commit {
            Some(le) => {
                let _ = write!(out, ", slowest commit <= {:.1} ms", le * 1000.0);
            }
            None => out.push_str(", slowest commit past the last bucket"),
        }
        if s.retransmits_answered > 0.0 {
            let _ = write!(
                out,
                ", retransmits answered from cache {}",
                s.retransmits_answered
            );
        }
        if !s.drops.is_empty() {
            let _ = write!(out, ", drops: {}", s.drops.join(" "));
        }
        let _ = write!(out, "\n    cpu: {}; {}", self.cpu.describe(), self.db_note);
        if self.waited_for_idle >= Duration::from_secs(1) {
            let _ = write!(
                out,
                "\n    (waited {} s for other processes to leave the CPUs alone)",
                self.waited_for_idle.as_secs()
            );
        }
        if let Some(busy) = self.background_cores.filter(|&b| b > BUSY_BEFORE_RUN) {
            let _ = write!(
                out,
                "\n    WARNING: {busy:.2} cores were busy before the run started (other \
                 processes): this run's figures are not reliable"
            );
        } else if let Some(rest) = self.cpu.rest().filter(|&r| r > BUSY_DURING_RUN) {
            let _ = write!(
                out,
                "\n    WARNING: {rest:.2} cores went to other processes during the run ({}): \
                 this run's figures are not reliable",
                self.cpu.busiest_others()
            );
        }
        out
    }
}

/// Runs radacctd on a fresh database, loads it, stops it and checks the rows.
fn one_run(setup: &Setup, backend: Backend) -> Result<RunResult> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("radacctd")
        .build()
        .context("cannot start the server runtime")?;

    let db = server_rt.block_on(BenchDb::create(backend, &setup.pg))?;
    let outcome = run_on(setup, &server_rt, &db);
    // Drop the PostgreSQL database whatever happened.
    let dropped = server_rt.block_on(db.drop_db());
    let result = outcome?;
    dropped?;
    Ok(result)
}

fn run_on(setup: &Setup, server_rt: &tokio::runtime::Runtime, db: &BenchDb) -> Result<RunResult> {
    let (radius, metrics, shutdown, handle) = start_node(server_rt, db)?;

    // Built before the clock starts; Event-Timestamps are recent but in the past.
    let now = chrono::Utc::now().timestamp();
    let base = now - i64::from(3 * INTERIM_SECONDS) - 120;
    let plan = Arc::new(LoadPlan::build(setup, base, 0, None)?);
    let expected_users = plan.distinct_users;

    // The figures are only worth something on an otherwise idle machine.
    let (background, waited) = wait_for_idle(setup.idle_wait);
    let cpu_before = CpuSample::take();
    let load = {
        let plan = plan.clone();
        let (in_flight, sockets) = (setup.in_flight, setup.sockets);
        std::thread::Builder::new()
            .name("loadgen".into())
            .spawn(move || -> Result<(LoadResult, u64)> {
                let cpu0 = thread_cpu_ns();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the load generator runtime")?;
                let result = rt.block_on(generate(plan, radius, in_flight, sockets));
                Ok((result?, thread_cpu_ns().saturating_sub(cpu0)))
            })
            .context("cannot start the load generator thread")?
    };
    let load = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"));
    let cpu_after = CpuSample::take();
    let server = ServerStats::read(&metrics);

    // Stop the node (graceful drain), then check the rows.
    shutdown.cancel();
    let stopped = server_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .context("radacctd did not stop within 30 s")?
            .context("the radacctd task failed")?
            .context("radacctd stopped with an error")
    });
    let (load, loadgen_cpu_ns) = load??;
    stopped?;
    let db_note = server_rt.block_on(db.verify(setup.sessions, expected_users))?;

    let mut latencies = load.latencies;
    latencies.sort_unstable();
    Ok(RunResult {
        packets: load.acked,
        elapsed: load.elapsed,
        latencies,
        retransmits: load.retransmits,
        stray: load.stray,
        server,
        cpu: CpuUse::between(&cpu_before, &cpu_after, loadgen_cpu_ns),
        background_cores: background,
        waited_for_idle: waited,
        db_note,
    })
}

type Node = (
    SocketAddr,
    Arc<Metrics>,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// A fresh node on `db`, RADIUS and HTTP on loopback.
fn start_node(server_rt: &tokio::runtime::Runtime, db: &BenchDb) -> Result<Node> {
    server_rt.block_on(async {
        // An admin password, so that the node does not make one up and print it.
        let config = Layer::from_toml(&format!(
            "database_url = \"{}\"\nnode = \"bench\"\nadmin_password = \"{}\"\n\
             [radius]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n",
            db.url,
            uuid::Uuid::new_v4().simple()
        ))
        .and_then(Layer::resolve)
        .context("bench config")?;
        let app = App::build(config)
            .await
            .context("radacctd does not build")?;
        let radius = *app
            .radius_addrs()
            .first()
            .context("radacctd bound no RADIUS socket")?;
        let metrics = app.metrics();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        anyhow::Ok((radius, metrics, shutdown, handle))
    })
}

// ------------------------------------------------------------------------------------------
// The database of one run.

struct BenchDb {
    backend: Backend,
    url: String,
    /// PostgreSQL: the server URL and the database name to drop.
    pg: Option<(String, String)>,
    /// SQLite: the directory holding the file (removed on drop).
    _dir: Option<tempfile::TempDir>,
}

impl BenchDb {
    async fn create(backend: Backend, pg_server: &str) -> Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("radacctd-bench")
                    .tempdir()
                    .context("cannot create a temp dir")?;
                let url = format!("sqlite://{}", dir.path().join("radacctd.db").display());
                Ok(Self {
                    backend,
                    url,
                    pg: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let name = format!("radacctd_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = pg_admin(pg_server).await?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                admin.close().await;
                Ok(Self {
                    backend,
                    url: format!("{pg_server}/{name}"),
                    pg: Some((pg_server.to_owned(), name)),
                    _dir: None,
                })
            }
        }
    }

    async fn drop_db(&self) -> Result<()> {
        if let Some((server, name)) = &self.pg {
            let admin = pg_admin(server).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await
                .with_context(|| format!("DROP DATABASE {name}"))?;
            admin.close().await;
        }
        Ok(())
    }

    /// Every session exactly once in `radacct`, closed by its Stop, nothing archived, every
    /// user created. Returns a note on the durability settings seen.
    async fn verify(&self, sessions: usize, users: usize) -> Result<String> {
        const COUNTS: &str =
            "SELECT COUNT(*), COUNT(acctstoptime), COUNT(DISTINCT acctsessionid), \
             COALESCE(SUM(CASE WHEN acctterminatecause = 'User-Request' AND acctsessiontime = 900 \
             THEN 1 ELSE 0 END), 0) FROM radacct";
        const HISTORY: &str = "SELECT COUNT(*) FROM radacct_history";
        const USERS: &str = "SELECT COUNT(*) FROM users WHERE login LIKE 'user%'";
        type Counts = (i64, i64, i64, i64);
        let (counts, history, user_rows, note): (Counts, i64, i64, String) = match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url)
                    .await
                    .context("cannot open the SQLite database to verify it")?;
                let counts = sqlx::query_as(COUNTS).fetch_one(&pool).await?;
                let history = sqlx::query_scalar(HISTORY).fetch_one(&pool).await?;
                let user_rows = sqlx::query_scalar(USERS).fetch_one(&pool).await?;
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&pool)
                    .await?;
                let version: String = sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(&pool)
                    .await?;
                pool.close().await;
                (
                    counts,
                    history,
                    user_rows,
                    format!("SQLite {version} journal_mode={mode}"),
                )
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url)
                    .await
                    .context("cannot open the PostgreSQL database to verify it")?;
                let counts = sqlx::query_as(COUNTS).fetch_one(&pool).await?;
                let history = sqlx::query_scalar(HISTORY).fetch_one(&pool).await?;
                let user_rows = sqlx::query_scalar(USERS).fetch_one(&pool).await?;
                let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(&pool)
                    .await?;
                let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
                let version: String = sqlx::query_scalar("SHOW server_version")
                    .fetch_one(&pool)
                    .await?;
                pool.close().await;
                (
                    counts,
                    history,
                    user_rows,
                    format!("PostgreSQL {version} synchronous_commit={sync} fsync={fsync}"),
                )
            }
        };
        let (rows, closed, distinct, stopped) = counts;
        let n = sessions as i64;
        let mut problems = Vec::new();
        if rows != n {
            problems.push(format!("{rows} rows in radacct, expected {n}"));
        }
        if distinct != n {
            problems.push(format!(
                "{distinct} distinct Acct-Session-Ids, expected {n}"
            ));
        }
        if closed != n {
            problems.push(format!("{closed} closed rows, expected {n}"));
        }
        if stopped != n {
            problems.push(format!(
                "{stopped} rows carry the Stop's data (User-Request, 900 s), expected {n}"
            ));
        }
        if history != 0 {
            problems.push(format!("{history} rows in radacct_history, expected 0"));
        }
        if user_rows != users as i64 {
            problems.push(format!("{user_rows} bench users, expected {users}"));
        }
        if !problems.is_empty() {
            bail!("verification failed: {}", problems.join("; "));
        }
        Ok(format!(
            "verified: {} sessions once each, all closed; {note}",
            fmt_int(n as f64)
        ))
    }
}

async fn pg_admin(server: &str) -> Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("PostgreSQL at {server} is needed for --backend postgres"))
}

// ------------------------------------------------------------------------------------------
// The packets.

/// Every packet of a run, built in advance with identifier 0; `packets[session * steps + step]`.
struct LoadPlan {
    packets: Vec<Vec<u8>>,
    sessions: usize,
    steps: usize,
    distinct_users: usize,
    secret: Vec<u8>,
    /// The next session to start, shared by the sockets.
    next: AtomicUsize,
}

impl LoadPlan {
    /// Sessions start at `base` + 0-59 s. Waves of one run get distinct Acct-Session-Ids; with
    /// `nas`, every session is on that NAS.
    fn build(setup: &Setup, base: i64, wave: u32, nas: Option<Ipv4Addr>) -> Result<Self> {
        let secret = DEFAULT_LOCAL_SECRET.as_bytes().to_vec();
        let boot = (base as u32).rotate_left(7) ^ 0x5eed ^ wave.rotate_left(24);
        let mut rng = SplitMix(u64::from(boot));
        let mut users = HashSet::new();
        let mut packets = Vec::with_capacity(setup.sessions * setup.steps);
        for i in 0..setup.sessions {
            let user = rng.below(setup.users as u64);
            users.insert(user);
            let nas_index = (i % setup.nases) as u8;
            let port = 1 + rng.below(64_000) as u32;
            let (port_type, port_id) = match rng.below(10) {
                0..=5 => (15, format!("ge-0/0/{}.{}", port % 8, port)),
                6..=8 => (
                    5,
                    format!("ae0.{}:{}-{}", port % 4000, port / 4000, port % 4000),
                ),
                _ => (19, format!("wlan{}", port % 4)),
            };
            let mac = rng.next().to_be_bytes();
            let s = SessionData {
                user: format!("user{user:05}"),
                sid: format!("{boot:08X}{wave:02X}{i:08X}"),
                nas: nas.unwrap_or(Ipv4Addr::new(10, 255, 0, nas_index + 1)),
                nas_id: format!("bras-{:02}", nas_index + 1),
                port,
                port_type,
                port_id,
                framed: Ipv4Addr::from(0x6440_0000u32 + (i as u32 % 0x003f_fffe) + 1),
                calling: format!(
                    "02-{:02X}-{:02X}-{:02X}-{:02X}-{:02X}",
                    mac[1], mac[2], mac[3], mac[4], mac[5]
                ),
                start: (base + (i % 60) as i64) as u32,
                input_rate: 1_000 + rng.below(2_000_000),
                output_rate: 10_000 + rng.below(20_000_000),
            };
            for step in 0..setup.steps {
                packets.push(s.packet(step, &secret));
            }
        }
        // Re-signing (identifier + Request Authenticator at send time) must give what the
        // builder gives.
        let mut check = packets[0].clone();
        sign(&mut check, 0, &secret);
        ensure!(
            check == packets[0],
            "re-signing a packet does not reproduce the builder's Request Authenticator"
        );
        Ok(Self {
            packets,
            sessions: setup.sessions,
            steps: setup.steps,
            distinct_users: users.len(),
            secret,
            next: AtomicUsize::new(0),
        })
    }

    fn take_session(&self) -> Option<usize> {
        let s = self.next.fetch_add(1, Ordering::Relaxed);
        (s < self.sessions).then_some(s)
    }
}

struct SessionData {
    user: String,
    sid: String,
    nas: Ipv4Addr,
    nas_id: String,
    port: u32,
    port_type: u32,
    port_id: String,
    framed: Ipv4Addr,
    calling: String,
    start: u32,
    /// Octets per simulated second.
    input_rate: u64,
    output_rate: u64,
}

impl SessionData {
    fn packet(&self, step: usize, secret: &[u8]) -> Vec<u8> {
        let status_type = match step {
            0 => status::START,
            3 => status::STOP,
            _ => status::INTERIM_UPDATE,
        };
        let session_time = step as u32 * INTERIM_SECONDS;
        let mut r = Request::accounting(status_type, secret, 0)
            .string(dict::USER_NAME, &self.user)
            .string(dict::ACCT_SESSION_ID, &self.sid)
            .ipv4(dict::NAS_IP_ADDRESS, self.nas)
            .string(dict::NAS_IDENTIFIER, &self.nas_id)
            .u32(dict::NAS_PORT, self.port)
            .string(dict::NAS_PORT_ID, &self.port_id)
            .u32(dict::NAS_PORT_TYPE, self.port_type)
            .u32(dict::SERVICE_TYPE, 2)
            .u32(dict::FRAMED_PROTOCOL, 1)
            .ipv4(dict::FRAMED_IP_ADDRESS, self.framed)
            .string(dict::CALLING_STATION_ID, &self.calling)
            .string(dict::CALLED_STATION_ID, &self.nas_id)
            .u32(dict::ACCT_AUTHENTIC, 1)
            .u32(dict::ACCT_DELAY_TIME, 0)
            .u32(dict::EVENT_TIMESTAMP, self.start + session_time);
        if step == 0 {
            r = r.string(dict::CONNECT_INFO, "1000BASE-T FD");
        } else {
            let input = self.input_rate * u64::from(session_time);
            let output = self.output_rate * u64::from(session_time);
            r = r
                .u32(dict::ACCT_SESSION_TIME, session_time)
                .u32(dict::ACCT_INPUT_OCTETS, input as u32)
                .u32(dict::ACCT_INPUT_GIGAWORDS, (input >> 32) as u32)
                .u32(dict::ACCT_OUTPUT_OCTETS, output as u32)
                .u32(dict::ACCT_OUTPUT_GIGAWORDS, (output >> 32) as u32);
        }
        if step == 3 {
            r = r
                .u32(dict::ACCT_TERMINATE_CAUSE, 1)
                .string(dict::CONNECT_INFO, "1000BASE-T FD");
        }
        r.encode()
    }
}

/// Sets the identifier and recomputes the Accounting-Request's Request Authenticator
/// (RFC 2866 §3: MD5 over the packet with a zero authenticator, then the secret).
fn sign(packet: &mut [u8], identifier: u8, secret: &[u8]) {
    packet[1] = identifier;
    packet[4..20].fill(0);
    let mut md5 = Md5::new();
    md5.update(&*packet);
    md5.update(secret);
    packet[4..20].copy_from_slice(&md5.finalize());
}

/// A small deterministic generator (SplitMix64) for the attribute values.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ------------------------------------------------------------------------------------------
// The load generator.

struct LoadResult {
    acked: u64,
    elapsed: Duration,
    latencies: Vec<u32>,
    retransmits: u64,
    stray: u64,
}

/// Drives every socket until every session is stopped and acknowledged.
async fn generate(
    plan: Arc<LoadPlan>,
    server: SocketAddr,
    in_flight: usize,
    sockets: usize,
) -> Result<LoadResult> {
    let mut bound = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .context("cannot bind a NAS socket")?;
        socket
            .connect(server)
            .await
            .context("cannot connect a NAS socket")?;
        bound.push(socket);
    }
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(sockets);
    for (i, socket) in bound.into_iter().enumerate() {
        // The window split evenly; the first sockets take the remainder.
        let window = in_flight / sockets + usize::from(i < in_flight % sockets);
        let nas = SocketNas::new(socket, plan.clone(), window, start);
        tasks.push(tokio::spawn(nas.run()));
    }
    let mut result = LoadResult {
        acked: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(plan.sessions * plan.steps),
        retransmits: 0,
        stray: 0,
    };
    let mut last_ack = start;
    for task in tasks {
        let stats = task.await.context("a NAS socket task failed")??;
        result.acked += stats.acked;
        result.retransmits += stats.retransmits;
        result.stray += stats.stray;
        result.latencies.extend_from_slice(&stats.latencies);
        last_ack = last_ack.max(stats.last_ack);
    }
    result.elapsed = last_ack.duration_since(start);
    let expected = (plan.sessions * plan.steps) as u64;
    ensure!(
        result.acked == expected,
        "{} packets acknowledged, expected {expected}",
        result.acked
    );
    Ok(result)
}

/// A packet waiting for its answer.
struct InFlight {
    session: usize,
    step: usize,
    bytes: Vec<u8>,
    first_sent: Instant,
    last_sent: Instant,
}

/// One UDP socket of the simulated NAS fleet, with its share of the window.
struct SocketNas {
    socket: UdpSocket,
    plan: Arc<LoadPlan>,
    window: usize,
    slots: Vec<Option<InFlight>>,
    /// Free identifiers, least recently used first.
    free: VecDeque<u8>,
    in_flight: usize,
    latencies: Vec<u32>,
    acked: u64,
    retransmits: u64,
    stray: u64,
    last_ack: Instant,
}

struct SocketStats {
    acked: u64,
    retransmits: u64,
    stray: u64,
    latencies: Vec<u32>,
    last_ack: Instant,
}

impl SocketNas {
    fn new(socket: UdpSocket, plan: Arc<LoadPlan>, window: usize, start: Instant) -> Self {
        Self {
            socket,
            plan,
            window,
            slots: (0..IDS_PER_SOCKET).map(|_| None).collect(),
            free: (0..=u8::MAX).collect(),
            in_flight: 0,
            latencies: Vec::new(),
            acked: 0,
            retransmits: 0,
            stray: 0,
            last_ack: start,
        }
    }

    async fn run(mut self) -> Result<SocketStats> {
        let mut buf = vec![0u8; 4096];
        self.refill().await?;
        let mut next_scan = tokio::time::Instant::now() + RETRANSMIT_SCAN;
        while self.in_flight > 0 {
            let received = tokio::select! {
                r = self.socket.recv(&mut buf) => Some(r),
                _ = tokio::time::sleep_until(next_scan) => None,
            };
            match received {
                Some(r) => {
                    let n = r.context("NAS socket receive")?;
                    self.answer(&buf[..n]).await?;
                    // Take what else is waiting before going back to the scheduler.
                    loop {
                        match self.socket.try_recv(&mut buf) {
                            Ok(n) => self.answer(&buf[..n]).await?,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e).context("NAS socket receive"),
                        }
                    }
                }
                None => {
                    self.retransmit_due().await?;
                    next_scan = tokio::time::Instant::now() + RETRANSMIT_SCAN;
                }
            }
        }
        Ok(SocketStats {
            acked: self.acked,
            retransmits: self.retransmits,
            stray: self.stray,
            latencies: self.latencies,
            last_ack: self.last_ack,
        })
    }

    /// Starts sessions until the window is full or none is left.
    async fn refill(&mut self) -> Result<()> {
        while self.in_flight < self.window {
            let Some(session) = self.plan.take_session() else {
                break;
            };
            self.send(session, 0).await?;
        }
        Ok(())
    }

    async fn send(&mut self, session: usize, step: usize) -> Result<()> {
        let id = self
            .free
            .pop_front()
            .context("no free identifier (window larger than 256 per socket)")?;
        let mut bytes = self.plan.packets[session * self.plan.steps + step].clone();
        sign(&mut bytes, id, &self.plan.secret);
        let now = Instant::now();
        self.socket.send(&bytes).await.context("NAS socket send")?;
        self.slots[usize::from(id)] = Some(InFlight {
            session,
            step,
            bytes,
            first_sent: now,
            last_sent: now,
        });
        self.in_flight += 1;
        Ok(())
    }

    async fn answer(&mut self, response: &[u8]) -> Result<()> {
        let Some(&id) = response.get(1) else {
            self.stray += 1;
            return Ok(());
        };
        let slot = &mut self.slots[usize::from(id)];
        let authentic = slot
            .as_ref()
            .is_some_and(|p| is_accounting_response(response, &p.bytes, &self.plan.secret));
        if !authentic {
            // A second answer to a retransmitted packet, or garbage.
            self.stray += 1;
            return Ok(());
        }
        let packet = slot.take().expect("checked above");
        let now = Instant::now();
        let micros = now.duration_since(packet.first_sent).as_micros();
        self.latencies
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
        self.acked += 1;
        self.last_ack = now;
        self.in_flight -= 1;
        self.free.push_back(id);
        if packet.step + 1 < self.plan.steps {
            self.send(packet.session, packet.step + 1).await
        } else {
            self.refill().await
        }
    }

    async fn retransmit_due(&mut self) -> Result<()> {
        let now = Instant::now();
        if self.in_flight > 0 && now.duration_since(self.last_ack) > STALL_LIMIT {
            bail!(
                "no answer for {} s with {} packets in flight on a socket",
                STALL_LIMIT.as_secs(),
                self.in_flight
            );
        }
        for packet in self.slots.iter_mut().flatten() {
            if now.duration_since(packet.last_sent) >= RETRANSMIT_AFTER {
                self.socket
                    .send(&packet.bytes)
                    .await
                    .context("NAS socket send")?;
                packet.last_sent = now;
                self.retransmits += 1;
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// What the node reports about itself.

#[derive(Default)]
struct ServerStats {
    commits: f64,
    batch_sum: f64,
    commit_seconds_sum: f64,
    /// Upper bound of the histogram bucket holding the slowest commit (seconds); None when it
    /// is past the last bucket.
    slowest_commit: Option<f64>,
    /// Upper bound of the bucket holding the largest batch.
    largest_batch: Option<f64>,
    retransmits_answered: f64,
    /// `reason=count` for every drop reason that was counted.
    drops: Vec<String>,
}

impl ServerStats {
    fn read(metrics: &Metrics) -> Self {
        let text = metrics.encode();
        let value = |name: &str| -> f64 {
            text.lines()
                .filter_map(|l| l.strip_prefix(name))
                .filter_map(|rest| rest.strip_prefix(' '))
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .sum()
        };
        let drops = [
            DropReason::UnknownClient,
            DropReason::Malformed,
            DropReason::BadAuthenticator,
            DropReason::BadMessageAuthenticator,
            DropReason::UnsupportedCode,
            DropReason::DuplicateInFlight,
            DropReason::QueueFull,
            DropReason::StoreRejected,
            DropReason::ShuttingDown,
        ]
        .into_iter()
        .filter_map(|r| {
            let n = metrics.dropped(r);
            (n > 0).then(|| format!("{}={n}", r.as_str()))
        })
        .collect();
        Self {
            commits: value("radacctd_batch_size_count"),
            batch_sum: value("radacctd_batch_size_sum"),
            commit_seconds_sum: value("radacctd_commit_seconds_sum"),
            slowest_commit: top_bucket(&text, "radacctd_commit_seconds"),
            largest_batch: top_bucket(&text, "radacctd_batch_size"),
            retransmits_answered: value("radacctd_retransmits_answered_total"),
            drops,
        }
    }
}

/// The smallest `le` of histogram `name` whose cumulative count is the total: the bucket of
/// the largest observation (None when that is the `+Inf` bucket or there is no observation).
fn top_bucket(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.parse().ok()?, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.iter().map(|&(_, c)| c).fold(0.0, f64::max);
    buckets
        .iter()
        .find(|&&(_, c)| total > 0.0 && c >= total)
        .map(|&(le, _)| le)
        .filter(|le| le.is_finite())
}

// ------------------------------------------------------------------------------------------
// CPU use, from /proc (Linux); absent elsewhere.

/// Cores busy before a run above which the run is flagged as disturbed.
const BUSY_BEFORE_RUN: f64 = 0.25;
/// Cores used during a run by others (and by the kernel outside any process: loopback
/// softirqs, about 0.3 at most here) above which the run is flagged as disturbed.
const BUSY_DURING_RUN: f64 = 0.4;

/// Clock ticks per second of /proc/*/stat (USER_HZ, 100 on every Linux build).
const USER_HZ: f64 = 100.0;

struct CpuSample {
    /// /proc/stat: (busy, total) ticks of all CPUs.
    machine: Option<(u64, u64)>,
    /// /proc/self/stat: utime + stime ticks of this process.
    process: Option<u64>,
    /// Every other process: pid → (name, utime + stime ticks). PostgreSQL's server and
    /// backends are all named `postgres`.
    others: HashMap<u32, (String, u64)>,
    cpus: usize,
    at: Instant,
}

/// utime + stime ticks from the text of a /proc/PID/stat file, with the process name.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    let comm = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    Some((
        comm,
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    ))
}

impl CpuSample {
    fn take() -> Self {
        let machine = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            let line = s.lines().next()?;
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3)? + v.get(4).unwrap_or(&0);
            Some((total - idle, total))
        });
        let process = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| Some(stat_ticks(&s)?.1));
        let me = std::process::id();
        let others = std::fs::read_dir("/proc")
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&pid| pid != me)
                    .filter_map(|pid| {
                        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                        let (comm, ticks) = stat_ticks(&stat)?;
                        Some((pid, (comm.to_owned(), ticks)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            machine,
            process,
            others,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            at: Instant::now(),
        }
    }
}

/// Waits until the machine is idle (measured over half a second) or `limit` has passed;
/// returns the cores last seen busy and the time waited.
fn wait_for_idle(limit: Duration) -> (Option<f64>, Duration) {
    let start = Instant::now();
    loop {
        let a = CpuSample::take();
        std::thread::sleep(Duration::from_millis(500));
        let busy = CpuUse::between(&a, &CpuSample::take(), 0).machine;
        if busy.is_none_or(|b| b <= BUSY_BEFORE_RUN) || start.elapsed() >= limit {
            return (
                busy,
                start.elapsed().saturating_sub(Duration::from_millis(500)),
            );
        }
    }
}

/// CPU time of the calling thread in nanoseconds (/proc/thread-self/schedstat), 0 if unknown.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU use during the load, in cores.
struct CpuUse {
    cpus: usize,
    machine: Option<f64>,
    process: Option<f64>,
    postgres: Option<f64>,
    loadgen: f64,
    /// Other processes by name, busiest first (cores).
    others: Vec<(String, f64)>,
}

impl CpuUse {
    fn between(a: &CpuSample, b: &CpuSample, loadgen_ns: u64) -> Self {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let machine = a
            .machine
            .zip(b.machine)
            .map(|((b0, t0), (b1, t1))| (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * b.cpus as f64);
        let process = a
            .process
            .zip(b.process)
            .map(|(p0, p1)| p1.saturating_sub(p0) as f64 / USER_HZ / secs);
        // Per process name; a process that started during the interval counts whole, one that
        // ended is missed.
        let mut by_name: HashMap<&str, u64> = HashMap::new();
        for (pid, (comm, ticks)) in &b.others {
            let before = a.others.get(pid).map_or(0, |(_, t)| *t);
            *by_name.entry(comm.as_str()).or_default() += ticks.saturating_sub(before);
        }
        let cores = |ticks: u64| ticks as f64 / USER_HZ / secs;
        let postgres =
            (!b.others.is_empty()).then(|| cores(by_name.remove("postgres").unwrap_or(0)));
        let mut others: Vec<(String, f64)> = by_name
            .into_iter()
            .filter(|&(_, t)| t > 0)
            .map(|(name, t)| (name.to_owned(), cores(t)))
            .collect();
        others.sort_by(|x, y| y.1.total_cmp(&x.1));
        Self {
            cpus: b.cpus,
            machine,
            process,
            postgres,
            loadgen: loadgen_ns as f64 / 1e9 / secs,
            others,
        }
    }

    /// Cores used by neither radacctd, the load generator nor PostgreSQL: kernel work not
    /// charged to a process, and whatever else runs on the machine.
    fn rest(&self) -> Option<f64> {
        let rest = self.machine? - self.process? - self.postgres.unwrap_or(0.0);
        Some(rest.max(0.0))
    }

    /// The three busiest other processes, e.g. `rustc 0.61, cargo 0.05`.
    fn busiest_others(&self) -> String {
        let top: Vec<String> = self
            .others
            .iter()
            .take(3)
            .map(|(name, c)| format!("{name} {c:.2}"))
            .collect();
        if top.is_empty() {
            "none seen: kernel threads or processes that ended".to_owned()
        } else {
            top.join(", ")
        }
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(m) = self.machine {
            let _ = write!(out, "machine {m:.2} of {} cores busy", self.cpus);
        }
        if let Some(p) = self.process {
            let server = (p - self.loadgen).max(0.0);
            let _ = write!(
                out,
                ", radacctd {server:.2}, load generator {:.2}",
                self.loadgen
            );
            if let Some(pg) = self.postgres.filter(|&pg| pg > 0.005) {
                let _ = write!(out, ", postgres {pg:.2}");
            }
            if let Some(r) = self.rest() {
                let _ = write!(out, ", rest (kernel, other processes) {r:.2}");
            }
        }
        if out.is_empty() {
            out.push_str("unknown");
        }
        out
    }
}

// ------------------------------------------------------------------------------------------
// Reporting.

fn summary(backend: Backend, results: &[RunResult]) -> (String, bool) {
    let rates: Vec<f64> = results.iter().map(RunResult::rate).collect();
    let rate = median(&rates);
    let p50 = median(
        &results
            .iter()
            .map(|r| r.percentile_ms(50.0))
            .collect::<Vec<_>>(),
    );
    let p99 = median(
        &results
            .iter()
            .map(|r| r.percentile_ms(99.0))
            .collect::<Vec<_>>(),
    );
    let max = results
        .iter()
        .map(|r| r.percentile_ms(100.0))
        .fold(0.0, f64::max);
    let batch = median(
        &results
            .iter()
            .map(|r| r.server.batch_sum / r.server.commits.max(1.0))
            .collect::<Vec<_>>(),
    );
    let commit = median(
        &results
            .iter()
            .map(|r| r.server.commit_seconds_sum * 1000.0 / r.server.commits.max(1.0))
            .collect::<Vec<_>>(),
    );
    let target = backend.target();
    let rate_ok = rate >= target;
    let p99_ok = p99 < TARGET_P99_MS;
    let runs: Vec<String> = rates.iter().map(|&r| fmt_int(r)).collect();
    let line = format!(
        "{}: median {} acked/s (runs: {}), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         avg batch {:.0}, avg commit {:.2} ms\n    throughput {:.2}x the target {}/s: {}; \
         p99 {:.2}x the limit {} ms: {}",
        backend.name(),
        fmt_int(rate),
        runs.join(", "),
        p50,
        p99,
        max,
        batch,
        commit,
        rate / target,
        fmt_int(target),
        if rate_ok { "MET" } else { "MISSED" },
        p99 / TARGET_P99_MS,
        TARGET_P99_MS,
        if p99_ok { "MET" } else { "MISSED" },
    );
    let disturbed = results.iter().filter(|r| r.disturbed()).count();
    let line = if disturbed > 0 {
        format!(
            "{line}\n    ({disturbed} of {} runs disturbed by other processes: see the WARNING lines)",
            results.len()
        )
    } else {
        line
    };
    (line, rate_ok && p99_ok)
}

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

// ------------------------------------------------------------------------------------------
// --storm: the NAS reboot storm.

mod storm {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// What one storm run measured.
    struct StormResult {
        /// First wave: Starts per second and p99 (ms).
        fill_rate: f64,
        fill_p99: f64,
        /// From sending the Accounting-On to its verified answer.
        on_ms: f64,
        closed: i64,
        /// The other NAS meanwhile: packets answered and the slowest answer (ms).
        other_answered: usize,
        other_max_ms: f64,
        /// Second wave.
        restart_rate: f64,
        restart_p99: f64,
        disturbed: bool,
    }

    pub(super) fn run(setup: &Setup, backends: &[Backend], runs: usize) -> Result<bool> {
        println!(
            "storm: one NAS opens {} sessions, sends Accounting-On, opens {} new ones; \
             {} in flight over {} sockets, {} run(s) per backend",
            fmt_int(setup.sessions as f64),
            fmt_int(setup.sessions as f64),
            setup.in_flight,
            setup.sockets,
            runs
        );
        let mut ok = true;
        for &backend in backends {
            let mut results = Vec::new();
            for i in 0..runs {
                let name = format!("{} storm run {}/{}", backend.name(), i + 1, runs);
                match one(setup, backend) {
                    Ok(r) => {
                        println!(
                            "{name}: fill {}/s (p99 {:.1} ms); Accounting-On answered in {:.0} ms, \
                             {} sessions closed; other NAS meanwhile: {} answered, slowest {:.0} ms; \
                             new Starts {}/s (p99 {:.1} ms){}",
                            fmt_int(r.fill_rate),
                            r.fill_p99,
                            r.on_ms,
                            fmt_int(r.closed as f64),
                            r.other_answered,
                            r.other_max_ms,
                            fmt_int(r.restart_rate),
                            r.restart_p99,
                            if r.disturbed { " [DISTURBED]" } else { "" }
                        );
                        results.push(r);
                    }
                    Err(e) => {
                        println!("{name}: FAILED: {e:#}");
                        ok = false;
                    }
                }
            }
            if results.is_empty() {
                continue;
            }
            let m = |f: fn(&StormResult) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
            let on = m(|r| r.on_ms);
            println!(
                "{} storm median of {}: Accounting-On {:.0} ms (target < {TARGET_STORM_MS:.0} ms: {}), \
                 fill {}/s, new Starts {}/s ({:.0} % of fill), p99 {:.1} ms",
                backend.name(),
                results.len(),
                on,
                if on < TARGET_STORM_MS { "met" } else { "MISSED" },
                fmt_int(m(|r| r.fill_rate)),
                fmt_int(m(|r| r.restart_rate)),
                100.0 * m(|r| r.restart_rate) / m(|r| r.fill_rate),
                m(|r| r.restart_p99),
            );
        }
        Ok(ok)
    }

    fn one(setup: &Setup, backend: Backend) -> Result<StormResult> {
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("radacctd")
            .build()
            .context("cannot start the server runtime")?;
        let db = server_rt.block_on(BenchDb::create(backend, &setup.pg))?;
        let outcome = on_db(setup, &server_rt, &db);
        let dropped = server_rt.block_on(db.drop_db());
        let result = outcome?;
        dropped?;
        Ok(result)
    }

    fn on_db(
        setup: &Setup,
        server_rt: &tokio::runtime::Runtime,
        db: &BenchDb,
    ) -> Result<StormResult> {
        let (radius, _metrics, shutdown, handle) = start_node(server_rt, db)?;
        let now = chrono::Utc::now().timestamp();
        let first = Arc::new(LoadPlan::build(setup, now - 120, 0, Some(STORM_NAS))?);
        let (background, _) = wait_for_idle(setup.idle_wait);
        let fill = load(first, radius, setup)?;

        // The reboot, while another NAS keeps sending one packet at a time.
        let on_time = chrono::Utc::now().timestamp();
        let second = Arc::new(LoadPlan::build(setup, on_time, 1, Some(STORM_NAS))?);
        let rebooted = server_rt.block_on(async {
            let done = Arc::new(AtomicBool::new(false));
            let other = tokio::spawn(other_nas(radius, done.clone()));
            let on = accounting_on(radius, on_time).await;
            done.store(true, Ordering::SeqCst);
            let other = other.await.context("the other NAS task failed")??;
            anyhow::Ok((on?, other))
        });
        let (on, (other_answered, other_max)) = rebooted?;
        let nas = STORM_NAS.to_string();
        let still_open = server_rt.block_on(db.scalar(&format!(
            "SELECT COUNT(*) FROM radacct WHERE nasipaddress = '{nas}' AND acctstoptime IS NULL"
        )))?;
        let closed = server_rt.block_on(db.scalar(&format!(
            "SELECT COUNT(*) FROM radacct WHERE nasipaddress = '{nas}' AND acctstoptime IS NOT NULL"
        )))?;
        ensure!(
            still_open == 0 && closed == setup.sessions as i64,
            "after the Accounting-On: {still_open} sessions still open, {closed} closed"
        );

        let restart = load(second, radius, setup)?;
        shutdown.cancel();
        server_rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .context("radacctd did not stop within 30 s")?
                .context("the radacctd task failed")?
                .context("radacctd stopped with an error")
        })?;
        let open = server_rt.block_on(db.scalar(&format!(
            "SELECT COUNT(*) FROM radacct WHERE nasipaddress = '{nas}' AND acctstoptime IS NULL"
        )))?;
        ensure!(
            open == setup.sessions as i64,
            "after the new Starts: {open} sessions open, expected {}",
            setup.sessions
        );
        let rate = |r: &LoadResult| r.acked as f64 / r.elapsed.as_secs_f64();
        let p99 = |r: &LoadResult| {
            let mut l = r.latencies.clone();
            l.sort_unstable();
            percentile(&l, 0.99) as f64 / 1000.0
        };
        Ok(StormResult {
            fill_rate: rate(&fill),
            fill_p99: p99(&fill),
            on_ms: on.as_secs_f64() * 1000.0,
            closed,
            other_answered,
            other_max_ms: other_max.as_secs_f64() * 1000.0,
            restart_rate: rate(&restart),
            restart_p99: p99(&restart),
            disturbed: background.is_none_or(|b| b > BUSY_BEFORE_RUN),
        })
    }

    /// Runs a wave on the load generator's own thread.
    fn load(plan: Arc<LoadPlan>, radius: SocketAddr, setup: &Setup) -> Result<LoadResult> {
        let (in_flight, sockets) = (setup.in_flight, setup.sockets);
        std::thread::Builder::new()
            .name("loadgen".into())
            .spawn(move || -> Result<LoadResult> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the load generator runtime")?
                    .block_on(generate(plan, radius, in_flight, sockets))
            })
            .context("cannot start the load generator thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
    }

    /// Sends the rebooted NAS's Accounting-On (retransmitted every second) and returns the
    /// time from the first send to its verified answer.
    async fn accounting_on(radius: SocketAddr, t: i64) -> Result<Duration> {
        let secret = DEFAULT_LOCAL_SECRET.as_bytes();
        let request = Request::accounting(status::ACCOUNTING_ON, secret, 7)
            .ipv4(dict::NAS_IP_ADDRESS, STORM_NAS)
            .string(dict::ACCT_SESSION_ID, "00000000")
            .u32(dict::EVENT_TIMESTAMP, t as u32)
            .encode();
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(radius).await?;
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        for _ in 0..30 {
            socket.send(&request).await?;
            let deadline = tokio::time::Instant::now() + RETRANSMIT_AFTER;
            while let Ok(n) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                if is_accounting_response(&buf[..n?], &request, secret) {
                    return Ok(started.elapsed());
                }
            }
        }
        bail!("the Accounting-On was not answered within 30 s")
    }

    /// Another NAS that keeps opening sessions, one packet at a time, until `done`; returns
    /// how many were answered and the slowest answer.
    async fn other_nas(radius: SocketAddr, done: Arc<AtomicBool>) -> Result<(usize, Duration)> {
        let secret = DEFAULT_LOCAL_SECRET.as_bytes();
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(radius).await?;
        let (mut answered, mut slowest) = (0usize, Duration::ZERO);
        let mut buf = [0u8; 4096];
        let t = chrono::Utc::now().timestamp() as u32;
        while !done.load(Ordering::SeqCst) {
            let request = Request::accounting(status::START, secret, answered as u8)
                .string(dict::USER_NAME, "other-nas-user")
                .string(dict::ACCT_SESSION_ID, &format!("other-{answered}"))
                .ipv4(dict::NAS_IP_ADDRESS, OTHER_NAS)
                .u32(dict::EVENT_TIMESTAMP, t)
                .encode();
            let sent = Instant::now();
            socket.send(&request).await?;
            loop {
                let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
                    .await
                    .context("the other NAS got no answer within 10 s")??;
                if is_accounting_response(&buf[..n], &request, secret) {
                    break;
                }
            }
            slowest = slowest.max(sent.elapsed());
            answered += 1;
        }
        Ok((answered, slowest))
    }
}

impl BenchDb {
    /// One integer from the run's database.
    async fn scalar(&self, sql: &str) -> Result<i64> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await?;
                let v = sqlx::query_scalar(sql).fetch_one(&pool).await?;
                pool.close().await;
                v
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await?;
                let v = sqlx::query_scalar(sql).fetch_one(&pool).await?;
                pool.close().await;
                v
            }
        })
    }
}

//! The ingest benchmark: radacctd in-process against a closed-loop NAS fleet over UDP.
//!
//! ```text
//! cargo bench --bench ingest -- [--backend sqlite|postgres|both] [--sessions 20000]
//!                               [--in-flight 256] [--runs 5] [--sockets 4] [--users 5000]
//!                               [--nases 10] [--pg postgres://postgres@127.0.0.1:5432]
//!                               [--idle-wait 300] [--enforce-targets]
//! cargo bench --bench ingest -- --storm [--sessions 100000] [--backend ...] [--runs 3]
//! cargo bench --bench ingest -- --http-clients 500 [--http-max-requests N] [--backend ...] [--runs 3]
//! cargo bench --bench ingest -- --outage 30 [--rate 5000] [--backend ...] [--runs 1]
//! cargo bench --bench ingest -- --soak 10 [--rate 5000] [--online 200000] [--rows 1000000]
//! cargo bench --bench ingest -- --history 10000000 [--backend ...] [--runs 3]
//! ```
//!
//! `--http-clients N` measures HTTP queries during the ingest (see `mod http_load` at the end):
//! each run is the ingest alone, then the same ingest while N clients query the node.
//! `--outage` (a database outage under steady load) and `--soak` (minutes of steady load on a
//! million rows) are described in their modules at the end of this file.
//!
//! `--storm` measures a NAS reboot storm (SPEC §9) instead: one NAS opens `sessions` sessions
//! (Starts only), then, once the server's upkeep after those Starts has run and the machine is
//! idle, sends Accounting-On; the bench reports the time to its answer and checks
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
    /// HTTP clients querying the node while the ingest runs (`mod http_load`); 0 = off.
    #[arg(long, default_value_t = 0)]
    http_clients: usize,
    /// The node's `http.max_concurrent_requests` (default: radacctd's).
    #[arg(long, value_name = "N")]
    http_max_requests: Option<usize>,
    /// Measure a database outage of this many seconds under steady load instead (see `mod
    /// outage` at the end of this file).
    #[arg(long, value_name = "SECONDS")]
    outage: Option<u64>,
    /// Run a soak of this many minutes instead (see `mod soak` at the end of this file).
    #[arg(long, value_name = "MINUTES")]
    soak: Option<u64>,
    /// `--outage` and `--soak`: packets per second the NAS fleet offers (whatever the answers).
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// `--soak`: sessions online during the soak.
    #[arg(long, default_value_t = 200_000)]
    online: usize,
    /// `--soak`: rows in `radacct` before the soak (the online sessions and closed ones).
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Measure ingest before and after this many closed sessions of history, and the IP
    /// lookup over them, instead (see `benches/ingest/history.rs`).
    #[arg(long, value_name = "SESSIONS")]
    history: Option<u32>,
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
        http_max_requests: args.http_max_requests,
    };
    if args.storm {
        return storm::run(&setup, backends, args.runs);
    }
    if args.http_clients > 0 {
        return http_load::run(&setup, backends, args.runs, args.http_clients);
    }
    if let Some(seconds) = args.outage {
        return outage::run(&setup, backends, args.runs, seconds, args.rate);
    }
    if let Some(sessions) = args.history {
        return history::run(&setup, backends, args.runs, &history::Plan { sessions });
    }
    if let Some(minutes) = args.soak {
        let soak = soak::Plan {
            minutes,
            rate: args.rate,
            online: args.online,
            rows: args.rows,
        };
        return soak::run(&setup, backends, args.runs, &soak);
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
    /// `http.max_concurrent_requests` of the node, when not the default.
    http_max_requests: Option<usize>,
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
    on_fresh_db(setup, backend, |rt, db| run_on(setup, rt, db))
}

/// Runs `run` with a new server runtime and a fresh database of `backend`, then drops the
/// database (PostgreSQL) whatever happened.
fn on_fresh_db<T>(
    setup: &Setup,
    backend: Backend,
    run: impl FnOnce(&tokio::runtime::Runtime, &BenchDb) -> Result<T>,
) -> Result<T> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("radacctd")
        .build()
        .context("cannot start the server runtime")?;
    let db = server_rt.block_on(BenchDb::create(backend, &setup.pg))?;
    let outcome = run(&server_rt, &db);
    let dropped = server_rt.block_on(db.drop_db());
    let result = outcome?;
    dropped?;
    Ok(result)
}

fn run_on(setup: &Setup, server_rt: &tokio::runtime::Runtime, db: &BenchDb) -> Result<RunResult> {
    let (radius, metrics, shutdown, handle) = start_node(setup, server_rt, db)?;

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
fn start_node(setup: &Setup, server_rt: &tokio::runtime::Runtime, db: &BenchDb) -> Result<Node> {
    server_rt.block_on(async {
        // An admin password, so that the node does not make one up and print it.
        let mut toml = format!(
            "database_url = \"{}\"\nnode = \"bench\"\nadmin_password = \"{}\"\n\
             [radius]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n",
            db.url,
            uuid::Uuid::new_v4().simple()
        );
        if let Some(n) = setup.http_max_requests {
            toml.push_str(&format!("max_concurrent_requests = {n}\n"));
        }
        let config = Layer::from_toml(&toml)
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
        on_fresh_db(setup, backend, |rt, db| on_db(setup, rt, db))
    }

    fn on_db(
        setup: &Setup,
        server_rt: &tokio::runtime::Runtime,
        db: &BenchDb,
    ) -> Result<StormResult> {
        let (radius, _metrics, shutdown, handle) = start_node(setup, server_rt, db)?;
        let now = chrono::Utc::now().timestamp();
        let first = Arc::new(LoadPlan::build(setup, now - 120, 0, Some(STORM_NAS))?);
        let (background, _) = wait_for_idle(setup.idle_wait);
        let fill = load(first, radius, setup)?;

        // A NAS reboots hours or days after its sessions opened, not while the server is still
        // busy with the upkeep their Starts set off: the Accounting-On comes after that upkeep
        // has run and ended, on an idle machine.
        server_rt.block_on(db.after_upkeep(Duration::from_secs(120)))?;
        let (quiet, _) = wait_for_idle(setup.idle_wait);
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
            percentile(&l, 99.0) as f64 / 1000.0
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
            disturbed: [background, quiet]
                .iter()
                .any(|b| b.is_none_or(|b| b > BUSY_BEFORE_RUN)),
        })
    }

    /// Runs a wave on the load generator's own thread.
    pub(super) fn load(
        plan: Arc<LoadPlan>,
        radius: SocketAddr,
        setup: &Setup,
    ) -> Result<LoadResult> {
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
    /// Runs one statement on the run's database; rows affected.
    async fn execute(&self, sql: &str) -> Result<u64> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await?;
                let n = sqlx::query(sql).execute(&pool).await?.rows_affected();
                pool.close().await;
                n
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await?;
                let n = sqlx::query(sql).execute(&pool).await?.rows_affected();
                pool.close().await;
                n
            }
        })
    }

    /// Returns once the upkeep that a burst of writes sets off has run and ended. On PostgreSQL
    /// radacctd ANALYZEs and, where autovacuum is off, VACUUMs `radacct` at its next round (up to
    /// [`STATISTICS_INTERVAL`](radacctd::store::postgres::STATISTICS_INTERVAL) later): wait for
    /// that round, then until no VACUUM or ANALYZE runs on the database, at most `limit`. SQLite
    /// has no such upkeep.
    async fn after_upkeep(&self, limit: Duration) -> Result<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        tokio::time::sleep(radacctd::store::postgres::STATISTICS_INTERVAL + Duration::from_secs(1))
            .await;
        let started = Instant::now();
        while started.elapsed() < limit {
            let running = self
                .scalar(
                    "SELECT (SELECT COUNT(*) FROM pg_stat_progress_vacuum \
                       WHERE datname = current_database()) \
                     + (SELECT COUNT(*) FROM pg_stat_progress_analyze \
                       WHERE datname = current_database())",
                )
                .await?;
            if running == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("VACUUM or ANALYZE still running on the database after {limit:?}")
    }

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

// ------------------------------------------------------------------------------------------
// --http-clients N: HTTP queries while the ingest runs.

mod http_load {
    //! Each run is a pair on fresh databases: the ingest alone, then the same ingest while
    //! `clients` HTTP clients query the node in a closed loop (each sends its next request when
    //! the previous is answered): half `getOnlineSessions(userId)` over `POST /graphql` with
    //! `Authorization: Bearer`, half `GET <webservice>/Session?userId=` with `Authtoken`, for
    //! random users of the run. Both runs start with the run's subscribers already in `users`
    //! (as on a node in service), so every query names an existing user and the two ingest
    //! figures compare like with like. Any answer but a 200 (for GraphQL: with the list) is an
    //! error. Only requests answered while the ingest ran are counted.

    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    use base64::Engine;
    use futures_util::StreamExt;
    use radacctd::store::Store;

    use super::*;

    /// The console API's root in the bench node (the default `http.webservice_path`).
    const WEBSERVICE: &str = "/webconsole/api";
    /// The seed query of SPEC §4.
    const SEED_QUERY: &str = "query getOnlineSessions($userId: Int!) { getOnlineSessions(userId: $userId) \
        { id sessionId nasIpAddress nasPortId nasPortType startTime connectInfoStart callingStationId framedIpAddress } }";
    /// A request not answered within this is an error.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// The clients must all have been answered once (connections open) within this before
    /// the ingest starts.
    const WARM_UP_LIMIT: Duration = Duration::from_secs(60);
    /// Users created concurrently before a run.
    const CREATE_CONCURRENCY: usize = 16;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Graphql,
        Console,
    }

    /// One answered (or failed) request.
    struct Record {
        kind: Kind,
        micros: u32,
        ok: bool,
        done: Instant,
    }

    /// What the clients saw while the ingest ran.
    struct HttpFigures {
        rate: f64,
        graphql: KindFigures,
        console: KindFigures,
        /// A few error descriptions, to say what went wrong.
        error_samples: Vec<String>,
    }

    struct KindFigures {
        requests: usize,
        errors: usize,
        p50_ms: f64,
        p99_ms: f64,
    }

    impl KindFigures {
        fn of(records: &[&Record], kind: Kind) -> Self {
            let mut micros: Vec<u32> = records
                .iter()
                .filter(|r| r.kind == kind && r.ok)
                .map(|r| r.micros)
                .collect();
            micros.sort_unstable();
            Self {
                requests: records.iter().filter(|r| r.kind == kind).count(),
                errors: records.iter().filter(|r| r.kind == kind && !r.ok).count(),
                p50_ms: percentile(&micros, 50.0) as f64 / 1000.0,
                p99_ms: percentile(&micros, 99.0) as f64 / 1000.0,
            }
        }
    }

    /// One run: the ingest's figures, and the HTTP clients' when there were any.
    struct Outcome {
        acked_rate: f64,
        p50_ms: f64,
        p99_ms: f64,
        http: Option<HttpFigures>,
        cpu: String,
        disturbed: bool,
    }

    pub(super) fn run(
        setup: &Setup,
        backends: &[Backend],
        runs: usize,
        clients: usize,
    ) -> Result<bool> {
        println!(
            "http load: {} sessions x {} packets, {} in flight; {} HTTP clients (half GraphQL \
             getOnlineSessions, half console Session); each run = ingest alone, then ingest with \
             the clients; {} run(s) per backend",
            fmt_int(setup.sessions as f64),
            setup.steps,
            setup.in_flight,
            clients,
            runs
        );
        let mut ok = true;
        for &backend in backends {
            let mut pairs = Vec::new();
            for i in 0..runs {
                let name = format!("{} http run {}/{}", backend.name(), i + 1, runs);
                let pair = one(setup, backend, 0).and_then(|quiet| {
                    println!("{name}, ingest alone: {}", ingest_line(&quiet));
                    let loaded = one(setup, backend, clients)?;
                    Ok((quiet, loaded))
                });
                match pair {
                    Ok((quiet, loaded)) => {
                        println!(
                            "{name}, with {clients} HTTP clients: {}",
                            ingest_line(&loaded)
                        );
                        if let Some(h) = &loaded.http {
                            println!("    {}", http_line(h));
                        }
                        let errors = loaded
                            .http
                            .as_ref()
                            .map_or(0, |h| h.graphql.errors + h.console.errors);
                        if errors > 0 {
                            ok = false;
                        }
                        pairs.push((quiet, loaded));
                    }
                    Err(e) => {
                        println!("{name}: FAILED: {e:#}");
                        ok = false;
                    }
                }
            }
            if !pairs.is_empty() {
                println!("{}", summary(backend, &pairs));
            }
        }
        Ok(ok)
    }

    fn ingest_line(o: &Outcome) -> String {
        format!(
            "{} acked/s, p50 {:.2} ms, p99 {:.2} ms; cpu: {}{}",
            fmt_int(o.acked_rate),
            o.p50_ms,
            o.p99_ms,
            o.cpu,
            if o.disturbed { " [DISTURBED]" } else { "" }
        )
    }

    fn http_line(h: &HttpFigures) -> String {
        let mut out = format!(
            "HTTP {} req/s; getOnlineSessions {} requests, p50 {:.2} ms, p99 {:.2} ms, {} errors; \
             Session {} requests, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            fmt_int(h.rate),
            fmt_int(h.graphql.requests as f64),
            h.graphql.p50_ms,
            h.graphql.p99_ms,
            h.graphql.errors,
            fmt_int(h.console.requests as f64),
            h.console.p50_ms,
            h.console.p99_ms,
            h.console.errors,
        );
        if !h.error_samples.is_empty() {
            let _ = write!(out, "\n    errors, e.g.: {}", h.error_samples.join("; "));
        }
        out
    }

    fn summary(backend: Backend, pairs: &[(Outcome, Outcome)]) -> String {
        let m = |f: &dyn Fn(&(Outcome, Outcome)) -> f64| {
            median(&pairs.iter().map(f).collect::<Vec<_>>())
        };
        let runs = |f: &dyn Fn(&(Outcome, Outcome)) -> f64| {
            pairs
                .iter()
                .map(|p| fmt_int(f(p)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let http = |f: fn(&HttpFigures) -> f64| {
            move |p: &(Outcome, Outcome)| p.1.http.as_ref().map_or(0.0, f)
        };
        let errors: usize = pairs
            .iter()
            .filter_map(|p| p.1.http.as_ref())
            .map(|h| h.graphql.errors + h.console.errors)
            .sum();
        let requests: usize = pairs
            .iter()
            .filter_map(|p| p.1.http.as_ref())
            .map(|h| h.graphql.requests + h.console.requests)
            .sum();
        let quiet = m(&|p| p.0.acked_rate);
        let loaded = m(&|p| p.1.acked_rate);
        let disturbed = pairs
            .iter()
            .filter(|p| p.0.disturbed || p.1.disturbed)
            .count();
        format!(
            "{} median of {}: ingest alone {} acked/s ({}), p99 {:.1} ms; with HTTP load {} acked/s \
             ({}), p99 {:.1} ms: {:.2}x; HTTP {} req/s ({}), getOnlineSessions p50 {:.1} ms p99 {:.1} ms, \
             Session p50 {:.1} ms p99 {:.1} ms; {} errors in {} requests{}",
            backend.name(),
            pairs.len(),
            fmt_int(quiet),
            runs(&|p| p.0.acked_rate),
            m(&|p| p.0.p99_ms),
            fmt_int(loaded),
            runs(&|p| p.1.acked_rate),
            m(&|p| p.1.p99_ms),
            loaded / quiet.max(1.0),
            fmt_int(m(&http(|h| h.rate))),
            runs(&http(|h| h.rate)),
            m(&http(|h| h.graphql.p50_ms)),
            m(&http(|h| h.graphql.p99_ms)),
            m(&http(|h| h.console.p50_ms)),
            m(&http(|h| h.console.p99_ms)),
            errors,
            fmt_int(requests as f64),
            if disturbed > 0 {
                format!(" ({disturbed} pair(s) disturbed by other processes)")
            } else {
                String::new()
            },
        )
    }

    /// One run on a fresh database: the ingest, with `clients` HTTP clients when non-zero.
    fn one(setup: &Setup, backend: Backend, clients: usize) -> Result<Outcome> {
        on_fresh_db(setup, backend, |rt, db| on_db(setup, rt, db, clients))
    }

    fn on_db(
        setup: &Setup,
        server_rt: &tokio::runtime::Runtime,
        db: &BenchDb,
        clients: usize,
    ) -> Result<Outcome> {
        let password = uuid::Uuid::new_v4().simple().to_string();
        let node = start(server_rt, db, &password)?;
        let now = chrono::Utc::now().timestamp();
        let base = now - i64::from(3 * INTERIM_SECONDS) - 120;
        let plan = Arc::new(LoadPlan::build(setup, base, 0, None)?);
        let names = user_names(&plan)?;
        ensure!(
            names.len() == plan.distinct_users,
            "{} user names in the packets, {} expected",
            names.len(),
            plan.distinct_users
        );
        let ids = server_rt.block_on(create_users(&node.store, names))?;
        let token = server_rt.block_on(login(node.http, &password))?;

        let (background, _) = wait_for_idle(setup.idle_wait);
        let stop = Arc::new(AtomicBool::new(false));
        let clients_thread = if clients > 0 {
            let (ready_tx, ready_rx) = mpsc::channel();
            let (http, stop) = (node.http, stop.clone());
            let ids = Arc::new(ids);
            let thread = std::thread::Builder::new()
                .name("httpload".into())
                .spawn(move || -> Result<(Vec<Record>, Vec<String>, u64)> {
                    let cpu0 = thread_cpu_ns();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot start the HTTP clients' runtime")?;
                    let (records, errors) =
                        rt.block_on(drive(http, token, ids, clients, stop, ready_tx))?;
                    Ok((records, errors, thread_cpu_ns().saturating_sub(cpu0)))
                })
                .context("cannot start the HTTP clients' thread")?;
            ready_rx
                .recv_timeout(WARM_UP_LIMIT)
                .context("the HTTP clients did not all get a first answer within 60 s")?;
            Some(thread)
        } else {
            None
        };

        let cpu_before = CpuSample::take();
        let started = Instant::now();
        let load = {
            let plan = plan.clone();
            let (in_flight, sockets, radius) = (setup.in_flight, setup.sockets, node.radius);
            std::thread::Builder::new()
                .name("loadgen".into())
                .spawn(move || -> Result<(LoadResult, u64)> {
                    let cpu0 = thread_cpu_ns();
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot start the load generator runtime")?
                        .block_on(generate(plan, radius, in_flight, sockets));
                    Ok((result?, thread_cpu_ns().saturating_sub(cpu0)))
                })
                .context("cannot start the load generator thread")?
                .join()
                .map_err(|_| anyhow::anyhow!("the load generator panicked"))
        };
        let ended = Instant::now();
        stop.store(true, Ordering::SeqCst);
        let cpu_after = CpuSample::take();
        let http = match clients_thread {
            Some(t) => Some(
                t.join()
                    .map_err(|_| anyhow::anyhow!("the HTTP clients panicked"))??,
            ),
            None => None,
        };

        node.shutdown.cancel();
        server_rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), node.handle)
                .await
                .context("radacctd did not stop within 30 s")?
                .context("the radacctd task failed")?
                .context("radacctd stopped with an error")
        })?;
        let (load, loadgen_ns) = load??;
        server_rt.block_on(db.verify(setup.sessions, plan.distinct_users))?;

        let http_ns = http.as_ref().map_or(0, |h| h.2);
        let cpu = CpuUse::between(&cpu_before, &cpu_after, loadgen_ns + http_ns);
        let secs = ended.duration_since(started).as_secs_f64();
        let mut cpu_text = cpu.describe();
        if http.is_some() {
            let _ = write!(
                cpu_text,
                "; the load generator's figure includes the HTTP clients' {:.2}",
                http_ns as f64 / 1e9 / secs
            );
        }
        let mut latencies = load.latencies;
        latencies.sort_unstable();
        let http = http.map(|(records, samples, _)| {
            // Only what was answered while the ingest ran.
            let window: Vec<&Record> = records
                .iter()
                .filter(|r| r.done >= started && r.done <= ended)
                .collect();
            HttpFigures {
                rate: window.len() as f64 / secs,
                graphql: KindFigures::of(&window, Kind::Graphql),
                console: KindFigures::of(&window, Kind::Console),
                error_samples: samples,
            }
        });
        Ok(Outcome {
            acked_rate: load.acked as f64 / load.elapsed.as_secs_f64(),
            p50_ms: percentile(&latencies, 50.0) as f64 / 1000.0,
            p99_ms: percentile(&latencies, 99.0) as f64 / 1000.0,
            http,
            disturbed: background.is_some_and(|b| b > BUSY_BEFORE_RUN)
                || cpu.rest().is_some_and(|r| r > BUSY_DURING_RUN),
            cpu: cpu_text,
        })
    }

    /// A running bench node.
    struct Node {
        radius: SocketAddr,
        http: SocketAddr,
        store: Store,
        shutdown: tokio_util::sync::CancellationToken,
        handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    /// A fresh node on `db` whose admin has `password`, RADIUS and HTTP on loopback.
    fn start(server_rt: &tokio::runtime::Runtime, db: &BenchDb, password: &str) -> Result<Node> {
        server_rt.block_on(async {
            let config = Layer::from_toml(&format!(
                "database_url = \"{}\"\nnode = \"bench\"\nadmin_password = \"{password}\"\n\
                 [radius]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n",
                db.url,
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
            Ok(Node {
                radius,
                http: app.http_addr(),
                store: app.store(),
                shutdown: app.shutdown_token(),
                handle: tokio::spawn(app.run_until_stopped()),
            })
        })
    }

    /// The distinct User-Names of the plan's Starts.
    fn user_names(plan: &LoadPlan) -> Result<Vec<String>> {
        let mut names = HashSet::new();
        for session in 0..plan.sessions {
            let packet = &plan.packets[session * plan.steps];
            let mut at = 20;
            let name = loop {
                let (&kind, &len) = packet
                    .get(at)
                    .zip(packet.get(at + 1))
                    .context("a Start without User-Name")?;
                let len = usize::from(len);
                ensure!(
                    len >= 2 && at + len <= packet.len(),
                    "a malformed attribute"
                );
                if kind == dict::USER_NAME {
                    break String::from_utf8_lossy(&packet[at + 2..at + len]).into_owned();
                }
                at += len;
            };
            names.insert(name);
        }
        Ok(names.into_iter().collect())
    }

    /// Creates the subscribers (as accounting would) and returns their ids.
    async fn create_users(store: &Store, names: Vec<String>) -> Result<Vec<i64>> {
        let created: Vec<Result<i64>> = futures_util::stream::iter(names)
            .map(|name| async move {
                let row = store
                    .user_create("master.domain", &name, "subscriber", None)
                    .await
                    .with_context(|| format!("cannot create user {name}"))?;
                Ok(row.id)
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        created.into_iter().collect()
    }

    /// Logs the admin in; returns the token.
    pub(super) async fn login(http: SocketAddr, password: &str) -> Result<String> {
        let body = serde_json::json!({
            "username": "admin",
            "password": base64::engine::general_purpose::STANDARD.encode(password),
        });
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("http://{http}{WEBSERVICE}/Login"))
            .json(&body)
            .send()
            .await
            .context("Login")?
            .error_for_status()
            .context("Login")?
            .json()
            .await
            .context("Login answer")?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .context("Login answered no token")
    }

    /// Runs `clients` closed-loop clients until `stop`; says `ready` once each has been
    /// answered once. Returns every request's record and a few error descriptions.
    async fn drive(
        http: SocketAddr,
        token: String,
        ids: Arc<Vec<i64>>,
        clients: usize,
        stop: Arc<AtomicBool>,
        ready: mpsc::Sender<()>,
    ) -> Result<(Vec<Record>, Vec<String>)> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        let token = Arc::new(token);
        let warmed = Arc::new(AtomicUsize::new(0));
        let all_warm = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::with_capacity(clients);
        for i in 0..clients {
            let kind = if i % 2 == 0 {
                Kind::Graphql
            } else {
                Kind::Console
            };
            let (client, token, ids, stop) =
                (client.clone(), token.clone(), ids.clone(), stop.clone());
            let (warmed, all_warm) = (warmed.clone(), all_warm.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = SplitMix(0x4854_5450 ^ i as u64);
                let mut records = Vec::new();
                let mut samples = Vec::new();
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    let id = ids[rng.below(ids.len() as u64) as usize];
                    let sent = Instant::now();
                    let outcome = request(&client, http, &token, kind, id).await;
                    let done = Instant::now();
                    if let Err(e) = &outcome {
                        if samples.len() < 3 {
                            samples.push(format!("{kind:?} userId={id}: {e}"));
                        }
                    }
                    records.push(Record {
                        kind,
                        micros: u32::try_from(done.duration_since(sent).as_micros())
                            .unwrap_or(u32::MAX),
                        ok: outcome.is_ok(),
                        done,
                    });
                    if first {
                        first = false;
                        if warmed.fetch_add(1, Ordering::SeqCst) + 1 == clients {
                            all_warm.notify_one();
                        }
                    }
                }
                (records, samples)
            }));
        }
        all_warm.notified().await;
        let _ = ready.send(());
        let mut records = Vec::new();
        let mut samples = Vec::new();
        for task in tasks {
            let (r, s) = task.await.context("an HTTP client task failed")?;
            records.extend(r);
            if samples.len() < 5 {
                samples.extend(s);
            }
        }
        samples.truncate(5);
        Ok((records, samples))
    }

    /// One request; Ok only for a 200 with the expected content.
    async fn request(
        client: &reqwest::Client,
        http: SocketAddr,
        token: &str,
        kind: Kind,
        user_id: i64,
    ) -> Result<()> {
        let response = match kind {
            Kind::Graphql => {
                client
                    .post(format!("http://{http}/graphql"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({
                        "query": SEED_QUERY,
                        "variables": { "userId": user_id },
                    }))
                    .send()
                    .await?
            }
            Kind::Console => {
                client
                    .get(format!(
                        "http://{http}{WEBSERVICE}/Session?userId={user_id}"
                    ))
                    .header("Authtoken", token)
                    .header("Accept", "application/json")
                    .send()
                    .await?
            }
        };
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status == reqwest::StatusCode::OK,
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        if kind == Kind::Graphql {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            ensure!(
                v["data"]["getOnlineSessions"].is_array(),
                "200 without the list: {v}"
            );
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// --outage and --soak: an open-loop NAS fleet.

/// What `--outage` and `--soak` share: a NAS fleet that sends at a set pace whatever the
/// answers (open loop, as subscribers' sessions arrive), the node with its HTTP address, the
/// process's memory from /proc, and a latency histogram of fixed size.
mod fleet {
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use tokio_util::sync::CancellationToken;

    use super::*;

    /// Jobs of one NAS: sequences of packets, each sent once the previous one is answered.
    pub(super) trait Source: Send + 'static {
        /// A job that is due `elapsed` after the start, if there is one.
        fn next(&mut self, elapsed: Duration) -> Option<Job>;
        /// When the next job falls due, from the start (None: none is scheduled).
        fn next_due(&self) -> Option<Duration>;
        /// The last packet of job `tag` was answered.
        fn done(&mut self, tag: u32);
        /// No job will be due any more.
        fn exhausted(&self) -> bool;
    }

    pub(super) struct Job {
        pub tag: u32,
        /// Built with identifier 0 (signed again at send time), in the order they go.
        pub packets: Vec<Vec<u8>>,
    }

    /// What the fleet saw; shared by its NAS tasks and read by the driver.
    #[derive(Default)]
    pub(super) struct Stats {
        pub acked: AtomicU64,
        /// Packets sent for the first time (retransmits not counted).
        pub sent: AtomicU64,
        pub retransmits: AtomicU64,
        /// Bytes of the packets of the jobs not yet done: what the load generator holds.
        pub held_bytes: AtomicU64,
        pub latencies: Mutex<Latencies>,
    }

    /// Latencies in microseconds, from a packet's first send to its verified answer.
    #[derive(Default)]
    pub(super) struct Latencies {
        /// Since the driver last took them (the capacity is kept, so memory stays flat).
        pub window: Vec<u32>,
        /// Of the whole run.
        pub all: Hist,
        /// Answers slower than [`SLOW_MS`] since the driver last took them: when the packet was
        /// first sent (ms after the start) and how long it waited (ms). Shows whether slow
        /// answers come in bursts (a stall of the node or the database) and when.
        pub slow: Vec<(u32, u32)>,
    }

    /// An answer this slow (ms) is listed in [`Latencies::slow`].
    pub(super) const SLOW_MS: u32 = 20;

    impl Stats {
        pub fn acked(&self) -> u64 {
            self.acked.load(Ordering::Relaxed)
        }

        /// The window's latencies, sorted; a new window starts.
        pub fn take_window(&self, into: &mut Vec<u32>) {
            let mut l = self.latencies.lock().expect("latencies lock");
            into.clear();
            into.extend_from_slice(&l.window);
            l.window.clear();
            into.sort_unstable();
        }

        /// The slow answers since the last call, as bursts: answers sent less than a second
        /// apart belong to one burst. "12.3 s: 410 answers, up to 230 ms" for each.
        pub fn take_stalls(&self) -> Vec<String> {
            let slow = std::mem::take(&mut self.latencies.lock().expect("latencies lock").slow);
            let mut slow = slow;
            slow.sort_unstable();
            let mut bursts: Vec<(u32, u32, usize, u32)> = Vec::new(); // first, last, count, max
            for (at, ms) in slow {
                match bursts.last_mut() {
                    Some(b) if at.saturating_sub(b.1) < 1_000 => {
                        b.1 = at;
                        b.2 += 1;
                        b.3 = b.3.max(ms);
                    }
                    _ => bursts.push((at, at, 1, ms)),
                }
            }
            bursts
                .into_iter()
                .map(|(first, _, n, max)| {
                    format!(
                        "{:.1} s: {n} answers, up to {max} ms",
                        f64::from(first) / 1000.0
                    )
                })
                .collect()
        }
    }

    /// Buckets of [`Hist`], each [`HIST_GROWTH`] times as wide as the previous one: 1 µs up to
    /// about 10^10 µs.
    const HIST_BUCKETS: usize = 1_200;
    const HIST_GROWTH: f64 = 1.02;

    /// A latency histogram of fixed size (a soak's millions of answers in 10 KB); percentiles
    /// are the upper bounds of their buckets, at most 2 % above the true value.
    pub(super) struct Hist {
        counts: Vec<u64>,
    }

    impl Default for Hist {
        fn default() -> Self {
            Self {
                counts: vec![0; HIST_BUCKETS],
            }
        }
    }

    impl Hist {
        pub fn record(&mut self, micros: u32) {
            let b = if micros <= 1 {
                0
            } else {
                (f64::from(micros).ln() / HIST_GROWTH.ln()) as usize
            };
            self.counts[b.min(HIST_BUCKETS - 1)] += 1;
        }

        /// Milliseconds.
        pub fn percentile_ms(&self, p: f64) -> f64 {
            let total: u64 = self.counts.iter().sum();
            if total == 0 {
                return 0.0;
            }
            let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (b, &c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return HIST_GROWTH.powi(b as i32 + 1) / 1000.0;
                }
            }
            f64::INFINITY
        }
    }

    /// A packet waiting for its answer.
    struct Out {
        tag: u32,
        /// All the job's packets, for [`Stats::held_bytes`].
        job_bytes: u64,
        bytes: Vec<u8>,
        /// The job's packets still to send, last first.
        rest: Vec<Vec<u8>>,
        first_sent: Instant,
        last_sent: Instant,
    }

    /// Runs one NAS per source on a thread of its own (a single-threaded runtime, as the other
    /// modes' load generator); each NAS has at most `window` packets outstanding. The thread
    /// returns the sources once every one is exhausted and answered, or at `stop`.
    pub(super) fn spawn<S: Source>(
        server: SocketAddr,
        sources: Vec<S>,
        window: usize,
        began: Instant,
        stats: Arc<Stats>,
        stop: CancellationToken,
    ) -> Result<std::thread::JoinHandle<Result<Vec<S>>>> {
        std::thread::Builder::new()
            .name("loadgen".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the load generator runtime")?;
                rt.block_on(async move {
                    let tasks: Vec<_> = sources
                        .into_iter()
                        .map(|s| {
                            tokio::spawn(nas(server, s, window, began, stats.clone(), stop.clone()))
                        })
                        .collect();
                    let mut out = Vec::with_capacity(tasks.len());
                    for t in tasks {
                        out.push(t.await.context("a NAS task panicked")??);
                    }
                    Ok(out)
                })
            })
            .context("cannot start the load generator thread")
    }

    /// Waits for the load generator thread, at most `limit`.
    pub(super) fn join<S>(
        handle: std::thread::JoinHandle<Result<Vec<S>>>,
        limit: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<S>> {
        let deadline = Instant::now() + limit;
        while !handle.is_finished() {
            if Instant::now() >= deadline {
                stop.cancel();
                let _ = handle.join();
                bail!(
                    "the NAS fleet still had unanswered packets {} s after it stopped opening sessions",
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
    }

    async fn nas<S: Source>(
        server: SocketAddr,
        mut source: S,
        window: usize,
        began: Instant,
        stats: Arc<Stats>,
        stop: CancellationToken,
    ) -> Result<S> {
        let secret = DEFAULT_LOCAL_SECRET.as_bytes();
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .context("cannot bind a NAS socket")?;
        socket
            .connect(server)
            .await
            .context("cannot connect a NAS socket")?;
        let mut free: VecDeque<u8> = (0..window.min(IDS_PER_SOCKET)).map(|i| i as u8).collect();
        let mut out: Vec<Option<Out>> = (0..IDS_PER_SOCKET).map(|_| None).collect();
        let mut outstanding = 0usize;
        let mut buf = vec![0u8; 4096];
        let mut next_scan = tokio::time::Instant::now() + RETRANSMIT_SCAN;
        loop {
            while let Some(&id) = free.front() {
                let Some(job) = source.next(began.elapsed()) else {
                    break;
                };
                let job_bytes: u64 = job.packets.iter().map(|p| p.len() as u64).sum();
                stats.held_bytes.fetch_add(job_bytes, Ordering::Relaxed);
                let mut rest = job.packets;
                rest.reverse();
                let Some(first) = rest.pop() else {
                    source.done(job.tag);
                    continue;
                };
                free.pop_front();
                outstanding += 1;
                let job = (job.tag, job_bytes);
                send(&socket, &mut out, id, job, first, rest, secret, &stats).await?;
            }
            if stop.is_cancelled() || (outstanding == 0 && source.exhausted()) {
                return Ok(source);
            }
            let now = tokio::time::Instant::now();
            if now >= next_scan {
                let now = Instant::now();
                for p in out.iter_mut().flatten() {
                    if now.duration_since(p.last_sent) >= RETRANSMIT_AFTER {
                        socket.send(&p.bytes).await.context("NAS socket send")?;
                        p.last_sent = now;
                        stats.retransmits.fetch_add(1, Ordering::Relaxed);
                    }
                }
                next_scan = tokio::time::Instant::now() + RETRANSMIT_SCAN;
            }
            let mut wake = next_scan;
            if !free.is_empty() {
                if let Some(due) = source.next_due() {
                    wake = wake.min(tokio::time::Instant::from_std(began + due));
                }
            }
            let n = tokio::select! {
                r = socket.recv(&mut buf) => match r {
                    Ok(n) => n,
                    // ICMP port unreachable once the node is gone: nothing to answer.
                    Err(_) => continue,
                },
                _ = tokio::time::sleep_until(wake) => continue,
                _ = stop.cancelled() => continue,
            };
            let mut answers = vec![buf[..n].to_vec()];
            while let Ok(n) = socket.try_recv(&mut buf) {
                answers.push(buf[..n].to_vec());
            }
            for answer in answers {
                let Some(&id) = answer.get(1) else { continue };
                let slot = &mut out[usize::from(id)];
                if !slot
                    .as_ref()
                    .is_some_and(|p| is_accounting_response(&answer, &p.bytes, secret))
                {
                    continue;
                }
                let mut p = slot.take().expect("checked above");
                let micros = u32::try_from(p.first_sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                {
                    let mut l = stats.latencies.lock().expect("latencies lock");
                    l.window.push(micros);
                    l.all.record(micros);
                    if micros / 1000 >= SLOW_MS {
                        let at = p.first_sent.saturating_duration_since(began).as_millis();
                        l.slow
                            .push((u32::try_from(at).unwrap_or(u32::MAX), micros / 1000));
                    }
                }
                stats.acked.fetch_add(1, Ordering::Relaxed);
                match p.rest.pop() {
                    Some(next) => {
                        let rest = std::mem::take(&mut p.rest);
                        let job = (p.tag, p.job_bytes);
                        send(&socket, &mut out, id, job, next, rest, secret, &stats).await?;
                    }
                    None => {
                        outstanding -= 1;
                        free.push_back(id);
                        stats.held_bytes.fetch_sub(p.job_bytes, Ordering::Relaxed);
                        source.done(p.tag);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        socket: &UdpSocket,
        out: &mut [Option<Out>],
        id: u8,
        (tag, job_bytes): (u32, u64),
        mut bytes: Vec<u8>,
        rest: Vec<Vec<u8>>,
        secret: &[u8],
        stats: &Stats,
    ) -> Result<()> {
        sign(&mut bytes, id, secret);
        let now = Instant::now();
        socket.send(&bytes).await.context("NAS socket send")?;
        stats.sent.fetch_add(1, Ordering::Relaxed);
        out[usize::from(id)] = Some(Out {
            tag,
            job_bytes,
            bytes,
            rest,
            first_sent: now,
            last_sent: now,
        });
        Ok(())
    }

    /// A running node with its addresses.
    pub(super) struct Node {
        pub radius: SocketAddr,
        pub http: SocketAddr,
        pub metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    /// A fresh node on `db`, RADIUS and HTTP on loopback; `extra` is appended to its TOML
    /// configuration (tables only).
    pub(super) fn start(
        server_rt: &tokio::runtime::Runtime,
        db: &BenchDb,
        extra: &str,
    ) -> Result<Node> {
        let password = uuid::Uuid::new_v4().simple().to_string();
        start_with_password(server_rt, db, &password, extra)
    }

    /// [`start`] with this admin password.
    pub(super) fn start_with_password(
        server_rt: &tokio::runtime::Runtime,
        db: &BenchDb,
        password: &str,
        extra: &str,
    ) -> Result<Node> {
        server_rt.block_on(async {
            let config = Layer::from_toml(&format!(
                "database_url = \"{}\"\nnode = \"bench\"\nadmin_password = \"{password}\"\n\
                 [radius]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}",
                db.url,
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
            let http = app.http_addr();
            let metrics = app.metrics();
            let shutdown = app.shutdown_token();
            let handle = tokio::spawn(app.run_until_stopped());
            anyhow::Ok(Node {
                radius,
                http,
                metrics,
                shutdown,
                handle,
            })
        })
    }

    impl Node {
        /// Graceful stop (commits and answers what was received).
        pub fn stop(self, server_rt: &tokio::runtime::Runtime) -> Result<()> {
            self.shutdown.cancel();
            server_rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(60), self.handle)
                    .await
                    .context("radacctd did not stop within 60 s")?
                    .context("the radacctd task failed")?
                    .context("radacctd stopped with an error")
            })
        }

        /// `GET /healthz`: the status code, 0 when there was no answer within 5 s.
        pub async fn health(&self, http: &reqwest::Client) -> u16 {
            http.get(format!("http://{}/healthz", self.http))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }

        /// A counter or gauge without labels from the node's metrics.
        pub fn metric(&self, name: &str) -> f64 {
            let text = self.metrics.encode();
            text.lines()
                .filter_map(|l| l.strip_prefix(name))
                .filter_map(|rest| rest.strip_prefix(' '))
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .sum()
        }

        /// Drops counted so far, by reason.
        pub fn drops(&self) -> Vec<(DropReason, u64)> {
            ALL_DROP_REASONS
                .into_iter()
                .map(|r| (r, self.metrics.dropped(r)))
                .collect()
        }
    }

    pub(super) const ALL_DROP_REASONS: [DropReason; 9] = [
        DropReason::UnknownClient,
        DropReason::Malformed,
        DropReason::BadAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::UnsupportedCode,
        DropReason::DuplicateInFlight,
        DropReason::QueueFull,
        DropReason::StoreRejected,
        DropReason::ShuttingDown,
    ];

    /// `reason=count` for the reasons whose count grew between `a` and `b`.
    pub(super) fn drops_between(a: &[(DropReason, u64)], b: &[(DropReason, u64)]) -> String {
        let parts: Vec<String> = a
            .iter()
            .zip(b)
            .filter(|((_, x), (_, y))| y > x)
            .map(|((r, x), (_, y))| format!("{}={}", r.as_str(), fmt_int((y - x) as f64)))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(" ")
        }
    }

    /// This process's resident memory and its peak (VmRSS, VmHWM from /proc/self/status), in
    /// MiB; 0 where unknown. The node runs in this process, with the load generator.
    pub(super) fn memory() -> (f64, f64) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Resets the peak (VmHWM) to the current RSS (Linux 4.0+: `5` into
    /// /proc/self/clear_refs). Returns whether that worked.
    pub(super) fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// Where the CPU went between two samples: the machine, this process (the node and the
    /// load generator together), PostgreSQL, and the rest (other processes, kernel), in cores;
    /// with a warning when the rest is more than a quiet machine's.
    pub(super) fn cpu_line(a: &CpuSample, b: &CpuSample) -> String {
        let cpu = CpuUse::between(a, b, 0);
        let mut out = format!(
            "cpu: machine {:.2} of {} cores busy, this process (node + load generator) {:.2}, \
             postgres {:.2}, rest {:.2}",
            cpu.machine.unwrap_or(0.0),
            cpu.cpus,
            cpu.process.unwrap_or(0.0),
            cpu.postgres.unwrap_or(0.0),
            cpu.rest().unwrap_or(0.0),
        );
        let others: f64 = cpu.others.iter().map(|(_, c)| c).sum();
        if others > OTHERS_BUSY {
            let _ = write!(
                out,
                "\n    WARNING: {others:.2} cores went to other processes ({}): these figures \
                 are not reliable",
                cpu.busiest_others()
            );
        } else if cpu.rest().is_some_and(|r| r > BUSY_DURING_RUN) {
            out.push_str(
                " (no other process seen busy: the rest is kernel work, e.g. loopback traffic, \
                 or processes that came and went, e.g. a build; the figures may be disturbed)",
            );
        }
        out
    }

    /// Cores used by other processes (kernel work not charged to a process left out: loopback
    /// traffic costs more of that during a retransmit storm) above which a run is flagged.
    pub(super) const OTHERS_BUSY: f64 = 0.2;

    /// Nearest-rank percentile of sorted microseconds, in milliseconds.
    pub(super) fn p_ms(sorted: &[u32], p: f64) -> f64 {
        f64::from(percentile(sorted, p)) / 1000.0
    }

    /// A tmpfs mounted on a temporary directory (needs root), unmounted on drop.
    pub(super) struct SmallFs {
        pub dir: tempfile::TempDir,
    }

    impl SmallFs {
        pub fn mount(size: &str) -> Result<Self> {
            let dir = tempfile::Builder::new()
                .prefix("radacctd-bench-fs")
                .tempdir()
                .context("cannot create a temp dir")?;
            let status = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0700"))
                .arg("radacctd-bench")
                .arg(dir.path())
                .status()
                .context("cannot run mount")?;
            ensure!(
                status.success(),
                "cannot mount a tmpfs on {} ({status}): the SQLite full-disk outage needs root",
                dir.path().display()
            );
            Ok(Self { dir })
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    /// Writes `path` until its file system has no byte left.
    pub(super) fn fill(path: &std::path::Path) -> Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(path).context("cannot create the filler file")?;
        let chunk = vec![0u8; 1 << 20];
        let mut size = chunk.len();
        while size > 0 {
            match file.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => size /= 2,
                Err(e) => return Err(e).context("cannot fill the file system"),
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// --outage SECONDS: the database unavailable in the middle of steady load.

/// `--outage SECONDS`: steady load, the database unavailable for SECONDS in the middle.
///
/// [`NASES`] NAS sockets (each a NAS with its own 256 identifiers) open sessions at `rate` / 3
/// per second whatever the answers; a session is Start, Interim-Update, Stop, each sent once the
/// previous one is answered. After [`WARMUP`], PostgreSQL refuses connections to the run's
/// database (`ALLOW_CONNECTIONS false`, its connections terminated; the server keeps running).
/// SQLite runs on a tmpfs of [`FS_SIZE`] mounted for the run (root needed), which a file fills;
/// the outage counts from the first commit that fails. After SECONDS the database is back (the
/// file deleted). Reported: acked/s and p99 before; during the outage the answers after the
/// first second (must be 0), `/healthz`, the drops by reason and the process's peak RSS (VmHWM,
/// reset when the outage starts; the node and the load generator share the process, nothing is
/// subtracted) against the peak before; the time from the database's return to the first
/// answer and to `/healthz` 200; how long the backlog takes to work off and at what rate; acked/s
/// and p99 once it is. Then the fleet finishes its sessions (every packet answered in the end)
/// and SQL checks each session's row for the effect of all three packets.
mod outage {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicU32};

    use tokio_util::sync::CancellationToken;

    use super::fleet::{self, Job, Node, Source, Stats};
    use super::*;

    /// NAS sockets: together they can have more packets outstanding (128 x 256) than the
    /// writer queue holds (16,384 + the batches being committed), as a large fleet can.
    const NASES: usize = 128;
    /// Steady load before the outage; acked/s and p99 "before" are of its second half.
    const WARMUP: Duration = Duration::from_secs(20);
    /// Acked/s and p99 "after" are measured over STEADY_AFTER, from SETTLE after the backlog is
    /// worked off.
    const SETTLE: Duration = Duration::from_secs(5);
    const STEADY_AFTER: Duration = Duration::from_secs(10);
    /// Answers to batches committed just before the outage may still arrive this long after it
    /// began.
    const ANSWER_GRACE: Duration = Duration::from_secs(1);
    /// The tmpfs holding the SQLite database (the filler takes what the database leaves).
    const FS_SIZE: &str = "2g";
    /// The run fails when the backlog is not worked off, or the fleet's last sessions not
    /// answered, within this long.
    const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
    /// The backlog counts as worked off when, on every NAS, the oldest session not complete
    /// arrived less than this long ago.
    const CAUGHT_UP_LAG: Duration = Duration::from_secs(2);
    /// How often `/healthz` is asked during the outage.
    const HEALTH_EVERY: Duration = Duration::from_secs(1);
    /// Simulated seconds between a session's packets.
    const STEP_SECS: u32 = 60;

    pub(super) fn run(
        setup: &Setup,
        backends: &[Backend],
        runs: usize,
        seconds: u64,
        rate: u64,
    ) -> Result<bool> {
        ensure!(seconds > 0, "--outage must be at least 1 second");
        ensure!(rate >= 3, "--rate must be at least 3 packets/s");
        println!(
            "outage: {rate} packets/s offered ({:.0} sessions/s of Start, Interim-Update, Stop) \
             from {NASES} NASes, {} s of load, then the database unavailable for {seconds} s; \
             {runs} run(s) per backend, {} CPU(s)",
            rate as f64 / 3.0,
            WARMUP.as_secs(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        let mut ok = true;
        for &backend in backends {
            for i in 0..runs {
                let name = format!("{} outage run {}/{}", backend.name(), i + 1, runs);
                match one(setup, backend, Duration::from_secs(seconds), rate) {
                    Ok(report) => println!("{name}:\n{report}"),
                    Err(e) => {
                        println!("{name}: FAILED: {e:#}");
                        ok = false;
                    }
                }
            }
        }
        Ok(ok)
    }

    fn one(setup: &Setup, backend: Backend, outage: Duration, rate: u64) -> Result<String> {
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("radacctd")
            .build()
            .context("cannot start the server runtime")?;
        let (db, mount) = match backend {
            Backend::Postgres => (
                server_rt.block_on(BenchDb::create(backend, &setup.pg))?,
                None,
            ),
            Backend::Sqlite => {
                let mount = fleet::SmallFs::mount(FS_SIZE)?;
                let url = format!(
                    "sqlite://{}",
                    mount.dir.path().join("radacctd.db").display()
                );
                let db = BenchDb {
                    backend,
                    url,
                    pg: None,
                    _dir: None,
                };
                (db, Some(mount))
            }
        };
        let fault = match (&db.pg, &mount) {
            (Some((server, name)), _) => Fault::Pg {
                server: server.clone(),
                name: name.clone(),
            },
            (None, Some(m)) => Fault::DiskFull {
                filler: m.dir.path().join("filler"),
            },
            (None, None) => bail!("no way to make this database unavailable"),
        };
        let outcome = on_db(setup, &server_rt, &db, fault, outage, rate);
        let dropped = server_rt.block_on(db.drop_db());
        drop(mount);
        let report = outcome?;
        dropped?;
        Ok(report)
    }

    /// How the database is made unavailable.
    enum Fault {
        Pg { server: String, name: String },
        DiskFull { filler: std::path::PathBuf },
    }

    impl Fault {
        /// Makes the database unavailable; returns the moment from which nothing may be
        /// answered (after ANSWER_GRACE).
        async fn begin(&self, node: &Node) -> Result<Instant> {
            match self {
                Fault::Pg { server, name } => {
                    let admin = pg_admin(server).await?;
                    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                        .execute(&admin)
                        .await?;
                    sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(name)
                    .execute(&admin)
                    .await?;
                    admin.close().await;
                    Ok(Instant::now())
                }
                Fault::DiskFull { filler } => {
                    fleet::fill(filler)?;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !node.metrics.store_failing() {
                        ensure!(
                            Instant::now() < deadline,
                            "the writer did not fail within 60 s of the file system filling up"
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok(Instant::now())
                }
            }
        }

        async fn end(&self) -> Result<()> {
            match self {
                Fault::Pg { server, name } => {
                    let admin = pg_admin(server).await?;
                    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                        .execute(&admin)
                        .await?;
                    admin.close().await;
                }
                Fault::DiskFull { filler } => {
                    std::fs::remove_file(filler).context("cannot delete the filler file")?
                }
            }
            Ok(())
        }
    }

    fn on_db(
        setup: &Setup,
        server_rt: &tokio::runtime::Runtime,
        db: &BenchDb,
        fault: Fault,
        outage: Duration,
        rate: u64,
    ) -> Result<String> {
        let node = fleet::start(server_rt, db, "")?;
        let http = reqwest::Client::new();
        let (background, _) = wait_for_idle(setup.idle_wait);

        // Event times lie ahead of the clock, so that the reaper leaves the sessions alone.
        let t0 = (chrono::Utc::now().timestamp() + 600) as u32;
        let per_nas = rate as f64 / 3.0 / NASES as f64;
        let stop_arrivals = Arc::new(AtomicBool::new(false));
        let oldest: Vec<Arc<AtomicU32>> = (0..NASES).map(|_| Arc::default()).collect();
        let sources: Vec<Sessions> = (0..NASES)
            .map(|i| Sessions {
                index: i as u32,
                rate: per_nas,
                t0,
                opened: 0,
                closed_at: None,
                stop_arrivals: stop_arrivals.clone(),
                open: BTreeSet::new(),
                oldest: oldest[i].clone(),
            })
            .collect();
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        // Whatever happens, the load generator stops with this function.
        let _stop_on_return = stop.clone().drop_guard();
        let cpu_before = CpuSample::take();
        let began = Instant::now();
        let load = fleet::spawn(
            node.radius,
            sources,
            IDS_PER_SOCKET,
            began,
            stats.clone(),
            stop.clone(),
        )?;
        let mut sorted = Vec::new();
        let mut out = String::new();

        // Before.
        std::thread::sleep(WARMUP / 2);
        let peak_reset = fleet::reset_peak();
        let acked0 = stats.acked();
        stats.take_window(&mut sorted);
        std::thread::sleep(WARMUP / 2);
        let before_rate = (stats.acked() - acked0) as f64 / (WARMUP / 2).as_secs_f64();
        stats.take_window(&mut sorted);
        let before_p99 = fleet::p_ms(&sorted, 99.0);
        let (rss_before, peak_before) = fleet::memory();
        let drops_before = node.drops();
        let _ = writeln!(
            out,
            "    before: {} acked/s, p99 {before_p99:.2} ms; RSS {rss_before:.0} MiB, peak {peak_before:.0} MiB",
            fmt_int(before_rate),
        );

        // The outage.
        fleet::reset_peak();
        let blocked = server_rt.block_on(fault.begin(&node))?;
        let mut health = Vec::new();
        let mut acked_after_grace = None;
        let mut next_health = Instant::now();
        let mut held_peak = 0;
        while blocked.elapsed() < outage {
            held_peak = held_peak.max(stats.held_bytes.load(Ordering::Relaxed));
            if acked_after_grace.is_none() && blocked.elapsed() >= ANSWER_GRACE {
                acked_after_grace = Some(stats.acked());
            }
            if Instant::now() >= next_health {
                health.push(server_rt.block_on(node.health(&http)));
                next_health += HEALTH_EVERY;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let acked_at_end = stats.acked();
        let answered_while_down = acked_at_end - acked_after_grace.unwrap_or(acked_at_end);
        let (rss_during, peak_during) = fleet::memory();
        let drops_during = node.drops();
        let queue_full = |d: &[(DropReason, u64)]| {
            d.iter()
                .find(|(r, _)| *r == DropReason::QueueFull)
                .map_or(0, |&(_, n)| n)
        };
        server_rt.block_on(fault.end())?;
        let unblocked = Instant::now();
        let unavailable = unblocked.duration_since(blocked);
        let unhealthy = health.iter().filter(|&&h| h == 503).count();
        let _ = writeln!(
            out,
            "    outage {:.1} s: {answered_while_down} answered after its first {} s (must be 0); \
             /healthz 503 on {unhealthy} of {} probes; RSS {rss_during:.0} MiB, peak {peak_during:.0} MiB \
             ({:.2}x the peak before; the load generator held at most {:.0} MiB of packets{}); drops {}",
            unavailable.as_secs_f64(),
            ANSWER_GRACE.as_secs(),
            health.len(),
            peak_during / peak_before.max(1.0),
            held_peak as f64 / 1_048_576.0,
            if peak_reset { "" } else { "; VmHWM not resettable: peaks since start" },
            fleet::drops_between(&drops_before, &drops_during),
        );

        // Back.
        let deadline = unblocked + CATCH_UP_LIMIT;
        while stats.acked() == acked_at_end {
            ensure!(Instant::now() < deadline, "ingest did not resume");
            std::thread::sleep(Duration::from_millis(1));
        }
        let resumed = unblocked.elapsed();
        while server_rt.block_on(node.health(&http)) != 200 {
            ensure!(Instant::now() < deadline, "/healthz did not recover");
            std::thread::sleep(Duration::from_millis(10));
        }
        let healthy = unblocked.elapsed();
        // Caught up: on every NAS the oldest session not complete arrived less than
        // CAUGHT_UP_LAG ago.
        loop {
            let recent = (began.elapsed().saturating_sub(CAUGHT_UP_LAG)).as_secs_f64() * per_nas;
            if oldest
                .iter()
                .all(|o| f64::from(o.load(Ordering::Relaxed)) >= recent)
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the backlog was not worked off within {} s",
                CATCH_UP_LIMIT.as_secs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let caught_up = unblocked.elapsed();
        let catch_up_rate = (stats.acked() - acked_at_end) as f64 / caught_up.as_secs_f64();
        std::thread::sleep(SETTLE);
        let _ = writeln!(
            out,
            "    back: first answer {} ms after the database, /healthz 200 after {} ms; backlog \
             worked off in {:.1} s at {} acked/s",
            resumed.as_millis(),
            healthy.as_millis(),
            caught_up.as_secs_f64(),
            fmt_int(catch_up_rate),
        );
        stats.take_window(&mut sorted);
        let acked1 = stats.acked();
        std::thread::sleep(STEADY_AFTER);
        let after_rate = (stats.acked() - acked1) as f64 / STEADY_AFTER.as_secs_f64();
        stats.take_window(&mut sorted);
        let after_p99 = fleet::p_ms(&sorted, 99.0);
        let (rss_after, _) = fleet::memory();

        // The end: every session finished, every packet answered, then the rows.
        stop_arrivals.store(true, Ordering::SeqCst);
        let sources = fleet::join(load, CATCH_UP_LIMIT, &stop)?;
        let sessions: u32 = sources.iter().map(|s| s.opened).sum();
        let cpu = fleet::cpu_line(&cpu_before, &CpuSample::take());
        let drops_end = node.drops();
        let retransmits = stats.retransmits.load(Ordering::Relaxed);
        node.stop(server_rt)?;
        let verified = server_rt.block_on(verify(db, sessions, t0))?;
        let _ = writeln!(
            out,
            "    after: {} acked/s, p99 {after_p99:.2} ms; RSS {rss_after:.0} MiB\n    \
             {} sessions, {} packets answered, {} retransmits; drops over the run {}; {verified}\n    \
             {cpu}{}",
            fmt_int(after_rate),
            fmt_int(f64::from(sessions)),
            fmt_int(stats.acked() as f64),
            fmt_int(retransmits as f64),
            fleet::drops_between(&drops_before, &drops_end),
            if background.is_some_and(|b| b > BUSY_BEFORE_RUN) {
                "\n    WARNING: other processes were busy before the run"
            } else {
                ""
            },
        );
        ensure!(
            answered_while_down == 0,
            "{answered_while_down} packets answered while the database was unavailable\n{out}"
        );
        ensure!(
            unhealthy > 0 || health.is_empty(),
            "/healthz never said 503 during the outage\n{out}"
        );
        if queue_full(&drops_during) == queue_full(&drops_before) {
            out.push_str(
                "\n    (the writer queue did not overflow: too few sessions arrived during the outage)",
            );
        }
        Ok(out.trim_end().to_owned())
    }

    /// Every session once in `radacct`, with its Start's `connectinfo_start`, its
    /// Interim-Update's `acctinterval` (the Stop leaves it alone) and its Stop.
    async fn verify(db: &BenchDb, sessions: u32, t0: u32) -> Result<String> {
        let (rows, complete): (i64, i64) = match db.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await?;
                let r = sqlx::query_as(
                    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN acctstarttime = ?1 \
                     AND connectinfo_start = 'start' AND acctinterval = ?2 \
                     AND acctstoptime = ?1 + 2 * ?2 AND acctterminatecause = 'User-Request' \
                     THEN 1 ELSE 0 END), 0) FROM radacct",
                )
                .bind(i64::from(t0))
                .bind(i64::from(STEP_SECS))
                .fetch_one(&pool)
                .await?;
                pool.close().await;
                r
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await?;
                let r = sqlx::query_as(
                    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN acctstarttime = to_timestamp($1) \
                     AND connectinfo_start = 'start' AND acctinterval = $2 \
                     AND acctstoptime = to_timestamp($1 + 2 * $2) \
                     AND acctterminatecause = 'User-Request' THEN 1 ELSE 0 END), 0)::bigint \
                     FROM radacct",
                )
                .bind(i64::from(t0))
                .bind(i64::from(STEP_SECS))
                .fetch_one(&pool)
                .await?;
                pool.close().await;
                r
            }
        };
        let n = i64::from(sessions);
        ensure!(
            rows == n && complete == n,
            "verification failed: {rows} rows, {complete} with the effect of all three packets, \
             expected {n}"
        );
        Ok(format!(
            "verified: {} sessions once each, every packet's effect in its row",
            fmt_int(n as f64)
        ))
    }

    /// One NAS's sessions, opened at `rate` per second from the start.
    struct Sessions {
        index: u32,
        rate: f64,
        t0: u32,
        opened: u32,
        /// Set when arrivals stop: how many sessions there are in all.
        closed_at: Option<u32>,
        stop_arrivals: Arc<AtomicBool>,
        /// Opened and not complete.
        open: BTreeSet<u32>,
        /// The oldest session not complete (or not opened yet), for the driver.
        oldest: Arc<AtomicU32>,
    }

    impl Sessions {
        fn publish(&self) {
            let oldest = self.open.first().copied().unwrap_or(self.opened);
            self.oldest.store(oldest, Ordering::Relaxed);
        }

        fn packet(&self, n: u32, step: u32) -> Vec<u8> {
            let serial = self.index + n * NASES as u32;
            let status_type = match step {
                0 => status::START,
                1 => status::INTERIM_UPDATE,
                _ => status::STOP,
            };
            let secs = STEP_SECS * step;
            let r = Request::accounting(status_type, DEFAULT_LOCAL_SECRET.as_bytes(), 0)
                .string(dict::USER_NAME, &format!("user{:05}", serial % 5_000))
                .string(dict::ACCT_SESSION_ID, &format!("O{serial:010}"))
                .ipv4(
                    dict::NAS_IP_ADDRESS,
                    Ipv4Addr::new(10, 255, 0, 1 + (self.index % 10) as u8),
                )
                .u32(dict::NAS_PORT, serial)
                .u32(dict::NAS_PORT_TYPE, 15)
                .ipv4(
                    dict::FRAMED_IP_ADDRESS,
                    Ipv4Addr::from(0x6440_0000u32 + serial % 0x003f_fffe + 1),
                )
                .string(dict::CALLING_STATION_ID, &format!("02-00-{serial:08X}"))
                .u32(dict::EVENT_TIMESTAMP, self.t0 + secs);
            match step {
                0 => r.string(dict::CONNECT_INFO, "start"),
                1 => r
                    .u32(dict::ACCT_SESSION_TIME, secs)
                    .u32(dict::ACCT_INPUT_OCTETS, 1_000_000)
                    .u32(dict::ACCT_OUTPUT_OCTETS, 5_000_000),
                _ => r
                    .u32(dict::ACCT_SESSION_TIME, secs)
                    .u32(dict::ACCT_INPUT_OCTETS, 2_000_000)
                    .u32(dict::ACCT_OUTPUT_OCTETS, 10_000_000)
                    .u32(dict::ACCT_TERMINATE_CAUSE, 1),
            }
            .encode()
        }
    }

    impl Source for Sessions {
        fn next(&mut self, elapsed: Duration) -> Option<Job> {
            if self.closed_at.is_none() && self.stop_arrivals.load(Ordering::Relaxed) {
                self.closed_at = Some(self.opened);
            }
            // Session n falls due n / rate seconds after the start.
            let due = self
                .closed_at
                .unwrap_or((elapsed.as_secs_f64() * self.rate) as u32 + 1);
            if self.opened >= due {
                return None;
            }
            let n = self.opened;
            self.opened += 1;
            self.open.insert(n);
            self.publish();
            Some(Job {
                tag: n,
                packets: (0..3).map(|step| self.packet(n, step)).collect(),
            })
        }

        fn next_due(&self) -> Option<Duration> {
            match self.closed_at {
                Some(_) => None,
                None => Some(Duration::from_secs_f64(f64::from(self.opened) / self.rate)),
            }
        }

        fn done(&mut self, tag: u32) {
            self.open.remove(&tag);
            self.publish();
        }

        fn exhausted(&self) -> bool {
            self.closed_at == Some(self.opened)
        }
    }
}

// ------------------------------------------------------------------------------------------
// --soak MINUTES: steady load on a million rows.

/// `--soak MINUTES`: `radacct` is first filled through UDP to `rows` rows of which `online`
/// are open sessions (closed sessions as Start + Stop, then the online ones as Starts, as fast
/// as `--in-flight` allows over `--sockets`); then [`NASES`] NASes offer `rate` packets per
/// second for MINUTES whatever the answers. Each online session is visited in turn: it sends an
/// Interim-Update, after [`LIFETIME_INTERIMS`] of them it stops and a new session starts in its
/// place (Stop, then Start), so the online count stays about `online`. One new session in
/// [`SILENT_EVERY`] is silent: it sends no Acct-Interim-Interval and nothing after its Start,
/// so the reaper (with `accounting.stale_after` = [`STALE_AFTER`]) closes it; a while later a
/// new session takes its place. Every [`REPORT_EVERY`] a line: the process's RSS (node and load
/// generator share it), acked/s, p99 and max of the window, sessions online (SQL), sessions the
/// reaper closed, drops. At the end: RSS flat (the largest of the second half within
/// [`RSS_FLAT`] of the largest of the first half), p99 within the ingest target, and the reaper
/// caught up (no silent session open past its limit plus two reaper intervals).
#[path = "ingest/history.rs"]
mod history;

mod soak {
    use std::sync::atomic::AtomicBool;

    use tokio_util::sync::CancellationToken;

    use radacctd::store::reaper::REAP_INTERVAL;

    use super::fleet::{self, Job, Source, Stats};
    use super::*;

    pub(super) struct Plan {
        pub minutes: u64,
        /// Packets per second offered.
        pub rate: u64,
        pub online: usize,
        pub rows: usize,
    }

    /// NAS sockets of the steady load.
    const NASES: usize = 16;
    const REPORT_EVERY: Duration = Duration::from_secs(30);
    /// Interim-Updates of a session before its Stop.
    const LIFETIME_INTERIMS: u8 = 4;
    /// One new session in this many is silent.
    const SILENT_EVERY: u32 = 20;
    /// `accounting.stale_after` during the soak: the limit for sessions without an interval.
    const STALE_AFTER: Duration = Duration::from_secs(120);
    /// How much the second half's largest RSS may exceed the first half's.
    const RSS_FLAT: f64 = 1.10;
    /// Acct-Interim-Interval at least (the visits are this far apart or less).
    const MIN_INTERIM_INTERVAL: u32 = 60;
    /// The run fails when the fill or the fleet's last packets take longer than this.
    const LIMIT: Duration = Duration::from_secs(3_600);

    pub(super) fn run(
        setup: &Setup,
        backends: &[Backend],
        runs: usize,
        plan: &Plan,
    ) -> Result<bool> {
        ensure!(plan.minutes > 0, "--soak must be at least 1 minute");
        ensure!(
            plan.online >= NASES && plan.rows >= plan.online,
            "--online must be at least {NASES} and --rows at least --online"
        );
        ensure!(plan.rate > 0, "--rate must be at least 1");
        ensure!(plan.rows <= u32::MAX as usize / 2, "--rows is too large");
        println!(
            "soak: fill to {} rows with {} online, then {} packets/s offered for {} min from {NASES} \
             NASes (reaper on, stale_after {} s); {runs} run(s) per backend, {} CPU(s)",
            fmt_int(plan.rows as f64),
            fmt_int(plan.online as f64),
            fmt_int(plan.rate as f64),
            plan.minutes,
            STALE_AFTER.as_secs(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        let mut ok = true;
        for &backend in backends {
            for i in 0..runs {
                let name = format!("{} soak run {}/{}", backend.name(), i + 1, runs);
                println!("{name}:");
                match one(setup, backend, plan) {
                    Ok(true) => {}
                    Ok(false) => ok = false,
                    Err(e) => {
                        println!("{name}: FAILED: {e:#}");
                        ok = false;
                    }
                }
            }
        }
        Ok(ok)
    }

    fn one(setup: &Setup, backend: Backend, plan: &Plan) -> Result<bool> {
        on_fresh_db(setup, backend, |rt, db| on_db(setup, rt, db, plan))
    }

    fn on_db(
        setup: &Setup,
        server_rt: &tokio::runtime::Runtime,
        db: &BenchDb,
        plan: &Plan,
    ) -> Result<bool> {
        let node = fleet::start(
            server_rt,
            db,
            &format!(
                "[accounting]\nstale_after = \"{}s\"\n",
                STALE_AFTER.as_secs()
            ),
        )?;
        // Visits per second (a visit is one packet, or two for Stop + Start) and the time
        // between two visits of a session.
        let visits =
            plan.rate as f64 * f64::from(LIFETIME_INTERIMS + 1) / f64::from(LIFETIME_INTERIMS + 2);
        let period = plan.online as f64 / visits;
        let interval = MIN_INTERIM_INTERVAL.max(period.ceil() as u32);
        let silent_visits =
            ((STALE_AFTER + 2 * REAP_INTERVAL).as_secs_f64() / period).ceil() as u16 + 1;
        let (background, _) = wait_for_idle(setup.idle_wait);

        // The fill.
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        // Whatever happens, the load generator stops with this function.
        let _stop_on_return = stop.clone().drop_guard();
        let fill_sources: Vec<Fill> = (0..setup.sockets)
            .map(|k| Fill {
                k: k as u32,
                sockets: setup.sockets as u32,
                total: plan.rows as u32,
                closed: (plan.rows - plan.online) as u32,
                n: 0,
                interval,
                online: Vec::new(),
            })
            .collect();
        let started = Instant::now();
        let load = fleet::spawn(
            node.radius,
            fill_sources,
            (setup.in_flight / setup.sockets).max(1),
            started,
            stats.clone(),
            stop.clone(),
        )?;
        let filled = fleet::join(load, LIMIT, &stop)?;
        let fill_time = started.elapsed();
        let rows = server_rt.block_on(db.scalar("SELECT COUNT(*) FROM radacct"))?;
        let open = server_rt.block_on(db.scalar(ONLINE))?;
        println!(
            "    fill: {} packets in {:.0} s ({} acked/s, {} retransmits): {} rows, {} online",
            fmt_int(stats.acked() as f64),
            fill_time.as_secs_f64(),
            fmt_int(stats.acked() as f64 / fill_time.as_secs_f64()),
            fmt_int(stats.retransmits.load(Ordering::Relaxed) as f64),
            fmt_int(rows as f64),
            fmt_int(open as f64),
        );
        ensure!(
            rows == plan.rows as i64 && open == plan.online as i64,
            "the fill left {rows} rows and {open} online, expected {} and {}",
            plan.rows,
            plan.online
        );

        // The steady load.
        let mut slots: Vec<Vec<Slot>> = (0..NASES).map(|_| Vec::new()).collect();
        for (j, serial, start) in filled.into_iter().flat_map(|f| f.online) {
            slots[j as usize % NASES].push(Slot {
                serial,
                start,
                // Staggered lifetimes: a fifth of the sessions is at each visit of its life, so
                // Stops and new Starts come at a steady pace from the first minute on.
                interims: (serial % u32::from(LIFETIME_INTERIMS + 1)) as u8,
                silent_left: None,
                busy: false,
            });
        }
        let stop_visits = Arc::new(AtomicBool::new(false));
        let sources: Vec<Steady> = slots
            .into_iter()
            .enumerate()
            .map(|(k, slots)| Steady {
                rate: visits / NASES as f64,
                slots,
                cursor: 0,
                visited: 0,
                next_serial: plan.rows as u32 + k as u32,
                interval,
                silent_visits,
                skipped: 0,
                stop: stop_visits.clone(),
            })
            .collect();
        println!(
            "    steady: {:.0} visits/s, each session visited every {period:.0} s \
             (Acct-Interim-Interval {interval} s), silent sessions replaced after {silent_visits} visits",
            visits,
        );
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        // Whatever happens, the load generator stops with this function.
        let _stop_on_return = stop.clone().drop_guard();
        let began = Instant::now();
        println!(
            "    steady load began at {} (the node logs with RUST_LOG=info show what it did)",
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        let load = fleet::spawn(
            node.radius,
            sources,
            IDS_PER_SOCKET,
            began,
            stats.clone(),
            stop.clone(),
        )?;
        let mut windows: Vec<Window> = Vec::new();
        let mut sorted = Vec::new();
        let mut last = (
            0u64,
            0u64,
            node.metric("radacctd_stale_sessions_closed_total"),
        );
        let mut drops_last = node.drops();
        let cpu_start = CpuSample::take();
        let mut cpu_last = CpuSample::take();
        let end = began + Duration::from_secs(plan.minutes * 60);
        let mut next_report = began + REPORT_EVERY;
        while next_report <= end {
            std::thread::sleep(next_report.saturating_duration_since(Instant::now()));
            next_report += REPORT_EVERY;
            stats.take_window(&mut sorted);
            let acked = stats.acked();
            let sent = stats.sent.load(Ordering::Relaxed);
            let reaped = node.metric("radacctd_stale_sessions_closed_total");
            let drops = node.drops();
            let (rss, _) = fleet::memory();
            let cpu_now = CpuSample::take();
            let cpu = CpuUse::between(&cpu_last, &cpu_now, 0);
            cpu_last = cpu_now;
            let online = server_rt.block_on(db.scalar(ONLINE))?;
            let secs = REPORT_EVERY.as_secs_f64();
            let w = Window {
                at: began.elapsed(),
                rss,
                acked_rate: (acked - last.0) as f64 / secs,
                offered_rate: (sent - last.1) as f64 / secs,
                p99: fleet::p_ms(&sorted, 99.0),
                max: fleet::p_ms(&sorted, 100.0),
                online,
                reaped: reaped - last.2,
            };
            println!(
                "    {:>4.0} s: RSS {:.0} MiB, {} acked/s ({} offered), p99 {:.2} ms, max {:.1} ms, \
                 {} online, {} closed by the reaper, drops {}; cpu: this process {:.2}, \
                 postgres {:.2}, rest {:.2}{}",
                w.at.as_secs_f64(),
                w.rss,
                fmt_int(w.acked_rate),
                fmt_int(w.offered_rate),
                w.p99,
                w.max,
                fmt_int(w.online as f64),
                fmt_int(w.reaped),
                fleet::drops_between(&drops_last, &drops),
                cpu.process.unwrap_or(0.0),
                cpu.postgres.unwrap_or(0.0),
                cpu.rest().unwrap_or(0.0),
                if cpu.others.iter().map(|(_, c)| c).sum::<f64>() > fleet::OTHERS_BUSY {
                    " (DISTURBED by other processes)"
                } else {
                    ""
                },
            );
            let stalls = stats.take_stalls();
            if !stalls.is_empty() {
                println!(
                    "          slow answers (>= {} ms) in bursts: {}",
                    fleet::SLOW_MS,
                    stalls.join("; ")
                );
            }
            windows.push(w);
            last = (acked, sent, reaped);
            drops_last = drops;
        }
        let cpu = fleet::cpu_line(&cpu_start, &CpuSample::take());
        stop_visits.store(true, Ordering::SeqCst);
        let sources = fleet::join(load, LIMIT, &stop)?;
        let skipped: u64 = sources.iter().map(|s| s.skipped).sum();
        let p99_all = stats
            .latencies
            .lock()
            .expect("latencies lock")
            .all
            .percentile_ms(99.0);
        let retransmits = stats.retransmits.load(Ordering::Relaxed);
        node.stop(server_rt)?;

        // The reaper kept up: no silent session open past its limit plus two reaper runs.
        let now = chrono::Utc::now().timestamp();
        let limit = now - (STALE_AFTER + 2 * REAP_INTERVAL).as_secs() as i64;
        let overdue = server_rt.block_on(db.scalar(&match db.backend {
            Backend::Sqlite => format!(
                "SELECT COUNT(*) FROM radacct WHERE acctstoptime IS NULL \
                 AND acctinteriminterval IS NULL AND acctinterval IS NULL \
                 AND COALESCE(acctupdatetime, acctstarttime) < {limit}"
            ),
            Backend::Postgres => format!(
                "SELECT COUNT(*) FROM radacct WHERE acctstoptime IS NULL \
                 AND acctinteriminterval IS NULL AND acctinterval IS NULL \
                 AND COALESCE(acctupdatetime, acctstarttime) < to_timestamp({limit})"
            ),
        }))?;
        let rows = server_rt.block_on(db.scalar("SELECT COUNT(*) FROM radacct"))?;
        let reaped: f64 = windows.iter().map(|w| w.reaped).sum();

        let half = windows.len() / 2;
        let max_rss = |w: &[Window]| w.iter().map(|w| w.rss).fold(0.0, f64::max);
        let (first, second) = (max_rss(&windows[..half]), max_rss(&windows[half..]));
        let flat = half > 0 && second <= first * RSS_FLAT;
        let worst_p99 = windows.iter().map(|w| w.p99).fold(0.0, f64::max);
        let p99_ok = p99_all <= TARGET_P99_MS;
        println!(
            "    end: {} rows, {} sessions closed by the reaper, {overdue} silent sessions open past \
             their limit (reaper {}), {} visits skipped (session still unanswered), {} retransmits\n    \
             RSS largest {first:.0} MiB in the first half, {second:.0} MiB in the second ({:+.1} %): {}\n    \
             p99 over the soak {p99_all:.2} ms (worst window {worst_p99:.2} ms), target {TARGET_P99_MS} ms: {}\n    \
             {cpu}{}",
            fmt_int(rows as f64),
            fmt_int(reaped),
            if overdue == 0 { "kept up" } else { "FELL BEHIND" },
            fmt_int(skipped as f64),
            fmt_int(retransmits as f64),
            (second / first.max(1.0) - 1.0) * 100.0,
            if flat { "flat" } else { "NOT FLAT" },
            if p99_ok { "met" } else { "MISSED" },
            if background.is_some_and(|b| b > BUSY_BEFORE_RUN) {
                "\n    WARNING: other processes were busy before the run"
            } else {
                ""
            },
        );
        Ok(flat && p99_ok && overdue == 0)
    }

    /// Open sessions.
    const ONLINE: &str = "SELECT COUNT(*) FROM radacct WHERE acctstoptime IS NULL";

    /// One report line's figures.
    struct Window {
        at: Duration,
        rss: f64,
        acked_rate: f64,
        offered_rate: f64,
        p99: f64,
        max: f64,
        online: i64,
        reaped: f64,
    }

    /// A session's packet; `serial` makes its Acct-Session-Id.
    fn packet(status_type: u32, serial: u32, t: u32, start: u32, interval: Option<u32>) -> Vec<u8> {
        let mut r = Request::accounting(status_type, DEFAULT_LOCAL_SECRET.as_bytes(), 0)
            .string(dict::USER_NAME, &format!("user{:05}", serial % 50_000))
            .string(dict::ACCT_SESSION_ID, &format!("S{serial:010}"))
            .ipv4(
                dict::NAS_IP_ADDRESS,
                Ipv4Addr::new(10, 255, 0, 1 + (serial % 10) as u8),
            )
            .u32(dict::NAS_PORT, serial)
            .u32(dict::NAS_PORT_TYPE, 15)
            .u32(dict::SERVICE_TYPE, 2)
            .u32(dict::FRAMED_PROTOCOL, 1)
            .ipv4(
                dict::FRAMED_IP_ADDRESS,
                Ipv4Addr::from(0x6440_0000u32 + serial % 0x003f_fffe + 1),
            )
            .string(dict::CALLING_STATION_ID, &format!("02-00-{serial:08X}"))
            .u32(dict::ACCT_DELAY_TIME, 0)
            .u32(dict::EVENT_TIMESTAMP, t);
        if let Some(i) = interval {
            r = r.u32(dict::ACCT_INTERIM_INTERVAL, i);
        }
        if status_type == status::START {
            r = r.string(dict::CONNECT_INFO, "1000BASE-T FD");
        } else {
            let secs = t.saturating_sub(start);
            r = r
                .u32(dict::ACCT_SESSION_TIME, secs)
                .u32(dict::ACCT_INPUT_OCTETS, secs.wrapping_mul(12_500))
                .u32(dict::ACCT_OUTPUT_OCTETS, secs.wrapping_mul(125_000));
        }
        if status_type == status::STOP {
            r = r.u32(dict::ACCT_TERMINATE_CAUSE, 1);
        }
        r.encode()
    }

    fn now() -> u32 {
        chrono::Utc::now().timestamp() as u32
    }

    /// The fill's sessions of one socket: `k`, `k + sockets`, ...; the first `closed` of all are
    /// Start + Stop, the rest Starts of online sessions.
    struct Fill {
        k: u32,
        sockets: u32,
        total: u32,
        closed: u32,
        /// Sessions of this socket handed out.
        n: u32,
        interval: u32,
        /// (slot, serial, start) of the online sessions it opened.
        online: Vec<(u32, u32, u32)>,
    }

    impl Fill {
        fn serial(&self) -> u32 {
            self.k + self.n * self.sockets
        }
    }

    impl Source for Fill {
        fn next(&mut self, _elapsed: Duration) -> Option<Job> {
            let serial = self.serial();
            if serial >= self.total {
                return None;
            }
            self.n += 1;
            let t = now();
            let packets = if serial < self.closed {
                // Closed a while ago.
                vec![
                    packet(status::START, serial, t - 900, t - 900, Some(self.interval)),
                    packet(status::STOP, serial, t - 300, t - 900, None),
                ]
            } else {
                self.online.push((serial - self.closed, serial, t));
                vec![packet(status::START, serial, t, t, Some(self.interval))]
            };
            Some(Job {
                tag: serial,
                packets,
            })
        }

        fn next_due(&self) -> Option<Duration> {
            (self.serial() < self.total).then_some(Duration::ZERO)
        }

        fn done(&mut self, _tag: u32) {}

        fn exhausted(&self) -> bool {
            self.serial() >= self.total
        }
    }

    /// An online session's place.
    struct Slot {
        serial: u32,
        start: u32,
        interims: u8,
        /// A silent session: visits left before a new session replaces it.
        silent_left: Option<u16>,
        /// Its last job is not answered yet.
        busy: bool,
    }

    /// One NAS's online sessions, visited in turn at `rate` per second.
    struct Steady {
        rate: f64,
        slots: Vec<Slot>,
        cursor: usize,
        visited: u64,
        next_serial: u32,
        interval: u32,
        silent_visits: u16,
        /// Visits that found the session's previous packet still unanswered.
        skipped: u64,
        stop: Arc<AtomicBool>,
    }

    impl Steady {
        /// A new session in slot `j`; returns its Start.
        fn start(&mut self, j: usize, t: u32) -> Vec<u8> {
            let serial = self.next_serial;
            self.next_serial += NASES as u32;
            let silent = serial % SILENT_EVERY == 0;
            self.slots[j] = Slot {
                serial,
                start: t,
                interims: 0,
                silent_left: silent.then_some(self.silent_visits),
                busy: true,
            };
            packet(
                status::START,
                serial,
                t,
                t,
                (!silent).then_some(self.interval),
            )
        }
    }

    impl Source for Steady {
        fn next(&mut self, elapsed: Duration) -> Option<Job> {
            if self.stop.load(Ordering::Relaxed) || self.slots.is_empty() {
                return None;
            }
            // Visit v falls due v / rate seconds after the start.
            let due = (elapsed.as_secs_f64() * self.rate) as u64 + 1;
            while self.visited < due {
                self.visited += 1;
                let j = self.cursor;
                self.cursor = (self.cursor + 1) % self.slots.len();
                let t = now();
                let slot = &mut self.slots[j];
                if slot.busy {
                    self.skipped += 1;
                    continue;
                }
                let packets = match slot.silent_left {
                    Some(left) if left > 0 => {
                        slot.silent_left = Some(left - 1);
                        continue;
                    }
                    // The reaper closed it: a new session takes the place.
                    Some(_) => vec![self.start(j, t)],
                    None if slot.interims < LIFETIME_INTERIMS => {
                        slot.interims += 1;
                        slot.busy = true;
                        vec![packet(
                            status::INTERIM_UPDATE,
                            slot.serial,
                            t,
                            slot.start,
                            Some(self.interval),
                        )]
                    }
                    None => {
                        let stop = packet(
                            status::STOP,
                            slot.serial,
                            t,
                            slot.start,
                            Some(self.interval),
                        );
                        vec![stop, self.start(j, t)]
                    }
                };
                return Some(Job {
                    tag: j as u32,
                    packets,
                });
            }
            None
        }

        fn next_due(&self) -> Option<Duration> {
            (!self.stop.load(Ordering::Relaxed))
                .then(|| Duration::from_secs_f64(self.visited as f64 / self.rate))
        }

        fn done(&mut self, tag: u32) {
            if let Some(slot) = self.slots.get_mut(tag as usize) {
                slot.busy = false;
            }
        }

        fn exhausted(&self) -> bool {
            self.stop.load(Ordering::Relaxed)
        }
    }
}

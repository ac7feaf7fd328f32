//! The UDP fuzz program: a million random and mutated datagrams against a running radacctd.
//!
//! ```text
//! cargo bench --bench udp_fuzz -- [--backend sqlite|postgres|both] [--datagrams 1000000]
//!                                 [--seed 1] [--window 128] [--valid-sample 2000]
//!                                 [--pg postgres://postgres@127.0.0.1:5432]
//! ```
//!
//! Per backend: a fresh database and an in-process node (`App::build` +
//! `run_until_stopped`, as `benches/ingest.rs` starts it; no archiving, no stale-session
//! limit, so nothing in the background changes rows). The base packets of
//! `tests/it/fuzz_cases.rs` are sent first (they are valid and open sessions). Then cases come
//! from the same proptest strategy as the fuzz test, from a fixed seed; the same model says
//! which datagrams are invalid and why. The first `--datagrams` invalid ones are sent over
//! UDP from 127.0.0.1 (and, for the unknown-client cases, from 127.0.0.2), at most
//! `--window` of them not yet counted by the node, so the kernel's socket buffer never drops
//! one. The valid mutants met on the way are set aside; the first `--valid-sample` of them are
//! sent one by one afterwards and must all be answered.
//!
//! It reports, and exits non-zero unless all hold: the node still answers a valid packet and
//! `/healthz` (no crash); no invalid datagram was answered; every table is as it was before
//! the invalid datagrams (a full snapshot of `radacct`, `radacct_history`, `users`,
//! `web_sessions`, `ws_connections`, `nas`); the drop counters of `/metrics` went up by
//! exactly the number of invalid datagrams, each reason by the number the model predicted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use radacctd::app::App;
use radacctd::config::{Layer, DEFAULT_LOCAL_SECRET};
use radacctd::metrics::Metrics;
use radacctd::radius::builder::{is_accounting_response, Request};
use radacctd::radius::dict::{self, status};
use tokio::net::UdpSocket;

#[allow(dead_code)]
#[path = "../tests/it/fuzz_cases.rs"]
mod fuzz_cases;

use fuzz_cases::{base_packets, cases, predict, Fate, REASONS};

/// How long the node may take to count the datagrams sent so far before the ones still
/// uncounted are taken as lost (they would fail the run).
const STALL: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(about = "radacctd UDP fuzz: random and mutated datagrams against a running node")]
struct Args {
    /// Which database(s) to run against.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Invalid datagrams to send per backend.
    #[arg(long, default_value_t = 1_000_000)]
    datagrams: u64,
    /// Seed of the case generator (the same seed gives the same datagrams).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Datagrams sent but not yet counted by the node, at most.
    #[arg(long, default_value_t = 128)]
    window: u64,
    /// Valid mutants sent one by one after the invalid ones (each must be answered).
    #[arg(long, default_value_t = 2_000)]
    valid_sample: usize,
    /// PostgreSQL server (trust auth) where a database per run is created and dropped.
    /// Default: RADACCTD_TEST_PG, else postgres://postgres@127.0.0.1:5432.
    #[arg(long)]
    pg: Option<String>,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let pg = args
        .pg
        .clone()
        .or_else(|| std::env::var("RADACCTD_TEST_PG").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".to_owned());
    let backends: &[bool] = match args.backend {
        BackendArg::Sqlite => &[false],
        BackendArg::Postgres => &[true],
        BackendArg::Both => &[false, true],
    };
    println!(
        "udp_fuzz: {} invalid datagrams per backend, seed {}, window {}, {} valid mutants after",
        fmt_int(args.datagrams),
        args.seed,
        args.window,
        args.valid_sample
    );
    let mut ok = true;
    for &postgres in backends {
        let name = if postgres { "postgres" } else { "sqlite" };
        match run(&args, postgres.then_some(pg.as_str())) {
            Ok(report) => {
                println!("{name}: {}", report.text);
                ok &= report.passed;
            }
            Err(e) => {
                println!("{name}: FAILED: {e:#}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Report {
    text: String,
    passed: bool,
}

/// One backend: a fresh database and node, the datagrams, the checks.
fn run(args: &Args, pg: Option<&str>) -> Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("radacctd")
        .build()
        .context("cannot start the server runtime")?;
    let db = rt.block_on(Db::create(pg))?;
    let outcome = run_on(args, &rt, &db);
    let dropped = rt.block_on(db.drop_db());
    let report = outcome?;
    dropped?;
    Ok(report)
}

fn run_on(args: &Args, rt: &tokio::runtime::Runtime, db: &Db) -> Result<Report> {
    let (radius, http, metrics, shutdown, handle) = rt.block_on(async {
        let config = Layer::from_toml(&format!(
            "database_url = \"{}\"\nnode = \"fuzz\"\nadmin_password = \"{}\"\n\
             [radius]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [accounting]\narchive_after = \"off\"\nstale_after = \"off\"\n",
            db.url,
            uuid::Uuid::new_v4().simple()
        ))
        .and_then(Layer::resolve)
        .context("fuzz config")?;
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
        anyhow::Ok((radius, http, metrics, shutdown, handle))
    })?;

    let secret = DEFAULT_LOCAL_SECRET.as_bytes();
    let bases = base_packets(secret, "fz");
    let load = {
        let metrics = metrics.clone();
        let (datagrams, window, valid_sample, seed) =
            (args.datagrams, args.window, args.valid_sample, args.seed);
        let pool_url = db.url.clone();
        std::thread::Builder::new()
            .name("fuzzer".into())
            .spawn(move || -> Result<Outcome> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the fuzzer runtime")?;
                rt.block_on(fuzz(Fuzz {
                    radius,
                    http,
                    metrics,
                    bases,
                    datagrams,
                    window,
                    valid_sample,
                    seed,
                    pool_url,
                }))
            })
            .context("cannot start the fuzzer thread")?
    };
    let outcome = load
        .join()
        .map_err(|_| anyhow::anyhow!("the fuzzer panicked"))?;

    shutdown.cancel();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .context("radacctd did not stop within 30 s")?
            .context("the radacctd task failed")?
            .context("radacctd stopped with an error")
    })?;
    let o = outcome?;

    let mut problems = Vec::new();
    if !o.alive {
        problems.push("the node no longer answers a valid packet or /healthz".to_owned());
    }
    if o.answered_invalid > 0 {
        problems.push(format!(
            "{} invalid datagrams were answered",
            o.answered_invalid
        ));
    }
    if !o.changed_tables.is_empty() {
        problems.push(format!("invalid datagrams changed {:?}", o.changed_tables));
    }
    let counted: u64 = o.counted.values().sum();
    if counted != o.sent {
        problems.push(format!(
            "the drop counters went up by {counted}, {} datagrams were sent",
            o.sent
        ));
    }
    if o.counted != o.predicted {
        problems.push(format!(
            "drops by reason {:?}, predicted {:?}",
            o.counted, o.predicted
        ));
    }
    if o.valid_answered != o.valid_sent {
        problems.push(format!(
            "{} of {} valid mutants answered",
            o.valid_answered, o.valid_sent
        ));
    }
    let mut text = format!(
        "{} invalid datagrams in {:.1} s ({}/s), from {} cases ({} valid mutants set aside)\n\
         \x20   drops counted in /metrics: {} = datagrams sent: {} ({})\n\
         \x20   invalid datagrams answered: {}; rows changed: {} ({} rows in {} tables compared)\n\
         \x20   crashes: {} (a valid packet answered and /healthz 200 after the run); \
         valid mutants answered: {} of {}",
        fmt_int(o.sent),
        o.elapsed.as_secs_f64(),
        fmt_int((o.sent as f64 / o.elapsed.as_secs_f64()) as u64),
        fmt_int(o.generated),
        fmt_int(o.generated - o.sent),
        fmt_int(counted),
        if counted == o.sent { "yes" } else { "NO" },
        o.counted
            .iter()
            .map(|(r, n)| format!("{r} {}", fmt_int(*n)))
            .collect::<Vec<_>>()
            .join(", "),
        o.answered_invalid,
        o.changed_tables.len(),
        fmt_int(o.rows_compared as u64),
        fuzz_cases_tables().len(),
        if o.alive { 0 } else { 1 },
        o.valid_answered,
        o.valid_sent,
    );
    if !problems.is_empty() {
        text.push_str(&format!("\n    FAILED: {}", problems.join("; ")));
    }
    Ok(Report {
        text,
        passed: problems.is_empty(),
    })
}

fn fuzz_cases_tables() -> [&'static str; 6] {
    [
        "radacct",
        "radacct_history",
        "users",
        "web_sessions",
        "ws_connections",
        "nas",
    ]
}

struct Fuzz {
    radius: SocketAddr,
    http: SocketAddr,
    metrics: Arc<Metrics>,
    bases: Vec<Vec<u8>>,
    datagrams: u64,
    window: u64,
    valid_sample: usize,
    seed: u64,
    pool_url: String,
}

struct Outcome {
    sent: u64,
    generated: u64,
    elapsed: Duration,
    predicted: BTreeMap<&'static str, u64>,
    counted: BTreeMap<&'static str, u64>,
    answered_invalid: u64,
    changed_tables: Vec<&'static str>,
    rows_compared: usize,
    valid_sent: usize,
    valid_answered: usize,
    alive: bool,
}

fn total_drops(metrics: &Metrics) -> u64 {
    REASONS.iter().map(|r| metrics.dropped(*r)).sum()
}

async fn fuzz(f: Fuzz) -> Result<Outcome> {
    let secret = DEFAULT_LOCAL_SECRET.as_bytes();
    let client = UdpSocket::bind("127.0.0.1:0")
        .await
        .context("bind 127.0.0.1")?;
    let stranger = UdpSocket::bind("127.0.0.2:0")
        .await
        .context("bind 127.0.0.2 (all of 127.0.0.0/8 must be loopback)")?;
    let mut buf = vec![0u8; 4096];

    // The valid base packets, answered one by one.
    for p in &f.bases {
        if !ask(&client, f.radius, p, secret, &mut buf).await {
            bail!("a base packet was not answered: {p:02x?}");
        }
    }
    let db = Pool::open(&f.pool_url).await?;
    let before = db.snapshot_all().await?;
    let metrics_before = scrape_drops(f.http).await?;

    let mut runner = TestRunner::new_with_rng(
        RunnerConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(f.seed)),
    );
    let strategy = cases();
    let mut predicted: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut valid = Vec::new();
    let (mut sent, mut generated, mut answered_invalid) = (0u64, 0u64, 0u64);
    let counted_at_start = total_drops(&f.metrics);
    let started = Instant::now();
    let mut last_progress = (Instant::now(), counted_at_start);
    while sent < f.datagrams {
        let case = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("case generation: {e}"))?
            .current();
        generated += 1;
        let datagram = case.datagram(&f.bases, secret);
        match predict(&datagram, secret, !case.unknown_client) {
            Fate::Answered => {
                if valid.len() < f.valid_sample {
                    valid.push(datagram);
                }
                continue;
            }
            Fate::Dropped(reason) => {
                *predicted.entry(reason.as_str()).or_default() += 1;
            }
        }
        // Keep at most `window` datagrams uncounted by the node.
        loop {
            let counted = total_drops(&f.metrics) - counted_at_start;
            if sent - counted < f.window {
                break;
            }
            if counted != last_progress.1 {
                last_progress = (Instant::now(), counted);
            } else if last_progress.0.elapsed() > STALL {
                // Lost somewhere: the final comparison will say so.
                break;
            }
            while let Ok((n, _)) = client.try_recv_from(&mut buf) {
                let _ = n;
                answered_invalid += 1;
            }
            tokio::task::yield_now().await;
        }
        let socket = if case.unknown_client {
            &stranger
        } else {
            &client
        };
        socket
            .send_to(&datagram, f.radius)
            .await
            .context("send a datagram")?;
        sent += 1;
    }
    // Wait until every datagram is counted (or nothing moves for STALL).
    let mut last = (Instant::now(), 0);
    loop {
        let counted = total_drops(&f.metrics) - counted_at_start;
        if counted >= sent {
            break;
        }
        if counted != last.1 {
            last = (Instant::now(), counted);
        } else if last.0.elapsed() > STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    while client.try_recv_from(&mut buf).is_ok() {
        answered_invalid += 1;
    }

    let after = db.snapshot_all().await?;
    let rows_compared = before.iter().map(|(_, rows)| rows.len()).sum();
    let changed_tables: Vec<&'static str> = before
        .iter()
        .zip(&after)
        .filter(|((_, b), (_, a))| b != a)
        .map(|((t, _), _)| *t)
        .collect();
    let metrics_after = scrape_drops(f.http).await?;
    let counted: BTreeMap<&'static str, u64> = REASONS
        .iter()
        .map(|r| {
            let name = r.as_str();
            let n = metrics_after.get(name).copied().unwrap_or_default()
                - metrics_before.get(name).copied().unwrap_or_default();
            (name, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();

    // The valid mutants, one by one: each is answered.
    let mut valid_answered = 0;
    for p in &valid {
        if ask(&client, f.radius, p, secret, &mut buf).await {
            valid_answered += 1;
        }
    }

    // Still alive: a fresh valid packet is answered, /healthz is 200.
    let probe = Request::accounting(status::START, secret, 7)
        .string(dict::USER_NAME, "after-fuzz")
        .string(dict::ACCT_SESSION_ID, &uuid::Uuid::new_v4().to_string())
        .encode();
    let answered = ask(&client, f.radius, &probe, secret, &mut buf).await;
    let healthy = reqwest::get(format!("http://{}/healthz", f.http))
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
    db.close().await;

    Ok(Outcome {
        sent,
        generated,
        elapsed,
        predicted,
        counted,
        answered_invalid,
        changed_tables,
        rows_compared,
        valid_sent: valid.len(),
        valid_answered,
        alive: answered && healthy,
    })
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out[8..].copy_from_slice(b"radacctd udp_fuzz seed.!");
    out
}

/// Sends a datagram and waits (up to 5 s, retransmitting each second) for its authentic
/// answer.
async fn ask(
    socket: &UdpSocket,
    server: SocketAddr,
    datagram: &[u8],
    secret: &[u8],
    buf: &mut [u8],
) -> bool {
    for _ in 0..5 {
        if socket.send_to(datagram, server).await.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(deadline, socket.recv_from(&mut *buf)).await
        {
            if is_accounting_response(&buf[..n], datagram, secret) {
                return true;
            }
        }
    }
    false
}

/// `radacctd_dropped_packets_total` by reason, from `/metrics`.
async fn scrape_drops(http: SocketAddr) -> Result<BTreeMap<String, u64>> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .context("GET /metrics")?
        .text()
        .await
        .context("GET /metrics")?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("radacctd_dropped_packets_total{reason=\""))
        .filter_map(|rest| {
            let (reason, value) = rest.split_once("\"}")?;
            Some((reason.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

// ------------------------------------------------------------------------------------------
// The database of one run, and table snapshots.

struct Db {
    url: String,
    /// PostgreSQL: the server URL and the database name to drop.
    pg: Option<(String, String)>,
    /// SQLite: the directory holding the file (removed on drop).
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn create(pg: Option<&str>) -> Result<Self> {
        match pg {
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("radacctd-fuzz")
                    .tempdir()
                    .context("cannot create a temp dir")?;
                let url = format!("sqlite://{}", dir.path().join("radacctd.db").display());
                Ok(Self {
                    url,
                    pg: None,
                    _dir: Some(dir),
                })
            }
            Some(server) => {
                let name = format!("radacctd_fuzz_{}", uuid::Uuid::new_v4().simple());
                let admin = pg_admin(server).await?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                admin.close().await;
                Ok(Self {
                    url: format!("{server}/{name}"),
                    pg: Some((server.to_owned(), name)),
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
}

async fn pg_admin(server: &str) -> Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("PostgreSQL at {server} is needed for --backend postgres"))
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Pool {
    async fn open(url: &str) -> Result<Self> {
        Ok(if url.starts_with("sqlite:") {
            Pool::Sqlite(
                sqlx::SqlitePool::connect(url)
                    .await
                    .context("open SQLite")?,
            )
        } else {
            Pool::Postgres(
                sqlx::PgPool::connect(url)
                    .await
                    .context("connect PostgreSQL")?,
            )
        })
    }

    async fn close(self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// Every row of every table radacctd writes, all columns as text, sorted.
    async fn snapshot_all(&self) -> Result<Vec<(&'static str, Vec<String>)>> {
        let mut out = Vec::new();
        for table in fuzz_cases_tables() {
            let mut rows: Vec<String> = match self {
                Pool::Sqlite(p) => {
                    let columns: Vec<String> = sqlx::query_scalar(&format!(
                        "SELECT name FROM pragma_table_info('{table}')"
                    ))
                    .fetch_all(p)
                    .await?;
                    let row = columns
                        .iter()
                        .map(|c| format!("quote(\"{c}\")"))
                        .collect::<Vec<_>>()
                        .join(" || '|' || ");
                    sqlx::query_scalar(&format!("SELECT {row} FROM {table}"))
                        .fetch_all(p)
                        .await?
                }
                Pool::Postgres(p) => {
                    sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
                        .fetch_all(p)
                        .await?
                }
            };
            rows.sort();
            out.push((table, rows));
        }
        Ok(out)
    }
}

fn fmt_int(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

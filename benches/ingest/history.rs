//! `--history N`: does ingest slow down once years of history are stored, and how fast is
//! "who had this address at that moment?" over them (SPEC §9)?
//!
//! One node per backend, with `accounting.archive_after = "1d"`:
//! 1. the ingest measurement of the plain bench (`--sessions` x Start, Interim, Interim, Stop,
//!    `--in-flight` outstanding), `--runs` times, on the empty database;
//! 2. N closed sessions through the UDP path (a Start, then its Stop), with event times spread
//!    over the [`SPAN_DAYS`] days before the last one and framed addresses from a pool of
//!    [`POOL`] that each come back about once a day, as a carrier-grade pool's do. They are all
//!    older than `archive_after`, so the archiver moves every one of them to `radacct_history`,
//!    meanwhile and after; the bench waits until it has;
//! 3. the same ingest measurement again, `--runs` times (new sessions each time), each run
//!    paired with one on a second database that is empty, served by a second node of the same
//!    configuration on the same server, in turn (the order swapped every round). The target
//!    compares these two: measured in the same minutes, both meet the same machine (a 2-core
//!    VM whose speed drifts over a run this long) and the same server state (its caches full of
//!    the fill, its checkpoints), so their ratio is the cost of the history alone. The ratio to
//!    the runs of step 1, half an hour earlier, is printed too;
//! 4. `sessionsByIp(ip, at)` over HTTP (`POST /graphql`, admin token), [`LOOKUPS`] times, one
//!    at a time, for a random filled session and a moment inside it: p50 / p99, and every
//!    answer must be exactly that session.
//!
//! Every ingest run starts on an empty `radacct`: before each, the bench empties it (SQL on its
//! own rows; the history is all in `radacct_history` by then). So the runs before and after the
//! history differ only in the history and the subscribers it brought, not in how many sessions
//! `radacct` holds: ingest slows as the live table grows, whatever the history, which is a
//! separate question (that is what the archiver is for).
//!
//! The run fails when a row count is wrong, a lookup answers anything else, or the archiver has
//! not caught up within [`ARCHIVE_LIMIT`] of the fill's end.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio_util::sync::CancellationToken;

use super::fleet::{self, Job, Source, Stats};
use super::*;

pub(super) struct Plan {
    /// Closed sessions of history to fill.
    pub sessions: u32,
}

/// The history's sessions start over this many days, ending [`SPAN_END`] before the fill.
const SPAN_DAYS: u32 = 30;
/// The newest history session starts this long before the fill: a day (`archive_after`) and
/// the longest session (an hour), so every one is due for archiving.
const SPAN_END: u32 = 86_400 + 3_600;
/// Framed addresses in the pool (100.96.0.0/14).
const POOL: u32 = 1 << 18;
/// First address of the pool.
const POOL_BASE: u32 = 0x6460_0000;
/// Lookups measured.
const LOOKUPS: usize = 2_000;
/// How long the archiver may take after the fill.
const ARCHIVE_LIMIT: Duration = Duration::from_secs(1_800);
/// The fill must end within this.
const FILL_LIMIT: Duration = Duration::from_secs(3 * 3_600);
/// The rate after the history must be at least this share of the rate before it.
const TARGET_RATIO: f64 = 0.90;
/// Lookup p99 target.
const TARGET_LOOKUP_P99_MS: f64 = 10.0;

/// Session `serial` of `total`, as the fill sends it: (start, stop, framed address).
fn session(serial: u32, total: u32, now: u32) -> (u32, u32, Ipv4Addr) {
    let span = u64::from(SPAN_DAYS) * 86_400;
    let start =
        now - SPAN_END - span as u32 + (u64::from(serial) * span / u64::from(total.max(1))) as u32;
    let duration = 60 + serial.wrapping_mul(7_919) % 3_540;
    (
        start,
        start + duration,
        Ipv4Addr::from(POOL_BASE + serial % POOL),
    )
}

fn session_id(serial: u32) -> String {
    format!("H{serial:010}")
}

fn packet(status_type: u32, serial: u32, total: u32, now: u32) -> Vec<u8> {
    let (start, stop, ip) = session(serial, total, now);
    let mut r = Request::accounting(status_type, DEFAULT_LOCAL_SECRET.as_bytes(), 0)
        .string(dict::USER_NAME, &format!("sub{:06}", serial % 200_000))
        .string(dict::ACCT_SESSION_ID, &session_id(serial))
        .ipv4(
            dict::NAS_IP_ADDRESS,
            Ipv4Addr::new(10, 254, 0, 1 + (serial % 20) as u8),
        )
        .u32(dict::NAS_PORT, serial)
        .u32(dict::NAS_PORT_TYPE, 15)
        .u32(dict::SERVICE_TYPE, 2)
        .u32(dict::FRAMED_PROTOCOL, 1)
        .ipv4(dict::FRAMED_IP_ADDRESS, ip)
        .string(dict::CALLING_STATION_ID, &format!("02-01-{serial:08X}"))
        .u32(dict::ACCT_INTERIM_INTERVAL, 300);
    if status_type == status::START {
        r = r.u32(dict::EVENT_TIMESTAMP, start);
    } else {
        let secs = stop - start;
        r = r
            .u32(dict::EVENT_TIMESTAMP, stop)
            .u32(dict::ACCT_SESSION_TIME, secs)
            .u32(dict::ACCT_INPUT_OCTETS, secs.wrapping_mul(12_500))
            .u32(dict::ACCT_OUTPUT_OCTETS, secs.wrapping_mul(125_000))
            .u32(dict::ACCT_TERMINATE_CAUSE, 1);
    }
    r.encode()
}

/// One socket's share of the fill: sessions `k`, `k + sockets`, ...
struct Fill {
    k: u32,
    sockets: u32,
    total: u32,
    now: u32,
    n: u32,
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
        Some(Job {
            tag: serial,
            packets: vec![
                packet(status::START, serial, self.total, self.now),
                packet(status::STOP, serial, self.total, self.now),
            ],
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

pub(super) fn run(setup: &Setup, backends: &[Backend], runs: usize, plan: &Plan) -> Result<bool> {
    ensure!(plan.sessions > 0, "--history must be at least 1");
    println!(
        "history: ingest ({} sessions x {} packets, {} in flight) on an empty database, then \
         {} closed sessions through UDP over {SPAN_DAYS} days (archive_after 1d), then the \
         ingest again, then {LOOKUPS} sessionsByIp lookups over HTTP; {runs} ingest run(s) \
         each time; {} CPU(s)",
        fmt_int(setup.sessions as f64),
        setup.steps,
        setup.in_flight,
        fmt_int(f64::from(plan.sessions)),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut ok = true;
    for &backend in backends {
        println!("{} history:", backend.name());
        match one(setup, backend, runs, plan) {
            Ok(true) => {}
            Ok(false) => ok = false,
            Err(e) => {
                println!("{} history: FAILED: {e:#}", backend.name());
                ok = false;
            }
        }
    }
    Ok(ok)
}

fn one(setup: &Setup, backend: Backend, runs: usize, plan: &Plan) -> Result<bool> {
    on_fresh_db(setup, backend, |rt, db| on_db(setup, rt, db, runs, plan))
}

/// The nodes' configuration beyond the bench's defaults.
const CONFIG: &str = "[accounting]\narchive_after = \"1d\"\n";

/// Empties `radacct` for the next ingest run (the bench's own rows: the archiver has moved every
/// history session out before the runs after the history).
fn reset(server_rt: &tokio::runtime::Runtime, db: &BenchDb) -> Result<()> {
    server_rt.block_on(db.execute(match db.backend {
        Backend::Sqlite => "DELETE FROM radacct",
        Backend::Postgres => "TRUNCATE radacct",
    }))?;
    Ok(())
}

/// One ingest measurement on `node` (new sessions: `wave` counts them), from an empty `radacct`.
fn ingest_run(
    setup: &Setup,
    server_rt: &tokio::runtime::Runtime,
    node: &fleet::Node,
    db: &BenchDb,
    label: &str,
    wave: &mut u32,
) -> Result<Ingest> {
    reset(server_rt, db)?;
    let now = chrono::Utc::now().timestamp();
    let base = now - i64::from(3 * INTERIM_SECONDS) - 120;
    let load_plan = Arc::new(LoadPlan::build(setup, base, *wave, None)?);
    *wave += 1;
    let (background, _) = wait_for_idle(setup.idle_wait);
    let server_before = server_rt.block_on(ServerWork::take(db))?;
    let r = super::storm::load(load_plan, node.radius, setup)?;
    let server = server_rt
        .block_on(ServerWork::take(db))?
        .since(server_before);
    let mut l = r.latencies.clone();
    l.sort_unstable();
    let m = Ingest {
        rate: r.acked as f64 / r.elapsed.as_secs_f64(),
        p99_ms: percentile(&l, 99.0) as f64 / 1000.0,
    };
    println!(
        "    ingest {label}: {} acked/s, p50 {:.2} ms, p99 {:.2} ms, {} retransmits{server}{}",
        fmt_int(m.rate),
        percentile(&l, 50.0) as f64 / 1000.0,
        m.p99_ms,
        r.retransmits,
        if background.is_none_or(|b| b > BUSY_BEFORE_RUN) {
            " (DISTURBED: the machine was busy before the run)"
        } else {
            ""
        },
    );
    Ok(m)
}

/// Rate and p99 of one ingest measurement.
struct Ingest {
    rate: f64,
    p99_ms: f64,
}

fn on_db(
    setup: &Setup,
    server_rt: &tokio::runtime::Runtime,
    db: &BenchDb,
    runs: usize,
    plan: &Plan,
) -> Result<bool> {
    let password = uuid::Uuid::new_v4().simple().to_string();
    let node = fleet::start_with_password(server_rt, db, &password, CONFIG)?;
    let mut wave = 0;
    let mut before = Vec::with_capacity(runs);
    for i in 0..runs {
        before.push(ingest_run(
            setup,
            server_rt,
            &node,
            db,
            &format!("on the empty database {}/{runs}", i + 1),
            &mut wave,
        )?);
    }
    reset(server_rt, db)?;

    // The history, through UDP.
    let now = chrono::Utc::now().timestamp() as u32;
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let sources: Vec<Fill> = (0..setup.sockets as u32)
        .map(|k| Fill {
            k,
            sockets: setup.sockets as u32,
            total: plan.sessions,
            now,
            n: 0,
        })
        .collect();
    let started = Instant::now();
    let load = fleet::spawn(
        node.radius,
        sources,
        (setup.in_flight / setup.sockets).max(1),
        started,
        stats.clone(),
        stop.clone(),
    )?;
    let mut last_report = Instant::now();
    while !load.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        ensure!(
            started.elapsed() < FILL_LIMIT,
            "the fill did not end within {FILL_LIMIT:?}"
        );
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            println!(
                "      {:.0} s: {} packets acked, {} archived so far",
                started.elapsed().as_secs_f64(),
                fmt_int(stats.acked() as f64),
                fmt_int(node.metric("radacctd_sessions_archived_total")),
            );
        }
    }
    fleet::join(load, Duration::from_secs(60), &stop)?;
    let fill_time = started.elapsed();
    println!(
        "    history: {} packets in {:.0} s ({} acked/s, {} retransmits)",
        fmt_int(stats.acked() as f64),
        fill_time.as_secs_f64(),
        fmt_int(stats.acked() as f64 / fill_time.as_secs_f64()),
        fmt_int(stats.retransmits.load(Ordering::Relaxed) as f64),
    );

    // Wait for the archiver: every filled session is due. Its metric says how far it got; a
    // COUNT(*) every second would scan millions of rows and compete with it.
    let waited = Instant::now();
    loop {
        let archived = node.metric("radacctd_sessions_archived_total");
        if archived >= f64::from(plan.sessions) {
            break;
        }
        ensure!(
            waited.elapsed() < ARCHIVE_LIMIT,
            "{} sessions still to archive {ARCHIVE_LIMIT:?} after the fill",
            f64::from(plan.sessions) - archived
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let live = server_rt.block_on(db.scalar("SELECT COUNT(*) FROM radacct"))?;
    let history = server_rt.block_on(db.scalar("SELECT COUNT(*) FROM radacct_history"))?;
    let filled = server_rt
        .block_on(db.scalar("SELECT COUNT(*) FROM radacct_all WHERE acctsessionid LIKE 'H%'"))?;
    println!(
        "    archiver: caught up {:.0} s after the fill; radacct {} rows, radacct_history {} rows",
        waited.elapsed().as_secs_f64(),
        fmt_int(live as f64),
        fmt_int(history as f64),
    );
    ensure!(
        live == 0,
        "{live} sessions left in radacct after the archiver caught up"
    );
    ensure!(
        filled == i64::from(plan.sessions),
        "{filled} of the {} history sessions are stored",
        plan.sessions
    );

    // The runs after the history, each paired with one on a second database that is empty,
    // in the same minutes on the same server (in turn, the order swapped every round): what
    // the machine and the server's caches are doing then weighs on both alike, and the ratio
    // of the two medians is the history's own cost.
    let control_db = server_rt.block_on(BenchDb::create(db.backend, &setup.pg))?;
    let paired = (|| -> Result<(Vec<Ingest>, Vec<Ingest>)> {
        let control = fleet::start_with_password(server_rt, &control_db, &password, CONFIG)?;
        let (mut after, mut empty) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for i in 0..runs {
            let label = |what: &str| format!("{what} {}/{runs}", i + 1);
            let history_run = |wave: &mut u32| {
                ingest_run(
                    setup,
                    server_rt,
                    &node,
                    db,
                    &label("after the history"),
                    wave,
                )
            };
            if i % 2 == 0 {
                after.push(history_run(&mut wave)?);
            }
            empty.push(ingest_run(
                setup,
                server_rt,
                &control,
                &control_db,
                &label("on a second, empty database"),
                &mut wave,
            )?);
            if i % 2 == 1 {
                after.push(history_run(&mut wave)?);
            }
        }
        control.stop(server_rt)?;
        Ok((after, empty))
    })();
    let dropped = server_rt.block_on(control_db.drop_db());
    let (after, empty) = paired?;
    dropped?;

    // The lookups.
    let lookups = server_rt.block_on(lookups(node.http, &password, plan.sessions, now))?;
    node.stop(server_rt)?;

    let med = |v: &[Ingest], f: fn(&Ingest) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let (rate0, rate1, rate_e) = (
        med(&before, |m| m.rate),
        med(&after, |m| m.rate),
        med(&empty, |m| m.rate),
    );
    let (p99_0, p99_1, p99_e) = (
        med(&before, |m| m.p99_ms),
        med(&after, |m| m.p99_ms),
        med(&empty, |m| m.p99_ms),
    );
    let ratio = rate1 / rate_e;
    let ratio_ok = ratio >= TARGET_RATIO;
    let lookup_ok = lookups.p99_ms < TARGET_LOOKUP_P99_MS;
    println!(
        "{}: ingest median {} acked/s (p99 {p99_1:.2} ms) after {} sessions of history, {} \
         acked/s (p99 {p99_e:.2} ms) on an empty database in the same minutes: {ratio:.2}x, \
         target {TARGET_RATIO}x: {}; before the fill {} acked/s (p99 {p99_0:.2} ms, {:.2}x)\n    \
         sessionsByIp over HTTP at {} rows: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, target p99 < \
         {TARGET_LOOKUP_P99_MS} ms: {}",
        db.backend.name(),
        fmt_int(rate1),
        fmt_int(f64::from(plan.sessions)),
        fmt_int(rate_e),
        if ratio_ok { "MET" } else { "MISSED" },
        fmt_int(rate0),
        rate1 / rate0,
        fmt_int((live + history) as f64),
        lookups.p50_ms,
        lookups.p99_ms,
        lookups.max_ms,
        if lookup_ok { "MET" } else { "MISSED" },
    );
    Ok(true)
}

/// What PostgreSQL's background writers did, from its statistics views: a checkpoint that
/// flushes the fill's pages during an ingest run competes with it for the disk, which is not the
/// history's cost, so each run says how much of that it met.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct ServerWork {
    checkpoints: i64,
    /// Buffers written by checkpoints.
    checkpoint_buffers: i64,
    /// Full-page images written to the WAL.
    wal_fpi: i64,
    /// VACUUMs (radacctd's or autovacuum's) ended on this database's tables.
    vacuums: i64,
    /// ANALYZEs ended on this database's tables.
    analyzes: i64,
    /// VACUUMs running on this database now.
    vacuuming: i64,
}

impl ServerWork {
    /// The counters now; zero on SQLite.
    async fn take(db: &BenchDb) -> Result<Self> {
        if db.backend != Backend::Postgres {
            return Ok(Self::default());
        }
        Ok(Self {
            checkpoints: db
                .scalar("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
                .await?,
            checkpoint_buffers: db
                .scalar("SELECT buffers_checkpoint FROM pg_stat_bgwriter")
                .await?,
            wal_fpi: db.scalar("SELECT wal_fpi FROM pg_stat_wal").await?,
            vacuums: db
                .scalar(
                    "SELECT COALESCE(SUM(vacuum_count + autovacuum_count), 0)::bigint \
                     FROM pg_stat_user_tables",
                )
                .await?,
            analyzes: db
                .scalar(
                    "SELECT COALESCE(SUM(analyze_count + autoanalyze_count), 0)::bigint \
                     FROM pg_stat_user_tables",
                )
                .await?,
            vacuuming: db
                .scalar(
                    "SELECT COUNT(*) FROM pg_stat_progress_vacuum \
                     WHERE datname = current_database()",
                )
                .await?,
        })
    }

    fn since(self, before: Self) -> ServerDelta {
        ServerDelta(Self {
            checkpoints: self.checkpoints - before.checkpoints,
            checkpoint_buffers: self.checkpoint_buffers - before.checkpoint_buffers,
            wal_fpi: self.wal_fpi - before.wal_fpi,
            vacuums: self.vacuums - before.vacuums,
            analyzes: self.analyzes - before.analyzes,
            vacuuming: before.vacuuming.max(self.vacuuming),
        })
    }
}

/// [`ServerWork`] during one run, printed as a suffix of its line (nothing on SQLite).
struct ServerDelta(ServerWork);

impl std::fmt::Display for ServerDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = &self.0;
        if *w == ServerWork::default() {
            return Ok(());
        }
        write!(
            f,
            "; server: {} checkpoint(s) ended, {} buffers written by checkpoints, {} full-page \
             images, {} VACUUM(s) and {} ANALYZE(s) ended, {} VACUUM(s) running at its start or end",
            w.checkpoints,
            fmt_int(w.checkpoint_buffers as f64),
            fmt_int(w.wal_fpi as f64),
            w.vacuums,
            w.analyzes,
            w.vacuuming,
        )
    }
}

struct Lookups {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// [`LOOKUPS`] sessionsByIp requests, one at a time, each for a moment inside a random filled
/// session; each answer must be exactly that session.
async fn lookups(http: SocketAddr, password: &str, total: u32, now: u32) -> Result<Lookups> {
    let token = super::http_load::login(http, password).await?;
    let client = reqwest::Client::new();
    let mut rng = SplitMix(0x1b_ad_ca_fe);
    let mut micros = Vec::with_capacity(LOOKUPS);
    for _ in 0..LOOKUPS {
        let serial = rng.below(u64::from(total)) as u32;
        let (start, stop, ip) = session(serial, total, now);
        let at = start + (stop - start) / 2;
        let body = serde_json::json!({
            "query": "query($ip: String!, $at: DateTime!) { sessionsByIp(ip: $ip, at: $at) { sessionId } }",
            "variables": { "ip": ip.to_string(), "at": at.to_string() },
        });
        let sent = Instant::now();
        let answer: serde_json::Value = client
            .post(format!("http://{http}/graphql"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .context("sessionsByIp")?
            .error_for_status()
            .context("sessionsByIp")?
            .json()
            .await
            .context("sessionsByIp answer")?;
        micros.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        let ids: Vec<&str> = answer["data"]["sessionsByIp"]
            .as_array()
            .with_context(|| format!("sessionsByIp answered {answer}"))?
            .iter()
            .filter_map(|s| s["sessionId"].as_str())
            .collect();
        ensure!(
            ids == [session_id(serial).as_str()],
            "sessionsByIp({ip}, {at}) answered {ids:?}, expected [{}]",
            session_id(serial)
        );
    }
    micros.sort_unstable();
    Ok(Lookups {
        p50_ms: percentile(&micros, 50.0) as f64 / 1000.0,
        p99_ms: percentile(&micros, 99.0) as f64 / 1000.0,
        max_ms: f64::from(*micros.last().unwrap_or(&0)) / 1000.0,
    })
}

//! Database outages: no answer for anything not committed, recovery by itself.
//!
//! The first two tests send one packet at a time. The others put a NAS fleet's sustained load
//! on the node ([`Fleet`]: sessions arriving at a fixed rate whatever the answers, as
//! subscribers do), make the database unavailable in the middle (PostgreSQL refusing
//! connections, SQLite's write lock held by another connection, the SQLite file system full),
//! and check that nothing is answered while it is unavailable beyond what committed before,
//! that the writer queue overflows into counted `queue_full` drops instead of growing, that
//! `/healthz` says 503 and then 200, that ingest resumes by itself, and that every answered
//! packet is in `radacct` afterwards.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use radacctd::radius::builder::{is_accounting_response, Request};
use radacctd::radius::dict::{self, status};
use sqlx::Connection;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::harness::{
    dropped_by_reason, eventually, pg_admin, spawn_app, spawn_app_on, Backend, Session, TestApp,
    TestDb, SECRET,
};

/// A connection to the SQLite database at `url` that holds its write lock (until ROLLBACK), as
/// another process would.
async fn hold_write_lock(url: &str) -> sqlx::SqliteConnection {
    let mut locker = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    sqlx::query("UPDATE nas SET shortname = shortname")
        .execute(&mut locker)
        .await
        .unwrap();
    locker
}

/// SQLite: another process holds the write lock. The packet is not answered while the lock is
/// held, and is committed and answered once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_delays_the_answer_until_the_commit() {
    let app = spawn_app(Backend::Sqlite).await;
    let nas = app.nas();
    let mut locker = hold_write_lock(&app.db.url).await;

    let packet = nas
        .session(status::START, "outage", "locked")
        .u32(dict::EVENT_TIMESTAMP, chrono::Utc::now().timestamp() as u32)
        .encode();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(
        nas.send_on(&socket, &packet, Duration::from_millis(1500))
            .await
            .is_none(),
        "answered while the database was locked"
    );
    // A retransmit while the original is still waiting is not answered either.
    assert!(nas
        .send_on(&socket, &packet, Duration::from_millis(300))
        .await
        .is_none());

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    // The NAS retransmits until it hears back; the answer comes once the event is committed.
    let mut answered = false;
    for _ in 0..20 {
        if nas
            .send_on(&socket, &packet, Duration::from_secs(1))
            .await
            .is_some()
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "no answer after the lock was released");
    assert_eq!(app.sessions().await.len(), 1);
    app.stop().await;
}

/// SIGTERM while the database fails: the writer's retries get one grace period in all, not one
/// per waiting batch, so the node exits within seconds (a service manager would kill it after
/// its stop timeout) and answers nothing it did not store. Four batches wait here (an
/// Accounting-On goes in a batch of its own); each attempt waits SQLite's 5 s busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_while_its_database_is_locked_exits_within_the_grace_period() {
    let app = spawn_app(Backend::Sqlite).await;
    let nas = app.nas();
    let mut locker = hold_write_lock(&app.db.url).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let now = chrono::Utc::now().timestamp() as u32;
    for i in 0..4u8 {
        let packet = nas
            .request(status::ACCOUNTING_ON)
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 10 + i].into())
            .u32(dict::EVENT_TIMESTAMP, now)
            .encode();
        assert!(
            nas.send_on(&socket, &packet, Duration::from_millis(200))
                .await
                .is_none(),
            "answered while the database was locked"
        );
    }

    let took = app.stop_timed().await;
    // One attempt in progress (up to 5 s), the grace period (5 s), one last attempt (5 s).
    assert!(
        took < Duration::from_secs(16),
        "the node took {took:?} to stop"
    );
    // Nothing was answered meanwhile.
    let mut buf = [0u8; 4096];
    assert!(socket.try_recv_from(&mut buf).is_err(), "an answer came");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
}

/// PostgreSQL: the database refuses connections (and existing ones are cut). No answer,
/// `/healthz` says 503; when it comes back, ingest resumes by itself and the packet is stored
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_gets_no_answers_then_recovers_by_itself() {
    let app = spawn_app(Backend::Postgres).await;
    let nas = app.nas();
    let name = app.db.pg_name().unwrap().to_owned();
    let http = reqwest::Client::new();
    let health = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(health(http.clone(), app.url("/healthz")).await, 200);
    nas.send(nas.session(status::START, "outage", "before"))
        .await;

    let admin = pg_admin().await;
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();

    let packet = nas.session(status::START, "outage", "during").encode();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(
        nas.send_on(&socket, &packet, Duration::from_secs(2))
            .await
            .is_none(),
        "answered while the database was down"
    );
    assert!(
        eventually(Duration::from_secs(10), || health(
            http.clone(),
            app.url("/healthz")
        )
        .then_eq(503))
        .await,
        "/healthz did not report the outage"
    );

    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut answered = false;
    for _ in 0..30 {
        if nas
            .send_on(&socket, &packet, Duration::from_secs(1))
            .await
            .is_some()
        {
            answered = true;
            break;
        }
    }
    assert!(
        answered,
        "ingest did not resume after the database came back"
    );
    assert!(
        eventually(Duration::from_secs(10), || health(
            http.clone(),
            app.url("/healthz")
        )
        .then_eq(200))
        .await
    );
    let rows = app.sessions().await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    app.stop().await;
}

/// `future.then_eq(x)`: a future of whether the value equals `x`.
trait ThenEq<T> {
    fn then_eq(self, expected: T) -> impl std::future::Future<Output = bool>;
}

impl<F, T> ThenEq<T> for F
where
    F: std::future::Future<Output = T>,
    T: PartialEq,
{
    async fn then_eq(self, expected: T) -> bool {
        self.await == expected
    }
}

/// PostgreSQL refuses connections to the database (and the open ones are cut) for a few seconds
/// while a NAS fleet keeps sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_under_load_answers_only_what_is_stored_and_ingest_resumes_by_itself() {
    let app = spawn_app(Backend::Postgres).await;
    let name = app.db.pg_name().expect("a PostgreSQL database").to_owned();
    let mut fault = Fault::PgRefuse {
        admin: pg_admin().await,
        name,
    };
    load_through_an_outage(&app, &mut fault).await;
    app.stop().await;
}

/// Another connection holds SQLite's write lock (`BEGIN EXCLUSIVE`) for a few seconds while a
/// NAS fleet keeps sending: the database file cannot be written, as when it is read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_under_load_answers_only_what_is_stored_and_ingest_resumes() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut fault = Fault::SqliteLock {
        url: app.db.url.clone(),
        locker: None,
    };
    load_through_an_outage(&app, &mut fault).await;
    app.stop().await;
}

/// The file system holding the SQLite database fills up under load (a small tmpfs mounted for
/// the test, filled with a file; this needs root, as CI has): nothing is answered while it is
/// full, and ingest resumes by itself once the file is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_sqlite_answers_only_what_is_stored_and_ingest_resumes_when_space_is_freed(
) {
    let mount = SmallFs::mount();
    let db = TestDb::sqlite_at(&mount.dir.path().join("radacctd.db"));
    let app = spawn_app_on(db, |_| {}).await;
    let mut fault = Fault::DiskFull {
        filler: mount.dir.path().join("filler"),
    };
    load_through_an_outage(&app, &mut fault).await;
    app.stop().await;
    drop(mount);
}

// ------------------------------------------------------------------------------------------
// The fault, the run and its checks.

/// The database is unavailable at least this long.
const OUTAGE: Duration = Duration::from_secs(5);
/// Answers to batches committed just before the fault may still be on their way this long
/// after it; none may come later while it lasts.
const ANSWER_GRACE: Duration = Duration::from_secs(1);
/// Packets answered before the fault.
const WARMUP_ACKS: usize = 1_000;
/// The small file system of the full-disk test.
const SMALL_FS_SIZE: &str = "256m";

/// How the database is made unavailable.
enum Fault {
    /// `ALLOW_CONNECTIONS false` and every connection to the database terminated (the shared
    /// PostgreSQL server keeps running for the other tests).
    PgRefuse { admin: sqlx::PgPool, name: String },
    /// A second connection in `BEGIN EXCLUSIVE`.
    SqliteLock {
        url: String,
        locker: Option<sqlx::SqliteConnection>,
    },
    /// A file that takes every free byte of the database's file system.
    DiskFull { filler: PathBuf },
}

impl Fault {
    /// Makes the database unavailable; returns when it is, from which moment on nothing may be
    /// answered (after [`ANSWER_GRACE`]).
    async fn begin(&mut self, app: &TestApp) -> Instant {
        match self {
            Fault::PgRefuse { admin, name } => {
                sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .execute(&*admin)
                    .await
                    .expect("refuse connections");
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&*name)
                .execute(&*admin)
                .await
                .expect("cut the connections");
                Instant::now()
            }
            Fault::SqliteLock { url, locker } => {
                use std::str::FromStr;
                // Waits for the node's transaction in progress, if any, to commit.
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .expect("SQLite URL")
                    .busy_timeout(Duration::from_secs(30));
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .expect("second SQLite connection");
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .expect("take the write lock");
                *locker = Some(conn);
                Instant::now()
            }
            Fault::DiskFull { filler } => {
                let errors_before = store_errors(app).await;
                fill(filler);
                // The commit that is still in the space left may succeed; from the first one
                // that fails, none may.
                assert!(
                    eventually(Duration::from_secs(30), || async {
                        store_errors(app).await > errors_before
                    })
                    .await,
                    "the writer never failed on the full file system"
                );
                Instant::now()
            }
        }
    }

    /// Makes the database available again.
    async fn end(&mut self) {
        match self {
            Fault::PgRefuse { admin, name } => {
                sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .execute(&*admin)
                    .await
                    .expect("accept connections again");
            }
            Fault::SqliteLock { locker, .. } => {
                let mut conn = locker.take().expect("the lock is held");
                sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("release the write lock");
                conn.close().await.expect("close the second connection");
            }
            Fault::DiskFull { filler } => {
                std::fs::remove_file(&*filler).expect("delete the filler file");
            }
        }
    }
}

/// Writes `path` until the file system has no byte left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create the filler file");
    let chunk = vec![0u8; 1 << 20];
    let mut size = chunk.len();
    while size > 0 {
        match file.write(&chunk[..size]) {
            Ok(0) => size /= 2,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => size /= 2,
            Err(e) => panic!("filling the file system: {e}"),
        }
    }
}

/// A tmpfs of [`SMALL_FS_SIZE`] mounted on a temporary directory, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={SMALL_FS_SIZE},mode=0700"))
            .arg("radacctd-test")
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} ({status}): the full-disk test runs as root, as CI does",
            dir.path().display()
        );
        Self { dir }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy, so that a failed test still unmounts it while something has a file open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The fleet's load, the fault in the middle of it, and every check.
async fn load_through_an_outage(app: &TestApp, fault: &mut Fault) {
    let http = reqwest::Client::new();
    let health = || {
        let (http, url) = (http.clone(), app.url("/healthz"));
        async move {
            http.get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let fleet = Fleet::start(app.radius).await;
    let t0 = i64::from(fleet.t0);
    assert!(
        eventually(Duration::from_secs(60), || async {
            fleet.acked() >= WARMUP_ACKS
        })
        .await,
        "only {} packets answered before the fault",
        fleet.acked()
    );
    assert_eq!(health().await, 200);
    let drops_before = queue_full(app).await;

    let blocked = fault.begin(app).await;
    let acked_at_block = fleet.acked();
    assert!(
        eventually(Duration::from_secs(15), || async { health().await == 503 }).await,
        "/healthz did not report the outage"
    );
    // Held at least OUTAGE, and until the writer queue has overflowed.
    let overflowed = eventually(Duration::from_secs(60), || async {
        blocked.elapsed() >= OUTAGE && queue_full(app).await > drops_before
    })
    .await;
    assert!(
        overflowed,
        "the writer queue did not overflow during the outage ({} sessions started)",
        fleet.started()
    );
    let unblocked = Instant::now();
    let answered_while_blocked = fleet.acked_between(blocked + ANSWER_GRACE, unblocked);
    assert_eq!(
        answered_while_blocked, 0,
        "packets were answered while the database was unavailable"
    );
    let drops_during = queue_full(app).await - drops_before;
    // From here on the fleet only retransmits and finishes the sessions it has: enough to show
    // that ingest resumes, and the test stays short.
    fleet.stop_opening();
    fault.end().await;

    assert!(
        eventually(Duration::from_secs(30), || async {
            fleet.acked_between(unblocked, Instant::now()) > 0
        })
        .await,
        "ingest did not resume by itself"
    );
    let resumed = fleet.first_ack_after(unblocked).expect("an answer after");
    assert!(
        eventually(Duration::from_secs(15), || async { health().await == 200 }).await,
        "/healthz did not recover"
    );
    println!(
        "{:?}: {acked_at_block} answered before the fault, unavailable {:.1} s, {} answered in \
         the first {} ms of it, {drops_during} queue_full drops meanwhile, resumed {} ms after \
         it ended",
        app.db.backend,
        unblocked.duration_since(blocked).as_secs_f64(),
        fleet.acked_between(blocked, blocked + ANSWER_GRACE),
        ANSWER_GRACE.as_millis(),
        resumed.duration_since(unblocked).as_millis(),
    );

    // The fleet stops opening sessions and finishes the ones it has (retransmitting what was
    // dropped): every packet is answered in the end.
    let (acks, started) = fleet.finish(Duration::from_secs(180)).await;
    let rows: HashMap<String, Session> = app
        .sessions()
        .await
        .into_iter()
        .map(|s| (s.acctsessionid.clone(), s))
        .collect();
    let problems = answered_but_missing(&acks, &rows, t0);
    assert!(
        problems.is_empty(),
        "{} answered packets are not in radacct (first 10):\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n")
    );
    assert_eq!(acks.len(), started as usize * usize::from(STEPS));
    assert_eq!(rows.len(), started as usize, "one row per session");

    let drops = dropped_by_reason(&app.metrics_text().await);
    println!("{:?}: {started} sessions, drops {drops:?}", app.db.backend);
    assert!(drops["queue_full"] >= drops_before + drops_during);
    assert_eq!(drops["store_rejected"], 0);
}

/// Every answered packet whose effect is not in its row: the Start's `connectinfo_start`, the
/// Interim-Update's `acctinterval` (which the Stop leaves alone), the Stop's stop time and cause.
fn answered_but_missing(acks: &[Ack], rows: &HashMap<String, Session>, t0: i64) -> Vec<String> {
    let mut highest: HashMap<u32, u8> = HashMap::new();
    for ack in acks {
        let h = highest.entry(ack.session).or_default();
        *h = (*h).max(ack.step);
    }
    let mut problems = Vec::new();
    for (session, step) in highest {
        let sid = session_id(session);
        let Some(row) = rows.get(&sid) else {
            problems.push(format!("{sid}: no row, answered up to step {step}"));
            continue;
        };
        let ok = row.acctstarttime == Some(t0)
            && row.connectinfo_start.as_deref() == Some("start")
            && (step < 1 || row.acctinterval == Some(i64::from(STEP_SECS)))
            && (step < 2
                || (row.acctstoptime == Some(t0 + 2 * i64::from(STEP_SECS))
                    && row.acctterminatecause.as_deref() == Some("User-Request")));
        if !ok {
            problems.push(format!("{sid}: answered up to step {step}, row {row:?}"));
        }
    }
    problems
}

async fn queue_full(app: &TestApp) -> u64 {
    dropped_by_reason(&app.metrics_text().await)["queue_full"]
}

/// `radacctd_store_errors_total` (failed transactions, retried).
async fn store_errors(app: &TestApp) -> u64 {
    app.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("radacctd_store_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("radacctd_store_errors_total in /metrics")
}

// ------------------------------------------------------------------------------------------
// The NAS fleet.

/// NAS sockets: each is one NAS (its own source port and identifier space, so at most 256
/// packets outstanding). Together they can have more outstanding than the writer queue holds
/// (128 x 256 > 16,384 + the batches being committed), so an outage overflows it.
const NAS_SOCKETS: usize = 128;
/// New sessions per second over the fleet while it opens sessions.
const ARRIVALS_PER_SECOND: f64 = 5_000.0;
/// How often each NAS opens the sessions that became due and looks for retransmits.
const TICK: Duration = Duration::from_millis(10);
/// A NAS retransmits after this long without an answer (NASes commonly wait 3 to 5 s; a
/// shorter wait only burns CPU on retransmits of packets still queued).
const RETRANSMIT: Duration = Duration::from_secs(3);
/// Packets per session: Start, Interim-Update, Stop, each sent once the previous is answered.
const STEPS: u8 = 3;
/// Simulated seconds between a session's packets.
const STEP_SECS: u32 = 60;

/// One answered packet.
#[derive(Debug, Clone, Copy)]
struct Ack {
    session: u32,
    step: u8,
    at: Instant,
}

type AckLog = Arc<Mutex<Vec<Ack>>>;

/// Sessions arrive at [`ARRIVALS_PER_SECOND`] whether or not the node answers (open loop); a
/// NAS with 256 packets outstanding keeps further sessions waiting until an identifier frees up.
struct Fleet {
    /// Every session's Start time (its Event-Timestamp); the other packets follow STEP_SECS apart.
    t0: u32,
    log: AckLog,
    /// Cancelled: no new sessions.
    arrivals: CancellationToken,
    tasks: JoinSet<u32>,
    started: Arc<std::sync::atomic::AtomicU32>,
}

fn session_id(session: u32) -> String {
    format!("o{session}")
}

impl Fleet {
    async fn start(server: SocketAddr) -> Self {
        // Event times lie ahead of the clock, so that the reaper leaves the sessions alone.
        let t0 = (chrono::Utc::now().timestamp() + 600) as u32;
        let mut fleet = Self {
            t0,
            log: Arc::default(),
            arrivals: CancellationToken::new(),
            tasks: JoinSet::new(),
            started: Arc::default(),
        };
        for index in 0..NAS_SOCKETS {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            socket.connect(server).await.expect("connect");
            let nas = FleetNas {
                index: index as u32,
                socket,
                t0,
                log: fleet.log.clone(),
                started: fleet.started.clone(),
            };
            fleet.tasks.spawn(nas.run(fleet.arrivals.clone()));
        }
        fleet
    }

    fn acked(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn started(&self) -> u32 {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers that arrived in `[from, to)`.
    fn acked_between(&self, from: Instant, to: Instant) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.at >= from && a.at < to)
            .count()
    }

    fn first_ack_after(&self, from: Instant) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.at)
            .filter(|&at| at >= from)
            .min()
    }

    fn stop_opening(&self) {
        self.arrivals.cancel();
    }

    /// Stops opening sessions and waits until every packet of every session is answered;
    /// returns the answers and how many sessions there were.
    async fn finish(mut self, within: Duration) -> (Vec<Ack>, u32) {
        self.arrivals.cancel();
        let mut started = 0;
        let done = tokio::time::timeout(within, async {
            while let Some(r) = self.tasks.join_next().await {
                started += r.expect("a NAS task panicked");
            }
        })
        .await;
        let acks = self.log.lock().unwrap().clone();
        assert!(
            done.is_ok(),
            "the fleet's sessions were not all answered within {} s ({} answers)",
            within.as_secs(),
            acks.len()
        );
        (acks, started)
    }
}

/// A packet waiting for its answer.
struct Outstanding {
    session: u32,
    step: u8,
    bytes: Vec<u8>,
    sent: Instant,
}

/// One NAS of the fleet.
struct FleetNas {
    index: u32,
    socket: UdpSocket,
    t0: u32,
    log: AckLog,
    started: Arc<std::sync::atomic::AtomicU32>,
}

impl FleetNas {
    /// Opens its share of the sessions until `arrivals` is cancelled, then finishes them;
    /// returns how many it opened.
    async fn run(self, arrivals: CancellationToken) -> u32 {
        let rate = ARRIVALS_PER_SECOND / NAS_SOCKETS as f64;
        let began = Instant::now();
        let mut opened: u32 = 0;
        let mut closed_at: Option<u32> = None;
        let mut free: VecDeque<u8> = (0..=u8::MAX).collect();
        let mut outstanding: HashMap<u8, Outstanding> = HashMap::new();
        let mut buf = [0u8; 4096];
        let mut next_tick = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_tick {
                let due = match closed_at {
                    Some(n) => n,
                    None if arrivals.is_cancelled() => *closed_at.insert(opened),
                    None => (began.elapsed().as_secs_f64() * rate) as u32,
                };
                while opened < due {
                    let Some(id) = free.pop_front() else { break };
                    let session = self.index + opened * NAS_SOCKETS as u32;
                    opened += 1;
                    self.started
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.send(&mut outstanding, id, session, 0).await;
                }
                if closed_at == Some(opened) && outstanding.is_empty() {
                    return opened;
                }
                let now = Instant::now();
                for p in outstanding.values_mut() {
                    if now.duration_since(p.sent) >= RETRANSMIT {
                        self.socket.send(&p.bytes).await.expect("send");
                        p.sent = now;
                    }
                }
                next_tick += TICK;
            }
            let received = tokio::select! {
                r = self.socket.recv(&mut buf) => r,
                _ = tokio::time::sleep_until(next_tick) => continue,
            };
            let Ok(n) = received else { continue };
            let answer = &buf[..n];
            let Some(&id) = answer.get(1) else { continue };
            let authentic = outstanding
                .get(&id)
                .is_some_and(|p| is_accounting_response(answer, &p.bytes, SECRET.as_bytes()));
            if !authentic {
                continue;
            }
            let p = outstanding.remove(&id).expect("checked above");
            self.log.lock().unwrap().push(Ack {
                session: p.session,
                step: p.step,
                at: Instant::now(),
            });
            if p.step + 1 < STEPS {
                self.send(&mut outstanding, id, p.session, p.step + 1).await;
            } else {
                free.push_back(id);
            }
        }
    }

    async fn send(
        &self,
        outstanding: &mut HashMap<u8, Outstanding>,
        id: u8,
        session: u32,
        step: u8,
    ) {
        let bytes = self.packet(session, step, id);
        self.socket.send(&bytes).await.expect("send");
        outstanding.insert(
            id,
            Outstanding {
                session,
                step,
                bytes,
                sent: Instant::now(),
            },
        );
    }

    fn packet(&self, session: u32, step: u8, id: u8) -> Vec<u8> {
        let status_type = match step {
            0 => status::START,
            1 => status::INTERIM_UPDATE,
            _ => status::STOP,
        };
        let secs = STEP_SECS * u32::from(step);
        let r = Request::accounting(status_type, SECRET.as_bytes(), id)
            .string(dict::USER_NAME, &format!("outage-user-{}", session % 100))
            .string(dict::ACCT_SESSION_ID, &session_id(session))
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
            .u32(dict::NAS_PORT, session)
            .u32(dict::EVENT_TIMESTAMP, self.t0 + secs);
        match step {
            0 => r.string(dict::CONNECT_INFO, "start"),
            1 => r
                .u32(dict::ACCT_SESSION_TIME, secs)
                .u32(dict::ACCT_INPUT_OCTETS, 1000),
            _ => r
                .u32(dict::ACCT_SESSION_TIME, secs)
                .u32(dict::ACCT_INPUT_OCTETS, 2000)
                .u32(dict::ACCT_TERMINATE_CAUSE, 1),
        }
        .encode()
    }
}

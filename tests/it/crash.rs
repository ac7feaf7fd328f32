//! A crash under load (SPEC §3: "it never answers for what it did not store"): the radacctd
//! binary takes a sustained stream of accounting packets from a NAS fleet in the test, which
//! logs every packet it gets an authentic answer for; the process is killed with SIGKILL in
//! the middle; restarted on the same database it must hold the effect of every answered
//! packet. Then the whole sequence is sent again (as NASes retransmit after a failover) and
//! the table must equal the table of a run of the same sequence, without a crash, into a fresh
//! database.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use radacctd::radius::builder::{is_accounting_response, Request};
use radacctd::radius::dict::{self, status};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::both_backends;
use crate::cli::Server;
use crate::harness::{radacct_at, Backend, Session, TestDb, SECRET};

both_backends!(
    every_answered_packet_survives_kill_9_and_a_replay_gives_the_table_of_a_run_without_crash
);

/// Sessions in the sequence, each Start, Interim-Update, Interim-Update, Stop.
const SESSIONS: usize = 2_000;
const STEPS: usize = 4;
/// The process is killed once this many packets are answered (of SESSIONS x STEPS).
const KILL_AFTER: usize = 3_000;
/// NAS sockets, and sessions each keeps going at once (packets of one session strictly in
/// order: the next only after the previous is answered).
const SOCKETS: usize = 4;
const WINDOW: usize = 32;
/// A NAS retransmits after this long without an answer.
const RETRANSMIT: Duration = Duration::from_secs(1);
/// Simulated seconds between a session's packets.
const STEP_SECS: u32 = 60;

/// The packets of the sequence. Event-Timestamps lie ahead of the clock, so no session of the
/// test looks stale to the reaper, and no column depends on when a packet arrived.
struct Plan {
    t0: u32,
}

impl Plan {
    fn time(&self, step: usize) -> u32 {
        self.t0 + STEP_SECS * step as u32
    }

    fn packet(&self, session: usize, step: usize, identifier: u8) -> Vec<u8> {
        let status_type = match step {
            0 => status::START,
            3 => status::STOP,
            _ => status::INTERIM_UPDATE,
        };
        let mut r = Request::accounting(status_type, SECRET.as_bytes(), identifier)
            .string(dict::USER_NAME, &format!("crash-user-{}", session % 50))
            .string(dict::ACCT_SESSION_ID, &format!("crash-{session}"))
            .ipv4(
                dict::NAS_IP_ADDRESS,
                [192, 0, 2, 1 + (session % 5) as u8].into(),
            )
            .u32(dict::NAS_PORT, session as u32)
            .u32(dict::EVENT_TIMESTAMP, self.time(step));
        match step {
            0 => {
                r = r
                    .string(
                        dict::CALLING_STATION_ID,
                        &format!("02-00-00-00-{session:04x}"),
                    )
                    .string(dict::CONNECT_INFO, "start")
                    .ipv4(
                        dict::FRAMED_IP_ADDRESS,
                        [100, 64, (session / 250) as u8, (session % 250) as u8].into(),
                    )
            }
            1 | 2 => {
                r = r
                    .u32(dict::ACCT_SESSION_TIME, STEP_SECS * step as u32)
                    .u32(dict::ACCT_INPUT_OCTETS, 1000 * step as u32)
                    .u32(dict::ACCT_OUTPUT_OCTETS, 2000 * step as u32)
                    .ipv4(
                        dict::FRAMED_IP_ADDRESS,
                        [100, 64, (session / 250) as u8, (session % 250) as u8].into(),
                    )
            }
            _ => {
                r = r
                    .u32(dict::ACCT_SESSION_TIME, STEP_SECS * 3)
                    .u32(dict::ACCT_INPUT_OCTETS, 3000)
                    .u32(dict::ACCT_OUTPUT_OCTETS, 6000)
                    .u32(dict::ACCT_TERMINATE_CAUSE, 1)
                    .string(dict::CONNECT_INFO, "stop")
            }
        }
        r.encode()
    }
}

/// Answered packets, `(session, step)`, in the order the answers came.
type AckLog = Arc<Mutex<Vec<(usize, usize)>>>;

/// One NAS socket: keeps WINDOW of its sessions going (sessions `i`, `i + SOCKETS`, ...),
/// each packet after the previous one's answer, retransmitting after RETRANSMIT, until all
/// are answered or `stop` is cancelled.
async fn nas(
    server: SocketAddr,
    plan: Arc<Plan>,
    index: usize,
    log: AckLog,
    stop: CancellationToken,
) {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind NAS socket");
    let mut waiting: Vec<usize> = (index..SESSIONS).step_by(SOCKETS).rev().collect();
    let mut free: Vec<u8> = (0..=255).collect();
    // identifier -> (session, step, datagram, last sent)
    let mut in_flight: HashMap<u8, (usize, usize, Vec<u8>, Instant)> = HashMap::new();
    let mut buf = [0u8; 4096];
    loop {
        while in_flight.len() < WINDOW {
            let Some(session) = waiting.pop() else { break };
            let id = free.pop().expect("fewer than 256 in flight");
            let bytes = plan.packet(session, 0, id);
            socket.send_to(&bytes, server).await.expect("send");
            in_flight.insert(id, (session, 0, bytes, Instant::now()));
        }
        if in_flight.is_empty() {
            return;
        }
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)) => r,
        };
        if let Ok(Ok((n, _))) = received {
            let answer = &buf[..n];
            let Some(id) = answer.get(1).copied() else {
                continue;
            };
            let Some((session, step, bytes, _)) = in_flight.get(&id) else {
                continue;
            };
            if !is_accounting_response(answer, bytes, SECRET.as_bytes()) {
                continue;
            }
            let (session, step) = (*session, *step);
            in_flight.remove(&id);
            log.lock().unwrap().push((session, step));
            if step + 1 < STEPS {
                let bytes = plan.packet(session, step + 1, id);
                socket.send_to(&bytes, server).await.expect("send");
                in_flight.insert(id, (session, step + 1, bytes, Instant::now()));
            } else {
                free.push(id);
            }
        }
        let now = Instant::now();
        for (_, _, bytes, sent) in in_flight.values_mut() {
            if now.duration_since(*sent) >= RETRANSMIT {
                socket.send_to(bytes, server).await.expect("send");
                *sent = now;
            }
        }
    }
}

/// Runs the NAS fleet against `server`; returns the answered packets once every packet is
/// answered or `stop` is cancelled.
fn fleet(
    server: SocketAddr,
    plan: &Arc<Plan>,
    log: &AckLog,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..SOCKETS {
        set.spawn(nas(server, plan.clone(), i, log.clone(), stop.clone()));
    }
    set
}

/// Sends the whole sequence to a running server and waits for every answer (at most 120 s).
async fn run_whole_sequence(server: &Server, plan: &Arc<Plan>) {
    let log: AckLog = Arc::default();
    let mut set = fleet(server.radius(), plan, &log, &CancellationToken::new());
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        while set.join_next().await.is_some() {}
    })
    .await;
    let answered = log.lock().unwrap().len();
    assert!(
        all.is_ok(),
        "only {answered} of {} packets answered within 120 s",
        SESSIONS * STEPS
    );
    assert_eq!(answered, SESSIONS * STEPS);
}

/// The rows by acctuniqueid, without radacctid (the order of inserts differs between runs).
fn by_unique_id(rows: Vec<Session>) -> BTreeMap<String, Session> {
    rows.into_iter()
        .map(|mut s| {
            s.radacctid = 0;
            (s.acctuniqueid.clone(), s)
        })
        .collect()
}

async fn every_answered_packet_survives_kill_9_and_a_replay_gives_the_table_of_a_run_without_crash(
    backend: Backend,
) {
    let plan = Arc::new(Plan {
        t0: (chrono::Utc::now().timestamp() + 600) as u32,
    });

    // The run with a crash: load, SIGKILL once KILL_AFTER packets are answered.
    let db = TestDb::new(backend).await;
    let server = Server::start_with(&db.url, &[]).await;
    let log: AckLog = Arc::default();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut set = fleet(server.radius(), &plan, &log, &stop);
    let deadline = Instant::now() + Duration::from_secs(60);
    while log.lock().unwrap().len() < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {} packets answered within 60 s",
            log.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let at_kill = log.lock().unwrap().len();
    let stderr = server.kill9().await;
    // Answers already on their way still count: they were sent before the process died.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    while set.join_next().await.is_some() {}
    let answered: Vec<(usize, usize)> = log.lock().unwrap().clone();
    println!(
        "{backend:?}: killed after {at_kill} answers ({} in all) in {:.1} s",
        answered.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        answered.len() < SESSIONS * STEPS,
        "the load was over before the kill"
    );

    // Restarted on the same database: every answered packet's effect is there.
    let server = Server::start_with(&db.url, &[]).await;
    let rows: HashMap<String, Session> = radacct_at(&db.url)
        .await
        .into_iter()
        .map(|s| (s.acctsessionid.clone(), s))
        .collect();
    let mut highest: BTreeMap<usize, usize> = BTreeMap::new();
    for &(session, step) in &answered {
        let h = highest.entry(session).or_default();
        *h = (*h).max(step);
    }
    let mut lost = Vec::new();
    for (&session, &step) in &highest {
        let sid = format!("crash-{session}");
        let Some(row) = rows.get(&sid) else {
            lost.push(format!("{sid}: no row (answered up to step {step})"));
            continue;
        };
        let t = i64::from(plan.time(step));
        let ok = row.acctupdatetime.is_some_and(|u| u >= t)
            && (step == 0 || row.acctinputoctets.is_some_and(|o| o >= 1000 * step as i64))
            && (step < 3 || row.acctstoptime == Some(t));
        if !ok {
            lost.push(format!("{sid}: answered up to step {step}, row {row:?}"));
        }
    }
    assert!(
        lost.is_empty(),
        "{backend:?}: {} answered packets lost in the crash:\n{}\n--- stderr before the kill\n{stderr}",
        lost.len(),
        lost.join("\n")
    );

    // The whole sequence again, then the same sequence into a fresh database without a crash.
    run_whole_sequence(&server, &plan).await;
    server.sigterm();
    let (exit, log_text) = server.exit().await;
    assert_eq!(exit.code(), Some(0), "{log_text}");
    let recovered = by_unique_id(radacct_at(&db.url).await);

    let clean_db = TestDb::new(backend).await;
    let clean = Server::start_with(&clean_db.url, &[]).await;
    run_whole_sequence(&clean, &plan).await;
    clean.sigterm();
    let (exit, log_text) = clean.exit().await;
    assert_eq!(exit.code(), Some(0), "{log_text}");
    let reference = by_unique_id(radacct_at(&clean_db.url).await);

    assert_eq!(
        reference.len(),
        SESSIONS,
        "one row per session without a crash"
    );
    assert_eq!(
        recovered.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "the same sessions"
    );
    let differing: Vec<String> = reference
        .iter()
        .filter(|(uid, row)| recovered.get(*uid) != Some(row))
        .take(5)
        .map(|(uid, row)| {
            format!(
                "without crash {row:?}\nafter crash   {:?}",
                recovered.get(uid)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{backend:?}: rows differ from the run without a crash (first 5):\n{}",
        differing.join("\n")
    );
    println!(
        "{backend:?}: crash, recovery, replay and reference run in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db.drop_db().await;
    clean_db.drop_db().await;
}

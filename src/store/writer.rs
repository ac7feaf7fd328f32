//! The one writer: takes accounting jobs from a bounded queue, commits them in batches (one
//! transaction per batch), and only then has the listener answer every packet of the batch.
//!
//! Batching is adaptive: the writer takes whatever has queued while the previous commit ran
//! (at most [`MAX_BATCH`]), so a lone packet is committed at once and a busy NAS fleet gets
//! large batches. When the database fails, the writer keeps the batch and retries it with
//! backoff (and `/healthz` says 503 until a commit succeeds again); the queue fills, the
//! listener drops what does not fit (counted), and no NAS is answered for anything not
//! committed. An event the database refuses for good is isolated by
//! retrying the batch one event at a time, logged, counted and never answered.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::events::{changes, EventBus};
use crate::metrics::{DropReason, Metrics};
use crate::radius::accounting::Event;
use crate::radius::listener::Reply;

/// Jobs waiting for the writer. When full, new packets are dropped (the NAS retransmits).
pub const QUEUE_CAPACITY: usize = 16_384;
/// Events per transaction at most.
pub const MAX_BATCH: usize = 2_048;
/// A commit this slow is logged (debug): where a latency spike of the answers comes from.
const SLOW_COMMIT: Duration = Duration::from_millis(50);
/// First and longest wait between retries of a failed batch.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// After shutdown is requested, how long the writer keeps retrying failing batches before it
/// gives up (their packets stay unanswered; the NAS will resend them to whoever runs next). One
/// period for all the batches waiting, not one each: a queue full of them during an outage
/// would otherwise hold the exit for minutes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One packet to store and answer.
#[derive(Debug)]
pub struct Job {
    pub event: Event,
    pub reply: Reply,
}

/// The sending half, held by the listeners.
pub type JobSender = mpsc::Sender<Job>;

pub fn queue() -> (JobSender, mpsc::Receiver<Job>) {
    mpsc::channel(QUEUE_CAPACITY)
}

/// Runs until every sender is gone and the queue is drained (listeners stop first on shutdown,
/// so everything received is committed and answered).
///
/// Up to [`Store::pipeline_depth`] batches are committed at once, each in its own transaction on
/// its own connection, so the database works on one batch while the next one is sent. Batches in
/// flight together never touch the same session: an event whose session is in a batch still in
/// flight waits (with every later event of that session), so each session's events still apply in
/// arrival order. Accounting-On/Off closes every session of one NAS: it waits until no batch in
/// flight holds anything of that NAS, and that NAS's later events wait until it has committed;
/// other NASes go on meanwhile (closing 100,000 sessions takes seconds on PostgreSQL).
pub async fn run(
    store: Store,
    domain: String,
    mut rx: mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
    events: EventBus,
    shutdown: CancellationToken,
) {
    let depth = store.pipeline_depth();
    let ctx = Arc::new(Committer {
        store,
        domain,
        metrics,
        events,
        shutdown,
        grace_ends: std::sync::OnceLock::new(),
    });
    // Received, not yet in a batch, in arrival order.
    let mut pending: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut claims_of: HashMap<task::Id, Claims> = HashMap::new();
    let mut busy = Busy::default();
    let mut open = true;
    loop {
        // Start every batch that may start now.
        while in_flight.len() < depth {
            let Some(batch) = take_batch(&mut pending, &busy) else {
                break;
            };
            busy.claim(&batch.claims);
            let ctx = ctx.clone();
            let handle = in_flight.spawn(async move { ctx.commit_and_answer(batch.jobs).await });
            claims_of.insert(handle.id(), batch.claims);
        }
        ctx.metrics.set_queue_depth(rx.len() + pending.len());
        if !open && pending.is_empty() && in_flight.is_empty() {
            break;
        }
        let room = MAX_BATCH.saturating_sub(pending.len());
        tokio::select! {
            n = rx.recv_many(&mut pending, room), if open && room > 0 => {
                if n == 0 {
                    open = false;
                }
            }
            Some(done) = in_flight.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        // Its packets stay unanswered (the NAS resends them); its sessions are
                        // free again either way.
                        tracing::error!(error = %e, "a commit task failed");
                        e.id()
                    }
                };
                if let Some(claims) = claims_of.remove(&id) {
                    busy.release(&claims);
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

impl AsRef<Event> for Job {
    fn as_ref(&self) -> &Event {
        &self.event
    }
}

/// Jobs that go to the database together.
struct Batch<J> {
    jobs: Vec<J>,
    claims: Claims,
}

/// What one batch touches, so that batches in flight together never race each other.
#[derive(Debug, Default, PartialEq)]
struct Claims {
    /// Hashes of its sessions' `acctuniqueid`s.
    sessions: HashSet<u64>,
    /// Every NAS it holds an event of.
    nases: HashSet<String>,
    /// The NASes it sends Accounting-On/Off for (it closes their sessions).
    reboots: HashSet<String>,
}

/// The claims of every batch in flight, together.
#[derive(Debug, Default)]
struct Busy {
    /// Disjoint across batches, so one set is enough.
    sessions: HashSet<u64>,
    /// How many batches in flight hold an event of each NAS.
    nases: HashMap<String, usize>,
    /// NASes with an Accounting-On/Off in flight.
    rebooting: HashSet<String>,
}

impl Busy {
    fn claim(&mut self, claims: &Claims) {
        self.sessions.extend(&claims.sessions);
        for nas in &claims.nases {
            *self.nases.entry(nas.clone()).or_default() += 1;
        }
        self.rebooting.extend(claims.reboots.iter().cloned());
    }

    fn release(&mut self, claims: &Claims) {
        for key in &claims.sessions {
            self.sessions.remove(key);
        }
        for nas in &claims.nases {
            if let Some(n) = self.nases.get_mut(nas) {
                *n -= 1;
                if *n == 0 {
                    self.nases.remove(nas);
                }
            }
        }
        for nas in &claims.reboots {
            self.rebooting.remove(nas);
        }
    }
}

/// Takes from `pending`, in order, the jobs that may be committed now: at most [`MAX_BATCH`];
/// none of a session in flight or of a NAS whose Accounting-On/Off is in flight or waiting; an
/// Accounting-On/Off only when nothing of its NAS is in flight or waiting before it, and then in
/// a batch of its own: its close can take seconds, and events of other NASes that shared its
/// transaction would wait for it. Whatever waits keeps its place, and so does everything after
/// it that depends on it.
fn take_batch<J: AsRef<Event>>(pending: &mut Vec<J>, busy: &Busy) -> Option<Batch<J>> {
    if pending.is_empty() {
        return None;
    }
    let mut batch = Batch {
        jobs: Vec::with_capacity(pending.len()),
        claims: Claims::default(),
    };
    // Sessions with a job left waiting: their later jobs wait too.
    let mut waiting_sessions: HashSet<u64> = HashSet::new();
    // NASes with a job left waiting: a later Accounting-On/Off of theirs waits too.
    let mut waiting_nases: HashSet<String> = HashSet::new();
    // NASes whose Accounting-On/Off waits: everything later of theirs waits too.
    let mut waiting_reboots: HashSet<String> = HashSet::new();
    let mut kept = Vec::with_capacity(pending.len());
    // An Accounting-On/Off was taken: the batch is closed.
    let mut alone = false;
    for job in pending.drain(..) {
        if alone || batch.jobs.len() == MAX_BATCH {
            kept.push(job);
            continue;
        }
        let go = match job.as_ref() {
            Event::Session(e) => {
                let key = session_key(&e.uid);
                let wait = waiting_sessions.contains(&key)
                    || busy.sessions.contains(&key)
                    || waiting_reboots.contains(&e.nas)
                    || busy.rebooting.contains(&e.nas);
                if wait {
                    waiting_sessions.insert(key);
                    waiting_nases.insert(e.nas.clone());
                } else {
                    batch.claims.sessions.insert(key);
                    batch.claims.nases.insert(e.nas.clone());
                }
                !wait
            }
            Event::NasReboot(r) => {
                let wait = !batch.jobs.is_empty()
                    || waiting_nases.contains(&r.nas)
                    || busy.nases.contains_key(&r.nas);
                if wait {
                    waiting_nases.insert(r.nas.clone());
                    waiting_reboots.insert(r.nas.clone());
                } else {
                    batch.claims.nases.insert(r.nas.clone());
                    batch.claims.reboots.insert(r.nas.clone());
                    alone = true;
                }
                !wait
            }
        };
        if go {
            batch.jobs.push(job);
        } else {
            kept.push(job);
        }
    }
    *pending = kept;
    (!batch.jobs.is_empty()).then_some(batch)
}

/// A session's key for the in-flight check. Two sessions sharing a hash only wait for each other.
fn session_key(acctuniqueid: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    acctuniqueid.hash(&mut hasher);
    hasher.finish()
}

enum Outcome {
    Committed,
    /// A permanent error: the batch holds a value the database will never accept.
    Rejected,
    /// The database stayed down past the shutdown grace period.
    GaveUp,
}

/// What a commit task needs.
struct Committer {
    store: Store,
    domain: String,
    metrics: Arc<Metrics>,
    events: EventBus,
    shutdown: CancellationToken,
    /// When the retries end, set by the first commit that fails after shutdown.
    grace_ends: std::sync::OnceLock<Instant>,
}

impl Committer {
    /// Commits a batch, then answers its packets; isolates an event the database refuses.
    async fn commit_and_answer(&self, mut jobs: Vec<Job>) {
        let batch: Vec<&Event> = jobs.iter().map(|j| &j.event).collect();
        let outcome = self.commit_with_retry(&batch).await;
        drop(batch);
        match outcome {
            Outcome::Committed => {
                if self.store.publishes_locally() {
                    self.events.publish(changes(jobs.iter().map(|j| &j.event)));
                }
                for job in jobs.drain(..) {
                    job.reply.send(&self.metrics, &job.event);
                }
            }
            Outcome::Rejected => {
                // Find the event(s) the database refuses: commit one at a time.
                for job in jobs.drain(..) {
                    match self.commit_with_retry(&[&job.event]).await {
                        Outcome::Committed => {
                            if self.store.publishes_locally() {
                                self.events.publish(changes([&job.event]));
                            }
                            job.reply.send(&self.metrics, &job.event)
                        }
                        Outcome::Rejected => {
                            tracing::error!(event = ?job.event, "database refused an accounting event; not answered");
                            job.reply
                                .drop_unanswered(&self.metrics, DropReason::StoreRejected);
                        }
                        Outcome::GaveUp => job
                            .reply
                            .drop_unanswered(&self.metrics, DropReason::ShuttingDown),
                    }
                }
            }
            Outcome::GaveUp => {
                for job in jobs.drain(..) {
                    job.reply
                        .drop_unanswered(&self.metrics, DropReason::ShuttingDown);
                }
            }
        }
    }

    async fn commit_with_retry(&self, events: &[&Event]) -> Outcome {
        let Committer {
            store,
            domain,
            metrics,
            shutdown,
            ..
        } = self;
        let mut delay = RETRY_MIN;
        let mut logged = false;
        loop {
            if self.grace_ended() {
                tracing::error!(
                    size = events.len(),
                    "database still failing at shutdown; leaving packets unanswered"
                );
                return Outcome::GaveUp;
            }
            let started = Instant::now();
            match store.apply(events, domain).await {
                Ok(()) => {
                    let took = started.elapsed();
                    metrics.batch_committed(events.len(), took.as_secs_f64());
                    if took >= SLOW_COMMIT {
                        tracing::debug!(
                            ms = took.as_millis() as u64,
                            size = events.len(),
                            "slow commit"
                        );
                    }
                    metrics.set_store_failing(false);
                    if logged {
                        tracing::info!("database is back; accounting resumed");
                    }
                    return Outcome::Committed;
                }
                Err(e) if !e.is_transient() => {
                    metrics.store_error();
                    if events.len() > 1 {
                        tracing::warn!(error = %e, size = events.len(), "batch refused; retrying its events one by one");
                    } else {
                        tracing::error!(error = %e, "database refused an event");
                    }
                    return Outcome::Rejected;
                }
                Err(e) => {
                    metrics.store_error();
                    metrics.set_store_failing(true);
                    if !logged {
                        tracing::error!(error = %e, "cannot commit accounting; holding the batch and retrying (packets are not answered meanwhile)");
                        logged = true;
                    }
                }
            }
            if shutdown.is_cancelled() {
                // The next turn of the loop gives up once the period is over.
                self.grace_ends
                    .get_or_init(|| Instant::now() + SHUTDOWN_GRACE);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    /// Whether shutdown's grace period for a failing database has run out: every batch still
    /// waiting then gives up without another attempt.
    fn grace_ended(&self) -> bool {
        self.grace_ends
            .get()
            .is_some_and(|end| Instant::now() >= *end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::accounting::NasReboot;
    use crate::radius::accounting::SessionKind::{Interim, Start, Stop};
    use crate::store::tests::ev;

    fn reboot() -> Event {
        reboot_of("127.0.0.1")
    }

    fn reboot_of(nas: &str) -> Event {
        Event::NasReboot(NasReboot {
            nas: nas.into(),
            t: 1,
            cause: "NAS-Reboot".into(),
        })
    }

    /// A session event of another NAS than `ev`'s 127.0.0.1.
    fn ev_of(nas: &str, kind: crate::radius::accounting::SessionKind, uid: &str) -> Event {
        let mut e = ev(kind, uid);
        if let Event::Session(s) = &mut e {
            s.nas = nas.into();
        }
        e
    }

    fn uids(events: &[Event]) -> Vec<&str> {
        events
            .iter()
            .map(|e| match e {
                Event::Session(s) => s.uid.as_str(),
                Event::NasReboot(_) => "reboot",
            })
            .collect()
    }

    fn in_flight(batches: &[&Claims]) -> Busy {
        let mut busy = Busy::default();
        for claims in batches {
            busy.claim(claims);
        }
        busy
    }

    #[test]
    fn with_nothing_in_flight_everything_goes_in_one_batch() {
        let mut pending = vec![
            ev(Start, "a"),
            ev(Interim, "a"),
            ev_of("192.0.2.9", Start, "x"),
            ev(Stop, "b"),
        ];
        let batch = take_batch(&mut pending, &Busy::default()).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["a", "a", "x", "b"]);
        assert!(batch.claims.reboots.is_empty());
        assert!(pending.is_empty());
    }

    #[test]
    fn an_accounting_on_goes_in_a_batch_of_its_own() {
        let mut pending = vec![
            ev(Start, "a"),
            reboot(),
            ev(Stop, "b"),
            ev_of("192.0.2.9", Start, "x"),
        ];
        let before = take_batch(&mut pending, &Busy::default()).expect("a batch");
        assert_eq!(
            uids(&before.jobs),
            ["a", "x"],
            "its NAS's later events wait"
        );
        assert_eq!(uids(&pending), ["reboot", "b"]);
        let busy = in_flight(&[&before.claims]);
        assert!(
            take_batch(&mut pending, &busy).is_none(),
            "waits for its NAS"
        );

        let mut pending = vec![reboot(), ev_of("192.0.2.9", Start, "y"), ev(Stop, "b")];
        let storm = take_batch(&mut pending, &Busy::default()).expect("a batch");
        assert_eq!(uids(&storm.jobs), ["reboot"]);
        assert_eq!(
            storm.claims.reboots,
            HashSet::from(["127.0.0.1".to_owned()])
        );
        let batch = take_batch(&mut pending, &in_flight(&[&storm.claims])).expect("a batch");
        assert_eq!(
            uids(&batch.jobs),
            ["y"],
            "another NAS does not wait for the close"
        );
        assert_eq!(uids(&pending), ["b"]);
    }

    #[test]
    fn a_session_in_flight_waits_with_all_its_later_events() {
        let first = take_batch(&mut vec![ev(Start, "a")], &Busy::default()).expect("a batch");
        let mut pending = vec![
            ev(Interim, "a"),
            ev(Start, "b"),
            ev(Stop, "a"),
            ev(Stop, "b"),
        ];
        let batch = take_batch(&mut pending, &in_flight(&[&first.claims])).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["b", "b"]);
        assert_eq!(batch.claims.sessions, HashSet::from([session_key("b")]));
        assert!(batch.claims.reboots.is_empty());
        assert_eq!(uids(&pending), ["a", "a"], "kept, in arrival order");
    }

    #[test]
    fn an_accounting_on_waits_for_its_nas_in_flight_and_holds_back_that_nas_only() {
        let first = take_batch(&mut vec![ev(Start, "a")], &Busy::default()).expect("a batch");
        let busy = in_flight(&[&first.claims]);
        let mut pending = vec![
            ev(Start, "b"),
            reboot(),
            ev(Start, "c"),
            ev_of("192.0.2.9", Start, "other"),
        ];
        let batch = take_batch(&mut pending, &busy).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["b", "other"], "another NAS goes on");
        assert_eq!(uids(&pending), ["reboot", "c"]);
        let busy = in_flight(&[&first.claims, &batch.claims]);
        assert!(take_batch(&mut pending, &busy).is_none());
        let batch = take_batch(&mut pending, &Busy::default()).expect("once its NAS is idle");
        assert_eq!(uids(&batch.jobs), ["reboot"]);
        assert_eq!(uids(&pending), ["c"]);
    }

    #[test]
    fn while_an_accounting_on_is_in_flight_only_other_nases_go() {
        let storm = take_batch(&mut vec![reboot()], &Busy::default()).expect("a batch");
        let busy = in_flight(&[&storm.claims]);
        let mut pending = vec![
            ev(Start, "a"),
            ev_of("192.0.2.9", Start, "other"),
            ev(Stop, "b"),
            ev_of("192.0.2.9", Stop, "other"),
        ];
        let batch = take_batch(&mut pending, &busy).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["other", "other"]);
        assert_eq!(uids(&pending), ["a", "b"]);
        let mut busy = in_flight(&[&storm.claims, &batch.claims]);
        busy.release(&storm.claims);
        let batch = take_batch(&mut pending, &busy).expect("after the storm committed");
        assert_eq!(uids(&batch.jobs), ["a", "b"]);
    }

    #[test]
    fn an_accounting_on_waits_for_an_earlier_waiting_event_of_its_nas() {
        let first = take_batch(&mut vec![ev(Start, "a")], &Busy::default()).expect("a batch");
        let mut busy = in_flight(&[&first.claims]);
        // Only the session is busy: the NAS counter says nothing of 127.0.0.1.
        busy.nases.clear();
        let mut pending = vec![ev(Stop, "a"), reboot(), ev_of("192.0.2.9", Start, "x")];
        let batch = take_batch(&mut pending, &busy).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["x"]);
        assert_eq!(
            uids(&pending),
            ["a", "reboot"],
            "the reboot stays after the Stop"
        );
    }

    #[test]
    fn released_claims_leave_nothing_busy() {
        let a = take_batch(&mut vec![reboot()], &Busy::default()).expect("a");
        let b = take_batch(&mut vec![ev_of("192.0.2.9", Start, "b")], &Busy::default()).expect("b");
        let c = take_batch(&mut vec![ev(Start, "c")], &Busy::default()).expect("c");
        let mut busy = in_flight(&[&a.claims, &b.claims]);
        busy.release(&a.claims);
        busy.claim(&c.claims);
        busy.release(&b.claims);
        busy.release(&c.claims);
        assert!(busy.sessions.is_empty() && busy.nases.is_empty() && busy.rebooting.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_jobs() {
        let mut pending: Vec<Event> = (0..MAX_BATCH + 5)
            .map(|i| ev(Start, &i.to_string()))
            .collect();
        let batch = take_batch(&mut pending, &Busy::default()).expect("a batch");
        assert_eq!(batch.jobs.len(), MAX_BATCH);
        assert_eq!(pending.len(), 5);
        assert!(take_batch(&mut Vec::<Event>::new(), &Busy::default()).is_none());
    }
}

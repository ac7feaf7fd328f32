//! The one writer: takes accounting jobs from a bounded queue, commits them in batches (one
//! transaction per batch), and only then has the listener answer every packet of the batch.
//!
//! Batching is adaptive: the writer takes whatever has queued while the previous commit ran
//! (at most [`MAX_BATCH`]), so a lone packet is committed at once and a busy NAS fleet gets
//! large batches. When the database fails, the writer keeps the batch and retries it with
//! backoff; the queue fills, the listener drops what does not fit (counted), and no NAS is
//! answered for anything not committed. An event the database refuses for good is isolated by
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
/// First and longest wait between retries of a failed batch.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// After shutdown is requested, how long the writer keeps retrying a failing batch before it
/// gives up (its packets stay unanswered; the NAS will resend them to whoever runs next).
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
/// arrival order. Accounting-On/Off closes sessions of a whole NAS, so a batch holding one is
/// only started when nothing else is in flight, and nothing starts until it has committed.
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
    });
    // Received, not yet in a batch, in arrival order.
    let mut pending: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut sessions_in_flight: HashMap<task::Id, HashSet<u64>> = HashMap::new();
    let mut exclusive_in_flight = false;
    let mut open = true;
    loop {
        // Start every batch that may start now.
        while in_flight.len() < depth && !exclusive_in_flight {
            let busy = |key| sessions_in_flight.values().any(|s| s.contains(&key));
            let Some(batch) = take_batch(&mut pending, busy, in_flight.is_empty()) else {
                break;
            };
            exclusive_in_flight = batch.exclusive;
            let ctx = ctx.clone();
            let handle = in_flight.spawn(async move { ctx.commit_and_answer(batch.jobs).await });
            sessions_in_flight.insert(handle.id(), batch.sessions);
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
                sessions_in_flight.remove(&id);
                exclusive_in_flight = false;
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
    /// Hashes of the batch's `acctuniqueid`s.
    sessions: HashSet<u64>,
    /// Holds an Accounting-On/Off: nothing else may be in flight with it.
    exclusive: bool,
}

/// Takes from `pending`, in order, the jobs that may be committed now: at most [`MAX_BATCH`],
/// none of a session in flight, none after a job that has to wait for its session, and an
/// Accounting-On/Off (with what follows it) only when `idle` (nothing in flight).
fn take_batch<J: AsRef<Event>>(
    pending: &mut Vec<J>,
    in_flight: impl Fn(u64) -> bool,
    idle: bool,
) -> Option<Batch<J>> {
    if pending.is_empty() {
        return None;
    }
    let mut batch = Batch {
        jobs: Vec::with_capacity(pending.len()),
        sessions: HashSet::new(),
        exclusive: false,
    };
    // Sessions with a job left waiting: their later jobs wait too.
    let mut waiting: HashSet<u64> = HashSet::new();
    let mut kept = Vec::with_capacity(pending.len());
    let mut barrier = false;
    for job in pending.drain(..) {
        if barrier || batch.jobs.len() == MAX_BATCH {
            kept.push(job);
            continue;
        }
        match job.as_ref() {
            Event::Session(e) => {
                let key = session_key(&e.uid);
                if waiting.contains(&key) || in_flight(key) {
                    waiting.insert(key);
                    kept.push(job);
                } else {
                    batch.sessions.insert(key);
                    batch.jobs.push(job);
                }
            }
            Event::NasReboot(_) if idle => {
                batch.exclusive = true;
                batch.jobs.push(job);
            }
            Event::NasReboot(_) => {
                // It must see everything before it committed, and what follows it must wait.
                barrier = true;
                kept.push(job);
            }
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
        let mut shutdown_deadline: Option<Instant> = None;
        let mut logged = false;
        loop {
            let started = Instant::now();
            match store.apply(events, domain).await {
                Ok(()) => {
                    metrics.batch_committed(events.len(), started.elapsed().as_secs_f64());
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
                    if !logged {
                        tracing::error!(error = %e, "cannot commit accounting; holding the batch and retrying (packets are not answered meanwhile)");
                        logged = true;
                    }
                }
            }
            if shutdown.is_cancelled() {
                let deadline =
                    *shutdown_deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                if Instant::now() >= deadline {
                    tracing::error!(
                        size = events.len(),
                        "database still failing at shutdown; leaving packets unanswered"
                    );
                    return Outcome::GaveUp;
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::accounting::NasReboot;
    use crate::radius::accounting::SessionKind::{Interim, Start, Stop};
    use crate::store::tests::ev;

    fn reboot() -> Event {
        Event::NasReboot(NasReboot {
            nas: "127.0.0.1".into(),
            t: 1,
            cause: "NAS-Reboot".into(),
        })
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

    #[test]
    fn with_nothing_in_flight_everything_goes_in_one_batch() {
        let mut pending = vec![ev(Start, "a"), ev(Interim, "a"), reboot(), ev(Stop, "b")];
        let batch = take_batch(&mut pending, |_| false, true).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["a", "a", "reboot", "b"]);
        assert!(batch.exclusive, "it holds an Accounting-On/Off");
        assert!(pending.is_empty());
    }

    #[test]
    fn a_session_in_flight_waits_with_all_its_later_events() {
        let busy = session_key("a");
        let mut pending = vec![
            ev(Interim, "a"),
            ev(Start, "b"),
            ev(Stop, "a"),
            ev(Stop, "b"),
        ];
        let batch = take_batch(&mut pending, |k| k == busy, false).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["b", "b"]);
        assert!(!batch.exclusive);
        assert_eq!(batch.sessions, HashSet::from([session_key("b")]));
        assert_eq!(uids(&pending), ["a", "a"], "kept, in arrival order");
    }

    #[test]
    fn an_accounting_on_waits_for_the_batches_in_flight_and_holds_back_what_follows() {
        let mut pending = vec![ev(Start, "a"), reboot(), ev(Start, "b")];
        let batch = take_batch(&mut pending, |_| false, false).expect("a batch");
        assert_eq!(uids(&batch.jobs), ["a"]);
        assert_eq!(uids(&pending), ["reboot", "b"]);
        assert!(take_batch(&mut pending, |_| false, false).is_none());
        let batch = take_batch(&mut pending, |_| false, true).expect("once idle");
        assert_eq!(uids(&batch.jobs), ["reboot", "b"]);
        assert!(batch.exclusive);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_jobs() {
        let mut pending: Vec<Event> = (0..MAX_BATCH + 5)
            .map(|i| ev(Start, &i.to_string()))
            .collect();
        let batch = take_batch(&mut pending, |_| false, true).expect("a batch");
        assert_eq!(batch.jobs.len(), MAX_BATCH);
        assert_eq!(pending.len(), 5);
        assert!(take_batch(&mut Vec::<Event>::new(), |_| false, true).is_none());
    }
}

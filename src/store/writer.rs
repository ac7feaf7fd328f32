//! The one writer: takes accounting jobs from a bounded queue, commits them in batches (one
//! transaction per batch), and only then has the listener answer every packet of the batch.
//!
//! Batching is adaptive: the writer takes whatever has queued while the previous commit ran
//! (at most [`MAX_BATCH`]), so a lone packet is committed at once and a busy NAS fleet gets
//! large batches. When the database fails, the writer keeps the batch and retries it with
//! backoff; the queue fills, the listener drops what does not fit (counted), and no NAS is
//! answered for anything not committed. An event the database refuses for good is isolated by
//! retrying the batch one event at a time, logged, counted and never answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
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
pub async fn run(
    store: Store,
    domain: String,
    mut rx: mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
    events: EventBus,
    shutdown: CancellationToken,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        let n = rx.recv_many(&mut jobs, MAX_BATCH).await;
        if n == 0 {
            break;
        }
        metrics.set_queue_depth(rx.len());
        let batch: Vec<&Event> = jobs.iter().map(|j| &j.event).collect();
        let outcome = commit_with_retry(&store, &domain, &batch, &metrics, &shutdown).await;
        drop(batch);
        match outcome {
            Outcome::Committed => {
                if store.publishes_locally() {
                    events.publish(changes(jobs.iter().map(|j| &j.event)));
                }
                for job in jobs.drain(..) {
                    job.reply.send(&metrics, &job.event);
                }
            }
            Outcome::Rejected => {
                // Find the event(s) the database refuses: commit one at a time.
                for job in jobs.drain(..) {
                    match commit_with_retry(&store, &domain, &[&job.event], &metrics, &shutdown)
                        .await
                    {
                        Outcome::Committed => {
                            if store.publishes_locally() {
                                events.publish(changes([&job.event]));
                            }
                            job.reply.send(&metrics, &job.event)
                        }
                        Outcome::Rejected => {
                            tracing::error!(event = ?job.event, "database refused an accounting event; not answered");
                            job.reply
                                .drop_unanswered(&metrics, DropReason::StoreRejected);
                        }
                        Outcome::GaveUp => job
                            .reply
                            .drop_unanswered(&metrics, DropReason::ShuttingDown),
                    }
                }
            }
            Outcome::GaveUp => {
                for job in jobs.drain(..) {
                    job.reply
                        .drop_unanswered(&metrics, DropReason::ShuttingDown);
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

enum Outcome {
    Committed,
    /// A permanent error: the batch holds a value the database will never accept.
    Rejected,
    /// The database stayed down past the shutdown grace period.
    GaveUp,
}

async fn commit_with_retry(
    store: &Store,
    domain: &str,
    events: &[&Event],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Outcome {
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

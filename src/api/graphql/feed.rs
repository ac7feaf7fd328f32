//! The feed behind `sessionEvents`: committed session changes with their rows. One task per
//! node reads each change's row once (many changes in one query), however many subscribers
//! there are, and only while someone subscribes. An Accounting-On/Off, and a run of the
//! stale-session reaper, become a Stop of every session they closed, handed out a page at a time
//! as the subscribers take them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::events::{Change, ChangeKind, EventBus, NasClosed, SessionChange, EVENT_BUFFER};
use crate::store::sessions::SessionRow;
use crate::store::Store;

/// Changes read into one lookup at most.
const LOOKUP_BATCH: usize = 512;
/// Between pages of a NAS's closed sessions, how long the feed waits at most for its
/// subscribers to take what it queued (a subscriber slower than that misses some, and is told).
const PAGE_PATIENCE: Duration = Duration::from_secs(1);

/// A committed change and the session's row as it was read just after.
#[derive(Debug)]
pub struct FeedItem {
    pub kind: ChangeKind,
    /// The session's user name (for per-user subscriptions).
    pub username: String,
    pub session: SessionRow,
}

/// The sending side, shared by every subscription of this node.
#[derive(Debug, Clone)]
pub struct SessionFeed {
    tx: broadcast::Sender<Arc<FeedItem>>,
}

impl Default for SessionFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionFeed {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.tx.subscribe()
    }

    /// Reads the changes published on `bus` and hands them, with their rows, to the
    /// subscribers, until shutdown.
    pub async fn run(self, bus: EventBus, store: Store, shutdown: CancellationToken) {
        let mut changes = bus.subscribe();
        let mut batch: Vec<Change> = Vec::with_capacity(LOOKUP_BATCH);
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                change = changes.recv() => change,
            };
            match first {
                Ok(change) => batch.push(change),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "sessionEvents feed fell behind; changes were missed"
                    );
                    continue;
                }
                Err(RecvError::Closed) => return,
            }
            while batch.len() < LOOKUP_BATCH {
                match changes.try_recv() {
                    Ok(change) => batch.push(change),
                    Err(_) => break,
                }
            }
            if self.tx.receiver_count() > 0 {
                self.publish(&store, &batch).await;
            }
            batch.clear();
        }
    }

    /// Hands out the changes in order: session changes a lookup at a time, sessions closed
    /// together (a NAS's, the reaper's) page by page.
    async fn publish(&self, store: &Store, changes: &[Change]) {
        let mut sessions: Vec<SessionChange> = Vec::new();
        for change in changes {
            match change {
                Change::Session(c) => sessions.push(c.clone()),
                Change::NasClosed(closed) => {
                    self.publish_sessions(store, &sessions).await;
                    sessions.clear();
                    self.publish_nas_closed(store, closed).await;
                }
                Change::StaleClosed(uids) => {
                    self.publish_sessions(store, &sessions).await;
                    sessions.clear();
                    self.publish_stops(store, uids).await;
                }
            }
        }
        self.publish_sessions(store, &sessions).await;
    }

    async fn publish_nas_closed(&self, store: &Store, closed: &NasClosed) {
        let uids = match store
            .nas_closed_uids(&closed.nas, closed.t, &closed.cause)
            .await
        {
            Ok(uids) => uids,
            Err(e) => {
                tracing::warn!(error = %e, nas = %closed.nas, "cannot read the sessions an Accounting-On/Off closed for sessionEvents");
                return;
            }
        };
        self.publish_stops(store, &uids).await;
    }

    /// A Stop for each of `uids`, a page at a time.
    async fn publish_stops(&self, store: &Store, uids: &[String]) {
        for page in uids.chunks(LOOKUP_BATCH) {
            self.wait_for_subscribers().await;
            let changes: Vec<SessionChange> = page
                .iter()
                .map(|uid| SessionChange {
                    kind: ChangeKind::Stop,
                    username: String::new(),
                    uid: uid.clone(),
                })
                .collect();
            self.publish_sessions(store, &changes).await;
        }
    }

    /// Waits (at most [`PAGE_PATIENCE`]) until the subscribers have taken most of what is
    /// queued, so that a page does not push out items a subscriber has not read yet.
    async fn wait_for_subscribers(&self) {
        let started = Instant::now();
        while self.tx.len() > EVENT_BUFFER - LOOKUP_BATCH && started.elapsed() < PAGE_PATIENCE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn publish_sessions(&self, store: &Store, changes: &[SessionChange]) {
        if changes.is_empty() {
            return;
        }
        let mut uids: Vec<String> = changes.iter().map(|c| c.uid.clone()).collect();
        uids.sort_unstable();
        uids.dedup();
        let rows = match store.sessions_by_uids(&uids).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, changes = changes.len(), "cannot read changed sessions for sessionEvents");
                return;
            }
        };
        let by_uid: HashMap<&str, &SessionRow> =
            rows.iter().map(|r| (r.acctuniqueid.as_str(), r)).collect();
        for change in changes {
            if let Some(row) = by_uid.get(change.uid.as_str()) {
                let _ = self.tx.send(Arc::new(FeedItem {
                    kind: change.kind,
                    username: row.username.clone().unwrap_or_default(),
                    session: (*row).clone(),
                }));
            }
        }
    }
}

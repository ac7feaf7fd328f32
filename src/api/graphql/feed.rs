//! The feed behind `sessionEvents`: committed session changes with their rows. One task per
//! node reads each change's row once (many changes in one query), however many subscribers
//! there are, and only while someone subscribes.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::events::{ChangeKind, EventBus, SessionChange, EVENT_BUFFER};
use crate::store::sessions::SessionRow;
use crate::store::Store;

/// Changes read into one lookup at most.
const LOOKUP_BATCH: usize = 512;

/// A committed change and the session's row as it was read just after.
#[derive(Debug)]
pub struct FeedItem {
    pub kind: ChangeKind,
    /// The user name of the change (for per-user subscriptions).
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
        let mut batch: Vec<SessionChange> = Vec::with_capacity(LOOKUP_BATCH);
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

    async fn publish(&self, store: &Store, changes: &[SessionChange]) {
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
                    username: change.username.clone(),
                    session: (*row).clone(),
                }));
            }
        }
    }
}

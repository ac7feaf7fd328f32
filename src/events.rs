//! Committed session changes, for `sessionEvents` subscribers. On SQLite the writer publishes
//! after each commit; on PostgreSQL each batch sends `NOTIFY radacctd_events` inside its
//! transaction (delivered only on commit) and every node listens, so subscribers see changes
//! ingested by any node.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::radius::accounting::{Event, SessionKind};

/// Changes a slow subscriber may fall behind before it misses some (it is told).
pub const EVENT_BUFFER: usize = 4096;
/// The PostgreSQL channel of session changes.
pub const PG_CHANNEL: &str = "radacctd_events";
/// The PostgreSQL channel of closed web sessions (their WebSockets close on every node).
pub const PG_LOGOUT_CHANNEL: &str = "radacctd_logouts";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    #[serde(rename = "s")]
    Start,
    #[serde(rename = "u")]
    Update,
    #[serde(rename = "p")]
    Stop,
}

/// One committed change: which session, whose, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionChange {
    #[serde(rename = "k")]
    pub kind: ChangeKind,
    #[serde(rename = "u")]
    pub username: String,
    #[serde(rename = "i")]
    pub uid: String,
}

/// Every open session of a NAS was closed by its Accounting-On/Off: the rows of `nas` that now
/// have stop time `t` and terminate cause `cause` (listed by whoever reads them, not here: a
/// reboot may close a hundred thousand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NasClosed {
    #[serde(rename = "n")]
    pub nas: String,
    pub t: i64,
    #[serde(rename = "c")]
    pub cause: String,
}

/// A committed change, as published to this node's subscribers (and on PostgreSQL by NOTIFY to
/// every node's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    #[serde(rename = "s")]
    Session(SessionChange),
    #[serde(rename = "r")]
    NasClosed(NasClosed),
    /// Sessions the stale-session reaper closed (their `acctuniqueid`s).
    #[serde(rename = "x")]
    StaleClosed(Vec<String>),
}

/// The most `acctuniqueid` bytes one [`Change::StaleClosed`] carries, so that each fits in one
/// PostgreSQL NOTIFY payload (8,000 bytes) with room to spare.
const STALE_CLOSED_BYTES: usize = 6_000;

/// The changes announcing that the reaper closed `uids`: a few hundred sessions each, so a reap
/// of thousands is handed out in pieces (and fits in NOTIFY payloads).
pub fn stale_closed(uids: Vec<String>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut bytes = 0;
    for uid in uids {
        // Quotes and a comma around each.
        let len = uid.len() + 3;
        if !current.is_empty() && bytes + len > STALE_CLOSED_BYTES {
            changes.push(Change::StaleClosed(std::mem::take(&mut current)));
            bytes = 0;
        }
        bytes += len;
        current.push(uid);
    }
    if !current.is_empty() {
        changes.push(Change::StaleClosed(current));
    }
    changes
}

/// The changes of a batch of events.
pub fn changes<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<Change> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Session(s) => Change::Session(SessionChange {
                kind: match s.kind {
                    SessionKind::Start => ChangeKind::Start,
                    SessionKind::Interim => ChangeKind::Update,
                    SessionKind::Stop => ChangeKind::Stop,
                },
                username: s.username.clone(),
                uid: s.uid.clone(),
            }),
            Event::NasReboot(r) => Change::NasClosed(NasClosed {
                nas: r.nas.clone(),
                t: r.t,
                cause: r.cause.clone(),
            }),
        })
        .collect()
}

/// The node-local fan-out to subscribers.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Change>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Hands changes to the current subscribers (none is fine).
    pub fn publish(&self, changes: impl IntoIterator<Item = Change>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for change in changes {
            let _ = self.tx.send(change);
        }
    }
}

/// The GraphQL WebSocket connections this node holds, by web session, so closing a session
/// (here or, through NOTIFY, on another node) closes its connections.
#[derive(Debug, Default)]
pub struct LiveConnections {
    by_session: std::sync::Mutex<
        std::collections::HashMap<String, Vec<(String, tokio_util::sync::CancellationToken)>>,
    >,
    counter: std::sync::atomic::AtomicU64,
}

impl LiveConnections {
    pub fn new() -> Self {
        Self::default()
    }

    /// An identifier of a connection's task on this node (shown as `pid`).
    pub fn next_pid(&self, node: &str) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("<{node}.{n}>")
    }

    pub fn register(
        &self,
        session_id: &str,
        conn_id: &str,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        self.lock()
            .entry(session_id.to_owned())
            .or_default()
            .push((conn_id.to_owned(), cancel));
    }

    pub fn unregister(&self, session_id: &str, conn_id: &str) {
        let mut map = self.lock();
        if let Some(conns) = map.get_mut(session_id) {
            conns.retain(|(c, _)| c != conn_id);
            if conns.is_empty() {
                map.remove(session_id);
            }
        }
    }

    /// Closes every connection of these sessions held here.
    pub fn close_sessions(&self, session_ids: &[String]) {
        let mut map = self.lock();
        for id in session_ids {
            if let Some(conns) = map.remove(id) {
                for (_, cancel) in conns {
                    cancel.cancel();
                }
            }
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, Vec<(String, tokio_util::sync::CancellationToken)>>,
    > {
        self.by_session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_closes_are_split_into_changes_that_each_fit_a_notify_payload() {
        let uids: Vec<String> = (0..1_000).map(|i| format!("{i:032x}")).collect();
        let changes = stale_closed(uids.clone());
        assert!(changes.len() > 1, "1,000 ids need several changes");
        let mut seen = Vec::new();
        for change in &changes {
            let json = serde_json::to_string(change).unwrap();
            assert!(json.len() < 7_000, "{} bytes", json.len());
            let Change::StaleClosed(part) = change else {
                panic!("not a StaleClosed: {change:?}");
            };
            seen.extend(part.iter().cloned());
        }
        assert_eq!(seen, uids, "every id once, in order");
        assert!(stale_closed(Vec::new()).is_empty());
    }
}

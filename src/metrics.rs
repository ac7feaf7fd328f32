//! Prometheus metrics, and the one place where a dropped datagram is counted and logged
//! ([`Metrics::drop_packet`], rate-limited per [`DropReason`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// At most one log line per drop reason per this interval; the rest are counted.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The source address is no configured client and no `nas` row.
    UnknownClient,
    /// Too short, bad Length, bad attribute lengths, missing or malformed attributes.
    Malformed,
    /// The Request Authenticator does not match the client's secret.
    BadAuthenticator,
    /// The Message-Authenticator does not match (or Status-Server lacks one).
    BadMessageAuthenticator,
    /// A code other than Accounting-Request and Status-Server.
    UnsupportedCode,
    /// The original of this retransmit is still being stored.
    DuplicateInFlight,
    /// The writer queue is full (the database is slow or down).
    QueueFull,
    /// The database refused the event for good (it was logged).
    StoreRejected,
    /// The service was stopping before the event could be stored.
    ShuttingDown,
}

impl DropReason {
    const ALL: [DropReason; 9] = [
        DropReason::UnknownClient,
        DropReason::Malformed,
        DropReason::BadAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::UnsupportedCode,
        DropReason::DuplicateInFlight,
        DropReason::QueueFull,
        DropReason::StoreRejected,
        DropReason::ShuttingDown,
    ];

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownClient => "unknown_client",
            DropReason::Malformed => "malformed",
            DropReason::BadAuthenticator => "bad_authenticator",
            DropReason::BadMessageAuthenticator => "bad_message_authenticator",
            DropReason::UnsupportedCode => "unsupported_code",
            DropReason::DuplicateInFlight => "duplicate_in_flight",
            DropReason::QueueFull => "queue_full",
            DropReason::StoreRejected => "store_rejected",
            DropReason::ShuttingDown => "shutting_down",
        }
    }
}

/// Labels read as the logs write them (`bad_authenticator`).
impl EncodeLabelValue for DropReason {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: DropReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PacketLabels {
    status_type: String,
    result: String,
}

/// Every metric radacctd exports.
pub struct Metrics {
    registry: Registry,
    drops: Family<DropLabels, Counter>,
    packets: Family<PacketLabels, Counter>,
    retransmits: Counter,
    batch_size: Histogram,
    commit_seconds: Histogram,
    queue_depth: Gauge,
    reaped: Counter,
    archived: Counter,
    store_errors: Counter,
    /// 1 while the writer's last attempt to commit failed (it holds the batch and retries);
    /// `/healthz` answers 503 meanwhile.
    store_failing: Gauge,
    http_in_progress: Gauge,
    http_waiting: Gauge,
    http_shed: Counter,
    /// Per reason: UNIX seconds of the last log line, and drops since it.
    last_logged: [AtomicI64; 9],
    suppressed: [AtomicU64; 9],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("radacctd");
        let drops = Family::<DropLabels, Counter>::default();
        registry.register(
            "dropped_packets",
            "Datagrams dropped without an answer, by reason",
            drops.clone(),
        );
        let packets = Family::<PacketLabels, Counter>::default();
        registry.register(
            "packets",
            "Accounting requests by Acct-Status-Type and result (acked, ignored)",
            packets.clone(),
        );
        let retransmits = Counter::default();
        registry.register(
            "retransmits_answered",
            "Retransmitted requests answered from the duplicate cache",
            retransmits.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "batch_size",
            "Events committed per database transaction",
            batch_size.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "commit_seconds",
            "Time to apply and commit one batch",
            commit_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Events waiting for the writer",
            queue_depth.clone(),
        );
        let reaped = Counter::default();
        registry.register(
            "stale_sessions_closed",
            "Sessions closed by the stale-session reaper",
            reaped.clone(),
        );
        let archived = Counter::default();
        registry.register(
            "sessions_archived",
            "Closed sessions moved to radacct_history",
            archived.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Failed database transactions (retried)",
            store_errors.clone(),
        );
        let store_failing = Gauge::default();
        registry.register(
            "store_failing",
            "1 while the writer cannot commit (it holds its batch and retries)",
            store_failing.clone(),
        );
        let http_in_progress = Gauge::default();
        registry.register(
            "http_requests_in_progress",
            "HTTP requests being processed (at most http.max_concurrent_requests)",
            http_in_progress.clone(),
        );
        let http_waiting = Gauge::default();
        registry.register(
            "http_requests_waiting",
            "HTTP requests waiting for a processing slot",
            http_waiting.clone(),
        );
        let http_shed = Counter::default();
        registry.register(
            "http_requests_shed",
            "HTTP requests answered 503 after waiting too long for a slot",
            http_shed.clone(),
        );
        for reason in DropReason::ALL {
            let _ = drops.get_or_create(&DropLabels { reason });
        }
        Self {
            registry,
            drops,
            packets,
            retransmits,
            batch_size,
            commit_seconds,
            queue_depth,
            reaped,
            archived,
            store_errors,
            store_failing,
            http_in_progress,
            http_waiting,
            http_shed,
            last_logged: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Counts a dropped datagram and logs it, at most once per [`DROP_LOG_INTERVAL`] per reason.
    pub fn drop_packet(&self, reason: DropReason, peer: SocketAddr) {
        self.drops.get_or_create(&DropLabels { reason }).inc();
        let i = reason.index();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let last = self.last_logged[i].load(Ordering::Relaxed);
        if now - last >= DROP_LOG_INTERVAL.as_secs() as i64
            && self.last_logged[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed[i].swap(0, Ordering::Relaxed);
            tracing::warn!(reason = reason.as_str(), %peer, suppressed, "dropped RADIUS datagram");
        } else {
            self.suppressed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many datagrams were dropped for `reason` (for tests and the benchmark).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get_or_create(&DropLabels { reason }).get()
    }

    pub fn packet(&self, status_type: &str, result: &str) {
        self.packets
            .get_or_create(&PacketLabels {
                status_type: status_type.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn retransmit_answered(&self) {
        self.retransmits.inc();
    }

    pub fn batch_committed(&self, size: usize, seconds: f64) {
        self.batch_size.observe(size as f64);
        self.commit_seconds.observe(seconds);
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    pub fn stale_closed(&self, n: u64) {
        self.reaped.inc_by(n);
    }

    pub fn archived(&self, n: u64) {
        self.archived.inc_by(n);
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Whether the writer's last attempt to commit failed (set by the writer).
    pub fn set_store_failing(&self, failing: bool) {
        self.store_failing.set(i64::from(failing));
    }

    /// Counts an HTTP request as waiting for a slot until the guard is dropped.
    pub fn http_request_waiting(&self) -> GaugeGuard {
        GaugeGuard::new(&self.http_waiting)
    }

    /// Counts an HTTP request as in progress until the guard is dropped.
    pub fn http_request_in_progress(&self) -> GaugeGuard {
        GaugeGuard::new(&self.http_in_progress)
    }

    pub fn http_request_shed(&self) {
        self.http_shed.inc();
    }

    pub fn http_requests_in_progress(&self) -> i64 {
        self.http_in_progress.get()
    }

    pub fn http_requests_waiting(&self) -> i64 {
        self.http_waiting.get()
    }

    pub fn http_requests_shed(&self) -> u64 {
        self.http_shed.get()
    }

    pub fn store_failing(&self) -> bool {
        self.store_failing.get() != 0
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub type SharedMetrics = Arc<Metrics>;

/// One unit of a gauge, held while something lasts (also when its future is dropped).
#[must_use = "the gauge goes back down when the guard is dropped"]
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

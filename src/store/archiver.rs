//! The archiver (SPEC §9): moves closed sessions older than `accounting.archive_after` from
//! `radacct` to `radacct_history` in small batches (each its own transaction, so ingest never
//! waits long and a crash loses or duplicates nothing), creates PostgreSQL's monthly partitions
//! ahead of time, and applies `accounting.history_retention`. At most one node archives at a
//! time on PostgreSQL (advisory lock).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::config::AccountingConfig;
use crate::metrics::Metrics;

/// How often the archiver runs (SPEC: at least once a minute).
pub const ARCHIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Sessions moved per transaction.
pub const ARCHIVE_BATCH: i64 = 1_000;

pub async fn run(
    store: Store,
    accounting: AccountingConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    if accounting.archive_after.is_none() && accounting.history_retention.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(ARCHIVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = run_once(&store, &accounting, &metrics, &shutdown).await {
            tracing::warn!(error = %e, "archiver failed; will retry");
        }
    }
}

/// One pass: archive everything due, then expire history. Returns how many sessions moved.
pub async fn run_once(
    store: &Store,
    accounting: &AccountingConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> super::Result<u64> {
    let now = chrono::Utc::now().timestamp();
    if let Store::Postgres(pg) = store {
        pg.ensure_partitions_ahead(now).await?;
    }
    let mut moved = 0;
    if let Some(after) = accounting.archive_after {
        let cutoff = now - after.as_secs() as i64;
        while !shutdown.is_cancelled() {
            let n = store.archive_batch(cutoff, ARCHIVE_BATCH).await?;
            moved += n;
            if (n as i64) < ARCHIVE_BATCH {
                break;
            }
        }
        if moved > 0 {
            metrics.archived(moved);
            tracing::info!(moved, "archived closed sessions");
        }
    }
    if let Some(retention) = accounting.history_retention {
        store
            .expire_history(now - retention.as_secs() as i64)
            .await?;
    }
    Ok(moved)
}

//! The archiver (SPEC §9): moves closed sessions older than `accounting.archive_after` from
//! `radacct` to `radacct_history` in small batches (each its own transaction, so ingest never
//! waits long and a crash loses or duplicates nothing), creates PostgreSQL's monthly partitions
//! ahead of time, and applies `accounting.history_retention`. At most one node archives at a
//! time on PostgreSQL (advisory lock).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::config::AccountingConfig;
use crate::metrics::Metrics;

/// How often the archiver runs (SPEC: at least once a minute).
pub const ARCHIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Most sessions moved per transaction.
pub const ARCHIVE_BATCH: i64 = 1_000;
/// Fewest sessions moved per transaction.
const ARCHIVE_BATCH_MIN: i64 = 10;
/// How long one batch should take. On SQLite a batch holds the one write lock, so accounting
/// commits wait up to that long; with years of history each moved row costs index pages read
/// from disk (in the README: with 5,000,000 rows archived, the accounting writer's 5 s busy
/// timeout expired behind batches of 1,000).
const ARCHIVE_BATCH_TIME: Duration = Duration::from_millis(100);

/// The size of the next batch: halved after a batch that took more than twice
/// [`ARCHIVE_BATCH_TIME`], doubled after one that took under half of it, within
/// [`ARCHIVE_BATCH_MIN`]..=[`ARCHIVE_BATCH`]. Kept from one pass to the next.
#[derive(Debug, Clone, Copy)]
struct BatchSize(i64);

impl Default for BatchSize {
    fn default() -> Self {
        Self(ARCHIVE_BATCH)
    }
}

impl BatchSize {
    fn adapt(&mut self, took: Duration) {
        if took > 2 * ARCHIVE_BATCH_TIME {
            self.0 = (self.0 / 2).max(ARCHIVE_BATCH_MIN);
        } else if took < ARCHIVE_BATCH_TIME / 2 {
            self.0 = (self.0 * 2).min(ARCHIVE_BATCH);
        }
    }
}

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
    let mut size = BatchSize::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&store, &accounting, &metrics, &shutdown, &mut size).await {
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
    pass(
        store,
        accounting,
        metrics,
        shutdown,
        &mut BatchSize::default(),
    )
    .await
}

async fn pass(
    store: &Store,
    accounting: &AccountingConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    size: &mut BatchSize,
) -> super::Result<u64> {
    let now = chrono::Utc::now().timestamp();
    if let Store::Postgres(pg) = store {
        pg.ensure_partitions_ahead(now).await?;
    }
    let mut moved = 0;
    if let Some(after) = accounting.archive_after {
        let cutoff = now - after.as_secs() as i64;
        // Each batch starts at the last stop time the one before moved. What it leaves behind
        // (a row locked by the writer just then, a Stop that came late with an earlier time)
        // is due again at the next pass, which starts from the beginning.
        let mut from = 0;
        while !shutdown.is_cancelled() {
            let asked = size.0;
            let began = Instant::now();
            let batch = store.archive_batch(from, cutoff, asked).await?;
            let took = began.elapsed();
            let n = batch.moved;
            moved += n;
            // Counted per batch: a catch-up over millions of rows is one long pass.
            metrics.archived(n);
            if (n as i64) < asked {
                break;
            }
            from = batch.last_stop.unwrap_or(from);
            size.adapt(took);
            tracing::debug!(
                moved = n,
                ms = took.as_millis() as u64,
                next = size.0,
                "archived a batch"
            );
            // As long again before the next batch: accounting gets at least half of the write
            // lock's time while the archiver catches up.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(took) => {}
            }
        }
        if moved > 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_shrinks_when_slow_and_grows_back_when_fast() {
        let mut size = BatchSize::default();
        size.adapt(ARCHIVE_BATCH_TIME);
        assert_eq!(size.0, ARCHIVE_BATCH, "on target: unchanged");
        size.adapt(ARCHIVE_BATCH_TIME * 3);
        assert_eq!(size.0, ARCHIVE_BATCH / 2);
        for _ in 0..20 {
            size.adapt(Duration::from_secs(6));
        }
        assert_eq!(size.0, ARCHIVE_BATCH_MIN, "never below the minimum");
        size.adapt(ARCHIVE_BATCH_TIME / 3);
        assert_eq!(size.0, 2 * ARCHIVE_BATCH_MIN);
        for _ in 0..20 {
            size.adapt(Duration::ZERO);
        }
        assert_eq!(size.0, ARCHIVE_BATCH, "never above the maximum");
    }
}

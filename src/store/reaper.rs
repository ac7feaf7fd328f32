//! The stale-session reaper (SPEC §3): closes open sessions that have not been heard of for
//! 3 x their interval + 60 s, or for `accounting.stale_after` when no interval is known. Stop
//! time = the last update; terminate cause `Stale-Session`. On PostgreSQL an advisory lock makes
//! sure only one node reaps at a time (see the backend).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::metrics::Metrics;

/// How often the reaper looks for stale sessions.
pub const REAP_INTERVAL: Duration = Duration::from_secs(30);

pub async fn run(
    store: Store,
    stale_after: Option<Duration>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let stale_after = stale_after.map(|d| d.as_secs() as i64);
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = std::time::Instant::now();
        match store
            .close_stale(chrono::Utc::now().timestamp(), stale_after)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                metrics.stale_closed(n);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(closed = n, ms, "closed stale sessions");
            }
            Err(e) => tracing::warn!(error = %e, "stale-session reaper failed; will retry"),
        }
    }
}

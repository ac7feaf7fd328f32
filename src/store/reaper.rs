//! The stale-session reaper (SPEC §3): closes open sessions that have not been heard of for
//! 3 x their interval + 60 s, or for `accounting.stale_after` when no interval is known. Stop
//! time = the last update; terminate cause `Stale-Session`. On PostgreSQL an advisory lock makes
//! sure only one node reaps at a time (see the backend). Each closed session reaches
//! `sessionEvents` subscribers as a Stop (on PostgreSQL, those of every node).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::events::{self, EventBus};
use crate::metrics::Metrics;

/// How often the reaper looks for stale sessions at most: a session whose limit comes from its
/// interval (3 x interval + 60 s, so at least a minute) is closed within half its limit.
pub const REAP_INTERVAL: Duration = Duration::from_secs(30);

/// How often the reaper looks: [`REAP_INTERVAL`], or a quarter of a shorter `stale_after` (but
/// not more than once a second), so a session is closed at most a quarter of its limit late.
pub fn reap_interval(stale_after: Option<Duration>) -> Duration {
    stale_after.map_or(REAP_INTERVAL, |limit| {
        (limit / 4).clamp(Duration::from_secs(1), REAP_INTERVAL)
    })
}

pub async fn run(
    store: Store,
    stale_after: Option<Duration>,
    metrics: Arc<Metrics>,
    bus: EventBus,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(reap_interval(stale_after));
    let stale_after = stale_after.map(|d| d.as_secs() as i64);
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
            Ok(closed) if closed.is_empty() => {}
            Ok(closed) => {
                let n = closed.len() as u64;
                if store.publishes_locally() {
                    bus.publish(events::stale_closed(closed));
                }
                metrics.stale_closed(n);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(closed = n, ms, "closed stale sessions");
            }
            Err(e) => tracing::warn!(error = %e, "stale-session reaper failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_looks_a_quarter_of_a_short_stale_limit_apart() {
        let secs = Duration::from_secs;
        assert_eq!(reap_interval(None), secs(30));
        assert_eq!(reap_interval(Some(secs(7200))), secs(30));
        assert_eq!(reap_interval(Some(secs(60))), secs(15));
        assert_eq!(reap_interval(Some(secs(2))), secs(1));
    }
}

//! The HTTP side: one router per module, merged here.

pub mod health;

use std::sync::Arc;

use axum::Router;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
}

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

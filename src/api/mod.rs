//! The HTTP side: one router per module, merged here.

pub mod console;
pub mod graphql;
pub mod health;
pub mod negotiate;
pub mod openapi;
pub mod web;
pub mod web_sessions;

use std::sync::Arc;

use axum::Router;

use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::events::{EventBus, LiveConnections};
use crate::metrics::Metrics;
use crate::radius::clients::Clients;
use crate::store::Store;

/// What every handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// Failed logins per source address (per node: a brute force is slowed where it lands).
    pub login_limiter: Arc<LoginLimiter>,
    /// RADIUS clients (for Disconnect-Requests).
    pub clients: Clients,
    /// Committed session changes (GraphQL subscriptions).
    pub events: EventBus,
    /// This node's GraphQL WebSocket connections, closed when their web session closes.
    pub live: Arc<LiveConnections>,
}

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(console::router(&state.config.http.webservice_path))
        .merge(graphql::router())
        .merge(web_sessions::router())
        .merge(web::router(&state.config.http.webservice_path))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

//! The HTTP side: one router per module, merged here.

pub mod admission;
pub mod console;
pub mod graphql;
pub mod health;
pub mod negotiate;
pub mod openapi;
pub mod serve;
pub mod web;
pub mod web_sessions;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use crate::config::Config;
use crate::events::LiveConnections;
use crate::metrics::Metrics;
use crate::radius::clients::Clients;
use crate::store::Store;

/// What every handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// RADIUS clients (for Disconnect-Requests).
    pub clients: Clients,
    /// Committed session changes with their rows (GraphQL subscriptions).
    pub feed: graphql::feed::SessionFeed,
    /// This node's GraphQL WebSocket connections, closed when their web session closes.
    pub live: Arc<LiveConnections>,
}

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let admission = admission::Admission::new(
        state.config.http.max_concurrent_requests,
        admission::ADMISSION_WAIT,
        state.metrics.clone(),
    );
    Router::new()
        .merge(health::router())
        .merge(console::router(&state.config.http.webservice_path))
        .merge(graphql::router())
        .merge(web_sessions::router())
        .merge(web::router(&state.config.http.webservice_path))
        .layer(axum::middleware::from_fn_with_state(
            admission,
            admission::admit,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            serve::body_deadline,
        ))
        .with_state(state)
}

/// What a body over [`MAX_BODY_BYTES`] is told.
const OVERSIZE_MESSAGE: &str = "the request body is larger than 1 MiB";

/// A request whose `Content-Length` announces more than [`MAX_BODY_BYTES`] gets 413 at once,
/// before its body is read (the body limit alone would wait for the body to arrive).
async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_none_or(|n| n <= MAX_BODY_BYTES as u64) {
        return next.run(request).await;
    }
    error_response(
        request.uri().path(),
        StatusCode::PAYLOAD_TOO_LARGE,
        OVERSIZE_MESSAGE,
    )
}

/// An error answered before the request reaches its endpoint, in the shape of that endpoint's
/// errors: GraphQL's `errors` list on the GraphQL path, `errorCode`/`errorMessage` elsewhere.
pub(crate) fn error_response(path: &str, status: StatusCode, message: &str) -> Response {
    let body = if graphql::is_graphql_path(path) {
        let code = if status == StatusCode::SERVICE_UNAVAILABLE {
            "SERVICE_UNAVAILABLE"
        } else {
            "BAD_REQUEST"
        };
        serde_json::json!({
            "data": null,
            "errors": [{ "message": message, "extensions": { "code": code } }],
        })
    } else {
        serde_json::json!({ "errorCode": status.as_u16(), "errorMessage": message })
    };
    (status, Json(body)).into_response()
}

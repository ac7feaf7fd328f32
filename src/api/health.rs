//! `GET /healthz` (200 when the database answers and the writer can commit, 503 otherwise)
//! and `GET /metrics` (Prometheus text). Neither needs a token, unless `http.metrics_auth`
//! puts `/metrics` behind one of the operator or admin role.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// A database slower than this to answer `SELECT 1` counts as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    // A database can answer `SELECT 1` and still refuse writes: SQLite on a full disk, or
    // while another process holds its write lock.
    if state.metrics.store_failing() {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n");
    }
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.config.http.metrics_auth {
        match crate::auth::authenticate(&state.store, &headers).await {
            Ok(p) if p.can_read_all_accounting() => {}
            Ok(_) => {
                return (
                    StatusCode::FORBIDDEN,
                    "metrics need the operator or admin role\n",
                )
                    .into_response()
            }
            Err(crate::auth::AuthError::Store(e)) => {
                tracing::error!(error = %e, "cannot check a token");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
                    .into_response();
            }
            Err(e) => return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response(),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

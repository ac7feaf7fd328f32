//! GraphQL over HTTP: `POST /graphql` and `POST /getOnlineSessions` (JSON), the GraphiQL page at
//! `GET /graphql`, subscriptions over WebSocket at `/graphql/ws` (graphql-transport-ws, token in
//! the `connection_init` payload). async-graphql answers 200 for everything; here every error
//! class gets its HTTP status (SPEC §4) and the body is always a GraphQL response object.
//! A POST whose `Content-Type` is not `application/json` is 415 and is not looked at further.

pub mod feed;
pub mod schema;

use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::AppState;
use crate::auth::{self, AuthError, Principal};
use schema::{Code, Mutation, Query, RadacctSchema, SubscriptionRoot};

/// Query depth and complexity limits (SPEC §4).
pub const MAX_DEPTH: usize = 15;
pub const MAX_COMPLEXITY: usize = 1000;

pub fn build_schema() -> RadacctSchema {
    async_graphql::Schema::build(Query, Mutation, SubscriptionRoot)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The SDL (`radacctd schema`).
pub fn sdl() -> String {
    let mut s = build_schema().sdl();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Whether `path` is one of the GraphQL-over-HTTP endpoints (their errors are GraphQL
/// response objects).
pub fn is_graphql_path(path: &str) -> bool {
    matches!(path, "/graphql" | "/getOnlineSessions")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/graphql", post(graphql).get(graphiql))
        .route("/getOnlineSessions", post(graphql))
        .route("/graphql/ws", get(websocket))
        .layer(Extension(build_schema()))
}

/// A GraphQL response carrying one error, with its HTTP status.
fn error_response(status: StatusCode, code: Code, message: &str) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code.as_str() } }],
    });
    (status, Json(body)).into_response()
}

fn status_of(code: &str) -> StatusCode {
    match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "INTERNAL_SERVER_ERROR" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn code_of(e: &ServerError) -> Option<String> {
    e.extensions
        .as_ref()
        .and_then(|x| x.get("code"))
        .and_then(|v| match v {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        })
}

/// Whether a request body is declared as JSON: exactly one `Content-Type`, `application/json`
/// (any case), with no charset or `charset=utf-8` (GraphQL over HTTP: JSON is UTF-8).
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|p| match p.split_once('=') {
            Some((name, v)) if name.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            Some(_) => true,
            None => p.trim().is_empty(),
        })
}

async fn graphql(
    State(state): State<AppState>,
    Extension(schema): Extension<RadacctSchema>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BadRequest,
            "the body must be JSON, sent with Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::BadRequest,
                "the request body is larger than 1 MiB",
            )
        }
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                "the request body cannot be read",
            )
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return error_response(
            StatusCode::BAD_REQUEST,
            Code::BadRequest,
            "the body must be JSON: {\"query\": ..., \"variables\": ..., \"operationName\": ...}",
        ),
    };
    // Parse first: a parse error is 400 whoever asks, and anonymous access needs the operation.
    let document = match async_graphql::parser::parse_query(&request.query) {
        Ok(d) => d,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                &format!("parse error: {e}"),
            )
        }
    };
    let principal = match auth::authenticate(&state.store, &headers).await {
        Ok(p) => Some(p),
        Err(AuthError::Missing) => None,
        Err(AuthError::Invalid) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "the token is invalid or has expired",
            )
        }
        Err(AuthError::Store(e)) => {
            tracing::error!(error = %e, "cannot check a token");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
                "internal server error",
            );
        }
    };
    if principal.is_none() {
        let read_only = document
            .operations
            .iter()
            .all(|(_, op)| op.node.ty == OperationType::Query);
        if !(state.config.auth.anonymous_graphql && read_only) {
            return error_response(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "a token is required (Authtoken or Authorization: Bearer)",
            );
        }
    }

    let response = schema
        .execute(request.data(state).data::<Option<Principal>>(principal))
        .await;
    let mut status = StatusCode::OK;
    let mut json = serde_json::to_value(&response).unwrap_or_default();
    if let Some(first) = response.errors.first() {
        let code = code_of(first).unwrap_or_else(|| Code::BadRequest.as_str().to_owned());
        status = status_of(&code);
        // Parse, validation and variable errors carry no code: they are the client's (400).
        if let Some(errors) = json.get_mut("errors").and_then(|e| e.as_array_mut()) {
            for e in errors {
                let ext = e.as_object_mut().map(|o| {
                    o.entry("extensions")
                        .or_insert_with(|| serde_json::json!({}))
                });
                if let Some(serde_json::Value::Object(ext)) = ext {
                    ext.entry("code")
                        .or_insert_with(|| Code::BadRequest.as_str().into());
                }
            }
        }
    }
    (status, Json(json)).into_response()
}

/// The GraphiQL page (static; its queries need a token, which the page's header editor sends).
async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("radacctd GraphiQL")
            .finish(),
    )
}

/// How often a WebSocket connection re-checks its token against the database (the NOTIFY of a
/// closed session normally closes it at once; this is the fallback).
const WS_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The web session a WebSocket connection belongs to, once `connection_init` authenticated it.
#[derive(Debug, Clone)]
struct Registration {
    conn_id: String,
    session_id: String,
    token_hash: String,
}

/// graphql-transport-ws (and the older graphql-ws): the token comes in `connection_init`'s
/// payload as `{"Authtoken": "..."}`. Each authenticated connection is recorded in
/// `ws_connections` (web-session API) and closes when its web session closes on any node.
/// A connection whose `connection_init` has not come within `http.header_timeout` is closed.
async fn websocket(
    State(state): State<AppState>,
    Extension(schema): Extension<RadacctSchema>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| async move {
            let cancel = tokio_util::sync::CancellationToken::new();
            let registration = std::sync::Arc::new(std::sync::Mutex::new(None::<Registration>));
            let initialized = std::sync::Arc::new(AtomicBool::new(false));
            let init_deadline = tokio::time::sleep(state.config.http.header_timeout);
            let init_state = state.clone();
            let init_cancel = cancel.clone();
            let init_registration = registration.clone();
            let init_done = initialized.clone();
            let serve = GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let token = payload
                        .get("Authtoken")
                        .or_else(|| payload.get("authtoken"))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    let principal = match token {
                        Some(token) => {
                            let mut headers = HeaderMap::new();
                            if let Ok(v) = token.parse() {
                                headers.insert("authtoken", v);
                            }
                            Some(auth::authenticate(&init_state.store, &headers).await.map_err(|e| {
                                async_graphql::Error::new(match e {
                                    AuthError::Store(_) => "internal server error".to_owned(),
                                    other => other.to_string(),
                                })
                            })?)
                        }
                        None if init_state.config.auth.anonymous_graphql => None,
                        None => return Err(async_graphql::Error::new("connection_init needs {\"Authtoken\": ...}")),
                    };
                    if let Some(p) = &principal {
                        let conn_id = uuid::Uuid::new_v4().to_string();
                        let pid = init_state.live.next_pid(&init_state.config.node);
                        init_state
                            .store
                            .ws_open(&conn_id, &p.session_id, &init_state.config.node, &pid, chrono::Utc::now().timestamp())
                            .await
                            .map_err(|e| {
                                tracing::error!(error = %e, "cannot record a WebSocket connection");
                                async_graphql::Error::new("internal server error")
                            })?;
                        init_state.live.register(&p.session_id, &conn_id, init_cancel);
                        *init_registration.lock().unwrap_or_else(|e| e.into_inner()) = Some(Registration {
                            conn_id,
                            session_id: p.session_id.clone(),
                            token_hash: p.token_hash.clone(),
                        });
                    }
                    let mut data = Data::default();
                    data.insert(init_state.clone());
                    data.insert::<Option<Principal>>(principal);
                    init_done.store(true, Ordering::Release);
                    Ok(data)
                })
                .serve();
            tokio::pin!(serve);
            tokio::pin!(init_deadline);
            let mut recheck = tokio::time::interval(WS_RECHECK);
            recheck.tick().await;
            loop {
                tokio::select! {
                    _ = &mut serve => break,
                    _ = cancel.cancelled() => break,
                    // A connection that never says who it is does not hold a socket forever.
                    // (The condition is read when the select starts: read it again.)
                    _ = &mut init_deadline, if !initialized.load(Ordering::Acquire) => {
                        if !initialized.load(Ordering::Acquire) {
                            break;
                        }
                    }
                    _ = recheck.tick() => {
                        let current = registration.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        if let Some(r) = current {
                            let now = chrono::Utc::now().timestamp();
                            if let Ok(None) = state.store.session_by_token(&r.token_hash, now).await {
                                break;
                            }
                        }
                    }
                }
            }
            let current = registration.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(r) = current {
                state.live.unregister(&r.session_id, &r.conn_id);
                if let Err(e) = state.store.ws_close(&r.conn_id).await {
                    tracing::warn!(error = %e, "cannot remove a closed WebSocket connection");
                }
            }
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_schema_matches_the_code() {
        let committed = include_str!("../../../fixtures/schema.graphql");
        assert!(
            committed == super::sdl(),
            "fixtures/schema.graphql is out of date: run `cargo run -- schema > fixtures/schema.graphql`"
        );
    }
}

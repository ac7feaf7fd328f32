//! The web-sessions REST API (SPEC §6, seed 001): list open web sessions (with their live
//! WebSocket connections), close all of a user's sessions but the current one, close one.
//! `sites` is JSON: a list of site names, `"all"` or `"current"` (the default).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::console::ConsoleError;
use super::negotiate::Format;
use super::AppState;
use crate::auth::{self, Principal};
use crate::store::users::WebSessionRow;

pub const PATH: &str = "/rest/v1/master/logicalroles/ws/sessions";

const SITES_FORMS: &str =
    "sites must be JSON: a list of site names such as [\"SITE1\"], \"all\" or \"current\"";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list).post(logout_all_but_current))
        .route(&format!("{PATH}/{{session_id}}"), delete(close_one))
}

fn error(status: StatusCode, message: impl Into<String>) -> ConsoleError {
    ConsoleError::new(status, message, Format::Json)
}

/// Which sites a request covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sites {
    All,
    List(Vec<String>),
}

impl Sites {
    /// Reads `sites` as JSON: a list of names, `"all"`, `"current"`; absent = current.
    pub fn parse(value: Option<&serde_json::Value>, current: &str) -> Result<Sites, ConsoleError> {
        let bad = || error(StatusCode::BAD_REQUEST, SITES_FORMS);
        match value {
            None => Ok(Sites::List(vec![current.to_owned()])),
            Some(serde_json::Value::String(s)) if s == "all" => Ok(Sites::All),
            Some(serde_json::Value::String(s)) if s == "current" => {
                Ok(Sites::List(vec![current.to_owned()]))
            }
            Some(serde_json::Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()
                .map(Sites::List),
            Some(_) => Err(bad()),
        }
    }

    /// Reads `sites` from a query string (JSON text, URL-decoded).
    fn from_query(query: &HashMap<String, String>, current: &str) -> Result<Sites, ConsoleError> {
        match query.get("sites") {
            None => Ok(Sites::List(vec![current.to_owned()])),
            Some(text) => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|_| error(StatusCode::BAD_REQUEST, SITES_FORMS))?;
                Sites::parse(Some(&value), current)
            }
        }
    }

    fn covers(&self, site: &str) -> bool {
        match self {
            Sites::All => true,
            Sites::List(list) => list.iter().any(|s| s == site),
        }
    }
}

async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ConsoleError> {
    auth::authenticate(&state.store, headers)
        .await
        .map_err(|e| ConsoleError::from_auth(e, Format::Json))
}

/// A connection as the seed document shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Connection {
    conn_id: String,
    is_pid_alive: bool,
    node: String,
    pid: String,
}

/// One entry of the listing (field order as in the seed document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebSession {
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<Vec<Connection>>,
    domain: String,
    login: String,
    session_id: String,
    /// `http`, or `websocket` for the live WebSocket connections of the same session.
    session_type: String,
    site: String,
    /// Remaining lifetime in seconds.
    ttl: i64,
    /// The user's UUID.
    user_id: String,
}

fn entry(s: &WebSessionRow, now: i64, connections: Option<Vec<Connection>>) -> WebSession {
    WebSession {
        session_type: if connections.is_some() {
            "websocket"
        } else {
            "http"
        }
        .to_owned(),
        connections,
        domain: s.domain.clone(),
        login: s.login.clone(),
        session_id: s.session_id.clone(),
        site: s.site.clone(),
        ttl: (s.expires_at - now).max(0),
        user_id: s.user_uuid.clone(),
    }
}

/// Open web sessions of the selected sites: every user's for an admin, one's own otherwise. A
/// session with live WebSocket connections appears a second time as `websocket`.
#[utoipa::path(get, path = "/rest/v1/master/logicalroles/ws/sessions", tag = "web sessions",
    params(("sites" = Option<String>, Query, description = "JSON: [\"SITE1\", ...], \"all\" or \"current\" (default)")),
    security(("Authtoken" = [])),
    responses(
        (status = 200, description = "the open web sessions", body = Vec<WebSession>),
        (status = 400, description = "sites is not one of the accepted forms"),
        (status = 401, description = "missing or invalid token"),
    ))]
async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ConsoleError> {
    let principal = principal(&state, &headers).await?;
    let Ok(Query(query)) = query else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the query string is malformed",
        ));
    };
    let sites = Sites::from_query(&query, &state.config.site)?;
    let now = chrono::Utc::now().timestamp();
    let alive_since = now - crate::app::NODE_DEAD_AFTER.as_secs() as i64;
    let sessions = state
        .store
        .open_web_sessions(now)
        .await
        .map_err(|e| ConsoleError::internal(e, Format::Json))?;
    let mut connections: HashMap<String, Vec<Connection>> = HashMap::new();
    for c in state
        .store
        .open_ws_connections(now, alive_since)
        .await
        .map_err(|e| ConsoleError::internal(e, Format::Json))?
    {
        connections
            .entry(c.session_id)
            .or_default()
            .push(Connection {
                conn_id: c.conn_id,
                is_pid_alive: c.alive,
                node: c.node,
                pid: c.pid,
            });
    }
    let mut out = Vec::new();
    for s in sessions
        .iter()
        .filter(|s| sites.covers(&s.site) && principal.can_manage_sessions_of(s.user_id))
    {
        out.push(entry(s, now, None));
        if let Some(conns) = connections.remove(&s.session_id) {
            out.push(entry(s, now, Some(conns)));
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::to_string(&out).map_err(|e| ConsoleError::internal(e, Format::Json))?,
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LogoutRequest {
    /// Must be `logout`.
    action: String,
    domain: String,
    /// The user's UUID or login.
    user: String,
    /// JSON: a list of site names, "all" or "current" (default).
    #[schema(value_type = Option<Object>)]
    sites: Option<serde_json::Value>,
}

/// Closes all of a user's web sessions in the domain except the one making the request, on
/// every node (their WebSocket connections close too).
#[utoipa::path(post, path = "/rest/v1/master/logicalroles/ws/sessions", tag = "web sessions",
    request_body = LogoutRequest,
    security(("Authtoken" = [])),
    responses(
        (status = 200, description = "{\"status\": \"logged out all sessions but current\"}"),
        (status = 400, description = "bad body, action other than logout, or bad sites"),
        (status = 401, description = "missing or invalid token"),
        (status = 403, description = "another user's sessions without the admin role"),
        (status = 404, description = "no such user in the domain"),
    ))]
async fn logout_all_but_current(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ConsoleError> {
    let principal = principal(&state, &headers).await?;
    let body = body.map_err(|e| ConsoleError::from_body(e, Format::Json))?;
    let request: LogoutRequest = serde_json::from_slice(&body).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "the body must be JSON {\"action\": \"logout\", \"domain\": ..., \"user\": ..., \"sites\": ...}",
        )
    })?;
    if request.action != "logout" {
        return Err(error(StatusCode::BAD_REQUEST, "action must be \"logout\""));
    }
    let sites = Sites::parse(request.sites.as_ref(), &state.config.site)?;
    let internal = |e| ConsoleError::internal(e, Format::Json);
    let user = match state
        .store
        .user_by_login(&request.domain, &request.user)
        .await
        .map_err(internal)?
    {
        Some(u) => Some(u),
        None => state
            .store
            .user_by_uuid(&request.user)
            .await
            .map_err(internal)?
            .filter(|u| u.domain == request.domain),
    }
    .ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no user {} in domain {}", request.user, request.domain),
        )
    })?;
    if !principal.can_manage_sessions_of(user.id) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "closing another user's sessions needs the admin role",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let targets: Vec<String> = state
        .store
        .open_web_sessions(now)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|s| {
            s.user_id == user.id
                && s.domain == request.domain
                && sites.covers(&s.site)
                && s.session_id != principal.session_id
        })
        .map(|s| s.session_id)
        .collect();
    let closed = state
        .store
        .close_web_sessions(&targets, now)
        .await
        .map_err(internal)?;
    state.live.close_sessions(&closed);
    tracing::info!(by = %principal.login, user = %user.login, closed = closed.len(), "web sessions logged out");
    Ok(
        Json(serde_json::json!({ "status": "logged out all sessions but current" }))
            .into_response(),
    )
}

/// Closes one web session (and its WebSocket connections, on every node).
#[utoipa::path(delete, path = "/rest/v1/master/logicalroles/ws/sessions/{session_id}", tag = "web sessions",
    params(
        ("session_id" = String, Path, description = "the session to close"),
        ("sites" = Option<String>, Query, description = "JSON: [\"SITE1\", ...], \"all\" or \"current\" (default)"),
    ),
    security(("Authtoken" = [])),
    responses(
        (status = 204, description = "closed"),
        (status = 400, description = "bad sites"),
        (status = 401, description = "missing or invalid token"),
        (status = 403, description = "another user's session without the admin role"),
        (status = 404, description = "no such open session in the sites"),
    ))]
async fn close_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ConsoleError> {
    let principal = principal(&state, &headers).await?;
    let Ok(Path(session_id)) = path else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the session id in the path is malformed",
        ));
    };
    let Ok(Query(query)) = query else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the query string is malformed",
        ));
    };
    let sites = Sites::from_query(&query, &state.config.site)?;
    let internal = |e| ConsoleError::internal(e, Format::Json);
    let now = chrono::Utc::now().timestamp();
    let session = state
        .store
        .open_web_sessions(now)
        .await
        .map_err(internal)?
        .into_iter()
        .find(|s| s.session_id == session_id && sites.covers(&s.site))
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("no open web session {session_id}"),
            )
        })?;
    if !principal.can_manage_sessions_of(session.user_id) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "closing another user's session needs the admin role",
        ));
    }
    let closed = state
        .store
        .close_web_sessions(std::slice::from_ref(&session.session_id), now)
        .await
        .map_err(internal)?;
    state.live.close_sessions(&closed);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, logout_all_but_current, close_one))]
pub struct WebSessionsApi;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sites_take_the_three_json_forms() {
        assert_eq!(
            Sites::parse(None, "c").unwrap(),
            Sites::List(vec!["c".into()])
        );
        assert_eq!(Sites::parse(Some(&json!("all")), "c").unwrap(), Sites::All);
        assert_eq!(
            Sites::parse(Some(&json!("current")), "c").unwrap(),
            Sites::List(vec!["c".into()])
        );
        assert_eq!(
            Sites::parse(Some(&json!(["a", "b"])), "c").unwrap(),
            Sites::List(vec!["a".into(), "b".into()])
        );
        for bad in [
            json!("SITE1"),
            json!(1),
            json!([1]),
            json!([]),
            json!({"a": 1}),
        ] {
            let e = Sites::parse(Some(&bad), "c").unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains("sites"));
        }
    }
}

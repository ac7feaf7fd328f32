//! The console API in the style of Commvault's (SPEC §5, §7): `GET <webservice>/` (the probe
//! SDKs send before Login), `POST Login`, `POST Logout`, and `GET Session?userId=N` in XML or
//! JSON. Errors have the Commvault shape, `{"errorCode": <status>, "errorMessage": "..."}` or
//! `<Error errorCode="..." errorMessage="..."/>`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::negotiate::{error_format, response_format, Format};
use super::AppState;
use crate::auth::{self, AuthError, Principal, Role};
use crate::store::users::{NewWebSession, WebSessionRow};

/// Default `consoleType` of a Login (19: Web Console and mobile applications).
const DEFAULT_CONSOLE_TYPE: i64 = 19;
/// Longest accepted `host` of a Login.
const MAX_HOST_LEN: usize = 255;

pub fn router(webservice: &str) -> Router<AppState> {
    Router::new()
        .route(webservice, get(probe))
        .route(&format!("{webservice}/"), get(probe))
        .route(&format!("{webservice}/Login"), post(login))
        .route(&format!("{webservice}/Logout"), post(logout))
        .route(&format!("{webservice}/Session"), get(session))
}

/// An error in the Commvault shape, in the format the client asked for.
#[derive(Debug)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
    pub format: Format,
    pub retry_after: Option<u64>,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>, format: Format) -> Self {
        Self {
            status,
            message: message.into(),
            format,
            retry_after: None,
        }
    }

    /// A server fault: logged here, reported without detail.
    pub(crate) fn internal(error: impl std::fmt::Display, format: Format) -> Self {
        tracing::error!(%error, "console API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error",
            format,
        )
    }

    /// A request body that could not be read: too large (413) or broken off (400).
    pub(crate) fn from_body(e: BytesRejection, format: Format) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than 1 MiB",
                format,
            )
        } else {
            Self::new(
                StatusCode::BAD_REQUEST,
                "the request body cannot be read",
                format,
            )
        }
    }

    pub(crate) fn from_auth(e: AuthError, format: Format) -> Self {
        match e {
            AuthError::Missing => Self::new(
                StatusCode::UNAUTHORIZED,
                "an Authtoken header is required",
                format,
            ),
            AuthError::Invalid => Self::new(
                StatusCode::UNAUTHORIZED,
                "the token is invalid or has expired",
                format,
            ),
            AuthError::Store(e) => Self::internal(e, format),
        }
    }
}

#[derive(Serialize)]
#[serde(rename = "Error")]
struct XmlError<'a> {
    #[serde(rename = "@errorCode")]
    error_code: u16,
    #[serde(rename = "@errorMessage")]
    error_message: &'a str,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
struct JsonError<'a> {
    #[serde(rename = "errorCode")]
    error_code: u16,
    #[serde(rename = "errorMessage")]
    error_message: &'a str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let code = self.status.as_u16();
        let mut response = match self.format {
            Format::Json => (
                self.status,
                Json(JsonError {
                    error_code: code,
                    error_message: &self.message,
                }),
            )
                .into_response(),
            Format::Xml => xml(
                self.status,
                &XmlError {
                    error_code: code,
                    error_message: &self.message,
                },
            ),
        };
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

fn xml<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match quick_xml::se::to_string(value) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\" ?>\n{body}"),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise XML");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
        }
    }
}

/// The probe SDKs send before Login; needs no token.
#[utoipa::path(get, path = "/webconsole/api/", tag = "console",
    responses((status = 200, description = "the web service answers")))]
async fn probe() -> impl IntoResponse {
    Json(serde_json::json!({ "service": "radacctd", "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LoginRequest {
    username: String,
    /// Base64 of the password.
    password: String,
    #[serde(rename = "consoleType")]
    console_type: Option<i64>,
    host: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct LoginResponse {
    token: String,
    #[serde(rename = "userName")]
    user_name: String,
    #[serde(rename = "userId")]
    user_id: i64,
    #[serde(rename = "userGUID")]
    user_guid: String,
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// Logs in: the password is base64-encoded; unknown JSON fields are ignored.
#[utoipa::path(post, path = "/webconsole/api/Login", tag = "console",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "logged in", body = LoginResponse),
        (status = 400, description = "not JSON, or the password is not base64", body = JsonError),
        (status = 401, description = "unknown user or wrong password (the same answer)", body = JsonError),
        (status = 429, description = "too many failed logins from this address; see Retry-After", body = JsonError),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ConsoleError> {
    let format = error_format(&headers);
    let body = body.map_err(|e| ConsoleError::from_body(e, format))?;
    let bad = |m: &str| ConsoleError::new(StatusCode::BAD_REQUEST, m, format);
    let request: LoginRequest = serde_json::from_slice(&body)
        .map_err(|_| bad("the body must be JSON {\"username\": ..., \"password\": <base64>}"))?;
    let password = base64::engine::general_purpose::STANDARD
        .decode(request.password.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("password must be the base64 encoding of a UTF-8 password"))?;
    let console_type = request.console_type.unwrap_or(DEFAULT_CONSOLE_TYPE);
    let host = request.host.unwrap_or_else(|| peer.ip().to_string());
    if host.len() > MAX_HOST_LEN || !(0..=i64::from(i32::MAX)).contains(&console_type) {
        return Err(bad("host or consoleType out of range"));
    }

    let ip = crate::config::normalize_ip(peer.ip());
    let blocked = auth::login_blocked_for(&state.store, ip, chrono::Utc::now().timestamp())
        .await
        .map_err(|e| ConsoleError::internal(e, format))?;
    if let Some(wait) = blocked {
        let mut e = ConsoleError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again later",
            format,
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }

    let user = state
        .store
        .user_by_login(&state.config.domain, &request.username)
        .await
        .map_err(|e| ConsoleError::internal(e, format))?;
    let can_log_in = user
        .as_ref()
        .and_then(|u| Role::parse(&u.role))
        .is_some_and(|r| r != Role::Subscriber);
    let stored = user
        .as_ref()
        .filter(|_| can_log_in)
        .and_then(|u| u.password_hash.clone());
    // Argon2 is deliberately slow: keep it off the async workers. The check runs whether or not
    // the user exists, so both failures take the same time.
    let ok =
        tokio::task::spawn_blocking(move || auth::verify_password(&password, stored.as_deref()))
            .await
            .map_err(|e| ConsoleError::internal(e, format))?;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => {
            auth::record_login_failure(&state.store, ip, chrono::Utc::now().timestamp())
                .await
                .map_err(|e| ConsoleError::internal(e, format))?;
            return Err(ConsoleError::new(
                StatusCode::UNAUTHORIZED,
                "Login failed: wrong user name or password",
                format,
            ));
        }
    };

    let (token, token_hash) = auth::new_token();
    let session_id = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(state.config.sessions.ttl.as_secs()).unwrap_or(i64::MAX / 2);
    state
        .store
        .session_create(&NewWebSession {
            session_id: &session_id,
            token_hash: &token_hash,
            user_id: user.id,
            domain: &user.domain,
            site: &state.config.site,
            node: &state.config.node,
            console_type,
            host: &host,
            login_time: now,
            expires_at: now.saturating_add(ttl),
        })
        .await
        .map_err(|e| ConsoleError::internal(e, format))?;
    tracing::info!(user = %user.login, session_id = %session_id, "login");
    Ok(Json(LoginResponse {
        token,
        user_name: user.login,
        user_id: user.id,
        user_guid: user.uuid,
        session_id,
    })
    .into_response())
}

/// Ends the token's session. The body and its content type are ignored (SDKs send an empty
/// `application/xml` body).
#[utoipa::path(post, path = "/webconsole/api/Logout", tag = "console",
    security(("Authtoken" = [])),
    responses(
        (status = 200, description = "the token's session is closed"),
        (status = 401, description = "missing, closed or expired token", body = JsonError),
    ))]
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    let format = error_format(&headers);
    let principal = auth::authenticate(&state.store, &headers)
        .await
        .map_err(|e| ConsoleError::from_auth(e, format))?;
    let closed = state
        .store
        .close_web_sessions(
            std::slice::from_ref(&principal.session_id),
            chrono::Utc::now().timestamp(),
        )
        .await
        .map_err(|e| ConsoleError::internal(e, format))?;
    if closed.is_empty() {
        return Err(ConsoleError::from_auth(AuthError::Invalid, format));
    }
    state.live.close_sessions(&closed);
    Ok(
        Json(serde_json::json!({ "errorCode": 0, "errorMessage": "User logged out" }))
            .into_response(),
    )
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SessionQuery {
    /// `users.id` of the user whose console sessions to list.
    #[param(value_type = i64)]
    #[serde(rename = "userId")]
    user_id: Option<String>,
}

/// A user's console sessions, open ones and those closed within `sessions.retention`. XML unless
/// Accept asks for JSON; the header `ONLY-ACTIVE-SESSIONS: true` leaves out closed ones.
#[utoipa::path(get, path = "/webconsole/api/Session", tag = "console",
    params(SessionQuery),
    security(("Authtoken" = [])),
    responses(
        (status = 200, description = "the sessions", content(
            (JsonSessions = "application/json"),
            (String = "application/xml", example = json!("<Api_GetLoggedInSessionsResp><sessions logoutTime=\"0\" loginTime=\"1453328412\" host=\"host002\" description=\"\" sessionId=\"...\" browserSessionId=\"3\" consoleType=\"19\"><user userName=\"jsmith\" userId=\"10\"/></sessions></Api_GetLoggedInSessionsResp>")),
        )),
        (status = 400, description = "missing, non-integer or out-of-range userId", body = JsonError),
        (status = 401, description = "missing or invalid token", body = JsonError),
        (status = 403, description = "another user's sessions without the permission \"Add, Delete and Modify a User\"", body = JsonError),
        (status = 404, description = "unknown user", body = JsonError),
        (status = 406, description = "Accept allows neither XML nor JSON", body = JsonError),
    ))]
async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ConsoleError> {
    let format = response_format(&headers).ok_or_else(|| {
        ConsoleError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must allow application/xml or application/json",
            Format::Json,
        )
    })?;
    let principal: Principal = auth::authenticate(&state.store, &headers)
        .await
        .map_err(|e| ConsoleError::from_auth(e, format))?;
    let bad = |m: &str| ConsoleError::new(StatusCode::BAD_REQUEST, m, format);
    let Ok(Query(query)) = query else {
        return Err(bad("the query string is malformed"));
    };
    let user_id: i64 = query
        .user_id
        .as_deref()
        .ok_or_else(|| bad("userId is required"))?
        .trim()
        .parse()
        .map_err(|_| bad("userId must be an integer within 64 bits"))?;
    if !principal.can_manage_sessions_of(user_id) {
        return Err(ConsoleError::new(
            StatusCode::FORBIDDEN,
            "reading another user's sessions needs the permission \"Add, Delete and Modify a User\"",
            format,
        ));
    }
    let user = state
        .store
        .user_by_id(user_id)
        .await
        .map_err(|e| ConsoleError::internal(e, format))?
        .ok_or_else(|| {
            ConsoleError::new(
                StatusCode::NOT_FOUND,
                format!("no user with userId {user_id}"),
                format,
            )
        })?;
    let only_active = headers
        .get("only-active-sessions")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let now = chrono::Utc::now().timestamp();
    let retention =
        i64::try_from(state.config.sessions.retention.as_secs()).unwrap_or(i64::MAX / 2);
    let rows = state
        .store
        .console_sessions(user.id, now, now.saturating_sub(retention), only_active)
        .await
        .map_err(|e| ConsoleError::internal(e, format))?;
    let sessions: Vec<SessionOut> = rows.iter().map(|r| SessionOut::new(r, now)).collect();
    Ok(match format {
        Format::Json => Json(JsonSessions { sessions }).into_response(),
        Format::Xml => xml(
            StatusCode::OK,
            &XmlSessions {
                sessions: sessions.iter().map(XmlSession::from).collect(),
            },
        ),
    })
}

/// One console session as the seed document describes it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SessionOut {
    logout_time: i64,
    login_time: i64,
    host: String,
    description: String,
    session_id: String,
    browser_session_id: i64,
    console_type: i64,
    user: UserOut,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserOut {
    user_name: String,
    user_id: i64,
}

impl SessionOut {
    fn new(r: &WebSessionRow, now: i64) -> Self {
        // An expired session ended when it expired.
        let logout_time = r
            .logout_time
            .or((r.expires_at <= now).then_some(r.expires_at))
            .unwrap_or(0);
        Self {
            logout_time,
            login_time: r.login_time,
            host: r.host.clone(),
            description: String::new(),
            session_id: r.session_id.clone(),
            browser_session_id: r.id,
            console_type: r.console_type,
            user: UserOut {
                user_name: r.login.clone(),
                user_id: r.user_id,
            },
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct JsonSessions {
    sessions: Vec<SessionOut>,
}

#[derive(Serialize)]
#[serde(rename = "Api_GetLoggedInSessionsResp")]
struct XmlSessions<'a> {
    sessions: Vec<XmlSession<'a>>,
}

#[derive(Serialize)]
struct XmlSession<'a> {
    #[serde(rename = "@logoutTime")]
    logout_time: i64,
    #[serde(rename = "@loginTime")]
    login_time: i64,
    #[serde(rename = "@host")]
    host: &'a str,
    #[serde(rename = "@description")]
    description: &'a str,
    #[serde(rename = "@sessionId")]
    session_id: &'a str,
    #[serde(rename = "@browserSessionId")]
    browser_session_id: i64,
    #[serde(rename = "@consoleType")]
    console_type: i64,
    user: XmlUser<'a>,
}

#[derive(Serialize)]
struct XmlUser<'a> {
    #[serde(rename = "@userName")]
    user_name: &'a str,
    #[serde(rename = "@userId")]
    user_id: i64,
}

impl<'a> From<&'a SessionOut> for XmlSession<'a> {
    fn from(s: &'a SessionOut) -> Self {
        Self {
            logout_time: s.logout_time,
            login_time: s.login_time,
            host: &s.host,
            description: &s.description,
            session_id: &s.session_id,
            browser_session_id: s.browser_session_id,
            console_type: s.console_type,
            user: XmlUser {
                user_name: &s.user.user_name,
                user_id: s.user.user_id,
            },
        }
    }
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(probe, login, logout, session))]
pub struct ConsoleApi;

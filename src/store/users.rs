//! Row types of `users` and `web_sessions`, shared by both backends.

use serde::Serialize;

/// A `users` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    /// The integer `userId` of the APIs.
    pub id: i64,
    /// The UUID (`user_id` of the web-session API, `userGUID` of Login).
    pub uuid: String,
    pub login: String,
    pub domain: String,
    pub role: String,
    /// Argon2 PHC string; None = cannot log in.
    #[serde(skip)]
    pub password_hash: Option<String>,
}

/// A new Login.
#[derive(Debug, Clone)]
pub struct NewWebSession<'a> {
    pub session_id: &'a str,
    pub token_hash: &'a str,
    pub user_id: i64,
    pub domain: &'a str,
    pub site: &'a str,
    pub node: &'a str,
    pub console_type: i64,
    pub host: &'a str,
    /// UNIX seconds.
    pub login_time: i64,
    pub expires_at: i64,
}

/// A `web_sessions` row with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSessionRow {
    /// `browserSessionId`.
    pub id: i64,
    pub session_id: String,
    pub user_id: i64,
    pub user_uuid: String,
    pub login: String,
    pub role: String,
    pub domain: String,
    pub site: String,
    pub node: String,
    pub console_type: i64,
    pub host: String,
    pub login_time: i64,
    pub expires_at: i64,
    pub logout_time: Option<i64>,
}

/// The columns every backend selects for a [`WebSessionRow`] (times as UNIX seconds).
macro_rules! web_session_row {
    ($r:expr) => {
        $crate::store::users::WebSessionRow {
            id: $r.try_get("id")?,
            session_id: $r.try_get("session_id")?,
            user_id: $r.try_get("user_id")?,
            user_uuid: $r.try_get("user_uuid")?,
            login: $r.try_get("login")?,
            role: $r.try_get("role")?,
            domain: $r.try_get("domain")?,
            site: $r.try_get("site")?,
            node: $r.try_get("node")?,
            console_type: $r.try_get("console_type")?,
            host: $r.try_get("host")?,
            login_time: $r.try_get("login_time")?,
            expires_at: $r.try_get("expires_at")?,
            logout_time: $r.try_get("logout_time")?,
        }
    };
}

macro_rules! user_row {
    ($r:expr) => {
        $crate::store::users::UserRow {
            id: $r.try_get("id")?,
            uuid: $r.try_get("uuid")?,
            login: $r.try_get("login")?,
            domain: $r.try_get("domain")?,
            role: $r.try_get("role")?,
            password_hash: $r.try_get("password_hash")?,
        }
    };
}

pub(crate) use {user_row, web_session_row};

/// A live WebSocket connection of a web session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConnectionRow {
    pub conn_id: String,
    pub session_id: String,
    pub node: String,
    pub pid: String,
    /// Whether the node holding it has sent a heartbeat recently.
    pub alive: bool,
}

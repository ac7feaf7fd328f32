//! Authentication and permissions, in one place for every API: argon2 password hashes, tokens
//! (only their SHA-256 is stored), the per-address login-failure limit, and the [`Principal`]
//! that handlers receive and ask for permissions.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::store::users::WebSessionRow;
use crate::store::{Store, StoreError};

/// Failed logins from one address allowed per [`LOGIN_WINDOW`]; the next ones get 429.
pub const LOGIN_FAILURES_ALLOWED: usize = 10;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Random bytes in a token (printed as hex after `QSDK `).
const TOKEN_BYTES: usize = 48;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Has the permission "Add, Delete and Modify a User".
    Admin,
    /// May read all accounting.
    Operator,
    /// An accounting user; cannot log in.
    Subscriber,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "subscriber" => Some(Role::Subscriber),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Subscriber => "subscriber",
        }
    }
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Checks a password. Without a stored hash (unknown user, or a user who cannot log in) a dummy
/// hash is checked instead, so both cases take the time of a real check.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("radacctd-dummy-password"));
    let (hash, real) = match stored {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        // A corrupt stored hash: still spend the time of a check.
        let _ = PasswordHash::new(dummy)
            .map(|d| Argon2::default().verify_password(password.as_bytes(), &d));
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        && real
}

/// A new token and the hash that is stored for it.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("QSDK {}", hex::encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// The token a request carries: `Authtoken: <token>` or `Authorization: Bearer <token>`.
pub fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("authtoken").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v.to_owned());
        }
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Who is making a request, as established from its token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub user_uuid: String,
    pub login: String,
    pub role: Role,
    /// The Login session the token belongs to.
    pub session_id: String,
    pub token_hash: String,
}

impl Principal {
    /// "Add, Delete and Modify a User": reading or closing other users' web/console sessions.
    pub fn can_manage_users(&self) -> bool {
        self.role == Role::Admin
    }

    /// Reading a user's accounting sessions.
    pub fn can_read_accounting_of(&self, user_id: i64) -> bool {
        self.user_id == user_id || self.can_read_all_accounting()
    }

    /// Reading every user's accounting (and the service's metrics where they need a token).
    pub fn can_read_all_accounting(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator)
    }

    /// Reading or closing a user's web and console sessions.
    pub fn can_manage_sessions_of(&self, user_id: i64) -> bool {
        self.user_id == user_id || self.can_manage_users()
    }
}

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid or expired token")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a request carries more than one `Authtoken` or `Authorization` header: which of them
/// counts would be a guess, so such a request is not authenticated.
fn ambiguous_token(headers: &HeaderMap) -> bool {
    headers.get_all("authtoken").iter().count() > 1
        || headers
            .get_all(axum::http::header::AUTHORIZATION)
            .iter()
            .count()
            > 1
}

/// Establishes the principal of a request: the token must belong to an open, unexpired session
/// in the database (checked on every request, so a Logout on any node counts at once).
pub async fn authenticate(store: &Store, headers: &HeaderMap) -> Result<Principal, AuthError> {
    if ambiguous_token(headers) {
        return Err(AuthError::Invalid);
    }
    let token = token_from_headers(headers).ok_or(AuthError::Missing)?;
    let hash = token_hash(&token);
    let now = chrono::Utc::now().timestamp();
    let session = store
        .session_by_token(&hash, now)
        .await?
        .ok_or(AuthError::Invalid)?;
    principal(session, hash).ok_or(AuthError::Invalid)
}

fn principal(s: WebSessionRow, token_hash: String) -> Option<Principal> {
    let role = Role::parse(&s.role)?;
    if role == Role::Subscriber {
        return None;
    }
    Some(Principal {
        user_id: s.user_id,
        user_uuid: s.user_uuid,
        login: s.login,
        role,
        session_id: s.session_id,
        token_hash,
    })
}

/// When `ip` has failed [`LOGIN_FAILURES_ALLOWED`] logins within the [`LOGIN_WINDOW`] before
/// `now` (UNIX seconds), on any node: how long until it may try again. The failures are in the
/// database, so nodes behind one load balancer share the limit.
pub async fn login_blocked_for(
    store: &Store,
    ip: IpAddr,
    now: i64,
) -> Result<Option<Duration>, StoreError> {
    let window = LOGIN_WINDOW.as_secs() as i64;
    let recent = store
        .recent_login_failures(&ip.to_string(), now - window, LOGIN_FAILURES_ALLOWED as i64)
        .await?;
    Ok(blocked_for(&recent, now))
}

/// Records a failed login from `ip` at `now` (and forgets failures older than the window).
pub async fn record_login_failure(store: &Store, ip: IpAddr, now: i64) -> Result<(), StoreError> {
    let window = LOGIN_WINDOW.as_secs() as i64;
    store
        .record_login_failure(&ip.to_string(), now, now - window)
        .await
}

/// The limit's decision from an address's newest failures within the window, newest first.
fn blocked_for(recent: &[i64], now: i64) -> Option<Duration> {
    if recent.len() < LOGIN_FAILURES_ALLOWED {
        return None;
    }
    // The oldest of the last allowed failures leaves the window first.
    let oldest = *recent.get(LOGIN_FAILURES_ALLOWED - 1)?;
    let left = LOGIN_WINDOW.as_secs() as i64 - (now - oldest);
    Some(Duration::from_secs(left.max(1) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("s3cret");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", Some(&h)));
        assert!(!verify_password("other", Some(&h)));
        assert!(!verify_password("s3cret", None));
        assert!(!verify_password("s3cret", Some("not a hash")));
    }

    #[test]
    fn tokens_are_qsdk_hex_and_only_their_hash_is_kept() {
        let (token, hash) = new_token();
        assert!(token.starts_with("QSDK "));
        assert_eq!(token.len(), 5 + 2 * TOKEN_BYTES);
        assert_eq!(hash, token_hash(&token));
        assert!(!hash.contains(&token[5..]));
    }

    #[test]
    fn the_eleventh_failure_within_a_minute_is_blocked_until_the_tenth_last_leaves_it() {
        let now = 1_000_000;
        // Newest first: nine failures are not enough.
        let nine: Vec<i64> = (0..9).map(|i| now - i).collect();
        assert_eq!(blocked_for(&nine, now), None);
        // Ten, the oldest of them 50 s ago: 10 s to wait.
        let ten: Vec<i64> = (0..10).map(|i| now - 50 + (9 - i)).collect();
        assert_eq!(blocked_for(&ten, now), Some(Duration::from_secs(10)));
        // Never less than a second.
        let old: Vec<i64> = vec![now - 59; 10];
        assert_eq!(blocked_for(&old, now + 5), Some(Duration::from_secs(1)));
    }

    #[test]
    fn tokens_come_from_authtoken_or_bearer() {
        let mut h = HeaderMap::new();
        h.insert("authtoken", "QSDK abc".parse().unwrap());
        assert_eq!(token_from_headers(&h).as_deref(), Some("QSDK abc"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer QSDK abc".parse().unwrap());
        assert_eq!(token_from_headers(&h).as_deref(), Some("QSDK abc"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic xyz".parse().unwrap());
        assert_eq!(token_from_headers(&h), None);
        let mut twice = HeaderMap::new();
        twice.append("authtoken", "QSDK a".parse().unwrap());
        assert!(!ambiguous_token(&twice));
        twice.append("authtoken", "QSDK b".parse().unwrap());
        assert!(ambiguous_token(&twice));
    }
}

//! Authentication and permissions, in one place for every API: argon2 password hashes, tokens
//! (only their SHA-256 is stored), the per-address login-failure limit, and the [`Principal`]
//! that handlers receive and ask for permissions.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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
/// Addresses the failure table tracks at most (the oldest quiet ones are forgotten first).
pub const LOGIN_TABLE_CAPACITY: usize = 10_000;
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

/// Failed logins per source address within the last [`LOGIN_WINDOW`].
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// When the address is over its limit: how long until it may try again.
    pub fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut table = self.lock();
        let entry = table.get_mut(&ip)?;
        prune(entry, now);
        if entry.len() >= LOGIN_FAILURES_ALLOWED {
            let oldest = *entry.front()?;
            Some(
                LOGIN_WINDOW
                    .saturating_sub(now.duration_since(oldest))
                    .max(Duration::from_secs(1)),
            )
        } else {
            None
        }
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut table = self.lock();
        if table.len() >= LOGIN_TABLE_CAPACITY && !table.contains_key(&ip) {
            table.retain(|_, v| {
                prune(v, now);
                !v.is_empty()
            });
            if table.len() >= LOGIN_TABLE_CAPACITY {
                // Still full of active addresses: forget the one with the oldest last failure.
                if let Some(victim) = table
                    .iter()
                    .min_by_key(|(_, v)| v.back().copied())
                    .map(|(k, _)| *k)
                {
                    table.remove(&victim);
                }
            }
        }
        let entry = table.entry(ip).or_default();
        prune(entry, now);
        entry.push_back(now);
        while entry.len() > LOGIN_FAILURES_ALLOWED {
            entry.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn prune(entry: &mut VecDeque<Instant>, now: Instant) {
    while entry
        .front()
        .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
    {
        entry.pop_front();
    }
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
    fn the_eleventh_failure_within_a_minute_is_blocked() {
        let limiter = LoginLimiter::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..LOGIN_FAILURES_ALLOWED {
            assert!(limiter.blocked_for(ip, t0).is_none());
            limiter.record_failure(ip, t0);
        }
        assert!(limiter.blocked_for(ip, t0).is_some());
        assert!(limiter.blocked_for(other, t0).is_none());
        assert!(limiter.blocked_for(ip, t0 + LOGIN_WINDOW).is_none());
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

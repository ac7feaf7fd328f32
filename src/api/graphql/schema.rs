//! The GraphQL schema: the seed query `getOnlineSessions`, and what GraphQL consumers expect
//! beyond it (users, all online sessions with filters and cursors, history, counts per NAS,
//! `disconnectSession`, `sessionEvents`). Resolvers reach data only through the store and check
//! permissions through [`Principal`].

use async_graphql::{
    Context, Enum, ErrorExtensions, InputValueError, InputValueResult, Object, Scalar, ScalarType,
    SimpleObject, Subscription, Value,
};
use base64::Engine;
use futures_util::stream::{self, Stream, StreamExt};

use crate::api::AppState;
use crate::auth::Principal;
use crate::store::sessions::{After, OnlineFilter, SessionRow};
use crate::store::users::UserRow;

/// Largest page of `onlineSessions` and `sessionHistory`.
pub const MAX_PAGE: i32 = 1000;

pub type RadacctSchema = async_graphql::Schema<Query, Mutation, SubscriptionRoot>;

/// The error codes of `extensions.code`, and the HTTP status each maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "BAD_REQUEST",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// A GraphQL error with its code.
pub fn error(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code.as_str()))
}

/// A server fault: logged here, reported without detail.
fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "GraphQL resolver failed");
    error(Code::Internal, "internal server error")
}

fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// Who asks: `None` only for anonymous queries allowed by `auth.anonymous_graphql`.
fn principal<'a>(ctx: &Context<'a>) -> Option<&'a Principal> {
    ctx.data_opt::<Option<Principal>>().and_then(|p| p.as_ref())
}

/// Anonymous access (when enabled) reads like an operator; a principal needs the permission.
fn may_read_accounting_of(ctx: &Context<'_>, user_id: i64) -> async_graphql::Result<()> {
    match principal(ctx) {
        None => Ok(()),
        Some(p) if p.can_read_accounting_of(user_id) => Ok(()),
        Some(_) => Err(error(
            Code::Forbidden,
            "reading another user's sessions needs the operator or admin role",
        )),
    }
}

fn may_read_all_accounting(ctx: &Context<'_>) -> async_graphql::Result<()> {
    may_read_accounting_of(ctx, i64::MIN)
}

async fn user_by_id(ctx: &Context<'_>, id: i64) -> async_graphql::Result<UserRow> {
    state(ctx)
        .store
        .user_by_id(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| error(Code::NotFound, format!("no user with id {id}")))
}

/// RFC 3339, UTC, whole seconds, `Z`.
pub fn rfc3339(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// RFC 3339 or UNIX seconds.
fn parse_time(name: &str, value: &str) -> async_graphql::Result<i64> {
    seconds(value).ok_or_else(|| {
        error(
            Code::BadRequest,
            format!("{name} must be an RFC 3339 time or UNIX seconds"),
        )
    })
}

/// UNIX seconds of an RFC 3339 time or a string of UNIX seconds.
fn seconds(value: &str) -> Option<i64> {
    let value = value.trim();
    value.parse::<i64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(value)
            .ok()
            .map(|t| t.timestamp())
    })
}

/// A moment: an RFC 3339 time (`"2026-01-16T20:43:00Z"`) or UNIX seconds (a number, or a
/// string of digits). Written out as RFC 3339 in UTC.
#[derive(Debug, Clone, Copy)]
pub struct DateTime(pub i64);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        let secs = match &value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => seconds(s),
            _ => None,
        };
        secs.map(DateTime)
            .ok_or_else(|| InputValueError::custom("expected an RFC 3339 time or UNIX seconds"))
    }

    fn is_valid(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.as_i64().is_some(),
            Value::String(s) => seconds(s).is_some(),
            _ => false,
        }
    }

    fn to_value(&self) -> Value {
        match chrono::DateTime::from_timestamp(self.0, 0) {
            Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            None => Value::from(self.0),
        }
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// One accounting session (a `radacct` or `radacct_history` row).
pub struct Session(pub SessionRow);

#[Object]
impl Session {
    /// `radacctid`.
    async fn id(&self) -> i64 {
        self.0.radacctid
    }
    /// `acctsessionid` (Acct-Session-Id).
    async fn session_id(&self) -> &str {
        &self.0.acctsessionid
    }
    /// `acctuniqueid`.
    async fn unique_id(&self) -> &str {
        &self.0.acctuniqueid
    }
    async fn user_name(&self) -> Option<String> {
        non_empty(&self.0.username)
    }
    async fn nas_ip_address(&self) -> &str {
        &self.0.nasipaddress
    }
    async fn nas_port_id(&self) -> Option<String> {
        non_empty(&self.0.nasportid)
    }
    /// The dictionary name (`Wireless-802.11`, `Ethernet`, `Virtual`, ...).
    async fn nas_port_type(&self) -> Option<String> {
        non_empty(&self.0.nasporttype)
    }
    /// RFC 3339 UTC, whole seconds.
    async fn start_time(&self) -> Option<String> {
        self.0.acctstarttime.and_then(rfc3339)
    }
    async fn update_time(&self) -> Option<String> {
        self.0.acctupdatetime.and_then(rfc3339)
    }
    async fn stop_time(&self) -> Option<String> {
        self.0.acctstoptime.and_then(rfc3339)
    }
    async fn online(&self) -> bool {
        self.0.acctstoptime.is_none()
    }
    async fn connect_info_start(&self) -> Option<String> {
        non_empty(&self.0.connectinfo_start)
    }
    async fn connect_info_stop(&self) -> Option<String> {
        non_empty(&self.0.connectinfo_stop)
    }
    async fn calling_station_id(&self) -> Option<String> {
        non_empty(&self.0.callingstationid)
    }
    async fn called_station_id(&self) -> Option<String> {
        non_empty(&self.0.calledstationid)
    }
    async fn framed_ip_address(&self) -> Option<String> {
        non_empty(&self.0.framedipaddress)
    }
    async fn framed_ipv6_address(&self) -> Option<String> {
        non_empty(&self.0.framedipv6address)
    }
    async fn framed_ipv6_prefix(&self) -> Option<String> {
        non_empty(&self.0.framedipv6prefix)
    }
    async fn delegated_ipv6_prefix(&self) -> Option<String> {
        non_empty(&self.0.delegatedipv6prefix)
    }
    /// Seconds, as the NAS reported them.
    async fn session_time(&self) -> Option<i64> {
        self.0.acctsessiontime
    }
    async fn input_octets(&self) -> Option<i64> {
        self.0.acctinputoctets
    }
    async fn output_octets(&self) -> Option<i64> {
        self.0.acctoutputoctets
    }
    async fn terminate_cause(&self) -> Option<String> {
        non_empty(&self.0.acctterminatecause)
    }
    /// The user of the session (`users` row of its user name), when there is one.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(login) = non_empty(&self.0.username) else {
            return Ok(None);
        };
        let st = state(ctx);
        let user = st
            .store
            .user_by_login(&st.config.domain, &login)
            .await
            .map_err(internal)?;
        Ok(user.map(User))
    }
}

/// A user (`users` row).
pub struct User(pub UserRow);

#[Object]
impl User {
    /// The integer `userId` of the APIs.
    async fn id(&self) -> i64 {
        self.0.id
    }
    async fn uuid(&self) -> &str {
        &self.0.uuid
    }
    async fn login(&self) -> &str {
        &self.0.login
    }
    async fn domain(&self) -> &str {
        &self.0.domain
    }
    async fn role(&self) -> &str {
        &self.0.role
    }
    /// The user's open sessions, oldest first.
    async fn online_sessions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Session>> {
        may_read_accounting_of(ctx, self.0.id)?;
        let rows = state(ctx)
            .store
            .online_sessions_of(&self.0.login)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Session).collect())
    }
}

#[derive(SimpleObject)]
pub struct SessionEdge {
    cursor: String,
    node: Session,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

/// A page of sessions (cursor pagination).
#[derive(SimpleObject)]
pub struct SessionConnection {
    edges: Vec<SessionEdge>,
    page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct NasCount {
    nas_ip_address: String,
    online: i64,
}

fn encode_cursor(row: &SessionRow) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        row.acctstarttime.unwrap_or_default(),
        row.radacctid
    ))
}

fn decode_cursor(cursor: &str) -> async_graphql::Result<After> {
    let bad = || {
        error(
            Code::BadRequest,
            "after is not a cursor returned by onlineSessions",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (start, id) = text.split_once(':').ok_or_else(bad)?;
    Ok(After {
        start: start.parse().map_err(|_| bad())?,
        id: id.parse().map_err(|_| bad())?,
    })
}

fn page_size(first: i32) -> async_graphql::Result<i64> {
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(error(
            Code::BadRequest,
            format!("first must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(i64::from(first))
}

fn valid_ip(name: &str, value: Option<String>) -> async_graphql::Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<std::net::IpAddr>()
            .map(|ip| Some(crate::config::normalize_ip(ip).to_string()))
            .map_err(|_| error(Code::BadRequest, format!("{name} must be an IP address"))),
    }
}

pub struct Query;

#[Object]
impl Query {
    /// The open sessions (`acctstoptime IS NULL`) of one user, oldest first. `userId` is
    /// `users.id`.
    async fn get_online_sessions(
        &self,
        ctx: &Context<'_>,
        user_id: i32,
    ) -> async_graphql::Result<Vec<Session>> {
        let user = user_by_id(ctx, i64::from(user_id)).await?;
        may_read_accounting_of(ctx, user.id)?;
        let rows = state(ctx)
            .store
            .online_sessions_of(&user.login)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Session).collect())
    }

    /// A user by `id` or by `username` (exactly one of them).
    async fn user(
        &self,
        ctx: &Context<'_>,
        id: Option<i64>,
        username: Option<String>,
    ) -> async_graphql::Result<User> {
        let row = match (id, username) {
            (Some(id), None) => user_by_id(ctx, id).await?,
            (None, Some(login)) => {
                let st = state(ctx);
                st.store
                    .user_by_login(&st.config.domain, &login)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| error(Code::NotFound, format!("no user {login}")))?
            }
            _ => {
                return Err(error(
                    Code::BadRequest,
                    "give exactly one of id and username",
                ))
            }
        };
        if let Some(p) = principal(ctx) {
            if !p.can_read_accounting_of(row.id) {
                return Err(error(
                    Code::Forbidden,
                    "reading another user needs the operator or admin role",
                ));
            }
        }
        Ok(User(row))
    }

    /// Every open session, in (start time, id) order, filtered by NAS address, user-name prefix
    /// and framed IP address, `first` at a time after the cursor `after`.
    async fn online_sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
        nas: Option<String>,
        username_prefix: Option<String>,
        framed_ip: Option<String>,
    ) -> async_graphql::Result<SessionConnection> {
        may_read_all_accounting(ctx)?;
        let limit = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let filter = OnlineFilter {
            nas: valid_ip("nas", nas)?,
            username_prefix,
            framed_ip: valid_ip("framedIp", framed_ip)?,
        };
        let mut rows = state(ctx)
            .store
            .online_sessions(&filter, after, limit + 1)
            .await
            .map_err(internal)?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let end_cursor = rows.last().map(encode_cursor);
        Ok(SessionConnection {
            edges: rows
                .into_iter()
                .map(|r| SessionEdge {
                    cursor: encode_cursor(&r),
                    node: Session(r),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }

    /// A user's sessions, open or closed, live or archived, that overlap [from, to). Times are
    /// RFC 3339 or UNIX seconds; `to` defaults to now.
    async fn session_history(
        &self,
        ctx: &Context<'_>,
        user_id: i32,
        from: String,
        to: Option<String>,
        #[graphql(default = 100)] first: i32,
    ) -> async_graphql::Result<Vec<Session>> {
        let from = parse_time("from", &from)?;
        let to = match to {
            Some(t) => parse_time("to", &t)?,
            None => chrono::Utc::now().timestamp() + 1,
        };
        let limit = page_size(first)?;
        let user = user_by_id(ctx, i64::from(user_id)).await?;
        may_read_accounting_of(ctx, user.id)?;
        let rows = state(ctx)
            .store
            .session_history(&user.login, from, to, limit)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Session).collect())
    }

    /// Who had this IP address at that moment: the sessions (live or archived) whose framed IPv4
    /// or IPv6 address was `ip`, or whose framed or delegated IPv6 prefix contains it, started
    /// at or before `at` and stopped after it (an open session counts until its last update plus
    /// its stale limit). Needs the operator or admin role.
    async fn sessions_by_ip(
        &self,
        ctx: &Context<'_>,
        ip: String,
        at: DateTime,
    ) -> async_graphql::Result<Vec<Session>> {
        match principal(ctx) {
            Some(p) if p.can_read_accounting_of(i64::MIN) => {}
            Some(_) => {
                return Err(error(
                    Code::Forbidden,
                    "sessionsByIp needs the operator or admin role",
                ))
            }
            None => return Err(error(Code::Unauthenticated, "sessionsByIp needs a token")),
        }
        let ip: std::net::IpAddr = ip
            .trim()
            .parse()
            .map(crate::config::normalize_ip)
            .map_err(|_| error(Code::BadRequest, "ip must be an IPv4 or IPv6 address"))?;
        let at = at.0;
        let st = state(ctx);
        let stale = st.config.accounting.stale_after.map(|d| d.as_secs() as i64);
        let rows = st
            .store
            .sessions_by_ip(ip, at, stale)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Session).collect())
    }

    /// How many sessions are open on each NAS.
    async fn online_counts_by_nas(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<NasCount>> {
        may_read_all_accounting(ctx)?;
        let counts = state(ctx)
            .store
            .online_counts_by_nas()
            .await
            .map_err(internal)?;
        Ok(counts
            .into_iter()
            .map(|(nas_ip_address, online)| NasCount {
                nas_ip_address,
                online,
            })
            .collect())
    }
}

/// What the NAS said to a Disconnect-Request.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DisconnectOutcome {
    Ack,
    Nak,
    Timeout,
}

#[derive(SimpleObject)]
pub struct DisconnectResult {
    result: DisconnectOutcome,
    /// Error-Cause of a NAK (RFC 5176 §3.5), when the NAS sent one.
    error_cause: Option<i64>,
    /// The NAS that was asked.
    nas_ip_address: String,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Sends an RFC 5176 Disconnect-Request for an open session to its NAS (the CoA port of the
    /// matching RADIUS client) and reports the answer. Needs the admin role.
    async fn disconnect_session(
        &self,
        ctx: &Context<'_>,
        id: i64,
    ) -> async_graphql::Result<DisconnectResult> {
        match principal(ctx) {
            Some(p) if p.can_manage_users() => {}
            Some(_) => {
                return Err(error(
                    Code::Forbidden,
                    "disconnectSession needs the admin role",
                ))
            }
            None => return Err(error(Code::Unauthenticated, "mutations need a token")),
        }
        let st = state(ctx);
        let session = st
            .store
            .session_by_id(id)
            .await
            .map_err(internal)?
            .filter(|s| s.acctstoptime.is_none())
            .ok_or_else(|| error(Code::NotFound, format!("no open session with id {id}")))?;
        let nas: std::net::IpAddr = session.nasipaddress.parse().map_err(|_| {
            error(
                Code::BadRequest,
                "the session's NAS address is not an IP address",
            )
        })?;
        let client = st.clients.current().find(nas).cloned().ok_or_else(|| {
            error(
                Code::BadRequest,
                format!("NAS {nas} is not a configured RADIUS client"),
            )
        })?;
        let answer = crate::radius::coa::disconnect(&client, nas, &session)
            .await
            .map_err(internal)?;
        tracing::info!(session = id, %nas, ?answer, "Disconnect-Request");
        let (result, error_cause) = match answer {
            crate::radius::coa::Answer::Ack => (DisconnectOutcome::Ack, None),
            crate::radius::coa::Answer::Nak(cause) => {
                (DisconnectOutcome::Nak, cause.map(i64::from))
            }
            crate::radius::coa::Answer::Timeout => (DisconnectOutcome::Timeout, None),
        };
        Ok(DisconnectResult {
            result,
            error_cause,
            nas_ip_address: session.nasipaddress,
        })
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SessionEventKind {
    Start,
    Update,
    Stop,
}

/// A committed change of a session.
pub struct SessionEvent {
    kind: SessionEventKind,
    session: SessionRow,
}

#[Object]
impl SessionEvent {
    async fn kind(&self) -> SessionEventKind {
        self.kind
    }
    async fn session(&self) -> Session {
        Session(self.session.clone())
    }
}

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Start, update and stop of a user's sessions as they are committed (on any node sharing
    /// the database). Without `userId`, every user's (needs the operator or admin role).
    async fn session_events(
        &self,
        ctx: &Context<'_>,
        user_id: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = SessionEvent>> {
        let login = match user_id {
            Some(id) => {
                let user = user_by_id(ctx, i64::from(id)).await?;
                may_read_accounting_of(ctx, user.id)?;
                Some(user.login)
            }
            None => {
                may_read_all_accounting(ctx)?;
                None
            }
        };
        let items = state(ctx).feed.subscribe();
        Ok(stream::unfold(items, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(item) => return Some((item, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a sessionEvents subscriber fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |item| std::future::ready(login.as_ref().is_none_or(|l| item.username == *l)))
        .map(|item| SessionEvent {
            kind: match item.kind {
                crate::events::ChangeKind::Start => SessionEventKind::Start,
                crate::events::ChangeKind::Update => SessionEventKind::Update,
                crate::events::ChangeKind::Stop => SessionEventKind::Stop,
            },
            session: item.session.clone(),
        }))
    }
}

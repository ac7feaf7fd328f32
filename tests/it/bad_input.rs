//! Bad input on every HTTP endpoint (SPEC §4-§8): malformed and oversized bodies, wrong content
//! types, huge and deeply nested JSON and GraphQL, invalid UTF-8 in the body, the query and
//! headers, bad, closed and expired tokens, header abuse. Each row of the table is one raw
//! HTTP/1.1 request; every answer must be the expected clear status (never 5xx), carry no
//! internal text, and nothing may be written (the tables are compared before and after).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::console::{b64, login};
use crate::harness::{Backend, TestApp, ADMIN_PASSWORD};

both_backends!(
    every_endpoint_rejects_bad_input_with_a_clear_4xx_and_writes_nothing,
    bad_websocket_messages_close_the_connection_and_write_nothing,
);

const WS: &str = "/webconsole/api";
const SESSIONS: &str = "/rest/v1/master/logicalroles/ws/sessions";

/// Text that must never reach a client: database, panic, and source details.
const INTERNAL: [&str; 12] = [
    "sqlx",
    "database",
    "panicked",
    "error returned from",
    "SQLSTATE",
    "sqlite",
    "postgres",
    "src/",
    ".rs:",
    "thread '",
    "RUST_BACKTRACE",
    "stack backtrace",
];

/// One raw HTTP request and the status it must get.
struct Row {
    name: String,
    method: &'static str,
    /// Raw request target (bytes, so it may hold what no URL type would let through).
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    expect: u16,
    /// Broken HTTP that the server's HTTP layer refuses before any endpoint sees it (a bare
    /// status, no endpoint-shaped body).
    protocol: bool,
}

fn row(
    name: impl Into<String>,
    method: &'static str,
    target: impl AsRef<[u8]>,
    expect: u16,
) -> Row {
    Row {
        name: name.into(),
        method,
        target: target.as_ref().to_vec(),
        headers: Vec::new(),
        body: Vec::new(),
        expect,
        protocol: false,
    }
}

impl Row {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    fn protocol(mut self) -> Self {
        self.protocol = true;
        self
    }

    fn token(self, token: &str) -> Self {
        self.header("Authtoken", token)
    }

    fn json(self, body: impl AsRef<[u8]>) -> Self {
        self.header("Content-Type", "application/json").body(body)
    }

    fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }
}

/// The answer to a raw request: status (None when the server closed without one), head and
/// body.
struct Answer {
    status: Option<u16>,
    text: String,
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole answer.
async fn send(app: &TestApp, r: &Row) -> Answer {
    let mut req = Vec::new();
    req.extend_from_slice(r.method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(&r.target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in &r.headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    let chunked = r
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == b"chunked");
    if !chunked
        && !r
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        req.extend_from_slice(format!("Content-Length: {}\r\n", r.body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(&r.body);

    let mut stream = TcpStream::connect(app.http).await.expect("connect");
    // The server may answer (413, 431) and close before it has read everything: a failed write
    // is fine, the answer is what counts.
    let _ = stream.write_all(&req).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let mut text = String::from_utf8_lossy(&answer).into_owned();
    if read.is_err() {
        text.push_str(" [no complete answer within 10 s]");
    }
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok());
    Answer { status, text }
}

/// The nesting `depth` times of `open` .. `close` around `inner`.
fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn gql_body(query: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "query": query })).unwrap()
}

async fn every_endpoint_rejects_bad_input_with_a_clear_4xx_and_writes_nothing(backend: Backend) {
    let app = crate::harness::spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    // A closed token (logged out) and an expired one.
    let closed = login(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        crate::console::logout(&app, &closed.token).await,
        reqwest::StatusCode::OK
    );
    let expired = login(&app, "admin", ADMIN_PASSWORD).await;
    app.execute(&match backend {
        Backend::Sqlite => format!(
            "UPDATE web_sessions SET expires_at = 1 WHERE session_id = '{}'",
            expired.session_id
        ),
        Backend::Postgres => format!(
            "UPDATE web_sessions SET expires_at = to_timestamp(1) WHERE session_id = '{}'",
            expired.session_id
        ),
    })
    .await;
    // An accounting session, so radacct has a row that bad input must leave alone.
    let nas = app.nas();
    nas.send(nas.session(radacctd::radius::dict::status::START, "bad-input", "bi-1"))
        .await;
    let uid = admin.user_id;
    let before = app.snapshot_all().await;

    let token = admin.token.as_str();
    let mib = 1024 * 1024;
    let big_json = format!("{{\"query\": \"{}\"}}", "a".repeat(mib + 10));
    let deep_json = nested("[", "1", "]", 100_000);
    let deep_object = format!(
        "{{\"query\": \"{{ __typename }}\", \"variables\": {}}}",
        nested("{\"a\":", "1", "}", 10_000)
    );
    let seed = |uid: i64| {
        format!(
            "{{\"query\":\"query q($userId: Int!) {{ getOnlineSessions(userId: $userId) {{ id }} }}\",\"variables\":{{\"userId\":{uid}}}}}"
        )
    };
    // Deeper than the limit of 15 (introspection types nest without end).
    let too_deep_query = format!(
        "{{ __type(name: \"Query\") {{ fields {{ type {{ {} }} }} }} }}",
        nested("ofType { ", "name", " }", 20)
    );
    let very_deep_query = nested("{ a ", "", "}", 50_000);
    let wide_query = format!(
        "{{ {} }}",
        (0..5_000)
            .map(|i| format!("a{i}: onlineCountsByNas {{ nasIpAddress online }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let many_headers: Vec<(String, Vec<u8>)> = (0..500)
        .map(|i| (format!("X-Junk-{i}"), b"x".to_vec()))
        .collect();

    let mut rows = vec![
        // ---- GraphQL over HTTP
        row("graphql: not JSON", "POST", "/graphql", 400).token(token).json("{not json"),
        row("graphql: empty body", "POST", "/graphql", 400).token(token).json(""),
        row("graphql: invalid UTF-8 body", "POST", "/graphql", 400)
            .token(token)
            .json(b"{\"query\": \"\xff\xfe{ __typename }\"}"),
        row("graphql: a JSON array (batch)", "POST", "/graphql", 400)
            .token(token)
            .json(format!("[{}]", seed(uid))),
        // Only application/json is GraphQL over HTTP here: anything else is 415, not executed.
        row("graphql: form body", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("query=%7B__typename%7D"),
        row("graphql: XML body", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "application/xml")
            .body("<query>{ __typename }</query>"),
        row("graphql: no Content-Type", "POST", "/graphql", 415)
            .token(token)
            .body(seed(uid)),
        row("graphql: text/plain JSON", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "text/plain")
            .body(seed(uid)),
        row("graphql: application/graphql", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "application/graphql")
            .body("{ __typename }"),
        row("graphql: application/graphql-response+json", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "application/graphql-response+json")
            .body(seed(uid)),
        row("graphql: application/jsonp", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "application/jsonp")
            .body(seed(uid)),
        row("graphql: JSON in Latin-1", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "application/json; charset=iso-8859-1")
            .body(seed(uid)),
        row("graphql: two Content-Types", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "application/json")
            .header("Content-Type", "text/plain")
            .body(seed(uid)),
        row("graphql: Content-Type not UTF-8", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", b"application/json\xff")
            .body(seed(uid)),
        row("graphql: empty Content-Type", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "")
            .body(seed(uid)),
        row("graphql: mutation as text/plain with a valid token", "POST", "/graphql", 415)
            .token(token)
            .header("Content-Type", "text/plain")
            .body(gql_body("mutation { disconnectSession(id: 1) { result } }")),
        row("graphql: form body without a token", "POST", "/graphql", 415)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("query=%7B__typename%7D"),
        row("getOnlineSessions: form body", "POST", "/getOnlineSessions", 415)
            .token(token)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("query={}", seed(uid))),
        row("graphql: APPLICATION/JSON; charset=\"UTF-8\" is JSON", "POST", "/graphql", 200)
            .token(token)
            .header("Content-Type", "APPLICATION/JSON; charset=\"UTF-8\"")
            .body(seed(uid)),
        row("graphql: over 1 MiB", "POST", "/graphql", 413).token(token).json(&big_json),
        row("graphql: over 1 MiB without a token", "POST", "/graphql", 413).json(&big_json),
        row("graphql: over 1 MiB chunked", "POST", "/graphql", 413)
            .token(token)
            .header("Content-Type", "application/json")
            .header("Transfer-Encoding", "chunked")
            .body(chunked(big_json.as_bytes())),
        row("graphql: broken chunked coding", "POST", "/graphql", 400)
            .token(token)
            .header("Content-Type", "application/json")
            .header("Transfer-Encoding", "chunked")
            .body(b"zz\r\n{}\r\n0\r\n\r\n"),
        row("graphql: Content-Length over 1 MiB, short body", "POST", "/graphql", 413)
            .token(token)
            .header("Content-Type", "application/json")
            .header("Content-Length", (2 * mib).to_string())
            .body("{}"),
        row("graphql: JSON nested 100,000 deep", "POST", "/graphql", 400)
            .token(token)
            .json(&deep_json),
        row("graphql: variables nested 10,000 deep", "POST", "/graphql", 400)
            .token(token)
            .json(&deep_object),
        row("graphql: query deeper than 15", "POST", "/graphql", 400)
            .token(token)
            .json(gql_body(&too_deep_query)),
        row("graphql: selection nested 50,000 deep", "POST", "/graphql", 400)
            .token(token)
            .json(gql_body(&very_deep_query)),
        row("graphql: complexity over 1,000", "POST", "/graphql", 400)
            .token(token)
            .json(gql_body(&wide_query)),
        row("graphql: parse error", "POST", "/graphql", 400)
            .token(token)
            .json(gql_body("{ getOnlineSessions(userId: ")),
        row("graphql: userId beyond 32 bits", "POST", "/graphql", 400)
            .token(token)
            .json(seed(1 << 40)),
        row("graphql: userId a string", "POST", "/graphql", 400)
            .token(token)
            .json(r#"{"query":"query q($userId: Int!) { getOnlineSessions(userId: $userId) { id } }","variables":{"userId":"x"}}"#),
        row("graphql: variables not an object", "POST", "/graphql", 400)
            .token(token)
            .json(r#"{"query":"{ __typename }","variables":[1,2]}"#),
        row("graphql: unknown user", "POST", "/graphql", 404)
            .token(token)
            .json(seed(999_999)),
        row("graphql: no token", "POST", "/graphql", 401).json(seed(uid)),
        row("graphql: garbage token", "POST", "/graphql", 401)
            .token("QSDK nothing")
            .json(seed(uid)),
        row("graphql: closed token", "POST", "/graphql", 401)
            .token(&closed.token)
            .json(seed(uid)),
        row("graphql: expired token", "POST", "/graphql", 401)
            .token(&expired.token)
            .json(seed(uid)),
        row("graphql: token with invalid UTF-8", "POST", "/graphql", 401)
            .header("Authtoken", b"QSDK \xff\xfe")
            .json(seed(uid)),
        row("graphql: empty Bearer", "POST", "/graphql", 401)
            .header("Authorization", "Bearer ")
            .json(seed(uid)),
        row("graphql: Basic auth", "POST", "/graphql", 401)
            .header("Authorization", "Basic YWRtaW46YWRtaW4=")
            .json(seed(uid)),
        row("graphql: duplicate Authtoken, bad then good", "POST", "/graphql", 401)
            .token("QSDK nothing")
            .token(token)
            .json(seed(uid)),
        row("graphql: duplicate Authtoken, good then bad", "POST", "/graphql", 401)
            .token(token)
            .token("QSDK nothing")
            .json(seed(uid)),
        row("graphql: 64 KiB token", "POST", "/graphql", 401)
            .token(&format!("QSDK {}", "a".repeat(64 * 1024)))
            .json(seed(uid)),
        row("graphql: mutation with a closed token", "POST", "/graphql", 401)
            .token(&closed.token)
            .json(gql_body("mutation { disconnectSession(id: 1) { result } }")),
        row("getOnlineSessions: not JSON", "POST", "/getOnlineSessions", 400)
            .token(token)
            .json("]["),
        row("getOnlineSessions: GET", "GET", "/getOnlineSessions", 405),
        row("GraphiQL: junk query and token", "GET", "/graphql?query=%FF%FE&x", 200)
            .header("Authtoken", b"\xff")
            .header("Accept", "application/json"),
        row("graphql: PUT", "PUT", "/graphql", 405).token(token).json(seed(uid)),
        // ---- WebSocket endpoint without a proper upgrade
        row("graphql/ws: plain GET", "GET", "/graphql/ws", 400),
        row("graphql/ws: bad version", "GET", "/graphql/ws", 400)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "7")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        row("graphql/ws: POST", "POST", "/graphql/ws", 405).json("{}"),
        // ---- Console: Login
        row("Login: not JSON", "POST", format!("{WS}/Login"), 400).json("username=admin"),
        row("Login: invalid UTF-8", "POST", format!("{WS}/Login"), 400)
            .json(b"{\"username\": \"\xff\", \"password\": \"YQ==\"}"),
        row("Login: password not base64", "POST", format!("{WS}/Login"), 400)
            .json(r#"{"username": "admin", "password": "***"}"#),
        row("Login: password base64 of invalid UTF-8", "POST", format!("{WS}/Login"), 400)
            .json(r#"{"username": "admin", "password": "//79"}"#),
        row("Login: missing password", "POST", format!("{WS}/Login"), 400)
            .json(r#"{"username": "admin"}"#),
        row("Login: wrong types", "POST", format!("{WS}/Login"), 400)
            .json(r#"{"username": 1, "password": ["x"]}"#),
        row("Login: consoleType beyond 64 bits", "POST", format!("{WS}/Login"), 400)
            .json(format!(r#"{{"username": "admin", "password": "{}", "consoleType": 1e30}}"#, b64(ADMIN_PASSWORD))),
        row("Login: negative consoleType", "POST", format!("{WS}/Login"), 400)
            .json(format!(r#"{{"username": "admin", "password": "{}", "consoleType": -1}}"#, b64(ADMIN_PASSWORD))),
        row("Login: 1,000-octet host", "POST", format!("{WS}/Login"), 400)
            .json(format!(r#"{{"username": "admin", "password": "{}", "host": "{}"}}"#, b64(ADMIN_PASSWORD), "h".repeat(1000))),
        row("Login: nested 100,000 deep", "POST", format!("{WS}/Login"), 400).json(&deep_json),
        row("Login: over 1 MiB", "POST", format!("{WS}/Login"), 413).json(&big_json),
        row("Login: over 1 MiB chunked", "POST", format!("{WS}/Login"), 413)
            .header("Content-Type", "application/json")
            .header("Transfer-Encoding", "chunked")
            .body(chunked(big_json.as_bytes())),
        row("Login: broken chunked coding", "POST", format!("{WS}/Login"), 400)
            .header("Content-Type", "application/json")
            .header("Transfer-Encoding", "chunked")
            .body(b"2\r\n{}\r\nnot-a-size\r\n"),
        row("Login: XML", "POST", format!("{WS}/Login"), 400)
            .header("Content-Type", "application/xml")
            .body("<DM2ContentIndexing_CheckCredentialReq username=\"admin\"/>"),
        row("Login: 100 KiB user name", "POST", format!("{WS}/Login"), 401)
            .json(format!(r#"{{"username": "{}", "password": "YQ=="}}"#, "u".repeat(100 * 1024))),
        row("Login: GET", "GET", format!("{WS}/Login"), 405),
        // ---- Console: Logout (with no usable token: a valid one would log out)
        row("Logout: no token", "POST", format!("{WS}/Logout"), 401),
        row("Logout: garbage token", "POST", format!("{WS}/Logout"), 401).token("garbage"),
        row("Logout: closed token", "POST", format!("{WS}/Logout"), 401).token(&closed.token),
        row("Logout: expired token", "POST", format!("{WS}/Logout"), 401).token(&expired.token),
        row("Logout: duplicate Authtoken, bad then good", "POST", format!("{WS}/Logout"), 401)
            .token("garbage")
            .token(token),
        row("Logout: duplicate Authtoken, good then bad", "POST", format!("{WS}/Logout"), 401)
            .token(token)
            .token("garbage"),
        row("Logout: over 1 MiB body, closed token", "POST", format!("{WS}/Logout"), 413)
            .token(&closed.token)
            .header("Content-Type", "application/xml")
            .body(vec![b'x'; mib + 10]),
        // ---- Console: Session
        row("Session: no userId", "GET", format!("{WS}/Session"), 400).token(token),
        row("Session: userId not a number", "GET", format!("{WS}/Session?userId=abc"), 400).token(token),
        row("Session: userId beyond 64 bits", "GET", format!("{WS}/Session?userId=99999999999999999999"), 400).token(token),
        row("Session: userId invalid UTF-8 (encoded)", "GET", format!("{WS}/Session?userId=%FF%FE"), 400).token(token),
        row("Session: raw invalid UTF-8 in the query", "GET", [format!("{WS}/Session?userId=").as_bytes(), b"\xff\xfe"].concat(), 400).token(token).protocol(),
        row("Session: userId twice", "GET", format!("{WS}/Session?userId=1&userId=2"), 400).token(token),
        row("Session: bad percent-encoding", "GET", format!("{WS}/Session?userId=%ZZ"), 400).token(token),
        row("Session: unknown user", "GET", format!("{WS}/Session?userId=999999"), 404).token(token),
        row("Session: Accept text/html", "GET", format!("{WS}/Session?userId={uid}"), 406)
            .token(token)
            .header("Accept", "text/html"),
        row("Session: no token", "GET", format!("{WS}/Session?userId={uid}"), 401),
        row("Session: closed token", "GET", format!("{WS}/Session?userId={uid}"), 401).token(&closed.token),
        row("Session: expired token", "GET", format!("{WS}/Session?userId={uid}"), 401).token(&expired.token),
        row("Session: 8 KiB query", "GET", format!("{WS}/Session?userId={}", "9".repeat(8 * 1024)), 400).token(token),
        // ---- The probe, health and metrics take no input: anything goes, nothing breaks
        row("probe: junk query", "GET", format!("{WS}/?%FF=%00&a"), 200),
        row("probe: POST", "POST", format!("{WS}/"), 405).json("{}"),
        row("healthz: junk query and body", "GET", "/healthz?%FF", 200).json(&deep_json),
        row("metrics: junk token", "GET", "/metrics", 200).header("Authtoken", b"\xff"),
        row("metrics: POST", "POST", "/metrics", 405),
        row("openapi.json: not served", "GET", "/openapi.json", 404),
        // ---- Web sessions
        row("sessions: bare all", "GET", format!("{SESSIONS}?sites=all"), 400).token(token),
        row("sessions: sites a number list", "GET", format!("{SESSIONS}?sites=%5B1%5D"), 400).token(token),
        row("sessions: sites invalid UTF-8", "GET", format!("{SESSIONS}?sites=%FF"), 400).token(token),
        row("sessions: sites nested 10,000 deep", "GET", format!("{SESSIONS}?sites={}", nested("%5B", "", "%5D", 10_000)), 400).token(token),
        row("sessions: no token", "GET", SESSIONS, 401),
        row("sessions: closed token", "GET", SESSIONS, 401).token(&closed.token),
        row("sessions: expired token", "GET", SESSIONS, 401).token(&expired.token),
        row("sessions POST: not JSON", "POST", SESSIONS, 400).token(token).json("logout"),
        row("sessions POST: invalid UTF-8", "POST", SESSIONS, 400).token(token)
            .json(b"{\"action\": \"logout\", \"domain\": \"master.domain\", \"user\": \"\xff\"}"),
        row("sessions POST: other action", "POST", SESSIONS, 400).token(token)
            .json(r#"{"action": "login", "domain": "master.domain", "user": "admin"}"#),
        row("sessions POST: bad sites", "POST", SESSIONS, 400).token(token)
            .json(r#"{"action": "logout", "domain": "master.domain", "user": "admin", "sites": "SITE1"}"#),
        row("sessions POST: unknown user", "POST", SESSIONS, 404).token(token)
            .json(r#"{"action": "logout", "domain": "master.domain", "user": "nobody"}"#),
        row("sessions POST: nested 100,000 deep", "POST", SESSIONS, 400).token(token).json(&deep_json),
        row("sessions POST: over 1 MiB", "POST", SESSIONS, 413).token(token).json(&big_json),
        row("sessions POST: over 1 MiB chunked", "POST", SESSIONS, 413)
            .token(token)
            .header("Content-Type", "application/json")
            .header("Transfer-Encoding", "chunked")
            .body(chunked(big_json.as_bytes())),
        row("sessions POST: no token", "POST", SESSIONS, 401)
            .json(r#"{"action": "logout", "domain": "master.domain", "user": "admin"}"#),
        row("sessions POST: expired token", "POST", SESSIONS, 401).token(&expired.token)
            .json(r#"{"action": "logout", "domain": "master.domain", "user": "admin"}"#),
        row("sessions DELETE: unknown id", "DELETE", format!("{SESSIONS}/no-such-session"), 404).token(token),
        row("sessions DELETE: 8 KiB id", "DELETE", format!("{SESSIONS}/{}", "x".repeat(8 * 1024)), 404).token(token),
        row("sessions DELETE: invalid UTF-8 id", "DELETE", format!("{SESSIONS}/%FF%FE"), 400).token(token),
        row("sessions DELETE: bad sites", "DELETE", format!("{SESSIONS}/{}?sites=all", admin.session_id), 400).token(token),
        row("sessions DELETE: closed token", "DELETE", format!("{SESSIONS}/{}", admin.session_id), 401).token(&closed.token),
        row("sessions DELETE: duplicate Authtoken, good then bad", "DELETE", format!("{SESSIONS}/{}", admin.session_id), 401)
            .token(token)
            .token("garbage"),
        row("sessions: PUT", "PUT", SESSIONS, 405).token(token),
        // ---- Header abuse
        row("500 headers", "GET", format!("{WS}/Session?userId={uid}"), 431)
            .token(token)
            .protocol(),
        row("a 1 MiB header", "GET", format!("{WS}/Session?userId={uid}"), 431)
            .header("X-Big", vec![b'a'; mib])
            .protocol(),
        row("a header name with invalid bytes", "GET", "/healthz", 400)
            .header("X-\u{7f}Bad", "1")
            .protocol(),
        row("a header without a colon", "GET", "/healthz", 400)
            .header("Broken-header-line", "")
            .header("", "no colon")
            .protocol(),
        row("a request line with invalid bytes", "GET", b"/healthz\xff\x00 x", 400).protocol(),
        row("an invalid method", "GARBAGE\x01", "/healthz", 400).protocol(),
        row("Content-Length not a number", "POST", "/graphql", 400)
            .token(token)
            .header("Content-Type", "application/json")
            .header("Content-Length", "12x")
            .protocol(),
        row("two different Content-Lengths", "POST", "/graphql", 400)
            .token(token)
            .header("Content-Type", "application/json")
            .header("Content-Length", "2")
            .header("Content-Length", "3")
            .body("{}")
            .protocol(),
    ];
    // The 500 headers.
    let many = rows
        .iter_mut()
        .find(|r| r.name == "500 headers")
        .expect("the row");
    many.headers.extend(many_headers);

    let mut failures = Vec::new();
    for r in &rows {
        let answer = send(&app, r).await;
        let body_start = answer.text.find("\r\n\r\n").map_or(0, |i| i + 4);
        let body = &answer.text[body_start..];
        if answer.status != Some(r.expect) || answer.text.ends_with("within 10 s]") {
            failures.push(format!(
                "{}: expected {}, got {:?}: {}",
                r.name,
                r.expect,
                answer.status,
                answer.text.chars().take(400).collect::<String>()
            ));
        }
        // Errors have the endpoint's shape: a GraphQL response object, or Commvault's.
        let target = String::from_utf8_lossy(&r.target);
        let path = target.split('?').next().unwrap_or_default();
        let status = answer.status.unwrap_or_default();
        if (400..500).contains(&status) && status != 405 && !r.protocol {
            let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
            let shape_ok = if path == "/graphql" || path == "/getOnlineSessions" {
                json.as_ref()
                    .and_then(|j| j["errors"][0]["message"].as_str())
                    .is_some()
            } else if path.starts_with(WS) || path.starts_with(SESSIONS) {
                json.as_ref().is_some_and(|j| {
                    j["errorCode"].as_u64() == Some(u64::from(status))
                        && j["errorMessage"].is_string()
                }) || body.contains(&format!("<Error errorCode=\"{status}\""))
            } else {
                true
            };
            if !shape_ok {
                failures.push(format!(
                    "{}: the {status} answer has not the endpoint's error shape: {}",
                    r.name,
                    body.chars().take(300).collect::<String>()
                ));
            }
        }
        // /metrics is Prometheus text about radacctd itself ("Failed database transactions").
        let reflects_input = !r.target.starts_with(b"/metrics");
        if let Some(bad) = INTERNAL
            .iter()
            .filter(|_| reflects_input)
            .find(|t| body.to_ascii_lowercase().contains(&t.to_ascii_lowercase()))
        {
            failures.push(format!(
                "{}: the answer shows internal text {bad:?}: {}",
                r.name,
                body.chars().take(400).collect::<String>()
            ));
        }
    }
    // The node is still up and the admin token still works.
    let health = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let still = reqwest::Client::new()
        .get(app.url(&format!("{WS}/Session?userId={uid}")))
        .header("Authtoken", token)
        .send()
        .await
        .unwrap();
    if still.status() != reqwest::StatusCode::OK {
        failures.push(format!(
            "the admin's token no longer works after the table: {}",
            still.status()
        ));
    }

    let after = app.snapshot_all().await;
    for ((table, b), (_, a)) in before.iter().zip(&after) {
        if b != a {
            failures.push(format!(
                "bad input changed {table}:\nbefore {b:#?}\nafter {a:#?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: {} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    app.stop().await;
}

/// A body in chunked transfer coding, in 64 KiB chunks.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Garbage on the GraphQL WebSocket: each connection is closed (or answered with an error
/// message), the node stays up, and nothing is recorded in `ws_connections`.
async fn bad_websocket_messages_close_the_connection_and_write_nothing(backend: Backend) {
    let app = crate::harness::spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let closed = login(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        crate::console::logout(&app, &closed.token).await,
        reqwest::StatusCode::OK
    );
    let before = app.snapshot_all().await;

    let huge = "x".repeat(2 * 1024 * 1024);
    let deep = format!(
        "{{\"type\":\"connection_init\",\"payload\":{}}}",
        nested("{\"a\":", "1", "}", 10_000)
    );
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("not JSON", vec![Message::text("{nope")]),
        (
            "binary garbage",
            vec![Message::binary(vec![0xff, 0x00, 0xfe])],
        ),
        (
            "invalid UTF-8 text frame",
            vec![Message::binary(b"\xff\xfe".to_vec())],
        ),
        (
            "unknown message type",
            vec![Message::text(r#"{"type":"hello"}"#)],
        ),
        (
            "subscribe before connection_init",
            vec![Message::text(
                r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { sessionEvents(userId: 1) { kind } }"}}"#,
            )],
        ),
        (
            "connection_init with a garbage token",
            vec![Message::text(
                r#"{"type":"connection_init","payload":{"Authtoken":"QSDK nope"}}"#,
            )],
        ),
        (
            "connection_init with a closed token",
            vec![Message::text(format!(
                r#"{{"type":"connection_init","payload":{{"Authtoken":"{}"}}}}"#,
                closed.token
            ))],
        ),
        (
            "connection_init with a token that is not a string",
            vec![Message::text(
                r#"{"type":"connection_init","payload":{"Authtoken":[1,2]}}"#,
            )],
        ),
        (
            "connection_init with a payload that is not an object",
            vec![Message::text(
                r#"{"type":"connection_init","payload":"Authtoken"}"#,
            )],
        ),
        (
            "connection_init nested 10,000 deep",
            vec![Message::text(deep)],
        ),
        ("a 2 MiB message", vec![Message::text(huge)]),
    ];
    for (name, messages) in cases {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{}/graphql/ws", app.http),
            )
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("{name}: upgrade failed: {e}"));
        for m in messages {
            // The server may already have closed: that is an answer too.
            let _ = socket.send(m).await;
        }
        // The server closes the connection (or answers with an error / close frame) soon.
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match socket.next().await {
                    None | Some(Err(_)) => return "closed".to_owned(),
                    Some(Ok(Message::Close(frame))) => return format!("close frame {frame:?}"),
                    Some(Ok(Message::Text(t))) => {
                        let t = t.to_string();
                        assert!(
                            !INTERNAL.iter().any(|i| t.to_ascii_lowercase().contains(i)),
                            "{name}: internal text in {t}"
                        );
                        if t.contains("connection_ack") {
                            return format!("acknowledged: {t}");
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: the connection was neither closed nor answered"));
        assert!(
            !outcome.starts_with("acknowledged"),
            "{name}: bad input was acknowledged: {outcome}"
        );
    }
    let health = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let after = app.snapshot_all().await;
    assert_eq!(before, after, "bad WebSocket input changed the tables");
    let _ = admin;
    app.stop().await;
}

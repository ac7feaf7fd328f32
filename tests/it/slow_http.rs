//! Slow and abusive HTTP clients (issue #7): a client that stalls in its request headers, that
//! trickles them a byte at a time, that goes quiet on a keep-alive connection, or whose body
//! stalls after its headers, is cut off within `http.header_timeout` / `http.body_timeout`
//! (never answered with a 5xx) while other clients are served; nothing is written for a cut-off
//! request; a GraphQL subscription outlives both limits, and a WebSocket that never sends
//! `connection_init` is closed; a burst of clients larger than `http.max_concurrent_requests`
//! is served through its slots, with `/metrics` answering meanwhile. The limits are shortened through the config so that the tests
//! take seconds.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::both_backends;
use crate::console::login;
use crate::graphql::{next_json, subscribe};
use crate::harness::{spawn_app_with, Backend, TestApp, ADMIN_PASSWORD};

both_backends!(
    a_client_that_stalls_in_its_headers_is_cut_off_while_others_are_served,
    a_request_body_that_stalls_gets_408_and_writes_nothing,
    a_subscription_outlives_the_http_timeouts_and_a_silent_websocket_does_not,
    a_burst_of_clients_is_served_through_few_slots_and_monitoring_is_never_held,
);

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// How much later than its limit a connection may be cut off (a loaded 2-core machine).
const MARGIN: Duration = Duration::from_secs(5);
/// How much earlier than its limit a cut may be seen (timer and scheduling granularity).
const EARLY: Duration = Duration::from_millis(150);

const WS: &str = "/webconsole/api";
const SESSIONS: &str = "/rest/v1/master/logicalroles/ws/sessions";

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.http.header_timeout = HEADER_TIMEOUT;
        c.http.body_timeout = BODY_TIMEOUT;
    })
    .await
}

/// Reads until the server closes the connection (end of stream or reset); returns what it
/// sent and when it closed. Fails when it is still open `within` after `since`.
async fn read_until_closed(
    stream: &mut (impl AsyncReadExt + Unpin),
    since: Instant,
    within: Duration,
    what: &str,
) -> (String, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout_at((since + within).into(), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        closed.is_ok(),
        "{what}: still open {within:?} after it started; received {text:?}"
    );
    (text, since.elapsed())
}

/// The seed query for `user_id` with a Bearer token: 200 with a list.
async fn seed_query_is_served(app: &TestApp, token: &str, user_id: i64) {
    let r = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({
            "query": "query q($userId: Int!) { getOnlineSessions(userId: $userId) { id } }",
            "variables": {"userId": user_id},
        }))
        .send()
        .await
        .expect("the seed query is answered");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"]["getOnlineSessions"].is_array(), "{v}");
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn a_client_that_stalls_in_its_headers_is_cut_off_while_others_are_served(backend: Backend) {
    let app = spawn(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;

    // Half a request, then silence.
    let mut stalled = Vec::new();
    for i in 0..8 {
        let started = Instant::now();
        let mut s = TcpStream::connect(app.http).await.unwrap();
        s.write_all(
            format!(
                "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthtoken: {}\r\nX-Stall-{i}: ",
                admin.token
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        stalled.push((s, started));
    }
    // Connected, nothing sent.
    let silent = (TcpStream::connect(app.http).await.unwrap(), Instant::now());
    stalled.push(silent);
    // A slowloris: a header byte every 100 ms, never the end of the headers.
    let trickle_started = Instant::now();
    let trickle = TcpStream::connect(app.http).await.unwrap();
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let trickler = tokio::spawn(async move {
        let _ = trickle_write
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await;
        let mut every = tokio::time::interval(Duration::from_millis(100));
        while trickle_write.write_all(b"a").await.is_ok() {
            every.tick().await;
        }
    });
    // An idle keep-alive connection after one complete exchange.
    let mut idle = TcpStream::connect(app.http).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            idle.read(&mut byte).await.unwrap(),
            1,
            "the /healthz answer"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    idle.read_exact(&mut body).await.unwrap();
    let idle_since = Instant::now();

    // Meanwhile, other clients are served.
    for _ in 0..3 {
        seed_query_is_served(&app, &admin.token, admin.user_id).await;
    }

    // Each is cut off once its headers are late, never with a 5xx.
    for (i, (mut s, started)) in stalled.into_iter().enumerate() {
        let (got, after) = read_until_closed(
            &mut s,
            started,
            HEADER_TIMEOUT + MARGIN,
            &format!("stalled {i}"),
        )
        .await;
        assert!(
            after >= HEADER_TIMEOUT - EARLY,
            "stalled {i} closed after {after:?}"
        );
        assert!(!got.starts_with("HTTP/1.1 5"), "stalled {i}: {got}");
    }
    let (got, after) = read_until_closed(
        &mut trickle_read,
        trickle_started,
        HEADER_TIMEOUT + MARGIN,
        "the trickle",
    )
    .await;
    assert!(
        after >= HEADER_TIMEOUT - EARLY,
        "the trickle closed after {after:?}"
    );
    assert!(!got.starts_with("HTTP/1.1 5"), "the trickle: {got}");
    trickler.await.unwrap();
    let (got, after) = read_until_closed(
        &mut idle,
        idle_since,
        HEADER_TIMEOUT + MARGIN,
        "the idle keep-alive",
    )
    .await;
    assert!(
        after >= HEADER_TIMEOUT - EARLY,
        "idle closed after {after:?}"
    );
    assert!(got.is_empty(), "the idle connection got {got}");

    // And the node still serves.
    seed_query_is_served(&app, &admin.token, admin.user_id).await;
    app.stop().await;
}

/// One request whose body stops (or trickles) after `sent` of it.
struct Stall {
    name: &'static str,
    head: String,
    sent: &'static [u8],
    /// Keep sending a byte every 100 ms (never reaching the declared length) instead of
    /// stopping.
    trickle: bool,
    graphql: bool,
}

async fn a_request_body_that_stalls_gets_408_and_writes_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let before = app.snapshot_all().await;
    let token = &admin.token;
    let json_head = |path: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}\r\n"
        )
    };
    let stalls = vec![
        Stall {
            name: "graphql mutation, Content-Length",
            head: json_head(
                "/graphql",
                &format!("Authtoken: {token}\r\nContent-Length: 300\r\n"),
            ),
            sent: b"{\"query\": \"mutation { disconnectSession(id: 1) { result } }\", \"vari",
            trickle: false,
            graphql: true,
        },
        Stall {
            name: "getOnlineSessions, chunked",
            head: json_head(
                "/getOnlineSessions",
                &format!("Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n"),
            ),
            sent: b"10\r\n{\"query\": \"{ __t\r\n",
            trickle: false,
            graphql: true,
        },
        Stall {
            name: "graphql, trickled body",
            head: json_head(
                "/graphql",
                &format!("Authtoken: {token}\r\nContent-Length: 100000\r\n"),
            ),
            sent: b"{\"query\": \"",
            trickle: true,
            graphql: true,
        },
        Stall {
            name: "Login",
            head: json_head(&format!("{WS}/Login"), "Content-Length: 200\r\n"),
            sent: b"{\"username\": \"admin\", \"passw",
            trickle: false,
            graphql: false,
        },
        Stall {
            name: "web sessions: log out all",
            head: json_head(
                SESSIONS,
                &format!("Authtoken: {token}\r\nContent-Length: 200\r\n"),
            ),
            sent: b"{\"action\": \"logout\", \"domain\": \"master.domain\", ",
            trickle: false,
            graphql: false,
        },
    ];

    let mut open = Vec::new();
    for stall in &stalls {
        let started = Instant::now();
        let stream = TcpStream::connect(app.http).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(stall.head.as_bytes()).await.unwrap();
        write.write_all(stall.sent).await.unwrap();
        let trickle = stall.trickle;
        // The writer keeps its half open (a stalled client does not close).
        let writer = tokio::spawn(async move {
            if trickle {
                let mut every = tokio::time::interval(Duration::from_millis(100));
                while write.write_all(b"a").await.is_ok() {
                    every.tick().await;
                }
            }
            write
        });
        open.push((read, writer, started));
    }

    // Meanwhile, other clients are served.
    for _ in 0..3 {
        seed_query_is_served(&app, &admin.token, admin.user_id).await;
    }

    for (stall, (mut read, writer, started)) in stalls.iter().zip(open) {
        let (got, after) =
            read_until_closed(&mut read, started, BODY_TIMEOUT + MARGIN, stall.name).await;
        drop(writer.await.unwrap());
        assert!(
            got.starts_with("HTTP/1.1 408"),
            "{}: expected 408, got {got}",
            stall.name
        );
        assert!(
            after >= BODY_TIMEOUT - EARLY,
            "{}: answered after {after:?}",
            stall.name
        );
        let body = got.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {got}", stall.name));
        if stall.graphql {
            assert!(v["errors"][0]["message"].is_string(), "{}: {v}", stall.name);
        } else {
            assert_eq!(v["errorCode"], 408, "{}: {v}", stall.name);
        }
    }

    // Nothing was executed: no login, no logout, no Disconnect.
    assert_eq!(before, app.snapshot_all().await, "a cut-off request wrote");
    seed_query_is_served(&app, &admin.token, admin.user_id).await;
    app.stop().await;
}

async fn a_subscription_outlives_the_http_timeouts_and_a_silent_websocket_does_not(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    nas.send(nas.session(radacctd::radius::dict::status::START, "watched", "before"))
        .await;
    let uid = app
        .store()
        .user_by_login("master.domain", "watched")
        .await
        .unwrap()
        .expect("the user exists")
        .id;
    let mut subscription = subscribe(app.http, &admin.token, uid).await;

    // A WebSocket that never sends connection_init is closed after the header timeout.
    let started = Instant::now();
    let mut request = format!("ws://{}/graphql/ws", app.http)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut silent, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let outcome = tokio::time::timeout_at((started + HEADER_TIMEOUT + MARGIN).into(), async {
        loop {
            match silent.next().await {
                None
                | Some(Err(_))
                | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the silent WebSocket is still open");
    assert!(
        started.elapsed() >= HEADER_TIMEOUT - EARLY,
        "the silent WebSocket was closed after {:?}",
        started.elapsed()
    );

    // Let both limits pass, shown by a request whose body stalls getting its 408.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(app.http).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthtoken: {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
                admin.token
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (got, _) = read_until_closed(
        &mut stalled,
        started,
        BODY_TIMEOUT + MARGIN,
        "the stalled body",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // The subscription, older than both limits, still delivers.
    let mut event = None;
    for attempt in 0..20 {
        nas.send(nas.session(
            radacctd::radius::dict::status::START,
            "watched",
            &format!("after-{attempt}"),
        ))
        .await;
        if let Ok(v) =
            tokio::time::timeout(Duration::from_millis(500), next_json(&mut subscription)).await
        {
            event = Some(v);
            break;
        }
    }
    let v = event.expect("a session event on the old subscription");
    assert_eq!(v["type"], "next", "{v}");
    assert_eq!(
        v["payload"]["data"]["sessionEvents"]["kind"], "START",
        "{v}"
    );
    app.stop().await;
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

async fn a_burst_of_clients_is_served_through_few_slots_and_monitoring_is_never_held(
    backend: Backend,
) {
    const SLOTS: usize = 2;
    const CLIENTS: usize = 96;
    let app = spawn_app_with(backend, |c| c.http.max_concurrent_requests = SLOTS).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    nas.send(nas.session(radacctd::radius::dict::status::START, "admin", "burst-1"))
        .await;

    let http = reqwest::Client::new();
    let query = json!({
        "query": "query($u: Int!) { getOnlineSessions(userId: $u) { sessionId } }",
        "variables": { "u": admin.user_id },
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let http = http.clone();
            let url = if i % 2 == 0 {
                app.url("/graphql")
            } else {
                app.url(&format!("{WS}/Session?userId={}", admin.user_id))
            };
            let (token, query) = (admin.token.clone(), query.clone());
            tokio::spawn(async move {
                let request = if i % 2 == 0 {
                    http.post(url).json(&query)
                } else {
                    http.get(url).header("Accept", "application/json")
                };
                let r = request.header("Authtoken", token).send().await.unwrap();
                (i, r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    // /metrics answers while the burst queues, and never shows more than SLOTS at work.
    let mut samples = 0;
    while !clients.iter().all(|c| c.is_finished()) {
        let text = app.metrics_text().await;
        let in_progress = metric(&text, "radacctd_http_requests_in_progress");
        assert!(
            in_progress <= SLOTS as f64,
            "{in_progress} requests at once"
        );
        samples += 1;
    }
    for client in clients {
        let (i, status, body) = client.await.unwrap();
        assert_eq!(status, StatusCode::OK, "client {i}: {body}");
        if i % 2 == 0 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["data"]["getOnlineSessions"],
                json!([{ "sessionId": "burst-1" }]),
                "client {i}"
            );
        } else {
            // The console Session API lists the user's console sessions: this login's.
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["sessions"][0]["sessionId"],
                admin.session_id.as_str(),
                "client {i}"
            );
        }
    }
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "radacctd_http_requests_in_progress"), 0.0);
    assert_eq!(metric(&text, "radacctd_http_requests_waiting"), 0.0);
    assert_eq!(metric(&text, "radacctd_http_requests_shed_total"), 0.0);
    assert!(samples > 0, "the burst ended before /metrics was read once");
    app.stop().await;
}

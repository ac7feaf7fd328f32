//! The GraphQL API (SPEC §4) over HTTP and WebSocket, on sessions created by UDP packets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use radacctd::radius::dict::{self, status};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::console::{add_user, login};
use crate::harness::{
    spawn_app, spawn_app_on, spawn_app_with, Backend, Nas, TestApp, ADMIN_PASSWORD,
};
use radacctd::radius::builder::Request;

/// The seed query, exactly as SPEC §4 documents it.
const SEED_QUERY: &str = "query getOnlineSessions($userId: Int!) {\n  getOnlineSessions(userId: $userId) {\n    id sessionId nasIpAddress nasPortId nasPortType startTime\n    connectInfoStart callingStationId framedIpAddress\n  }\n}";

both_backends!(
    the_seed_query_returns_exactly_the_documented_fields,
    every_error_class_has_its_status_and_code,
    anonymous_queries_work_only_when_enabled_and_never_for_mutations,
    online_sessions_paginate_with_cursors_and_filter,
    session_history_and_counts_per_nas,
    disconnect_session_reports_ack_nak_and_timeout,
    a_subscriber_receives_a_start_sent_after_subscribing,
    an_accounting_on_sends_a_stop_for_every_session_it_closes,
    a_reboot_of_more_sessions_than_the_feed_buffers_reaches_a_subscriber_in_full,
    a_session_the_reaper_closes_reaches_its_subscriber_as_a_stop,
);

async fn gql(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(app.url(path)).json(&body);
    if let Some(t) = token {
        req = req.header("Authtoken", t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn user_id(app: &TestApp, login: &str) -> i64 {
    app.store()
        .user_by_login("master.domain", login)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn the_seed_query_returns_exactly_the_documented_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    let t = chrono::Utc::now().timestamp() as u32 - 100;
    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "alice")
            .string(dict::ACCT_SESSION_ID, "sess456")
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
            .u32(dict::EVENT_TIMESTAMP, t)
            .u32(dict::NAS_PORT_TYPE, 19)
            .string(dict::NAS_PORT_ID, "port2")
            .string(dict::CONNECT_INFO, "connection start info")
            .string(dict::CALLING_STATION_ID, "station456")
            .ipv4(dict::FRAMED_IP_ADDRESS, [192, 168, 1, 101].into()),
    )
    .await;
    // A later session with nothing optional, and a closed one that must not show.
    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "alice")
            .string(dict::ACCT_SESSION_ID, "bare")
            .ipv4(dict::NAS_IP_ADDRESS, [192, 168, 1, 2].into())
            .u32(dict::EVENT_TIMESTAMP, t + 10),
    )
    .await;
    nas.send(
        nas.session(status::STOP, "alice", "closed")
            .u32(dict::EVENT_TIMESTAMP, t + 20),
    )
    .await;
    let rows = app.sessions().await;
    let id_of = |sid: &str| {
        rows.iter()
            .find(|s| s.acctsessionid == sid)
            .unwrap()
            .radacctid
    };
    let uid = user_id(&app, "alice").await;
    let expected = json!({"data": {"getOnlineSessions": [
        {
            "id": id_of("sess456"), "sessionId": "sess456", "nasIpAddress": "192.0.2.1", "nasPortId": "port2",
            "nasPortType": "Wireless-802.11",
            "startTime": chrono::DateTime::from_timestamp(i64::from(t), 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "connectInfoStart": "connection start info", "callingStationId": "station456", "framedIpAddress": "192.168.1.101"
        },
        {
            "id": id_of("bare"), "sessionId": "bare", "nasIpAddress": "192.168.1.2", "nasPortId": null,
            "nasPortType": null,
            "startTime": chrono::DateTime::from_timestamp(i64::from(t + 10), 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "connectInfoStart": null, "callingStationId": null, "framedIpAddress": null
        }
    ]}});
    for path in ["/getOnlineSessions", "/graphql"] {
        let (status, body) = gql(
            &app,
            path,
            Some(&admin.token),
            json!({"query": SEED_QUERY, "variables": {"userId": uid}, "operationName": "getOnlineSessions"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, expected, "{path}");
    }
    // Key order of the seed document, byte for byte.
    let text = reqwest::Client::new()
        .post(app.url("/getOnlineSessions"))
        .header("Authtoken", &admin.token)
        .json(&json!({"query": SEED_QUERY, "variables": {"userId": uid}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with(&format!("{{\"data\":{{\"getOnlineSessions\":[{{\"id\":{},\"sessionId\":\"sess456\",\"nasIpAddress\":", id_of("sess456"))),
        "{text}"
    );
    app.stop().await;
}

async fn every_error_class_has_its_status_and_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let tok = Some(admin.token.as_str());
    let check = |status: StatusCode, body: &Value, want: StatusCode, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
        assert!(body["errors"][0]["message"].is_string());
    };

    // Malformed JSON.
    let r = reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("Authtoken", &admin.token)
        .header("Content-Type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    let status = r.status();
    check(
        status,
        &r.json().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    );
    // Parse error, validation error, userId outside 32 bits, wrong variable type.
    let (s, b) = gql(&app, "/graphql", tok, json!({"query": "query {"})).await;
    check(s, &b, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let (s, b) = gql(&app, "/graphql", tok, json!({"query": "{ noSuchField }"})).await;
    check(s, &b, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let (s, b) = gql(
        &app,
        "/graphql",
        tok,
        json!({"query": SEED_QUERY, "variables": {"userId": 4294967296i64}}),
    )
    .await;
    check(s, &b, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let (s, b) = gql(
        &app,
        "/graphql",
        tok,
        json!({"query": SEED_QUERY, "variables": {"userId": "one"}}),
    )
    .await;
    check(s, &b, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    // No token, a bad token.
    let (s, b) = gql(
        &app,
        "/graphql",
        None,
        json!({"query": SEED_QUERY, "variables": {"userId": 1}}),
    )
    .await;
    check(s, &b, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let (s, b) = gql(
        &app,
        "/graphql",
        Some("QSDK 1234"),
        json!({"query": SEED_QUERY, "variables": {"userId": 1}}),
    )
    .await;
    check(s, &b, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    // Unknown user.
    let (s, b) = gql(
        &app,
        "/graphql",
        tok,
        json!({"query": SEED_QUERY, "variables": {"userId": 999999}}),
    )
    .await;
    check(s, &b, StatusCode::NOT_FOUND, "NOT_FOUND");
    // Not allowed: an operator may not disconnect.
    add_user(&app, "op", "operator", "op-pw").await;
    let op = login(&app, "op", "op-pw").await;
    let (s, b) = gql(
        &app,
        "/graphql",
        Some(&op.token),
        json!({"query": "mutation { disconnectSession(id: 1) { result } }"}),
    )
    .await;
    check(s, &b, StatusCode::FORBIDDEN, "FORBIDDEN");
    // Too deep, too large.
    let mut deep = String::from("{ __schema { types { fields { type { ");
    deep.push_str(&"ofType { ".repeat(14));
    deep.push_str("name ");
    deep.push_str(&"} ".repeat(19));
    let (s, b) = gql(&app, "/graphql", tok, json!({"query": deep})).await;
    check(s, &b, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let huge = json!({"query": format!("{{ __typename }} #{}", "x".repeat(1_100_000))});
    let (s, b) = gql(&app, "/graphql", tok, huge).await;
    check(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "BAD_REQUEST");
    // The GraphiQL page needs no token.
    let r = reqwest::get(app.url("/graphql")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("GraphiQL"));
    app.stop().await;
}

async fn anonymous_queries_work_only_when_enabled_and_never_for_mutations(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.auth.anonymous_graphql = true).await;
    let nas = app.nas();
    nas.send(nas.session(status::START, "anon", "a1")).await;
    let uid = user_id(&app, "anon").await;
    let (s, b) = gql(
        &app,
        "/getOnlineSessions",
        None,
        json!({"query": SEED_QUERY, "variables": {"userId": uid}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["getOnlineSessions"][0]["sessionId"], "a1");
    let (s, b) = gql(
        &app,
        "/graphql",
        None,
        json!({"query": "mutation { disconnectSession(id: 1) { result } }"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");

    // Over the WebSocket too: a connection without a token subscribes and gets its events, and
    // is refused a mutation.
    let mut ws = ws_connect(app.http, json!({})).await;
    ws_start(
        &mut ws,
        "1",
        &format!(
            "subscription {{ sessionEvents(userId: {uid}) {{ kind session {{ sessionId }} }} }}"
        ),
    )
    .await;
    first_update(&mut ws, &nas, "anon", "a1").await;
    ws_start(
        &mut ws,
        "2",
        "mutation { disconnectSession(id: 1) { result } }",
    )
    .await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["id"], "2", "{v}");
    assert_eq!(
        v["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{v}"
    );
    assert!(v["payload"]["data"].is_null(), "{v}");
    app.stop().await;
}

async fn online_sessions_paginate_with_cursors_and_filter(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    let t = chrono::Utc::now().timestamp() as u32 - 100;
    for i in 0..5u32 {
        nas.send(
            nas.request(status::START)
                .string(dict::USER_NAME, if i < 3 { "sub_a" } else { "other" })
                .string(dict::ACCT_SESSION_ID, &format!("p{i}"))
                .ipv4(
                    dict::NAS_IP_ADDRESS,
                    if i % 2 == 0 {
                        [10, 0, 0, 1]
                    } else {
                        [10, 0, 0, 2]
                    }
                    .into(),
                )
                .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, i as u8].into())
                .u32(dict::EVENT_TIMESTAMP, t + i),
        )
        .await;
    }
    let page = |after: Option<String>, filter: &str| {
        let after = after
            .map(|a| format!(", after: \"{a}\""))
            .unwrap_or_default();
        json!({"query": format!("{{ onlineSessions(first: 2{after}{filter}) {{ edges {{ cursor node {{ sessionId }} }} pageInfo {{ hasNextPage endCursor }} }} }}")})
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (s, b) = gql(
            &app,
            "/graphql",
            Some(&admin.token),
            page(after.clone(), ""),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let conn = &b["data"]["onlineSessions"];
        for e in conn["edges"].as_array().unwrap() {
            seen.push(e["node"]["sessionId"].as_str().unwrap().to_owned());
        }
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4"]);
    let ids = |b: &Value| {
        b["data"]["onlineSessions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["sessionId"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (_, b) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        page(None, ", nas: \"10.0.0.2\""),
    )
    .await;
    assert_eq!(ids(&b), ["p1", "p3"]);
    let (_, b) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        page(None, ", usernamePrefix: \"sub_\""),
    )
    .await;
    assert_eq!(ids(&b), ["p0", "p1"]);
    let (_, b) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        page(None, ", usernamePrefix: \"sub%\""),
    )
    .await;
    assert!(
        ids(&b).is_empty(),
        "LIKE wildcards in the prefix are literal"
    );
    let (_, b) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        page(None, ", usernamePrefix: \"SUB_\""),
    )
    .await;
    assert!(
        ids(&b).is_empty(),
        "the prefix is case-sensitive on both databases"
    );
    let (_, b) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        page(None, ", framedIp: \"100.64.0.4\""),
    )
    .await;
    assert_eq!(ids(&b), ["p4"]);
    let (s, _) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        page(Some("garbage".into()), ""),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        page(None, ", nas: \"not-an-ip\""),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    app.stop().await;
}

async fn session_history_and_counts_per_nas(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    let t = chrono::Utc::now().timestamp() as u32 - 1000;
    nas.send(
        nas.session(status::START, "hist", "old")
            .u32(dict::EVENT_TIMESTAMP, t),
    )
    .await;
    nas.send(
        nas.session(status::STOP, "hist", "old")
            .u32(dict::EVENT_TIMESTAMP, t + 100)
            .u32(dict::ACCT_SESSION_TIME, 100),
    )
    .await;
    nas.send(
        nas.session(status::START, "hist", "new")
            .u32(dict::EVENT_TIMESTAMP, t + 500),
    )
    .await;
    let uid = user_id(&app, "hist").await;
    let q = |from: u32, to: u32| json!({"query": format!("{{ sessionHistory(userId: {uid}, from: \"{from}\", to: \"{to}\") {{ sessionId online stopTime }} }}")});
    let names = |b: &Value| {
        b["data"]["sessionHistory"]
            .as_array()
            .unwrap_or_else(|| panic!("{b}"))
            .iter()
            .map(|s| s["sessionId"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (_, b) = gql(&app, "/graphql", Some(&admin.token), q(t, t + 1000)).await;
    assert_eq!(names(&b), ["old", "new"]);
    let (_, b) = gql(&app, "/graphql", Some(&admin.token), q(t + 200, t + 1000)).await;
    assert_eq!(names(&b), ["new"]);
    let (_, b) = gql(&app, "/graphql", Some(&admin.token), q(t, t + 50)).await;
    assert_eq!(names(&b), ["old"]);
    let (s, _) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        json!({"query": format!("{{ sessionHistory(userId: {uid}, from: \"yesterday\") {{ id }} }}")}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "x")
            .string(dict::ACCT_SESSION_ID, "x1")
            .ipv4(dict::NAS_IP_ADDRESS, [10, 9, 9, 9].into()),
    )
    .await;
    let (_, b) = gql(
        &app,
        "/graphql",
        Some(&admin.token),
        json!({"query": "{ onlineCountsByNas { nasIpAddress online } }"}),
    )
    .await;
    assert_eq!(
        b["data"]["onlineCountsByNas"],
        json!([{"nasIpAddress": "10.9.9.9", "online": 1}, {"nasIpAddress": "192.0.2.1", "online": 1}])
    );
    app.stop().await;
}

/// A NAS on 127.0.0.1 that answers Disconnect-Requests as told.
async fn test_nas(
    answer: Option<(u8, Option<u32>)>,
) -> (u16, tokio::task::JoinHandle<Option<Vec<u8>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let request = buf[..n].to_vec();
        if let Some((code, cause)) = answer {
            let secret = b"testing123";
            let req = radius::core::packet::Packet::decode(&request, secret).unwrap();
            let mut resp = req.make_response_packet(radius::core::code::Code::from(code));
            if let Some(c) = cause {
                resp.add(radius::core::avp::AVP::from_u32(dict::ERROR_CAUSE, c));
            }
            socket.send_to(&resp.encode().unwrap(), from).await.unwrap();
        }
        Some(request)
    });
    (port, handle)
}

async fn disconnect_session_reports_ack_nak_and_timeout(backend: Backend) {
    for (answer, expected, cause) in [
        (Some((41u8, None)), "ACK", Value::Null),
        (Some((42u8, Some(503u32))), "NAK", json!(503)),
        (None, "TIMEOUT", Value::Null),
    ] {
        let (port, nas_task) = test_nas(answer).await;
        let app = spawn_app_with(backend, |c| {
            for client in &mut c.radius.clients {
                client.coa_port = port;
            }
        })
        .await;
        let admin = login(&app, "admin", ADMIN_PASSWORD).await;
        let nas = app.nas();
        // No NAS-IP-Address: the session's NAS is the packet's source, 127.0.0.1.
        nas.send(
            nas.request(status::START)
                .string(dict::USER_NAME, "victim")
                .string(dict::ACCT_SESSION_ID, "dc1")
                .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 1, 1].into()),
        )
        .await;
        let id = app.session("dc1").await.radacctid;
        let (s, b) = gql(
            &app,
            "/graphql",
            Some(&admin.token),
            json!({"query": format!("mutation {{ disconnectSession(id: {id}) {{ result errorCause nasIpAddress }} }}")}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["data"]["disconnectSession"]["result"], expected);
        assert_eq!(b["data"]["disconnectSession"]["errorCause"], cause);
        assert_eq!(b["data"]["disconnectSession"]["nasIpAddress"], "127.0.0.1");
        let request = nas_task
            .await
            .unwrap()
            .expect("the NAS got a Disconnect-Request");
        assert_eq!(request[0], 40);
        let p = radius::core::packet::Packet::decode(&request, b"testing123").unwrap();
        assert_eq!(
            p.lookup(dict::ACCT_SESSION_ID)
                .unwrap()
                .encode_string()
                .unwrap(),
            "dc1"
        );
        assert_eq!(
            p.lookup(dict::USER_NAME).unwrap().encode_string().unwrap(),
            "victim"
        );
        assert!(radius::core::packet::Packet::is_authentic_request(
            &request,
            b"testing123"
        ));
        // An unknown or closed session is 404.
        let (s, _) = gql(
            &app,
            "/graphql",
            Some(&admin.token),
            json!({"query": "mutation { disconnectSession(id: 987654) { result } }"}),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        app.stop().await;
    }
}

/// Opens a graphql-transport-ws subscription to a user's session events.
pub async fn subscribe(http: std::net::SocketAddr, token: &str, user_id: i64) -> Ws {
    subscribe_to(http, token, &format!("(userId: {user_id})")).await
}

/// Opens a graphql-transport-ws subscription to `sessionEvents` with these arguments.
async fn subscribe_to(http: std::net::SocketAddr, token: &str, arguments: &str) -> Ws {
    let mut ws = ws_connect(http, json!({"Authtoken": token})).await;
    ws_start(
        &mut ws,
        "1",
        &format!("subscription {{ sessionEvents{arguments} {{ kind session {{ sessionId online terminateCause }} }} }}"),
    )
    .await;
    ws
}

/// A graphql-transport-ws connection, acknowledged after `connection_init` with this payload.
async fn ws_connect(http: std::net::SocketAddr, init_payload: Value) -> Ws {
    let mut request = format!("ws://{http}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": init_payload}).to_string(),
    ))
    .await
    .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

/// Starts operation `id` (a query, mutation or subscription) on the connection.
async fn ws_start(ws: &mut Ws, id: &str, query: &str) {
    ws.send(Message::text(
        json!({"id": id, "type": "subscribe", "payload": {"query": query}}).to_string(),
    ))
    .await
    .unwrap();
}

pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a WebSocket message within 10 s")
            .expect("the WebSocket is open")
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "ping" {
                continue;
            }
            return v;
        }
    }
}

async fn a_subscriber_receives_a_start_sent_after_subscribing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    // The user must exist to subscribe to it.
    nas.send(nas.session(status::START, "watched", "before"))
        .await;
    let uid = user_id(&app, "watched").await;
    let mut ws = subscribe(app.http, &admin.token, uid).await;
    // Give the subscription a moment to be registered before sending (it is set up
    // asynchronously after the subscribe message); resend until the event shows up.
    nas.send(nas.session(status::START, "someone-else", "noise"))
        .await;
    let mut got = None;
    for attempt in 0..20 {
        nas.send(nas.session(status::START, "watched", &format!("after-{attempt}")))
            .await;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(500), next_json(&mut ws)).await {
            got = Some(v);
            break;
        }
    }
    let v = got.expect("a session event");
    assert_eq!(v["type"], "next", "{v}");
    assert_eq!(v["payload"]["data"]["sessionEvents"]["kind"], "START");
    assert!(
        v["payload"]["data"]["sessionEvents"]["session"]["sessionId"]
            .as_str()
            .unwrap()
            .starts_with("after-")
    );
    // A bad token is refused at connection_init.
    let mut request = format!("ws://{}/graphql/ws", app.http)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut bad, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    bad.send(Message::text(
        json!({"type": "connection_init", "payload": {"Authtoken": "QSDK 00"}}).to_string(),
    ))
    .await
    .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), bad.next())
        .await
        .unwrap();
    assert!(
        matches!(closed, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        "{closed:?}"
    );
    app.stop().await;
}

/// An Accounting-On closes every open session of its NAS in one statement; a subscriber gets a
/// STOP for each of its user's sessions it closed (and nothing for other users'), as it does for
/// a Stop packet.
async fn an_accounting_on_sends_a_stop_for_every_session_it_closes(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    for (user, session) in [("rebooted", "r1"), ("rebooted", "r2"), ("bystander", "b1")] {
        nas.send(nas.session(status::START, user, session)).await;
    }
    let uid = user_id(&app, "rebooted").await;
    let mut ws = subscribe(app.http, &admin.token, uid).await;
    first_update(&mut ws, &nas, "rebooted", "r1").await;

    accounting_on(&nas).await;
    let mut stopped = Vec::new();
    while stopped.len() < 2 {
        let v = next_json(&mut ws).await;
        let event = &v["payload"]["data"]["sessionEvents"];
        assert_eq!(event["kind"], "STOP", "{v}");
        assert_eq!(event["session"]["online"], false, "{v}");
        stopped.push(event["session"]["sessionId"].as_str().unwrap().to_owned());
    }
    stopped.sort();
    assert_eq!(stopped, ["r1", "r2"]);
    // Nothing else: the bystander's session is another user's.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), next_json(&mut ws))
            .await
            .is_err(),
        "an event for another user"
    );
    app.stop().await;
}

/// An Accounting-On that closes more sessions than the feed holds at once (4,096) reaches an
/// every-user subscriber in full, each once: the feed reads and hands out the closed sessions a
/// page (512) at a time.
async fn a_reboot_of_more_sessions_than_the_feed_buffers_reaches_a_subscriber_in_full(
    backend: Backend,
) {
    const SESSIONS: usize = 6_000;
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    let t0 = chrono::Utc::now().timestamp() - 60;
    let (nas_ip, start) = match backend {
        Backend::Sqlite => ("'192.0.2.1'".to_owned(), t0.to_string()),
        Backend::Postgres => (
            "'192.0.2.1'::inet".to_owned(),
            format!("to_timestamp({t0})"),
        ),
    };
    app.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SESSIONS}) \
         INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, acctstarttime, acctupdatetime) \
         SELECT 'bulk-' || i, 'bulk-uid-' || i, 'bulk-' || (i % 50), {nas_ip}, {start}, {start} FROM n"
    ))
    .await;
    let mut ws = subscribe_to(app.http, &admin.token, "").await;
    first_event(&mut ws, &nas, |attempt| {
        nas.session(status::START, "probe", &format!("probe-{attempt}"))
    })
    .await;

    accounting_on(&nas).await;
    let mut stopped = std::collections::HashSet::new();
    while let Ok(v) = tokio::time::timeout(Duration::from_secs(5), next_json(&mut ws)).await {
        let event = &v["payload"]["data"]["sessionEvents"];
        assert_eq!(event["kind"], "STOP", "{v}");
        let id = event["session"]["sessionId"].as_str().unwrap().to_owned();
        assert!(stopped.insert(id.clone()), "two STOPs for {id}");
        if stopped.len() == SESSIONS + 20 {
            break;
        }
    }
    // The bulk sessions and the probes that opened before the Accounting-On.
    let bulk = stopped.iter().filter(|id| id.starts_with("bulk-")).count();
    assert_eq!(bulk, SESSIONS);
    app.stop().await;
}

/// A session the stale-session reaper closes (no packet for `stale_after`, here 2 s) reaches a
/// subscriber as a STOP with terminate cause `Stale-Session`, as a Stop packet would.
async fn a_session_the_reaper_closes_reaches_its_subscriber_as_a_stop(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.accounting.stale_after = Some(Duration::from_secs(2));
    })
    .await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    nas.send(nas.session(status::START, "sleeper", "z1")).await;
    let uid = user_id(&app, "sleeper").await;
    let mut ws = subscribe(app.http, &admin.token, uid).await;
    // Interim-Updates keep the session fresh until the subscription is live.
    first_update(&mut ws, &nas, "sleeper", "z1").await;
    // Then silence: the reaper closes it 2 s after its last update, looking every second.
    let v = tokio::time::timeout(Duration::from_secs(10), next_json(&mut ws))
        .await
        .expect("no STOP within 10 s of the session going stale");
    let event = &v["payload"]["data"]["sessionEvents"];
    assert_eq!(event["kind"], "STOP", "{v}");
    assert_eq!(event["session"]["sessionId"], "z1", "{v}");
    assert_eq!(event["session"]["online"], false, "{v}");
    assert_eq!(event["session"]["terminateCause"], "Stale-Session", "{v}");
    let row = app.session("z1").await;
    assert_eq!(row.acctterminatecause.as_deref(), Some("Stale-Session"));
    app.stop().await;
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `packet(attempt)` until the subscription shows an event (it is set up after the
/// subscribe message), returns that event, and reads away what the other attempts set off.
async fn first_event(ws: &mut Ws, nas: &Nas, packet: impl Fn(u32) -> Request) -> Value {
    for attempt in 0..20 {
        nas.send(packet(attempt)).await;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(500), next_json(ws)).await {
            while tokio::time::timeout(Duration::from_millis(300), next_json(ws))
                .await
                .is_ok()
            {}
            return v;
        }
    }
    panic!("no sessionEvents event after 20 packets");
}

/// Sends Interim-Updates of this session until the subscription shows one (it is live then).
async fn first_update(ws: &mut Ws, nas: &Nas, user: &str, session: &str) {
    let v = first_event(ws, nas, |attempt| {
        nas.session(status::INTERIM_UPDATE, user, session)
            .u32(dict::ACCT_SESSION_TIME, attempt)
    })
    .await;
    assert_eq!(
        v["payload"]["data"]["sessionEvents"]["kind"], "UPDATE",
        "{v}"
    );
}

/// The test NAS's Accounting-On, for the sessions it opened (NAS-IP-Address 192.0.2.1).
async fn accounting_on(nas: &Nas) {
    let t = chrono::Utc::now().timestamp() as u32;
    nas.send(
        nas.request(status::ACCOUNTING_ON)
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
            .u32(dict::EVENT_TIMESTAMP, t),
    )
    .await;
}

/// On PostgreSQL, a Start ingested by another node reaches a subscriber of this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_events_ingested_by_another_node() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_app_on(a.db.shared(), |c| c.node = "node-b".into()).await;
    let admin = login(&a, "admin", ADMIN_PASSWORD).await;
    let nas_b = b.nas();
    nas_b
        .send(nas_b.session(status::START, "roamer", "first"))
        .await;
    let uid = user_id(&a, "roamer").await;
    let mut ws = subscribe(a.http, &admin.token, uid).await;
    let mut got = None;
    for attempt in 0..20 {
        nas_b
            .send(
                nas_b
                    .session(status::STOP, "roamer", "first")
                    .u32(dict::ACCT_SESSION_TIME, attempt),
            )
            .await;
        // The Start may arrive too, when node b's NOTIFY of it reached this node after the
        // subscription began: look for the Stop.
        while let Ok(v) = tokio::time::timeout(Duration::from_millis(500), next_json(&mut ws)).await
        {
            if v["payload"]["data"]["sessionEvents"]["kind"] == "STOP" {
                got = Some(v);
                break;
            }
        }
        if got.is_some() {
            break;
        }
    }
    let v = got.expect("a Stop event from node b");
    assert_eq!(v["payload"]["data"]["sessionEvents"]["kind"], "STOP", "{v}");
    assert_eq!(
        v["payload"]["data"]["sessionEvents"]["session"]["online"],
        false
    );
    b.stop().await;
    a.stop().await;
}

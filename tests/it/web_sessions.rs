//! The web-sessions REST API (SPEC §6) over HTTP and WebSocket, on one node and on two nodes
//! of different sites sharing one PostgreSQL database.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::console::{add_user, login};
use crate::graphql::subscribe;
use crate::harness::{spawn_app, Backend, TestApp, ADMIN_PASSWORD};

const PATH: &str = "/rest/v1/master/logicalroles/ws/sessions";

both_backends!(
    the_listing_shows_open_sessions_of_the_selected_sites,
    websocket_connections_are_listed_and_close_with_their_session,
    delete_closes_one_session,
    bad_requests_get_clear_errors,
);

async fn get(app: &TestApp, token: &str, sites: Option<&str>) -> (StatusCode, Value) {
    let mut url = app.url(PATH);
    if let Some(s) = sites {
        url = format!("{url}?sites={}", urlencode(s));
    }
    let r = reqwest::Client::new()
        .get(url)
        .header("Authtoken", token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    if status == StatusCode::OK {
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(app.url(PATH))
        .header("Authtoken", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn session_api_status(app: &TestApp, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(app.url("/webconsole/api/Session?userId=1"))
        .header("Authtoken", token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn the_listing_shows_open_sessions_of_the_selected_sites(backend: Backend) {
    let app = spawn_app(backend).await;
    let a1 = login(&app, "admin", ADMIN_PASSWORD).await;
    let a2 = login(&app, "admin", ADMIN_PASSWORD).await;
    add_user(&app, "op", "operator", "op-pw").await;
    let op = login(&app, "op", "op-pw").await;

    let (s, list) = get(&app, &a1.token, None).await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:#?}");
    let first = &list[0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "domain",
            "login",
            "session_id",
            "session_type",
            "site",
            "ttl",
            "user_id"
        ]
    );
    assert_eq!(first["domain"], "master.domain");
    assert_eq!(first["login"], "admin");
    assert_eq!(first["session_id"], a1.session_id.as_str());
    assert_eq!(first["session_type"], "http");
    assert_eq!(first["site"], "central");
    assert_eq!(first["user_id"], a1.user_guid.as_str());
    let ttl = first["ttl"].as_i64().unwrap();
    assert!(ttl > 43_000 && ttl <= 43_200, "{ttl}");
    assert_eq!(list[1]["session_id"], a2.session_id.as_str());
    assert_eq!(list[2]["login"], "op");

    for sites in [
        "\"all\"",
        "\"current\"",
        "[\"central\"]",
        "[\"east\",\"central\"]",
    ] {
        let (s, l) = get(&app, &a1.token, Some(sites)).await;
        assert_eq!(s, StatusCode::OK, "{sites}");
        assert_eq!(l.as_array().unwrap().len(), 3, "{sites}");
    }
    let (s, l) = get(&app, &a1.token, Some("[\"east\"]")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l, json!([]));
    // An operator sees only its own.
    let (_, l) = get(&app, &op.token, Some("\"all\"")).await;
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["login"], "op");
    // No token.
    let r = reqwest::get(app.url(PATH)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn websocket_connections_are_listed_and_close_with_their_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let current = login(&app, "admin", ADMIN_PASSWORD).await;
    let other = login(&app, "admin", ADMIN_PASSWORD).await;
    let mut ws = subscribe(app.http, &other.token, other.user_id).await;

    let (_, list) = get(&app, &current.token, None).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:#?}");
    let ws_entry = list
        .iter()
        .find(|e| e["session_type"] == "websocket")
        .expect("a websocket entry");
    assert_eq!(ws_entry["session_id"], other.session_id.as_str());
    let keys: Vec<&str> = ws_entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "connections",
            "domain",
            "login",
            "session_id",
            "session_type",
            "site",
            "ttl",
            "user_id"
        ]
    );
    let conn = &ws_entry["connections"][0];
    assert_eq!(conn["is_pid_alive"], true);
    assert_eq!(conn["node"], "test-node");
    assert!(conn["conn_id"].as_str().unwrap().len() >= 32);
    assert!(conn["pid"].as_str().unwrap().starts_with("<test-node."));

    let (s, body) = post(
        &app,
        &current.token,
        json!({"action": "logout", "domain": "master.domain", "user": "admin", "sites": "all"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "logged out all sessions but current"})
    );
    assert_eq!(
        session_api_status(&app, &other.token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        session_api_status(&app, &current.token).await,
        StatusCode::OK
    );
    assert_closed_within(&mut ws, Duration::from_secs(1)).await;
    let (_, list) = get(&app, &current.token, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    app.stop().await;
}

/// The server ends the WebSocket (close frame or end of stream) within `within`.
async fn assert_closed_within(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("the WebSocket is still open after {within:?}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn delete_closes_one_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let victim = login(&app, "admin", ADMIN_PASSWORD).await;
    add_user(&app, "op", "operator", "op-pw").await;
    let op = login(&app, "op", "op-pw").await;
    let http = reqwest::Client::new();
    let delete = |token: String, id: String, sites: &'static str| {
        let url = format!("{}/{id}{sites}", app.url(PATH));
        let http = http.clone();
        async move {
            http.delete(url)
                .header("Authtoken", token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // An operator may not close the admin's session; nobody may without a token.
    assert_eq!(
        delete(op.token.clone(), victim.session_id.clone(), "").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        http.delete(format!("{}/{}", app.url(PATH), victim.session_id))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Another site's filter does not find it.
    assert_eq!(
        delete(
            admin.token.clone(),
            victim.session_id.clone(),
            "?sites=%5B%22east%22%5D"
        )
        .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(
            admin.token.clone(),
            victim.session_id.clone(),
            "?sites=%22all%22"
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session_api_status(&app, &victim.token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        delete(admin.token.clone(), victim.session_id.clone(), "").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(admin.token.clone(), "no-such-session".into(), "").await,
        StatusCode::NOT_FOUND
    );
    // Anyone may close their own.
    assert_eq!(
        delete(op.token.clone(), op.session_id.clone(), "").await,
        StatusCode::NO_CONTENT
    );
    app.stop().await;
}

async fn bad_requests_get_clear_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    for bad in ["all", "5", "\"SITE1\"", "{\"a\":1}", "[1]"] {
        let (s, body) = get(&app, &admin.token, Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "sites={bad}");
        let msg = body["errorMessage"].as_str().unwrap();
        assert!(msg.contains("sites") && msg.contains("\"all\""), "{msg}");
    }
    let (s, _) = post(
        &app,
        &admin.token,
        json!({"action": "kick", "domain": "master.domain", "user": "admin"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(&app, &admin.token, json!({"action": "logout", "domain": "master.domain", "user": "admin", "sites": "everywhere"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(&app, &admin.token, json!({"nonsense": true})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(
        &app,
        &admin.token,
        json!({"action": "logout", "domain": "master.domain", "user": "ghost"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // By UUID works as well as by login.
    let (s, _) = post(
        &app,
        &admin.token,
        json!({"action": "logout", "domain": "master.domain", "user": admin.user_guid}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(session_api_status(&app, &admin.token).await, StatusCode::OK);
    app.stop().await;
}

/// Two nodes of different sites on one PostgreSQL database, node B a separate `radacctd`
/// process: a session logged in on node B (site east), whose WebSocket node B holds, is listed
/// from node A and closed from node A; node B closes the WebSocket within a second. A dead
/// node's connections show `is_pid_alive` false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_closes_sessions_and_websockets_held_by_another() {
    let a = spawn_app(Backend::Postgres).await;
    let b =
        crate::cli::Server::start_with(&a.db.url, &["--node", "node-b", "--site", "east"]).await;
    let on_a = login(&a, "admin", ADMIN_PASSWORD).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/webconsole/api/Login", b.http))
        .json(&json!({"username": "admin", "password": crate::console::b64(ADMIN_PASSWORD)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let on_b: Value = r.json().await.unwrap();
    let (b_token, b_session) = (
        on_b["token"].as_str().unwrap().to_owned(),
        on_b["sessionId"].as_str().unwrap().to_owned(),
    );
    let mut ws = subscribe(b.http, &b_token, on_a.user_id).await;
    let b_status = |token: String| {
        let url = format!("http://{}/webconsole/api/Session?userId=1", b.http);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("Authtoken", token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    let (_, here) = get(&a, &on_a.token, None).await;
    assert_eq!(
        here.as_array().unwrap().len(),
        1,
        "only site central by default: {here}"
    );
    let (_, east) = get(&a, &on_a.token, Some("[\"east\"]")).await;
    let east = east.as_array().unwrap().clone();
    assert_eq!(east.len(), 2, "{east:#?}");
    assert_eq!(east[0]["site"], "east");
    assert_eq!(east[0]["session_id"], b_session.as_str());
    assert_eq!(east[1]["connections"][0]["node"], "node-b");
    assert_eq!(east[1]["connections"][0]["is_pid_alive"], true);

    // A connection left behind by a node that stopped sending heartbeats.
    a.execute("INSERT INTO nodes (node, site, heartbeat) VALUES ('ghost', 'east', now() - interval '1 hour')").await;
    a.execute(&format!(
        "INSERT INTO ws_connections (conn_id, session_id, node, pid, opened_at) VALUES \
         ('00000000-0000-0000-0000-000000000001', '{b_session}', 'ghost', '<ghost.1>', now())"
    ))
    .await;
    let (_, all) = get(&a, &on_a.token, Some("\"all\"")).await;
    let ghost = all
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["connections"].as_array().cloned().unwrap_or_default())
        .find(|c| c["node"] == "ghost")
        .expect("the ghost connection is listed");
    assert_eq!(ghost["is_pid_alive"], false);

    let (s, _) = post(
        &a,
        &on_a.token,
        json!({"action": "logout", "domain": "master.domain", "user": "admin", "sites": ["east"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b_status(b_token.clone()).await, StatusCode::UNAUTHORIZED);
    assert_closed_within(&mut ws, Duration::from_secs(1)).await;
    assert_eq!(session_api_status(&a, &on_a.token).await, StatusCode::OK);
    b.sigterm();
    let (status, log) = b.exit().await;
    assert!(status.success(), "{log}");
    a.stop().await;
}

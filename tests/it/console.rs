//! Login, Logout and the console Session API (SPEC §5, §7) over HTTP.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::both_backends;
use crate::harness::{
    eventually, spawn_app, spawn_app_on, spawn_app_with, Backend, TestApp, ADMIN_PASSWORD,
};

const WS: &str = "/webconsole/api";

both_backends!(
    login_returns_a_qsdk_token_with_the_user_ids_and_one_session_id,
    login_rejects_bad_input_and_answers_unknown_users_like_wrong_passwords,
    the_eleventh_failed_login_in_a_minute_gets_429_but_other_addresses_do_not,
    session_xml_and_json_carry_the_same_data,
    session_errors_have_their_status_and_the_requested_format,
    a_logged_out_token_is_rejected_and_a_second_logout_is_401,
    an_expired_token_is_rejected,
    only_active_sessions_header_leaves_out_closed_ones,
    closed_sessions_are_listed_within_the_retention_and_deleted_after_it,
    the_probe_answers_without_a_token,
    metrics_auth_puts_metrics_behind_an_operator_or_admin_token,
);

pub struct Login {
    pub token: String,
    pub user_id: i64,
    pub user_guid: String,
    pub session_id: String,
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Logs in and returns the answer.
pub async fn login(app: &TestApp, user: &str, password: &str) -> Login {
    let r = reqwest::Client::new()
        .post(app.url(&format!("{WS}/Login")))
        .json(&json!({"username": user, "password": b64(password)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login of {user}");
    let v: Value = r.json().await.unwrap();
    Login {
        token: v["token"].as_str().unwrap().to_owned(),
        user_id: v["userId"].as_i64().unwrap(),
        user_guid: v["userGUID"].as_str().unwrap().to_owned(),
        session_id: v["sessionId"].as_str().unwrap().to_owned(),
    }
}

/// Logs a token out; returns the status.
pub async fn logout(app: &TestApp, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(app.url(&format!("{WS}/Logout")))
        .header("Authtoken", token)
        .send()
        .await
        .unwrap()
        .status()
}

/// Creates a user with a password through the binary's own code path (the store).
pub async fn add_user(app: &TestApp, login: &str, role: &str, password: &str) -> i64 {
    let hash = radacctd::auth::hash_password(password);
    app.store()
        .user_create("master.domain", login, role, Some(&hash))
        .await
        .unwrap()
        .id
}

async fn get_sessions(
    app: &TestApp,
    token: &str,
    user_id: &str,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(app.url(&format!("{WS}/Session?userId={user_id}")))
        .header("Authtoken", token);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    req.send().await.unwrap()
}

async fn login_returns_a_qsdk_token_with_the_user_ids_and_one_session_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let l = login(&app, "admin", ADMIN_PASSWORD).await;
    assert!(l.token.starts_with("QSDK "), "{}", l.token);
    let user = app
        .store()
        .user_by_login("master.domain", "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.user_id, user.id);
    assert_eq!(l.user_guid, user.uuid);
    // The session id is the one of the console API.
    let r = get_sessions(
        &app,
        &l.token,
        &l.user_id.to_string(),
        Some("application/json"),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sessions"][0]["sessionId"], l.session_id.as_str());
    // Only the hash of the token is stored.
    let stored = match backend {
        Backend::Sqlite => sqlx::query_scalar::<_, String>("SELECT token_hash FROM web_sessions")
            .fetch_one(&sqlx::SqlitePool::connect(&app.db.url).await.unwrap())
            .await
            .unwrap(),
        Backend::Postgres => sqlx::query_scalar::<_, String>("SELECT token_hash FROM web_sessions")
            .fetch_one(&sqlx::PgPool::connect(&app.db.url).await.unwrap())
            .await
            .unwrap(),
    };
    assert!(!stored.contains(&l.token[5..]));
    assert_eq!(stored, radacctd::auth::token_hash(&l.token));
    app.stop().await;
}

async fn login_rejects_bad_input_and_answers_unknown_users_like_wrong_passwords(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(app.url(&format!("{WS}/Login")))
            .json(&body)
            .send()
    };

    let r = post(json!({"username": "admin", "password": "%%%not base64"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errorCode"], 400);
    assert!(v["errorMessage"].as_str().unwrap().contains("base64"));

    let r = http
        .post(app.url(&format!("{WS}/Login")))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let wrong = post(json!({"username": "admin", "password": b64("nope")}))
        .await
        .unwrap();
    let unknown = post(json!({"username": "nobody", "password": b64("nope")}))
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.text().await.unwrap(), unknown.text().await.unwrap());
    // No user was created by trying.
    assert!(app
        .store()
        .user_by_login("master.domain", "nobody")
        .await
        .unwrap()
        .is_none());

    // Fields the SDK sends and we do not know are ignored.
    let r = post(json!({"mode": 4, "username": "admin", "password": b64(ADMIN_PASSWORD), "deviceId": "x", "clientType": 30}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A subscriber (accounting user) cannot log in, even with a password.
    add_user(&app, "sub", "subscriber", "pw").await;
    let r = post(json!({"username": "sub", "password": b64("pw")}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn the_eleventh_failed_login_in_a_minute_gets_429_but_other_addresses_do_not(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let attacker = from("127.0.0.1");
    let body = json!({"username": "admin", "password": b64("wrong")});
    for i in 0..10 {
        let r = attacker
            .post(app.url(&format!("{WS}/Login")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {}", i + 1);
    }
    let r = attacker
        .post(app.url(&format!("{WS}/Login")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Even the right password waits out the minute from that address.
    let good = json!({"username": "admin", "password": b64(ADMIN_PASSWORD)});
    let r = attacker
        .post(app.url(&format!("{WS}/Login")))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address is not limited.
    let other = from("127.0.0.2");
    let r = other
        .post(app.url(&format!("{WS}/Login")))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct JsonSession {
    logout_time: i64,
    login_time: i64,
    host: String,
    description: String,
    session_id: String,
    browser_session_id: i64,
    console_type: i64,
    user: JsonUser,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct JsonUser {
    user_name: String,
    user_id: i64,
}

#[derive(Debug, Deserialize)]
struct XmlResp {
    #[serde(default)]
    sessions: Vec<XmlSession>,
}

#[derive(Debug, Deserialize)]
struct XmlSession {
    #[serde(rename = "@logoutTime")]
    logout_time: i64,
    #[serde(rename = "@loginTime")]
    login_time: i64,
    #[serde(rename = "@host")]
    host: String,
    #[serde(rename = "@description")]
    description: String,
    #[serde(rename = "@sessionId")]
    session_id: String,
    #[serde(rename = "@browserSessionId")]
    browser_session_id: i64,
    #[serde(rename = "@consoleType")]
    console_type: i64,
    user: XmlUser,
}

#[derive(Debug, Deserialize)]
struct XmlUser {
    #[serde(rename = "@userName")]
    user_name: String,
    #[serde(rename = "@userId")]
    user_id: i64,
}

async fn session_xml_and_json_carry_the_same_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.url(&format!("{WS}/Login")))
        .json(&json!({"username": "admin", "password": b64(ADMIN_PASSWORD), "consoleType": 5, "host": "host002"}))
        .send()
        .await
        .unwrap();
    let first: Value = r.json().await.unwrap();
    let token = first["token"].as_str().unwrap();
    let second = login(&app, "admin", ADMIN_PASSWORD).await;
    let uid = second.user_id.to_string();

    for accept in [None, Some("*/*"), Some("application/xml")] {
        let r = get_sessions(&app, token, &uid, accept).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml"));
    }
    let xml_text = get_sessions(&app, token, &uid, Some("application/xml"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        xml_text.contains("<Api_GetLoggedInSessionsResp>"),
        "{xml_text}"
    );
    let xml: XmlResp = quick_xml::de::from_str(&xml_text).unwrap();
    let json: Vec<JsonSession> = serde_json::from_value(
        get_sessions(&app, token, &uid, Some("application/json"))
            .await
            .json::<Value>()
            .await
            .unwrap()["sessions"]
            .clone(),
    )
    .unwrap();
    assert_eq!(json.len(), 2);
    let from_xml: Vec<JsonSession> = xml
        .sessions
        .into_iter()
        .map(|s| JsonSession {
            logout_time: s.logout_time,
            login_time: s.login_time,
            host: s.host,
            description: s.description,
            session_id: s.session_id,
            browser_session_id: s.browser_session_id,
            console_type: s.console_type,
            user: JsonUser {
                user_name: s.user.user_name,
                user_id: s.user.user_id,
            },
        })
        .collect();
    assert_eq!(from_xml, json);
    let s = &json[0];
    assert_eq!(s.session_id, first["sessionId"].as_str().unwrap());
    assert_eq!(s.host, "host002");
    assert_eq!(s.console_type, 5);
    assert_eq!(s.logout_time, 0);
    assert!((chrono::Utc::now().timestamp() - s.login_time).abs() < 60);
    assert_eq!(s.user.user_name, "admin");
    assert_eq!(s.user.user_id, second.user_id);
    assert_eq!(json[1].console_type, 19, "default consoleType");
    assert_ne!(json[0].browser_session_id, json[1].browser_session_id);
    app.stop().await;
}

async fn session_errors_have_their_status_and_the_requested_format(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let op_id = add_user(&app, "op", "operator", "op-pw").await;
    let op = login(&app, "op", "op-pw").await;
    assert_eq!(op.user_id, op_id);
    let http = reqwest::Client::new();

    // No token: 401, XML by default, JSON when asked.
    let r = http
        .get(app.url(&format!("{WS}/Session?userId=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = r.text().await.unwrap();
    assert!(body.contains("<Error errorCode=\"401\""), "{body}");
    let r = get_sessions(&app, "QSDK 00", "1", Some("application/json")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], 401);

    for (query, status) in [
        ("", StatusCode::BAD_REQUEST),
        ("abc", StatusCode::BAD_REQUEST),
        ("1.5", StatusCode::BAD_REQUEST),
        ("99999999999999999999999", StatusCode::BAD_REQUEST),
        ("424242", StatusCode::NOT_FOUND),
    ] {
        let r = get_sessions(&app, &admin.token, query, Some("application/json")).await;
        assert_eq!(r.status(), status, "userId={query}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errorCode"], status.as_u16());
    }
    let r = http
        .get(app.url(&format!("{WS}/Session")))
        .header("Authtoken", &admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("<Error errorCode=\"400\""));

    // An operator reads its own sessions but not the admin's.
    let r = get_sessions(
        &app,
        &op.token,
        &op.user_id.to_string(),
        Some("application/json"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get_sessions(&app, &op.token, &admin.user_id.to_string(), None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("errorCode=\"403\""));
    // The admin reads the operator's.
    let r = get_sessions(
        &app,
        &admin.token,
        &op.user_id.to_string(),
        Some("application/json"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Authorization: Bearer works as well as Authtoken.
    let r = http
        .get(app.url(&format!("{WS}/Session?userId={}", admin.user_id)))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = get_sessions(&app, &admin.token, "1", Some("text/html")).await;
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    app.stop().await;
}

async fn a_logged_out_token_is_rejected_and_a_second_logout_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let l = login(&app, "admin", ADMIN_PASSWORD).await;
    let http = reqwest::Client::new();
    let logout = || {
        http.post(app.url(&format!("{WS}/Logout")))
            .header("Authtoken", &l.token)
            .header("Content-Type", "application/xml")
            .send()
    };
    assert_eq!(logout().await.unwrap().status(), StatusCode::OK);
    let r = logout().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], 401);
    let r = get_sessions(&app, &l.token, &l.user_id.to_string(), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The closed session is still listed (with its logout time) for another login.
    let again = login(&app, "admin", ADMIN_PASSWORD).await;
    let v: Value = get_sessions(
        &app,
        &again.token,
        &again.user_id.to_string(),
        Some("application/json"),
    )
    .await
    .json()
    .await
    .unwrap();
    let closed = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == l.session_id.as_str())
        .unwrap();
    assert!(closed["logoutTime"].as_i64().unwrap() > 0);
    app.stop().await;
}

async fn an_expired_token_is_rejected(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.sessions.ttl = Duration::from_secs(1)).await;
    let l = login(&app, "admin", ADMIN_PASSWORD).await;
    let uid = l.user_id.to_string();
    assert!(
        eventually(Duration::from_secs(5), || async {
            get_sessions(&app, &l.token, &uid, None).await.status() == StatusCode::UNAUTHORIZED
        })
        .await,
        "the token outlived its ttl"
    );
    app.stop().await;
}

async fn only_active_sessions_header_leaves_out_closed_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let closed = login(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(logout(&app, &closed.token).await, StatusCode::OK);
    let open = login(&app, "admin", ADMIN_PASSWORD).await;
    let list = |active: bool| {
        let mut req = reqwest::Client::new()
            .get(app.url(&format!("{WS}/Session?userId={}", open.user_id)))
            .header("Authtoken", &open.token)
            .header("Accept", "application/json");
        if active {
            req = req.header("ONLY-ACTIVE-SESSIONS", "true");
        }
        async move {
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            v["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["sessionId"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(false).await,
        vec![closed.session_id.clone(), open.session_id.clone()]
    );
    assert_eq!(list(true).await, vec![open.session_id.clone()]);
    app.stop().await;
}

/// A closed console session is listed for `sessions.retention` (30 days by default) after it
/// closed, and deleted after that by a node's upkeep (at start, then every 10 minutes); open
/// sessions and those closed more recently stay.
async fn closed_sessions_are_listed_within_the_retention_and_deleted_after_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let old = login(&app, "admin", ADMIN_PASSWORD).await;
    let recent = login(&app, "admin", ADMIN_PASSWORD).await;
    let open = login(&app, "admin", ADMIN_PASSWORD).await;
    for closed in [&old, &recent] {
        assert_eq!(logout(&app, &closed.token).await, StatusCode::OK);
    }
    // Logged out 31 and 29 days ago.
    let now = chrono::Utc::now().timestamp();
    for (l, days) in [(&old, 31), (&recent, 29)] {
        let t = now - days * 86_400;
        let time = |t: i64| match backend {
            Backend::Sqlite => t.to_string(),
            Backend::Postgres => format!("to_timestamp({t})"),
        };
        app.execute(&format!(
            "UPDATE web_sessions SET login_time = {}, logout_time = {} WHERE session_id = '{}'",
            time(t - 3_600),
            time(t),
            l.session_id
        ))
        .await;
    }
    let listed = || async {
        let r = get_sessions(
            &app,
            &open.token,
            &open.user_id.to_string(),
            Some("application/json"),
        )
        .await;
        let v: Value = r.json().await.unwrap();
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sessionId"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed().await,
        [recent.session_id.clone(), open.session_id.clone()]
    );
    assert_eq!(app.count("web_sessions").await, 3);

    // Another node starts on the database: its upkeep deletes the session past the retention.
    let other = spawn_app_on(app.db.shared(), |c| c.node = "node-b".into()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.count("web_sessions").await == 2
        })
        .await,
        "the session closed 31 days ago was not deleted"
    );
    assert_eq!(
        listed().await,
        [recent.session_id.clone(), open.session_id.clone()]
    );
    other.stop().await;
    app.stop().await;
}

async fn the_probe_answers_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [format!("{WS}/"), WS.to_owned()] {
        let r = reqwest::get(app.url(&path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

/// Several nodes on one PostgreSQL database: a token from one is accepted by the other and
/// rejected there right after Logout on the first.
/// The failed-login limit counts every node's failures (they are in the database): five
/// failures on each of two nodes behind one balancer, and the 11th gets 429 on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_on_every_node_count_toward_one_limit() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_app_on(a.db.shared(), |c| c.node = "node-b".into()).await;
    let http = reqwest::Client::new();
    let body = json!({"username": "admin", "password": b64("wrong")});
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = http
            .post(node.url(&format!("{WS}/Login")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {}", i + 1);
    }
    let good = json!({"username": "admin", "password": b64(ADMIN_PASSWORD)});
    for node in [&a, &b] {
        let r = http
            .post(node.url(&format!("{WS}/Login")))
            .json(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key("retry-after"));
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_on_every_node_until_logout_on_any() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_app_on(a.db.shared(), |c| {
        c.node = "node-b".into();
        c.site = "east".into();
    })
    .await;
    let l = login(&a, "admin", ADMIN_PASSWORD).await;
    let uid = l.user_id.to_string();
    assert_eq!(
        get_sessions(&b, &l.token, &uid, None).await.status(),
        StatusCode::OK
    );
    assert_eq!(logout(&a, &l.token).await, StatusCode::OK);
    assert_eq!(
        get_sessions(&b, &l.token, &uid, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    b.stop().await;
    a.stop().await;
}

/// `http.metrics_auth = true`: `/metrics` needs a valid token (of the operator or admin role,
/// the only ones that can log in; SPEC §1: "no auth by default; configurable"); `/healthz`
/// still needs none.
async fn metrics_auth_puts_metrics_behind_an_operator_or_admin_token(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.http.metrics_auth = true).await;
    add_user(&app, "ops", "operator", "ops-password").await;
    let get = |path: &'static str, token: Option<String>| {
        let mut req = reqwest::Client::new().get(app.url(path));
        if let Some(t) = token {
            req = req.header("Authtoken", t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, body) = get("/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains("radacctd_"), "{body}");
    let (status, _) = get("/metrics", Some("QSDK 00".into())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A token after its Logout.
    let closed = login(&app, "ops", "ops-password").await;
    assert_eq!(logout(&app, &closed.token).await, StatusCode::OK);
    let (status, body) = get("/metrics", Some(closed.token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains("radacctd_"), "{body}");
    for (user, password) in [("ops", "ops-password"), ("admin", ADMIN_PASSWORD)] {
        let l = login(&app, user, password).await;
        let (status, body) = get("/metrics", Some(l.token)).await;
        assert_eq!(status, StatusCode::OK, "{user}");
        assert!(
            body.contains("# TYPE radacctd_dropped_packets counter"),
            "{user}: {body}"
        );
    }
    assert_eq!(get("/healthz", None).await.0, StatusCode::OK);
    app.stop().await;
}

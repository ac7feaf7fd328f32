//! History at scale (SPEC §9): the archiver, retention, the `radacct_all` view, and the IP
//! lookup over GraphQL and the CLI, with sessions created by UDP packets.

use std::time::Duration;

use radacctd::config::AccountingConfig;
use radacctd::metrics::Metrics;
use radacctd::radius::dict::{self, status};
use radacctd::store::archiver;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::both_backends;
use crate::console::login;
use crate::harness::{spawn_app_with, Backend, Session, TestApp, ADMIN_PASSWORD};

both_backends!(
    archiving_moves_old_closed_sessions_and_never_open_ones,
    late_packets_for_archived_sessions_add_no_second_row,
    a_session_id_used_again_keeps_both_sessions_in_the_history,
    retention_removes_history_past_it,
    the_ip_lookup_finds_who_had_an_address_at_every_boundary,
    a_kill_9_while_archiving_loses_and_duplicates_nothing,
    one_pass_moves_every_due_session_across_its_batches,
);

/// A node whose own archiver is off: the tests run the archiver's pass themselves.
async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.accounting.archive_after = None;
        c.accounting.history_retention = None;
    })
    .await
}

fn now() -> u32 {
    chrono::Utc::now().timestamp() as u32
}

async fn archive(app: &TestApp, archive_after: u64, retention: Option<u64>) -> u64 {
    let accounting = AccountingConfig {
        stale_after: None,
        archive_after: Some(Duration::from_secs(archive_after)),
        history_retention: retention.map(Duration::from_secs),
    };
    let metrics = Metrics::new();
    let moved = archiver::run_once(
        &app.store(),
        &accounting,
        &metrics,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let counted = format!("radacctd_sessions_archived_total {moved}\n");
    assert!(
        metrics.encode().contains(&counted),
        "every moved session is counted: {counted}"
    );
    moved
}

async fn closed_session(app: &TestApp, user: &str, sid: &str, start: u32, stop: u32) {
    let nas = app.nas();
    nas.send(
        nas.session(status::START, user, sid)
            .u32(dict::EVENT_TIMESTAMP, start),
    )
    .await;
    nas.send(
        nas.session(status::STOP, user, sid)
            .u32(dict::EVENT_TIMESTAMP, stop)
            .u32(dict::ACCT_SESSION_TIME, stop - start)
            .u32(dict::ACCT_INPUT_OCTETS, 1234),
    )
    .await;
}

/// A session of `user` on the test NAS that started at `start` and is still open.
async fn open_session(app: &TestApp, user: &str, sid: &str, start: u32) {
    let nas = app.nas();
    nas.send(
        nas.session(status::START, user, sid)
            .u32(dict::EVENT_TIMESTAMP, start),
    )
    .await;
}

/// The Acct-Session-Ids of the rows of `table`, in the order the harness reads them.
async fn session_ids(app: &TestApp, table: &str) -> Vec<String> {
    app.rows(table)
        .await
        .into_iter()
        .map(|s| s.acctsessionid)
        .collect()
}

async fn archiving_moves_old_closed_sessions_and_never_open_ones(backend: Backend) {
    let app = spawn(backend).await;
    let t = now();
    closed_session(&app, "h", "old-1", t - 5000, t - 4000).await;
    closed_session(&app, "h", "old-2", t - 5000, t - 3000).await;
    closed_session(&app, "h", "recent", t - 500, t - 10).await;
    open_session(&app, "h", "open-old", t - 9000).await;
    let before = app.sessions().await;

    assert_eq!(archive(&app, 1000, None).await, 2);
    assert_eq!(session_ids(&app, "radacct").await, ["recent", "open-old"]);
    let history = app.rows("radacct_history").await;
    assert_eq!(
        history
            .iter()
            .map(|s| s.acctsessionid.as_str())
            .collect::<Vec<_>>(),
        ["old-1", "old-2"]
    );
    // Moved whole: every column (radacctid included) as it was.
    for h in &history {
        assert_eq!(Some(h), before.iter().find(|b| b.radacctid == h.radacctid));
    }
    // The view shows both tables.
    let mut all = app.rows("radacct_all").await;
    all.sort_by_key(|s| s.radacctid);
    assert_eq!(all, before);
    // Nothing more is due; open sessions never move.
    assert_eq!(archive(&app, 1000, None).await, 0);
    assert_eq!(
        archive(&app, 0, None).await,
        1,
        "only the recent closed one"
    );
    assert_eq!(app.sessions().await.len(), 1);
    app.stop().await;
}

async fn late_packets_for_archived_sessions_add_no_second_row(backend: Backend) {
    let app = spawn(backend).await;
    let t = now();
    closed_session(&app, "late", "gone", t - 5000, t - 4000).await;
    assert_eq!(archive(&app, 1000, None).await, 1);
    let nas = app.nas();
    // The same Start again (a NAS or proxy replaying it): as for a stopped session, it rewrites
    // only the start data, where the session is; it does not re-open it.
    nas.send(
        nas.session(status::START, "late", "gone")
            .u32(dict::EVENT_TIMESTAMP, t - 5000)
            .string(dict::CONNECT_INFO, "replayed"),
    )
    .await;
    assert!(
        app.sessions().await.is_empty(),
        "a repeated Start re-opened an archived session"
    );
    let history = app.rows("radacct_history").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].connectinfo_start.as_deref(), Some("replayed"));
    assert_eq!(
        history[0].acctstoptime,
        Some(i64::from(t - 4000)),
        "still stopped"
    );
    // A Start of another session of the same user is a new session, stored live.
    nas.send(
        nas.session(status::START, "late", "new")
            .u32(dict::EVENT_TIMESTAMP, t - 100),
    )
    .await;
    assert_eq!(app.session("new").await.acctstoptime, None);
    app.execute("DELETE FROM radacct").await;
    nas.send(
        nas.session(status::INTERIM_UPDATE, "late", "gone")
            .u32(dict::EVENT_TIMESTAMP, t - 4500)
            .u32(dict::ACCT_SESSION_TIME, 500),
    )
    .await;
    assert!(
        app.sessions().await.is_empty(),
        "a late Interim-Update added a row"
    );
    nas.send(
        nas.session(status::STOP, "late", "gone")
            .u32(dict::EVENT_TIMESTAMP, t - 3900)
            .u32(dict::ACCT_SESSION_TIME, 1100)
            .u32(dict::ACCT_INPUT_OCTETS, 99),
    )
    .await;
    assert!(app.sessions().await.is_empty(), "a late Stop added a row");
    let history = app.rows("radacct_history").await;
    assert_eq!(history.len(), 1);
    // The last Stop wins, where the session is.
    assert_eq!(history[0].acctstoptime, Some(i64::from(t - 3900)));
    assert_eq!(history[0].acctinputoctets, Some(99));
    app.stop().await;
}

/// A NAS that uses an Acct-Session-Id again (a counter restarted by a reboot) gives a new
/// session the `acctuniqueid` of an archived one: both stay in the history, and a late Stop
/// changes only the newer.
async fn a_session_id_used_again_keeps_both_sessions_in_the_history(backend: Backend) {
    let app = spawn(backend).await;
    let t = now();
    closed_session(&app, "reused", "00000001", t - 9000, t - 8000).await;
    assert_eq!(archive(&app, 1000, None).await, 1);
    closed_session(&app, "reused", "00000001", t - 5000, t - 4000).await;
    assert_eq!(session_ids(&app, "radacct").await, ["00000001"]);
    assert_eq!(archive(&app, 1000, None).await, 1);

    let spans = |rows: Vec<Session>| {
        rows.iter()
            .map(|r| (r.acctstarttime, r.acctstoptime))
            .collect::<Vec<_>>()
    };
    let history = app.rows("radacct_history").await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].acctuniqueid, history[1].acctuniqueid);
    let first = (Some(i64::from(t - 9000)), Some(i64::from(t - 8000)));
    assert_eq!(
        spans(history),
        [
            first,
            (Some(i64::from(t - 5000)), Some(i64::from(t - 4000)))
        ]
    );

    let nas = app.nas();
    nas.send(
        nas.session(status::STOP, "reused", "00000001")
            .u32(dict::EVENT_TIMESTAMP, t - 3900)
            .u32(dict::ACCT_SESSION_TIME, 1100),
    )
    .await;
    assert!(app.sessions().await.is_empty(), "a late Stop added a row");
    assert_eq!(
        spans(app.rows("radacct_history").await),
        [
            first,
            (Some(i64::from(t - 5000)), Some(i64::from(t - 3900)))
        ]
    );
    app.stop().await;
}

async fn retention_removes_history_past_it(backend: Backend) {
    let app = spawn(backend).await;
    let t = now();
    let day = 86_400;
    closed_session(&app, "r", "ancient", t - 100 * day, t - 99 * day).await;
    closed_session(&app, "r", "ten-days", t - 10 * day, t - 10 * day + 60).await;
    assert_eq!(archive(&app, 7 * u64::from(day), None).await, 2);
    assert_eq!(app.rows("radacct_history").await.len(), 2);
    archive(&app, 7 * u64::from(day), Some(30 * u64::from(day))).await;
    assert_eq!(session_ids(&app, "radacct_history").await, ["ten-days"]);
    app.stop().await;
}

async fn lookup(app: &TestApp, token: &str, ip: &str, at: i64) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("Authtoken", token)
        .json(&json!({"query": format!(
            "{{ sessionsByIp(ip: \"{ip}\", at: \"{at}\") {{ sessionId user {{ login id }} }} }}"
        )}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

fn ids(v: &Value) -> Vec<String> {
    v["data"]["sessionsByIp"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_ip_lookup_finds_who_had_an_address_at_every_boundary(backend: Backend) {
    let app = spawn(backend).await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let nas = app.nas();
    let t = now() - 20_000;
    // 100.64.0.9: first "archived" (t..t+100), later "live" (t+200..t+300).
    for (sid, user, start) in [("archived", "u1", t), ("live", "u2", t + 200)] {
        nas.send(
            nas.session(status::START, user, sid)
                .u32(dict::EVENT_TIMESTAMP, start)
                .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 9].into()),
        )
        .await;
        nas.send(
            nas.session(status::STOP, user, sid)
                .u32(dict::EVENT_TIMESTAMP, start + 100)
                .u32(dict::ACCT_SESSION_TIME, 100)
                .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 9].into()),
        )
        .await;
    }
    assert_eq!(
        archive(&app, 19_800, None).await,
        1,
        "the first one is archived"
    );
    // IPv6: a framed address and a delegated /56.
    nas.send(
        nas.session(status::START, "v6", "six")
            .u32(dict::EVENT_TIMESTAMP, t)
            .ipv6(dict::FRAMED_IPV6_ADDRESS, "2001:db8:1::5".parse().unwrap())
            .ipv6_prefix(
                dict::DELEGATED_IPV6_PREFIX,
                "2001:db8:ff00::".parse().unwrap(),
                56,
            ),
    )
    .await;
    nas.send(
        nas.session(status::STOP, "v6", "six")
            .u32(dict::EVENT_TIMESTAMP, t + 1000)
            .u32(dict::ACCT_SESSION_TIME, 1000)
            .ipv6(dict::FRAMED_IPV6_ADDRESS, "2001:db8:1::5".parse().unwrap())
            .ipv6_prefix(
                dict::DELEGATED_IPV6_PREFIX,
                "2001:db8:ff00::".parse().unwrap(),
                56,
            ),
    )
    .await;
    // An open session, last heard of at u+300 with a 300 s interval: it counts until u+300+960.
    let u = now() - 1000;
    nas.send(
        nas.session(status::START, "open", "open")
            .u32(dict::EVENT_TIMESTAMP, u)
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 77].into()),
    )
    .await;
    nas.send(
        nas.session(status::INTERIM_UPDATE, "open", "open")
            .u32(dict::EVENT_TIMESTAMP, u + 300)
            .u32(dict::ACCT_SESSION_TIME, 300)
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 77].into()),
    )
    .await;

    let t = i64::from(t);
    let u = i64::from(u);
    let tok = admin.token.as_str();
    for (ip, at, expected) in [
        ("100.64.0.9", t - 1, vec![]),
        ("100.64.0.9", t, vec!["archived"]),
        ("100.64.0.9", t + 50, vec!["archived"]),
        ("100.64.0.9", t + 100, vec![]),
        ("100.64.0.9", t + 200, vec!["live"]),
        ("100.64.0.9", t + 299, vec!["live"]),
        ("100.64.0.9", t + 300, vec![]),
        ("2001:db8:1::5", t + 10, vec!["six"]),
        ("2001:db8:ff00:ab::1", t + 10, vec!["six"]),
        ("2001:db8:ff01::1", t + 10, vec![]),
        ("100.64.0.77", u + 300 + 959, vec!["open"]),
        ("100.64.0.77", u + 300 + 961, vec![]),
        ("::ffff:100.64.0.9", t + 50, vec!["archived"]),
    ] {
        let (s, v) = lookup(&app, tok, ip, at).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(ids(&v), expected, "{ip} at {at}");
    }
    let (_, v) = lookup(&app, tok, "100.64.0.9", t + 50).await;
    assert_eq!(v["data"]["sessionsByIp"][0]["user"]["login"], "u1");
    // RFC 3339 works as well as UNIX seconds.
    let rfc = chrono::DateTime::from_timestamp(t + 50, 0)
        .unwrap()
        .to_rfc3339();
    let (_, v) = lookup(&app, tok, "100.64.0.9", 0).await;
    assert!(ids(&v).is_empty());
    let r = reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("Authtoken", tok)
        .json(&json!({"query": "query($at: DateTime!) { sessionsByIp(ip: \"100.64.0.9\", at: $at) { sessionId } }", "variables": {"at": rfc}}))
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&r.json::<Value>().await.unwrap()), ["archived"]);
    // `at` is a DateTime: a variable of that type, as a number of UNIX seconds.
    let r = reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("Authtoken", tok)
        .json(&json!({"query": "query($at: DateTime!) { sessionsByIp(ip: \"100.64.0.9\", at: $at) { sessionId } }", "variables": {"at": t + 50}}))
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&r.json::<Value>().await.unwrap()), ["archived"]);
    // Bad input names the argument, as a literal and as a variable.
    let literal = |ip: &str, at: &str| json!({"query": format!("{{ sessionsByIp(ip: \"{ip}\", at: {at}) {{ sessionId }} }}")});
    let variable = |at: Value| json!({"query": "query($at: DateTime!) { sessionsByIp(ip: \"100.64.0.9\", at: $at) { sessionId } }", "variables": {"at": at}});
    for (body, names_it) in [
        (literal("300.1.1.1", "0"), "ip must be"),
        (literal("100.64.0.9", "\"noon\""), "argument \"at\""),
        (literal("100.64.0.9", "1.5"), "argument \"at\""),
        (literal("100.64.0.9", "true"), "argument \"at\""),
        (variable(json!("2026-13-01T00:00:00Z")), "argument \"at\""),
        (variable(json!(null)), "argument \"at\""),
    ] {
        let r = reqwest::Client::new()
            .post(app.url("/graphql"))
            .header("Authtoken", tok)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().await.unwrap();
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names_it), "{body}: {v}");
        assert_eq!(
            v["errors"][0]["extensions"]["code"], "BAD_REQUEST",
            "{body}"
        );
    }

    // The CLI answers the same.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_radacctd"))
        .args([
            "lookup-ip",
            "100.64.0.9",
            "--at",
            &(t + 50).to_string(),
            "--json",
            "--database-url",
            &app.db.url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["sessionId"], "archived");
    assert_eq!(v[0]["userName"], "u1");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_radacctd"))
        .args([
            "lookup-ip",
            "nonsense",
            "--at",
            "0",
            "--database-url",
            &app.db.url,
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IP"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_radacctd"))
        .args([
            "lookup-ip",
            "100.64.0.9",
            "--at",
            "yesterday",
            "--database-url",
            &app.db.url,
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--at"));
    app.stop().await;
}

/// On PostgreSQL only the node holding the archiver lock archives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_node_archives_at_a_time() {
    let app = spawn(Backend::Postgres).await;
    let t = now();
    closed_session(&app, "one", "due", t - 5000, t - 4000).await;
    let mut holder = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(radacctd::store::postgres::ARCHIVER_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(
        archive(&app, 1000, None).await,
        0,
        "archived while another node held the lock"
    );
    assert_eq!(app.sessions().await.len(), 1);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(radacctd::store::postgres::ARCHIVER_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(archive(&app, 1000, None).await, 1);
    app.stop().await;
}

use sqlx::Connection;

/// Closed sessions in the archiver's test of a kill: 50 of its transactions.
const KILL_SESSIONS: i64 = 50_000;

/// `KILL_SESSIONS` sessions that closed two days ago (set up by SQL: the archiver is under
/// test here, not ingest).
fn closed_sessions_sql(backend: Backend) -> String {
    match backend {
        Backend::Postgres => format!(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
             acctstarttime, acctupdatetime, acctstoptime, acctsessiontime, acctinputoctets, \
             acctoutputoctets, acctterminatecause, framedipaddress) \
             SELECT 'k' || g, md5('k' || g), 'user' || (g % 500), '127.0.0.1', \
             date_trunc('second', now()) - interval '2 days' - g * interval '1 second', \
             date_trunc('second', now()) - interval '2 days', \
             date_trunc('second', now()) - interval '2 days', g, g * 10, g * 20, 'User-Request', \
             '100.64.0.0'::inet + g FROM generate_series(1, {KILL_SESSIONS}) g"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {KILL_SESSIONS}) \
             INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
             acctstarttime, acctupdatetime, acctstoptime, acctsessiontime, acctinputoctets, \
             acctoutputoctets, acctterminatecause, framedipaddress) \
             SELECT 'k' || n, 'uid-k' || n, 'user' || (n % 500), '127.0.0.1', \
             unixepoch() - 172800 - n, unixepoch() - 172800, unixepoch() - 172800, n, n * 10, \
             n * 20, 'User-Request', '100.64.' || (n / 256 % 256) || '.' || (n % 256) FROM g"
        ),
    }
}

/// Due sessions in [`one_pass_moves_every_due_session_across_its_batches`]: three of the
/// archiver's largest batches and a part.
const PASS_SESSIONS: i64 = 2 * archiver::ARCHIVE_BATCH + archiver::ARCHIVE_BATCH / 2 + 7;

/// Each batch of a pass starts at the last stop time the batch before moved. The stop times
/// here come in no order, seven sessions share each (so batches end inside a second), and some not yet due lie between and after
/// them: one pass must move exactly the due ones, none twice.
async fn one_pass_moves_every_due_session_across_its_batches(backend: Backend) {
    let app = spawn(backend).await;
    // Stop times 0..PASS_SESSIONS / 7 seconds after three days ago, shuffled over the rows.
    let stop = |base: &str, g: &str| match backend {
        Backend::Postgres => {
            format!("{base} + (({g} * 7919) % {PASS_SESSIONS}) / 7 * interval '1 second'")
        }
        Backend::Sqlite => format!("{base} + (({g} * 7919) % {PASS_SESSIONS}) / 7"),
    };
    let sql = match backend {
        Backend::Postgres => {
            let base = "date_trunc('second', now()) - interval '3 days'";
            format!(
                "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
                 acctstarttime, acctupdatetime, acctstoptime, acctsessiontime) \
                 SELECT 'p' || g, md5('p' || g), 'pass', '127.0.0.1', {base} - interval '1 hour', \
                 {stop}, {stop}, 3600 FROM generate_series(1, {PASS_SESSIONS}) g",
                stop = stop(base, "g"),
            )
        }
        Backend::Sqlite => {
            let base = "unixepoch() - 259200";
            format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {PASS_SESSIONS}) \
                 INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
                 acctstarttime, acctupdatetime, acctstoptime, acctsessiontime) \
                 SELECT 'p' || n, 'uid-p' || n, 'pass', '127.0.0.1', {base} - 3600, {stop}, \
                 {stop}, 3600 FROM g",
                stop = stop(base, "n"),
            )
        }
    };
    app.execute(&sql).await;
    // Not due with `archive_after` of two days: closed a day ago, and still open.
    let t = now();
    closed_session(&app, "pass", "recent", t - 90_000, t - 86_400).await;
    open_session(&app, "pass", "open", t - 400_000).await;
    let mut before = app.rows("radacct").await;

    assert_eq!(archive(&app, 2 * 86_400, None).await as i64, PASS_SESSIONS);
    assert_eq!(session_ids(&app, "radacct").await, ["recent", "open"]);
    let mut after = app.rows("radacct_all").await;
    after.sort_by_key(|s| s.radacctid);
    before.sort_by_key(|s| s.radacctid);
    assert!(after == before, "sessions lost, duplicated or changed");
    assert_eq!(app.count("radacct_history").await, PASS_SESSIONS);
    app.stop().await;
}

/// SPEC §9: the archiver is resumable after a crash. The radacctd binary archives 50,000
/// sessions; it is killed with SIGKILL in the middle; at that moment every session is in
/// exactly one of the two tables, unchanged; a restart finishes the job.
async fn a_kill_9_while_archiving_loses_and_duplicates_nothing(backend: Backend) {
    // This node only watches (its archiver is off); the binary does the archiving.
    let app = spawn(backend).await;
    app.execute(&closed_sessions_sql(backend)).await;
    let before = app.rows("radacct").await;
    assert_eq!(before.len() as i64, KILL_SESSIONS);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("archive.toml");
    std::fs::write(&config, "[accounting]\narchive_after = \"1d\"\n").unwrap();
    let config = config.to_str().unwrap();
    let server = crate::cli::Server::start_with(&app.db.url, &["--config", config]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let archived = app.count("radacct_history").await;
        if archived >= 2_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the archiver moved only {archived} sessions within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9().await;

    let archived = app.count("radacct_history").await;
    assert!(
        archived < KILL_SESSIONS,
        "killed after the archiver had finished ({archived} archived): the test proves nothing"
    );
    let mut after = app.rows("radacct_all").await;
    after.sort_by_key(|s| s.radacctid);
    assert_eq!(
        after.len(),
        before.len(),
        "rows lost or duplicated by the kill"
    );
    assert!(after == before, "a session changed while being archived");
    println!("{backend:?}: killed with {archived} of {KILL_SESSIONS} sessions archived");

    // A restart resumes where the kill left off.
    let server = crate::cli::Server::start_with(&app.db.url, &["--config", config]).await;
    assert!(
        crate::harness::eventually(Duration::from_secs(60), || async {
            app.count("radacct").await == 0
        })
        .await,
        "the restarted archiver did not finish"
    );
    server.kill9().await;
    let history = app.rows("radacct_history").await;
    assert!(
        history == before,
        "the archived sessions differ from the originals"
    );
    app.stop().await;
}

/// Inserts `n` sessions that closed two days ago, by SQL: the tests of PostgreSQL's table upkeep
/// need the rows, not ingest.
async fn insert_closed_sessions(db: &sqlx::PgPool, n: i64) {
    sqlx::query(
        "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
         acctstarttime, acctupdatetime, acctstoptime, acctterminatecause) \
         SELECT 'c' || g, md5('c' || g), 'user' || g, '127.0.0.1', \
         now() - interval '2 days' - g * interval '1 second', now() - interval '2 days', \
         now() - interval '2 days', 'User-Request' FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(db)
    .await
    .unwrap();
}

/// A PostgreSQL node, a pool of the test's own on its database, and `radacct` with autovacuum
/// off by its storage parameter (whatever the server's setting), so radacctd's own upkeep
/// looks after it.
async fn spawn_without_autovacuum() -> (TestApp, sqlx::PgPool) {
    let app = spawn(Backend::Postgres).await;
    let db = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    sqlx::query("ALTER TABLE radacct SET (autovacuum_enabled = off)")
        .execute(&db)
        .await
        .unwrap();
    (app, db)
}

/// PostgreSQL: the partitions of `radacct_history` get planner statistics from radacctd itself
/// once the archiver has filled them (autovacuum is off on the CI server), so the planner does
/// not guess thousands of rows per `acctuniqueid` in the archived-session probe of every Start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_history_partitions_are_analyzed_after_archiving() {
    let app = spawn(Backend::Postgres).await;
    let db = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    // 1,500 sessions that closed two days ago, more than autovacuum's threshold of
    // 1,000 + 10 %.
    insert_closed_sessions(&db, 1_500).await;
    assert_eq!(archive(&app, 86_400, None).await, 1_500);
    let partitions_analyzed = || async {
        sqlx::query_scalar::<_, Option<bool>>(
            "SELECT bool_and(s.last_analyze IS NOT NULL) FROM pg_stat_user_tables s \
             WHERE s.relid IN (SELECT DISTINCT tableoid FROM radacct_history)",
        )
        .fetch_one(&db)
        .await
        .unwrap()
            == Some(true)
    };
    assert!(
        crate::harness::eventually(Duration::from_secs(40), partitions_analyzed).await,
        "the history partitions holding 1,500 archived sessions were not analyzed"
    );
    app.stop().await;
}

/// PostgreSQL: where autovacuum is off for `radacct` (here its `autovacuum_enabled` storage
/// parameter; on the CI server autovacuum is off altogether), radacctd vacuums away the dead
/// rows the archiver leaves behind, so the table does not grow without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dead_rows_are_vacuumed_where_autovacuum_is_off() {
    let (app, db) = spawn_without_autovacuum().await;
    // 3,000 sessions that closed two days ago, archived: 3,000 dead rows in radacct, over
    // autovacuum's threshold of 1,000 + 20 % of the live rows.
    insert_closed_sessions(&db, 3_000).await;
    assert_eq!(archive(&app, 86_400, None).await, 3_000);
    let vacuumed = || async {
        let (count, dead): (i64, i64) = sqlx::query_as(
            "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'radacct'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        count > 0 && dead == 0
    };
    assert!(
        crate::harness::eventually(Duration::from_secs(40), vacuumed).await,
        "the 3,000 dead rows of radacct were not vacuumed"
    );
    // The vacuum's session lock goes with its connection, right after.
    let released = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(0x7261_6461_6363_7404_i64)
        .fetch_one(&db)
        .await
        .unwrap()
            == 0
    };
    assert!(
        crate::harness::eventually(Duration::from_secs(5), released).await,
        "the vacuum's session lock outlived the vacuum"
    );
    app.stop().await;
}

/// PostgreSQL: a node stops promptly although its table upkeep (ANALYZE, VACUUM) is waiting for
/// a lock another client holds on `radacct`, as a long maintenance job or a migration may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shutdown_does_not_wait_for_table_upkeep() {
    let (app, db) = spawn_without_autovacuum().await;
    let mut lock = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE radacct IN SHARE UPDATE EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    // Enough new rows for both ANALYZE and VACUUM to be due; both wait for the lock.
    insert_closed_sessions(&db, 3_000).await;
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query IN ('ANALYZE radacct', 'VACUUM radacct')",
        )
        .fetch_one(&db)
        .await
        .unwrap()
            == 2
    };
    assert!(
        crate::harness::eventually(Duration::from_secs(40), waiting).await,
        "radacctd's ANALYZE and VACUUM of radacct did not start"
    );
    let stopping = std::time::Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the node took {:?} to stop behind its table upkeep",
        stopping.elapsed()
    );
    drop(lock);
}

/// PostgreSQL: the writer's connections take generic plans only and no sequential scans (see
/// `store::postgres::writer_options`); the API's connections keep PostgreSQL's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writer_connections_plan_generically_and_never_scan_whole_tables() {
    use radacctd::store::postgres::{connect_options, writer_options};
    let db = crate::harness::TestDb::new(Backend::Postgres).await;
    let settings = |options: sqlx::postgres::PgConnectOptions| async move {
        let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
        let mut values = Vec::new();
        for setting in ["plan_cache_mode", "enable_seqscan"] {
            let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            values.push(value);
        }
        values
    };
    let api = connect_options(&db.url).unwrap();
    assert_eq!(
        settings(writer_options(api.clone())).await,
        ["force_generic_plan", "off"]
    );
    assert_eq!(settings(api).await, ["auto", "on"]);
    db.drop_db().await;
}

/// PostgreSQL: radacctd's connections do not JIT-compile plans (one wrong estimate cost a third
/// of the ingest rate in compilation), unless the operator's URL sets `jit` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_do_not_jit_unless_the_url_says_so() {
    let db = crate::harness::TestDb::new(Backend::Postgres).await;
    let jit = |url: String| async move {
        let options = radacctd::store::postgres::connect_options(&url).unwrap();
        let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
        let jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let name: String = sqlx::query_scalar("SHOW application_name")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (jit, name)
    };
    assert_eq!(
        jit(db.url.clone()).await,
        ("off".to_owned(), "radacctd".to_owned())
    );
    assert_eq!(
        jit(format!("{}?options=-c%20jit%3Don", db.url)).await,
        ("on".to_owned(), "radacctd".to_owned())
    );
    db.drop_db().await;
}

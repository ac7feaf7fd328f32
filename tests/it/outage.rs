//! Database outages: no answer for anything not committed, recovery by itself.

use std::time::Duration;

use radacctd::radius::dict::{self, status};
use sqlx::Connection;

use crate::harness::{eventually, pg_admin, spawn_app, Backend};

/// SQLite: another process holds the write lock. The packet is not answered while the lock is
/// held, and is committed and answered once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_delays_the_answer_until_the_commit() {
    let app = spawn_app(Backend::Sqlite).await;
    let nas = app.nas();
    let mut locker = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    sqlx::query("UPDATE nas SET shortname = shortname")
        .execute(&mut locker)
        .await
        .unwrap();

    let packet = nas
        .session(status::START, "outage", "locked")
        .u32(dict::EVENT_TIMESTAMP, chrono::Utc::now().timestamp() as u32)
        .encode();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(
        nas.send_on(&socket, &packet, Duration::from_millis(1500))
            .await
            .is_none(),
        "answered while the database was locked"
    );
    // A retransmit while the original is still waiting is not answered either.
    assert!(nas
        .send_on(&socket, &packet, Duration::from_millis(300))
        .await
        .is_none());

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    // The NAS retransmits until it hears back; the answer comes once the event is committed.
    let mut answered = false;
    for _ in 0..20 {
        if nas
            .send_on(&socket, &packet, Duration::from_secs(1))
            .await
            .is_some()
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "no answer after the lock was released");
    assert_eq!(app.sessions().await.len(), 1);
    app.stop().await;
}

/// PostgreSQL: the database refuses connections (and existing ones are cut). No answer,
/// `/healthz` says 503; when it comes back, ingest resumes by itself and the packet is stored
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_gets_no_answers_then_recovers_by_itself() {
    let app = spawn_app(Backend::Postgres).await;
    let nas = app.nas();
    let name = app.db.pg_name().unwrap().to_owned();
    let http = reqwest::Client::new();
    let health = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(health(http.clone(), app.url("/healthz")).await, 200);
    nas.send(nas.session(status::START, "outage", "before"))
        .await;

    let admin = pg_admin().await;
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();

    let packet = nas.session(status::START, "outage", "during").encode();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(
        nas.send_on(&socket, &packet, Duration::from_secs(2))
            .await
            .is_none(),
        "answered while the database was down"
    );
    assert!(
        eventually(Duration::from_secs(10), || health(
            http.clone(),
            app.url("/healthz")
        )
        .then_eq(503))
        .await,
        "/healthz did not report the outage"
    );

    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut answered = false;
    for _ in 0..30 {
        if nas
            .send_on(&socket, &packet, Duration::from_secs(1))
            .await
            .is_some()
        {
            answered = true;
            break;
        }
    }
    assert!(
        answered,
        "ingest did not resume after the database came back"
    );
    assert!(
        eventually(Duration::from_secs(10), || health(
            http.clone(),
            app.url("/healthz")
        )
        .then_eq(200))
        .await
    );
    let rows = app.sessions().await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    app.stop().await;
}

/// `future.then_eq(x)`: a future of whether the value equals `x`.
trait ThenEq<T> {
    fn then_eq(self, expected: T) -> impl std::future::Future<Output = bool>;
}

impl<F, T> ThenEq<T> for F
where
    F: std::future::Future<Output = T>,
    T: PartialEq,
{
    async fn then_eq(self, expected: T) -> bool {
        self.await == expected
    }
}

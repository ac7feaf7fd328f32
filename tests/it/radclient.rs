//! radclient, the FreeRADIUS reference client, driving radacctd from packet files under fixtures/radclient.
//!
//! radclient must be installed (`/usr/bin/radclient`, Debian/Ubuntu package `freeradius-utils`):
//! without it these tests fail, they never skip. The packets carry no Event-Timestamp, so every
//! time radacctd stores is "when it received the packet", checked against the wall clock.

use std::process::{Output, Stdio};
use std::time::Duration;

use radacctd::metrics::DropReason;
use radacctd::radius::dict::status;

use crate::both_backends;
use crate::harness::{spawn_app, Backend, Session, TestApp, SECRET};

both_backends!(
    a_radclient_session_lifecycle_is_stored_as_its_packets_say,
    radclient_accounting_on_closes_every_open_session_of_its_nas_and_no_other,
    radclient_accounting_off_closes_the_sessions_of_its_nas_with_the_cause_it_sends,
    a_wrong_secret_gets_no_answer_changes_no_row_and_counts_a_bad_authenticator,
    radclient_status_server_gets_an_answer_and_a_wrong_secret_does_not,
);

/// Where the packet files are.
fn fixture(name: &str) -> String {
    format!("{}/fixtures/radclient/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs radclient with `args`; panics with a clear message when it is not installed.
async fn radclient(args: &[&str]) -> Output {
    let child = tokio::process::Command::new("radclient")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "these tests need radclient, FreeRADIUS's client (Debian/Ubuntu package \
                 freeradius-utils, /usr/bin/radclient), and it could not be run: {e}"
            )
        });
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("radclient finishes within 30 s")
        .expect("radclient's output")
}

/// `radclient -f FILE 127.0.0.1:PORT COMMAND SECRET`, one try with a `timeout` in seconds.
async fn send_file(
    app: &TestApp,
    file: &str,
    command: &str,
    secret: &str,
    timeout: &str,
) -> Output {
    let path = fixture(file);
    let server = app.radius.to_string();
    radclient(&[
        "-x", "-r", "1", "-t", timeout, "-f", &path, &server, command, secret,
    ])
    .await
}

fn describe(output: &Output) -> String {
    format!(
        "radclient exited with {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// radclient got an authentic Accounting-Response for every packet of the file and exited 0.
fn assert_answered(output: &Output, packets: usize) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", describe(output));
    assert_eq!(
        stdout.matches("Received Accounting-Response").count(),
        packets,
        "{}",
        describe(output)
    );
}

/// Sends a packet file with the right secret and requires every packet answered.
async fn send_answered(app: &TestApp, file: &str, packets: usize) {
    let output = send_file(app, file, "acct", SECRET, "2").await;
    assert_answered(&output, packets);
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `t` (UNIX seconds) lies in the wall-clock window `[from, to]` (one second of slack at the
/// end for rounding).
fn assert_within(what: &str, t: Option<i64>, from: i64, to: i64) {
    let t = t.unwrap_or_else(|| panic!("{what} is NULL"));
    assert!(
        from <= t && t <= to + 1,
        "{what} = {t}, expected the receive time, between {from} and {to}"
    );
}

/// FreeRADIUS's `acct_unique` policy: md5 of User-Name, Acct-Session-Id, NAS-IP-Address,
/// NAS-Identifier, NAS-Port-Id and NAS-Port, joined by commas.
fn freeradius_acct_unique(parts: &[&str]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(parts.join(",").as_bytes()))
}

const GIGAWORD: i64 = 1 << 32;

async fn a_radclient_session_lifecycle_is_stored_as_its_packets_say(backend: Backend) {
    let app = spawn_app(backend).await;

    let before = now();
    send_answered(&app, "start.txt", 1).await;
    let after = now();
    let started = app.session("rc-0001").await;
    assert_eq!(started.username.as_deref(), Some("alice@example.net"));
    assert_eq!(
        started.acctuniqueid,
        freeradius_acct_unique(&[
            "alice@example.net",
            "rc-0001",
            "192.0.2.10",
            "ap-lobby",
            "wlan0",
            "12"
        ]),
        "acctuniqueid is FreeRADIUS's acct_unique of the packet"
    );
    assert_eq!(started.nasipaddress, "192.0.2.10");
    assert_eq!(started.nasportid.as_deref(), Some("wlan0"));
    assert_eq!(started.nasporttype.as_deref(), Some("Wireless-802.11"));
    assert_eq!(started.framedipaddress.as_deref(), Some("100.64.1.20"));
    assert_eq!(
        started.callingstationid.as_deref(),
        Some("00-11-22-33-44-55")
    );
    assert_eq!(
        started.calledstationid.as_deref(),
        Some("AA-BB-CC-DD-EE-FF:CorpWiFi")
    );
    assert_eq!(started.servicetype.as_deref(), Some("Framed-User"));
    assert_eq!(started.framedprotocol.as_deref(), Some("PPP"));
    assert_eq!(started.acctauthentic.as_deref(), Some("RADIUS"));
    assert_eq!(
        started.connectinfo_start.as_deref(),
        Some("CONNECT 802.11ac")
    );
    assert_within("acctstarttime", started.acctstarttime, before, after);
    assert_eq!(started.acctupdatetime, started.acctstarttime);
    assert_eq!(started.acctstoptime, None);
    assert_eq!(started.acctsessiontime, Some(0));
    assert_eq!(started.acctinputoctets, Some(0));
    assert_eq!(started.acctoutputoctets, Some(0));
    assert_eq!(started.acctterminatecause, None);
    assert!(
        app.user_logins()
            .await
            .contains(&"alice@example.net".to_owned()),
        "the user of the session has a users row"
    );

    let before = now();
    send_answered(&app, "interim.txt", 1).await;
    let after = now();
    let updated = app.session("rc-0001").await;
    assert_eq!(updated.radacctid, started.radacctid);
    assert_eq!(updated.acctstarttime, started.acctstarttime);
    assert_within("acctupdatetime", updated.acctupdatetime, before, after);
    assert_eq!(
        updated.acctinterval,
        Some(updated.acctupdatetime.unwrap() - started.acctupdatetime.unwrap()),
        "acctinterval is the time between the last two updates"
    );
    assert_eq!(updated.acctstoptime, None);
    assert_eq!(updated.acctsessiontime, Some(300));
    assert_eq!(updated.acctinputoctets, Some(GIGAWORD + 1_000_000));
    assert_eq!(updated.acctoutputoctets, Some(2_000_000));
    assert_eq!(updated.framedipaddress.as_deref(), Some("100.64.1.21"));
    assert_eq!(updated.acctterminatecause, None);

    let before = now();
    send_answered(&app, "stop.txt", 1).await;
    let after = now();
    let stopped = app.session("rc-0001").await;
    assert_eq!(stopped.radacctid, started.radacctid);
    assert_eq!(stopped.acctstarttime, started.acctstarttime);
    assert_within("acctstoptime", stopped.acctstoptime, before, after);
    assert_eq!(stopped.acctupdatetime, stopped.acctstoptime);
    assert_eq!(stopped.acctsessiontime, Some(600));
    assert_eq!(stopped.acctinputoctets, Some(2 * GIGAWORD + 5000));
    assert_eq!(stopped.acctoutputoctets, Some(3 * GIGAWORD + 7000));
    assert_eq!(stopped.acctterminatecause.as_deref(), Some("User-Request"));
    assert_eq!(
        stopped.connectinfo_stop.as_deref(),
        Some("CONNECT 802.11ac")
    );
    assert_eq!(stopped.framedipaddress.as_deref(), Some("100.64.1.21"));
    assert_eq!(stopped.nasporttype.as_deref(), Some("Wireless-802.11"));
    assert_eq!(app.sessions().await.len(), 1, "one row for the session");
    app.stop().await;
}

/// Opens rc-0001 and the three sessions of sessions.txt on NAS 192.0.2.10 (radclient), and one
/// session on NAS 192.0.2.1 (the harness NAS).
async fn open_sessions_on_two_nases(app: &TestApp) {
    send_answered(app, "start.txt", 1).await;
    let output = radclient(&[
        "-x",
        "-r",
        "1",
        "-t",
        "2",
        "-p",
        "3",
        "-f",
        &fixture("sessions.txt"),
        &app.radius.to_string(),
        "acct",
        SECRET,
    ])
    .await;
    assert_answered(&output, 3);
    let nas = app.nas();
    nas.send(nas.session(status::START, "erin", "other-nas"))
        .await;
    let open: Vec<Session> = app
        .sessions()
        .await
        .into_iter()
        .filter(|s| s.acctstoptime.is_none())
        .collect();
    assert_eq!(open.len(), 5, "{open:#?}");
}

fn sessions_of(sessions: &[Session], nas: &str) -> Vec<Session> {
    sessions
        .iter()
        .filter(|s| s.nasipaddress == nas)
        .cloned()
        .collect()
}

async fn radclient_accounting_on_closes_every_open_session_of_its_nas_and_no_other(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    open_sessions_on_two_nases(&app).await;

    let before = now();
    send_answered(&app, "accounting-on.txt", 1).await;
    let after = now();
    let sessions = app.sessions().await;
    let closed = sessions_of(&sessions, "192.0.2.10");
    assert_eq!(closed.len(), 4, "{sessions:#?}");
    for s in &closed {
        assert_within(
            &format!("acctstoptime of {}", s.acctsessionid),
            s.acctstoptime,
            before,
            after,
        );
        assert_eq!(
            s.acctterminatecause.as_deref(),
            Some("NAS-Reboot"),
            "{s:#?}"
        );
    }
    let other = app.session("other-nas").await;
    assert_eq!(other.acctstoptime, None, "another NAS's session stays open");
    assert_eq!(other.acctterminatecause, None);
    assert_eq!(sessions.len(), 5, "Accounting-On adds no row");
    app.stop().await;
}

async fn radclient_accounting_off_closes_the_sessions_of_its_nas_with_the_cause_it_sends(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    open_sessions_on_two_nases(&app).await;

    let before = now();
    send_answered(&app, "accounting-off.txt", 1).await;
    let after = now();
    let sessions = app.sessions().await;
    let closed = sessions_of(&sessions, "192.0.2.10");
    assert_eq!(closed.len(), 4, "{sessions:#?}");
    for s in &closed {
        assert_within(
            &format!("acctstoptime of {}", s.acctsessionid),
            s.acctstoptime,
            before,
            after,
        );
        assert_eq!(
            s.acctterminatecause.as_deref(),
            Some("Admin-Reboot"),
            "{s:#?}"
        );
    }
    assert_eq!(app.session("other-nas").await.acctstoptime, None);
    assert_eq!(sessions.len(), 5, "Accounting-Off adds no row");
    app.stop().await;
}

async fn a_wrong_secret_gets_no_answer_changes_no_row_and_counts_a_bad_authenticator(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    send_answered(&app, "start.txt", 1).await;
    let before = app.sessions().await;
    let dropped = app.metrics.dropped(DropReason::BadAuthenticator);

    for file in ["stop.txt", "accounting-on.txt"] {
        let output = send_file(&app, file, "acct", "not-the-secret", "1").await;
        assert!(
            !output.status.success(),
            "{file} with a wrong secret must get no answer: {}",
            describe(&output)
        );
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("Received"),
            "{}",
            describe(&output)
        );
    }

    assert_eq!(app.sessions().await, before, "no row changed");
    // One try each (radclient gives up on a file at its first unanswered packet).
    assert!(
        app.metrics.dropped(DropReason::BadAuthenticator) >= dropped + 2,
        "every packet counted as BadAuthenticator: {} -> {}",
        dropped,
        app.metrics.dropped(DropReason::BadAuthenticator)
    );
    app.stop().await;
}

async fn radclient_status_server_gets_an_answer_and_a_wrong_secret_does_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let output = send_file(&app, "status.txt", "status", SECRET, "2").await;
    assert_answered(&output, 1);

    let output = send_file(&app, "status.txt", "status", "not-the-secret", "1").await;
    assert!(
        !output.status.success(),
        "Status-Server with a wrong secret gets no answer: {}",
        describe(&output)
    );
    assert!(app.metrics.dropped(DropReason::BadMessageAuthenticator) >= 1);
    assert!(
        app.sessions().await.is_empty(),
        "Status-Server stores nothing"
    );
    app.stop().await;
}

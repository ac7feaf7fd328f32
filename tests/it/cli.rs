//! The radacctd binary itself: SIGTERM drain, configuration errors, check-config, nas subcommands.
//!
//! These tests run `target/.../radacctd` as operators do, with a clean environment (only
//! `RUST_LOG=info` and what a test sets) in a temporary working directory, and read its stdout,
//! stderr and exit code. The server prints where it listens on stderr (`listening for RADIUS on
//! ADDR`, `listening for HTTP on ADDR`, `ready`); the tests wait for those lines, never sleep.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use radacctd::metrics::DropReason;
use radacctd::radius::builder::is_accounting_response;
use radacctd::radius::dict::status;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::both_backends;
use crate::harness::{spawn_app_on, Backend, Nas, TestDb, SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_radacctd");

both_backends!(
    sigterm_answers_and_commits_what_was_received_and_exits_0,
    a_nas_added_with_the_cli_before_start_is_a_client_and_the_config_clients_are_not,
);

fn config_fixture(name: &str) -> String {
    format!("{}/fixtures/config/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The binary with a clean environment, in `cwd` (so a default `radacctd.db` never lands in the
/// repository).
fn radacctd(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs a command that must finish by itself (within 30 s).
async fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = radacctd(cwd)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the radacctd binary");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("radacctd {args:?} did not exit within 30 s"))
        .expect("radacctd's output")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The command succeeded; returns its stdout.
fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "{}", describe(output));
    stdout(output)
}

/// The command failed with exactly one line on stderr; returns that line.
fn failed_with_one_line(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a non-zero exit: {}",
        describe(output)
    );
    let text = strip_ansi(&stderr(output));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr: {}",
        describe(output)
    );
    lines[0].to_owned()
}

/// Removes terminal colour sequences (`ESC [ ... letter`) from log lines.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("x.db").display())
}

/// A `radacctd serve` process on loopback, port 0.
pub(crate) struct Server {
    child: Child,
    radius: SocketAddr,
    pub(crate) http: SocketAddr,
    /// Every stderr line so far (without colours).
    log: Arc<Mutex<Vec<String>>>,
    /// Keeps reading stderr (so the pipe never fills) until the process exits.
    log_task: tokio::task::JoinHandle<()>,
    _cwd: tempfile::TempDir,
}

impl Server {
    /// Starts the binary and waits (at most 30 s) for its `listening ...` and `ready` lines.
    async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[]).await
    }

    /// Like [`Server::start`], with more command-line arguments (`--node`, `--site`, ...).
    pub(crate) async fn start_with(database_url: &str, extra: &[&str]) -> Self {
        let cwd = tempfile::tempdir().expect("temp dir");
        let mut child = radacctd(cwd.path())
            .args([
                "serve",
                "--database-url",
                database_url,
                "--radius-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start radacctd serve");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut radius, mut http, mut ready) = (None, None, false);
        while radius.is_none() || http.is_none() || !ready {
            let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => strip_ansi(&line),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = child.wait().await;
                    panic!(
                        "radacctd serve stopped before it was ready ({status:?}); stderr:\n{}",
                        log.lock().unwrap().join("\n")
                    )
                }
                Err(_) => panic!(
                    "radacctd serve not ready within 30 s; stderr:\n{}",
                    log.lock().unwrap().join("\n")
                ),
            };
            radius = radius.or_else(|| address_after(&line, "listening for RADIUS on "));
            http = http.or_else(|| address_after(&line, "listening for HTTP on "));
            ready |= line.contains(": ready");
            log.lock().unwrap().push(line);
        }
        let log_task = tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push(strip_ansi(&line));
                }
            }
        });
        Self {
            child,
            radius: radius.expect("RADIUS address"),
            http: http.expect("HTTP address"),
            log,
            log_task,
            _cwd: cwd,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The RADIUS address it listens on.
    pub(crate) fn radius(&self) -> SocketAddr {
        self.radius
    }

    /// Kills the process with SIGKILL (no drain, no goodbye) and waits for it to be gone;
    /// returns its stderr.
    pub(crate) async fn kill9(mut self) -> String {
        self.child.start_kill().expect("SIGKILL radacctd");
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("radacctd is gone within 10 s of SIGKILL")
            .expect("wait for radacctd");
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.log_task).await;
        self.log()
    }

    /// Sends SIGTERM.
    pub(crate) fn sigterm(&self) {
        let pid = self.child.id().expect("the server is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }

    /// Waits (at most 10 s) for the process to exit; returns its status and whole stderr.
    pub(crate) async fn exit(mut self) -> (ExitStatus, String) {
        let status = match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => status.expect("wait for radacctd"),
            Err(_) => panic!(
                "radacctd did not exit within 10 s of SIGTERM; stderr:\n{}",
                self.log()
            ),
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.log_task).await;
        let log = self.log();
        (status, log)
    }
}

/// `ADDR` in `... PREFIX ADDR ...`.
fn address_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The Acct-Session-Ids in `radacct` of the database at `url`.
async fn stored_session_ids(url: &str) -> HashSet<String> {
    let sql = "SELECT acctsessionid FROM radacct";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("open SQLite");
        let ids: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        ids.into_iter().collect()
    } else {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("connect PostgreSQL");
        let ids: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        ids.into_iter().collect()
    }
}

const BURST_SOCKETS: usize = 5;
const BURST_PER_SOCKET: usize = 100;
/// SIGTERM goes out once this many answers are in, while the rest are still being handled.
const SIGTERM_AFTER_ANSWERS: usize = 100;

async fn sigterm_answers_and_commits_what_was_received_and_exits_0(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = Server::start(&db.url).await;

    // Several NASes (sockets) each send a burst of Starts and collect the authentic answers.
    let server_exited = Arc::new(AtomicBool::new(false));
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut nases = Vec::new();
    for s in 0..BURST_SOCKETS {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind NAS socket");
        let nas = Nas::new(server.radius, SECRET);
        let requests: Vec<(String, Vec<u8>)> = (0..BURST_PER_SOCKET)
            .map(|i| {
                let id = format!("drain-{s}-{i}");
                let bytes = nas
                    .session(status::START, &format!("drain-user-{s}"), &id)
                    .encode();
                (id, bytes)
            })
            .collect();
        let (tx, exited, radius) = (answers_tx.clone(), server_exited.clone(), server.radius);
        nases.push(tokio::spawn(async move {
            for (_, bytes) in &requests {
                socket.send_to(bytes, radius).await.expect("send");
            }
            let mut buf = [0u8; 4096];
            loop {
                match tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
                    .await
                {
                    Ok(Ok((n, _))) => {
                        let answer = &buf[..n];
                        if let Some((id, _)) = requests.iter().find(|(_, request)| {
                            request[1] == answer.get(1).copied().unwrap_or_default()
                                && is_accounting_response(answer, request, SECRET.as_bytes())
                        }) {
                            let _ = tx.send(id.clone());
                        }
                    }
                    // Quiet for 300 ms after the server exited: every answer is in.
                    _ if exited.load(Ordering::SeqCst) => break,
                    _ => {}
                }
            }
        }));
    }
    drop(answers_tx);

    let mut answered = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.len() < SIGTERM_AFTER_ANSWERS {
        match tokio::time::timeout_at(deadline, answers.recv()).await {
            Ok(Some(id)) => {
                answered.insert(id);
            }
            Ok(None) => panic!("the NAS tasks ended early"),
            Err(_) => panic!(
                "only {} of {} Starts answered within 20 s; stderr:\n{}",
                answered.len(),
                BURST_SOCKETS * BURST_PER_SOCKET,
                server.log()
            ),
        }
    }
    let answered_before_sigterm = answered.len();
    server.sigterm();
    let (exit, log) = server.exit().await;
    server_exited.store(true, Ordering::SeqCst);
    while let Some(id) = answers.recv().await {
        answered.insert(id);
    }
    for nas in nases {
        nas.await.expect("NAS task");
    }

    assert_eq!(exit.code(), Some(0), "exit status {exit}; stderr:\n{log}");
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "the drain is logged; stderr:\n{log}"
    );
    let stored = stored_session_ids(&db.url).await;
    println!(
        "{backend:?}: {answered_before_sigterm} answered before SIGTERM, {} in all, {} stored",
        answered.len(),
        stored.len()
    );
    let mut missing: Vec<&String> = answered.difference(&stored).collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} answered sessions are not in radacct (answered {}, stored {}): {missing:?}",
        missing.len(),
        answered.len(),
        stored.len()
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_binary_answers_healthz_with_200_and_serves_metrics() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let health = reqwest::get(format!("http://{}/healthz", server.http))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("http://{}/metrics", server.http))
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("metrics body");
    assert!(text.contains("radacctd_"), "Prometheus text: {text}");
    server.sigterm();
    let (exit, log) = server.exit().await;
    assert_eq!(exit.code(), Some(0), "stderr:\n{log}");
}

/// `radacctd ARGS serve` with loopback listeners on port 0, plus `args`.
fn serve_args<'a>(args: &[&'a str], loopback: bool) -> Vec<&'a str> {
    let mut all = args.to_vec();
    if loopback {
        all.extend([
            "--radius-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ]);
    }
    all.push("serve");
    all
}

#[tokio::test]
async fn an_unparsable_toml_file_stops_the_start_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (file, url) = (config_fixture("unparsable.toml"), sqlite_url(dir.path()));
    let output = run(
        dir.path(),
        &serve_args(&["--config", &file, "--database-url", &url], true),
        &[],
    )
    .await;
    let line = failed_with_one_line(&output);
    assert!(
        line.contains("unparsable.toml") && line.contains("line"),
        "{line}"
    );
}

#[tokio::test]
async fn an_unknown_toml_key_stops_the_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (file, url) = (config_fixture("unknown-key.toml"), sqlite_url(dir.path()));
    let output = run(
        dir.path(),
        &serve_args(&["--config", &file, "--database-url", &url], true),
        &[],
    )
    .await;
    let line = failed_with_one_line(&output);
    assert!(line.contains("listen_on"), "{line}");
}

/// SPEC §1: every bad configuration exits with one line "naming the key and the problem", a
/// value of the wrong type included.
#[tokio::test]
async fn a_toml_value_of_the_wrong_type_stops_the_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (file, url) = (config_fixture("wrong-type.toml"), sqlite_url(dir.path()));
    let output = run(
        dir.path(),
        &serve_args(&["--config", &file, "--database-url", &url], true),
        &[],
    )
    .await;
    let line = failed_with_one_line(&output);
    assert!(line.contains("http.listen"), "{line}");
}

#[tokio::test]
async fn a_radius_listen_that_is_no_address_stops_the_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let output = run(
        dir.path(),
        &serve_args(
            &[
                "--database-url",
                &url,
                "--radius-listen",
                "nonsense",
                "--http-listen",
                "127.0.0.1:0",
            ],
            false,
        ),
        &[],
    )
    .await;
    let line = failed_with_one_line(&output);
    assert!(
        line.contains("radius.listen") && line.contains("nonsense"),
        "{line}"
    );
}

#[tokio::test]
async fn a_radius_client_with_an_empty_secret_stops_the_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (file, url) = (config_fixture("empty-secret.toml"), sqlite_url(dir.path()));
    let output = run(
        dir.path(),
        &serve_args(&["--config", &file, "--database-url", &url], true),
        &[],
    )
    .await;
    let line = failed_with_one_line(&output);
    assert!(line.contains("radius.clients[0].secret"), "{line}");
}

#[tokio::test]
async fn an_unreachable_database_stops_the_start_with_one_line_naming_database_url_without_its_password(
) {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        dir.path(),
        &serve_args(
            &[
                "--database-url",
                "postgres://postgres:n0t-this-pw@127.0.0.1:1/x",
            ],
            true,
        ),
        &[],
    )
    .await;
    let line = failed_with_one_line(&output);
    assert!(line.contains("database_url"), "{line}");
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert!(!line.contains("n0t-this-pw"), "the password leaks: {line}");
}

#[tokio::test]
async fn a_bad_duration_in_the_environment_stops_the_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let output = run(
        dir.path(),
        &serve_args(&["--database-url", &url], true),
        &[("RADACCTD_STALE_AFTER", "5 fortnights")],
    )
    .await;
    let line = failed_with_one_line(&output);
    assert!(
        line.contains("accounting.stale_after") && line.contains("5 fortnights"),
        "{line}"
    );
}

#[tokio::test]
async fn an_unknown_radacctd_variable_is_only_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["check-config"], &[("RADACCTD_FOO", "1")]).await;
    let printed = succeeded(&output);
    let log = strip_ansi(&stderr(&output));
    assert!(
        log.contains("RADACCTD_FOO") && log.contains("WARN"),
        "a warning names the variable: {log}"
    );
    let config: toml::Value = toml::from_str(&printed).expect("check-config prints TOML");
    assert_eq!(config["site"].as_str(), Some("central"));
}

#[tokio::test]
async fn check_config_prints_the_effective_config_with_secrets_redacted_and_flags_over_env_over_toml(
) {
    let dir = tempfile::tempdir().unwrap();
    let file = config_fixture("check-config.toml");
    let output = run(
        dir.path(),
        &["--config", &file, "--site", "flag-site", "check-config"],
        &[
            ("RADACCTD_SITE", "env-site"),
            ("RADACCTD_DOMAIN", "env.domain"),
            ("RADACCTD_ADMIN_PASSWORD", "env-admin-s3cret"),
        ],
    )
    .await;
    let printed = succeeded(&output);
    let config: toml::Value = toml::from_str(&printed).expect("check-config prints TOML");

    // Precedence: the flag beats the variable, which beats the file.
    assert_eq!(config["site"].as_str(), Some("flag-site"), "{printed}");
    assert_eq!(config["domain"].as_str(), Some("env.domain"), "{printed}");
    assert_eq!(config["node"].as_str(), Some("toml-node"), "{printed}");
    assert_eq!(
        config["accounting"]["stale_after"].as_str(),
        Some("90m"),
        "{printed}"
    );
    assert_eq!(
        config["radius"]["listen"].as_array().map(Vec::len),
        Some(1),
        "{printed}"
    );
    assert_eq!(
        config["radius"]["listen"][0].as_str(),
        Some("127.0.0.1:1813")
    );
    assert_eq!(
        config["radius"]["clients"][0]["address"].as_str(),
        Some("10.0.0.0/8")
    );
    assert_eq!(
        config["radius"]["clients"][0]["name"].as_str(),
        Some("bras")
    );

    // Redaction.
    assert_eq!(
        config["database_url"].as_str(),
        Some("postgres://radacct:****@127.0.0.1:5432/radius")
    );
    assert_eq!(config["admin_password"].as_str(), Some("****"));
    assert_eq!(
        config["radius"]["clients"][0]["secret"].as_str(),
        Some("****")
    );
    for secret in [
        "dbpass-s3cret",
        "admin-pw-s3cret",
        "env-admin-s3cret",
        "client-s3cret",
    ] {
        assert!(
            !printed.contains(secret) && !stderr(&output).contains(secret),
            "{secret} is printed: {}",
            describe(&output)
        );
    }

    // What it prints is a configuration that reads back to the same thing.
    let effective = dir.path().join("effective.toml");
    std::fs::write(&effective, &printed).unwrap();
    let again = run(
        dir.path(),
        &["--config", effective.to_str().unwrap(), "check-config"],
        &[],
    )
    .await;
    assert_eq!(succeeded(&again), printed);
}

#[tokio::test]
async fn nas_add_list_and_del_manage_the_nas_table() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let nas = |args: &'static [&'static str]| {
        let mut all = vec!["--database-url", url.as_str(), "nas"];
        all.extend_from_slice(args);
        let dir = dir.path().to_owned();
        async move { run(&dir, &all, &[]).await }
    };

    let added =
        succeeded(&nas(&["add", "10.0.0.0/8", "--secret", "s3cret", "--name", "bras"]).await);
    assert!(added.contains("10.0.0.0/8"), "{added}");

    let table = succeeded(&nas(&["list"]).await);
    assert!(
        table
            .lines()
            .any(|l| l.contains("10.0.0.0/8") && l.contains("bras") && l.contains("3799")),
        "{table}"
    );
    assert!(
        !table.contains("s3cret"),
        "nas list prints the secret: {table}"
    );

    let json = succeeded(&nas(&["list", "--json"]).await);
    assert!(
        !json.contains("s3cret"),
        "nas list --json prints the secret: {json}"
    );
    let rows: serde_json::Value = serde_json::from_str(&json).expect("nas list --json is JSON");
    assert_eq!(
        rows,
        serde_json::json!([{"nasname": "10.0.0.0/8", "shortname": "bras", "coa_port": 3799}])
    );

    // The same network again (also written another way) is refused and changes nothing.
    for duplicate in [
        &["add", "10.0.0.0/8", "--secret", "other"][..],
        &["add", "10.9.9.9/8", "--secret", "other"][..],
    ] {
        let mut all = vec!["--database-url", url.as_str(), "nas"];
        all.extend_from_slice(duplicate);
        let line = failed_with_one_line(&run(dir.path(), &all, &[]).await);
        assert!(line.contains("10.0.0.0/8"), "{line}");
    }
    let store = radacctd::store::Store::connect(&url).await.unwrap();
    let stored = store.nas_list().await.unwrap();
    store.close().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].secret, "s3cret", "a refused add keeps the secret");

    let deleted = succeeded(&nas(&["del", "10.0.0.0/8"]).await);
    assert!(deleted.contains("10.0.0.0/8"), "{deleted}");
    let json = succeeded(&nas(&["list", "--json"]).await);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        serde_json::json!([])
    );

    for unknown in ["10.0.0.0/8", "192.0.2.99"] {
        let mut all = vec!["--database-url", url.as_str(), "nas", "del"];
        all.push(unknown);
        let line = failed_with_one_line(&run(dir.path(), &all, &[]).await);
        assert!(line.contains(unknown), "{line}");
    }
}

async fn a_nas_added_with_the_cli_before_start_is_a_client_and_the_config_clients_are_not(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let added = run(
        dir.path(),
        &[
            "--database-url",
            &db.url,
            "nas",
            "add",
            "127.0.0.2",
            "--secret",
            "other",
            "--name",
            "lab-nas",
        ],
        &[],
    )
    .await;
    succeeded(&added);

    let app = spawn_app_on(db, |config| config.radius.clients.clear()).await;

    // From 127.0.0.2 with its secret: answered and stored.
    let socket = UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2 (all of 127.0.0.0/8 is loopback)");
    let lab = Nas::new(app.radius, "other");
    let request = lab
        .session(status::START, "lab-user", "from-127.0.0.2")
        .encode();
    assert!(
        lab.send_on(&socket, &request, Duration::from_secs(5))
            .await
            .is_some(),
        "a NAS of the nas table is answered"
    );
    let s = app.session("from-127.0.0.2").await;
    assert_eq!(s.username.as_deref(), Some("lab-user"));

    // From 127.0.0.2 with another secret: dropped.
    let wrong = Nas::new(app.radius, SECRET);
    let request = wrong
        .session(status::START, "lab-user", "wrong-secret")
        .encode();
    assert!(unanswered_on(&wrong, &socket, &request).await);
    assert!(app.metrics.dropped(DropReason::BadAuthenticator) >= 1);

    // From 127.0.0.1, with either secret: no longer a client.
    let unknown = app.metrics.dropped(DropReason::UnknownClient);
    for secret in [SECRET, "other"] {
        let nas = Nas::new(app.radius, secret);
        nas.send_unanswered(
            &nas.session(
                status::START,
                "local-user",
                &format!("from-127.0.0.1-{secret}"),
            )
            .encode(),
        )
        .await;
    }
    assert!(
        app.metrics.dropped(DropReason::UnknownClient) >= unknown + 2,
        "counted as unknown clients"
    );

    let ids: Vec<String> = app
        .sessions()
        .await
        .into_iter()
        .map(|s| s.acctsessionid)
        .collect();
    assert_eq!(ids, ["from-127.0.0.2"]);
    app.stop().await;
}

async fn unanswered_on(nas: &Nas, socket: &UdpSocket, request: &[u8]) -> bool {
    nas.send_on(socket, request, Duration::from_millis(500))
        .await
        .is_none()
}

crate::both_backends!(user_commands_create_list_change_and_delete_users_that_can_log_in);

/// Runs the binary with `input` on its standard input.
async fn run_with_stdin(cwd: &Path, args: &[&str], input: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = radacctd(cwd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the radacctd binary");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("radacctd exits within 30 s")
        .expect("radacctd's output")
}

async fn user_commands_create_list_change_and_delete_users_that_can_log_in(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::harness::TestDb::new(backend).await;
    let url = db.url.clone();
    let with_db = |args: &[&'static str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push("--database-url".into());
        v.push(url.clone());
        v
    };
    let call = |v: Vec<String>| {
        let dir = dir.path().to_path_buf();
        async move {
            let args: Vec<&str> = v.iter().map(String::as_str).collect();
            run(&dir, &args, &[]).await
        }
    };

    let out = call(with_db(&[
        "user",
        "add",
        "noc",
        "--role",
        "operator",
        "--password",
        "first-pw",
    ]))
    .await;
    let printed = succeeded(&out);
    let mut parts = printed.split_whitespace();
    let id: i64 = parts.next().unwrap().parse().expect("the integer id first");
    let uuid = parts.next().expect("then the UUID");
    assert_eq!(uuid.len(), 36, "{printed}");
    let out = run_with_stdin(
        dir.path(),
        &[
            "user",
            "add",
            "boss",
            "--role",
            "admin",
            "--password-stdin",
            "--database-url",
            &url,
        ],
        "stdin-pw\n",
    )
    .await;
    succeeded(&out);
    // A second add of the same login fails; a bad role is refused by the parser.
    let out = call(with_db(&[
        "user",
        "add",
        "noc",
        "--role",
        "operator",
        "--password",
        "x",
    ]))
    .await;
    assert!(!out.status.success(), "{}", describe(&out));
    let out = call(with_db(&["user", "add", "x", "--role", "root"])).await;
    assert!(!out.status.success());

    let out = call(with_db(&["user", "list", "--json"])).await;
    let users: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();
    let noc = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "noc")
        .unwrap();
    assert_eq!(noc["id"], id);
    assert_eq!(noc["uuid"], uuid);
    assert_eq!(noc["role"], "operator");
    assert!(noc.get("password_hash").is_none(), "no hash in the listing");
    let out = call(with_db(&["user", "list"])).await;
    assert!(succeeded(&out).contains("boss"));

    // The users log in to a node on that database.
    let app = crate::harness::spawn_app_on(db, |_| {}).await;
    let status = |user: &'static str, pw: &'static str| {
        let url = app.url("/webconsole/api/Login");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({"username": user, "password": crate::console::b64(pw)}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status("noc", "first-pw").await, reqwest::StatusCode::OK);
    assert_eq!(status("boss", "stdin-pw").await, reqwest::StatusCode::OK);
    let out = call(with_db(&[
        "user",
        "passwd",
        "noc",
        "--password",
        "second-pw",
    ]))
    .await;
    succeeded(&out);
    assert_eq!(
        status("noc", "first-pw").await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(status("noc", "second-pw").await, reqwest::StatusCode::OK);
    let out = call(with_db(&["user", "del", "noc"])).await;
    succeeded(&out);
    assert_eq!(
        status("noc", "second-pw").await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    let out = call(with_db(&["user", "del", "noc"])).await;
    assert!(!out.status.success(), "deleting twice fails");
    let out = call(with_db(&["user", "passwd", "ghost", "--password", "x"])).await;
    assert!(!out.status.success());
    app.stop().await;
}

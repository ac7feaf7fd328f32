//! FreeRADIUS 3.2 (Debian's `freeradius`, `freeradius-postgresql`) as a child process of the
//! test: a configuration written into a temp dir (an accounting-only virtual server running
//! `preprocess`, `acct_unique` and `sql`, with the package's stock `queries.conf`, policy and
//! schema included from where the package installs them), on a free loopback port, killed on
//! drop.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{Backend, TestDb, SECRET};

/// The binary Debian installs.
const FREERADIUS: &str = "/usr/sbin/freeradius";
/// The package's configuration: only read from, never changed.
const STOCK: &str = "/etc/freeradius/3.0";

/// A running FreeRADIUS and the database it writes.
pub struct FreeRadius {
    pub addr: SocketAddr,
    /// Everything it printed (`-X`: the expanded SQL of every query).
    log: Arc<Mutex<String>>,
    child: Child,
    /// Holds the configuration and, on SQLite, the database file.
    dir: tempfile::TempDir,
    /// PostgreSQL: its own database on the test server.
    pg: Option<TestDb>,
}

/// Where FreeRADIUS's rows are.
pub enum FreeRadiusDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl FreeRadius {
    /// Starts FreeRADIUS writing to a fresh database of `backend`; panics with its output
    /// when it does not come up.
    pub async fn start(backend: Backend) -> Self {
        assert!(
            Path::new(FREERADIUS).exists(),
            "the FreeRADIUS differential test needs {FREERADIUS} (Debian packages freeradius and \
             freeradius-postgresql; .ci/run installs them)"
        );
        let mut pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = TestDb::new(Backend::Postgres).await;
                let schema = std::fs::read_to_string(format!(
                    "{STOCK}/mods-config/sql/main/postgresql/schema.sql"
                ))
                .expect("FreeRADIUS's PostgreSQL schema.sql is readable");
                let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
                sqlx::raw_sql(&schema)
                    .execute(&pool)
                    .await
                    .expect("FreeRADIUS's schema.sql loads");
                pool.close().await;
                Some(db)
            }
        };
        // The port is free when we look; another process may take it before FreeRADIUS binds
        // it, so try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("a free UDP port")
                .port();
            write_config(dir.path(), port, pg.as_ref());
            match launch(dir, port, pg.take()).await {
                Ok(server) => return server,
                Err((log, db)) => {
                    last_log = log;
                    pg = db;
                    if !last_log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        if let Some(db) = pg {
            db.drop_db().await;
        }
        panic!("FreeRADIUS did not start. Its output:\n{last_log}");
    }

    pub fn db(&self) -> FreeRadiusDb {
        match &self.pg {
            Some(db) => FreeRadiusDb::Postgres(db.url.clone()),
            None => FreeRadiusDb::Sqlite(self.dir.path().join("freeradius.db")),
        }
    }

    /// What it has printed so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops it and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        if let Some(db) = self.pg.take() {
            db.drop_db().await;
        }
    }
}

/// Runs `freeradius -f -X -d dir` and waits until it is ready to process requests.
async fn launch(
    dir: tempfile::TempDir,
    port: u16,
    pg: Option<TestDb>,
) -> Result<FreeRadius, (String, Option<TestDb>)> {
    let mut child = Command::new(FREERADIUS)
        .arg("-f")
        .arg("-X")
        .arg("-d")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {FREERADIUS}: {e}"));
    let log = Arc::new(Mutex::new(String::new()));
    collect(child.stdout.take().expect("piped stdout"), log.clone());
    collect(child.stderr.take().expect("piped stderr"), log.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if log
            .lock()
            .expect("log lock")
            .contains("Ready to process requests")
        {
            return Ok(FreeRadius {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
                child,
                dir,
                pg,
            });
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill().await;
            // Let the readers take the last of its output.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let text = log.lock().expect("log lock").clone();
            let why = match exited {
                Some(status) => format!("FreeRADIUS exited with {status}"),
                None => "FreeRADIUS was not ready within 15 s".to_owned(),
            };
            return Err((format!("{why}\n{text}"), pg));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends every line of `stream` to `log`.
fn collect(stream: impl AsyncRead + Unpin + Send + 'static, log: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = log.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// `radiusd.conf`: no user/group (it runs as the test's user, root in CI), logs to stdout,
/// one client (127.0.0.1 with the test secret), the modules the accounting server needs and
/// the package's `acct_unique` policy.
fn write_config(dir: &Path, port: u16, pg: Option<&TestDb>) {
    let d = dir.display();
    // preprocess reads these two files; empty ones change nothing.
    std::fs::write(dir.join("hints"), "").expect("write hints");
    std::fs::write(dir.join("huntgroups"), "").expect("write huntgroups");
    let database = match pg {
        None => format!(
            r#"dialect = "sqlite"
    driver = "rlm_sql_sqlite"
    sqlite {{
      filename = "{d}/freeradius.db"
      busy_timeout = 1000
      # Creates the file from the package's schema on first connect.
      bootstrap = "{STOCK}/mods-config/sql/main/sqlite/schema.sql"
    }}"#
        ),
        Some(db) => {
            let name = db.pg_name().expect("a PostgreSQL test database has a name");
            let server = crate::harness::pg_server();
            let hostport = server
                .rsplit('@')
                .next()
                .expect("postgres://user@host:port");
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
            format!(
                r#"dialect = "postgresql"
    driver = "rlm_sql_postgresql"
    server = "{host}"
    port = {port}
    login = "postgres"
    password = ""
    radius_db = "{name}""#
            )
        }
    };
    let config = format!(
        r#"# Written by radacctd's differential test; see tests/it/freeradius/.
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {d}
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}
confdir = {d}
run_dir = {d}
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/radiusd.pid
name = freeradius
max_request_time = 10
# Retransmits within this many seconds are answered from the reply cache.
cleanup_delay = 10
max_requests = 1024
hostname_lookups = no

log {{
  destination = stdout
  colourise = no
}}

security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = no
}}

client localhost {{
  ipaddr = 127.0.0.1
  secret = {SECRET}
}}

modules {{
  # %{{tolower:...}} in the stock accounting reference.
  expr {{
  }}
  # `ok` in the accounting section.
  always ok {{
    rcode = ok
  }}
  preprocess {{
    huntgroups = {d}/huntgroups
    hints = {d}/hints
  }}
  sql {{
    {database}
    acct_table1 = "radacct"
    acct_table2 = "radacct"
    postauth_table = "radpostauth"
    authcheck_table = "radcheck"
    groupcheck_table = "radgroupcheck"
    authreply_table = "radreply"
    groupreply_table = "radgroupreply"
    usergroup_table = "radusergroup"
    client_table = "nas"
    group_attribute = "SQL-Group"
    read_clients = no
    pool {{
      start = 1
      min = 1
      max = 1
      spare = 0
      uses = 0
      retry_delay = 1
      lifetime = 0
      idle_timeout = 0
    }}
    $INCLUDE {STOCK}/mods-config/sql/main/${{dialect}}/queries.conf
  }}
}}

policy {{
  $INCLUDE {STOCK}/policy.d/accounting
}}

server accounting {{
  listen {{
    type = acct
    ipaddr = 127.0.0.1
    port = {port}
  }}
  preacct {{
    preprocess
    acct_unique
  }}
  accounting {{
    sql
    # FreeRADIUS answers only when the section's result is ok or updated; sql alone is noop
    # when its queries change no row (a late Interim-Update), and a stock server, which also
    # writes detail files here, answers those. A failing sql still stops here: no answer.
    ok
  }}
}}
"#
    );
    std::fs::write(dir.join("radiusd.conf"), config).expect("write radiusd.conf");
}

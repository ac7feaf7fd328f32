//! Differential test against FreeRADIUS (issue #9): operators switching from FreeRADIUS's SQL
//! accounting need the same `radacct` rows for the same packets.
//!
//! The packets of `fixtures/freeradius/sequence.txt` go, one at a time and in order, to
//! FreeRADIUS 3.2 (Debian's package, stock `queries.conf` and schema, see [`server`]) and to
//! radacctd; then FreeRADIUS's `radacct` and radacctd's are compared row by row (rows matched by
//! `acctuniqueid`, in insertion order) and column by column (FreeRADIUS's columns only).
//! Differences that radacctd makes on purpose are listed in [`DEVIATIONS`]; differences of
//! representation between the two schemas are removed by [`normalise`]. Anything else fails
//! the test with a readable diff.
//!
//! Run just this test: `cargo test --locked --test it freeradius::`.

mod sequence;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use sqlx::Row as _;
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::harness::{spawn_app_with, Backend, Nas, SECRET};
use server::{FreeRadius, FreeRadiusDb};

both_backends!(radacct_rows_match_freeradius_for_the_same_packets);

/// How long each server gets to answer a packet.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Columns holding a time (compared as UNIX seconds).
const TIME_COLUMNS: &[&str] = &["acctstarttime", "acctupdatetime", "acctstoptime"];
/// Columns computed from times.
const DURATION_COLUMNS: &[&str] = &["acctsessiontime", "acctinterval"];
/// Two servers stamp the same packet with their own clock, up to a second apart each way.
const RECEIPT_TOLERANCE: i64 = 2;

async fn radacct_rows_match_freeradius_for_the_same_packets(backend: Backend) {
    let began = Instant::now();
    // A whole hour one day ahead: far from any receipt time, and no background task of
    // radacctd's (stale-session reaper, archiver) considers these sessions old.
    let base = (now() / 3600 + 24) * 3600;
    let app = spawn_app_with(backend, |config| {
        config.accounting.stale_after = None;
        config.accounting.archive_after = None;
        config.accounting.history_retention = None;
    })
    .await;
    let freeradius = FreeRadius::start(backend).await;

    let to_freeradius = Nas::new(freeradius.addr, SECRET);
    let to_radacctd = app.nas();
    let packets = sequence::load(base, &to_freeradius);
    // One socket per server, as a NAS has: a retransmission comes from the same port.
    let freeradius_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let radacctd_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let window_start = now();
    for (i, packet) in packets.iter().enumerate() {
        let what = format!(
            "packet {} (fixture line {}, \"{}\"{})",
            i + 1,
            packet.line,
            packet.scenario,
            if packet.retransmit {
                ", a retransmission"
            } else {
                ""
            }
        );
        if to_freeradius
            .send_on(&freeradius_socket, &packet.bytes, ANSWER_WITHIN)
            .await
            .is_none()
        {
            panic!(
                "FreeRADIUS did not answer {what}. The end of its log:\n{}",
                freeradius.log_tail(120)
            );
        }
        assert!(
            to_radacctd
                .send_on(&radacctd_socket, &packet.bytes, ANSWER_WITHIN)
                .await
                .is_some(),
            "radacctd did not answer {what}"
        );
    }
    let window = (window_start, now());

    let theirs = read_freeradius(&freeradius.db()).await;
    assert!(
        !theirs.rows.is_empty(),
        "FreeRADIUS answered every packet but stored no row. The end of its log:\n{}",
        freeradius.log_tail(120)
    );
    let ours = read_radacctd(backend, &app.db.url, &theirs.columns).await;
    let (report, seen) = compare(backend, base, window, &theirs, &ours);
    let log = freeradius.log();
    freeradius.stop().await;
    app.stop().await;
    assert!(
        report.is_empty(),
        "radacctd's radacct differs from FreeRADIUS's on {backend:?} after the same {} packets \
         (T = {base}):\n{report}\nSQL errors FreeRADIUS logged (its fallback queries run after \
         some):\n{}",
        packets.len(),
        log.lines()
            .filter(|l| l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "freeradius differential test on {backend:?}: {} packets, {} rows, {:.1} s; the \
         deliberate deviations it saw:",
        packets.len(),
        theirs.rows.len(),
        began.elapsed().as_secs_f64()
    );
    for deviation in seen {
        eprintln!("- {}: {}", deviation.name, deviation.reason);
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---- the deliberate deviations ------------------------------------------------------------

/// One cell of the comparison: a column of a row both tables have.
pub struct Cell<'a> {
    pub theirs: &'a Value,
    pub ours: &'a Value,
    /// The whole rows, for deviations that depend on other columns.
    pub their_row: &'a Row,
    pub our_row: &'a Row,
}

/// A difference radacctd makes on purpose.
pub struct Deviation {
    pub name: &'static str,
    pub backends: &'static [Backend],
    /// The `acctsessionid`s of the fixture's rows that show it; empty: any row.
    pub sessions: &'static [&'static str],
    pub columns: &'static [&'static str],
    /// Whether this cell differs in exactly the way this deviation says (not just anyhow).
    pub explains: fn(&Cell<'_>) -> bool,
    pub reason: &'static str,
}

const BOTH: &[Backend] = &[Backend::Sqlite, Backend::Postgres];
const SQLITE: &[Backend] = &[Backend::Sqlite];
const POSTGRES: &[Backend] = &[Backend::Postgres];
/// The columns that hold a string attribute as sent.
const STRING_COLUMNS: &[&str] = &[
    "acctsessionid",
    "username",
    "nasportid",
    "connectinfo_start",
    "connectinfo_stop",
    "calledstationid",
    "callingstationid",
];

/// Every difference radacctd makes on purpose, each with its reason. A listed deviation that
/// the sequence no longer shows fails the test too, so the list stays true.
///
/// Not here:
/// - Acct-Delay-Time without Event-Timestamp, because there is no difference: FreeRADIUS's
///   `preprocess` also subtracts the delay from the receive time (it adds an Event-Timestamp
///   that the queries then read), exactly as radacctd does (SPEC §3).
/// - Times of receipt: each server reads its own clock, so in a row timed by receipt (any of
///   its times within the run's wall-clock window) the times and the durations computed from
///   them are compared within [`RECEIPT_TOLERANCE`]; every other value exactly.
pub const DEVIATIONS: &[Deviation] = &[
    Deviation {
        name: "an Interim-Update without a Start starts Acct-Session-Time before the event",
        backends: POSTGRES,
        sessions: &["orphan-interim"],
        columns: &["acctstarttime"],
        explains: |c| matches!((c.ours, c.theirs), (Value::Int(o), Value::Int(t)) if o < t),
        reason: "SPEC §3: the row inserted for an Interim-Update of an unknown session starts at \
                 the event time minus Acct-Session-Time, as FreeRADIUS's own inserts for a Stop \
                 without Start (and its SQLite Interim-Update insert) do; its PostgreSQL \
                 Interim-Update insert uses the event time itself.",
    },
    Deviation {
        name: "a retransmission is never applied twice",
        backends: BOTH,
        sessions: &["dup-2"],
        columns: &["acctstarttime", "acctupdatetime", "connectinfo_start"],
        explains: |_| true,
        reason: "SPEC §3: a retransmission (same source, identifier and authenticator) is \
                 answered from the duplicate cache and never applied twice. FreeRADIUS forgets \
                 an accounting request as soon as it has answered it (\"Cleaning up request \
                 ... due to done\"), so a retransmission that arrives after the answer runs \
                 again: harmless while it is the session's latest packet, but here it sets the \
                 start back to the first Start's.",
    },
    Deviation {
        name: "IPv6 prefixes are stored as networks",
        backends: BOTH,
        sessions: &[],
        columns: &["framedipv6prefix", "delegatedipv6prefix"],
        explains: |c| match (c.theirs.text(), c.ours.text()) {
            (Some(t), Some(o)) => network(t).as_deref() == Some(o),
            _ => false,
        },
        reason: "radacctd clears the bits past the prefix length (2001:db8:0:1f::/60 is stored as \
                 2001:db8:0:10::/60) so that the IP lookup (SPEC §9), which matches the \
                 networks enclosing an address, finds the session; FreeRADIUS stores the bits \
                 as the NAS sent them.",
    },
    Deviation {
        name: "Class is recorded",
        backends: BOTH,
        sessions: &[],
        columns: &["class"],
        explains: |c| {
            *c.theirs == Value::Null
                && c.ours
                    .text()
                    .and_then(|o| o.strip_prefix("0x"))
                    .is_some_and(|h| hex::decode(h).is_ok())
        },
        reason: "the stock queries leave the class column empty unless the operator enables it \
                 in queries.conf (`class { column_name = ... }`); radacctd always records \
                 Class, as FreeRADIUS prints it when that is enabled: 0x and hex digits.",
    },
    Deviation {
        name: "values are stored as sent, without FreeRADIUS's =XX escaping",
        backends: BOTH,
        sessions: &[],
        columns: STRING_COLUMNS,
        explains: |c| match (c.theirs.text(), c.ours.text()) {
            (Some(t), Some(o)) => t != o && unescape(t) == o,
            _ => false,
        },
        reason: "FreeRADIUS builds its SQL as text and, by default (`safe_characters`, \
                 `auto_escape = no`), rewrites every character outside letters, digits and \
                 `@.-_: /` as =XX (o'brien+vpn becomes o=27brien=2Bvpn); radacctd binds values \
                 as parameters and stores them as the NAS sent them.",
    },
    // FreeRADIUS's SQLite queries do not do what its PostgreSQL queries do; radacctd follows
    // the PostgreSQL ones on both databases (SPEC §3), so on SQLite these differ too.
    Deviation {
        name: "SQLite: acctinterval is the time since the last update",
        backends: SQLITE,
        sessions: &[],
        columns: &["acctinterval"],
        explains: |c| *c.theirs == Value::Int(0),
        reason: "FreeRADIUS's SQLite Interim-Update query writes acctinterval = 0; its \
                 PostgreSQL query, and radacctd on both databases, write the seconds since the \
                 previous update (which the stale-session reaper uses, SPEC §3).",
    },
    Deviation {
        name: "SQLite: closing a session sets acctupdatetime",
        backends: SQLITE,
        sessions: &[],
        columns: &["acctupdatetime"],
        explains: |c| {
            let stop = |r: &Row| r.get("acctstoptime").and_then(Value::int);
            stop(c.our_row).is_some()
                && c.ours.int() == stop(c.our_row)
                && stop(c.their_row).is_some()
                && c.theirs.int() != stop(c.their_row)
        },
        reason: "FreeRADIUS's SQLite Stop and Accounting-On/Off queries leave acctupdatetime at \
                 the last update; its PostgreSQL queries, and radacctd, set it to the stop time.",
    },
    Deviation {
        name: "SQLite: a Stop without Acct-Session-Time computes the session time",
        backends: SQLITE,
        sessions: &[],
        columns: &["acctsessiontime"],
        explains: |c| {
            let t = |column: &str| c.our_row.get(column).and_then(Value::int);
            *c.theirs == Value::Null
                && matches!((t("acctstarttime"), t("acctstoptime")), (Some(start), Some(stop))
                    if c.ours.int() == Some(stop - start))
        },
        reason: "FreeRADIUS's SQLite Stop query stores NULL; its PostgreSQL query, and radacctd, \
                 store the stop time minus the start time.",
    },
    Deviation {
        name: "SQLite: a Stop sets the framed addresses it carries",
        backends: SQLITE,
        sessions: &[],
        columns: &[
            "framedipaddress",
            "framedipv6address",
            "framedipv6prefix",
            "framedinterfaceid",
            "delegatedipv6prefix",
        ],
        explains: |c| {
            let stopped = |r: &Row| r.get("acctstoptime").is_some_and(|v| *v != Value::Null);
            *c.ours == Value::Null && stopped(c.our_row) && stopped(c.their_row)
        },
        reason: "FreeRADIUS's SQLite Stop query leaves the framed addresses as they were; its \
                 PostgreSQL query, and radacctd, set them from the Stop (NULL when it has none).",
    },
    Deviation {
        name: "SQLite: an Interim-Update never changes a stopped session",
        backends: SQLITE,
        sessions: &["dup-1"],
        columns: &[
            "acctupdatetime",
            "acctsessiontime",
            "acctinputoctets",
            "acctoutputoctets",
            "framedipaddress",
        ],
        explains: |_| true,
        reason: "FreeRADIUS's SQLite Interim-Update query updates the session whether or not it \
                 was stopped (a late Interim-Update overwrites the Stop's counters); its \
                 PostgreSQL query, and radacctd, leave a stopped session alone (SPEC §3).",
    },
    Deviation {
        name: "SQLite: a Stop without Start keeps Connect-Info in connectinfo_start",
        backends: SQLITE,
        sessions: &[],
        columns: &["connectinfo_start", "connectinfo_stop"],
        explains: |c| {
            let get = |r: &Row, column: &str| r.get(column).cloned().unwrap_or(Value::Null);
            get(c.their_row, "connectinfo_start") == Value::Null
                && get(c.our_row, "connectinfo_stop") == Value::Null
                && get(c.their_row, "connectinfo_stop") == get(c.our_row, "connectinfo_start")
        },
        reason: "FreeRADIUS's SQLite insert for a Stop without Start puts Connect-Info in \
                 connectinfo_stop; its PostgreSQL insert, and radacctd, in connectinfo_start.",
    },
    Deviation {
        name: "SQLite: Accounting-On/Off without a cause closes sessions as NAS-Reboot",
        backends: SQLITE,
        sessions: &[],
        columns: &["acctterminatecause"],
        explains: |c| *c.theirs == Value::Null && *c.ours == Value::Text("NAS-Reboot".to_owned()),
        reason: "FreeRADIUS's SQLite Accounting-On/Off query writes the packet's \
                 Acct-Terminate-Cause, '' when there is none; its PostgreSQL query, and \
                 radacctd, NAS-Reboot (SPEC §3).",
    },
    Deviation {
        name: "SQLite: an IPv6 NAS is stored by its NAS-IPv6-Address",
        backends: SQLITE,
        sessions: &[],
        columns: &["nasipaddress"],
        explains: |c| {
            *c.theirs == Value::Text("127.0.0.1".to_owned())
                && c.ours
                    .text()
                    .is_some_and(|o| o.parse::<std::net::Ipv6Addr>().is_ok())
        },
        reason: "FreeRADIUS's SQLite queries store NAS-IP-Address only, which `preprocess` fills \
                 with the packet's source (here 127.0.0.1) when the NAS sends NAS-IPv6-Address; \
                 its PostgreSQL queries, its acct_unique policy and radacctd use \
                 NAS-IPv6-Address first (SPEC §3). Accounting-On/Off then matches by the same \
                 address on each side.",
    },
];

/// `2001:db8:0:1f::/60` -> `2001:db8:0:10::/60`.
fn network(prefix: &str) -> Option<String> {
    let (address, bits) = prefix.split_once('/')?;
    let address: std::net::Ipv6Addr = address.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    Some(format!(
        "{}/{bits}",
        std::net::Ipv6Addr::from(u128::from(address) & mask)
    ))
}

/// Undoes FreeRADIUS's default SQL escaping (`=` and two hex digits per byte).
fn unescape(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = (bytes[i] == b'=')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match code {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- reading and normalising ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// A row: column -> value.
pub type Row = BTreeMap<String, Value>;

/// A `radacct` table: FreeRADIUS's columns (without `radacctid`) and the rows in `radacctid`
/// order.
pub struct Table {
    pub columns: Vec<String>,
    /// PostgreSQL: the data type of each column.
    pub types: HashMap<String, String>,
    pub rows: Vec<Row>,
}

/// Representations that differ between the two schemas for the same content. Applied to both
/// sides; each rule says why. Everything else is compared as read: on PostgreSQL both tables
/// have FreeRADIUS's types and are read with the same SELECT (times as UNIX seconds, `inet` as
/// text); on SQLite times need nothing either, because FreeRADIUS's schema declares them
/// `datetime` but its queries write UNIX seconds, which SQLite keeps as integers, as radacctd's
/// INTEGER columns do.
fn normalise(backend: Backend, value: Value) -> Value {
    match (backend, value) {
        // Absent values: FreeRADIUS's SQLite queries write '' (they have no NULLIF, and its
        // schema declares most text columns NOT NULL DEFAULT '') where its PostgreSQL queries
        // write NULL; radacctd writes what the PostgreSQL queries write on both databases.
        // Both mean "the NAS did not send it".
        (Backend::Sqlite, Value::Text(s)) if s.is_empty() => Value::Null,
        (_, value) => value,
    }
}

async fn read_freeradius(db: &FreeRadiusDb) -> Table {
    match db {
        FreeRadiusDb::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            let described: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = 'radacct' ORDER BY ordinal_position",
            )
            .fetch_all(&pool)
            .await
            .expect("describe FreeRADIUS's radacct");
            let described: Vec<(String, String)> = described
                .into_iter()
                .filter(|(c, _)| c != "radacctid")
                .collect();
            let columns: Vec<String> = described.iter().map(|(c, _)| c.clone()).collect();
            let types: HashMap<String, String> = described.into_iter().collect();
            let rows = read_pg(&pool, &columns, &types).await;
            pool.close().await;
            Table {
                columns,
                types,
                rows,
            }
        }
        FreeRadiusDb::Sqlite(path) => {
            let pool = sqlite_pool(&format!("sqlite://{}", path.display())).await;
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM pragma_table_info('radacct') WHERE name <> 'radacctid' ORDER BY cid",
            )
            .fetch_all(&pool)
            .await
            .expect("describe FreeRADIUS's radacct");
            let rows = read_sqlite(&pool, &columns).await;
            pool.close().await;
            Table {
                columns,
                types: HashMap::new(),
                rows,
            }
        }
    }
}

/// radacctd's `radacct`, FreeRADIUS's columns only (its own extra columns are not compared).
async fn read_radacctd(backend: Backend, url: &str, their: &[String]) -> Table {
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            let described: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = 'radacct'",
            )
            .fetch_all(&pool)
            .await
            .expect("describe radacctd's radacct");
            let types: HashMap<String, String> = described.into_iter().collect();
            let columns: Vec<String> = their
                .iter()
                .filter(|c| types.contains_key(*c))
                .cloned()
                .collect();
            let rows = read_pg(&pool, &columns, &types).await;
            pool.close().await;
            Table {
                columns,
                types,
                rows,
            }
        }
        Backend::Sqlite => {
            let pool = sqlite_pool(url).await;
            let present: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info('radacct')")
                    .fetch_all(&pool)
                    .await
                    .expect("describe radacctd's radacct");
            let columns: Vec<String> = their
                .iter()
                .filter(|c| present.contains(c))
                .cloned()
                .collect();
            let rows = read_sqlite(&pool, &columns).await;
            pool.close().await;
            Table {
                columns,
                types: HashMap::new(),
                rows,
            }
        }
    }
}

async fn sqlite_pool(url: &str) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"))
}

/// Times as UNIX seconds, addresses as text (`abbrev`: no `/32` or `/128` on a host).
async fn read_pg(
    pool: &sqlx::PgPool,
    columns: &[String],
    types: &HashMap<String, String>,
) -> Vec<Row> {
    let select: Vec<String> = columns
        .iter()
        .map(|c| match types[c].as_str() {
            "timestamp with time zone" | "timestamp without time zone" => {
                format!("EXTRACT(EPOCH FROM {c})::bigint AS {c}")
            }
            "inet" | "cidr" => format!("abbrev({c}) AS {c}"),
            "bigint" | "integer" | "smallint" => format!("{c}::bigint AS {c}"),
            _ => format!("{c}::text AS {c}"),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM radacct ORDER BY radacctid",
        select.join(", ")
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    let value = if matches!(
                        types[c].as_str(),
                        "timestamp with time zone"
                            | "timestamp without time zone"
                            | "bigint"
                            | "integer"
                            | "smallint"
                    ) {
                        r.get::<Option<i64>, _>(c.as_str())
                            .map_or(Value::Null, Value::Int)
                    } else {
                        r.get::<Option<String>, _>(c.as_str())
                            .map_or(Value::Null, Value::Text)
                    };
                    (c.clone(), normalise(Backend::Postgres, value))
                })
                .collect()
        })
        .collect()
}

/// Values as SQLite holds them (its types are per value, not per column).
async fn read_sqlite(pool: &sqlx::SqlitePool, columns: &[String]) -> Vec<Row> {
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("typeof({c}) AS \"type_{c}\", {c}"))
        .collect();
    let sql = format!(
        "SELECT {} FROM radacct ORDER BY radacctid",
        select.join(", ")
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    let typ: String = r.get(format!("type_{c}").as_str());
                    let value = match typ.as_str() {
                        "null" => Value::Null,
                        "integer" => Value::Int(r.get_unchecked::<i64, _>(c.as_str())),
                        "real" => Value::Text(r.get_unchecked::<f64, _>(c.as_str()).to_string()),
                        "blob" => Value::Text(format!(
                            "x'{}'",
                            hex::encode(r.get_unchecked::<Vec<u8>, _>(c.as_str()))
                        )),
                        _ => Value::Text(r.get_unchecked::<String, _>(c.as_str())),
                    };
                    (c.clone(), normalise(Backend::Sqlite, value))
                })
                .collect()
        })
        .collect()
}

// ---- comparing ------------------------------------------------------------------------------

/// Everything that differs, readable (empty when the tables agree), and the deviations seen.
fn compare(
    backend: Backend,
    base: i64,
    window: (i64, i64),
    theirs: &Table,
    ours: &Table,
) -> (String, Vec<&'static Deviation>) {
    let mut out = String::new();
    let show = |column: &str, v: &Value| -> String {
        match v {
            Value::Null => "NULL".to_owned(),
            Value::Text(s) => format!("{s:?}"),
            Value::Int(i) if TIME_COLUMNS.contains(&column) => {
                let offset = i - base;
                if offset.abs() < 1_000_000 {
                    format!("{i} (T{offset:+})")
                } else {
                    format!("{i} (receipt {:+} s)", i - window.1)
                }
            }
            Value::Int(i) => i.to_string(),
        }
    };
    let describe = |row: &Row| -> String {
        ["acctsessionid", "username", "nasipaddress"]
            .iter()
            .map(|c| format!("{c} {}", show(c, row.get(*c).unwrap_or(&Value::Null))))
            .collect::<Vec<_>>()
            .join(", ")
    };

    // The columns: radacctd has every one of FreeRADIUS's, with its type on PostgreSQL.
    for column in &theirs.columns {
        if !ours.columns.contains(column) {
            out += &format!("column {column}: radacctd's radacct has no such column\n");
        } else if backend == Backend::Postgres && theirs.types[column] != ours.types[column] {
            out += &format!(
                "column {column}: FreeRADIUS's type is {}, radacctd's {}\n",
                theirs.types[column], ours.types[column]
            );
        }
    }

    let uid = |row: &Row| row.get("acctuniqueid").cloned().unwrap_or(Value::Null);
    let our_by_uid: HashMap<Value, &Row> = ours.rows.iter().map(|r| (uid(r), r)).collect();
    let their_uids: Vec<Value> = theirs.rows.iter().map(uid).collect();
    for row in &theirs.rows {
        if !our_by_uid.contains_key(&uid(row)) {
            out += &format!(
                "row only in FreeRADIUS: acctuniqueid {}, {}\n    {row:?}\n",
                show("", &uid(row)),
                describe(row)
            );
        }
    }
    for row in &ours.rows {
        if !their_uids.contains(&uid(row)) {
            out += &format!(
                "row only in radacctd: acctuniqueid {}, {}\n    {row:?}\n",
                show("", &uid(row)),
                describe(row)
            );
        }
    }
    // Insertion order of the rows both have.
    let common_theirs: Vec<&Value> = their_uids
        .iter()
        .filter(|u| our_by_uid.contains_key(*u))
        .collect();
    let our_uids: Vec<Value> = ours.rows.iter().map(uid).collect();
    let common_ours: Vec<&Value> = our_uids.iter().filter(|u| their_uids.contains(u)).collect();
    if common_theirs != common_ours {
        out += &format!(
            "the rows were inserted in another order:\n  FreeRADIUS {common_theirs:?}\n  radacctd   {common_ours:?}\n"
        );
    }

    let mut used = vec![false; DEVIATIONS.len()];
    for their_row in &theirs.rows {
        let Some(our_row) = our_by_uid.get(&uid(their_row)) else {
            continue;
        };
        let receipt_timed = TIME_COLUMNS.iter().any(|c| {
            [their_row.get(*c), our_row.get(*c)]
                .into_iter()
                .flatten()
                .filter_map(Value::int)
                .any(|t| window.0 - 3600 <= t && t <= window.1 + 60)
        });
        let mut lines = String::new();
        for column in theirs.columns.iter().filter(|c| ours.columns.contains(c)) {
            let (t, o) = (&their_row[column], &our_row[column]);
            if t == o {
                continue;
            }
            if receipt_timed
                && (TIME_COLUMNS.contains(&column.as_str())
                    || DURATION_COLUMNS.contains(&column.as_str()))
            {
                if let (Some(a), Some(b)) = (t.int(), o.int()) {
                    if (a - b).abs() <= RECEIPT_TOLERANCE {
                        continue;
                    }
                }
            }
            let cell = Cell {
                theirs: t,
                ours: o,
                their_row,
                our_row,
            };
            let session = their_row.get("acctsessionid").and_then(Value::text);
            let explained = DEVIATIONS.iter().enumerate().find(|(_, d)| {
                d.backends.contains(&backend)
                    && d.columns.contains(&column.as_str())
                    && (d.sessions.is_empty() || session.is_some_and(|s| d.sessions.contains(&s)))
                    && (d.explains)(&cell)
            });
            match explained {
                Some((i, _)) => used[i] = true,
                None => {
                    lines += &format!(
                        "    {column}: FreeRADIUS {}, radacctd {}\n",
                        show(column, t),
                        show(column, o)
                    )
                }
            }
        }
        if !lines.is_empty() {
            out += &format!(
                "row acctuniqueid {} ({}):\n{lines}",
                show("", &uid(their_row)),
                describe(their_row)
            );
        }
    }
    let mut seen = Vec::new();
    for (deviation, used) in DEVIATIONS.iter().zip(used) {
        if used {
            seen.push(deviation);
        } else if deviation.backends.contains(&backend) {
            out += &format!(
                "deviation \"{}\" is listed but no row shows it any more: remove it from DEVIATIONS \
                 (or restore the packets that show it)\n",
                deviation.name
            );
        }
    }
    (out, seen)
}

//! Configuration: built-in defaults < TOML file < `RADACCTD_*` environment < command-line flags.
//!
//! Every layer is parsed into the same [`Layer`] of optional values (unknown TOML keys are
//! rejected), the layers are merged in precedence order, and [`Layer::resolve`] validates the
//! result into a [`Config`]. Every error names the key it is about, so `main` can print it as
//! one line and exit non-zero.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The RADIUS accounting port of RFC 2866.
pub const DEFAULT_RADIUS_PORT: u16 = 1813;
/// The CoA/Disconnect port of RFC 5176, used when a client names none.
pub const DEFAULT_COA_PORT: u16 = 3799;
/// The secret FreeRADIUS gives its localhost client out of the box.
pub const DEFAULT_LOCAL_SECRET: &str = "testing123";
/// `http.header_timeout`: time for a client's request headers (and a WebSocket's
/// `connection_init`); enough for any real client on a slow link, short enough that a
/// slowloris client holds a connection for seconds, not forever.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: &str = "10s";
/// `http.body_timeout`: time for a request body after its headers; bodies are at most 1 MiB,
/// so this still lets a client on a 35 KB/s link send the largest one.
pub const DEFAULT_HTTP_BODY_TIMEOUT: &str = "30s";
/// `http.max_concurrent_requests`: HTTP requests processed at once (the others wait for a
/// slot; `/healthz` and `/metrics` never do). See `api::admission` and README, "HTTP under
/// load".
pub const DEFAULT_HTTP_MAX_CONCURRENT_REQUESTS: usize = 16;
/// The largest `http.max_concurrent_requests` that means anything: no more connections than
/// this are served at once, each with one request at a time.
pub const MAX_HTTP_CONCURRENT_REQUESTS: usize = crate::api::serve::MAX_CONNECTIONS;

/// A configuration problem, always about one key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The TOML key (or flag / variable) the problem is about.
    pub key: String,
    /// What is wrong with it, in a few words.
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A string that never prints: secrets and passwords in the config.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; the only way to read it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("****")
    }
}

/// A RADIUS client (NAS) allowed to send accounting.
#[derive(Debug, Clone, Serialize)]
pub struct ClientConfig {
    /// The source network the NAS sends from (a single address is a /32 or /128).
    pub address: IpNet,
    /// The shared secret used for the Request Authenticator and Message-Authenticator.
    pub secret: Secret,
    /// A short name for logs and the `nas` listing.
    pub name: String,
    /// Where Disconnect-Requests for this NAS go (RFC 5176).
    pub coa_port: u16,
}

/// The effective configuration of one radacctd node.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `sqlite://...` or `postgres://...`.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub database_url: String,
    pub radius: RadiusConfig,
    pub http: HttpConfig,
    /// The site this node belongs to (web sessions are per site).
    pub site: String,
    /// This node's name, unique among the nodes sharing one database.
    pub node: String,
    /// The domain of users created by this node.
    pub domain: String,
    /// Password of the bootstrap `admin` user, used only when that user does not exist.
    pub admin_password: Option<Secret>,
    pub sessions: SessionsConfig,
    pub accounting: AccountingConfig,
    pub auth: AuthConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct RadiusConfig {
    /// UDP addresses to receive accounting on.
    pub listen: Vec<SocketAddr>,
    /// Addresses from `listen` that may fail to bind (the default `[::]` where IPv6 is absent).
    #[serde(skip)]
    pub optional_listen: Vec<SocketAddr>,
    /// Statically configured clients; rows of the `nas` table are added at run time.
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Root path of the console API (`<webservice>/Login`, `<webservice>/Session`).
    pub webservice_path: String,
    /// A request's headers must arrive within this (else the connection is closed); also how
    /// long an idle keep-alive connection is kept, and how long a GraphQL WebSocket may wait
    /// before its `connection_init`.
    #[serde(serialize_with = "serialize_duration")]
    pub header_timeout: Duration,
    /// A request's body must arrive within this after its headers (else 408).
    #[serde(serialize_with = "serialize_duration")]
    pub body_timeout: Duration,
    /// Requests processed at once; the others wait for a slot (at most 10 s, then 503).
    pub max_concurrent_requests: usize,
    /// `/metrics` needs a token of the operator or admin role (off: it needs none).
    pub metrics_auth: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionsConfig {
    #[serde(serialize_with = "serialize_duration")]
    pub ttl: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub retention: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountingConfig {
    /// Close an open session with no known interval after this long without a packet.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub stale_after: Option<Duration>,
    /// Move closed sessions to `radacct_history` after this long.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub archive_after: Option<Duration>,
    /// Drop history older than this.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub history_retention: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    pub anonymous_graphql: bool,
}

/// One layer of configuration: every value optional, unknown keys rejected.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub database_url: Option<String>,
    #[serde(default)]
    pub radius: RadiusLayer,
    #[serde(default)]
    pub http: HttpLayer,
    pub site: Option<String>,
    pub node: Option<String>,
    pub domain: Option<String>,
    pub admin_password: Option<Secret>,
    #[serde(default)]
    pub sessions: SessionsLayer,
    #[serde(default)]
    pub accounting: AccountingLayer,
    #[serde(default)]
    pub auth: AuthLayer,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusLayer {
    pub listen: Option<Vec<String>>,
    pub clients: Option<Vec<ClientLayer>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLayer {
    pub address: String,
    pub secret: Secret,
    pub name: Option<String>,
    pub coa_port: Option<u16>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLayer {
    pub listen: Option<String>,
    pub webservice_path: Option<String>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_concurrent_requests: Option<i64>,
    pub metrics_auth: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsLayer {
    pub ttl: Option<String>,
    pub retention: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingLayer {
    pub stale_after: Option<String>,
    pub archive_after: Option<String>,
    pub history_retention: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLayer {
    pub anonymous_graphql: Option<bool>,
}

/// Command-line overrides (the highest layer).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub database_url: Option<String>,
    pub radius_listen: Option<Vec<String>>,
    pub http_listen: Option<String>,
    pub site: Option<String>,
    pub node: Option<String>,
    pub domain: Option<String>,
}

/// Environment variables that are not config keys but are known to radacctd.
const OTHER_KNOWN_ENV: &[&str] = &["RADACCTD_CONFIG", "RADACCTD_LOG_FORMAT"];

/// The result of loading: the config, plus warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Loads the configuration from all layers. `env` is the process environment (passed in so
/// tests can supply their own).
pub fn load(flags: &Flags, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let env_get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let file = flags
        .config
        .clone()
        .or_else(|| env_get("RADACCTD_CONFIG").map(PathBuf::from));
    let mut layer = match file {
        Some(path) => Layer::from_file(&path)?,
        None => Layer::default(),
    };
    let (env_layer, warnings) = Layer::from_env(env)?;
    layer.merge(env_layer);
    layer.merge(Layer::from_flags(flags));
    Ok(Loaded {
        config: layer.resolve()?,
        warnings,
    })
}

impl Layer {
    /// Parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_toml(&text)
            .map_err(|e| ConfigError::new(e.key, format!("{} (in {})", e.problem, path.display())))
    }

    /// Parses TOML text. Errors name the dotted key they are about.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    let key = key_at(text, span.start).unwrap_or_else(|| "config file".to_owned());
                    ConfigError::new(key, format!("{message} at line {line}"))
                }
                None => ConfigError::new("config file", message),
            }
        })
    }

    /// Reads the `RADACCTD_*` variables (and `DATABASE_URL`). Unknown `RADACCTD_*` names give
    /// warnings, not errors.
    pub fn from_env(env: &[(String, String)]) -> Result<(Self, Vec<String>), ConfigError> {
        let mut layer = Layer::default();
        let mut warnings = Vec::new();
        let mut plain_database_url = None;
        for (name, value) in env {
            let value = value.clone();
            match name.as_str() {
                "DATABASE_URL" => plain_database_url = Some(value),
                "RADACCTD_DATABASE_URL" => layer.database_url = Some(value),
                "RADACCTD_RADIUS_LISTEN" => {
                    layer.radius.listen = Some(split_list(&value));
                }
                "RADACCTD_HTTP_LISTEN" => layer.http.listen = Some(value),
                "RADACCTD_SITE" => layer.site = Some(value),
                "RADACCTD_NODE" => layer.node = Some(value),
                "RADACCTD_DOMAIN" => layer.domain = Some(value),
                "RADACCTD_ADMIN_PASSWORD" => layer.admin_password = Some(Secret(value)),
                "RADACCTD_WEBSERVICE_PATH" => layer.http.webservice_path = Some(value),
                "RADACCTD_SESSION_TTL" => layer.sessions.ttl = Some(value),
                "RADACCTD_STALE_AFTER" => layer.accounting.stale_after = Some(value),
                "RADACCTD_ARCHIVE_AFTER" => layer.accounting.archive_after = Some(value),
                other if other.starts_with("RADACCTD_") && !OTHER_KNOWN_ENV.contains(&other) => {
                    warnings.push(format!(
                        "environment variable {other} names no configuration key; ignored"
                    ));
                }
                _ => {}
            }
        }
        if layer.database_url.is_none() {
            layer.database_url = plain_database_url;
        }
        Ok((layer, warnings))
    }

    fn from_flags(flags: &Flags) -> Self {
        let mut layer = Layer {
            database_url: flags.database_url.clone(),
            site: flags.site.clone(),
            node: flags.node.clone(),
            domain: flags.domain.clone(),
            ..Layer::default()
        };
        layer.radius.listen = flags
            .radius_listen
            .as_ref()
            .map(|list| list.iter().flat_map(|item| split_list(item)).collect());
        layer.http.listen = flags.http_listen.clone();
        layer
    }

    /// Overlays `higher` on `self`: every value `higher` sets wins.
    pub fn merge(&mut self, higher: Layer) {
        fn over<T>(low: &mut Option<T>, high: Option<T>) {
            if high.is_some() {
                *low = high;
            }
        }
        over(&mut self.database_url, higher.database_url);
        over(&mut self.radius.listen, higher.radius.listen);
        over(&mut self.radius.clients, higher.radius.clients);
        over(&mut self.http.listen, higher.http.listen);
        over(&mut self.http.webservice_path, higher.http.webservice_path);
        over(&mut self.http.header_timeout, higher.http.header_timeout);
        over(&mut self.http.body_timeout, higher.http.body_timeout);
        over(
            &mut self.http.max_concurrent_requests,
            higher.http.max_concurrent_requests,
        );
        over(&mut self.http.metrics_auth, higher.http.metrics_auth);
        over(&mut self.site, higher.site);
        over(&mut self.node, higher.node);
        over(&mut self.domain, higher.domain);
        over(&mut self.admin_password, higher.admin_password);
        over(&mut self.sessions.ttl, higher.sessions.ttl);
        over(&mut self.sessions.retention, higher.sessions.retention);
        over(
            &mut self.accounting.stale_after,
            higher.accounting.stale_after,
        );
        over(
            &mut self.accounting.archive_after,
            higher.accounting.archive_after,
        );
        over(
            &mut self.accounting.history_retention,
            higher.accounting.history_retention,
        );
        over(
            &mut self.auth.anonymous_graphql,
            higher.auth.anonymous_graphql,
        );
    }

    /// Applies the built-in defaults and validates every value.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let database_url = self
            .database_url
            .unwrap_or_else(|| "sqlite://radacctd.db".to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "database_url",
                "must start with sqlite: or postgres:// (or postgresql://)",
            ));
        }

        let (listen, optional_listen) = match self.radius.listen {
            Some(list) => {
                if list.is_empty() {
                    return Err(ConfigError::new(
                        "radius.listen",
                        "needs at least one address",
                    ));
                }
                let addrs = list
                    .iter()
                    .map(|s| parse_socket_addr("radius.listen", s, DEFAULT_RADIUS_PORT))
                    .collect::<Result<Vec<_>, _>>()?;
                (addrs, Vec::new())
            }
            None => {
                let v4 = SocketAddr::from(([0, 0, 0, 0], DEFAULT_RADIUS_PORT));
                let v6 = SocketAddr::from(([0u16; 8], DEFAULT_RADIUS_PORT));
                (vec![v4, v6], vec![v6])
            }
        };

        let clients = match self.radius.clients {
            Some(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, c)| resolve_client(i, c))
                .collect::<Result<Vec<_>, _>>()?,
            None => ["127.0.0.1/32", "::1/128"]
                .iter()
                .map(|net| ClientConfig {
                    address: net.parse().expect("literal network is valid"),
                    secret: Secret::new(DEFAULT_LOCAL_SECRET),
                    name: "localhost".to_owned(),
                    coa_port: DEFAULT_COA_PORT,
                })
                .collect(),
        };

        let http_listen = match self.http.listen {
            Some(s) => parse_socket_addr("http.listen", &s, 8080)?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let webservice_path = self
            .http
            .webservice_path
            .unwrap_or_else(|| "/webconsole/api".to_owned());
        if !webservice_path.starts_with('/')
            || webservice_path.len() < 2
            || webservice_path.ends_with('/')
        {
            return Err(ConfigError::new(
                "http.webservice_path",
                "must start with / and not end with / (for example /webconsole/api)",
            ));
        }

        let header_timeout = required_duration(
            "http.header_timeout",
            self.http.header_timeout.as_deref(),
            DEFAULT_HTTP_HEADER_TIMEOUT,
        )?;
        let body_timeout = required_duration(
            "http.body_timeout",
            self.http.body_timeout.as_deref(),
            DEFAULT_HTTP_BODY_TIMEOUT,
        )?;
        let max_concurrent_requests = match self.http.max_concurrent_requests {
            None => DEFAULT_HTTP_MAX_CONCURRENT_REQUESTS,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_HTTP_CONCURRENT_REQUESTS).contains(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        "http.max_concurrent_requests",
                        format!("must be a whole number from 1 to {MAX_HTTP_CONCURRENT_REQUESTS}"),
                    )
                })?,
        };

        let site = non_empty("site", self.site.unwrap_or_else(|| "central".to_owned()))?;
        let node = non_empty(
            "node",
            self.node
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
        )?;
        let domain = non_empty(
            "domain",
            self.domain.unwrap_or_else(|| "master.domain".to_owned()),
        )?;
        if let Some(pw) = &self.admin_password {
            if pw.expose().is_empty() {
                return Err(ConfigError::new("admin_password", "must not be empty"));
            }
        }

        let ttl = required_duration("sessions.ttl", self.sessions.ttl.as_deref(), "12h")?;
        let retention = required_duration(
            "sessions.retention",
            self.sessions.retention.as_deref(),
            "30d",
        )?;
        let stale_after = optional_duration(
            "accounting.stale_after",
            self.accounting.stale_after.as_deref(),
            "2h",
        )?;
        let archive_after = optional_duration(
            "accounting.archive_after",
            self.accounting.archive_after.as_deref(),
            "7d",
        )?;
        let history_retention = optional_duration(
            "accounting.history_retention",
            self.accounting.history_retention.as_deref(),
            "off",
        )?;

        Ok(Config {
            database_url,
            radius: RadiusConfig {
                listen,
                optional_listen,
                clients,
            },
            http: HttpConfig {
                listen: http_listen,
                webservice_path,
                header_timeout,
                body_timeout,
                max_concurrent_requests,
                metrics_auth: self.http.metrics_auth.unwrap_or(false),
            },
            site,
            node,
            domain,
            admin_password: self.admin_password,
            sessions: SessionsConfig { ttl, retention },
            accounting: AccountingConfig {
                stale_after,
                archive_after,
                history_retention,
            },
            auth: AuthConfig {
                anonymous_graphql: self.auth.anonymous_graphql.unwrap_or(false),
            },
        })
    }
}

/// The dotted key (`http.listen`) of the `key = value` line holding byte `offset`, from the
/// table header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

fn resolve_client(index: usize, c: ClientLayer) -> Result<ClientConfig, ConfigError> {
    let key = |field: &str| format!("radius.clients[{index}].{field}");
    let address = parse_net(&c.address).map_err(|p| ConfigError::new(key("address"), p))?;
    if c.secret.expose().is_empty() {
        return Err(ConfigError::new(key("secret"), "must not be empty"));
    }
    if c.coa_port == Some(0) {
        return Err(ConfigError::new(key("coa_port"), "must be 1-65535"));
    }
    Ok(ClientConfig {
        address,
        secret: c.secret,
        name: c.name.unwrap_or_else(|| c.address.clone()),
        coa_port: c.coa_port.unwrap_or(DEFAULT_COA_PORT),
    })
}

/// Parses an IP address or CIDR network; IPv4-mapped IPv6 addresses become IPv4.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(normalize_ip(ip)));
    }
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("\"{s}\" is not an IP address or CIDR network"))?;
    Ok(match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => IpNet::V4(
                ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix length is at most 32"),
            ),
            _ => IpNet::V6(v6.trunc()),
        },
        IpNet::V4(v4) => IpNet::V4(v4.trunc()),
    })
}

/// Turns an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) into the IPv4 address it carries.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_socket_addr(key: &str, s: &str, default_port: u16) -> Result<SocketAddr, ConfigError> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(port) = s.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    Err(ConfigError::new(
        key,
        format!("\"{s}\" is not an address such as 0.0.0.0:1813 or [::]:1813"),
    ))
}

fn non_empty(key: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::new(key, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// Parses `30s`, `15m`, `12h`, `30d` (a plain number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration such as 30s, 15m, 12h or 30d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "\"{s}\" is not a duration such as 30s, 15m, 12h or 30d"
            ))
        }
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|&secs| secs <= 100 * 365 * 86_400)
        .ok_or_else(|| format!("\"{s}\" is too long"))?;
    Ok(Duration::from_secs(secs))
}

fn required_duration(
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let d = parse_duration(value.unwrap_or(default)).map_err(|p| ConfigError::new(key, p))?;
    if d.is_zero() {
        return Err(ConfigError::new(key, "must be longer than 0s"));
    }
    Ok(d)
}

fn optional_duration(
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Option<Duration>, ConfigError> {
    match value.unwrap_or(default).trim() {
        "off" => Ok(None),
        other => required_duration(key, Some(other), default).map(Some),
    }
}

/// Formats a duration the way the config writes it (`12h`, `30d`, `90s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= secs && s % secs == 0 {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn serialize_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_str("off"),
    }
}

fn serialize_redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// Hides the password of a database URL (`postgres://user:****@host/db`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:****@{host}{tail}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Layer::default().resolve().unwrap();
        assert_eq!(c.database_url, "sqlite://radacctd.db");
        assert_eq!(c.radius.listen[0].to_string(), "0.0.0.0:1813");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.site, "central");
        assert_eq!(c.domain, "master.domain");
        assert_eq!(c.http.webservice_path, "/webconsole/api");
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.body_timeout, Duration::from_secs(30));
        assert_eq!(c.http.max_concurrent_requests, 16);
        assert_eq!(c.sessions.ttl, Duration::from_secs(12 * 3600));
        assert_eq!(c.accounting.stale_after, Some(Duration::from_secs(7200)));
        assert_eq!(c.accounting.history_retention, None);
        assert_eq!(c.radius.clients.len(), 2);
        assert_eq!(c.radius.clients[0].secret.expose(), "testing123");
    }

    #[test]
    fn env_overrides_toml_and_flags_override_env() {
        let mut layer =
            Layer::from_toml("site = \"toml\"\ndomain = \"toml.domain\"\nnode = \"n1\"").unwrap();
        let (env_layer, warnings) = Layer::from_env(&env(&[
            ("RADACCTD_SITE", "env"),
            ("RADACCTD_NODE", "n2"),
            ("RADACCTD_BOGUS", "1"),
        ]))
        .unwrap();
        layer.merge(env_layer);
        layer.merge(Layer::from_flags(&Flags {
            node: Some("n3".into()),
            ..Flags::default()
        }));
        let c = layer.resolve().unwrap();
        assert_eq!(c.domain, "toml.domain");
        assert_eq!(c.site, "env");
        assert_eq!(c.node, "n3");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("RADACCTD_BOGUS"));
    }

    #[test]
    fn radacctd_database_url_beats_plain_database_url() {
        let (l, _) = Layer::from_env(&env(&[
            ("DATABASE_URL", "postgres://a/b"),
            ("RADACCTD_DATABASE_URL", "sqlite://x.db"),
        ]))
        .unwrap();
        assert_eq!(l.database_url.as_deref(), Some("sqlite://x.db"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = Layer::from_toml("[radius]\nlisten = [\"nonsense\"]")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.key, "radius.listen");
        let err = Layer::from_toml("[[radius.clients]]\naddress = \"10.0.0.0/8\"\nsecret = \"\"")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.key, "radius.clients[0].secret");
        let err = Layer::from_toml("[accounting]\nstale_after = \"5 fortnights\"")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.key, "accounting.stale_after");
        let err = Layer::from_toml("[http]\nheader_timeout = \"0s\"")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.key, "http.header_timeout");
        for bad in ["0", "-3", "1025"] {
            let err = Layer::from_toml(&format!("[http]\nmax_concurrent_requests = {bad}"))
                .unwrap()
                .resolve()
                .unwrap_err();
            assert_eq!(err.key, "http.max_concurrent_requests", "{bad}");
        }
        let err = Layer::from_toml("[http]\nmax_concurrent_requests = \"8\"").unwrap_err();
        assert_eq!(err.key, "http.max_concurrent_requests", "{err}");
        let c = Layer::from_toml("[http]\nmax_concurrent_requests = 4")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(c.http.max_concurrent_requests, 4);
        let err = Layer::from_toml("bogus = 1").unwrap_err();
        assert!(err.problem.contains("bogus"), "{err}");
        let err = Layer::from_toml("site = \"x\"\n[http]\nlisten = 8080\n").unwrap_err();
        assert_eq!(err.key, "http.listen", "{err}");
        let err = Layer::from_toml("[radius]\nlisten_on = [\"x\"]\n").unwrap_err();
        assert_eq!(err.key, "radius.listen_on", "{err}");
    }

    #[test]
    fn metrics_auth_is_off_unless_set() {
        let c = Layer::from_toml("").unwrap().resolve().unwrap();
        assert!(!c.http.metrics_auth);
        let c = Layer::from_toml("[http]\nmetrics_auth = true")
            .unwrap()
            .resolve()
            .unwrap();
        assert!(c.http.metrics_auth);
        let err = Layer::from_toml("[http]\nmetrics_auth = \"yes\"").unwrap_err();
        assert_eq!(err.key, "http.metrics_auth", "{err}");
    }

    #[test]
    fn mapped_ipv6_clients_are_normalised() {
        assert_eq!(
            parse_net("::ffff:10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            parse_net("::ffff:10.1.2.0/120").unwrap().to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_net("10.1.2.300").is_err());
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(43_200)), "12h");
        assert_eq!(optional_duration("k", Some("off"), "2h").unwrap(), None);
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://radacctd.db"), "sqlite://radacctd.db");
        let c = Layer::from_toml("admin_password = \"hunter2\"")
            .unwrap()
            .resolve()
            .unwrap();
        let text = toml::to_string(&c).unwrap();
        assert!(!text.contains("hunter2"));
    }
}

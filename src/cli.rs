//! The command line (clap): `serve` (the default), `migrate`, `check-config`, `nas add|list|del`,
//! `user add|passwd|del|list`.
//! Every subcommand takes the same `--config` / `--database-url` options as `serve`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::app::{self, App};
use crate::config::{self, Flags, DEFAULT_COA_PORT};
use crate::store::{NasRow, Store};

#[derive(Debug, Parser)]
#[command(
    name = "radacctd",
    version,
    about = "RADIUS accounting server with a FreeRADIUS-compatible radacct table"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand takes (the highest configuration layer).
#[derive(Debug, Args, Default)]
pub struct GlobalArgs {
    /// TOML configuration file (also RADACCTD_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// sqlite://FILE or postgres://USER@HOST/DB.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// UDP addresses for accounting, comma-separated.
    #[arg(long, global = true, value_name = "ADDR,...")]
    pub radius_listen: Option<String>,
    /// HTTP address.
    #[arg(long, global = true, value_name = "ADDR")]
    pub http_listen: Option<String>,
    #[arg(long, global = true)]
    pub site: Option<String>,
    #[arg(long, global = true)]
    pub node: Option<String>,
    #[arg(long, global = true)]
    pub domain: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Manage RADIUS clients stored in the nas table.
    #[command(subcommand)]
    Nas(NasCommand),
    /// Print the OpenAPI document of the REST APIs.
    Openapi,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Who had this IP address at that moment (live and archived sessions).
    LookupIp {
        /// An IPv4 or IPv6 address.
        ip: String,
        /// RFC 3339 time or UNIX seconds.
        #[arg(long)]
        at: String,
        #[arg(long)]
        json: bool,
    },
    /// Manage users (API logins and accounting user names).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints its integer id and UUID.
    Add {
        login: String,
        #[arg(long, value_parser = ["admin", "operator", "subscriber"])]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a user's password.
    Passwd {
        login: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a user (and its web sessions).
    Del { login: String },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The password (visible to other local users in the process list; prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArgs {
    fn read(&self) -> Result<Option<String>> {
        let pw = if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from stdin")?;
            Some(line.trim_end_matches(['\r', '\n']).to_owned())
        } else {
            self.password.clone()
        };
        match pw {
            Some(p) if p.is_empty() => bail!("password: must not be empty"),
            other => Ok(other),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum NasCommand {
    /// Allow a NAS (IP address or CIDR network) to send accounting.
    Add {
        address: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = DEFAULT_COA_PORT)]
        coa_port: u16,
    },
    /// List the NASes of the nas table.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a NAS.
    Del { address: String },
}

impl GlobalArgs {
    fn flags(&self) -> Flags {
        Flags {
            config: self.config.clone(),
            database_url: self.database_url.clone(),
            radius_listen: self.radius_listen.clone().map(|s| vec![s]),
            http_listen: self.http_listen.clone(),
            site: self.site.clone(),
            node: self.node.clone(),
            domain: self.domain.clone(),
        }
    }
}

/// Runs the parsed command line. Configuration errors come back as one line naming the key.
pub async fn run(cli: Cli) -> Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = config::load(&cli.global.flags(), &env)
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = App::build(config).await?;
            app::cancel_on_signals(app.shutdown_token());
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let store = connect(&config.database_url).await?;
            store
                .migrate()
                .await
                .context("database_url: cannot apply migrations")?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::LookupIp { ip, at, json } => {
            let ip: std::net::IpAddr = ip
                .trim()
                .parse()
                .map(config::normalize_ip)
                .map_err(|_| anyhow::anyhow!("IP: \"{ip}\" is not an IPv4 or IPv6 address"))?;
            let at = parse_time(&at).ok_or_else(|| {
                anyhow::anyhow!("--at: \"{at}\" is not an RFC 3339 time or UNIX seconds")
            })?;
            let store = connect(&config.database_url).await?;
            store
                .migrate()
                .await
                .context("database_url: cannot apply migrations")?;
            let stale = config.accounting.stale_after.map(|d| d.as_secs() as i64);
            let rows = store.sessions_by_ip(ip, at, stale).await?;
            print_lookup(&rows, json)
        }
        Command::Schema => {
            print!("{}", crate::api::graphql::sdl());
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::api::openapi::document());
            Ok(())
        }
        Command::CheckConfig => {
            print!(
                "{}",
                toml::to_string(&config).context("cannot print the configuration")?
            );
            Ok(())
        }
        Command::Nas(cmd) => {
            let store = connect(&config.database_url).await?;
            store
                .migrate()
                .await
                .context("database_url: cannot apply migrations")?;
            nas(&store, cmd).await
        }
        Command::User(cmd) => {
            let store = connect(&config.database_url).await?;
            store
                .migrate()
                .await
                .context("database_url: cannot apply migrations")?;
            user(&store, &config.domain, cmd).await
        }
    }
}

async fn connect(url: &str) -> Result<Store> {
    Store::connect(url).await.with_context(|| {
        format!(
            "database_url: cannot connect to {}",
            config::redact_url(url)
        )
    })
}

async fn nas(store: &Store, cmd: NasCommand) -> Result<()> {
    match cmd {
        NasCommand::Add {
            address,
            secret,
            name,
            coa_port,
        } => {
            let network =
                config::parse_net(&address).map_err(|e| anyhow::anyhow!("address: {e}"))?;
            if secret.is_empty() {
                bail!("--secret: must not be empty");
            }
            if coa_port == 0 {
                bail!("--coa-port: must be 1-65535");
            }
            let nasname = if network.prefix_len() == network.max_prefix_len() {
                network.addr().to_string()
            } else {
                network.to_string()
            };
            let row = NasRow {
                shortname: name.unwrap_or_else(|| nasname.clone()),
                nasname,
                secret,
                coa_port,
            };
            store.nas_add(&row).await?;
            println!("added NAS {} ({})", row.nasname, row.shortname);
        }
        NasCommand::List { json } => {
            let rows = store.nas_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<40} {:<24} {:>8}", "ADDRESS", "NAME", "COA PORT");
                for r in rows {
                    println!("{:<40} {:<24} {:>8}", r.nasname, r.shortname, r.coa_port);
                }
            }
        }
        NasCommand::Del { address } => {
            let nasname = config::parse_net(&address)
                .map(|n| {
                    if n.prefix_len() == n.max_prefix_len() {
                        n.addr().to_string()
                    } else {
                        n.to_string()
                    }
                })
                .unwrap_or(address);
            if !store.nas_del(&nasname).await? {
                bail!("no NAS {nasname}");
            }
            println!("deleted NAS {nasname}");
        }
    }
    Ok(())
}

async fn user(store: &Store, domain: &str, cmd: UserCommand) -> Result<()> {
    let hash = |pw: String| async move {
        tokio::task::spawn_blocking(move || crate::auth::hash_password(&pw))
            .await
            .context("cannot hash the password")
    };
    match cmd {
        UserCommand::Add {
            login,
            role,
            password,
        } => {
            if login.trim().is_empty() {
                bail!("LOGIN: must not be empty");
            }
            let password_hash = match password.read()? {
                Some(pw) => Some(hash(pw).await?),
                None => None,
            };
            let user = store
                .user_create(domain, &login, &role, password_hash.as_deref())
                .await?;
            println!("{} {}", user.id, user.uuid);
        }
        UserCommand::Passwd { login, password } => {
            let Some(pw) = password.read()? else {
                bail!("give the new password with --password or --password-stdin");
            };
            if !store
                .user_set_password(domain, &login, &hash(pw).await?)
                .await?
            {
                bail!("no user {login}");
            }
            println!("password of {login} changed");
        }
        UserCommand::Del { login } => {
            if !store.user_delete(domain, &login).await? {
                bail!("no user {login}");
            }
            println!("deleted user {login}");
        }
        UserCommand::List { json } => {
            let users = store.user_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                println!(
                    "{:>8}  {:<36}  {:<24} {:<16} {:<10} PASSWORD",
                    "ID", "UUID", "LOGIN", "DOMAIN", "ROLE"
                );
                for u in users {
                    println!(
                        "{:>8}  {:<36}  {:<24} {:<16} {:<10} {}",
                        u.id,
                        u.uuid,
                        u.login,
                        u.domain,
                        u.role,
                        if u.password_hash.is_some() {
                            "set"
                        } else {
                            "-"
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

/// RFC 3339 or UNIX seconds.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp())
    })
}

fn print_lookup(rows: &[crate::store::sessions::SessionRow], json: bool) -> Result<()> {
    let time = |t: Option<i64>| t.and_then(crate::api::graphql::schema::rfc3339);
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.radacctid,
                    "userName": r.username,
                    "sessionId": r.acctsessionid,
                    "nasIpAddress": r.nasipaddress,
                    "framedIpAddress": r.framedipaddress,
                    "framedIpv6Address": r.framedipv6address,
                    "framedIpv6Prefix": r.framedipv6prefix,
                    "delegatedIpv6Prefix": r.delegatedipv6prefix,
                    "callingStationId": r.callingstationid,
                    "startTime": time(r.acctstarttime),
                    "stopTime": time(r.acctstoptime),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<24} {:<20} {:<16} {:<22} {:<22} ADDRESS",
            "USER", "SESSION", "NAS", "START", "STOP"
        );
        for r in rows {
            let address = r
                .framedipaddress
                .clone()
                .or_else(|| r.framedipv6address.clone())
                .or_else(|| r.framedipv6prefix.clone())
                .or_else(|| r.delegatedipv6prefix.clone())
                .unwrap_or_default();
            println!(
                "{:<24} {:<20} {:<16} {:<22} {:<22} {}",
                r.username.clone().unwrap_or_default(),
                r.acctsessionid,
                r.nasipaddress,
                time(r.acctstarttime).unwrap_or_default(),
                time(r.acctstoptime).unwrap_or_else(|| "(open)".to_owned()),
                address
            );
        }
    }
    Ok(())
}

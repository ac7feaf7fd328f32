//! The server's lifecycle: [`App::build`] connects and migrates the database and binds every
//! socket (so the bound addresses are known before anything runs); [`App::run_until_stopped`]
//! spawns the listeners, the writer, the reaper and HTTP, and on shutdown stops receiving,
//! commits and answers what was received, closes HTTP gracefully and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::graphql::feed::SessionFeed;
use crate::api::{self, AppState};
use crate::auth::{self, Role};
use crate::config::{parse_net, Config};
use crate::events::{EventBus, LiveConnections};
use crate::metrics::Metrics;
use crate::radius::clients::{Client, ClientSet, Clients};
use crate::radius::dedup::DedupCache;
use crate::radius::listener::Listener;
use crate::store::{archiver, reaper, writer, Store};

/// Kernel receive buffer asked for each RADIUS socket, to absorb bursts (a NAS reboot storm).
const UDP_RECV_BUFFER: usize = 8 * 1024 * 1024;
/// How often the `nas` table is re-read (and at most how often an unknown client triggers it).
const NAS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
const NAS_REFRESH_MIN_GAP: Duration = Duration::from_secs(1);
/// How long HTTP connections get to finish at shutdown.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A built, not yet running, radacctd node.
pub struct App {
    config: Arc<Config>,
    store: Store,
    clients: Clients,
    metrics: Arc<Metrics>,
    /// Bound RADIUS sockets, one per listen address that could be bound.
    radius: Vec<Arc<UdpSocket>>,
    http: TcpListener,
    shutdown: CancellationToken,
}

impl App {
    /// Connects and migrates the database, loads the clients, binds every socket.
    pub async fn build(config: Config) -> Result<Self> {
        let store = Store::connect(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "database_url: cannot connect to {}",
                    crate::config::redact_url(&config.database_url)
                )
            })?;
        store
            .migrate()
            .await
            .context("database_url: cannot apply migrations")?;

        bootstrap_admin(&config, &store).await?;
        // Connections this node held before a restart are gone.
        store.ws_forget_node(&config.node).await?;
        store
            .node_heartbeat(&config.node, &config.site, chrono::Utc::now().timestamp())
            .await?;
        let clients = Clients::new(load_clients(&config, &store).await?);

        let mut radius = Vec::new();
        for addr in &config.radius.listen {
            match bind_udp(*addr) {
                Ok(socket) => {
                    tracing::info!(addr = %socket.local_addr()?, "listening for RADIUS on {}", socket.local_addr()?);
                    radius.push(Arc::new(socket));
                }
                Err(e) if config.radius.optional_listen.contains(addr) => {
                    tracing::info!(%addr, error = %e, "not listening on optional address");
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("radius.listen: cannot bind {addr}"))
                }
            }
        }
        let http = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("http.listen: cannot bind {}", config.http.listen))?;
        tracing::info!(addr = %http.local_addr()?, "listening for HTTP on {}", http.local_addr()?);

        Ok(Self {
            config: Arc::new(config),
            store,
            clients,
            metrics: Arc::new(Metrics::new()),
            radius,
            http,
            shutdown: CancellationToken::new(),
        })
    }

    /// The bound RADIUS addresses (port 0 in the config becomes the real port here).
    pub fn radius_addrs(&self) -> Vec<SocketAddr> {
        self.radius
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Cancel this to stop the node.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Runs until the shutdown token is cancelled, then drains and returns.
    pub async fn run_until_stopped(self) -> Result<()> {
        let App {
            config,
            store,
            clients,
            metrics,
            radius,
            http,
            shutdown,
        } = self;

        let events = EventBus::new();
        let live = Arc::new(LiveConnections::new());
        let (jobs, queue) = writer::queue();
        let writer = tokio::spawn(writer::run(
            store.clone(),
            config.domain.clone(),
            queue,
            metrics.clone(),
            events.clone(),
            shutdown.clone(),
        ));

        let dedup = Arc::new(DedupCache::new());
        let unknown_client = Arc::new(Notify::new());
        let mut listeners = JoinSet::new();
        for socket in radius {
            let listener = Listener {
                socket,
                clients: clients.clone(),
                dedup: dedup.clone(),
                jobs: jobs.clone(),
                metrics: metrics.clone(),
                unknown_client: unknown_client.clone(),
            };
            listeners.spawn(listener.run(shutdown.clone()));
        }
        // Only the listeners hold the queue now: when they stop, the writer drains and stops.
        drop(jobs);

        let mut background = JoinSet::new();
        background.spawn(reaper::run(
            store.clone(),
            config.accounting.stale_after,
            metrics.clone(),
            events.clone(),
            shutdown.clone(),
        ));
        background.spawn(
            store
                .clone()
                .housekeeping(config.sessions.retention, shutdown.clone()),
        );
        if let Store::Postgres(pg) = &store {
            background.spawn(pg.clone().relay_events(
                events.clone(),
                live.clone(),
                shutdown.clone(),
            ));
        }
        background.spawn(archiver::run(
            store.clone(),
            config.accounting.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let feed = SessionFeed::new();
        background.spawn(
            feed.clone()
                .run(events.clone(), store.clone(), shutdown.clone()),
        );
        background.spawn(heartbeat(config.clone(), store.clone(), shutdown.clone()));
        background.spawn(refresh_clients(
            config.clone(),
            store.clone(),
            clients.clone(),
            unknown_client,
            shutdown.clone(),
        ));

        let state = AppState {
            store: store.clone(),
            metrics: metrics.clone(),
            config: config.clone(),
            clients: clients.clone(),
            feed,
            live: live.clone(),
        };
        let http_shutdown = shutdown.clone();
        let limits = api::serve::HttpLimits {
            header_timeout: config.http.header_timeout,
            body_timeout: config.http.body_timeout,
        };
        let http_server = tokio::spawn(api::serve::serve(
            http,
            api::router(state),
            limits,
            http_shutdown,
        ));

        tracing::info!(node = %config.node, site = %config.site, backend = store.backend(), "ready");
        shutdown.cancelled().await;
        tracing::info!("shutting down: no new packets; committing and answering what was received");

        while listeners.join_next().await.is_some() {}
        if let Err(e) = writer.await {
            tracing::error!(error = %e, "writer task failed");
        }
        while background.join_next().await.is_some() {}
        match tokio::time::timeout(HTTP_SHUTDOWN_GRACE, http_server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP task failed"),
            Err(_) => tracing::warn!("HTTP connections still open after the grace period; closing"),
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Creates user `admin` with `admin_password` if it does not exist; when no admin exists at all
/// and no password is configured, creates one with a random password printed once.
async fn bootstrap_admin(config: &Config, store: &Store) -> Result<()> {
    let existing = store.user_by_login(&config.domain, "admin").await?;
    let password = match (&config.admin_password, existing) {
        (Some(pw), None) => pw.expose().to_owned(),
        (None, None) if !store.admin_exists().await? => {
            use argon2::password_hash::rand_core::{OsRng, RngCore};
            let mut bytes = [0u8; 12];
            OsRng.fill_bytes(&mut bytes);
            let pw = hex::encode(bytes);
            // Printed once, on the terminal, never through the log.
            eprintln!(
                "radacctd: created user admin with password {pw}\n\
                 radacctd: change it with `radacctd user passwd admin`; it will not be shown again"
            );
            pw
        }
        _ => return Ok(()),
    };
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password)).await?;
    match store
        .user_create(&config.domain, "admin", Role::Admin.as_str(), Some(&hash))
        .await
    {
        Ok(_) => {
            tracing::info!("created the admin user");
            Ok(())
        }
        // Another node created it at the same moment.
        Err(crate::store::StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e).context("cannot create the admin user"),
    }
}

/// Binds a UDP socket; an IPv6 wildcard is IPv6-only so it can sit beside `0.0.0.0`.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // The kernel may grant less; that is fine.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The config's clients plus the `nas` table's rows.
async fn load_clients(config: &Config, store: &Store) -> Result<ClientSet> {
    let rows = store
        .nas_list()
        .await
        .context("cannot read the nas table")?;
    let mut clients: Vec<Client> = config.radius.clients.iter().map(Client::from).collect();
    for row in rows {
        match parse_net(&row.nasname) {
            Ok(network) => clients.push(Client {
                network,
                secret: crate::config::Secret::new(row.secret),
                name: row.shortname,
                coa_port: row.coa_port,
            }),
            Err(e) => tracing::warn!(nasname = %row.nasname, "nas row ignored: {e}"),
        }
    }
    Ok(ClientSet::new(clients))
}

/// How often a node records that it is alive, and after how long without that it counts as
/// dead (its WebSocket connections are reported with `is_pid_alive` false).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
pub const NODE_DEAD_AFTER: Duration = Duration::from_secs(20);

async fn heartbeat(config: Arc<Config>, store: Store, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
        }
        if let Err(e) = store
            .node_heartbeat(&config.node, &config.site, chrono::Utc::now().timestamp())
            .await
        {
            tracing::warn!(error = %e, "cannot record this node's heartbeat");
        }
    }
}

/// Re-reads the `nas` table periodically, and soon after an unknown client sends.
async fn refresh_clients(
    config: Arc<Config>,
    store: Store,
    clients: Clients,
    unknown_client: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(NAS_REFRESH_INTERVAL) => {}
            _ = unknown_client.notified() => {}
        }
        match load_clients(&config, &store).await {
            Ok(set) => clients.replace(set),
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh RADIUS clients; keeping the current ones")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(NAS_REFRESH_MIN_GAP) => {}
        }
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}

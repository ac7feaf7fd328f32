//! radacctd: RADIUS accounting (RFC 2866) into a FreeRADIUS-compatible `radacct` table on
//! SQLite or PostgreSQL, with HTTP APIs served from the same database.
//!
//! Module map:
//! - [`config`]: defaults < TOML < environment < flags, validated into one `Config`.
//! - [`app`]: builds a node (database, sockets) and runs it until shutdown.
//! - [`radius`]: packet decoding and verification, packet → event, clients, duplicate cache,
//!   the UDP receive loop.
//! - [`store`]: all SQL (SQLite and PostgreSQL), the batching writer, the stale-session reaper.
//! - [`api`]: the HTTP endpoints.
//! - [`auth`]: passwords, tokens, the login limit, and the permission checks every API uses.
//! - [`metrics`]: Prometheus metrics and the one place drops are counted.
//! - [`cli`], [`telemetry`]: the command line and logging.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod events;
pub mod metrics;
pub mod radius;
pub mod store;
pub mod telemetry;

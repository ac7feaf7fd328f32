//! radacctd's integration tests: one binary, one harness. Every storage test runs on SQLite and
//! on PostgreSQL (which must be reachable: the tests fail, never skip, without it).

pub mod harness;

mod browser;
mod cli;
mod console;
mod cvpysdk;
mod freeradius;
mod graphql;
mod history;
mod ingest;
mod outage;
mod radclient;
mod web_sessions;

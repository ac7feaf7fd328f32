//! radacctd's integration tests: one binary, one harness. Every storage test runs on SQLite and
//! on PostgreSQL (which must be reachable: the tests fail, never skip, without it).

pub mod fuzz_cases;
pub mod harness;

mod bad_input;
mod browser;
mod cli;
mod console;
mod crash;
mod cvpysdk;
mod freeradius;
mod fuzz;
mod graphql;
mod history;
mod ingest;
mod outage;
mod radclient;
mod slow_http;
mod web_sessions;

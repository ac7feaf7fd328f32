//! Logging through `tracing`: human-readable by default, JSON with `RADACCTD_LOG_FORMAT=json`,
//! level from `RUST_LOG` (default `info`). Logs go to stderr.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("RADACCTD_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) fails harmlessly.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// An error and its causes on one line: `outer: inner: root`. A cause whose text the line
/// already holds (many errors print their source in their own message) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

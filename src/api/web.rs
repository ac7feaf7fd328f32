//! The operators' web console: static pages embedded in the binary and served at `/`. They hold
//! no data path of their own: every call they make goes to the existing APIs (Login/Logout of
//! the console API, GraphQL over HTTP and WebSocket, the web-sessions REST API) with the token
//! the browser keeps in `sessionStorage`. So, like the GraphiQL page (SPEC §5), the pages are
//! served without a token.
//!
//! Assets live under `/assets/<version>/<name>`, where the version is a hash of every embedded
//! asset: a new build gets new URLs, so assets are cached for a year, while the one HTML page
//! is `no-cache` (revalidated through its ETag). Every answer carries a strict
//! Content-Security-Policy (nothing inline, nothing from elsewhere, no framing).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::AppState;

/// One embedded file of the console.
struct Asset {
    /// The path under `/assets/<version>/`.
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../assets/web/", $name)),
        }
    };
}

/// Every file the pages load. Anything else under `/assets/` is 404.
const ASSETS: &[Asset] = &[
    asset!("app.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("live.js", JS),
    asset!("format.js", JS),
    asset!("overview.js", JS),
    asset!("sessions.js", JS),
    asset!("user.js", JS),
    asset!("web-sessions.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/uPlot.esm.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
    asset!("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
];

/// The page; `{{ASSETS}}` and `{{WEBSERVICE}}` are filled in once, when the router is built.
const INDEX_HTML: &str = include_str!("../../assets/web/index.html");

/// Assets never change under one URL (the version is their hash).
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// Nothing inline, nothing from another origin (`'self'` covers the same-origin WebSocket),
/// no plugins, no framing, forms post nowhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The rendered page and the asset version, shared by the handlers.
struct Console {
    version: String,
    html: String,
    etag: HeaderValue,
}

/// A hash of every asset (name and content): it names the directory the page loads them from.
fn assets_version() -> String {
    let mut hash = Sha256::new();
    for a in ASSETS {
        hash.update(a.name.as_bytes());
        hash.update([0]);
        hash.update((a.bytes.len() as u64).to_be_bytes());
        hash.update(a.bytes);
    }
    hex::encode(&hash.finalize()[..8])
}

/// Escapes text for an HTML attribute value.
fn attr_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Console {
    fn new(webservice: &str) -> Self {
        let version = assets_version();
        let html = INDEX_HTML
            .replace("{{ASSETS}}", &format!("/assets/{version}"))
            .replace("{{WEBSERVICE}}", &attr_escape(webservice));
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(html.as_bytes())[..8]));
        Self {
            version,
            etag: HeaderValue::from_str(&etag).expect("a quoted hex string is a header value"),
            html,
        }
    }
}

pub fn router(webservice: &str) -> Router<AppState> {
    let console = Arc::new(Console::new(webservice));
    let page = console.clone();
    Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| async move { index(&page, &headers) }),
        )
        .route(
            "/assets/{version}/{*name}",
            get(
                move |Path((version, name)): Path<(String, String)>| async move {
                    asset(&console, &version, &name)
                },
            ),
        )
}

/// The headers every console answer carries.
fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn index(console: &Console, headers: &HeaderMap) -> Response {
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, console.etag.clone()),
    ];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == console.etag
        });
    if fresh {
        return secured((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    secured(
        (
            cache,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            console.html.clone(),
        )
            .into_response(),
    )
}

fn asset(console: &Console, version: &str, name: &str) -> Response {
    let found = ASSETS.iter().find(|a| a.name == name);
    match found {
        Some(a) if version == console.version => secured(
            (
                [
                    (header::CONTENT_TYPE, a.content_type),
                    (header::CACHE_CONTROL, ASSET_CACHE),
                ],
                a.bytes,
            )
                .into_response(),
        ),
        _ => secured(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "not found",
            )
                .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_versioned_assets_and_the_escaped_webservice() {
        let c = Console::new("/api\"><x");
        assert!(c.html.contains(&format!("/assets/{}/app.js", c.version)));
        assert!(c.html.contains("content=\"/api&quot;&gt;&lt;x\""));
        assert!(!c.html.contains("{{"));
    }

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let c = Console::new("/webconsole/api");
        let prefix = format!("/assets/{}/", c.version);
        let mut rest = c.html.as_str();
        let mut seen = 0;
        while let Some(i) = rest.find(&prefix) {
            rest = &rest[i + prefix.len()..];
            let end = rest.find('"').expect("an asset URL ends with a quote");
            let name = &rest[..end];
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{name} is not embedded"
            );
            seen += 1;
        }
        assert!(seen >= 3);
    }

    #[test]
    fn every_module_a_script_imports_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.bytes).expect("scripts are UTF-8");
            let dir = a.name.rsplit_once('/').map_or("", |(d, _)| d);
            for quote in ["'./", "\"./"] {
                for piece in text.split(quote).skip(1) {
                    let Some(end) = piece.find(&quote[..1]) else {
                        continue;
                    };
                    let target = &piece[..end];
                    if !target.ends_with(".js") {
                        continue;
                    }
                    let path = if dir.is_empty() {
                        target.to_owned()
                    } else {
                        format!("{dir}/{target}")
                    };
                    assert!(
                        ASSETS.iter().any(|x| x.name == path),
                        "{} imports {path}, which is not embedded",
                        a.name
                    );
                }
            }
        }
    }
}

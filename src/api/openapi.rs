//! The OpenAPI document of the REST APIs (`radacctd openapi`), generated from the handlers'
//! annotations. It is committed as `fixtures/openapi.json`; a test fails when the code drifts.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "radacctd", description = "RADIUS accounting with FreeRADIUS-compatible storage: console and web-session APIs. Paths use the default webservice path /webconsole/api."),
    modifiers(&Tokens),
)]
struct ApiDoc;

/// Tokens travel as `Authtoken: <token>` or `Authorization: Bearer <token>`.
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "Authtoken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Authtoken"))),
        );
        components.add_security_scheme(
            "Bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON (with a trailing newline, as committed).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::console::ConsoleApi::openapi());
    doc.merge(super::web_sessions::WebSessionsApi::openapi());
    // The version of the crate, not of utoipa's default.
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut text = doc
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let committed = include_str!("../../fixtures/openapi.json");
        assert!(
            committed == super::document(),
            "fixtures/openapi.json is out of date: run `cargo run -- openapi > fixtures/openapi.json`"
        );
    }
}

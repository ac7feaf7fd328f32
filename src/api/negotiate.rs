//! `Accept` → XML or JSON, for the console APIs (Commvault clients expect XML unless they ask
//! for JSON).

use axum::http::{header, HeaderMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

/// The format of a console response: XML when Accept is absent, `*/*` or XML; JSON for
/// `application/json`; None (406) when Accept allows neither. Quality values are honoured.
pub fn response_format(headers: &HeaderMap) -> Option<Format> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Format::Xml);
    };
    if accept.trim().is_empty() {
        return Some(Format::Xml);
    }
    let mut ranges: Vec<(String, f32)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let media = pieces.next()?.trim().to_ascii_lowercase();
            let q = pieces
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                })
                .next()
                .unwrap_or(1.0);
            (!media.is_empty()).then_some((media, q))
        })
        .collect();
    // Stable: among equal qualities the client's order wins.
    ranges.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    ranges
        .into_iter()
        .filter(|(_, q)| *q > 0.0)
        .find_map(|(media, _)| match media.as_str() {
            "application/json" => Some(Format::Json),
            "application/xml" | "text/xml" | "application/*" | "text/*" | "*/*" => {
                Some(Format::Xml)
            }
            _ => None,
        })
}

/// The format of an error from Login/Logout (JSON unless the client asks for XML).
pub fn error_format(headers: &HeaderMap) -> Format {
    match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        Some(accept) if accept.contains("xml") && !accept.contains("json") => Format::Xml,
        _ => Format::Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<Format> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        response_format(&h)
    }

    #[test]
    fn xml_is_the_default_and_json_is_on_request() {
        assert_eq!(response_format(&HeaderMap::new()), Some(Format::Xml));
        assert_eq!(accept("*/*"), Some(Format::Xml));
        assert_eq!(accept("application/xml"), Some(Format::Xml));
        assert_eq!(accept("application/json"), Some(Format::Json));
        assert_eq!(
            accept("application/xml;q=0.5, application/json"),
            Some(Format::Json)
        );
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }
}

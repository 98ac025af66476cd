//! The media type of OperationOutcome bodies: `application/fhir+json` by
//! default (SRV-130), `application/json` when the request's `Accept` asks for
//! it over `application/fhir+json` (FHIR allows it as a synonym), on every
//! route, injected faults included.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Marks a response whose body is an OperationOutcome, so [`negotiate`] may
/// relabel it; other bodies (manifests, files, fault-set headers) are left alone.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeBody;

/// The quality `Accept` gives `media` exactly (no wildcards), 0 when not named.
fn quality(headers: &HeaderMap, media: &str) -> f32 {
    let mut best = 0.0f32;
    for value in headers.get_all(header::ACCEPT) {
        for range in value.to_str().unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            if !parts.next().unwrap_or_default().trim().eq_ignore_ascii_case(media) {
                continue;
            }
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            best = best.max(q);
        }
    }
    best
}

/// Whether `Accept` names `application/json` and prefers it to `application/fhir+json`.
pub fn prefers_plain_json(headers: &HeaderMap) -> bool {
    let json = quality(headers, "application/json");
    json > 0.0 && json > quality(headers, bulkmock_wire::FHIR_JSON)
}

/// The middleware: answers OperationOutcomes as `application/json` when asked.
pub async fn negotiate(request: Request, next: Next) -> Response {
    let plain = prefers_plain_json(request.headers());
    let mut response = next.run(request).await;
    if plain && response.extensions().get::<OutcomeBody>().is_some() {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn application_json_wins_only_when_preferred() {
        assert!(prefers_plain_json(&accept("application/json")));
        assert!(prefers_plain_json(&accept("application/json, application/fhir+json;q=0.5")));
        assert!(!prefers_plain_json(&HeaderMap::new()));
        assert!(!prefers_plain_json(&accept("*/*")));
        assert!(!prefers_plain_json(&accept("application/fhir+json, application/json")));
        assert!(!prefers_plain_json(&accept("application/json;q=0")));
    }
}

//! Reading the transcript: which route an exchange is, its times, its headers.

use bulkmock_server::Exchange;
use bulkmock_server::capture::BodyEnd;

/// What a request was, as the server classified it (`None`: anything else).
pub use bulkmock_server::Target as Route;

/// The route of `e`, as recorded by the server.
pub fn route(e: &Exchange) -> Option<Route> {
    e.target
}

/// When the response headers left, Unix milliseconds.
pub fn responded_unix_ms(e: &Exchange) -> u64 {
    e.unix_ms + e.duration_ms
}

/// A response header as recorded.
pub fn response_header<'a>(e: &'a Exchange, name: &str) -> Option<&'a str> {
    e.response.get(name).map(String::as_str)
}

/// Whether a file response went out whole, from what happened on the wire: a
/// 200 or 206 whose body was sent to its end (`body_end: complete`) and, when it
/// announced a `Content-Length`, as long as announced (a cut with the full
/// length announced may still end its stream). A chunked body (no
/// `Content-Length`, as the SMART reference server sends files) is whole when
/// it ended normally. A transcript written before `body_end` existed can tell
/// only by `Content-Length`. Whether the bytes were right is `output.matches_export`'s part.
pub fn whole_body(e: &Exchange) -> bool {
    if !matches!(e.status, 200 | 206) {
        return false;
    }
    let announced = response_header(e, "content-length").and_then(|v| v.parse::<u64>().ok());
    match e.body_end {
        Some(end) => end == BodyEnd::Complete && announced.is_none_or(|n| n == e.bytes),
        None => announced.is_some_and(|n| n == e.bytes),
    }
}

/// A request header as recorded.
pub fn request_header<'a>(e: &'a Exchange, name: &str) -> Option<&'a str> {
    e.headers.get(name).map(String::as_str)
}

/// Whether the request carried a bearer token (or any `Authorization`).
pub fn has_token(e: &Exchange) -> bool {
    e.headers.contains_key("authorization")
}

/// The token fingerprint of the request's `Authorization`, as recorded (`Bearer <abcd1234>`).
pub fn token_fingerprint(e: &Exchange) -> Option<&str> {
    let v = request_header(e, "authorization")?;
    let start = v.find('<')? + 1;
    let end = v.find('>')?;
    v.get(start..end)
}

/// Whether a file request used a capability URL (`requiresAccessToken: false`).
pub fn is_capability(e: &Exchange) -> bool {
    e.query.as_deref().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("cap=")))
}

/// The earliest time the next request to the same resource was allowed, Unix
/// milliseconds, from the response's `Retry-After`, with the tolerance a
/// correct client needs (0.1 s for delta-seconds, 1 s more for HTTP-dates,
/// whose resolution is one second).
pub fn retry_allowed_at(e: &Exchange) -> Option<(u64, &str)> {
    let value = response_header(e, "retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(((responded_unix_ms(e) + secs * 1000).saturating_sub(100), value));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let ms = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some((ms.saturating_sub(1100), value))
}

/// Whether the response is a transient failure a client must retry (CLI-065, CLI-066).
pub fn is_transient(e: &Exchange) -> bool {
    matches!(e.status, 429 | 502 | 503 | 504)
}

/// The file name at the end of a file URL path.
pub fn file_name(e: &Exchange) -> &str {
    e.path.rsplit('/').next().unwrap_or_default()
}

/// The host (and port) of a URL.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(length: Option<u64>, bytes: u64, end: Option<&str>) -> Exchange {
        let mut e = serde_json::json!({
            "seq": 1, "at_ms": 1, "method": "GET", "path": "/fhir/files/Patient.ndjson",
            "headers": {}, "status": 200, "bytes": bytes, "duration_ms": 1, "target": "file",
        });
        if let Some(n) = length {
            e["response"] = serde_json::json!({"content-length": n.to_string()});
        }
        if let Some(end) = end {
            e["body_end"] = end.into();
        }
        serde_json::from_value(e).unwrap()
    }

    #[test]
    fn a_body_is_whole_when_it_went_out_to_its_end() {
        assert!(whole_body(&file(None, 100, Some("complete"))), "chunked, ended normally");
        assert!(!whole_body(&file(None, 100, Some("failed"))), "chunked, broke off");
        assert!(!whole_body(&file(None, 100, Some("dropped"))), "chunked, connection gone");
        assert!(whole_body(&file(Some(100), 100, Some("complete"))));
        assert!(!whole_body(&file(Some(100), 60, Some("complete"))), "fewer bytes than announced");
        // A transcript written before `body_end`: only Content-Length tells.
        assert!(whole_body(&file(Some(100), 100, None)));
        assert!(!whole_body(&file(None, 100, None)));
    }
}

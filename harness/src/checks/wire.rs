//! Reading the transcript: which route an exchange is, its times, its headers.

use bulkmock_server::Exchange;

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

//! Who may use the dashboard: the admin API's rules (loopback callers only
//! unless `--admin-any-host`; the admin secret when set), and, for loopback
//! callers, a `Host` that is `localhost`, a loopback address or the server's
//! own host (a rebound DNS name of another site is refused). A browser cannot put
//! the secret in an `EventSource` header, so the page is opened once with
//! `?secret=...`, which sets an HttpOnly, SameSite=Strict cookie the guard
//! accepts as well. Requests that change something must carry
//! `X-Bulkmock-Dashboard: 1`, a header another site's page cannot send without
//! a CORS preflight that this server never grants.

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::transport::Peer;

/// The cookie that carries the admin secret for the page's own requests.
pub const COOKIE: &str = "bulkmock_dashboard";

/// The header every changing request needs.
pub const CHANGE_HEADER: &str = "x-bulkmock-dashboard";

/// The middleware.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut headers = request.headers().clone();
    let from_query = secret_in_query(request.uri().query());
    if state.config.admin.token.is_some()
        && let Some(given) = from_query.clone().or_else(|| cookie_secret(&headers))
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {given}"))
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Some(denied) = crate::admin::refused(&state, peer, &headers) {
        return denied;
    }
    if !state.config.admin.any_host && !loopback_host(&headers, state.origin()) {
        // A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding) names its own host.
        let message = "the dashboard answers requests for localhost, a loopback address or the server's own host only";
        return (StatusCode::FORBIDDEN, axum::Json(json!({"error": message}))).into_response();
    }
    let changing = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changing && request.headers().get(CHANGE_HEADER).is_none() {
        let message = format!("dashboard requests that change something need the header {CHANGE_HEADER}: 1");
        return (StatusCode::FORBIDDEN, axum::Json(json!({"error": message}))).into_response();
    }
    let mut response = next.run(request).await;
    if let (Some(given), Some(_)) = (from_query, state.config.admin.token.as_deref())
        && let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={given}; Path=/_dashboard; HttpOnly; SameSite=Strict"))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Whether the request's `Host` is `localhost`, a loopback address, or the host of `origin`.
fn loopback_host(headers: &HeaderMap, origin: &str) -> bool {
    let host_of = |authority: &str| -> String {
        let authority = authority.trim();
        match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string(),
        }
    };
    let Some(given) = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(host_of) else {
        return false;
    };
    let own = host_of(origin.split_once("://").map_or(origin, |(_, rest)| rest).split('/').next().unwrap_or_default());
    given.eq_ignore_ascii_case("localhost")
        || given.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || given.eq_ignore_ascii_case(&own)
}

/// `secret=...` in a query string.
fn secret_in_query(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "secret").map(|(_, v)| v.into_owned())
}

/// The secret in the dashboard cookie.
fn cookie_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_own_host_names_are_served() {
        let with = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            loopback_host(&headers, "http://mock.example:8080")
        };
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "mock.example:8080"] {
            assert!(with(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "10.0.0.1:8080", "127.0.0.1.evil.example"] {
            assert!(!with(bad), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new(), "http://127.0.0.1:1"), "no Host header");
    }

    #[test]
    fn the_secret_comes_from_the_query_or_the_cookie() {
        assert_eq!(secret_in_query(Some("a=1&secret=s%203")).as_deref(), Some("s 3"));
        assert_eq!(secret_in_query(Some("a=1")), None);
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "x=1; bulkmock_dashboard=abc; y=2".parse().unwrap());
        assert_eq!(cookie_secret(&headers).as_deref(), Some("abc"));
        headers.insert(header::COOKIE, "bulkmock_dashboardx=abc".parse().unwrap());
        assert_eq!(cookie_secret(&headers), None);
    }
}

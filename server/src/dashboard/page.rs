//! `GET /_dashboard`: the page, assembled once from its assets (`page.html`,
//! `page.css`, `page.js`, included at compile time) and served with a strict
//! Content-Security-Policy: nothing from another origin, the script and the
//! style allowed by their hashes, connections to this origin only.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;

const HTML: &str = include_str!("page.html");
const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// The page and its CSP header value.
pub struct Page {
    /// The HTML.
    pub html: String,
    /// The `Content-Security-Policy`.
    pub csp: String,
}

fn sha256(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The assembled page.
pub static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let html =
        HTML.replace("{{MAX_ROWS}}", &super::MAX_ROWS.to_string()).replace("{{STYLE}}", CSS).replace("{{SCRIPT}}", JS);
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
         img-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        sha256(JS),
        sha256(CSS)
    );
    Page { html, csp }
});

/// The handler.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE.csp.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE.html.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        let html = &PAGE.html;
        assert_eq!(html.matches("<script").count(), 1, "one inline script");
        assert_eq!(html.matches("<style").count(), 1, "one inline style");
        for fetch in [" src=", " href=\"http", "<link", "url(", "@import", "<img", "<iframe", " style=\""] {
            assert!(!html.contains(fetch), "the page must fetch nothing and use no style attribute: {fetch}");
        }
        assert!(html.contains(&format!("data-max-rows=\"{}\"", super::super::MAX_ROWS)));
        assert!(!html.contains("{{"), "every placeholder filled");
    }
}

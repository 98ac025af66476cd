//! OAuth 2.0 error responses of the token and registration endpoints (RFC 6749 5.2, AUTH-040..043).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The RFC 6749 error codes this server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    /// Malformed request: missing or repeated parameter, wrong content type.
    InvalidRequest,
    /// Client authentication failed (any assertion or key problem).
    InvalidClient,
    /// The grant is invalid.
    InvalidGrant,
    /// The grant type is not `client_credentials`.
    UnsupportedGrantType,
    /// No grantable scope.
    InvalidScope,
    /// The server cannot answer now.
    TemporarilyUnavailable,
}

impl OAuthCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::InvalidClient => "invalid_client",
            OAuthCode::InvalidGrant => "invalid_grant",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthCode::InvalidScope => "invalid_scope",
            OAuthCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The status: 401 for client authentication failures, 503 when unavailable, else 400.
    pub fn status(self) -> StatusCode {
        match self {
            OAuthCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error with a description a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The code.
    pub code: OAuthCode,
    /// What was wrong.
    pub description: String,
}

impl OAuthError {
    /// An error with `code`.
    pub fn new(code: OAuthCode, description: impl Into<String>) -> Self {
        OAuthError { code, description: description.into() }
    }
    /// `invalid_request`.
    pub fn request(d: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidRequest, d)
    }
    /// `invalid_client`.
    pub fn client(d: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidClient, d)
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code.as_str(), "error_description": self.description});
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

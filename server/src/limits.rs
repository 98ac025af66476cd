//! Limits with clear answers: request body sizes per endpoint (413 naming the
//! limit, in the shape of the endpoint's errors), running jobs per client
//! (429 with `Retry-After`) and connections (503 with `Retry-After`, see
//! `conn.rs`); the timeouts for slow clients are applied by `conn.rs` and
//! `transport.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bulkmock_wire::IssueType;
use futures_util::StreamExt;
use serde_json::json;

use crate::app::AppState;
use crate::auth::error::OAuthError;
use crate::error::FhirError;

/// The limits of one server; every field has a default that no well-behaved client reaches.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body of the token endpoint, in bytes.
    pub token_body_bytes: usize,
    /// Largest POST kick-off (`Parameters`) body, in bytes.
    pub kickoff_body_bytes: usize,
    /// Largest registration body (`POST /auth/register`), in bytes.
    pub registration_body_bytes: usize,
    /// Largest admin API request body, in bytes.
    pub admin_body_bytes: usize,
    /// Jobs one client may have running (kicked off, not yet complete) at once;
    /// 0 means no limit. On an open server every caller counts as one client.
    pub max_jobs_per_client: usize,
    /// How long a client may take to send a request's head (line and headers)
    /// before its connection is closed: a client sending a byte a second is cut off.
    pub header_read_timeout: Duration,
    /// How long a response write may make no progress (the client reads
    /// nothing) before the connection is reset; zero means never.
    pub stalled_write_timeout: Duration,
    /// Connections served at once; 0 means no limit. Beyond it a connection
    /// gets one `503 Service Unavailable` with `Retry-After` and is closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            token_body_bytes: 64 * 1024,
            kickoff_body_bytes: 1024 * 1024,
            registration_body_bytes: 1024 * 1024,
            admin_body_bytes: 1024 * 1024,
            max_jobs_per_client: 10,
            header_read_timeout: Duration::from_secs(30),
            stalled_write_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (announced by `Content-Length` or seen while reading).
    TooLarge,
    /// The connection failed while reading.
    Broken(String),
}

/// Reads a request body of at most `limit` bytes; refuses at once when
/// `Content-Length` announces more, and stops reading as soon as it exceeds it.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// "`what` is limited to N bytes (K KiB)": the message of every 413.
pub fn too_large_message(what: &str, limit: usize) -> String {
    format!("the request body is too large: {what} is limited to {limit} bytes ({} KiB)", limit.div_ceil(1024))
}

/// 413 in the token endpoint's shape: an OAuth `invalid_request` error.
pub fn token_too_large(limit: usize) -> Response {
    let mut response = OAuthError::request(too_large_message("a token request", limit)).into_response();
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response
}

/// The error shapes of the routes a body limit guards.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Fhir,
    Registration,
    Admin,
}

async fn limited(state: &AppState, shape: Shape, request: Request, next: Next) -> Response {
    let limits = &state.config.limits;
    let (limit, what) = match shape {
        Shape::Fhir => (limits.kickoff_body_bytes, "a kick-off"),
        Shape::Registration => (limits.registration_body_bytes, "a registration"),
        Shape::Admin => (limits.admin_body_bytes, "an admin request"),
    };
    let (parts, body) = request.into_parts();
    match read_limited(&parts.headers, body, limit).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(e) => {
            let (status, message) = match e {
                BodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, too_large_message(what, limit)),
                BodyError::Broken(e) => (StatusCode::BAD_REQUEST, format!("the request body could not be read: {e}")),
            };
            match shape {
                Shape::Fhir => FhirError::new(status, IssueType::TooLong, message).into_response(),
                Shape::Registration => {
                    let mut response = OAuthError::request(message).into_response();
                    *response.status_mut() = status;
                    response
                }
                Shape::Admin => (status, axum::Json(json!({"error": message}))).into_response(),
            }
        }
    }
}

/// Middleware of the kick-off routes: bodies up to `kickoff_body_bytes`, else 413 with an OperationOutcome.
pub async fn kickoff_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    limited(&state, Shape::Fhir, request, next).await
}

/// Middleware of `POST /auth/register`: bodies up to `registration_body_bytes`, else 413 with an OAuth error.
pub async fn registration_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    limited(&state, Shape::Registration, request, next).await
}

/// Middleware of the admin API: bodies up to `admin_body_bytes`, else 413 with `{"error": ...}`.
pub async fn admin_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    limited(&state, Shape::Admin, request, next).await
}

/// The refusal of a kick-off: 429 with an OperationOutcome and `Retry-After` (when the soonest of the
/// client's running jobs should be done, at least 1 s) once `running` jobs reach the limit.
pub fn job_slots(limits: &Limits, running: usize, soonest_done: Duration) -> Option<Response> {
    if limits.max_jobs_per_client == 0 || running < limits.max_jobs_per_client {
        return None;
    }
    let mut response = FhirError::new(
        StatusCode::TOO_MANY_REQUESTS,
        IssueType::Throttled,
        format!(
            "this client already has {running} export jobs running and the limit is {} per client; \
             wait for one to complete (or DELETE one), then kick off again",
            limits.max_jobs_per_client
        ),
    )
    .into_response();
    let secs = soonest_done.as_secs_f64().ceil().max(1.0) as u64;
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    Some(response)
}

/// The answer to a connection beyond `max_connections`: 503 with an
/// OperationOutcome naming the limit, `Retry-After: 1` and `Connection: close`.
pub fn connections_refused(max_connections: usize) -> Response {
    let mut response = FhirError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Transient,
        format!(
            "the server already serves {max_connections} connections, its limit (--max-connections); \
             this connection is closed: retry in a moment, or reuse fewer connections"
        ),
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

//! Faults that answer instead of the server or reshape its answer: injected
//! responses, header rewrites, JSON and body rewrites.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkmock_wire::{IssueType, OperationOutcome};
use serde_json::{Value, json};

use super::model::BodyKind;
use crate::app::AppState;

/// Replaces a successful JSON body by `edit`ing it (a small body: manifests, token responses).
pub(super) async fn rewrite_json(response: Response, edit: impl FnOnce(&mut Value)) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    rewrite_body(response, |bytes| match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            edit(&mut v);
            if v.get(super::rewrite::NOT_JSON).is_some() {
                return b"This is not JSON: the manifest could not be rendered.".to_vec();
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
        Err(_) => bytes,
    })
    .await
}

/// Replaces a successful body with `edit(body)`, fixing `Content-Length`.
pub(super) async fn rewrite_body(response: Response, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REWRITE).await {
        Ok(b) => b,
        Err(_) => {
            return crate::error::FhirError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::TooLong,
                "the body is too large for this fault (64 MiB at most)",
            )
            .into_response();
        }
    };
    let edited = edit(bytes.to_vec());
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(edited.len()));
    parts.headers.remove(header::ETAG);
    Response::from_parts(parts, Body::from(edited))
}

/// The first line of another file of the same kind in the same export
/// (the previous one, else the next), for duplicates across files.
pub(super) fn first_line_of_sibling(state: &AppState, path: &str) -> Option<Vec<u8>> {
    let mut segments = path.split('/').skip(3);
    let job = state.jobs.get(segments.next()?).ok()?;
    let index: usize = segments.next()?.split('.').next()?.parse().ok()?;
    let kind = job.plan.files.get(index)?.kind;
    let files = &job.plan.files;
    let sibling = (0..index).rev().chain(index + 1..files.len()).find(|&j| files[j].kind == kind)?;
    let selector = crate::export::content::Selector::new(&job.plan, job.source.as_ref());
    let mut buf = Vec::new();
    for unit in files[sibling].units.clone() {
        // Stops at the first hand-on: a large unit is never written whole.
        selector.write_unit_chunked(&files[sibling], unit, &mut buf, &mut |_| std::ops::ControlFlow::Break(())).ok()?;
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            return Some(buf);
        }
    }
    None
}

/// Largest body a fault rewrites in memory (manifests, damaged files).
pub(super) const MAX_REWRITE: usize = 64 * 1024 * 1024;

pub(super) fn respond(status: StatusCode, body: BodyKind, code: Option<&str>, message: Option<&str>) -> Response {
    let text = message.unwrap_or("injected fault");
    match body {
        BodyKind::Empty => status.into_response(),
        BodyKind::Html => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!("<html><head><title>{0}</title></head><body><h1>{0}</h1><p>{text}</p></body></html>", status),
        )
            .into_response(),
        BodyKind::Oauth => {
            let body = json!({"error": code.unwrap_or("temporarily_unavailable"), "error_description": text});
            (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
        }
        BodyKind::Outcome | BodyKind::Transient => {
            let default = if body == BodyKind::Transient { "transient" } else { "exception" };
            let issue_code: IssueType =
                serde_json::from_value(json!(code.unwrap_or(default))).unwrap_or(IssueType::Exception);
            crate::error::outcome_response(status, &OperationOutcome::error(issue_code, text))
        }
    }
}

pub(super) fn set_header(state: &AppState, response: &mut Response, name: &str, value: &str) {
    let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else { return };
    if value.is_empty() {
        response.headers_mut().remove(&name);
        return;
    }
    let original = response.headers().get(&name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let relative = original.strip_prefix(state.origin()).unwrap_or(&original).to_string();
    let other_host = if original.contains("://127.0.0.1") {
        original.replacen("://127.0.0.1", "://localhost", 1)
    } else {
        original.replacen("://localhost", "://127.0.0.1", 1)
    };
    let value = value.replace("{relative}", &relative).replace("{other_host}", &other_host);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, v);
    }
}

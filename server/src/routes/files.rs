//! Output file and attachment downloads (SRV-180..199).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkmock_wire::{FHIR_NDJSON, IssueType};

use super::status::job_for_caller;
use crate::app::AppState;
use crate::auth::guard;
use crate::error::FhirError;
use crate::export::job::Job;
use crate::export::manifest::{ERROR_FILE, file_name};
use crate::export::plan::FileKind;
use crate::stream::FileBody;

/// `GET [base]/bulkfiles/{job}/{name}`.
pub async fn download(
    State(state): State<Arc<AppState>>,
    Path((id, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query: Vec<(String, String)> =
        form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Ok(job) = state.jobs.get(&id)
        && job.url_generation() > 0
        && param("v").and_then(|v| v.parse::<u64>().ok()) != Some(job.url_generation())
    {
        return expired_url().into_response();
    }
    // A capability URL opens the file without a token, until it expires (SRV-183).
    let capability = match state.capabilities.open(raw.as_deref(), &id) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    download_inner(&state, &id, &name, &headers, capability).await.unwrap_or_else(IntoResponse::into_response)
}

/// 410 for a file URL that has expired (SRV-187).
pub fn expired_url() -> FhirError {
    FhirError::new(
        StatusCode::GONE,
        IssueType::Expired,
        "this file URL has expired; fetch the manifest again for fresh URLs (SRV-187)",
    )
}

/// Which byte range a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses a single-range `Range` header against a body of `len` bytes (RFC 9110 14.2).
/// Multiple ranges and malformed headers are ignored, which RFC 9110 allows.
fn wanted_range(header: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Wanted::Full };
    if spec.contains(',') {
        return Wanted::Full;
    }
    let Some((a, b)) = spec.split_once('-') else { return Wanted::Full };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match num(b) {
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if len == 0 => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part(len - n.min(len), len),
            None => Wanted::Full,
        },
        (false, true) => match num(a) {
            Some(s) if s >= len => Wanted::Unsatisfiable,
            Some(s) => Wanted::Part(s, len),
            None => Wanted::Full,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(s), Some(e)) if s <= e => {
                if s >= len {
                    Wanted::Unsatisfiable
                } else {
                    Wanted::Part(s, (e + 1).min(len))
                }
            }
            _ => Wanted::Full,
        },
        (true, true) => Wanted::Full,
    }
}

/// Whether `Accept-Encoding` admits gzip (SRV-186).
fn wants_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().unwrap_or_default().split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q_zero =
                parts.any(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
            (name == "gzip" || name == "x-gzip") && !q_zero
        })
    })
}

fn error_file(job: &Job) -> Response {
    ([(header::CONTENT_TYPE, FHIR_NDJSON)], crate::export::expected::error_lines(job)).into_response()
}

async fn download_inner(
    state: &Arc<AppState>,
    id: &str,
    name: &str,
    headers: &HeaderMap,
    capability: bool,
) -> Result<Response, FhirError> {
    let (job, caller) = if capability {
        let job = state.jobs.get(id).map_err(|why| super::status::gone(state, id, why))?;
        (job, guard::Caller { client_id: None, grant: None })
    } else {
        job_for_caller(state, id, headers)?
    };
    if name == ERROR_FILE && (!job.plan.notes.is_empty() || job.partial_failure()) {
        return Ok(error_file(&job));
    }
    let not_found = || FhirError::not_found(format!("export job {id} has no file {name}"));
    let index: usize = name.split('.').next().and_then(|n| n.parse().ok()).ok_or_else(not_found)?;
    let spec = job.plan.files.get(index).ok_or_else(not_found)?;
    if file_name(state.source.as_ref(), spec.kind, index) != name {
        return Err(not_found());
    }
    // SRV-182: the presenting token must cover the file's resource types.
    let types: Vec<&str> = match spec.kind {
        FileKind::Output(t) | FileKind::Deleted(t) => vec![state.source.types()[t].name.as_str()],
        FileKind::Organized => job.plan.types.iter().map(|&t| state.source.types()[t].name.as_str()).collect(),
    };
    if let Some(denied) = types.iter().find(|t| !caller.can_read(t)) {
        return Err(guard::insufficient_scope(format!(
            "the access token's scopes do not cover {denied}, the content of {name}"
        )));
    }
    if index >= job.progress().ready_files {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("file {name} of export job {id} is not ready yet; wait for the manifest that lists it"),
        ));
    }
    let gzip = wants_gzip(headers);
    let file = FileBody { job: Arc::clone(&job), source: Arc::clone(&job.source), file: index, gzip };
    let measuring = file.clone();
    let (layout, retained) = tokio::task::spawn_blocking(move || measuring.measured())
        .await
        .map_err(|e| FhirError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, e.to_string()))?
        .map_err(|e| FhirError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, e.to_string()))?;
    let len = layout.len;
    let etag = format!("\"{id}-{index}-{}\"", if gzip { "gzip" } else { "plain" });
    let if_range_ok = headers.get(header::IF_RANGE).is_none_or(|v| v.to_str().ok() == Some(etag.as_str()));
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| if_range_ok);
    let (status, start, end) = match wanted_range(range, len) {
        Wanted::Full => (StatusCode::OK, 0, len),
        Wanted::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        Wanted::Unsatisfiable => {
            let mut response = FhirError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                IssueType::Invalid,
                format!("range {} is outside the {len} bytes of {name}", range.unwrap_or_default()),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{len}")).expect("ASCII"));
            return Ok(response);
        }
    };
    let body = if start == end { Body::empty() } else { file.body(layout, retained, start, end) };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_NDJSON));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ASCII"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)).expect("ASCII"),
        );
    }
    Ok(response)
}

/// `GET [base]/attachments/{id}`: DocumentReference attachment content (SRV-029, SRV-197);
/// a capability from a `redirect` fault opens it without a token.
pub async fn attachment(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match state.capabilities.open(query.as_deref(), &format!("attachments/{id}")) {
        Err(e) => return e.into_response(),
        Ok(true) => {}
        Ok(false) => match guard::caller(&state, &headers) {
            Err(e) => return e.into_response(),
            Ok(c) if !c.can_read("DocumentReference") => {
                return guard::insufficient_scope("attachments need read access to DocumentReference").into_response();
            }
            Ok(_) => {}
        },
    }
    // Patients only grow with revisions: the current revision serves every attachment ever listed.
    match state.current_data().attachment(&id) {
        Some((media_type, bytes)) => {
            let mut response = Response::new(Body::from(bytes));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&media_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            response
        }
        None => FhirError::not_found(format!("there is no attachment {id}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(wanted_range(None, 10), Wanted::Full);
        assert_eq!(wanted_range(Some("bytes=2-"), 10), Wanted::Part(2, 10));
        assert_eq!(wanted_range(Some("bytes=2-4"), 10), Wanted::Part(2, 5));
        assert_eq!(wanted_range(Some("bytes=2-40"), 10), Wanted::Part(2, 10));
        assert_eq!(wanted_range(Some("bytes=-3"), 10), Wanted::Part(7, 10));
        assert_eq!(wanted_range(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted_range(Some("bytes=0-1,4-5"), 10), Wanted::Full);
        assert_eq!(wanted_range(Some("items=0-1"), 10), Wanted::Full);
        assert_eq!(wanted_range(Some("bytes=5-2"), 10), Wanted::Full);
    }

    #[test]
    fn gzip_negotiation_honours_q_zero() {
        let mut h = HeaderMap::new();
        assert!(!wants_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.5"));
        assert!(wants_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, identity"));
        assert!(!wants_gzip(&h));
    }
}

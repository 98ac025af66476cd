//! Status polling and DELETE (SRV-120..144).
//!
//! A job keeps the quirks it started with: `long-queue` sets a long
//! `Retry-After`, `v4-ballot-manifest` serves the v4-ballot manifest shape.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkmock_wire::{IssueType, OperationOutcome};

use crate::app::AppState;
use crate::auth::guard::{self, Caller};
use crate::error::{FhirError, outcome_response};
use crate::export::job::{Gone, Job};
use crate::export::manifest::{self, JobUrls};

/// The 404 for a job id that does not answer, saying why.
pub fn gone(state: &AppState, id: &str, why: Option<Gone>) -> FhirError {
    FhirError::not_found(match why {
        Some(Gone::Deleted) => {
            format!("export job {id} was deleted by the client; its status and files are gone (SRV-144)")
        }
        Some(Gone::Expired) => format!(
            "export job {id} expired; files stay available for {} s after completion",
            state.jobs.ttl().as_secs()
        ),
        None => format!("there is no export job {id}"),
    })
}

/// `GET` the status URL.
pub async fn poll(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    poll_page_inner(&state, &job, 1, query.as_deref(), &headers).unwrap_or_else(IntoResponse::into_response)
}

/// `GET` manifest page `n` (with `allowPartialManifests`).
pub async fn poll_page(
    State(state): State<Arc<AppState>>,
    Path((job, page)): Path<(String, usize)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    poll_page_inner(&state, &job, page, query.as_deref(), &headers).unwrap_or_else(IntoResponse::into_response)
}

/// The job `id` as seen by the caller of `headers`: 401 without a valid token,
/// 404 when it does not exist, is gone, or belongs to another client (SRV-004, SRV-005).
pub fn job_for_caller(state: &AppState, id: &str, headers: &HeaderMap) -> Result<(Arc<Job>, Caller), FhirError> {
    let caller = guard::caller(state, headers)?;
    let job = state.jobs.get(id).map_err(|why| gone(state, id, why))?;
    if !caller.owns(job.owner.as_deref()) {
        return Err(gone(state, id, None));
    }
    Ok((job, caller))
}

/// Suggested wait before the next poll.
fn retry_after(remaining: Duration) -> u64 {
    remaining.as_secs_f64().ceil().clamp(1.0, 10.0) as u64
}

fn poll_page_inner(
    state: &AppState,
    id: &str,
    page: usize,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, FhirError> {
    // A capability (from a `redirect` fault) opens the status URL without a token.
    let job = if state.capabilities.open(query, id)? {
        state.jobs.get(id).map_err(|why| gone(state, id, why))?
    } else {
        job_for_caller(state, id, headers)?.0
    };
    let page_size = state.config.manifest_page_size;
    if page == 0 || page > manifest::page_count(&job, page_size) {
        return Err(FhirError::not_found(format!("export job {id} has no manifest page {page}")));
    }
    if let Some(failure) = job.failure() {
        let outcome = OperationOutcome::error(IssueType::Processing, failure);
        return Ok(job_state_response(
            &job,
            StatusCode::INTERNAL_SERVER_ERROR,
            outcome_response(StatusCode::OK, &outcome),
        ));
    }
    let progress = job.progress();
    let files = manifest::page_files(&job, page, page_size);
    let ready = if job.plan.allow_partial_manifests {
        progress.ready_files >= files.end && (!files.is_empty() || progress.complete)
    } else {
        progress.complete
    };
    if !ready {
        let mut response = job_state_response(&job, StatusCode::ACCEPTED, StatusCode::OK.into_response());
        let h = response.headers_mut();
        let text = format!(
            "{:.0}% complete, {} of {} files ready",
            progress.fraction * 100.0,
            progress.ready_files,
            progress.total_files
        );
        h.insert("x-progress", HeaderValue::from_str(&text).expect("ASCII"));
        let wait = job.plan.quirks.retry_after_s().unwrap_or_else(|| retry_after(progress.remaining));
        h.insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(response);
    }
    let urls = JobUrls { fhir_base: &state.fhir_base, job: id };
    let body = manifest::build(
        &job,
        state.source.as_ref(),
        &urls,
        page,
        page_size,
        !state.config.open,
        state.config.file_digests,
    );
    let mut response = if job.plan.quirks.has(crate::quirks::Quirk::V4BallotManifest) {
        // The same rewrite as the `manifest_variant = "v4_ballot"` fault.
        let mut v = serde_json::to_value(&body).expect("a manifest serialises");
        crate::faults::rewrite::manifest(&mut v, crate::faults::model::ManifestVariant::V4Ballot);
        let mut response = (StatusCode::OK, axum::Json(v)).into_response();
        crate::faults::invariants::Deliberate::mark(&mut response, crate::quirks::Quirk::V4BallotManifest.breaks());
        response
    } else {
        (StatusCode::OK, axum::Json(body)).into_response()
    };
    let job_status = if progress.complete { StatusCode::OK } else { StatusCode::ACCEPTED };
    response = job_state_response(&job, job_status, response);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(done) = job.completed_at() {
        let expires = SystemTime::now() + state.jobs.ttl().saturating_sub(done.elapsed());
        h.insert(header::EXPIRES, HeaderValue::from_str(&httpdate::fmt_http_date(expires)).expect("ASCII"));
    }
    Ok(response)
}

/// Sets the status for the job state: the job's code, or 200 plus
/// `X-Export-Status` in separate-export-status mode (SRV-044).
pub fn job_state_response(job: &Job, job_status: StatusCode, mut response: Response) -> Response {
    if job.separate_status {
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert("x-export-status", HeaderValue::from(job_status.as_u16()));
    } else {
        *response.status_mut() = job_status;
    }
    response
}

/// `DELETE` the status URL: cancel or clean up, 202; afterwards 404 (SRV-140..144).
pub async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = job_for_caller(&state, &id, &headers) {
        return e.into_response();
    }
    if state.jobs.delete(&id) {
        return StatusCode::ACCEPTED.into_response();
    }
    let why = state.jobs.get(&id).err().flatten();
    gone(&state, &id, why).into_response()
}

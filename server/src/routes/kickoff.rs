//! `$export` kick-off at system, Patient and Group level (SRV-020..114).
//!
//! Quirks (`docs/quirks.md`) shape it here: `get-kickoff-only` (405 on POST),
//! `output-format-required` (400 without `_outputFormat`), `technical-group-ids`
//! (Groups by technical id only), `long-queue` (the job's duration); the
//! parameter quirks (`no-until`, `ignores-type-filter`, `omits-unauthorised-types`)
//! act in [`plan::plan`].

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkmock_wire::IssueType;

use crate::app::AppState;
use crate::auth::guard;
use crate::data::DataSource;
use crate::error::FhirError;
use crate::export::job::Job;
use crate::export::manifest::JobUrls;
use crate::export::params::{self, ExportParams, Problem};
use crate::export::plan::{self, Level, PlanError};
use crate::faults::profile::KickoffOverrides;
use crate::quirks::{ProfileQuirks, Quirk, Quirks};

/// `GET|POST [base]/$export`.
pub async fn system(
    State(state): State<Arc<AppState>>,
    overrides: Option<Extension<KickoffOverrides>>,
    quirks: Option<Extension<ProfileQuirks>>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let o = (overrides.map(|e| e.0).unwrap_or_default(), quirks.map(|e| e.0));
    kickoff(&state, Level::System, o, &method, &headers, &uri, &body).unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST [base]/Patient/$export`.
pub async fn patient(
    State(state): State<Arc<AppState>>,
    overrides: Option<Extension<KickoffOverrides>>,
    quirks: Option<Extension<ProfileQuirks>>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let o = (overrides.map(|e| e.0).unwrap_or_default(), quirks.map(|e| e.0));
    kickoff(&state, Level::Patient, o, &method, &headers, &uri, &body).unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST [base]/Group/[id]/$export`.
#[allow(clippy::too_many_arguments)] // axum extractors
pub async fn group(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    overrides: Option<Extension<KickoffOverrides>>,
    quirks: Option<Extension<ProfileQuirks>>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let o = (overrides.map(|e| e.0).unwrap_or_default(), quirks.map(|e| e.0));
    kickoff(&state, Level::Group(id), o, &method, &headers, &uri, &body).unwrap_or_else(IntoResponse::into_response)
}

/// The preferences of a `Prefer` header set (SRV-042..047, RFC 7240).
#[derive(Debug, Default, PartialEq)]
pub struct Preferences {
    /// `respond-async`.
    pub respond_async: bool,
    /// `handling=lenient`.
    pub lenient: bool,
    /// `separate-export-status`.
    pub separate_status: bool,
}

/// Parses every `Prefer` header, comma lists and repeats alike (SRV-047).
pub fn preferences(headers: &HeaderMap) -> Preferences {
    let mut prefs = Preferences::default();
    for value in headers.get_all("prefer") {
        for token in value.to_str().unwrap_or_default().split(',') {
            let name: String =
                token.split(';').next().unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
            match name.to_ascii_lowercase().as_str() {
                "respond-async" => prefs.respond_async = true,
                "handling=lenient" => prefs.lenient = true,
                "separate-export-status" => prefs.separate_status = true,
                _ => {}
            }
        }
    }
    prefs
}

/// The media ranges of an `Accept` header with their quality (`q`, default 1).
fn media_ranges(headers: &HeaderMap) -> Vec<(String, f32)> {
    let mut ranges = Vec::new();
    for value in headers.get_all(header::ACCEPT) {
        for range in value.to_str().unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            if !media.is_empty() {
                ranges.push((media, q));
            }
        }
    }
    ranges
}

/// Whether an `Accept` header admits a FHIR JSON OperationOutcome (SRV-040, SRV-041).
fn accepts_fhir_json(headers: &HeaderMap) -> bool {
    let ranges = media_ranges(headers);
    ranges.is_empty()
        || ranges.iter().any(|(media, q)| {
            *q > 0.0
                && matches!(
                    media.as_str(),
                    "application/fhir+json" | "application/json" | "application/json+fhir" | "*/*" | "application/*"
                )
        })
}

/// Whether `Accept` names `application/fhir+json` itself, as the kick-off
/// requires (SRV-040); a wildcard or `application/json` alone does not.
fn names_fhir_json(headers: &HeaderMap) -> bool {
    media_ranges(headers).iter().any(|(media, q)| media == "application/fhir+json" && *q > 0.0)
}

/// The header problems a strict kick-off answers with 400 (SRV-041, SRV-042):
/// a missing or other `Accept`, a missing `Prefer: respond-async`. Each issue
/// names the header and the value to send.
fn header_problems(headers: &HeaderMap, prefs: &Preferences) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !names_fhir_json(headers) {
        let got = match headers.get(header::ACCEPT) {
            None => "none was sent".to_string(),
            Some(v) => format!("got {:?}", v.to_str().unwrap_or_default()),
        };
        problems.push(Problem::new(
            "Accept",
            IssueType::Required,
            format!("a kick-off must send Accept: application/fhir+json ({got}; SRV-040, SRV-041)"),
        ));
    }
    if !prefs.respond_async {
        problems.push(Problem::new(
            "Prefer",
            IssueType::Required,
            "a kick-off must send Prefer: respond-async (the export runs asynchronously; SRV-042)",
        ));
    }
    problems
}

fn parse_request(
    method: &Method,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
) -> Result<(ExportParams, Vec<Problem>), FhirError> {
    let mut problems = Vec::new();
    if *method == Method::GET {
        return Ok((params::from_query(query, &mut problems), problems));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media != "application/fhir+json" && media != "application/json" {
        return Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!(
                "a POST kick-off needs Content-Type: application/fhir+json with a Parameters body, got {content_type:?}"
            ),
        ));
    }
    if !query.is_empty() {
        problems.push(Problem::new(
            "query",
            IssueType::Invalid,
            "a POST kick-off takes its parameters from the Parameters body only; remove the query string",
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        FhirError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, format!("the POST body is not valid JSON: {e}"))
    })?;
    let params = params::from_parameters(&json, &mut problems).map_err(|p| FhirError::from_problems(&[p]))?;
    Ok((params, problems))
}

#[allow(clippy::too_many_arguments)]
fn kickoff(
    state: &Arc<AppState>,
    level: Level,
    (overrides, profile_quirks): (KickoffOverrides, Option<ProfileQuirks>),
    method: &Method,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<Response, FhirError> {
    let caller = guard::caller(state, headers)?;
    let quirks = crate::quirks::effective(state, caller.client_id.as_deref(), profile_quirks.as_ref());
    if quirks.has(Quirk::GetKickoffOnly) && *method == Method::POST {
        return Ok(get_only());
    }
    let level = match level {
        Level::Group(id) if quirks.has(Quirk::TechnicalGroupIds) => {
            Level::Group(logical_group(state.data_for(caller.client_id.as_deref()).as_ref(), &id)?)
        }
        other => other,
    };
    if !accepts_fhir_json(headers) {
        return Err(FhirError::new(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            "the kick-off Accept header must allow application/fhir+json (SRV-040)",
        ));
    }
    let prefs = preferences(headers);
    if !state.config.lenient_headers {
        let problems = header_problems(headers, &prefs);
        if !problems.is_empty() {
            return Err(FhirError::from_problems(&problems));
        }
    }
    let query = uri.query().unwrap_or_default();
    let (params, problems) = parse_request(method, headers, query, body)?;
    if quirks.has(Quirk::OutputFormatRequired) && params.output_format.is_none() {
        return Err(FhirError::from_problems(&[Problem::new(
            "_outputFormat",
            IssueType::Required,
            "this server requires _outputFormat (send _outputFormat=application/fhir+ndjson; SRV-050, CLI-051)",
        )]));
    }
    // The job's snapshot: the current revision, with the caller's created Groups.
    let source = state.data_for(caller.client_id.as_deref());
    // The server clock never runs behind its data, so `_since = transactionTime` is never "in the future".
    let now = state.now().max(source.revision_time().unwrap_or(i64::MIN));
    let mut plan = plan::plan(
        source.as_ref(),
        level,
        params,
        problems,
        prefs.lenient,
        overrides.resources_per_file.unwrap_or(state.config.resources_per_file),
        now,
        caller.grant.as_deref(),
        &quirks,
    )
    .map_err(|e| match e {
        PlanError::UnknownGroup(id) => FhirError::not_found(format!(
            "Group/{id} does not exist; available groups: {}",
            group_ids(source.as_ref(), &quirks).join(", ")
        )),
        PlanError::Invalid(problems) => FhirError::from_problems(&problems),
        PlanError::Forbidden(message) => guard::insufficient_scope(message),
    })?;

    let mut request_url = format!("{}{}", state.origin(), uri.path());
    if *method == Method::GET && !query.is_empty() {
        request_url = format!("{request_url}?{query}");
    }
    let lenient_applied = prefs.lenient && !plan.notes.is_empty();
    let (running, soonest_done) = state.jobs.running(caller.client_id.as_deref());
    if let Some(refused) = crate::limits::job_slots(&state.config.limits, running, soonest_done) {
        return Ok(refused);
    }
    let id = state.jobs.next_id();
    let duration = quirks.job_duration(overrides.job_duration.unwrap_or(state.config.job_duration));
    plan.quirks = quirks;
    let job = Job::new(id, plan, request_url, prefs.separate_status, duration, caller.client_id, source, now);
    if state.revisions.after_export() {
        let advancing = Arc::clone(state);
        job.on_done(move || {
            let _ = advancing.revisions.advance();
        });
    }
    if state.config.count_before_accepting {
        job.count_now();
    } else {
        job.start_counting();
    }
    let status_url = JobUrls { fhir_base: &state.fhir_base, job: &job.id }.status();
    state.jobs.insert(job);

    let mut response = StatusCode::ACCEPTED.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LOCATION, HeaderValue::from_str(&status_url).expect("URL is a header value"));
    let mut applied = Vec::new();
    if prefs.respond_async {
        applied.push("respond-async");
    }
    if prefs.separate_status {
        applied.push("separate-export-status");
    }
    if lenient_applied {
        applied.push("handling=lenient");
    }
    if prefs.separate_status || lenient_applied {
        h.insert("preference-applied", HeaderValue::from_str(&applied.join(", ")).expect("ASCII"));
    }
    Ok(response)
}

/// The ids Groups answer to: logical, or technical under `technical-group-ids`.
fn group_ids(source: &dyn DataSource, quirks: &Quirks) -> Vec<String> {
    let technical = quirks.has(Quirk::TechnicalGroupIds);
    source
        .groups()
        .iter()
        .map(|g| if technical { crate::quirks::technical_group_id(&g.id) } else { g.id.clone() })
        .collect()
}

/// `technical-group-ids`: the logical id behind a technical one; a logical id
/// (or anything else) is a 404, as on servers that know Groups only by technical id.
fn logical_group(source: &dyn DataSource, id: &str) -> Result<String, FhirError> {
    let groups = source.groups();
    crate::quirks::logical_group_id(id, groups.iter().map(|g| g.id.as_str())).map(str::to_string).ok_or_else(|| {
        FhirError::not_found(format!(
            "Group/{id} does not exist; find a Group's id with a Group search (Group?identifier=... or Group?name=...)"
        ))
    })
}

/// `get-kickoff-only`: 405 with `Allow: GET` and an OperationOutcome.
fn get_only() -> Response {
    let mut response = FhirError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        "this server accepts GET kick-offs only; send the parameters in the query string",
    )
    .into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_tokens_parse_from_lists_and_repeats() {
        let mut h = HeaderMap::new();
        h.append("prefer", HeaderValue::from_static("respond-async, handling = lenient"));
        h.append("Prefer", HeaderValue::from_static("separate-export-status; x=1"));
        assert_eq!(preferences(&h), Preferences { respond_async: true, lenient: true, separate_status: true });
    }

    #[test]
    fn strict_kickoffs_name_each_missing_header_and_its_value() {
        let mut h = HeaderMap::new();
        let missing = header_problems(&h, &preferences(&h));
        let params: Vec<&str> = missing.iter().map(|p| p.param.as_str()).collect();
        assert_eq!(params, ["Accept", "Prefer"]);
        assert!(missing[0].message.contains("Accept: application/fhir+json (none was sent"));
        assert!(missing[1].message.contains("Prefer: respond-async"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        h.insert("prefer", HeaderValue::from_static("respond-async"));
        let json_only = header_problems(&h, &preferences(&h));
        assert_eq!(json_only.len(), 1);
        assert!(json_only[0].message.contains("got \"application/json\""), "{}", json_only[0].message);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json, application/fhir+json;q=0.5"));
        assert!(header_problems(&h, &preferences(&h)).is_empty());
    }

    #[test]
    fn accept_must_admit_fhir_json_when_present() {
        let mut h = HeaderMap::new();
        assert!(accepts_fhir_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/fhir+xml"));
        assert!(!accepts_fhir_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html, application/fhir+json;q=0.9"));
        assert!(accepts_fhir_json(&h));
    }
}

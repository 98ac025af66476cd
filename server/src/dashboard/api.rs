//! The JSON the page reads and the controls it calls: jobs, clients, the
//! fault plan with counters (add in plan-file syntax, switch, delete), the
//! data revision, the transcript (download per client, clear), live checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::export::job::Gone;
use crate::transcript::Exchange;

/// Jobs listed at most (the latest).
const MAX_JOBS: usize = 50;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// `GET api/state`: everything but the timeline.
pub async fn state(State(s): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "fhir_base": s.fhir_base,
        "auth": s.auth.is_some(),
        "revision": revision(&s),
        "jobs": jobs(&s),
        "clients": clients(&s),
        "faults": s.faults.list(),
        "scenario": s.dashboard.scenario(),
        "exchanges": s.transcript.count(),
        "live_checks": s.dashboard.live_checks().is_some(),
    }))
    .into_response()
}

fn revision(s: &AppState) -> Value {
    let data = s.current_data();
    json!({
        "revision": data.revision(),
        "time": data.revision_time().map(crate::data::clock::instant_string),
        "patients": data.patient_count(),
    })
}

fn jobs(s: &AppState) -> Vec<Value> {
    let history = s.jobs.history();
    history
        .iter()
        .rev()
        .take(MAX_JOBS)
        .map(|job| {
            let progress = job.progress();
            let state = match s.jobs.get(&job.id) {
                Err(Some(Gone::Deleted)) => "deleted",
                Err(Some(Gone::Expired)) => "expired",
                Err(None) => "gone",
                Ok(_) if job.failure().is_some() => "failed",
                Ok(_) if progress.complete => "complete",
                Ok(_) => "in progress",
            };
            let files: Vec<Value> = job
                .plan
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    json!({
                        "name": crate::export::manifest::file_name(&*job.source, f.kind, i),
                        "lines": job.count(i),
                    })
                })
                .collect();
            json!({
                "id": job.id,
                "owner": job.owner,
                "level": match &job.plan.level {
                    crate::export::plan::Level::System => "system".to_string(),
                    crate::export::plan::Level::Patient => "patient".to_string(),
                    crate::export::plan::Level::Group(id) => format!("group {id}"),
                },
                "state": state,
                "failure": job.failure(),
                "progress": (progress.fraction * 100.0).round(),
                "ready_files": progress.ready_files,
                "total_files": progress.total_files,
                "files": files,
            })
        })
        .collect()
}

fn clients(s: &AppState) -> Vec<Value> {
    let Some(auth) = &s.auth else { return Vec::new() };
    auth.registry
        .list()
        .iter()
        .map(|c| {
            let keys = match &c.keys {
                crate::auth::registry::ClientKeys::Inline(set) => format!("inline JWKS ({} key(s))", set.keys.len()),
                crate::auth::registry::ClientKeys::Url(url) => format!("JWKS URL {url}"),
            };
            json!({
                "id": c.id,
                "name": c.name,
                "keys": keys,
                "fault_rules": c.faults.as_ref().map_or(0, |f| f.list().len()),
                "quirks": c.quirks.to_string(),
            })
        })
        .collect()
}

/// The exchanges of each client, in order of arrival. Requests without a
/// client (discovery and metadata before a token) could be any client's: they
/// go to every client, and to `""`.
fn by_client(exchanges: Vec<Exchange>) -> BTreeMap<String, Vec<Exchange>> {
    let mut out: BTreeMap<String, Vec<Exchange>> = BTreeMap::new();
    for e in &exchanges {
        out.entry(e.client_id.clone().unwrap_or_default()).or_default();
    }
    for e in exchanges {
        match &e.client_id {
            Some(client) => out.get_mut(client).expect("listed").push(e),
            None => out.values_mut().for_each(|list| list.push(e.clone())),
        }
    }
    out
}

/// `GET api/checks`: the live checks per client, when the binary installed
/// them, over the latest [`CHECK_WINDOW`](super::CHECK_WINDOW) exchanges.
/// One computation at a time for all pages, reused while the transcript has
/// not grown and is younger than [`CHECKS_FRESH`](super::CHECKS_FRESH) (a
/// body that ended changes bytes, not the count).
pub async fn checks(State(s): State<Arc<AppState>>) -> Response {
    let Some(checks) = s.dashboard.live_checks().cloned() else {
        return axum::Json(json!({"available": false, "clients": {}})).into_response();
    };
    let mut cache = s.dashboard.checks_cache.lock().await;
    let count = s.transcript.count();
    if let Some((at_count, at, value)) = &*cache
        && *at_count == count
        && at.elapsed() < super::CHECKS_FRESH
    {
        return axum::Json(value.clone()).into_response();
    }
    let auth = s.auth.is_some();
    let exchanges = s.transcript.latest(super::CHECK_WINDOW);
    let window = exchanges.len();
    // The checks read whole transcripts: off the async workers.
    let clients = tokio::task::spawn_blocking(move || {
        by_client(exchanges)
            .into_iter()
            .map(|(client, list)| {
                let id = (!client.is_empty()).then_some(client.as_str());
                let results = checks.check(id, &list, auth);
                (client, json!(results))
            })
            .collect::<serde_json::Map<String, Value>>()
    })
    .await
    .unwrap_or_default();
    let value =
        json!({"available": true, "window": window, "since_seq": count + 1 - window as u64, "clients": clients});
    *cache = Some((count, std::time::Instant::now(), value.clone()));
    axum::Json(value).into_response()
}

/// Query of `GET api/transcript`.
#[derive(serde::Deserialize)]
pub struct TranscriptQuery {
    client: Option<String>,
}

/// `GET api/transcript[?client=ID]` (the client's exchanges and those without
/// a client): NDJSON as `serve --transcript` writes it
/// (what `bulkmock judge --transcript` reads), as a download.
pub async fn download_transcript(State(s): State<Arc<AppState>>, Query(q): Query<TranscriptQuery>) -> Response {
    let mut body = Vec::new();
    for e in s.transcript.exchanges() {
        // A client's transcript: its exchanges and those without a client (what its live checks read).
        if q.client.as_deref().is_some_and(|c| e.client_id.as_deref().is_some_and(|own| own != c)) {
            continue;
        }
        serde_json::to_writer(&mut body, &e).expect("serialisable");
        body.push(b'\n');
    }
    let name: String = match &q.client {
        Some(c) => c.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' { ch } else { '_' }).collect(),
        None => "all".into(),
    };
    let disposition = format!("attachment; filename=\"transcript-{name}.ndjson\"");
    ([(header::CONTENT_TYPE, "application/x-ndjson".to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

/// `DELETE api/transcript`.
pub async fn clear_transcript(State(s): State<Arc<AppState>>) -> Response {
    s.transcript.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST api/faults`: rules in plan-file syntax (TOML `[[fault]]` tables, or a
/// JSON plan when the text starts with `{`), parsed and validated as plan
/// files are, errors naming the line.
pub async fn add_faults(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let plan = match parse_rules(&body) {
        Ok(plan) => plan,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let ids: Vec<u64> = plan.rules.into_iter().map(|r| s.faults.add(r)).collect();
    (StatusCode::CREATED, axum::Json(json!({"ids": ids}))).into_response()
}

/// Rules in plan-file syntax; the plan parser's error (naming the line) otherwise.
fn parse_rules(body: &[u8]) -> Result<crate::faults::FaultPlan, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the rule is not UTF-8 text".to_string())?;
    let json = text.trim_start().starts_with('{');
    let plan = crate::faults::file::parse(text, "rule", json)?;
    if plan.rules.is_empty() {
        return Err("no rule: write one [[fault]] table (as in a plan file)".into());
    }
    Ok(plan)
}

/// `POST api/validate`: whether `api/faults` would take these rules, answered
/// 200 either way (`{"rules": n}` or `{"error": "rule:3: ..."}`), so the page
/// checks a rule before adding it without a failed request in the console.
pub async fn validate_faults(body: Bytes) -> Response {
    match parse_rules(&body) {
        Ok(plan) => axum::Json(json!({"rules": plan.rules.len()})).into_response(),
        Err(message) => axum::Json(json!({"error": message})).into_response(),
    }
}

/// `POST api/faults/{id}` with `{"enabled": bool}`.
pub async fn toggle_fault(State(s): State<Arc<AppState>>, Path(id): Path<u64>, body: Bytes) -> Response {
    let enabled = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("enabled")?.as_bool());
    let Some(enabled) = enabled else {
        return error(StatusCode::BAD_REQUEST, "expected {\"enabled\": true} or {\"enabled\": false}");
    };
    if s.faults.set_enabled(id, enabled) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault rule {id}"))
    }
}

/// `DELETE api/faults/{id}`.
pub async fn remove_fault(State(s): State<Arc<AppState>>, Path(id): Path<u64>) -> Response {
    if s.faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault rule {id}"))
    }
}

/// `POST api/revision`: the data set's next revision.
pub async fn advance_revision(State(s): State<Arc<AppState>>) -> Response {
    match s.revisions.advance() {
        Ok(_) => axum::Json(revision(&s)).into_response(),
        Err(message) => error(StatusCode::CONFLICT, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(seq: u64, client: Option<&str>) -> Exchange {
        serde_json::from_value(json!({
            "seq": seq, "at_ms": seq, "method": "GET", "path": "/fhir/metadata", "headers": {},
            "status": 200, "bytes": 0, "duration_ms": 0, "client_id": client
        }))
        .unwrap()
    }

    #[test]
    fn requests_without_a_client_count_for_every_client() {
        let grouped = by_client(vec![exchange(1, None), exchange(2, Some("a")), exchange(3, Some("b"))]);
        let seqs = |k: &str| grouped[k].iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs("a"), vec![1, 2]);
        assert_eq!(seqs("b"), vec![1, 3]);
        assert_eq!(seqs(""), vec![1]);
    }
}

//! Group read and search, so clients can find a group to export (SRV-032).
//!
//! Under the `technical-group-ids` quirk every Group answers to its technical
//! id only (reads, searches' `id` and `fullUrl`, kick-offs); its logical id is a 404.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::guard;
use crate::error::FhirError;
use crate::export::params::Problem;
use crate::export::type_filter::TypeQuery;
use crate::quirks::{ProfileQuirks, Quirk};

/// Every Group resource the caller sees (current revision, its created Groups)
/// with the id it answers to (technical under `technical`).
fn all_groups(state: &AppState, caller: &guard::Caller, technical: bool) -> Vec<(String, Value)> {
    let source = state.data_for(caller.client_id.as_deref());
    let Some(ty) = source.type_index("Group") else { return Vec::new() };
    (0..source.standalone_count(ty))
        .filter_map(|i| {
            let mut buf = Vec::new();
            source.write_resource(ty, i, &mut buf).ok()?;
            let mut group: Value = serde_json::from_slice(&buf).ok()?;
            let mut id = source.resource_id(ty, i);
            if technical {
                id = crate::quirks::technical_group_id(&id);
                group["id"] = Value::String(id.clone());
            }
            Some((id, group))
        })
        .collect()
}

fn fhir_json(value: Value) -> Response {
    let mut response = axum::Json(value).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(bulkmock_wire::FHIR_JSON));
    response
}

/// 401/403 unless the caller may read Groups; else the caller and whether
/// Groups answer to technical ids.
fn check_group_access(
    state: &AppState,
    headers: &HeaderMap,
    profile: Option<Extension<ProfileQuirks>>,
) -> Result<(guard::Caller, bool), FhirError> {
    let caller = guard::caller(state, headers)?;
    if !caller.can_read("Group") {
        return Err(guard::insufficient_scope("reading Groups needs read access to Group (system/Group.rs)"));
    }
    let quirks = crate::quirks::effective(state, caller.client_id.as_deref(), profile.as_ref().map(|e| &e.0));
    let technical = quirks.has(Quirk::TechnicalGroupIds);
    Ok((caller, technical))
}

/// `GET [base]/Group/{id}`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    profile: Option<Extension<ProfileQuirks>>,
    headers: HeaderMap,
) -> Response {
    let (caller, technical) = match check_group_access(&state, &headers, profile) {
        Ok(t) => t,
        Err(denied) => return denied.into_response(),
    };
    match all_groups(&state, &caller, technical).into_iter().find(|(gid, _)| *gid == id) {
        Some((_, group)) => fhir_json(group),
        None => FhirError::not_found(format!("Group/{id} does not exist")).into_response(),
    }
}

/// `GET [base]/Group?name=...&identifier=...`: a searchset Bundle.
pub async fn search(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    profile: Option<Extension<ProfileQuirks>>,
    headers: HeaderMap,
) -> Response {
    let (caller, technical) = match check_group_access(&state, &headers, profile) {
        Ok(t) => t,
        Err(denied) => return denied.into_response(),
    };
    let query = query.unwrap_or_default();
    let filter = if query.is_empty() {
        None
    } else {
        match TypeQuery::parse(&format!("Group?{query}")) {
            Ok(q) => Some(q),
            Err(message) => {
                let message = message.replacen("_typeFilter \"Group?", "search \"Group?", 1);
                return FhirError::from_problems(&[Problem::new(
                    "query",
                    bulkmock_wire::IssueType::NotSupported,
                    message,
                )])
                .into_response();
            }
        }
    };
    let entries: Vec<Value> = all_groups(&state, &caller, technical)
        .into_iter()
        .filter(|(_, g)| filter.as_ref().is_none_or(|f| f.matches(g)))
        .map(|(id, g)| json!({"fullUrl": format!("{}/Group/{id}", state.fhir_base), "resource": g, "search": {"mode": "match"}}))
        .collect();
    let self_url = if query.is_empty() {
        format!("{}/Group", state.fhir_base)
    } else {
        format!("{}/Group?{query}", state.fhir_base)
    };
    fhir_json(json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": self_url}],
        "entry": entries,
    }))
}

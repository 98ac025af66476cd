//! `POST [base]/Group`: a client creates a Group to export (as the SMART
//! reference server offers), from a `member` list or from characteristics.
//!
//! Supported characteristics (AND-ed; `exclude: true` negates one):
//! `gender` with `valueCodeableConcept` (a coding `code` or `text`: `male`,
//! `female`, `other`, `unknown`), and `birthdate` with `valuePeriod`
//! (`start` and/or `end`, dates, inclusive). The code is read from
//! `code.coding[].code` or `code.text`. Anything else is a 400 naming it.
//! `member` and `characteristic` cannot be combined. Members are fixed at
//! creation; the Group belongs to the creating client (others get 404) and
//! lives until admin reset.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkmock_wire::IssueType;
use serde_json::Value;

use crate::app::AppState;
use crate::auth::guard;
use crate::data::created::{CreatedGroup, write_group};
use crate::data::{DataSource, GroupDef, PatientSet};
use crate::error::FhirError;

/// A characteristic this server evaluates.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Gender(String),
    BirthDate { start: Option<String>, end: Option<String> },
}

fn bad(message: impl Into<String>) -> FhirError {
    FhirError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
}

fn unsupported(message: impl Into<String>) -> FhirError {
    FhirError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, message)
}

fn code_of(concept: &Value) -> Option<&str> {
    concept["coding"]
        .as_array()
        .and_then(|c| c.iter().find_map(|c| c["code"].as_str()))
        .or_else(|| concept["text"].as_str())
}

fn parse_characteristic(c: &Value) -> Result<(Test, bool), FhirError> {
    let exclude = c["exclude"].as_bool().unwrap_or(false);
    let code = code_of(&c["code"]).ok_or_else(|| bad("characteristic.code needs a coding code or text"))?;
    match code.to_ascii_lowercase().as_str() {
        "gender" => {
            let value = code_of(&c["valueCodeableConcept"]).ok_or_else(|| {
                bad("characteristic gender needs valueCodeableConcept (male, female, other, unknown)")
            })?;
            if !["male", "female", "other", "unknown"].contains(&value) {
                return Err(bad(format!(
                    "characteristic gender value {value:?} is not male, female, other or unknown"
                )));
            }
            Ok((Test::Gender(value.to_string()), exclude))
        }
        "birthdate" => {
            let period = &c["valuePeriod"];
            let start = period["start"].as_str().map(str::to_string);
            let end = period["end"].as_str().map(str::to_string);
            if start.is_none() && end.is_none() {
                return Err(bad("characteristic birthdate needs valuePeriod with start and/or end"));
            }
            Ok((Test::BirthDate { start, end }, exclude))
        }
        other => Err(unsupported(format!(
            "characteristic code {other:?} is not supported; supported: gender (valueCodeableConcept), \
             birthdate (valuePeriod)"
        ))),
    }
}

fn matches(test: &Test, patient: &Value) -> bool {
    match test {
        Test::Gender(g) => patient["gender"].as_str() == Some(g),
        Test::BirthDate { start, end } => {
            let Some(born) = patient["birthDate"].as_str() else { return false };
            // Dates compare as strings (same precision prefix); an end date covers its whole day.
            start.as_deref().is_none_or(|s| born >= &s[..s.len().min(born.len())])
                && end.as_deref().is_none_or(|e| born <= &e[..e.len().min(born.len())])
        }
    }
}

/// Patients of `source` matching every test.
fn evaluate(source: &dyn DataSource, tests: &[(Test, bool)]) -> Result<Vec<u64>, FhirError> {
    let ty = source.type_index("Patient").ok_or_else(|| unsupported("this data set has no Patient resources"))?;
    let mut members = Vec::new();
    let mut buf = Vec::new();
    for p in 0..source.patient_count() {
        let Some(idx) = source.patient_resources(ty, p).next() else { continue };
        buf.clear();
        source.write_resource(ty, idx, &mut buf).map_err(|e| bad(format!("cannot read Patient: {e}")))?;
        let patient: Value = serde_json::from_slice(&buf).map_err(|e| bad(format!("cannot read Patient: {e}")))?;
        if tests.iter().all(|(t, exclude)| matches(t, &patient) != *exclude) {
            members.push(p);
        }
    }
    Ok(members)
}

/// `POST [base]/Group`: 201 with the created Group and its `Location`.
pub async fn create(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    match create_group(&state, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn create_group(state: &Arc<AppState>, headers: &HeaderMap, body: &[u8]) -> Result<Response, FhirError> {
    let caller = guard::caller(state, headers)?;
    if !caller.can_read("Group") {
        return Err(guard::insufficient_scope("creating a Group needs access to Group (system/Group.rs)"));
    }
    let group: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not a JSON Group resource: {e}")))?;
    if group["resourceType"] != "Group" {
        return Err(bad("the body must be a Group resource (resourceType \"Group\")"));
    }
    let source = state.current_data();
    let member = group.get("member").and_then(Value::as_array);
    let characteristic = group.get("characteristic").and_then(Value::as_array);
    let members = match (member, characteristic) {
        (Some(_), Some(_)) => {
            return Err(unsupported("a Group is created from member or from characteristic, not both"));
        }
        (None, None) => return Err(bad("a Group to create needs a member list or a characteristic")),
        (Some(list), None) => {
            let mut chosen = Vec::new();
            for m in list {
                let reference = m["entity"]["reference"].as_str().unwrap_or_default();
                let index = reference.strip_prefix("Patient/").and_then(|id| source.patient_index(id));
                match index {
                    Some(p) => chosen.push(p),
                    None => {
                        return Err(bad(format!(
                            "member entity {reference:?} is not a patient of this server (e.g. Patient/{})",
                            source.patient_id(0)
                        )));
                    }
                }
            }
            chosen
        }
        (None, Some(list)) => {
            let tests = list.iter().map(parse_characteristic).collect::<Result<Vec<_>, _>>()?;
            let source = Arc::clone(&source);
            tokio::task::spawn_blocking(move || evaluate(source.as_ref(), &tests))
                .await
                .map_err(|e| bad(format!("evaluating the characteristics failed: {e}")))??
        }
    };
    let id = state.created_groups.next_id();
    let name = group["name"].as_str().unwrap_or("Created group").to_string();
    let created = CreatedGroup {
        def: GroupDef { identifier: id.to_uppercase(), id: id.clone(), name, members: PatientSet::list(members) },
        created: state.now(),
        // Echoed as given, with `exclude` (required in R4) made explicit.
        characteristic: characteristic.map(|list| {
            Value::Array(
                list.iter()
                    .map(|c| {
                        let mut c = c.clone();
                        if c.get("exclude").is_none() {
                            c["exclude"] = Value::Bool(false);
                        }
                        c
                    })
                    .collect(),
            )
        }),
    };
    let mut json = Vec::new();
    write_group(&created, &|p| source.patient_id(p), &mut json);
    state.created_groups.insert(caller.client_id.as_deref(), created);
    let mut response = (StatusCode::CREATED, json).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bulkmock_wire::FHIR_JSON));
    let location = format!("{}/Group/{id}", state.fhir_base);
    h.insert(header::LOCATION, HeaderValue::from_str(&location).expect("URL is a header value"));
    Ok(response)
}

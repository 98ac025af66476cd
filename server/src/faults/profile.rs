//! Fault profiles embedded in the base URL, for clients that cannot be
//! reconfigured: `http://host:port/p/{base64url JSON}/fhir` is a FHIR base
//! whose requests get that profile's faults (checked before the server's).
//! The JSON is a plan (`{"fault": [...]}`) or a list of rules. Every URL the
//! server hands out on such a base (Content-Location, Location, manifest and
//! discovery URLs) keeps the prefix, so a client never leaves its profile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{FaultEngine, FaultPlan, FaultRule};
use crate::app::AppState;

/// The engine of the profile a request came through.
#[derive(Clone)]
pub struct ProfileEngine(pub Arc<FaultEngine>);

/// Engines of the profiles seen so far, by their URL segment.
#[derive(Default)]
pub struct Profiles {
    engines: Mutex<HashMap<String, Arc<FaultEngine>>>,
}

/// Largest JSON body rewritten to keep the profile prefix.
const MAX_JSON: usize = 64 * 1024 * 1024;

/// Decodes a profile segment into a validated plan.
pub fn decode(segment: &str) -> Result<FaultPlan, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| "the fault profile in the URL is not base64url".to_string())?;
    let plan: FaultPlan = match serde_json::from_slice::<Vec<FaultRule>>(&bytes) {
        Ok(rules) => FaultPlan { rules },
        Err(_) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("the fault profile in the URL is not a fault plan: {e}"))?,
    };
    for (i, rule) in plan.rules.iter().enumerate() {
        rule.validate().map_err(|e| format!("the fault profile in the URL: rule {}: {e}", i + 1))?;
    }
    Ok(plan)
}

/// Encodes a plan as a profile segment (for building profile URLs).
pub fn encode(plan: &FaultPlan) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(plan).expect("a plan serialises"))
}

/// The outer middleware: strips `/p/{profile}`, routes the rest, restores the prefix in URLs.
pub async fn layer(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/p/") else {
        return next.run(request).await;
    };
    let Some((segment, inner_path)) = rest.split_once('/').map(|(s, p)| (s.to_string(), format!("/{p}"))) else {
        return crate::error::FhirError::not_found("a profile URL looks like /p/{profile}/fhir/...").into_response();
    };
    let engine = {
        let mut engines = state.profiles.engines.lock().expect("profiles");
        match engines.get(&segment) {
            Some(e) => Arc::clone(e),
            None => match decode(&segment) {
                Ok(plan) => {
                    let engine = Arc::new(FaultEngine::new(plan, state.config.seed ^ 0x7072_6f66));
                    engines.insert(segment.clone(), Arc::clone(&engine));
                    engine
                }
                Err(message) => {
                    return crate::error::FhirError::new(
                        StatusCode::BAD_REQUEST,
                        bulkmock_wire::IssueType::Invalid,
                        message,
                    )
                    .into_response();
                }
            },
        }
    };
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Ok(uri) = format!("{inner_path}{query}").parse::<Uri>() {
        *request.uri_mut() = uri;
    }
    request.extensions_mut().insert(ProfileEngine(engine));
    let response = next.run(request).await;
    keep_prefix(&state, response, &segment).await
}

/// Puts `/p/{profile}` back into the URLs of a response.
async fn keep_prefix(state: &AppState, response: Response, segment: &str) -> Response {
    let origin = state.origin().to_string();
    let prefixed = format!("{origin}/p/{segment}");
    let fix = |s: &str| {
        s.replace(&format!("{origin}/fhir"), &format!("{prefixed}/fhir"))
            .replace(&format!("{origin}/auth"), &format!("{prefixed}/auth"))
    };
    let (mut parts, body) = response.into_parts();
    for name in [header::CONTENT_LOCATION, header::LOCATION] {
        if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()).map(fix)
            && let Ok(v) = HeaderValue::from_str(&v)
        {
            parts.headers.insert(name, v);
        }
    }
    let is_json =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("json"));
    if !is_json {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_JSON).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let text = fix(&String::from_utf8_lossy(&bytes));
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    Response::from_parts(parts, Body::from(text))
}

//! `POST /auth/token`: the client_credentials grant with a JWT assertion (AUTH-030..054).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{OAuthCode, OAuthError};
use super::scopes::Grant;
use crate::app::AppState;
use crate::export::job::unix_now;
use crate::faults::apply::TokenFaults;
use crate::faults::profile::ProfilePrefix;
use crate::quirks::{ProfileQuirks, Quirk};

/// The `client_assertion_type` of SMART Backend Services.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `POST /auth/token`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    faults: Option<axum::Extension<TokenFaults>>,
    profile: Option<axum::Extension<ProfilePrefix>>,
    profile_quirks: Option<axum::Extension<ProfileQuirks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Through a profile base the token URL keeps the profile prefix: `aud` must
    // be exactly the URL that profile's discovery advertises (AUTH-001, AUTH-004).
    let token_url = state.token_url_in(profile.as_ref().map(|e| &e.0));
    let profile_quirks = profile_quirks.map(|e| e.0);
    let faults = faults.map(|e| e.0).unwrap_or_default();
    match issue(&state, &headers, &body, &token_url, faults, profile_quirks.as_ref()).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.split(';').next().unwrap_or("").trim() != "application/x-www-form-urlencoded" {
        return Err(OAuthError::request(format!(
            "the token request must be a form (Content-Type: application/x-www-form-urlencoded), got {content_type:?}"
        )));
    }
    let mut fields = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if fields.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::request(format!("parameter {k} appears more than once")));
        }
    }
    Ok(fields)
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    token_url: &str,
    faults: TokenFaults,
    profile_quirks: Option<&ProfileQuirks>,
) -> Result<Response, OAuthError> {
    let auth = state.auth.as_ref().ok_or_else(|| {
        OAuthError::new(OAuthCode::InvalidRequest, "authorization is off on this server (--open): no token is needed")
    })?;
    let fields = form(headers, body)?;
    let field = |name: &str| fields.get(name).map(String::as_str).filter(|v| !v.is_empty());
    match field("grant_type") {
        None => return Err(OAuthError::request("grant_type is required (client_credentials)")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                OAuthCode::UnsupportedGrantType,
                format!("grant_type {other:?} is not supported; backend services use client_credentials"),
            ));
        }
    }
    match field("client_assertion_type") {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return Err(OAuthError::request(format!("client_assertion_type must be {JWT_BEARER}, got {other:?}")));
        }
        None => return Err(OAuthError::request(format!("client_assertion_type is required ({JWT_BEARER})"))),
    }
    let assertion = field("client_assertion")
        .ok_or_else(|| OAuthError::request("client_assertion (the signed JWT) is required"))?;
    let jwks_fault = |client_id: &str| {
        let facts = crate::faults::RequestFacts {
            target: Some(crate::faults::Target::Jwks),
            client_id: Some(client_id.to_string()),
            ..Default::default()
        };
        crate::faults::apply::check(state, &facts).map(|f| f.fault)
    };
    let now = unix_now() + faults.skew_s;
    let client = super::assertion::authenticate(auth, assertion, token_url, now, &jwks_fault).await?;
    if let Some(id) = field("client_id")
        && id != client.id
    {
        return Err(OAuthError::client(format!("client_id {id:?} does not match the assertion's iss {:?}", client.id)));
    }
    let quirks = crate::quirks::effective(state, Some(&client.id), profile_quirks);
    if quirks.has(Quirk::HttpsJwksOnly)
        && let super::registry::ClientKeys::Url(url) = &client.keys
        && !url.starts_with("https://")
    {
        return Err(OAuthError::client(format!(
            "this server accepts only https JWKS URLs (quirk https-jwks-only; AUTH-022, CLI-003); \
             the client's JWKS URL {url} is not https: host the JWKS over https or register it inline"
        )));
    }
    let requested = field("scope").ok_or_else(|| {
        OAuthError::new(OAuthCode::InvalidScope, "scope is required, e.g. system/*.rs or system/Patient.read")
    })?;
    let source = &state.source;
    let known = |t: &str| source.type_index(t).is_some();
    let capitalised = quirks.has(Quirk::CapitalisedScopes);
    let (mut grant, mut dropped) = Grant::from_request_in(requested, &known, client.allowed.as_ref(), capitalised);
    if let Some(limit) = &faults.scope_limit {
        // Parsed, not as text: v1 `.read` and v2 `.rs` are the same grant (AUTH-062).
        let (limit, _) = Grant::from_request_in(limit, &known, None, capitalised);
        dropped.extend(grant.narrow_to(&limit));
    }
    if grant.entries.is_empty() {
        let reasons: Vec<String> = dropped.iter().map(|d| format!("{}: {}", d.scope, d.reason)).collect();
        return Err(OAuthError::new(
            OAuthCode::InvalidScope,
            format!("no grantable scope in the request ({})", reasons.join("; ")),
        ));
    }
    let lifetime = faults.lifetime.or(client.token_lifetime).unwrap_or(auth.config.token_lifetime);
    let scope = grant.to_scope_string();
    let access_token = auth.issue(&client.id, grant, lifetime);
    let body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs(),
        "scope": scope,
    });
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

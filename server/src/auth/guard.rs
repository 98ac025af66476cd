//! Access control on FHIR routes (SRV-004, SRV-013, SRV-017, SRV-182).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use bulkmock_wire::IssueType;

use super::scopes::Grant;
use crate::app::AppState;
use crate::error::FhirError;

/// Who is calling: the token's client and grant, or nobody on an open server.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client the token was issued to; `None` when authorization is off.
    pub client_id: Option<String>,
    /// What the token may read; `None` when authorization is off.
    pub grant: Option<Arc<Grant>>,
}

impl Caller {
    /// Whether the caller may read resources of `ty`.
    pub fn can_read(&self, ty: &str) -> bool {
        self.grant.as_ref().is_none_or(|g| g.can_read(ty))
    }

    /// Whether the caller may see a job owned by `owner`.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        self.client_id.is_none() || self.client_id.as_deref() == owner
    }
}

/// The caller of a FHIR request; a 401 with a `WWW-Authenticate` challenge
/// when authorization is on and the bearer token is missing or not valid.
pub fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, FhirError> {
    let Some(auth) = &state.auth else {
        return Ok(Caller { client_id: None, grant: None });
    };
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = value.and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let message = match value {
            None => "this endpoint needs an access token: send Authorization: Bearer <token> from the token endpoint",
            Some(_) => "the Authorization header must be \"Bearer <token>\"",
        };
        // RFC 6750 3.1: no error code when the request carries no credentials.
        return Err(unauthorized(message, None));
    };
    match auth.token(token) {
        Ok(info) => Ok(Caller { client_id: Some(info.client_id), grant: Some(info.grant) }),
        Err(why) => Err(unauthorized(why, Some("invalid_token"))),
    }
}

fn unauthorized(message: &str, error: Option<&str>) -> FhirError {
    let mut challenge = String::from("Bearer realm=\"bulkmock\"");
    if let Some(code) = error {
        challenge.push_str(&format!(", error=\"{code}\", error_description=\"{message}\""));
    }
    FhirError::new(StatusCode::UNAUTHORIZED, IssueType::Login, message).with_challenge(challenge)
}

/// A 403 for a token whose scopes do not cover `what` (SRV-014, RFC 6750 `insufficient_scope`).
pub fn insufficient_scope(message: impl Into<String>) -> FhirError {
    let message = message.into();
    FhirError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, message)
        .with_challenge("Bearer realm=\"bulkmock\", error=\"insufficient_scope\"".to_string())
}

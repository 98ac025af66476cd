//! Errors on FHIR routes, rendered as OperationOutcome (SRV-113, SRV-130).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkmock_wire::{FHIR_JSON, IssueSeverity, IssueType, OperationOutcome, OutcomeIssue};

use crate::export::params::Problem;

/// An error answered with a status code and an OperationOutcome body.
#[derive(Debug)]
pub struct FhirError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub outcome: OperationOutcome,
    /// A `WWW-Authenticate` challenge (401 and 403 on protected routes).
    pub challenge: Option<String>,
}

impl FhirError {
    /// An error with one issue.
    pub fn new(status: StatusCode, code: IssueType, message: impl Into<String>) -> Self {
        FhirError { status, outcome: OperationOutcome::error(code, message), challenge: None }
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// 400 listing every parameter problem, each with its parameter as `expression`.
    pub fn from_problems(problems: &[Problem]) -> Self {
        let issue = problems
            .iter()
            .map(|p| OutcomeIssue {
                severity: IssueSeverity::Error,
                code: p.code,
                diagnostics: Some(p.message.clone()),
                expression: vec![p.param.clone()],
            })
            .collect();
        FhirError { status: StatusCode::BAD_REQUEST, outcome: OperationOutcome { id: None, issue }, challenge: None }
    }

    /// 404 not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueType::NotFound, message)
    }
}

/// An OperationOutcome response with the FHIR JSON content type (SRV-130);
/// `crate::media::negotiate` turns it into `application/json` when asked.
pub fn outcome_response(status: StatusCode, outcome: &OperationOutcome) -> Response {
    let body = serde_json::to_vec(outcome).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response.extensions_mut().insert(crate::media::OutcomeBody);
    response
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let mut response = outcome_response(self.status, &self.outcome);
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

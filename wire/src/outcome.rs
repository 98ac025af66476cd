//! The FHIR `OperationOutcome` resource, as used in error bodies and error files.

use serde::{Deserialize, Serialize};

/// A FHIR R4 `OperationOutcome`: the body of every error on a FHIR route
/// (SRV-113, SRV-130) and the line format of manifest `error` files (SRV-175).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "resourceType", rename = "OperationOutcome")]
pub struct OperationOutcome {
    /// Logical id, when the outcome is stored in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// At least one issue.
    pub issue: Vec<OutcomeIssue>,
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeIssue {
    /// How bad it is.
    pub severity: IssueSeverity,
    /// The FHIR IssueType code.
    pub code: IssueType,
    /// The human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    /// Where in the request the problem is (e.g. the parameter name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

/// FHIR `IssueSeverity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueSeverity {
    /// The action failed and the program cannot go on.
    Fatal,
    /// The action failed.
    Error,
    /// The action succeeded, with a problem worth knowing.
    Warning,
    /// For information only.
    Information,
}

/// The FHIR R4 `IssueType` codes this project emits or must understand.
///
/// `transient` and its children tell a client to retry (SRV-131, E-26).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A required element is missing.
    Required,
    /// The value is not supported.
    Value,
    /// Authentication needed and missing or failed.
    Login,
    /// The user is not authorised for the action.
    Forbidden,
    /// The operation or parameter is not supported.
    NotSupported,
    /// The resource or job was not found.
    NotFound,
    /// The resource or job used to exist but is gone.
    Deleted,
    /// The content or URL has expired.
    Expired,
    /// Too much load: slow down.
    Throttled,
    /// A transient failure: retry later.
    Transient,
    /// The operation timed out: retry later.
    Timeout,
    /// Processing failed.
    Processing,
    /// An unexpected internal error.
    Exception,
    /// Informational.
    Informational,
    /// Content was too long.
    TooLong,
    /// Other, unknown.
    #[serde(other)]
    Unknown,
}

impl IssueType {
    /// Whether a client should treat this code as transient and retry (SRV-131).
    pub fn is_transient(self) -> bool {
        matches!(self, IssueType::Transient | IssueType::Timeout | IssueType::Throttled | IssueType::Exception)
    }
}

impl OperationOutcome {
    /// An outcome with one issue of the given severity and code.
    pub fn new(severity: IssueSeverity, code: IssueType, diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            id: None,
            issue: vec![OutcomeIssue { severity, code, diagnostics: Some(diagnostics.into()), expression: Vec::new() }],
        }
    }

    /// An `error` outcome with one issue.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::new(IssueSeverity::Error, code, diagnostics)
    }

    /// Adds a FHIRPath-ish `expression` (e.g. the parameter name) to every issue.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        let expression = expression.into();
        for issue in &mut self.issue {
            issue.expression.push(expression.clone());
        }
        self
    }

    /// The diagnostics of every issue, joined: what a person should read.
    pub fn message(&self) -> String {
        self.issue.iter().filter_map(|i| i.diagnostics.as_deref()).collect::<Vec<_>>().join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_a_fhir_resource() {
        let outcome = OperationOutcome::error(IssueType::NotSupported, "no").at("_type");
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["resourceType"], "OperationOutcome");
        assert_eq!(json["issue"][0]["code"], "not-supported");
        assert_eq!(json["issue"][0]["expression"][0], "_type");
        let back: OperationOutcome = serde_json::from_value(json).unwrap();
        assert_eq!(back, outcome);
    }

    #[test]
    fn unknown_issue_codes_parse() {
        let json = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"lock-error"}]}"#;
        let outcome: OperationOutcome = serde_json::from_str(json).unwrap();
        assert_eq!(outcome.issue[0].code, IssueType::Unknown);
    }
}

//! Wire types shared by the bulkmock server and client.
//!
//! These are the JSON shapes both sides of a FHIR Bulk Data exchange agree on:
//! the `OperationOutcome` resource used for errors on FHIR routes and the
//! export completion manifest (requirements SRV-150..SRV-175). Keeping them in
//! their own crate lets `server` and `client` share them without depending on
//! each other.

mod manifest;
mod outcome;

pub use manifest::{Manifest, ManifestFile, ManifestLink, SHA256_EXTENSION};
pub use outcome::{IssueSeverity, IssueType, OperationOutcome, OutcomeIssue};

/// Media type of FHIR JSON resources, such as an OperationOutcome (SRV-130).
pub const FHIR_JSON: &str = "application/fhir+json";
/// Media type of NDJSON output files (SRV-184).
pub const FHIR_NDJSON: &str = "application/fhir+ndjson";

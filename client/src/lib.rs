//! A FHIR Bulk Data client: SMART Backend Services authorization, `$export`
//! kick-off, polite polling, robust downloads with resume and integrity checks.
//! Requirement IDs (CLI-nnn) refer to the project's requirements list.

mod auth;
mod error;
mod export;

pub use auth::{Credentials, discover_token_url};
pub use error::ClientError;
pub use export::{Client, ExportRequest, Level, Policy, Summary, retry_after};

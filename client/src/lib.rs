//! A FHIR Bulk Data client: SMART Backend Services authorization, `$export`
//! kick-off, polite polling, parallel downloads with resume and integrity checks.
//! Requirement IDs (CLI-nnn) refer to the project's requirements list.
//!
//! ```no_run
//! # async fn run() -> Result<(), bulkmock_client::ClientError> {
//! use bulkmock_client::{Client, Credentials, ExportRequest, Level};
//! let pem = std::fs::read("private.pem").expect("key");
//! let credentials = Credentials::from_pem("my-client", &pem, "my-kid", "system/*.rs")?;
//! let client = Client::builder("https://ehr.example/fhir").credentials(credentials).parallel(4).build().await?;
//! let summary = client.export(&ExportRequest::new(Level::System), "out".as_ref()).await?;
//! println!("{} resources", summary.total_resources());
//! # Ok(()) }
//! ```

mod auth;
mod capabilities;
mod client;
mod download;
mod error;
mod events;
mod http;
pub mod incremental;
mod job;
mod jwk;
mod manifest;
mod policy;
mod request;
mod summary;
pub mod type_filter;
pub mod update;

pub use auth::{Credentials, discover_token_url};
pub use capabilities::unsupported_parameters;
pub use client::{Client, ClientBuilder};
pub use error::ClientError;
pub use events::{Event, Observer};
pub use job::ExportJob;
pub use policy::{Policy, retry_after};
pub use request::{ExportRequest, Level};
pub use summary::Summary;
pub use update::Updated;

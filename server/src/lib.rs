//! A strict, deterministic mock FHIR Bulk Data Access server.
//!
//! Start one in a test with [`MockServer::start`], or run the `bulkmock serve`
//! command. The server implements `$export` at system, Patient and Group
//! level over a synthetic population that is a pure function of a seed (see
//! [`data`]), or over a folder of the user's NDJSON files. Requirement IDs
//! (SRV-nnn, E-nn) in the docs refer to the project's requirements list.

pub mod admin;
pub mod app;
pub mod auth;
pub mod capture;
pub mod config;
mod conn;
pub mod dashboard;
pub mod data;
pub mod error;
pub mod export;
pub mod faults;
mod handle;
mod http_client;
pub mod limits;
pub mod media;
pub mod proxy;
pub mod quirks;
pub mod routes;
pub mod stream;
pub mod tls;
pub mod transcript;
pub mod transport;

pub use auth::keys::{ClientKey, KeyAlg};
pub use auth::registry::Registration;
pub use config::ServerConfig;
pub use faults::{BodyKind, Fault, FaultPlan, FaultRule, Target, Trigger};
pub use handle::{DEMO_CLIENT_ID, MockServer, MockServerBuilder};
pub use tls::TlsIdentity;
pub use transcript::Exchange;

//! The bulkmock conformance harness: run any FHIR Bulk Data client against
//! scripted fault scenarios and judge it, check by check, against the
//! requirement IDs (CLI-nnn) of the project's requirements list.
//!
//! Data flows one way: [`scenario`] (files -> typed scenarios -> cases; the
//! built-in [`suite`] or files on disk) ->
//! [`runner`] (a server and a folder per case, the adapter, deadlines) ->
//! [`adapter`] (builtin, command, your own) -> [`verify`] (output vs the job's
//! export) and [`checks`] (pure functions of transcript + run + case) ->
//! [`report`] (JSON is the source; terminal and snapshots render from it).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use bulkmock_harness::{adapter, runner, suite};
//! // The built-in suite (or `suite::from_paths(&["scenarios/status".into()])`).
//! let cases = suite::builtin().area("status").into_cases();
//! let report = runner::run(cases, Arc::new(adapter::Builtin::default()), &runner::RunOptions::default(), &|_| {})
//!     .await
//!     .unwrap();
//! assert!(report.passed(false));
//! # }
//! ```
//!
//! From `cargo test`, the feature `testing` gives [`testing::Conformance`]:
//! one trial per case, each snapshotted (docs/rust.md).

pub mod adapter;
pub mod checks;
pub mod coverage;
pub mod prelude;
pub mod profile;
pub mod report;
pub mod requirements;
pub mod runner;
pub mod scenario;
pub mod suite;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verify;

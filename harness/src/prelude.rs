//! What a test needs, in one `use bulkmock_harness::prelude::*;`.
//!
//! Two verdicts: [`CaseVerdict`] is a case's (pass, fail, warn, error,
//! timeout, not applicable), [`CheckVerdict`] one check's within it.

pub use crate::adapter::{Builtin, CaseContext, ClientAdapter, ClientRun, Command, RunFuture, from_fn};
pub use crate::checks::{Level, Verdict as CheckVerdict};
pub use crate::profile::ClientProfile;
pub use crate::report::snapshot::{Snapshot, snapshot_name};
pub use crate::report::{CaseResult, CaseVerdict, RunReport};
pub use crate::runner::RunOptions;
pub use crate::scenario::{Case, ClientSpec, LevelName};
pub use crate::suite::ScenarioSuite;
#[cfg(feature = "testing")]
pub use crate::testing::{Conformance, Require};

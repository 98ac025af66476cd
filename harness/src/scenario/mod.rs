//! Scenarios: TOML files -> typed [`Scenario`]s -> expanded [`Case`]s.

pub mod load;
pub mod model;

pub use load::{Case, ScenarioError, ScenarioFile, load_file, load_paths, parse};
pub use model::{
    Alg, ClientSpec, Expect, ExpectedOutcome, Incremental, JwksMode, LevelName, OutputExpectation, Recovery,
    RecoveryLevel, Scenario, ServerSpec, SnapshotDetail,
};

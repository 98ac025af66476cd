//! Fault injection: a typed plan of rules (`model`), the engine that decides
//! which rule fires (`engine`), the middleware that makes it happen on the
//! wire (`apply`), and the plan file parser (`file`).

pub mod apply;
mod body;
pub mod capability;
pub mod engine;
pub mod file;
pub mod invariants;
pub mod model;
pub mod profile;
pub mod required;
pub mod rewrite;
mod shape;

pub use engine::{FaultEngine, Fired, RequestFacts, RuleStatus};
pub use model::{BodyKind, Fault, FaultPlan, FaultRule, Target, Trigger};

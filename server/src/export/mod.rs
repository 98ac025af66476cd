//! The `$export` operation: parameters, planning, file content, jobs.

pub mod content;
pub mod digest;
pub mod elements;
pub mod expected;
pub mod job;
pub mod manifest;
pub mod params;
pub mod plan;
pub mod type_filter;

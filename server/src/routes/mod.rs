//! HTTP handlers, one file per endpoint family.

pub mod files;
pub mod group_create;
pub mod groups;
pub mod kickoff;
pub mod metadata;
pub mod status;

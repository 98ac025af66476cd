//! Workspace-level tests of bulkmock.
//!
//! The README is included here so that its Rust examples are compiled and run
//! as doc tests by `cargo test`: the quick start cannot drift from the code.
#![doc = include_str!("../../README.md")]

pub mod wire;

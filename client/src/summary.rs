//! What an export produced.

use std::collections::BTreeMap;

use serde::Serialize;

/// The result of a download: counts per type, bytes, retries, errors.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The job's status URL.
    pub status_url: String,
    /// The manifest's `transactionTime` (the next `_since` for an incremental pull, CLI-054).
    pub transaction_time: String,
    /// Resources written per type.
    pub resources: BTreeMap<String, u64>,
    /// Entries in `deleted` files (Bundles of DELETEs, CLI-087).
    pub deleted: u64,
    /// OperationOutcomes in `error` files (CLI-070, CLI-088).
    pub errors: u64,
    /// The first issues of those OperationOutcomes, as `severity: text`.
    pub error_issues: Vec<String>,
    /// Files downloaded.
    pub files: u64,
    /// Body bytes received on the wire (compressed when gzip).
    pub bytes: u64,
    /// Requests retried (polls, files, kick-off).
    pub retries: u64,
    /// Token requests made.
    pub token_requests: u32,
}

impl Summary {
    /// All resources written.
    pub fn total_resources(&self) -> u64 {
        self.resources.values().sum()
    }
}

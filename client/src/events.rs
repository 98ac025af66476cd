//! What the client reports while it works: one event stream feeds the CLI's
//! progress bars, its plain log lines and its JSON event log.

use std::sync::Arc;

use serde::Serialize;

/// One thing that happened during an export.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An access token was obtained (a renewal after expiry or a 401 when `renewal`).
    Token {
        /// Whether a token was held before.
        renewal: bool,
        /// The scope the server granted, when it said.
        granted_scope: Option<String>,
    },
    /// The server granted less than was asked (CLI-026).
    ScopeNarrowed {
        /// What was asked.
        requested: String,
        /// What was granted.
        granted: String,
    },
    /// A `_typeFilter` names a search parameter the server's CapabilityStatement
    /// does not list for the type (CLI-049); the kick-off goes ahead.
    TypeFilterUnsupported {
        /// The `_typeFilter` query.
        filter: String,
        /// The parameter not listed.
        parameter: String,
    },
    /// The export was accepted.
    KickedOff {
        /// The status URL to poll.
        status_url: String,
    },
    /// The job is still running.
    InProgress {
        /// The server's `X-Progress` text, shown as is (CLI-064).
        progress: Option<String>,
        /// How long the client waits before the next poll.
        wait_ms: u64,
    },
    /// A manifest (or a page of one) arrived.
    Manifest {
        /// The URL it came from.
        url: String,
        /// Files on it not seen before.
        new_files: usize,
        /// Whether the export is complete (no more pages).
        complete: bool,
    },
    /// File URLs were renewed by fetching the manifest again (CLI-080).
    UrlsRenewed {
        /// The manifest URL fetched again.
        url: String,
    },
    /// A file download started.
    FileStarted {
        /// The file's number in manifest order (0-based).
        file: usize,
        /// Its URL.
        url: String,
        /// Its `type`.
        resource_type: Option<String>,
    },
    /// Body bytes of a file arrived (frequent: the JSON log leaves these out).
    FileBytes {
        /// The file's number.
        file: usize,
        /// Bytes in this chunk, as received on the wire.
        bytes: u64,
    },
    /// A file is complete and every line checked.
    FileDone {
        /// The file's number.
        file: usize,
        /// Its `type`.
        resource_type: Option<String>,
        /// Lines (resources) it held.
        resources: u64,
        /// Bytes received on the wire for it, over all attempts.
        bytes: u64,
    },
    /// A request failed in a way that may pass; it is tried again after `wait_ms`.
    Retry {
        /// The request URL.
        url: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        wait_ms: u64,
        /// What went wrong.
        reason: String,
    },
    /// The job was deleted on the server (CLI-100).
    Deleted {
        /// Its status URL.
        status_url: String,
    },
    /// The client adapted to the server's dialect (a production quirk): a GET
    /// kick-off after a refused POST, a Group found by search after its id
    /// answered 404, resources beyond an ignored `_typeFilter` (CLI-048).
    Adapted {
        /// What the client noticed and did.
        note: String,
    },
    /// The clean-up DELETE failed; the export itself succeeded (CLI-100 is a MAY).
    DeleteFailed {
        /// Its status URL.
        status_url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Receives every event; must be cheap (it runs on the download path).
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// An observer that ignores everything.
pub fn ignore() -> Observer {
    Arc::new(|_| {})
}

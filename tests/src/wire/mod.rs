//! The wire-validity observer: checks every response a mock sent during one
//! case against a description of the wire format written here from the
//! specifications (FHIR Bulk Data, SMART Backend Services, RFC 6749, HTTP,
//! NDJSON), never from the server's own types.
//!
//! Routes are learned from the wire itself: status URLs from kick-off
//! `Content-Location`s and manifest `link`s, file URLs from manifests, the
//! token endpoint from discovery. Each response is then held to the
//! invariants of its route ([`Invariant`]) except those the fault or quirk
//! that shaped it declares broken on purpose.

mod body;
mod json;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bulkmock_server::capture::CapturedResponse;
use bulkmock_server::faults::invariants::Invariant;

/// One response that broke an invariant no fault or quirk declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant.
    pub invariant: Invariant,
    /// The exchange: transcript seq, method and path.
    pub at: String,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.invariant.name(), self.at, self.message)
    }
}

/// What a request was, as learned from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Kickoff,
    Status,
    Delete,
    File,
    Token,
    Discovery,
    Metadata,
    /// Group read, search and create: FHIR REST.
    Fhir,
    /// Anything else (attachments, unknown paths).
    Other,
}

/// A file listed in a manifest.
#[derive(Debug, Clone)]
struct Listed {
    /// The manifest's member: `output`, `error` or `deleted`.
    member: &'static str,
    /// The entry's `type`, when given.
    kind: Option<String>,
    /// The entry's `count`, when given.
    count: Option<u64>,
    /// The entry's SHA-256 extension, when given.
    sha256: Option<String>,
    /// Whether the manifest organised output by a type (headers in files, no `type`).
    organised: bool,
    /// The manifest response's deliberate breaks.
    deliberate: Vec<Invariant>,
    /// Where the manifest was served.
    at: String,
}

/// A file body served whole, as read.
#[derive(Debug, Clone)]
struct Served {
    at: String,
    /// The resourceType of each line.
    types: Vec<String>,
    sha256: String,
    deliberate: Vec<Invariant>,
}

/// The state of one case's observation.
#[derive(Default)]
struct Observation {
    violations: Vec<Violation>,
    status_paths: BTreeSet<String>,
    token_paths: BTreeSet<String>,
    files: BTreeMap<String, Vec<Listed>>,
    served: BTreeMap<String, Vec<Served>>,
}

impl Observation {
    /// Records a violation unless `response` declares `invariant` broken.
    fn fail(&mut self, response: &CapturedResponse, invariant: Invariant, message: impl Into<String>) {
        if !response.deliberate.contains(&invariant) {
            self.violations.push(Violation { invariant, at: at(response), message: message.into() });
        }
    }
}

/// Where a response was served, for messages: `#12 GET /fhir/bulkstatus/x`.
fn at(response: &CapturedResponse) -> String {
    let seq = response.seq.map_or_else(|| "#-".to_string(), |s| format!("#{s}"));
    format!("{seq} {} {}", response.method, response.path)
}

/// Checks every response of one case; returns what broke an undeclared invariant.
pub fn observe(responses: &[CapturedResponse]) -> Vec<Violation> {
    let mut seen = Observation::default();
    let mut ordered: Vec<&CapturedResponse> = responses.iter().collect();
    ordered.sort_by_key(|r| r.seq.unwrap_or(u64::MAX));
    // Learn the routes first: each response may name later ones.
    for response in &ordered {
        rules::learn(&mut seen, response);
    }
    for response in &ordered {
        let route = route_of(&seen, response);
        rules::check(&mut seen, route, response);
    }
    rules::cross_check(&mut seen);
    seen.violations
}

/// The route of a request, by what earlier responses said the URLs are.
fn route_of(seen: &Observation, response: &CapturedResponse) -> Route {
    let path = response.path.as_str();
    let method = response.method.as_str();
    if seen.files.contains_key(path) && method == "GET" {
        Route::File
    } else if seen.status_paths.contains(path) {
        if method == "DELETE" { Route::Delete } else { Route::Status }
    } else if path.ends_with("/$export") {
        Route::Kickoff
    } else if seen.token_paths.contains(path) || (method == "POST" && path.ends_with("/auth/token")) {
        Route::Token
    } else if path.ends_with("/.well-known/smart-configuration") {
        Route::Discovery
    } else if path.ends_with("/metadata") {
        Route::Metadata
    } else if path.contains("/Group") {
        Route::Fhir
    } else {
        Route::Other
    }
}

/// The path of a URL, absolute or relative (`http://h:1/a/b?q` -> `/a/b`).
fn path_of(url: &str) -> String {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    };
    rest.split(['?', '#']).next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_urls() {
        assert_eq!(path_of("http://127.0.0.1:80/fhir/bulkfiles/j/1.ndjson?cap=x"), "/fhir/bulkfiles/j/1.ndjson");
        assert_eq!(path_of("/fhir/bulkstatus/j"), "/fhir/bulkstatus/j");
        assert_eq!(path_of("https://h"), "/");
    }
}

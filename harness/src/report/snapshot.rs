//! A normalised, redacted outcome of a case, for `insta::assert_yaml_snapshot!`:
//! no ports, job ids, times, tokens or temp paths; maps sorted; requests
//! summarised by route and status. Public so users can snapshot their own runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::CaseResult;
use crate::checks::Verdict;

/// The snapshot of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The case id.
    pub case: String,
    /// The verdict.
    pub verdict: String,
    /// Expected and observed outcome and the exit code.
    pub outcome: SnapshotOutcome,
    /// Output differences of a client that reported success: `missing`, `extra`,
    /// `duplicated`, `corrupted` (zero ones left out; empty when it did not
    /// finish, as what a stopped client leaves behind varies).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output: BTreeMap<String, u64>,
    /// Each check's verdict (skipped checks left out).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, String>,
    /// Requests by route (job ids removed), with the statuses answered: counts
    /// are left out, as retries and token renewals may vary with timing.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, BTreeSet<u16>>,
}

/// The outcome part of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotOutcome {
    /// `complete`, `fail_cleanly` or `partial`.
    pub expected: String,
    /// What happened.
    pub observed: String,
    /// The exit code.
    pub exit_code: Option<i32>,
}

impl Snapshot {
    /// Only the verdict and the outcome: for cases whose exchanges depend on timing.
    pub fn outcome_of(case: &CaseResult) -> Snapshot {
        Snapshot { output: BTreeMap::new(), checks: BTreeMap::new(), requests: BTreeMap::new(), ..Snapshot::of(case) }
    }

    /// The snapshot of a case result.
    pub fn of(case: &CaseResult) -> Snapshot {
        let o = &case.outcome.output;
        let output = [
            ("expected_resources", o.expected_resources),
            ("missing", o.missing),
            ("extra", o.extra),
            ("duplicated", o.duplicated),
            ("corrupted", o.corrupted),
            ("deleted_missing", o.deleted.missing),
            ("deleted_but_present", o.deleted_but_present),
        ]
        .into_iter()
        .filter(|(k, n)| (*n > 0 || *k == "expected_resources") && case.outcome.observed == "complete")
        .map(|(k, n)| (k.to_string(), n))
        .collect();
        Snapshot {
            case: case.id.clone(),
            verdict: case.verdict.as_str().to_string(),
            outcome: SnapshotOutcome {
                expected: case.outcome.expected.clone(),
                observed: case.outcome.observed.clone(),
                exit_code: case.outcome.exit_code,
            },
            output,
            checks: case
                .checks
                .iter()
                .filter(|c| c.verdict != Verdict::Skip)
                .map(|c| (c.id.clone(), c.verdict.as_str().to_string()))
                .collect(),
            requests: case.exchanges.iter().fold(BTreeMap::new(), |mut m, x| {
                let path = x.url.split('?').next().unwrap_or_default();
                m.entry(route_of(&x.method, path)).or_default().insert(x.status);
                m
            }),
        }
    }
}

/// Replaces what changes between runs in a path: job ids, file names (which
/// file a fault hits first depends on parallel download order), page numbers.
pub fn route_of(method: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut prev = "";
    for (i, seg) in path.split('/').enumerate() {
        let shown = match (prev, parts.get(i.wrapping_sub(2)).copied()) {
            ("bulkstatus" | "bulkfiles", _) => "{job}",
            (_, Some("bulkfiles")) => "{file}",
            ("page", _) => "{n}",
            _ => seg,
        };
        parts.push(shown);
        prev = seg;
    }
    format!("{method} {}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_lose_their_job_ids() {
        assert_eq!(
            super::route_of("GET", "/fhir/bulkfiles/0a1b2c/0.Patient.ndjson"),
            "GET /fhir/bulkfiles/{job}/{file}"
        );
        assert_eq!(super::route_of("GET", "/fhir/bulkstatus/0a1b2c/page/3"), "GET /fhir/bulkstatus/{job}/page/{n}");
        assert_eq!(super::route_of("DELETE", "/fhir/bulkstatus/0a1b2c"), "DELETE /fhir/bulkstatus/{job}");
    }
}

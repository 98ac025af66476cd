//! Merging the JSON results of the shards of one run (`bulkmock run --shard K/N`)
//! into one [`RunReport`], refusing results that do not belong together.

use std::collections::BTreeMap;

use super::{CaseResult, RunReport, Suite};

/// Why shard results cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no results to merge")]
    Empty,
    /// A result without a `suite` (not written by `bulkmock run`, or by an older version).
    #[error("{0}: no `suite` identity (write it with `bulkmock run ... --json`); cannot tell its scenario set")]
    NoSuite(String),
    /// Two results differ in seed, client, bulkmock version or scenario set.
    #[error("{first} and {other} differ in {field}: {first_value} vs {other_value}; shards of one run share it")]
    Mismatch {
        /// `seed`, `client`, `bulkmock_version` or `suite`.
        field: &'static str,
        /// The first result's name.
        first: String,
        /// Its value.
        first_value: String,
        /// The differing result's name.
        other: String,
        /// Its value.
        other_value: String,
    },
    /// A case is in two results.
    #[error("case {id} is in both {first} and {other}: shards of one run never overlap (the same file twice?)")]
    Overlap {
        /// The case id.
        id: String,
        /// The first result holding it.
        first: String,
        /// The second.
        other: String,
    },
    /// Fewer cases than the suite holds: a shard is missing.
    #[error(
        "the results hold {found} of the suite's {total} cases: a shard is missing (--allow-missing merges anyway)"
    )]
    Missing {
        /// Cases found.
        found: u64,
        /// Cases in the suite.
        total: u64,
    },
}

/// Merges named shard results (`(file name, report)`): same seed, client,
/// bulkmock version and suite; no case twice; together every case of the
/// suite unless `allow_missing`. The summary is recomputed.
pub fn merge(results: Vec<(String, RunReport)>, allow_missing: bool) -> Result<RunReport, MergeError> {
    let mut iter = results.into_iter();
    let (first_name, first) = iter.next().ok_or(MergeError::Empty)?;
    let suite = first.suite.clone().ok_or_else(|| MergeError::NoSuite(first_name.clone()))?;
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut cases: Vec<CaseResult> = Vec::new();
    let mut take = |name: &str, report: RunReport| -> Result<(), MergeError> {
        for case in report.cases {
            if let Some(first) = owner.insert(case.id.clone(), name.to_string()) {
                return Err(MergeError::Overlap { id: case.id, first, other: name.to_string() });
            }
            cases.push(case);
        }
        Ok(())
    };
    let (seed, client, version) = (first.seed, first.client.clone(), first.bulkmock_version.clone());
    let time_scale = first.time_scale;
    take(&first_name, first)?;
    for (name, report) in iter {
        let other_suite = report.suite.clone().ok_or_else(|| MergeError::NoSuite(name.clone()))?;
        let mismatch = |field, a: String, b: String| MergeError::Mismatch {
            field,
            first: first_name.clone(),
            first_value: a,
            other: name.clone(),
            other_value: b,
        };
        if report.seed != seed {
            return Err(mismatch("seed", seed.to_string(), report.seed.to_string()));
        }
        if report.client != client {
            return Err(mismatch("client", client.clone(), report.client.clone()));
        }
        if report.bulkmock_version != version {
            return Err(mismatch("bulkmock_version", version.clone(), report.bulkmock_version.clone()));
        }
        if report.time_scale != time_scale {
            return Err(mismatch("time_scale", time_scale.to_string(), report.time_scale.to_string()));
        }
        // The same scenarios, however they were named (built in, or paths spelled otherwise).
        if (&other_suite.digest, other_suite.cases_total) != (&suite.digest, suite.cases_total) {
            return Err(mismatch("suite", describe(&suite), describe(&other_suite)));
        }
        take(&name, report)?;
    }
    let found = cases.len() as u64;
    if found < suite.cases_total && !allow_missing {
        return Err(MergeError::Missing { found, total: suite.cases_total });
    }
    let mut merged = RunReport::new(seed, client, cases);
    merged.bulkmock_version = version;
    merged.suite = Some(suite);
    merged.time_scale = time_scale;
    Ok(merged)
}

fn describe(suite: &Suite) -> String {
    format!("{} ({} cases)", suite.digest, suite.cases_total)
}

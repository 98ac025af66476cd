//! The result of a run. The JSON form is the source every other report
//! renders from, and a stable contract (docs/harness.md documents it).

pub mod html;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod snapshot;
pub mod terminal;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checks::{CheckResult, Level, Verdict};
use crate::verify::OutputReport;

/// The verdict of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseVerdict {
    /// Every MUST and SHOULD check passed (or was skipped).
    Pass,
    /// A MUST check failed.
    Fail,
    /// Only SHOULD checks failed.
    Warn,
    /// The case could not be run (the harness or the client's launch failed).
    Error,
    /// The client was still running at the deadline and was killed.
    Timeout,
    /// The case needs something the client does not do: its profile does not
    /// claim it, or (without a profile) the client did not make the request the
    /// case needs. Counted apart: neither pass nor fail.
    NotApplicable,
}

impl CaseVerdict {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseVerdict::Pass => "pass",
            CaseVerdict::Fail => "fail",
            CaseVerdict::Warn => "warn",
            CaseVerdict::Error => "error",
            CaseVerdict::Timeout => "timeout",
            CaseVerdict::NotApplicable => "not_applicable",
        }
    }
}

/// How a case ended, against what was expected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// `complete`, `fail_cleanly` or `partial`.
    pub expected: String,
    /// `complete` (exit 0), `failed` (non-zero exit), `timeout`, `flooded` (stopped past the
    /// request bound), `killed` (a signal) or `not_started`.
    pub observed: String,
    /// The client's exit code.
    pub exit_code: Option<i32>,
    /// Wall time of the client, seconds.
    pub seconds: f64,
    /// Requests the client sent to the mock.
    pub requests: u64,
    /// The output compared with the expected export.
    pub output: OutputReport,
    /// The last lines of the client's stderr.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    /// The last lines of the client's stdout (some clients report failures there).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
}

/// One case's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case id.
    pub id: String,
    /// The scenario id.
    pub scenario: String,
    /// The scenario's title.
    pub title: String,
    /// The scenario's requirement IDs.
    pub requirements: Vec<String>,
    /// The matrix values of this case.
    pub matrix: BTreeMap<String, String>,
    /// The verdict.
    pub verdict: CaseVerdict,
    /// How it ended.
    pub outcome: Outcome,
    /// Every check that ran.
    pub checks: Vec<CheckResult>,
    /// Every exchange of the case, in order: the timeline the evidence points into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<crate::checks::ExchangeRef>,
    /// Why the case could not be run, for `error` verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fault rules that matched but could not act (a byte offset past the end
    /// of the body they met), each with why: the part of the case they stand
    /// for tested nothing for this client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults_not_applied: Vec<String>,
    /// What the case needs that the client does not do, for `not_applicable` verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    /// The case's folder, when kept (`--keep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The one command that re-runs this case alone.
    pub rerun: String,
}

impl CaseResult {
    /// The verdict from the run and the checks.
    pub fn verdict_of(timed_out: bool, error: bool, checks: &[CheckResult]) -> CaseVerdict {
        if error {
            CaseVerdict::Error
        } else if timed_out {
            CaseVerdict::Timeout
        } else if checks.iter().any(|c| c.verdict == Verdict::Fail) {
            CaseVerdict::Fail
        } else if checks.iter().any(|c| c.verdict == Verdict::Warn) {
            CaseVerdict::Warn
        } else {
            CaseVerdict::Pass
        }
    }
}

/// Passed and exercised checks of one level, across all cases (for a badge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// Checks of this level that passed.
    pub passed: u64,
    /// Checks of this level that were exercised (not skipped).
    pub total: u64,
}

/// Counts over all cases.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Cases run.
    pub cases: u64,
    /// Cases that passed.
    pub passed: u64,
    /// Cases with a failed MUST check.
    pub failed: u64,
    /// Cases with only failed SHOULD checks.
    pub warned: u64,
    /// Cases that could not be run (timeouts are counted apart, in `timeouts`).
    pub errors: u64,
    /// Cases stopped at their deadline.
    pub timeouts: u64,
    /// Cases that need something the client does not do (not run, or not judged).
    #[serde(default)]
    pub not_applicable: u64,
    /// MUST checks passed / exercised.
    pub must: Score,
    /// SHOULD checks passed / exercised.
    pub should: Score,
}

impl Summary {
    /// Cases per case verdict, in report order.
    pub fn by_verdict(&self) -> [(&'static str, u64); 6] {
        [
            ("pass", self.passed),
            ("warn", self.warned),
            ("fail", self.failed),
            ("error", self.errors),
            ("timeout", self.timeouts),
            ("not applicable", self.not_applicable),
        ]
    }
}

/// The whole result of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's seed: the same seed reproduces the same data and faults.
    pub seed: u64,
    /// The client: `builtin`, or the command template.
    pub client: String,
    /// The bulkmock version that judged.
    pub bulkmock_version: String,
    /// The scenario set the cases were selected from, before sharding: the
    /// scenario-suite version (set by `bulkmock run`; `report merge` requires it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<Suite>,
    /// The name of the client profile in force (`--client-profile`), if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_profile: Option<String>,
    /// The factor every case's `max_seconds` was multiplied by (`--time-scale`).
    #[serde(default = "unscaled")]
    pub time_scale: f64,
    /// Every case, in id order.
    pub cases: Vec<CaseResult>,
    /// Counts.
    pub summary: Summary,
}

fn unscaled() -> f64 {
    1.0
}

/// The identity of a scenario selection (after `--filter`, before `--shard`):
/// the shards of one run share it, different scenario sets differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suite {
    /// Cases in the selection, over all shards.
    pub cases_total: u64,
    /// `sha256:` and the hex SHA-256 of every case id in the selection and
    /// every scenario file's bytes.
    pub digest: String,
    /// Where the scenarios came from: `builtin` (compiled into bulkmock) or
    /// `paths` (files and folders); absent in results of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// With `source = "paths"`: the files and folders, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl Suite {
    /// The identity of `cases` (in any order), hashing the case ids and the
    /// bytes of their scenario files (built-in ones from the build; unreadable
    /// files count as empty); no source (see `suite::ScenarioSuite::identity`).
    pub fn of(cases: &[crate::scenario::Case]) -> Suite {
        let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        let mut files: BTreeMap<&str, &std::path::Path> = BTreeMap::new();
        for c in cases {
            files.insert(c.scenario_id.as_str(), c.path.as_path());
        }
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for id in &ids {
            ctx.update(b"case\0");
            ctx.update(id.as_bytes());
            ctx.update(b"\0");
        }
        for (scenario, path) in files {
            let bytes = crate::suite::scenario_bytes(path);
            ctx.update(b"file\0");
            ctx.update(scenario.as_bytes());
            ctx.update(b"\0");
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(&bytes);
        }
        let hex: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Suite { cases_total: ids.len() as u64, digest: format!("sha256:{hex}"), source: None, paths: Vec::new() }
    }
}

impl RunReport {
    /// A report over `cases` (sorted by id here).
    pub fn new(seed: u64, client: String, mut cases: Vec<CaseResult>) -> RunReport {
        cases.sort_by(|a, b| a.id.cmp(&b.id));
        let summary = summarize(&cases);
        RunReport {
            seed,
            client,
            bulkmock_version: env!("CARGO_PKG_VERSION").to_string(),
            suite: None,
            client_profile: None,
            time_scale: 1.0,
            cases,
            summary,
        }
    }

    /// Whether the run passes: no MUST failure, error or timeout (`strict`: no SHOULD failure either).
    pub fn passed(&self, strict: bool) -> bool {
        self.cases.iter().all(|c| match c.verdict {
            CaseVerdict::Pass | CaseVerdict::NotApplicable => true,
            CaseVerdict::Warn => !strict,
            _ => false,
        })
    }
}

fn summarize(cases: &[CaseResult]) -> Summary {
    let mut s = Summary { cases: cases.len() as u64, ..Summary::default() };
    for c in cases {
        match c.verdict {
            CaseVerdict::Pass => s.passed += 1,
            CaseVerdict::Fail => s.failed += 1,
            CaseVerdict::Warn => s.warned += 1,
            CaseVerdict::Error => s.errors += 1,
            CaseVerdict::Timeout => s.timeouts += 1,
            CaseVerdict::NotApplicable => s.not_applicable += 1,
        }
        // A case the client does not apply to scores nothing, either way.
        if c.verdict == CaseVerdict::NotApplicable {
            continue;
        }
        for check in c.checks.iter().filter(|k| k.verdict != Verdict::Skip) {
            let score = match check.level {
                Level::Must => &mut s.must,
                Level::Should => &mut s.should,
                Level::May => continue,
            };
            score.total += 1;
            if check.verdict == Verdict::Pass {
                score.passed += 1;
            }
        }
    }
    s
}

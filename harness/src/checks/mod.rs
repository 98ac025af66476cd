//! The checks library: named checks over the recorded transcript, the client
//! run and the verified output, each with the requirement IDs it proves and a
//! level. Checks are pure functions: they never touch the network or the
//! clock, so they are unit-testable with hand-written transcripts.
//!
//! One file per family: `auth`, `kickoff`, `polling`, `files`, `output`,
//! `outcome`, `etiquette`.

mod auth;
mod etiquette;
mod files;
mod kickoff;
mod outcome;
mod output;
mod polling;
pub mod wire;

use serde::{Deserialize, Serialize};

use crate::adapter::ClientRun;
use crate::scenario::Case;
use crate::verify::OutputReport;
use bulkmock_server::Exchange;

/// How strongly a requirement binds a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// SHALL / SHALL NOT / required.
    #[serde(rename = "MUST")]
    Must,
    /// SHOULD / SHOULD NOT: a miss is a warning.
    #[serde(rename = "SHOULD")]
    Should,
    /// MAY / best practice: a miss is information.
    #[serde(rename = "MAY")]
    May,
}

impl Level {
    /// `MUST`, `SHOULD` or `MAY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

/// The verdict of one check on one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exercised and met.
    Pass,
    /// A MUST not met.
    Fail,
    /// A SHOULD not met.
    Warn,
    /// A MAY not met (information only).
    Info,
    /// The case did not exercise it.
    Skip,
}

impl Verdict {
    /// The verdict of an unmet requirement of `level`: fail, warn or info.
    pub fn missed_at(level: Level) -> Verdict {
        match level {
            Level::Must => Verdict::Fail,
            Level::Should => Verdict::Warn,
            Level::May => Verdict::Info,
        }
    }
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Warn => "warn",
            Verdict::Info => "info",
            Verdict::Skip => "skip",
        }
    }
}

/// One exchange named as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRef {
    /// Order of arrival at the server.
    pub seq: u64,
    /// Milliseconds since the server started.
    pub at_ms: u64,
    /// Method.
    pub method: String,
    /// Path (and query).
    pub url: String,
    /// Response status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The fault that fired, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl std::fmt::Display for ExchangeRef {
    /// `#4 +120 ms GET /fhir/bulkstatus/... -> 202 (0 bytes) fault status#1`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} +{} ms {} {} -> {} ({} bytes)",
            self.seq, self.at_ms, self.method, self.url, self.status, self.bytes
        )?;
        if let Some(fault) = &self.fault {
            write!(f, " fault {fault}")?;
        }
        Ok(())
    }
}

impl From<&Exchange> for ExchangeRef {
    fn from(e: &Exchange) -> Self {
        let url = match &e.query {
            Some(q) => format!("{}?{}", e.path, q),
            None => e.path.clone(),
        };
        ExchangeRef {
            seq: e.seq,
            at_ms: e.at_ms,
            method: e.method.clone(),
            url,
            status: e.status,
            bytes: e.bytes,
            fault: e.fault.clone(),
        }
    }
}

/// Why a check failed: a sentence and the exchanges involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What was wrong, in one or two sentences.
    pub message: String,
    /// The exchanges involved (at most a few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<ExchangeRef>,
}

impl Evidence {
    /// A message and the first few exchanges involved.
    pub fn of<'a>(message: impl Into<String>, exchanges: impl IntoIterator<Item = &'a Exchange>) -> Evidence {
        Evidence { message: message.into(), exchanges: exchanges.into_iter().take(6).map(ExchangeRef::from).collect() }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Exercised and met.
    Pass,
    /// Not exercised, with why.
    Skip(String),
    /// Not met.
    Miss(Evidence),
    /// Not met, judged at the level of the requirements of this diagnosis
    /// rather than the check's own: one check may find a MUST breach in one
    /// case and a SHOULD shortfall in another (a cut body kept is CLI-092,
    /// MUST; decimals re-spelled are a SHOULD).
    MissAt {
        /// The level of the requirement this diagnosis breaches.
        level: Level,
        /// The requirement IDs of this diagnosis.
        requirements: Vec<String>,
        /// What happened.
        evidence: Evidence,
    },
}

impl Finding {
    /// A miss with a message and exchanges.
    pub fn miss<'a>(message: impl Into<String>, exchanges: impl IntoIterator<Item = &'a Exchange>) -> Finding {
        Finding::Miss(Evidence::of(message, exchanges))
    }
    /// A miss judged at `level` and citing `requirements` (see [`Finding::MissAt`]).
    pub fn miss_at<'a>(
        level: Level,
        requirements: &[&str],
        message: impl Into<String>,
        exchanges: impl IntoIterator<Item = &'a Exchange>,
    ) -> Finding {
        let evidence = Evidence::of(message, exchanges);
        Finding::MissAt { level, requirements: requirements.iter().map(|r| r.to_string()).collect(), evidence }
    }
    /// A skip with a reason.
    pub fn skip(reason: &str) -> Finding {
        Finding::Skip(reason.to_string())
    }
}

/// The result of one check on one case, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's id (`auth.fresh_jti`).
    pub id: String,
    /// Requirement IDs it proves.
    pub requirements: Vec<String>,
    /// MUST, SHOULD or MAY.
    pub level: Level,
    /// The verdict.
    pub verdict: Verdict,
    /// Why it failed, warned or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Facts about the export job the client started, from the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobFacts {
    /// The job's id (its files are under `bulkfiles/{id}/`); empty in judge files of older versions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `system`, `patient` or `group`.
    pub level: String,
    /// The Group id for group exports.
    pub group: Option<String>,
    /// Exported types, in output order.
    pub types: Vec<String>,
    /// Whether `_since` was given.
    pub since: bool,
    /// Whether `_until` was given.
    pub until: bool,
    /// Whether `_elements` was given.
    pub elements: bool,
    /// Whether `_typeFilter` was given.
    pub type_filters: bool,
    /// Patients in the export (the `patient` parameter's count when given).
    pub patients: u64,
    /// Whether `organizeOutputBy` was given.
    pub organized: bool,
    /// Whether `includeAssociatedData` was given (any value).
    #[serde(default)]
    pub associated_data: bool,
    /// Whether `allowPartialManifests=true` was given.
    pub partial_manifests: bool,
    /// Every file the manifest lists: output, deleted and error file names.
    pub files: Vec<String>,
    /// POST parameters the client joined with commas in one value instead of
    /// repeating the entry (CLI-045).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comma_joined: Vec<String>,
    /// Resources served beyond the `_typeFilter` the client asked for, because
    /// the server ignored it (quirk `ignores-type-filter`, CLI-048).
    #[serde(default)]
    pub beyond_type_filter: u64,
    /// Parameters the client sent that the server ignored under
    /// `Prefer: handling=lenient` and reported in the error file (SRV-046): what
    /// the client asked for, though the export went on without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lenient_ignored: Vec<String>,
    /// What the manifest the client got said in `requiresAccessToken`: the
    /// mock's follows its authorization setting; a proxied upstream's is read
    /// from the manifests as it served them (`true` when any page said so).
    /// `None` when unknown (no manifest with a boolean `requiresAccessToken`
    /// passed the proxy): the token rules on files are then not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_access_token: Option<bool>,
}

/// One run of the client in an `[incremental]` case, from the server's side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFacts {
    /// `full` or `incremental`.
    pub run: String,
    /// The data's revision during the run.
    pub revision: u64,
    /// The sequence number of the run's first exchange.
    pub first_seq: u64,
    /// The export jobs the client kicked off during the run, in order.
    pub jobs: Vec<RunJob>,
}

/// An export job of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunJob {
    /// The `_since` the kick-off sent (Unix seconds), if any.
    pub since: Option<i64>,
    /// The job's `transactionTime` (Unix seconds).
    pub transaction_time: i64,
}

/// Everything a check may look at.
pub struct Input<'a> {
    /// The case.
    pub case: &'a Case,
    /// The exchanges of the case's client (all of the case's server).
    pub exchanges: &'a [Exchange],
    /// How the client run ended.
    pub run: &'a ClientRun,
    /// The output compared with the expected export.
    pub output: &'a OutputReport,
    /// The job the client started, if it started one.
    pub job: Option<&'a JobFacts>,
    /// The case's FHIR base URL.
    pub fhir_base: &'a str,
    /// The token endpoint URL.
    pub token_url: &'a str,
    /// The registered client id.
    pub client_id: &'a str,
    /// The client's runs in an `[incremental]` case (empty otherwise).
    pub runs: &'a [RunFacts],
}

/// Whether the client says its output folder holds the export: it exited 0,
/// or, in a partial-success case, it ended with its own non-zero exit after
/// reporting the server's errors (its files are judged, not its exit code).
pub fn reported_data(input: &Input) -> bool {
    let run = input.run;
    match run.exit_code {
        Some(0) => true,
        Some(_) => input.case.scenario.expect.outcome == crate::scenario::ExpectedOutcome::Partial,
        None => false,
    }
}

impl Input<'_> {
    /// Whether authorization was on.
    pub fn auth(&self) -> bool {
        self.case.scenario.server.auth
    }

    /// What the manifest the client got said in `requiresAccessToken`, when known
    /// (never the scenario's `[server]` auth: through a proxy the upstream decides).
    pub fn requires_access_token(&self) -> Option<bool> {
        self.job.and_then(|j| j.requires_access_token)
    }

    /// The kick-off the server accepted under `Prefer: handling=lenient` while
    /// ignoring (and reporting) some of its parameters: from then on the case is
    /// an ordinary export of what remained, whatever failure it set up.
    pub fn lenient_kickoff(&self) -> Option<&Exchange> {
        let job = self.job?;
        if job.lenient_ignored.is_empty() {
            return None;
        }
        self.exchanges.iter().find(|e| {
            wire::route(e) == Some(wire::Route::Kickoff)
                && e.status == 202
                && wire::request_header(e, "prefer").is_some_and(|p| p.contains("handling=lenient"))
        })
    }

    /// Why no check may say the client "gave up" or "never" did something after
    /// `e`: the harness stopped it first (at the deadline, or for flooding).
    pub fn stopped_after(&self, e: &Exchange) -> Option<String> {
        let run = self.run;
        if !(run.timed_out || run.flooded) {
            return None;
        }
        let how = if run.timed_out { "at the case's deadline" } else { "for flooding the server" };
        let waited = run.ended_unix_ms.map(|end| end.saturating_sub(e.unix_ms) as f64 / 1000.0);
        Some(match waited {
            Some(s) => format!(
                "the harness stopped the client {how}, {s:.1} s after this answer (#{}), before it acted on it: not judged",
                e.seq
            ),
            None => format!("the harness stopped the client {how} before it acted on answer #{}: not judged", e.seq),
        })
    }
}

/// A named check.
pub struct Check {
    /// Stable id, `family.name`.
    pub id: &'static str,
    /// What a client must do, in one line.
    pub title: &'static str,
    /// Requirement IDs it proves.
    pub requirements: &'static [&'static str],
    /// Its level.
    pub level: Level,
    /// Runs on every case (else only when a scenario's `expect.checks` names it).
    pub always: bool,
    /// The check itself.
    pub run: fn(&Input) -> Finding,
}

/// Every check, in report order.
pub fn all() -> Vec<&'static Check> {
    let mut out: Vec<&'static Check> = Vec::new();
    for family in [
        auth::CHECKS,
        kickoff::CHECKS,
        polling::CHECKS,
        files::CHECKS,
        output::CHECKS,
        outcome::CHECKS,
        etiquette::CHECKS,
    ] {
        out.extend(family.iter());
    }
    out
}

/// The check called `id`.
pub fn find(id: &str) -> Option<&'static Check> {
    all().into_iter().find(|c| c.id == id)
}

/// Runs every always-on check and the ones `input.case` asks for.
pub fn run_all(input: &Input) -> Vec<CheckResult> {
    all()
        .into_iter()
        .filter(|c| c.always || input.case.scenario.expect.checks.iter().any(|n| n == c.id))
        .map(|c| judge(c, input))
        .collect()
}

/// Runs one check and turns its finding into a verdict for its level.
pub fn judge(check: &Check, input: &Input) -> CheckResult {
    let mut level = check.level;
    let mut requirements: Vec<String> = check.requirements.iter().map(|r| r.to_string()).collect();
    let (verdict, evidence) = match (check.run)(input) {
        Finding::Pass => (Verdict::Pass, None),
        Finding::Skip(reason) => (Verdict::Skip, Some(Evidence { message: reason, exchanges: Vec::new() })),
        Finding::Miss(evidence) => (Verdict::missed_at(level), Some(evidence)),
        Finding::MissAt { level: own, requirements: cited, evidence } => {
            (level, requirements) = (own, cited);
            (Verdict::missed_at(level), Some(evidence))
        }
    };
    CheckResult { id: check.id.to_string(), requirements, level, verdict, evidence }
}

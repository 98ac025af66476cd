//! The scenario file format (TOML, one file per scenario). Field names are a
//! public contract: people keep their own scenario files. Add fields; never
//! rename them. Unknown fields are rejected.

use std::collections::BTreeMap;

use bulkmock_server::FaultRule;
use bulkmock_server::data::synthetic::Density;
use serde::{Deserialize, Serialize};

/// One scenario file, as written (after matrix substitution for one case).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line: what a client must do.
    pub title: String,
    /// Longer explanation (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The requirement IDs (CLI-nnn) the scenario exercises.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// The mock server's set-up.
    #[serde(default)]
    pub server: ServerSpec,
    /// Fault rules, in exactly the plan-file syntax of docs/faults.md.
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultRule>,
    /// What the client is asked to do.
    #[serde(default)]
    pub client: ClientSpec,
    /// What is expected.
    #[serde(default)]
    pub expect: Expect,
    /// Run the client again after the data changed, keeping its state (`[incremental]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    /// Keys whose values expand the scenario into cases (`${key}` in the file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matrix: BTreeMap<String, Vec<toml::Value>>,
}

/// The server of a case (`[server]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Synthetic patients.
    #[serde(default = "default_patients")]
    pub patients: u64,
    /// Seed of data, ids and probabilistic faults; the run's `--seed` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// SMART authorization on (default) or off.
    #[serde(default = "yes")]
    pub auth: bool,
    /// Access-token lifetime in seconds (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_s: Option<u64>,
    /// Allowed clock difference for assertion times, seconds (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_s: Option<u64>,
    /// Minimum time a job stays in progress, milliseconds (default 0).
    #[serde(default)]
    pub job_duration_ms: u64,
    /// Status polls answered "in progress" before the job's manifest (a slow job counted in polls).
    #[serde(default)]
    pub job_polls: u64,
    /// `Retry-After` seconds on those in-progress answers (none when absent: the client backs off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_retry_after_s: Option<u64>,
    /// Resources per output file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_per_file: Option<u64>,
    /// Files per manifest page with `allowPartialManifests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_page_size: Option<usize>,
    /// How long files stay after completion, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_ttl_s: Option<u64>,
    /// Accept kick-offs without `Accept: application/fhir+json` or `Prefer:
    /// respond-async`, as lenient servers do (SRV-041, SRV-042); strict by default.
    #[serde(default)]
    pub lenient_headers: bool,
    /// Give every manifest file a SHA-256 of its bytes in its `extension`
    /// (`bulkmock_wire::SHA256_EXTENSION`), for clients that check integrity hashes.
    #[serde(default)]
    pub file_digests: bool,
    /// Serve every route over HTTPS with a certificate from a local CA (CLI-032);
    /// the client is handed the CA (`{ca_cert}`, `BULKMOCK_CA_CERT`).
    #[serde(default)]
    pub tls: bool,
    /// Production quirks the server speaks (`docs/quirks.md`), e.g.
    /// `["ignores-type-filter", "long-queue=0.001"]`.
    #[serde(default, skip_serializing_if = "bulkmock_server::quirks::Quirks::is_empty")]
    pub quirks: bulkmock_server::quirks::Quirks,
    /// The server clock's offset from real time, seconds (signed, at most 30 days
    /// either way): `transactionTime` and `lastUpdated` ahead of or behind the
    /// client's clock, which shows clients that take `_since` from their own clock.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clock_offset_s: i64,
    /// Resources per patient: `light` (the default: about 33, 25 KB) or
    /// `realistic` (heavy-tailed, about 1.3 MB of NDJSON per patient on average).
    #[serde(default, skip_serializing_if = "is_light")]
    pub density: Density,
}

/// Incremental pulls (`[incremental]`): the client runs once (a full export
/// into `{out_dir}`), then, `runs` times, the server's data advances by
/// `revisions` revisions (updates, deletions, new patients, Group membership
/// changes) and the client runs again on the same `{out_dir}`. After the last
/// run, `{out_dir}` must hold exactly the data's final state: every live
/// resource once, at its latest version, deleted ones gone (CLI-054, CLI-087).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Revisions the data advances before each incremental run (1 to 50).
    #[serde(default = "one")]
    pub revisions: u64,
    /// Incremental runs after the full one (1 to 5).
    #[serde(default = "one")]
    pub runs: u64,
}

impl Incremental {
    /// Every run of the client: the full one and the incremental ones.
    pub fn total_runs(&self) -> u64 {
        1 + self.runs
    }
    /// The data's revision after the last advance.
    pub fn final_revision(&self) -> u64 {
        self.revisions * self.runs
    }
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            patients: default_patients(),
            seed: None,
            auth: true,
            token_lifetime_s: None,
            clock_skew_s: None,
            job_duration_ms: 0,
            job_polls: 0,
            job_retry_after_s: None,
            resources_per_file: None,
            manifest_page_size: None,
            job_ttl_s: None,
            lenient_headers: false,
            file_digests: false,
            tls: false,
            quirks: bulkmock_server::quirks::Quirks::none(),
            clock_offset_s: 0,
            density: Density::Light,
        }
    }
}

/// The export level a client is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelName {
    /// `[base]/$export`.
    #[default]
    System,
    /// `[base]/Patient/$export`.
    Patient,
    /// `[base]/Group/[id]/$export`.
    Group,
}

impl LevelName {
    /// The name as written in scenario files and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            LevelName::System => "system",
            LevelName::Patient => "patient",
            LevelName::Group => "group",
        }
    }
}

/// The assertion signing algorithm of the case's client key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    #[serde(rename = "RS384")]
    Rs384,
    /// ECDSA P-384 with SHA-384.
    #[default]
    #[serde(rename = "ES384")]
    Es384,
}

impl Alg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs384 => "RS384",
            Alg::Es384 => "ES384",
        }
    }
}

/// How the case's client key is registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksMode {
    /// The public JWKS inline in the registration.
    #[default]
    Inline,
    /// A JWKS URL served by the harness next to the mock.
    Url,
}

/// What the client is asked to do (`[client]`): everything the guide lets a client ask for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// `system`, `patient` or `group`.
    #[serde(default)]
    pub level: LevelName,
    /// The Group id, for `level = "group"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `_type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// `_since`, a FHIR instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// `_until`, a FHIR instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// `_typeFilter` queries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub type_filters: Vec<String>,
    /// `_elements`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elements: Vec<String>,
    /// `_outputFormat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// `patient` references (POST only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    /// `includeAssociatedData`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_associated_data: Vec<String>,
    /// `organizeOutputBy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organize_output_by: Option<String>,
    /// `allowPartialManifests=true`.
    #[serde(default)]
    pub allow_partial_manifests: bool,
    /// `Prefer: separate-export-status`.
    #[serde(default)]
    pub separate_export_status: bool,
    /// Kick off with POST and a Parameters body.
    #[serde(default)]
    pub post: bool,
    /// The algorithm of the generated client key.
    #[serde(default)]
    pub alg: Alg,
    /// Scopes the client asks for.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// How the client's public key is registered.
    #[serde(default)]
    pub jwks: JwksMode,
}

impl ClientSpec {
    /// `POST` when the case asks for one or names patients (`patient` is a
    /// POST parameter, CLI-046), else `GET`.
    pub fn kickoff_method(&self) -> &'static str {
        if self.post || !self.patients.is_empty() { "POST" } else { "GET" }
    }
}

/// How a case should end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedOutcome {
    /// The client succeeds and its output equals the expected export.
    #[default]
    Complete,
    /// The client stops with a non-zero exit, within bounds, without hammering.
    FailCleanly,
    /// The server reports a partial success; the client keeps the data and reports the errors.
    Partial,
}

impl ExpectedOutcome {
    /// The name as written in scenario files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpectedOutcome::Complete => "complete",
            ExpectedOutcome::FailCleanly => "fail_cleanly",
            ExpectedOutcome::Partial => "partial",
        }
    }
}

/// A recovery that the specification allows or recommends but does not require
/// (`[expect] recovery = { level = "may", requirements = ["CLI-080"] }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// `should` or `may`: how strongly the cited requirements ask for it.
    pub level: RecoveryLevel,
    /// The requirements the recovery serves (at least one).
    pub requirements: Vec<String>,
}

/// The level of a [`Recovery`]: never `must` (a required completion is plain `outcome = "complete"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryLevel {
    /// A miss is a warning.
    Should,
    /// A miss is information.
    May,
}

/// What a correct client's output holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputExpectation {
    /// Exactly the export the job produced.
    #[default]
    Export,
    /// No resources (e.g. a manifest whose `output` is empty).
    Empty,
    /// Not compared.
    Any,
}

/// How much of a case its snapshot keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotDetail {
    /// Verdict, outcome, output differences, exercised checks, requests by route.
    #[default]
    Full,
    /// Verdict and outcome only (timing-dependent exchanges).
    Outcome,
}

/// What is expected (`[expect]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How the run should end.
    #[serde(default)]
    pub outcome: ExpectedOutcome,
    /// Where the specification only requires a clean failure and completing is
    /// a recovery it allows or recommends (re-fetching an expired URL, resuming
    /// a cut body, coping with a server's deviation): the level and
    /// requirements of that recovery. With it, a clean failure passes
    /// `outcome.expected` (the MUST), and `outcome.recovered` judges completing
    /// at `level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// In a `fail_cleanly` case whose problem lies only in metadata (a digest,
    /// a count): the level at which exiting 0 with exactly the exported data,
    /// the problem unreported, is judged. `should` when absent; `may` where the
    /// client is not bound to read that metadata at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreported: Option<RecoveryLevel>,
    /// What a correct client's output holds: `export` (exactly the job's export),
    /// `empty` (no resources: the manifest listed none), `any` (not compared).
    #[serde(default)]
    pub output: OutputExpectation,
    /// Checks to require beyond the always-on ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// The case's deadline: past it the client is killed and the case is `timeout`.
    #[serde(default = "default_max_seconds")]
    pub max_seconds: f64,
    /// Requests the client may send at most.
    #[serde(default = "default_max_requests")]
    pub max_requests: u64,
    /// What the workspace snapshot keeps: `full` (verdicts of every exercised
    /// check and the requests by route), or `outcome` (verdict and outcome only,
    /// for scenarios whose exchanges depend on timing, such as a real job duration).
    #[serde(default)]
    pub snapshot: SnapshotDetail,
    /// Shortest allowed gap between polls that had no `Retry-After`, milliseconds
    /// (5 s in real deployments; fast scenarios scale it down).
    #[serde(default = "default_poll_floor_ms")]
    pub poll_floor_ms: u64,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            outcome: ExpectedOutcome::Complete,
            recovery: None,
            unreported: None,
            output: OutputExpectation::Export,
            snapshot: SnapshotDetail::Full,
            checks: Vec::new(),
            max_seconds: default_max_seconds(),
            max_requests: default_max_requests(),
            poll_floor_ms: default_poll_floor_ms(),
        }
    }
}

fn default_patients() -> u64 {
    10
}
fn yes() -> bool {
    true
}
fn one() -> u64 {
    1
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_light(d: &Density) -> bool {
    *d == Density::Light
}
fn default_scope() -> String {
    "system/*.rs".to_string()
}
fn default_max_seconds() -> f64 {
    30.0
}
/// Requests a case allows when it names no `max_requests`.
pub const DEFAULT_MAX_REQUESTS: u64 = 500;

fn default_max_requests() -> u64 {
    DEFAULT_MAX_REQUESTS
}
fn default_poll_floor_ms() -> u64 {
    5_000
}

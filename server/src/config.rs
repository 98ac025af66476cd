//! Server settings, shared by the `serve` command and the test handle.

use std::path::PathBuf;
use std::time::Duration;

use crate::data::synthetic::Density;

/// Everything that shapes one mock server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Seed of all generated data and ids.
    pub seed: u64,
    /// Patients in the synthetic population.
    pub patients: u64,
    /// How many resources each synthetic patient has: [`Density::Light`]
    /// (the default, a few dozen) or [`Density::Realistic`] (heavy-tailed,
    /// megabytes per patient on average). Ignored with `data_dir`.
    pub density: Density,
    /// Resources per output file, at most (approximate for patient blocks).
    pub resources_per_file: u64,
    /// How long a job stays in progress at least.
    pub job_duration: Duration,
    /// How long files stay available after a job completes.
    pub job_ttl: Duration,
    /// Files per manifest page with `allowPartialManifests=true`.
    pub manifest_page_size: usize,
    /// Public origin for links (`http://host:port`), when behind a proxy.
    pub public_url: Option<String>,
    /// Serve NDJSON files from this folder instead of the synthetic population.
    pub data_dir: Option<PathBuf>,
    /// Open access: no authorization on any route.
    pub open: bool,
    /// Accept kick-offs without `Accept: application/fhir+json` or without
    /// `Prefer: respond-async`, as lenient servers do. Off by default: a strict
    /// mock answers such kick-offs 400, naming the header (SRV-041, SRV-042).
    pub lenient_headers: bool,
    /// Authorization settings (when not open).
    pub auth: crate::auth::AuthConfig,
    /// The fault plan in force at start.
    pub faults: crate::faults::FaultPlan,
    /// Write every exchange to this file as NDJSON while serving.
    pub transcript_file: Option<PathBuf>,
    /// The admin API (`/_admin/...`); off unless enabled.
    pub admin: AdminConfig,
    /// The live dashboard (`/_dashboard`), guarded as the admin API is
    /// (loopback unless `admin.any_host`, the admin secret when set). Off by
    /// default; `bulkmock serve` turns it on.
    pub dashboard: bool,
    /// Count a job's files before answering its kick-off, so a job with no
    /// duration is complete at its first poll (deterministic harness runs;
    /// slower kick-offs for large exports).
    pub count_before_accepting: bool,
    /// Request body sizes and running jobs per client.
    pub limits: crate::limits::Limits,
    /// Give every manifest file a SHA-256 of its bytes (uncompressed) in its
    /// `extension` ([`bulkmock_wire::SHA256_EXTENSION`]), for clients that check
    /// integrity hashes. Off by default: each file is then generated once more.
    pub file_digests: bool,
    /// Serve every route over TLS with this certificate (`serve --tls`); every
    /// absolute URL the server emits is then `https` (CLI-032).
    pub tls: Option<crate::tls::TlsIdentity>,
    /// Data that changes over time: revision times and automatic advances.
    pub revisions: crate::data::revision::RevisionConfig,
    /// The server clock's offset from real time, seconds (signed): shifts
    /// `transactionTime` and revision times ahead of or behind the client's clock.
    pub clock_offset: i64,
    /// Production quirks every request gets (`serve --quirks`); clients and
    /// profile URLs add their own (see `docs/quirks.md`).
    pub quirks: crate::quirks::Quirks,
}

/// Settings of the admin API.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Serve `/_admin/...`.
    pub enabled: bool,
    /// Accept admin requests from any address, not only loopback.
    pub any_host: bool,
    /// Require `Authorization: Bearer <token>` on admin requests.
    pub token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            seed: crate::data::synthetic::DEFAULT_SEED,
            patients: crate::data::synthetic::DEFAULT_PATIENTS,
            density: Density::Light,
            resources_per_file: 10_000,
            job_duration: Duration::from_secs(2),
            job_ttl: Duration::from_secs(3600),
            manifest_page_size: 10,
            public_url: None,
            data_dir: None,
            open: false,
            lenient_headers: false,
            auth: crate::auth::AuthConfig::default(),
            faults: crate::faults::FaultPlan::default(),
            transcript_file: None,
            admin: AdminConfig::default(),
            dashboard: false,
            count_before_accepting: false,
            limits: crate::limits::Limits::default(),
            file_digests: false,
            tls: None,
            revisions: Default::default(),
            clock_offset: 0,
            quirks: crate::quirks::Quirks::none(),
        }
    }
}

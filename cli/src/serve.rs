//! `bulkmock serve`: flags, bind, Ctrl-C, and the banner.

pub(crate) mod live_checks;
mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use bulkmock_server::app::{AppState, serve_with_grace};
use bulkmock_server::auth::AuthConfig;
use bulkmock_server::data::synthetic::Density;
use bulkmock_server::tls::{self, TlsIdentity};
use bulkmock_server::{ClientKey, DEMO_CLIENT_ID, KeyAlg, Registration, ServerConfig};
use clap::Args;

/// Flags of `bulkmock serve`; each can also come from an environment variable.
/// The admin API and dashboard flags, shared by `serve` and `proxy`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Serve the admin API (/_admin/faults, /_admin/transcript, /_admin/reset) to loopback callers.
    #[arg(long, env = "BULKMOCK_ADMIN")]
    pub admin: bool,
    /// Let the admin API answer callers on any address.
    #[arg(long, env = "BULKMOCK_ADMIN_ANY_HOST", requires = "admin")]
    pub admin_any_host: bool,
    /// Require `Authorization: Bearer <secret>` on admin requests.
    #[arg(long, env = "BULKMOCK_ADMIN_TOKEN", requires = "admin")]
    pub admin_token: Option<String>,
    /// Do not serve the live dashboard (`/_dashboard`, loopback callers only unless --admin-any-host).
    #[arg(long, env = "BULKMOCK_NO_DASHBOARD")]
    pub no_dashboard: bool,
}

impl AdminArgs {
    /// The admin API's settings.
    pub fn config(&self) -> bulkmock_server::config::AdminConfig {
        bulkmock_server::config::AdminConfig {
            enabled: self.admin,
            any_host: self.admin_any_host,
            token: self.admin_token.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BULKMOCK_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free port (the chosen one is printed).
    #[arg(long, env = "BULKMOCK_PORT", default_value_t = 8080)]
    port: u16,
    /// Public origin used in links, e.g. https://mock.example.org, when behind a proxy.
    #[arg(long, env = "BULKMOCK_BASE_URL")]
    base_url: Option<String>,
    /// Patients in the synthetic population.
    #[arg(long, env = "BULKMOCK_PATIENTS", default_value_t = 100)]
    patients: u64,
    /// Seed of the data set and job ids.
    #[arg(long, env = "BULKMOCK_SEED", default_value_t = 42)]
    seed: u64,
    /// Resources per synthetic patient: `light` (a fixed few dozen, the default) or `realistic`
    /// (heavy-tailed counts, about 1.3 MB of NDJSON per patient on average).
    #[arg(long, env = "BULKMOCK_DENSITY", default_value = "light", value_parser = parse_density)]
    density: Density,
    /// Resources per output file, at most.
    #[arg(long, env = "BULKMOCK_RESOURCES_PER_FILE", default_value_t = 10_000)]
    resources_per_file: u64,
    /// How long a job stays in progress at least, e.g. 2s, 500ms, 1m.
    #[arg(long, env = "BULKMOCK_JOB_DURATION", default_value = "2s", value_parser = parse_duration)]
    job_duration: Duration,
    /// How long files stay available after a job completes.
    #[arg(long, env = "BULKMOCK_JOB_TTL", default_value = "1h", value_parser = parse_duration)]
    job_ttl: Duration,
    /// Files per manifest page when a client sends allowPartialManifests=true.
    #[arg(long, env = "BULKMOCK_MANIFEST_PAGE_SIZE", default_value_t = 10)]
    manifest_page_size: usize,
    /// Serve the *.ndjson files of this folder instead of the synthetic population.
    #[arg(long, env = "BULKMOCK_DATA")]
    data: Option<PathBuf>,
    /// Open access: no authorization on any route.
    #[arg(long, env = "BULKMOCK_OPEN")]
    open: bool,
    /// Folder for state kept between runs (the demo client's key).
    #[arg(long, env = "BULKMOCK_STATE_DIR", default_value = ".bulkmock")]
    state_dir: PathBuf,
    /// Private key (PKCS#8 PEM, RS384 or ES384) of the demo client, instead of the generated one.
    #[arg(long, env = "BULKMOCK_CLIENT_KEY")]
    client_key: Option<PathBuf>,
    /// Algorithm of the generated demo client key.
    #[arg(long, env = "BULKMOCK_CLIENT_ALG", default_value = "RS384")]
    client_alg: KeyAlg,
    /// JSON file with a list of clients to register at start: [{"client_id", "jwks" | "jwks_url", "scope", "token_lifetime_s"}].
    #[arg(long, env = "BULKMOCK_CLIENTS")]
    clients: Option<PathBuf>,
    /// Accept another assertion algorithm besides RS384 and ES384 (e.g. RS256, ES256, PS384); repeatable.
    #[arg(long = "allow-alg", env = "BULKMOCK_ALLOW_ALG", value_delimiter = ',')]
    allow_alg: Vec<String>,
    /// Access-token lifetime.
    #[arg(long, env = "BULKMOCK_TOKEN_LIFETIME", default_value = "300s", value_parser = parse_duration)]
    token_lifetime: Duration,
    /// Fault plan file (TOML, or JSON when named *.json) to apply from the start.
    #[arg(long, env = "BULKMOCK_FAULTS")]
    faults: Option<PathBuf>,
    /// Write every request and response to this file as NDJSON while serving.
    #[arg(long, env = "BULKMOCK_TRANSCRIPT")]
    transcript: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Accept kick-offs without `Accept: application/fhir+json` or `Prefer:
    /// respond-async`, as lenient servers do (by default they get 400).
    #[arg(long, env = "BULKMOCK_LENIENT_HEADERS")]
    lenient_headers: bool,
    /// Give every manifest file a SHA-256 of its bytes in its `extension`
    /// (`https://bulkmock.dev/fhir/StructureDefinition/sha256`), for clients that check integrity hashes.
    #[arg(long, env = "BULKMOCK_FILE_DIGESTS")]
    file_digests: bool,
    /// Allowed clock difference for assertion exp, nbf and iat.
    #[arg(long, env = "BULKMOCK_CLOCK_SKEW", default_value = "5s", value_parser = parse_duration)]
    clock_skew: Duration,
    /// Largest token request body in bytes (larger ones get 413 invalid_request).
    #[arg(long, env = "BULKMOCK_MAX_TOKEN_BODY", default_value_t = 64 * 1024)]
    max_token_body: usize,
    /// Largest body in bytes of a POST kick-off, a registration or an admin request (larger ones get 413).
    #[arg(long, env = "BULKMOCK_MAX_BODY", default_value_t = 1024 * 1024)]
    max_body: usize,
    /// Export jobs one client may have running at once (more get 429 with Retry-After); 0: no limit.
    #[arg(long, env = "BULKMOCK_MAX_JOBS_PER_CLIENT", default_value_t = 10)]
    max_jobs_per_client: usize,
    /// How long a client may take to send a request's line and headers before its connection is closed.
    #[arg(long, env = "BULKMOCK_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// How long a response may go unread (the client reads nothing) before its connection is reset; 0s: never.
    #[arg(long, env = "BULKMOCK_STALLED_WRITE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    stalled_write_timeout: Duration,
    /// Connections served at once; beyond it a connection gets 503 with Retry-After and is closed; 0: no limit.
    #[arg(long, env = "BULKMOCK_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// On Ctrl-C or SIGTERM, how long in-flight requests (downloads) may go on before they are cut.
    #[arg(long, env = "BULKMOCK_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Serve every route over HTTPS with a certificate from a local CA kept in
    /// the state folder (`<state-dir>/tls/ca.pem`: trust it, e.g. `curl --cacert`),
    /// created on the first start and reused on the next.
    #[arg(long, env = "BULKMOCK_TLS")]
    tls: bool,
    /// Serve HTTPS with this certificate chain (PEM, leaf first) instead of the local CA's.
    #[arg(long, env = "BULKMOCK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "BULKMOCK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Trust this CA certificate (PEM) when fetching https JWKS URLs of registered clients.
    #[arg(long, env = "BULKMOCK_JWKS_CA_CERT")]
    jwks_ca_cert: Option<PathBuf>,
    /// Data that changes: advance the data set one revision every this long (e.g. 30s); revision times
    /// are then that far apart too. Revisions also advance with `POST /_admin/revision`.
    #[arg(long, env = "BULKMOCK_REVISION_EVERY", value_parser = parse_duration, conflicts_with = "revision_after_export")]
    revision_every: Option<Duration>,
    /// Data that changes: advance the data set one revision after every export job's work is done.
    #[arg(long, env = "BULKMOCK_REVISION_AFTER_EXPORT")]
    revision_after_export: bool,
    /// The server clock's offset from real time in seconds, signed (e.g. -3600): transactionTime and
    /// lastUpdated run ahead of or behind the client's clock.
    #[arg(long, env = "BULKMOCK_CLOCK_OFFSET", default_value_t = 0, allow_negative_numbers = true)]
    clock_offset: i64,
    /// Production quirks to speak, comma-separated (docs/quirks.md), e.g.
    /// `--quirks capitalised-scopes,long-queue=0.01`.
    #[arg(long, env = "BULKMOCK_QUIRKS", value_parser = parse_quirks)]
    quirks: Option<bulkmock_server::quirks::Quirks>,
    /// Serve exactly one scenario case (its [server] settings and [[fault]] rules) to a freshly
    /// registered client, keeping the transcript and a judge file for `bulkmock judge`: a file,
    /// or `builtin:<path>` for one of the built-in suite (`builtin:happy/patient-export`).
    #[arg(long, conflicts_with_all = [
        "patients", "resources_per_file", "job_duration", "job_ttl", "manifest_page_size", "data", "open",
        "client_key", "client_alg", "clients", "allow_alg", "token_lifetime", "faults", "lenient_headers", "clock_skew",
        "quirks", "file_digests", "density",
    ])]
    scenario: Option<PathBuf>,
    /// The case of --scenario (its id, or its matrix part such as `post=true`); needed when it has a matrix.
    #[arg(long, requires = "scenario")]
    case: Option<String>,
}

/// Registers the demo client (its key loaded, reused from the state folder,
/// or generated there) and the clients of `--clients`; returns the demo key and its path.
fn register_clients(state: &AppState, args: &ServeArgs) -> Result<(PathBuf, ClientKey), String> {
    let (path, key) = match &args.client_key {
        Some(path) => (path.clone(), ClientKey::load_pem(path).map_err(|e| format!("--client-key {e}"))?),
        None => {
            let dir = args.state_dir.join("demo-client");
            let path = dir.join("private.pem");
            if path.exists() {
                (path.clone(), ClientKey::load_pem(&path).map_err(|e| e.to_string())?)
            } else {
                let key = ClientKey::generate(args.client_alg).map_err(|e| e.to_string())?;
                let path = key.write(&dir).map_err(|e| e.to_string())?;
                (path, key)
            }
        }
    };
    let jwks = serde_json::to_value(key.jwks()).map_err(|e| e.to_string())?;
    let demo = Registration {
        client_id: Some(DEMO_CLIENT_ID.into()),
        name: Some("bulkmock demo client".into()),
        jwks: Some(jwks),
        ..Registration::default()
    };
    state.register_client(demo)?;
    if let Some(file) = &args.clients {
        let text = std::fs::read_to_string(file).map_err(|e| format!("--clients {}: {e}", file.display()))?;
        let list: Vec<Registration> =
            serde_json::from_str(&text).map_err(|e| format!("--clients {}: {e}", file.display()))?;
        for (i, reg) in list.into_iter().enumerate() {
            state.register_client(reg).map_err(|e| format!("--clients {}: client {i}: {e}", file.display()))?;
        }
    }
    Ok((path, key))
}

/// The TLS identity of `--tls` (the state folder's local CA) or `--tls-cert`/`--tls-key`,
/// and the banner lines that say what to trust; `None` for plain http.
/// `wanted` asks for the local CA even without `--tls` (a scenario with `tls = true`).
pub(crate) fn tls_identity(args: &ServeArgs, wanted: bool) -> Result<Option<(TlsIdentity, Vec<String>)>, String> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let identity = TlsIdentity::load(cert, key).map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
        return Ok(Some((
            identity,
            vec![format!("  TLS:        certificate {} (key {})", cert.display(), key.display())],
        )));
    }
    if !args.tls && !wanted {
        return Ok(None);
    }
    let public_host = args.base_url.as_deref().and_then(|u| {
        let rest = u.split_once("://")?.1;
        let authority = rest.split(['/', '?', '#']).next()?;
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next()?,
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        Some(host.to_string())
    });
    let hosts = tls::ca::local_hosts([args.host.as_str()].into_iter().chain(public_host.as_deref()));
    let stored = tls::store::load_or_create(&args.state_dir, &hosts).map_err(|e| format!("--tls: {e}"))?;
    let ca = stored.ca_path.display().to_string();
    let lines = vec![
        format!("  TLS:        CA {ca} ({})", if stored.ca_created { "created" } else { "reused" }),
        format!(
            "              server certificate for {} ({})",
            hosts.join(", "),
            if stored.server_issued { "issued" } else { "reused" }
        ),
        format!("  trust:      curl --cacert {ca} ...   bulkmock export --ca-cert {ca} ..."),
    ];
    Ok(Some((stored.identity, lines)))
}

/// Parses `500ms`, `2s`, `1m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration such as 500ms, 2s, 1m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> Result<(), String> {
    if args.scenario.is_some() {
        return scenario::run(args);
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut auth =
            AuthConfig { token_lifetime: args.token_lifetime, clock_skew: args.clock_skew, ..AuthConfig::default() };
        for name in &args.allow_alg {
            let alg: jsonwebtoken::Algorithm =
                name.parse().map_err(|_| format!("--allow-alg: unknown algorithm {name:?}"))?;
            if name.starts_with("HS") {
                return Err(format!(
                    "--allow-alg {name}: HMAC algorithms cannot authenticate a client with a public key"
                ));
            }
            if !auth.algorithms.contains(&alg) {
                auth.algorithms.push(alg);
            }
        }
        let tls = tls_identity(&args, false)?;
        if let Some(path) = &args.jwks_ca_cert {
            let pem = std::fs::read_to_string(path).map_err(|e| format!("--jwks-ca-cert {}: {e}", path.display()))?;
            let name = format!("--jwks-ca-cert {}", path.display());
            bulkmock_server::auth::jwks::check_roots(std::slice::from_ref(&pem), &name)?;
            auth.jwks_ca_certs.push(pem);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = ServerConfig {
            seed: args.seed,
            patients: args.patients,
            density: args.density,
            resources_per_file: args.resources_per_file,
            job_duration: args.job_duration,
            job_ttl: args.job_ttl,
            manifest_page_size: args.manifest_page_size,
            public_url: args.base_url.clone(),
            data_dir: args.data.clone(),
            open: args.open,
            lenient_headers: args.lenient_headers,
            file_digests: args.file_digests,
            auth,
            faults: match &args.faults {
                Some(path) => bulkmock_server::faults::file::load(path)?,
                None => Default::default(),
            },
            transcript_file: args.transcript.clone(),
            admin: args.admin.config(),
            dashboard: !args.admin.no_dashboard,
            limits: bulkmock_server::limits::Limits {
                token_body_bytes: args.max_token_body,
                kickoff_body_bytes: args.max_body,
                registration_body_bytes: args.max_body,
                admin_body_bytes: args.max_body,
                max_jobs_per_client: args.max_jobs_per_client,
                header_read_timeout: args.header_timeout,
                stalled_write_timeout: args.stalled_write_timeout,
                max_connections: args.max_connections,
            },
            tls: tls.as_ref().map(|(identity, _)| identity.clone()),
            revisions: bulkmock_server::data::revision::RevisionConfig {
                epoch: None,
                auto: match (args.revision_every, args.revision_after_export) {
                    (Some(every), _) => bulkmock_server::data::revision::AutoAdvance::Every(every),
                    (None, true) => bulkmock_server::data::revision::AutoAdvance::AfterExport,
                    (None, false) => bulkmock_server::data::revision::AutoAdvance::Never,
                },
            },
            clock_offset: args.clock_offset,
            quirks: args.quirks.clone().unwrap_or_default(),
            ..ServerConfig::default()
        };
        let state = AppState::new(config, &format!("{scheme}://{addr}")).map_err(|e| e.to_string())?;
        let demo = if args.open { None } else { Some(register_clients(&state, &args)?) };
        let dashboard = live_checks::install(&state)?;
        let source = match &args.data {
            Some(dir) => format!("NDJSON files in {} ({} patients)", dir.display(), state.source.patient_count()),
            None => format!("synthetic, {} patients, seed {}, {} density", args.patients, args.seed, args.density),
        };
        println!("bulkmock serving FHIR Bulk Data on {scheme}://{addr}");
        println!("  FHIR base:  {}", state.fhir_base);
        if let Some(line) = &dashboard {
            println!("{line}");
        }
        for line in tls.iter().flat_map(|(_, lines)| lines) {
            println!("{line}");
        }
        if !state.config.quirks.is_empty() {
            println!("  quirks:     {}", state.config.quirks);
        }
        println!("  data:       {source}");
        let technical = state.config.quirks.has(bulkmock_server::quirks::Quirk::TechnicalGroupIds);
        let group_ids: Vec<String> = state
            .source
            .groups()
            .iter()
            .map(|g| if technical { bulkmock_server::quirks::technical_group_id(&g.id) } else { g.id.clone() })
            .collect();
        println!("  groups:     {}", group_ids.join(", "));
        match &demo {
            None => {
                println!("  access:     open (no authorization)");
                let cacert = match (&tls, args.tls_cert.is_none()) {
                    (Some(_), true) => format!("--cacert {} ", args.state_dir.join("tls").join("ca.pem").display()),
                    _ => String::new(),
                };
                println!(
                    "  try:        curl -i {cacert}-H 'Accept: application/fhir+json' -H 'Prefer: respond-async' '{}/$export'",
                    state.fhir_base
                );
            }
            Some((key_path, key)) => {
                println!("  token URL:  {}", state.token_url());
                println!("  client id:  {DEMO_CLIENT_ID}");
                println!("  client key: {} ({}, kid {})", key_path.display(), key.alg.name(), key.kid);
                println!("  scopes:     system/*.rs (SMART v2) or system/*.read (v1)");
                println!("  register:   POST {}/auth/register {{\"jwks_url\": ...}}", state.origin());
            }
        }
        let rules = state.faults.list().len();
        if rules > 0 {
            println!(
                "  faults:     {rules} rule(s) from {}",
                args.faults.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
        if args.lenient_headers {
            println!("  kick-off:   lenient headers (Accept and Prefer: respond-async not required)");
        }
        if args.admin.admin {
            println!("  admin:      {}/_admin/faults, /_admin/transcript, /_admin/reset", state.origin());
        }
        println!("Press Ctrl-C to stop.");
        let grace = args.shutdown_grace;
        serve_with_grace(listener, state, stop_signal(grace), grace).await.map_err(|e| e.to_string())
    });
    // Cuts what the grace period left running; each cut exchange writes its transcript line as it drops.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, saying so on stderr.
pub(crate) async fn stop_signal(grace: Duration) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("bulkmock: shutting down (requests in flight get {} s)", grace.as_secs_f64());
}

/// `--density NAME`: the error names the bad value and lists the valid ones.
fn parse_density(name: &str) -> Result<Density, String> {
    name.parse()
}

/// `--quirks a,b`: the error names the bad item and lists the valid names.
fn parse_quirks(list: &str) -> Result<bulkmock_server::quirks::Quirks, String> {
    bulkmock_server::quirks::Quirks::parse(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("2 weeks").unwrap_err().contains("unknown unit"));
    }
}

//! One case's world: its own server on port 0, a freshly registered client with
//! a fresh key of the case's algorithm, a folder with the key files, and the
//! template variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkmock_server::app::AppState;
use bulkmock_server::{ClientKey, Fault, FaultRule, KeyAlg, MockServer, Registration, ServerConfig, Target};

use crate::adapter::CaseContext;
use crate::scenario::{Alg, Case, JwksMode, ServerSpec};

/// A client identity a vendor brings instead of a generated one.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The client id to register.
    pub client_id: String,
    /// The public JWKS to register (inline).
    pub jwks: serde_json::Value,
    /// The private key (PKCS#8 PEM), for `{private_key_pem}`, when given.
    pub private_key_pem: Option<PathBuf>,
    /// The key id (from the JWKS).
    pub kid: String,
}

/// A case's running world; dropping it stops the servers.
pub struct World {
    /// The mock.
    pub server: MockServer,
    /// The client's context.
    pub ctx: CaseContext,
    /// The JWKS host, for `jwks = "url"` cases.
    pub jwks_host: Option<JwksHost>,
}

/// The server settings of a case's `[server]` and faults: the one mapping from
/// a scenario to a [`ServerConfig`], used by `bulkmock run` and `bulkmock serve --scenario`.
pub fn server_config(case: &Case, seed: u64) -> ServerConfig {
    let spec: &ServerSpec = &case.scenario.server;
    let mut config = ServerConfig {
        patients: spec.patients,
        seed: spec.seed.unwrap_or(seed),
        job_duration: Duration::from_millis(spec.job_duration_ms),
        count_before_accepting: true,
        open: !spec.auth,
        lenient_headers: spec.lenient_headers,
        file_digests: spec.file_digests,
        quirks: spec.quirks.clone(),
        density: spec.density,
        ..ServerConfig::default()
    };
    if let Some(s) = spec.token_lifetime_s {
        config.auth.token_lifetime = Duration::from_secs(s);
    }
    if let Some(s) = spec.clock_skew_s {
        config.auth.clock_skew = Duration::from_secs(s);
    }
    if let Some(n) = spec.resources_per_file {
        config.resources_per_file = n;
    }
    if let Some(n) = spec.manifest_page_size {
        config.manifest_page_size = n;
    }
    if let Some(s) = spec.job_ttl_s {
        config.job_ttl = Duration::from_secs(s);
    }
    config.clock_offset = spec.clock_offset_s;
    if let Some(inc) = &case.scenario.incremental {
        // Revision times one second apart, the last one already past on the
        // server's clock: every transactionTime is a valid next `_since`.
        let now = bulkmock_server::export::job::unix_now() + spec.clock_offset_s;
        config.revisions.epoch = Some(now - 1 - inc.final_revision() as i64);
    }
    config.faults.rules.extend(case.scenario.faults.iter().cloned());
    if spec.job_polls > 0 {
        let slow = Fault::InProgress { retry_after_s: spec.job_retry_after_s, progress: None };
        config.faults.rules.push(FaultRule::new(Target::Status, slow).times(spec.job_polls).named("slow job"));
    }
    config
}

/// Builds the server for a case's `[server]` and faults ([`server_config`]) on a
/// free loopback port; with `tls = true`, over HTTPS with a fresh local CA
/// (the certificate is not part of [`server_config`]: `serve --scenario` keeps
/// its CA in the state folder instead).
pub fn start_server(case: &Case, seed: u64) -> std::io::Result<MockServer> {
    let mut config = server_config(case, seed);
    if case.scenario.server.tls {
        let identity = bulkmock_server::TlsIdentity::ephemeral().map_err(std::io::Error::other)?;
        // The case's JWKS host serves over TLS with the same certificate: the server trusts its CA.
        config.auth.jwks_ca_certs.extend(identity.ca_pem.clone());
        config.tls = Some(identity);
    }
    MockServer::builder().config(config).client_alg(KeyAlg::Es384).try_start()
}

/// A tiny HTTP server that hosts one JWKS at `/jwks.json` (CLI-001: registration
/// by URL); over HTTPS in TLS cases, with the case server's certificate.
pub struct JwksHost {
    /// The JWKS URL.
    pub url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl JwksHost {
    async fn start(jwks: serde_json::Value, tls: Option<&bulkmock_server::TlsIdentity>) -> std::io::Result<JwksHost> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/jwks.json", listener.local_addr()?);
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = rx.await;
        };
        match tls.cloned() {
            Some(identity) => {
                tokio::spawn(async move {
                    bulkmock_server::tls::serve_router(listener, app, &identity, stopped).await;
                });
            }
            None => {
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
                });
            }
        }
        Ok(JwksHost { url, shutdown: Some(tx) })
    }
}

impl Drop for JwksHost {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a case's world in `dir` (created; holds `out/` and the key files).
pub async fn start(
    case: &Case,
    dir: &Path,
    seed: u64,
    deadline: Duration,
    identity: Option<&Identity>,
) -> Result<World, String> {
    let server = start_server(case, seed).map_err(|e| format!("cannot start the mock: {e}"))?;
    let (ctx, jwks_host) = client(case, dir, seed, deadline, identity, server.state()).await?;
    Ok(World { server, ctx, jwks_host })
}

/// The case's client on the server `state`: a fresh key of the case's
/// algorithm (or `identity`) written into `dir`, registered inline or by a
/// hosted JWKS URL, and the client's context with the template variables.
/// The JWKS host, when there is one, serves as long as it is kept.
pub async fn client(
    case: &Case,
    dir: &Path,
    seed: u64,
    deadline: Duration,
    identity: Option<&Identity>,
    server: &AppState,
) -> Result<(CaseContext, Option<JwksHost>), String> {
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let spec = &case.scenario.client;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut ctx = CaseContext {
        case_id: case.id.clone(),
        fhir_base: server.fhir_base.clone(),
        token_url: String::new(),
        client_id: String::new(),
        kid: String::new(),
        alg: spec.alg.as_str().to_string(),
        private_key_pem: String::new(),
        request: spec.clone(),
        out_dir: out_dir.clone(),
        dir: dir.to_path_buf(),
        variables: BTreeMap::new(),
        deadline,
        seed,
    };
    let mut jwks_host = None;
    if let Some(ca) = server.config.tls.as_ref().and_then(|t| t.ca_pem.as_deref()) {
        let ca_path = dir.join("ca.pem");
        write(&ca_path, ca)?;
        vars.insert("ca_cert".into(), ca_path.display().to_string());
    }
    let (pem_path, jwk_path, jwks_path) =
        (dir.join("private.pem"), dir.join("private.jwk.json"), dir.join("jwks.json"));
    if case.scenario.server.auth {
        ctx.token_url = server.token_url();
        let registration = match identity {
            Some(id) => {
                ctx.kid = id.kid.clone();
                if let Some(pem) = &id.private_key_pem {
                    ctx.private_key_pem =
                        std::fs::read_to_string(pem).map_err(|e| format!("{}: {e}", pem.display()))?;
                    vars.insert("private_key_pem".into(), pem.display().to_string());
                }
                write(&jwks_path, &serde_json::to_string_pretty(&id.jwks).unwrap_or_default())?;
                Registration {
                    client_id: Some(id.client_id.clone()),
                    jwks: Some(id.jwks.clone()),
                    ..Registration::default()
                }
            }
            None => {
                let alg = match spec.alg {
                    Alg::Rs384 => KeyAlg::Rs384,
                    Alg::Es384 => KeyAlg::Es384,
                };
                let key = ClientKey::generate(alg).map_err(|e| format!("cannot generate a key: {e}"))?;
                let jwks = serde_json::to_value(key.jwks()).map_err(|e| e.to_string())?;
                write(&pem_path, &key.private_pem)?;
                write(&jwk_path, &serde_json::to_string_pretty(&key.private_jwk).unwrap_or_default())?;
                write(&jwks_path, &serde_json::to_string_pretty(&jwks).unwrap_or_default())?;
                vars.insert("private_key_pem".into(), pem_path.display().to_string());
                vars.insert("private_key_jwk".into(), jwk_path.display().to_string());
                ctx.kid = key.kid.clone();
                ctx.private_key_pem = key.private_pem.clone();
                let mut reg = Registration { name: Some(case.id.clone()), ..Registration::default() };
                match spec.jwks {
                    JwksMode::Inline => reg.jwks = Some(jwks),
                    JwksMode::Url => {
                        // Over HTTPS when the server's certificate comes from a local CA it trusts.
                        let tls = server.config.tls.as_ref().filter(|t| t.ca_pem.is_some());
                        let host =
                            JwksHost::start(jwks, tls).await.map_err(|e| format!("cannot host the JWKS: {e}"))?;
                        vars.insert("jwks_url".into(), host.url.clone());
                        reg.jwks_url = Some(host.url.clone());
                        jwks_host = Some(host);
                    }
                }
                reg
            }
        };
        ctx.client_id = server.register_client(registration).map_err(|e| format!("cannot register the client: {e}"))?;
        vars.insert("jwks".into(), jwks_path.display().to_string());
    }
    let level = spec.level.as_str().to_string();
    let pairs: [(&str, String); 17] = [
        ("fhir_base", ctx.fhir_base.clone()),
        ("token_url", ctx.token_url.clone()),
        ("client_id", ctx.client_id.clone()),
        ("kid", ctx.kid.clone()),
        ("alg", ctx.alg.clone()),
        ("scope", spec.scope.clone()),
        ("out_dir", out_dir.display().to_string()),
        ("level", level),
        ("group_id", spec.group.clone().unwrap_or_default()),
        ("types", spec.types.join(",")),
        ("since", spec.since.clone().unwrap_or_default()),
        ("until", spec.until.clone().unwrap_or_default()),
        ("type_filters", spec.type_filters.join(" ")),
        ("elements", spec.elements.join(",")),
        ("kickoff_method", spec.kickoff_method().to_string()),
        ("case_id", case.id.clone()),
        ("case_dir", dir.display().to_string()),
    ];
    for (k, v) in pairs.into_iter().chain(request_variables(spec)) {
        vars.insert(k.to_string(), v);
    }
    vars.insert("seed".into(), seed.to_string());
    // An [incremental] case's first run; the runner says `incremental` on the later ones.
    let run = if case.scenario.incremental.is_some() { "full" } else { "" };
    vars.insert("run".into(), run.into());
    for (name, _) in crate::adapter::template::VARIABLES {
        vars.entry(name.to_string()).or_default();
    }
    ctx.variables = vars;
    Ok((ctx, jwks_host))
}

pub(crate) fn write(path: &Path, content: &str) -> Result<(), String> {
    std::fs::write(path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The `Prefer` value a kick-off of `spec` sends (besides any `handling`).
fn prefer(spec: &crate::scenario::ClientSpec) -> String {
    if spec.separate_export_status { "respond-async, separate-export-status" } else { "respond-async" }.to_string()
}

/// The rest of the case's request as variables, and all of it as one JSON
/// document (`request_json`): an adapter never needs to read scenario files.
pub(crate) fn request_variables(spec: &crate::scenario::ClientSpec) -> [(&'static str, String); 7] {
    let request = serde_json::json!({
        "level": spec.level.as_str(),
        "group_id": spec.group,
        "types": spec.types,
        "since": spec.since,
        "until": spec.until,
        "type_filters": spec.type_filters,
        "elements": spec.elements,
        "output_format": spec.output_format,
        "patient": spec.patients,
        "include_associated_data": spec.include_associated_data,
        "organize_output_by": spec.organize_output_by,
        "allow_partial_manifests": spec.allow_partial_manifests,
        "separate_export_status": spec.separate_export_status,
        "kickoff_method": spec.kickoff_method(),
        "prefer": prefer(spec),
    });
    [
        ("patient", spec.patients.join(",")),
        ("include_associated_data", spec.include_associated_data.join(",")),
        ("organize_output_by", spec.organize_output_by.clone().unwrap_or_default()),
        ("allow_partial_manifests", spec.allow_partial_manifests.to_string()),
        ("output_format", spec.output_format.clone().unwrap_or_default()),
        ("prefer", prefer(spec)),
        ("request_json", request.to_string()),
    ]
}

//! `bulkmock proxy`: the fault engine in front of a real Bulk Data server.
//!
//! The proxy serves the upstream's paths on its own origin (an upstream base
//! `https://ehr.example/fhir/R4` becomes `http://127.0.0.1:PORT/fhir/R4`),
//! forwards every request and streams every body both ways. Absolute URLs on
//! the upstream's origin are rewritten to the proxy's ([`urls`]), except the
//! authorization endpoints: tokens stay the upstream's business, and bearer
//! tokens pass through untouched. The same fault middleware as `serve`
//! ([`crate::faults::apply::layer`]) acts on the proxied exchanges, classified
//! by [`classify`]; kinds that need the synthetic server are refused at the
//! edge ([`support`]). With a record file ([`record`]), every manifest and
//! every file's full digest as the upstream served it is written down.

pub mod classify;
mod faults;
mod forward;
pub mod record;
pub mod support;
pub mod urls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::ServerConfig;
pub use faults::ProxyFaults;

/// How long an idle connection to the upstream is kept for reuse.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(4);

/// What the proxy forwards to.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// The upstream's FHIR base URL (`http` or `https`).
    pub upstream: String,
    /// Extra PEM roots to trust for an `https` upstream (a private CA).
    pub upstream_ca_certs: Vec<String>,
    /// Write the record of what the upstream served here.
    pub record_file: Option<PathBuf>,
}

/// The upstream and what the proxy knows about its traffic.
#[derive(Debug)]
pub struct Upstream {
    /// The upstream's FHIR base, as given (no trailing slash).
    pub base: String,
    origin: String,
    base_path: String,
    http: reqwest::Client,
    /// URLs learned from answers: the targets of later requests.
    pub learned: classify::Learned,
    /// Revoked tokens, vanished jobs, redirect credentials.
    pub faults: ProxyFaults,
    /// The record of what the upstream served, when asked for.
    pub record: Option<record::Record>,
}

impl Upstream {
    /// Checks the upstream URL and builds the HTTP client (redirects are the
    /// client's to follow, so none are followed here).
    pub fn new(config: &ProxyConfig) -> Result<Upstream, String> {
        let base = config.upstream.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("--upstream {base:?}: not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("--upstream {base:?}: the upstream's FHIR base must be an http or https URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("--upstream {base:?}: a FHIR base has no query or fragment"));
        }
        let origin = url.origin().ascii_serialization();
        let base_path = url.path().trim_end_matches('/').to_string();
        let mut roots = Vec::new();
        for (i, pem) in config.upstream_ca_certs.iter().enumerate() {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("--upstream-ca-cert (certificate {}): not a PEM certificate: {e}", i + 1))?;
            if certs.is_empty() {
                return Err(format!("--upstream-ca-cert (certificate {}): no certificate in the PEM", i + 1));
            }
            roots.extend(certs);
        }
        let http = crate::http_client::with_roots(
            || {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(std::time::Duration::from_secs(10))
                    // Shorter than common keep-alive timeouts (Node's and Apache's 5 s), so a
                    // pooled connection is rarely one the upstream is closing.
                    .pool_idle_timeout(POOL_IDLE)
            },
            roots,
        )
        .map_err(|e| format!("cannot build the upstream's HTTP client: {e}"))?;
        let record = config.record_file.as_deref().map(record::Record::create).transpose()?;
        Ok(Upstream { base, origin, base_path, http, learned: Default::default(), faults: Default::default(), record })
    }

    /// The upstream's origin (`scheme://host[:port]`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The path of the upstream's FHIR base (`/fhir`, or empty), which is the proxy's too.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The upstream's token endpoint, from its discovery document
    /// (`.well-known/smart-configuration`), or what went wrong, naming the URL.
    pub async fn token_endpoint(&self) -> Result<String, String> {
        let url = format!("{}/.well-known/smart-configuration", self.base);
        let answer = self
            .http
            .get(&url)
            .header("Accept", "application/json")
            .timeout(std::time::Duration::from_secs(15))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("{url}: {e}"))?;
        let discovery: serde_json::Value = answer.json().await.map_err(|e| format!("{url}: not JSON: {e}"))?;
        discovery["token_endpoint"].as_str().map(str::to_string).ok_or_else(|| format!("{url}: no token_endpoint"))
    }

    /// The job a request path belongs to vanishes: 404 for it and its files from now on.
    pub fn vanish(&self, path: &str) {
        let job = self.learned.job_of(path, None).unwrap_or_else(|| path.to_string());
        self.faults.vanish(job);
    }

    /// Whether the job of `path` vanished.
    pub fn vanished(&self, path: &str, query: Option<&str>) -> bool {
        self.faults.vanished(path) || self.learned.job_of(path, query).is_some_and(|job| self.faults.vanished(&job))
    }
}

/// The state of a proxy on `origin` (`http://host:port`) in front of `proxy.upstream`.
/// `config` carries the fault plan, transcript, admin, limits and TLS settings;
/// the proxy serves no data of its own and has no authorization server.
pub fn state(mut config: ServerConfig, origin: &str, proxy: &ProxyConfig) -> Result<Arc<AppState>, String> {
    support::check_plan(&config.faults)?;
    let upstream = Arc::new(Upstream::new(proxy)?);
    config.open = true;
    config.patients = 1;
    let seed = config.seed;
    let faults = config.faults.rules.clone();
    let transcript = match (&config.transcript_file, &proxy.record_file) {
        (Some(transcript), Some(record)) => Some(record::transcript_name(record, transcript)),
        _ => None,
    };
    let state = AppState::for_proxy(config, origin, Arc::clone(&upstream)).map_err(|e| e.to_string())?;
    if let Some(record) = &upstream.record {
        record.write(&record::Entry::Started {
            fhir_base: state.fhir_base.clone(),
            upstream: upstream.base.clone(),
            seed,
            faults,
            transcript,
        });
    }
    Ok(state)
}

/// The proxy's router: the classification and fault layers around the
/// forwarding handler, the admin API and the dashboard (when enabled) beside them.
pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .fallback(forward::forward)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::faults::apply::layer))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), classify::layer));
    if state.config.admin.enabled {
        app = app.nest("/_admin", crate::admin::router(Arc::clone(&state)));
    }
    if state.config.dashboard {
        app = app.nest("/_dashboard", crate::dashboard::router(Arc::clone(&state)));
    }
    app.with_state(state)
}

/// Serves the proxy on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    crate::app::serve_router(listener, state, app, shutdown).await
}

//! `MockServer`: the mock on its own thread and runtime, for tests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::app::{self, AppState};
use crate::auth::keys::{ClientKey, KeyAlg};
use crate::auth::registry::Registration;
use crate::config::ServerConfig;
use crate::data::DataSource;

/// A running mock Data Provider bound to a free loopback port.
///
/// It runs on its own thread and Tokio runtime, so any test runtime (or none)
/// can use it; dropping the handle stops it.
///
/// ```no_run
/// # async fn demo() {
/// let server = bulkmock_server::MockServer::start().await;
/// let kickoff = format!("{}/$export", server.fhir_base());
/// # }
/// ```
pub struct MockServer {
    state: Arc<AppState>,
    demo: Option<(String, ClientKey)>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The client id of the demo client every server with authorization registers.
pub const DEMO_CLIENT_ID: &str = "bulkmock-demo";

/// Configures a [`MockServer`] before starting it.
#[derive(Debug, Clone)]
pub struct MockServerBuilder {
    config: ServerConfig,
    client_alg: KeyAlg,
}

impl MockServerBuilder {
    /// Number of synthetic patients.
    pub fn patients(mut self, n: u64) -> Self {
        self.config.patients = n;
        self
    }
    /// How many resources each synthetic patient has ([`ServerConfig::density`]).
    pub fn density(mut self, density: crate::data::synthetic::Density) -> Self {
        self.config.density = density;
        self
    }
    /// Seed of the data set and ids.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }
    /// Resources per output file.
    pub fn resources_per_file(mut self, n: u64) -> Self {
        self.config.resources_per_file = n;
        self
    }
    /// Minimum time a job stays in progress (default zero for tests).
    pub fn job_duration(mut self, d: Duration) -> Self {
        self.config.job_duration = d;
        self
    }
    /// How long files stay available after completion.
    pub fn job_ttl(mut self, d: Duration) -> Self {
        self.config.job_ttl = d;
        self
    }
    /// Files per manifest page with `allowPartialManifests=true`.
    pub fn manifest_page_size(mut self, n: usize) -> Self {
        self.config.manifest_page_size = n;
        self
    }
    /// Serve NDJSON files from `dir` instead of the synthetic population.
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }
    /// No authorization: every route is open and manifests say `requiresAccessToken: false`.
    pub fn open(mut self) -> Self {
        self.config.open = true;
        self
    }
    /// Accept kick-offs without `Accept: application/fhir+json` or `Prefer:
    /// respond-async` (emulates lenient servers; by default they get 400).
    pub fn lenient_headers(mut self) -> Self {
        self.config.lenient_headers = true;
        self
    }
    /// The algorithm of the demo client's generated key (ES384 by default).
    pub fn client_alg(mut self, alg: KeyAlg) -> Self {
        self.client_alg = alg;
        self
    }
    /// Access-token lifetime (default 300 s).
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.config.auth.token_lifetime = d;
        self
    }
    /// Allowed clock difference for assertion times (default 5 s).
    pub fn clock_skew(mut self, d: Duration) -> Self {
        self.config.auth.clock_skew = d;
        self
    }
    /// Accepts another assertion algorithm besides RS384 and ES384.
    pub fn allow_algorithm(mut self, alg: jsonwebtoken::Algorithm) -> Self {
        if !self.config.auth.algorithms.contains(&alg) {
            self.config.auth.algorithms.push(alg);
        }
        self
    }
    /// Adds a fault rule to the plan in force at start (rules are checked in order).
    pub fn fault(mut self, rule: crate::faults::FaultRule) -> Self {
        self.config.faults.rules.push(rule);
        self
    }
    /// The server clock's offset from real time (signed seconds): shifts
    /// `transactionTime` and revision times ahead of (positive) or behind
    /// (negative) the client's clock.
    pub fn clock_offset(mut self, seconds: i64) -> Self {
        self.config.clock_offset = seconds;
        self
    }
    /// `T_0`, the time of revision 0 (Unix seconds; clamped to
    /// [`REVISION0_END`](crate::data::revision::REVISION0_END)); by default
    /// the server clock at start. Fix it for byte-identical revisions across runs.
    pub fn revision_epoch(mut self, unix_seconds: i64) -> Self {
        self.config.revisions.epoch = Some(unix_seconds);
        self
    }
    /// How the data set's revision advances by itself (besides [`MockServer::advance_revision`]).
    pub fn auto_advance(mut self, auto: crate::data::revision::AutoAdvance) -> Self {
        self.config.revisions.auto = auto;
        self
    }
    /// Enables the admin API (`/_admin/...`) for loopback callers.
    pub fn admin(mut self) -> Self {
        self.config.admin.enabled = true;
        self
    }
    /// Serves the live dashboard (`/_dashboard`) to loopback callers.
    pub fn dashboard(mut self) -> Self {
        self.config.dashboard = true;
        self
    }
    /// Counts a job's files before answering its kick-off: a job with no
    /// duration is then complete at its first poll, whatever the timing.
    pub fn count_before_accepting(mut self) -> Self {
        self.config.count_before_accepting = true;
        self
    }
    /// A SHA-256 of each file in the manifest ([`ServerConfig::file_digests`]).
    pub fn file_digests(mut self) -> Self {
        self.config.file_digests = true;
        self
    }
    /// Request body sizes and running jobs per client ([`crate::limits::Limits`]).
    pub fn limits(mut self, limits: crate::limits::Limits) -> Self {
        self.config.limits = limits;
        self
    }
    /// Serves every route over TLS (HTTPS) with a certificate for `localhost`,
    /// `127.0.0.1` and `::1` from a fresh local CA held in memory: every URL
    /// is then `https`, and clients trust [`MockServer::ca_cert_pem`] (CLI-032).
    ///
    /// # Panics
    /// If the key or certificate cannot be generated.
    pub fn tls(mut self) -> Self {
        let identity = crate::tls::TlsIdentity::ephemeral().unwrap_or_else(|e| panic!("bulkmock MockServer TLS: {e}"));
        self.config.tls = Some(identity);
        self
    }
    /// Serves every route over TLS with a given certificate and key.
    pub fn tls_identity(mut self, identity: crate::tls::TlsIdentity) -> Self {
        self.config.tls = Some(identity);
        self
    }
    /// Trusts a CA certificate (PEM) when fetching https JWKS URLs of registered clients.
    pub fn jwks_ca_cert(mut self, pem: impl Into<String>) -> Self {
        self.config.auth.jwks_ca_certs.push(pem.into());
        self
    }
    /// The full configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Panics
    /// If the port cannot be bound or a `data_dir` cannot be loaded: a test
    /// cannot go on without its server.
    pub async fn start(self) -> MockServer {
        self.try_start().unwrap_or_else(|e| panic!("bulkmock MockServer failed to start: {e}"))
    }

    /// Like [`start`](Self::start), returning errors instead of panicking.
    pub fn try_start(self) -> std::io::Result<MockServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        crate::auth::jwks::check_roots(&self.config.auth.jwks_ca_certs, "JWKS CA certificate")
            .map_err(std::io::Error::other)?;
        let scheme = if self.config.tls.is_some() { "https" } else { "http" };
        let origin = format!("{scheme}://{}", listener.local_addr()?);
        let state = AppState::new(self.config, &origin)?;
        let demo = match &state.auth {
            None => None,
            Some(_) => {
                let key = ClientKey::generate(self.client_alg).map_err(std::io::Error::other)?;
                let reg = Registration {
                    client_id: Some(DEMO_CLIENT_ID.into()),
                    name: Some("bulkmock demo client".into()),
                    jwks: Some(serde_json::to_value(key.jwks()).map_err(std::io::Error::other)?),
                    ..Registration::default()
                };
                let id = state.register_client(reg).map_err(std::io::Error::other)?;
                Some((id, key))
            }
        };
        let (tx, rx) = oneshot::channel::<()>();
        let serving = Arc::clone(&state);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bulkmock-server")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new().name("bulkmock-server".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = app::serve(listener, serving, async {
                    let _ = rx.await;
                })
                .await;
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
        Ok(MockServer { state, demo, shutdown: Some(tx), thread: Some(thread) })
    }
}

impl MockServer {
    /// Starts a server with the defaults for tests: 100 patients, seed 42, jobs
    /// that complete as soon as their work is done.
    pub async fn start() -> MockServer {
        Self::builder().start().await
    }

    /// A builder with the defaults for tests (zero job duration).
    pub fn builder() -> MockServerBuilder {
        let config = ServerConfig { job_duration: Duration::ZERO, ..ServerConfig::default() };
        MockServerBuilder { config, client_alg: KeyAlg::Es384 }
    }

    /// The CA certificate (PEM) a client must trust to reach this server over
    /// TLS, when it was started with [`tls`](MockServerBuilder::tls) (or another
    /// identity issued by a local CA); `None` for plain http.
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.state.config.tls.as_ref().and_then(|t| t.ca_pem.as_deref())
    }

    /// The FHIR base URL, e.g. `http://127.0.0.1:41234/fhir` (`https://` with TLS).
    pub fn fhir_base(&self) -> &str {
        &self.state.fhir_base
    }

    /// The token endpoint URL.
    pub fn token_url(&self) -> String {
        self.state.token_url()
    }

    /// The id of the pre-registered demo client.
    ///
    /// # Panics
    /// On an [`open`](MockServerBuilder::open) server, which has no clients.
    #[track_caller]
    pub fn client_id(&self) -> &str {
        &self.demo.as_ref().expect("this MockServer is open (no authorization), so it has no client").0
    }

    /// The demo client's key pair (private key as PEM and JWK, public JWKS).
    ///
    /// # Panics
    /// On an open server.
    #[track_caller]
    pub fn client_key(&self) -> &ClientKey {
        &self.demo.as_ref().expect("this MockServer is open (no authorization), so it has no client key").1
    }

    /// Registers another client (inline JWKS or JWKS URL); returns its id.
    pub fn register_client(&self, registration: Registration) -> Result<String, String> {
        self.state.register_client(registration)
    }

    /// Issues an access token for the demo client directly, without the
    /// assertion exchange: a shortcut for tests that are not about
    /// authorization. The token is real: it expires and its scopes are enforced.
    ///
    /// # Panics
    /// On an open server, or when no scope in `scope` can be granted.
    #[track_caller]
    pub fn issue_token(&self, scope: &str) -> String {
        let auth = self.state.auth.as_ref().expect("this MockServer is open (no authorization): no token is needed");
        let source = &self.state.source;
        let known = |t: &str| source.type_index(t).is_some();
        let (grant, dropped) = crate::auth::scopes::Grant::from_request(scope, &known, None);
        assert!(!grant.entries.is_empty(), "no grantable scope in {scope:?}: {dropped:?}");
        auth.issue(self.client_id(), grant, auth.config.token_lifetime)
    }

    /// The fault engine: add, list and remove rules while the server runs.
    pub fn faults(&self) -> &crate::faults::FaultEngine {
        &self.state.faults
    }

    /// Every request and response so far, in order of arrival.
    pub fn transcript(&self) -> Vec<crate::transcript::Exchange> {
        self.state.transcript.exchanges()
    }

    /// Starts capturing every response as sent (status, headers, body bytes),
    /// for observers that check the wire format; see [`crate::capture`].
    pub fn capture_responses(&self) {
        self.state.captured.enable();
    }

    /// Takes the responses captured so far, once the bodies still being sent
    /// have ended (waiting at most five seconds for them).
    pub async fn captured_responses(&self) -> Vec<crate::capture::CapturedResponse> {
        self.state.captured.settle(std::time::Duration::from_secs(5)).await
    }

    /// The data set at revision 0 (its types, ids and counts before any
    /// advance); see [`current_data`](Self::current_data) and [`data_at`](Self::data_at).
    pub fn data(&self) -> &dyn DataSource {
        self.state.source.as_ref()
    }

    /// The data set at the current revision (what the next kick-off snapshots).
    pub fn current_data(&self) -> Arc<dyn DataSource> {
        self.state.current_data()
    }

    /// The data set at any revision: to compute the expected state after revision `n`.
    pub fn data_at(&self, revision: u64) -> Arc<dyn DataSource> {
        self.state.revisions.at(revision)
    }

    /// The current revision of the data set.
    pub fn revision(&self) -> u64 {
        self.state.revisions.revision()
    }

    /// Advances the data set by one revision; returns the new revision.
    ///
    /// # Panics
    /// On a source that does not change over time (`data_dir`).
    #[track_caller]
    pub fn advance_revision(&self) -> u64 {
        self.state.revisions.advance().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Moves the data set to revision `n` (forward only).
    ///
    /// # Panics
    /// On a revision in the past or a source that does not change over time.
    #[track_caller]
    pub fn set_revision(&self, n: u64) {
        self.state.revisions.set(n).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.state.config
    }

    /// Number of requests received so far (cheap; see [`transcript`](Self::transcript) for the exchanges).
    pub fn request_count(&self) -> u64 {
        self.state.transcript.count()
    }

    /// Every export job started on this server (deleted ones too), in kick-off order.
    pub fn jobs(&self) -> Vec<Arc<crate::export::job::Job>> {
        self.state.jobs.history()
    }

    /// The lines of every file of `job` as served without faults (the expected export).
    pub fn job_contents(
        &self,
        job: &crate::export::job::Job,
    ) -> std::io::Result<Vec<crate::export::expected::ExportedFile>> {
        crate::export::expected::contents(job)
    }

    /// The shared state (for embedding the server in a harness).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Number of export jobs that are live (not deleted or expired).
    pub fn live_jobs(&self) -> usize {
        self.state.jobs.len()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

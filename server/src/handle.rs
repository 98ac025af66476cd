//! `MockServer`: the mock on its own thread and runtime, for tests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::app::{self, AppState};
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
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Configures a [`MockServer`] before starting it.
#[derive(Debug, Clone, Default)]
pub struct MockServerBuilder {
    config: ServerConfig,
}

impl MockServerBuilder {
    /// Number of synthetic patients.
    pub fn patients(mut self, n: u64) -> Self {
        self.config.patients = n;
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
        let origin = format!("http://{}", listener.local_addr()?);
        let state = AppState::new(self.config, &origin)?;
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
        Ok(MockServer { state, shutdown: Some(tx), thread: Some(thread) })
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
        MockServerBuilder { config }
    }

    /// The FHIR base URL, e.g. `http://127.0.0.1:41234/fhir`.
    pub fn fhir_base(&self) -> &str {
        &self.state.fhir_base
    }

    /// The data set being served, to compute expected exports.
    pub fn data(&self) -> &dyn DataSource {
        self.state.source.as_ref()
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.state.config
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

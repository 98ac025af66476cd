//! The router and the function that serves it on a caller-bound listener.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::auth::AuthState;
use crate::auth::registry::Registration;
use crate::config::ServerConfig;
use crate::data::DataSource;
use crate::data::synthetic::Synthetic;
use crate::error::FhirError;
use crate::export::job::JobStore;
use crate::faults::FaultEngine;
use crate::routes;
use crate::transcript::Transcript;

/// Shared state of one server.
pub struct AppState {
    /// Settings.
    pub config: ServerConfig,
    /// Where resources come from: the data set at revision 0 (its types and
    /// ids never change). Kick-offs snapshot [`AppState::current_data`].
    pub source: Arc<dyn DataSource>,
    /// The current revision of the data set.
    pub revisions: crate::data::revision::Revisions,
    /// Groups created with `POST /Group`, per client.
    pub created_groups: crate::data::created::CreatedGroups,
    /// Export jobs.
    pub jobs: JobStore,
    /// The FHIR base URL, e.g. `http://127.0.0.1:8080/fhir`.
    pub fhir_base: String,
    /// The authorization server; `None` when the server is open.
    pub auth: Option<AuthState>,
    /// The fault engine.
    pub faults: FaultEngine,
    /// Every request and response.
    pub transcript: Transcript,
    /// Fault profiles embedded in base URLs.
    pub profiles: crate::faults::profile::Profiles,
    /// Reset switches of open connections.
    pub connections: Arc<crate::transport::Switches>,
    /// Capability URLs handed out by the `capability_urls` fault.
    pub capabilities: crate::faults::capability::Capabilities,
    /// Responses as sent, when capture is on (off by default).
    pub captured: crate::capture::ResponseLog,
    /// The upstream when this server is a proxy (`bulkmock proxy`), else `None`.
    pub proxy: Option<Arc<crate::proxy::Upstream>>,
    /// The live dashboard's hooks (`/_dashboard`, when `config.dashboard`).
    pub dashboard: crate::dashboard::Dashboard,
}

impl AppState {
    /// State for a server whose public origin is `origin` (`http://host:port`,
    /// or `https://host:port` when `config.tls` is set).
    pub fn new(config: ServerConfig, origin: &str) -> std::io::Result<Arc<AppState>> {
        Self::build(config, origin, None)
    }

    /// State for a proxy in front of `upstream` (see [`crate::proxy`]).
    pub fn for_proxy(
        config: ServerConfig,
        origin: &str,
        upstream: Arc<crate::proxy::Upstream>,
    ) -> std::io::Result<Arc<AppState>> {
        Self::build(config, origin, Some(upstream))
    }

    fn build(
        config: ServerConfig,
        origin: &str,
        proxy: Option<Arc<crate::proxy::Upstream>>,
    ) -> std::io::Result<Arc<AppState>> {
        let origin = config.public_url.clone().unwrap_or_else(|| origin.to_string());
        let fhir_base = match &proxy {
            Some(upstream) => format!("{}{}", origin.trim_end_matches('/'), upstream.base_path()),
            None => format!("{}/fhir", origin.trim_end_matches('/')),
        };
        let timeline = crate::data::revision::Timeline::new(
            config.revisions.epoch.unwrap_or_else(|| crate::export::job::unix_now() + config.clock_offset),
            match config.revisions.auto {
                crate::data::revision::AutoAdvance::Every(d) => d.as_secs().max(1) as i64,
                _ => 1,
            },
        );
        let source: Arc<dyn DataSource> = match &config.data_dir {
            Some(dir) => Arc::new(crate::data::folder::Folder::load(dir, &fhir_base)?),
            None => Arc::new(
                Synthetic::at(config.seed, config.patients, &fhir_base, timeline, 0).with_density(config.density),
            ),
        };
        let revisions = crate::data::revision::Revisions::new(Arc::clone(&source), config.revisions.auto);
        let auth = (!config.open).then(|| AuthState::new(config.auth.clone(), config.seed));
        let live = match &config.transcript_file {
            Some(path) => Some(std::fs::File::create(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot write transcript {}: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(Arc::new(AppState {
            jobs: JobStore::new(config.seed, config.job_ttl),
            faults: FaultEngine::new(config.faults.clone(), config.seed),
            transcript: Transcript::new(live),
            profiles: Default::default(),
            connections: Default::default(),
            capabilities: crate::faults::capability::Capabilities::new(config.seed),
            config,
            source,
            revisions,
            created_groups: Default::default(),
            captured: Default::default(),
            dashboard: Default::default(),
            fhir_base,
            auth,
            proxy,
        }))
    }

    /// The server clock: real time plus the configured offset, Unix seconds.
    pub fn now(&self) -> i64 {
        crate::export::job::unix_now() + self.config.clock_offset
    }

    /// The data set at the current revision (a snapshot: later advances do not change it).
    pub fn current_data(&self) -> Arc<dyn DataSource> {
        self.revisions.current()
    }

    /// What a caller sees: the current revision plus the Groups it created.
    pub fn data_for(&self, client: Option<&str>) -> Arc<dyn DataSource> {
        self.created_groups.view(self.current_data(), client)
    }

    /// The token endpoint URL (`/auth/token` on the server's origin).
    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.origin())
    }

    /// The token endpoint URL as seen through a profile base (`/p/{profile}` or
    /// the reference server's settings): what that profile's discovery advertises.
    pub fn token_url_in(&self, profile: Option<&crate::faults::profile::ProfilePrefix>) -> String {
        match profile {
            Some(p) => format!("{}/{}/auth/token", self.origin(), p.0),
            None => self.token_url(),
        }
    }

    /// Registers a client; returns its id, or says what is wrong with the registration.
    pub fn register_client(&self, reg: Registration) -> Result<String, String> {
        let auth =
            self.auth.as_ref().ok_or("authorization is off on this server (--open): clients need no registration")?;
        let id = match &reg.client_id {
            Some(id) => id.clone(),
            None => format!("client-{}", auth.random_hex(6)),
        };
        let source = &self.source;
        let known = |t: &str| source.type_index(t).is_some();
        auth.registry.register(reg, id, &known, self.config.seed).map(|c| c.id.clone())
    }

    /// The public origin (scheme, host, port) of the FHIR base.
    pub fn origin(&self) -> &str {
        if self.proxy.is_some() {
            // A proxy's base is the upstream's path on the proxy's origin: the origin is scheme and authority.
            let start = self.fhir_base.find("://").map_or(0, |i| i + 3);
            return match self.fhir_base[start..].find('/') {
                Some(slash) => &self.fhir_base[..start + slash],
                None => &self.fhir_base,
            };
        }
        self.fhir_base.trim_end_matches("/fhir")
    }
}

/// Builds the router (usable without a socket, e.g. with `oneshot`).
pub fn router(state: Arc<AppState>) -> Router {
    // Request bodies are read by `limits` (413 in each endpoint's error shape), not by axum's default limit.
    let unlimited = || axum::extract::DefaultBodyLimit::disable();
    let kickoffs = Router::new()
        .route("/$export", get(routes::kickoff::system).post(routes::kickoff::system))
        .route("/Patient/$export", get(routes::kickoff::patient).post(routes::kickoff::patient))
        .route("/Group/{id}/$export", get(routes::kickoff::group).post(routes::kickoff::group))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::limits::kickoff_body))
        .route_layer(unlimited());
    let fhir = Router::new()
        .merge(kickoffs)
        .route("/metadata", get(routes::metadata::capability_statement))
        .route("/.well-known/smart-configuration", get(crate::auth::discovery::smart_configuration))
        .route("/Group", get(routes::groups::search).post(routes::group_create::create))
        .route("/Group/{id}", get(routes::groups::read))
        .route("/bulkstatus/{job}", get(routes::status::poll).delete(routes::status::delete))
        .route("/bulkstatus/{job}/page/{page}", get(routes::status::poll_page))
        .route("/bulkfiles/{job}/{name}", get(routes::files::download))
        .route("/attachments/{id}", get(routes::files::attachment));
    let auth = Router::new()
        // The token body is read, within its limit, by `faults::apply::layer`.
        .route("/token", post(crate::auth::token::token).layer(unlimited()))
        .merge(
            Router::new()
                .route("/register", post(crate::auth::register::register))
                .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::limits::registration_body))
                .route_layer(unlimited()),
        )
        .route(
            "/authorize",
            get(|| async {
                crate::auth::error::OAuthError::request(
                    "this server supports only the client_credentials grant of SMART Backend Services",
                )
            }),
        );
    let admin_enabled = state.config.admin.enabled;
    let mut app = Router::new()
        .nest("/fhir", fhir)
        .nest("/auth", auth)
        .fallback(|| async { FhirError::not_found("no such endpoint; the FHIR base is /fhir") })
        .method_not_allowed_fallback(|| async {
            FhirError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                bulkmock_wire::IssueType::NotSupported,
                "method not allowed on this endpoint",
            )
        })
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::faults::apply::layer));
    if admin_enabled {
        app = app.nest("/_admin", crate::admin::router(Arc::clone(&state)));
    }
    if state.config.dashboard {
        app = app.nest("/_dashboard", crate::dashboard::router(Arc::clone(&state)));
    }
    let inner = app.with_state(Arc::clone(&state));
    // Profile URLs are rewritten before routing, so the outer router only has a fallback.
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::faults::profile::layer))
        // Outside the fault and profile layers, so OperationOutcomes of every layer are covered.
        .layer(axum::middleware::from_fn(crate::media::negotiate))
        // Outermost: what the connection gets.
        .layer(axum::middleware::from_fn_with_state(state, crate::capture::layer))
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    serve_router(listener, state, app, shutdown).await
}

/// Serves `app` (this server's router or a proxy's) on `listener` with
/// `state`'s limits, TLS and connection switches until `shutdown` completes.
pub(crate) async fn serve_router(
    listener: TcpListener,
    state: Arc<AppState>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = crate::transport::ResettableListener::new(listener, Arc::clone(&state.connections));
    let limits = state.config.limits.clone();
    let tls = state.config.tls.as_ref().map(crate::tls::TlsIdentity::acceptor);
    // Dashboard event streams never end on their own: they end as the server stops.
    let dashboard = Arc::clone(&state);
    let shutdown = async move {
        shutdown.await;
        dashboard.dashboard.stop();
    };
    crate::conn::run(listener, app, &limits, tls, shutdown).await;
    Ok(())
}

/// Serves on `listener` until `shutdown` completes, then stops accepting and
/// lets requests in flight (downloads) go on for at most `grace`. Connections
/// still open after that are left to the runtime's shutdown, which cuts them
/// (each cut exchange is still written to the transcript as its body drops).
pub async fn serve_with_grace(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = serve(listener, state, async move {
        shutdown.await;
        let _ = stopping.send(());
    });
    let grace_over = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served,
        () = grace_over => Ok(()),
    }
}

//! The live dashboard (`/_dashboard`): one self-contained page that shows what
//! clients do as they do it. The page (`page.rs`, assets in `page.*`) gets a
//! snapshot and then every exchange pushed over server-sent events
//! (`stream.rs`, fed by the transcript's broadcast channel: a slow or absent
//! page never slows the server, it loses the oldest events and says so); its
//! controls call a small JSON API (`api.rs`); `view.rs` is what the page sees
//! of an exchange (never a token, an assertion's signature or a secret);
//! `checks.rs` the hook through which the binary adds the harness's live
//! checks. Guarded like the admin API (`guard.rs`): loopback callers only
//! unless `--admin-any-host`, and the admin secret when one is set.

mod api;
pub mod checks;
mod guard;
mod page;
mod stream;
pub mod view;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::{get, post};
use serde_json::Value;

use crate::app::AppState;
pub use checks::{LiveCheck, LiveChecks};

/// Exchanges the live checks read at most: the server's latest (a long run's
/// whole transcript is `bulkmock judge`'s, downloaded from the page).
pub const CHECK_WINDOW: usize = 2_000;

/// How long one computation of the live checks answers every page while the
/// transcript does not grow.
pub const CHECKS_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// The last live-check results: the transcript's count then, when, the JSON.
type ChecksCache = tokio::sync::Mutex<Option<(u64, std::time::Instant, Value)>>;

/// Rows the page keeps at most (older rows are dropped, and the page says so);
/// also the most exchanges sent to a page when it connects.
pub const MAX_ROWS: usize = 500;

/// The dashboard's own state on a server: the live-check hook and what a
/// `serve --scenario` case says, both set once by the binary; the switch that
/// ends every event stream when the server stops (an open page must not hold
/// a graceful stop forever).
pub struct Dashboard {
    checks: OnceLock<Arc<dyn LiveChecks>>,
    scenario: OnceLock<Value>,
    stopping: tokio::sync::watch::Sender<bool>,
    checks_cache: ChecksCache,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            checks: OnceLock::new(),
            scenario: OnceLock::new(),
            stopping: tokio::sync::watch::Sender::new(false),
            checks_cache: Default::default(),
        }
    }
}

impl Dashboard {
    /// Ends every event stream: the server is stopping.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Completes once [`Dashboard::stop`] was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut receiver = self.stopping.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    /// Installs the live checks (once; false when already set).
    pub fn set_live_checks(&self, checks: Arc<dyn LiveChecks>) -> bool {
        self.checks.set(checks).is_ok()
    }

    /// The live checks, when the binary installed some.
    pub fn live_checks(&self) -> Option<&Arc<dyn LiveChecks>> {
        self.checks.get()
    }

    /// Shows a scenario case on the page (`serve --scenario`): any JSON object,
    /// by convention `{"id", "title", "description", "faults": [...], "expect": {...}}`
    /// (once; false when already set).
    pub fn set_scenario(&self, scenario: Value) -> bool {
        self.scenario.set(scenario).is_ok()
    }

    /// The scenario case shown, if any.
    pub fn scenario(&self) -> Option<&Value> {
        self.scenario.get()
    }
}

/// The dashboard's routes (nested at `/_dashboard`), every one behind the guard.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(page::page))
        .route("/events", get(stream::events))
        .route("/api/state", get(api::state))
        .route("/api/checks", get(api::checks))
        .route("/api/transcript", get(api::download_transcript).delete(api::clear_transcript))
        .route("/api/faults", post(api::add_faults))
        .route("/api/validate", post(api::validate_faults))
        .route("/api/faults/{id}", post(api::toggle_fault).delete(api::remove_fault))
        .route("/api/revision", post(api::advance_revision))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::limits::admin_body))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state, guard::guard))
}

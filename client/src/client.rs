//! The client and its builder: one FHIR server, credentials, a policy.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use reqwest::Method;

use crate::auth::{Credentials, Tokens};
use crate::error::ClientError;
use crate::events::{self, Event, Observer};
use crate::http::Http;
use crate::job::ExportJob;
use crate::policy::{Policy, Waits, retry_after};
use crate::request::{ExportRequest, Level};
use crate::summary::Summary;

/// What every part of an export shares.
pub(crate) struct Inner {
    pub http: Http,
    pub base: url::Url,
    pub policy: Policy,
    pub waits: Waits,
    pub observer: Observer,
    pub parallel: usize,
    pub gzip: bool,
    /// Bytes that files waiting for earlier files of their type may hold.
    pub memory_budget: usize,
    /// Requests retried so far.
    pub retries: AtomicU64,
}

impl Inner {
    /// Reports an event.
    pub fn emit(&self, event: Event) {
        (self.observer)(&event);
    }

    /// Counts and reports a retry, then waits.
    pub async fn retry(&self, url: &str, attempt: u32, wait: std::time::Duration, reason: String) {
        self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.emit(Event::Retry {
            url: url.to_string(),
            attempt: attempt + 1,
            wait_ms: wait.as_millis() as u64,
            reason,
        });
        tokio::time::sleep(wait).await;
    }
}

/// A Bulk Data client for one FHIR server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    fhir_base: String,
    credentials: Option<Credentials>,
    policy: Policy,
    observer: Observer,
    parallel: usize,
    gzip: bool,
    memory_budget: usize,
    seed: u64,
    ca_certs: Vec<Vec<u8>>,
}

impl ClientBuilder {
    /// Credentials for SMART Backend Services; without them no token is sent (open servers).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Retry, polling and timeout limits.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Receives progress events.
    pub fn observer(mut self, observer: Observer) -> Self {
        self.observer = observer;
        self
    }

    /// Files downloaded at once (default 4, at least 1).
    pub fn parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// Memory that downloaded files waiting for earlier files of their type may
    /// hold together (default 32 MiB); past it they stop reading until their turn.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Ask for gzip file bodies (default on, CLI-083).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Trusts the CA certificates in `pem` (one or more PEM certificates) besides
    /// the system's roots, e.g. a mock's local CA (`bulkmock serve --tls`).
    /// The client speaks https to every server that asks for it (CLI-032).
    pub fn ca_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certs.push(pem.into());
        self
    }

    /// Seeds the backoff jitter, for repeatable runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Builds the client; with credentials, finds the token endpoint (CLI-010, CLI-011).
    pub async fn build(self) -> Result<Client, ClientError> {
        let mut roots = Vec::new();
        for pem in &self.ca_certs {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError::CaCert(e.to_string()))?;
            if certs.is_empty() {
                return Err(ClientError::CaCert("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
            }
            roots.extend(certs);
        }
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .read_timeout(self.policy.read_timeout)
                .connect_timeout(self.policy.connect_timeout)
        };
        // On a system without CA certificates (a minimal container image),
        // http and the `--ca-cert` roots still work.
        let client = match builder().tls_certs_merge(roots.clone()).build() {
            Ok(client) => client,
            Err(_) => builder()
                .tls_certs_only(roots)
                .build()
                .map_err(|source| ClientError::Transport { url: self.fhir_base.clone(), source })?,
        };
        let mut base = url::Url::parse(&self.fhir_base)
            .map_err(|e| ClientError::Protocol(format!("bad FHIR base URL {:?}: {e}", self.fhir_base)))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let tokens = match self.credentials {
            None => None,
            Some(c) => {
                let token_url = crate::auth::discover_token_url(&client, &base).await?;
                Some(Tokens::new(c, token_url, self.observer.clone()))
            }
        };
        let waits = Waits::new(&self.policy, self.seed);
        Ok(Client {
            inner: Arc::new(Inner {
                http: Http { client, tokens },
                base,
                policy: self.policy,
                waits,
                observer: self.observer,
                parallel: self.parallel,
                gzip: self.gzip,
                memory_budget: self.memory_budget,
                retries: AtomicU64::new(0),
            }),
        })
    }
}

impl Client {
    /// A builder for the server at `fhir_base`.
    pub fn builder(fhir_base: &str) -> ClientBuilder {
        ClientBuilder {
            fhir_base: fhir_base.to_string(),
            credentials: None,
            policy: Policy::default(),
            observer: events::ignore(),
            parallel: 4,
            gzip: true,
            memory_budget: 32 << 20,
            ca_certs: Vec::new(),
            seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        }
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u32 {
        self.inner.http.token_requests()
    }

    /// Kicks off an export (CLI-040..053): 202 gives the job; 429 and transient
    /// errors wait for Retry-After (or back off) and try again within the policy;
    /// other errors are returned with the server's OperationOutcome.
    ///
    /// Two production dialects are met here (`docs/quirks.md`): a POST refused
    /// with 405 is sent again as GET (unless it carries `patient`, which only
    /// POST can send), and a Group id that answers 404 is looked up with a Group
    /// search (by identifier, then by identifier or name ignoring case) and the
    /// export started on the id found.
    pub async fn kick_off(&self, request: &ExportRequest) -> Result<ExportJob, ClientError> {
        let post = request.needs_post();
        let mut request = std::borrow::Cow::Borrowed(request);
        let mut result = self.kick_off_as(&request, post).await;
        if let (Err(e), Level::Group(id)) = (&result, &request.level)
            && status_of(e) == Some(404)
            && let Some(found) = self.find_group(id).await?
            && found != *id
        {
            self.inner.emit(Event::Adapted {
                note: format!("Group/{id} answered 404; a Group search found it as Group/{found}, exporting that"),
            });
            request.to_mut().level = Level::Group(found);
            result = self.kick_off_as(&request, post).await;
        }
        match result {
            Err(e) if status_of(&e) == Some(405) && post && request.patients.is_empty() => {
                self.inner.emit(Event::Adapted {
                    note: "the server refused the POST kick-off (405); sent the same parameters as a GET".into(),
                });
                self.kick_off_as(&request, false).await
            }
            Err(e) if status_of(&e) == Some(405) && post => Err(ClientError::Protocol(format!(
                "the server refused the POST kick-off ({e}), and the patient parameter can only be sent by POST"
            ))),
            other => other,
        }
    }

    /// One kick-off, as POST or GET, with retries of transient failures.
    async fn kick_off_as(&self, request: &ExportRequest, post: bool) -> Result<ExportJob, ClientError> {
        let inner = &self.inner;
        let url = inner.base.join(&request.path()).map_err(|e| ClientError::Protocol(e.to_string()))?.to_string();
        let body = request.parameters().to_string();
        let query = request.query();
        // CLI-049: what the server can search, before asking it to filter.
        crate::capabilities::check_type_filters(&inner.http, &inner.base, &request.type_filters, |e| inner.emit(e))
            .await;
        let mut attempt = 0;
        loop {
            let sent = if post {
                inner
                    .http
                    .send(Method::POST, &url, true, |b| {
                        kickoff_headers(b, request).header("Content-Type", "application/fhir+json").body(body.clone())
                    })
                    .await?
            } else {
                inner.http.send(Method::GET, &url, true, |b| kickoff_headers(b.query(&query), request)).await?
            };
            let r = sent.response;
            let status = r.status().as_u16();
            if status == 202 {
                let location =
                    r.headers().get(reqwest::header::CONTENT_LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(
                        || ClientError::Protocol("the kick-off answered 202 without Content-Location".into()),
                    )?;
                let status_url = inner.base.join(location).map_err(|e| {
                    ClientError::Protocol(format!("the kick-off's Content-Location {location:?} is not a URL: {e}"))
                })?;
                inner.emit(Event::KickedOff { status_url: status_url.to_string() });
                return Ok(self.job(status_url.as_str()));
            }
            let wait = retry_after(r.headers());
            let error = ClientError::from_body(status, &url, r.bytes().await.unwrap_or_default().to_vec());
            attempt += 1;
            // 429, transient OperationOutcomes and infrastructure 5xx (CLI-053, CLI-066, CLI-067):
            // the kick-off was not accepted, so trying again starts no second job.
            if error.is_transient() && attempt < inner.policy.max_attempts {
                let wait = inner.waits.next(wait, attempt - 1);
                inner.retry(&url, attempt - 1, wait, error.to_string()).await;
                continue;
            }
            return Err(error);
        }
    }

    /// The id of the Group known as `name` (technical ids, quirk
    /// `technical-group-ids`): `Group?identifier=name`, else every Group whose
    /// identifier value or name equals `name` ignoring case. `None` unless
    /// exactly one Group matches, or when the server cannot search Groups.
    pub(crate) async fn find_group(&self, name: &str) -> Result<Option<String>, ClientError> {
        let inner = &self.inner;
        let url = inner.base.join("Group").map_err(|e| ClientError::Protocol(e.to_string()))?.to_string();
        for query in [vec![("identifier", name)], vec![]] {
            let sent = inner
                .http
                .send(Method::GET, &url, true, |b| b.query(&query).header("Accept", "application/fhir+json"))
                .await?;
            if !sent.response.status().is_success() {
                return Ok(None);
            }
            let bundle: serde_json::Value = sent.response.json().await.unwrap_or_default();
            let ids: Vec<&str> = bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| &e["resource"])
                .filter(|g| !query.is_empty() || group_known_as(g, name))
                .filter_map(|g| g["id"].as_str())
                .collect();
            match ids.as_slice() {
                [one] => return Ok(Some(one.to_string())),
                [] => continue,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The job behind an existing status URL, to resume polling and downloading.
    pub fn job(&self, status_url: &str) -> ExportJob {
        ExportJob::new(self.clone(), status_url.to_string())
    }

    /// Kick-off, wait, download into `out`, and (per the policy) DELETE.
    pub async fn export(&self, request: &ExportRequest, out: &std::path::Path) -> Result<Summary, ClientError> {
        crate::download::ensure_fresh(out)?;
        let job = self.kick_off(request).await?;
        let summary = job.download(out).await?;
        // CLI-048: a server may ignore _typeFilter; say so rather than pass it on silently.
        for (ty, beyond, total) in crate::type_filter::beyond_filters(out, &request.type_filters) {
            self.inner.emit(Event::Adapted {
                note: format!(
                    "the server ignored _typeFilter (CLI-048): {beyond} of {total} {ty} resources do not match it; \
                     they are kept in {ty}.ndjson, filter them downstream"
                ),
            });
        }
        if self.inner.policy.delete_after {
            let status_url = job.status_url().to_string();
            // The data is safely out: a failed clean-up is a warning, not a failed export.
            if let Err(e) = job.delete().await {
                self.inner.emit(Event::DeleteFailed { status_url, reason: e.to_string() });
            }
        }
        Ok(summary)
    }
}

/// The HTTP status of a server's answer, if the error is one.
pub(crate) fn status_of(e: &ClientError) -> Option<u16> {
    match e {
        ClientError::Outcome { status, .. } | ClientError::Unparseable { status, .. } => Some(*status),
        _ => None,
    }
}

/// Whether Group resource `g` has an identifier value or name equal to `name`, ignoring case.
fn group_known_as(g: &serde_json::Value, name: &str) -> bool {
    let identifiers = g["identifier"].as_array().into_iter().flatten().filter_map(|i| i["value"].as_str());
    identifiers.chain(g["name"].as_str()).any(|v| v.eq_ignore_ascii_case(name))
}

fn kickoff_headers(b: reqwest::RequestBuilder, request: &ExportRequest) -> reqwest::RequestBuilder {
    b.header("Accept", "application/fhir+json").header("Prefer", request.prefer())
}

//! Kick-off, polling and downloads (CLI-040..100).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bulkmock_wire::Manifest;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::auth::Tokens;
use crate::error::ClientError;

/// The export level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`.
    System,
    /// `[base]/Patient/$export`.
    Patient,
    /// `[base]/Group/[id]/$export`.
    Group(String),
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The level.
    pub level: Level,
    /// `_type` values (sent as repeated parameters).
    pub types: Vec<String>,
    /// `_since`.
    pub since: Option<String>,
    /// `_until`.
    pub until: Option<String>,
    /// `_typeFilter` queries.
    pub type_filters: Vec<String>,
    /// `_elements`.
    pub elements: Vec<String>,
    /// Kick off with POST and a Parameters body instead of GET.
    pub post: bool,
}

impl ExportRequest {
    /// A request for `level` with no parameters.
    pub fn new(level: Level) -> Self {
        ExportRequest {
            level,
            types: Vec::new(),
            since: None,
            until: None,
            type_filters: Vec::new(),
            elements: Vec::new(),
            post: false,
        }
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        out.extend(self.types.iter().map(|t| ("_type", t.clone())));
        out.extend(self.since.iter().map(|s| ("_since", s.clone())));
        out.extend(self.until.iter().map(|s| ("_until", s.clone())));
        out.extend(self.type_filters.iter().map(|s| ("_typeFilter", s.clone())));
        out.extend(self.elements.iter().map(|s| ("_elements", s.clone())));
        out
    }
}

/// Limits of the retry and polling policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts per request before giving up.
    pub max_attempts: u32,
    /// Shortest wait between polls or retries.
    pub min_wait: Duration,
    /// Longest wait (a larger Retry-After is clamped).
    pub max_wait: Duration,
    /// Status polls before giving up on a job.
    pub max_polls: u32,
    /// DELETE the job after downloading.
    pub delete_after: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 6,
            min_wait: Duration::from_millis(200),
            max_wait: Duration::from_secs(120),
            max_polls: 100_000,
            delete_after: true,
        }
    }
}

/// What an export produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Resources written per type.
    pub resources: BTreeMap<String, u64>,
    /// Deleted-resource entries received.
    pub deleted: u64,
    /// OperationOutcomes in error files.
    pub errors: u64,
    /// Body bytes downloaded.
    pub bytes: u64,
    /// Requests retried (polls, files, renewals).
    pub retries: u64,
}

/// A Bulk Data client for one FHIR server.
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    tokens: Option<Tokens>,
    policy: Policy,
}

/// Parses `Retry-After` as delay-seconds or an HTTP-date (CLI-061).
pub fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

impl Client {
    /// A client for `fhir_base`; with credentials, the token endpoint is discovered.
    pub async fn new(
        fhir_base: &str,
        credentials: Option<crate::Credentials>,
        policy: Policy,
    ) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| ClientError::Transport { url: fhir_base.into(), source })?;
        let mut base = url::Url::parse(fhir_base)
            .map_err(|e| ClientError::Protocol(format!("bad FHIR base {fhir_base:?}: {e}")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let tokens = match credentials {
            None => None,
            Some(c) => Some(Tokens::new(c, crate::auth::discover_token_url(&http, &base).await?)),
        };
        Ok(Client { http, base, tokens, policy })
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u32 {
        self.tokens.as_ref().map_or(0, |t| t.requests.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sends a request, with the bearer token when `auth`; renews the token once on 401.
    async fn send(
        &self,
        method: Method,
        url: &str,
        auth: bool,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut renew = false;
        loop {
            let mut req = build(self.http.request(method.clone(), url));
            if auth && let Some(tokens) = &self.tokens {
                req = req.bearer_auth(tokens.get(&self.http, renew).await?);
            }
            let r = req.send().await.map_err(|source| ClientError::Transport { url: url.into(), source })?;
            if r.status() == StatusCode::UNAUTHORIZED && auth && self.tokens.is_some() && !renew {
                renew = true; // CLI-027: one fresh token, then give up
                continue;
            }
            return Ok(r);
        }
    }

    fn wait_for(&self, retry_after: Option<Duration>, attempt: u32) -> Duration {
        let backoff = self.policy.min_wait.saturating_mul(1 << attempt.min(10));
        retry_after.unwrap_or(backoff).clamp(self.policy.min_wait, self.policy.max_wait)
    }

    /// Kicks off an export; 429 is retried after its Retry-After (CLI-053).
    pub async fn kick_off(&self, request: &ExportRequest) -> Result<String, ClientError> {
        let path = match &request.level {
            Level::System => "$export".to_string(),
            Level::Patient => "Patient/$export".to_string(),
            Level::Group(id) => format!("Group/{id}/$export"),
        };
        let url = self.base.join(&path).map_err(|e| ClientError::Protocol(e.to_string()))?.to_string();
        for attempt in 0..self.policy.max_attempts {
            let pairs = request.pairs();
            let r = if request.post {
                let parameter: Vec<Value> = pairs.iter().map(|(k, v)| json!({"name": k, "valueString": v})).collect();
                let body = json!({"resourceType": "Parameters", "parameter": parameter}).to_string();
                self.send(Method::POST, &url, true, |b| {
                    b.header("Content-Type", "application/fhir+json").body(body.clone()).headers(kickoff_headers())
                })
                .await?
            } else {
                self.send(Method::GET, &url, true, |b| b.query(&pairs).headers(kickoff_headers())).await?
            };
            let status = r.status().as_u16();
            if status == 202 {
                let location =
                    r.headers().get(header::CONTENT_LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                        ClientError::Protocol("the kick-off answered 202 without Content-Location".into())
                    })?;
                return Ok(self.base.join(location).map(|u| u.to_string()).unwrap_or_else(|_| location.to_string()));
            }
            let wait = retry_after(r.headers());
            let body = r.bytes().await.unwrap_or_default().to_vec();
            let error = ClientError::from_body(status, &url, body);
            if status == 429 && attempt + 1 < self.policy.max_attempts {
                tokio::time::sleep(self.wait_for(wait, attempt)).await;
                continue;
            }
            return Err(error);
        }
        Err(ClientError::Protocol("kick-off retries exhausted".into()))
    }

    /// Polls until the manifest arrives (CLI-060..071); counts retries into `summary`.
    pub async fn wait(&self, status_url: &str, summary: &mut Summary) -> Result<Manifest, ClientError> {
        let mut failures = 0;
        for poll in 0..self.policy.max_polls {
            let r = self.send(Method::GET, status_url, true, |b| b.header("Accept", "application/json")).await?;
            let status = r.status().as_u16();
            let wait = retry_after(r.headers());
            let job_status = r.headers().get("x-export-status").and_then(|v| v.to_str().ok()?.parse::<u16>().ok());
            let body =
                r.bytes().await.map_err(|source| ClientError::Transport { url: status_url.into(), source })?.to_vec();
            match (status, job_status) {
                (200, None | Some(200)) => {
                    return serde_json::from_slice(&body).map_err(|_| ClientError::Unparseable {
                        status,
                        url: status_url.into(),
                        body,
                    });
                }
                (202, _) | (200, Some(202)) => {
                    tokio::time::sleep(self.wait_for(wait, poll.min(6))).await;
                }
                _ => {
                    let error = ClientError::from_body(job_status.unwrap_or(status), status_url, body);
                    failures += 1;
                    if !error.is_transient() || failures >= self.policy.max_attempts {
                        return Err(error);
                    }
                    summary.retries += 1;
                    tokio::time::sleep(self.wait_for(wait, failures)).await;
                }
            }
        }
        Err(ClientError::Protocol(format!("the job at {status_url} did not finish in {} polls", self.policy.max_polls)))
    }

    /// Downloads every output, deleted and error file into `out` (one NDJSON per type,
    /// `deleted/`, `error/`), checking every line and every count.
    pub async fn download_all(
        &self,
        manifest: &Manifest,
        out: &Path,
        summary: &mut Summary,
    ) -> Result<(), ClientError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ClientError::Io { path, source }
        };
        for dir in [out.to_path_buf(), out.join("deleted"), out.join("error"), out.join(".parts")] {
            tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        }
        let auth = manifest.requires_access_token;
        let no_deleted = Vec::new();
        let deleted = manifest.deleted.as_ref().unwrap_or(&no_deleted);
        let groups = [(&manifest.output, None), (deleted, Some("deleted")), (&manifest.error, Some("error"))];
        for (files, sub) in groups {
            for (i, file) in files.iter().enumerate() {
                let part = out.join(".parts").join(format!("{}-{i}.part", sub.unwrap_or("output")));
                let lines = self.download_file(&file.url, auth, &part, summary).await?;
                let ty = file.resource_type.clone().unwrap_or_else(|| "Mixed".into());
                check_lines(&file.url, &lines, file.resource_type.as_deref(), file.count)?;
                let target = match sub {
                    None => out.join(format!("{ty}.ndjson")),
                    Some(dir) => out.join(dir).join(format!("{ty}.ndjson")),
                };
                let mut f =
                    tokio::fs::OpenOptions::new().create(true).append(true).open(&target).await.map_err(io(&target))?;
                f.write_all(&lines).await.map_err(io(&target))?;
                let n = lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
                match sub {
                    None => *summary.resources.entry(ty).or_default() += n,
                    Some("deleted") => summary.deleted += n,
                    _ => summary.errors += n,
                }
                let _ = tokio::fs::remove_file(&part).await;
            }
        }
        let _ = tokio::fs::remove_dir(out.join(".parts")).await;
        Ok(())
    }

    /// Downloads one file into `part`, resuming with `Range` after a cut or reset (CLI-080..093).
    async fn download_file(
        &self,
        url: &str,
        auth: bool,
        part: &PathBuf,
        summary: &mut Summary,
    ) -> Result<Vec<u8>, ClientError> {
        let io = |source| ClientError::Io { path: part.clone(), source };
        let mut have: Vec<u8> = Vec::new();
        let mut last: Option<ClientError> = None;
        for attempt in 0..self.policy.max_attempts {
            if attempt > 0 {
                summary.retries += 1;
            }
            let offset = have.len();
            let r = self
                .send(Method::GET, url, auth, |b| {
                    let b = b.header("Accept", "application/fhir+ndjson");
                    if offset > 0 { b.header(header::RANGE, format!("bytes={offset}-")) } else { b }
                })
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(self.wait_for(None, attempt)).await;
                    continue;
                }
            };
            let status = r.status().as_u16();
            let wait = retry_after(r.headers());
            let expected = r.content_length();
            match status {
                200 => have.clear(), // the server sent the whole file: start over
                206 => {}
                416 => {
                    have.clear();
                    continue;
                }
                _ => {
                    let body = r.bytes().await.unwrap_or_default().to_vec();
                    let error = ClientError::from_body(status, url, body);
                    if !error.is_transient() {
                        return Err(error);
                    }
                    last = Some(error);
                    tokio::time::sleep(self.wait_for(wait, attempt)).await;
                    continue;
                }
            }
            let before = have.len();
            let mut stream = r.bytes_stream();
            let mut cut = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => have.extend_from_slice(&bytes),
                    Err(source) => {
                        cut = Some(ClientError::Transport { url: url.into(), source });
                        break;
                    }
                }
            }
            summary.bytes += (have.len() - before) as u64;
            let short = expected.is_some_and(|e| ((have.len() - before) as u64) < e);
            match (cut, short) {
                (None, false) => {
                    tokio::fs::write(part, &have).await.map_err(io)?;
                    return Ok(have);
                }
                (cut, _) => {
                    last = Some(cut.unwrap_or(ClientError::Integrity {
                        url: url.into(),
                        problem: "body shorter than Content-Length".into(),
                    }));
                    // Keep what arrived, but only whole lines: a resume continues from the last newline.
                    let keep = have.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                    have.truncate(keep);
                }
            }
        }
        Err(ClientError::Exhausted {
            url: url.into(),
            attempts: self.policy.max_attempts,
            last: Box::new(last.unwrap_or(ClientError::Protocol("no attempt made".into()))),
        })
    }

    /// Deletes the job (CLI-100); 202 expected.
    pub async fn delete(&self, status_url: &str) -> Result<(), ClientError> {
        let r = self.send(Method::DELETE, status_url, true, |b| b).await?;
        match r.status().as_u16() {
            202 | 200 | 204 => Ok(()),
            status => Err(ClientError::from_body(status, status_url, r.bytes().await.unwrap_or_default().to_vec())),
        }
    }

    /// Kick-off, wait, download, delete.
    pub async fn export(&self, request: &ExportRequest, out: &Path) -> Result<Summary, ClientError> {
        let mut summary = Summary::default();
        let status_url = self.kick_off(request).await?;
        let manifest = self.wait(&status_url, &mut summary).await?;
        self.download_all(&manifest, out, &mut summary).await?;
        let manifest_path = out.join("manifest.json");
        tokio::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap_or_default())
            .await
            .map_err(|source| ClientError::Io { path: manifest_path, source })?;
        if self.policy.delete_after {
            self.delete(&status_url).await?;
        }
        Ok(summary)
    }
}

fn kickoff_headers() -> header::HeaderMap {
    let mut h = header::HeaderMap::new();
    h.insert(header::ACCEPT, header::HeaderValue::from_static("application/fhir+json"));
    h.insert("prefer", header::HeaderValue::from_static("respond-async"));
    h
}

/// Every line one JSON object of the manifest's type; the count as announced (CLI-092).
fn check_lines(url: &str, body: &[u8], resource_type: Option<&str>, count: Option<u64>) -> Result<(), ClientError> {
    let problem = |p: String| ClientError::Integrity { url: url.into(), problem: p };
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Err(problem("the last line is incomplete (no newline)".into()));
    }
    let mut n = 0;
    for (i, line) in body.split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).map_err(|e| problem(format!("line {} is not JSON: {e}", i + 1)))?;
        let ty = v["resourceType"].as_str().unwrap_or_default();
        if let Some(expected) = resource_type
            && ty != expected
        {
            return Err(problem(format!("line {} is a {ty}, the manifest says {expected}", i + 1)));
        }
        n += 1;
    }
    if let Some(c) = count
        && c != n
    {
        return Err(problem(format!("{n} resources, the manifest says {c}")));
    }
    Ok(())
}

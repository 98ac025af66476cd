//! An accepted export job: polling (CLI-060..071), partial manifests, downloads, DELETE.
//! Only a job can be polled, downloaded or cancelled; `Client::kick_off` or
//! `Client::job` (to resume by status URL) make one.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bulkmock_wire::Manifest;
use reqwest::Method;

use crate::client::{Client, Inner};
use crate::download::Pool;
use crate::error::ClientError;
use crate::events::Event;
use crate::manifest;
use crate::policy::retry_after;
use crate::summary::Summary;

/// What one status (or manifest page) request said.
pub(crate) enum Poll {
    /// Still running.
    Running {
        /// The server's Retry-After.
        wait: Option<Duration>,
        /// `X-Progress`.
        progress: Option<String>,
    },
    /// A manifest or a page of one; `complete` when the job is done.
    Page {
        /// The manifest.
        manifest: Box<Manifest>,
        /// Whether the job reported completion (200).
        complete: bool,
        /// The server's Retry-After, for a partial page.
        wait: Option<Duration>,
    },
}

/// One GET of a status or manifest page URL. Transient failures (429, transient
/// OperationOutcomes, 5xx, non-FHIR error bodies, resets) are retried within the
/// policy (CLI-065..067); others end the job.
pub(crate) async fn poll_once(inner: &Inner, url: &str) -> Result<Poll, ClientError> {
    let mut failures = 0;
    loop {
        let failure = match inner.http.send(Method::GET, url, true, |b| b.header("Accept", "application/json")).await {
            Err(e) => e,
            Ok(sent) => {
                let r = sent.response;
                let status = r.status().as_u16();
                let wait = retry_after(r.headers());
                // Lossy: X-Progress may hold curly quotes or other non-ASCII text (CLI-064).
                let header =
                    |name: &str| r.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let job_status = header("x-export-status").and_then(|s| s.trim().parse::<u16>().ok());
                let progress = header("x-progress");
                let effective = job_status.unwrap_or(status);
                match r.bytes().await {
                    Err(source) => ClientError::Transport { url: url.into(), source },
                    Ok(body) => match effective {
                        200 => {
                            let manifest = manifest::parse(&body).map_err(|problem| ClientError::Unparseable {
                                status,
                                url: format!("{url} ({problem})"),
                                body: body.to_vec(),
                            })?;
                            return Ok(Poll::Page { manifest: Box::new(manifest), complete: true, wait });
                        }
                        202 => {
                            // CLI-068: a 202 may carry a partial manifest.
                            return Ok(match manifest::parse(&body) {
                                Ok(manifest) if !body.is_empty() => {
                                    Poll::Page { manifest: Box::new(manifest), complete: false, wait }
                                }
                                _ => Poll::Running { wait, progress },
                            });
                        }
                        code => {
                            let error = ClientError::from_body(code, url, body.to_vec());
                            if !error.is_transient() {
                                return Err(error);
                            }
                            failures += 1;
                            if failures >= inner.policy.max_attempts {
                                return Err(ClientError::Exhausted {
                                    url: url.into(),
                                    attempts: failures,
                                    last: Box::new(error),
                                });
                            }
                            let pause = inner.waits.next(wait, failures - 1);
                            inner.retry(url, failures - 1, pause, error.to_string()).await;
                            continue;
                        }
                    },
                }
            }
        };
        if !failure.is_transient() {
            return Err(failure);
        }
        failures += 1;
        if failures >= inner.policy.max_attempts {
            return Err(ClientError::Exhausted { url: url.into(), attempts: failures, last: Box::new(failure) });
        }
        let pause = inner.waits.next(None, failures - 1);
        inner.retry(url, failures - 1, pause, failure.to_string()).await;
    }
}

/// Every file of a manifest page in order: output, deleted, error.
pub(crate) fn files_of(manifest: &Manifest) -> usize {
    manifest.output.len() + manifest.deleted.as_ref().map_or(0, Vec::len) + manifest.error.len()
}

/// An export job on the server.
pub struct ExportJob {
    client: Client,
    status_url: String,
}

impl ExportJob {
    pub(crate) fn new(client: Client, status_url: String) -> Self {
        ExportJob { client, status_url }
    }

    /// The status URL (keep it to resume with `Client::job`).
    pub fn status_url(&self) -> &str {
        &self.status_url
    }

    /// Waits for the complete manifest, all pages merged into one.
    pub async fn manifest(&self) -> Result<Manifest, ClientError> {
        self.walk(None).await
    }

    /// Polls and downloads at once: files are fetched as soon as a manifest (page)
    /// lists them, into `out` (one NDJSON per type, `deleted/`, `error/`, `manifest.json`).
    /// The folder must not hold an earlier export.
    pub async fn download(&self, out: &Path) -> Result<Summary, ClientError> {
        let inner = &self.client.inner;
        let mut pool = Pool::start(inner.clone(), out)?;
        let manifest = match self.walk(Some(&mut pool)).await {
            Ok(m) => m,
            Err(e) => {
                pool.abort();
                return Err(e);
            }
        };
        let mut summary = pool.finish(&manifest).await?;
        summary.status_url = self.status_url.clone();
        summary.transaction_time = manifest.transaction_time.clone();
        summary.retries = inner.retries.load(std::sync::atomic::Ordering::Relaxed);
        summary.token_requests = inner.http.token_requests();
        Ok(summary)
    }

    /// Follows the job to completion (CLI-060..069): waits as Retry-After says or
    /// backs off, follows `link` next pages, hands each page's new files to `pool`.
    async fn walk(&self, mut pool: Option<&mut Pool>) -> Result<Manifest, ClientError> {
        let inner = &self.client.inner;
        let mut url = self.status_url.clone();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut merged: Option<Manifest> = None;
        let mut idle = 0;
        for _ in 0..inner.policy.max_polls {
            if let Some(pool) = pool.as_deref_mut() {
                pool.check()?;
            }
            match poll_once(inner, &url).await? {
                Poll::Running { wait, progress } => {
                    let pause = inner.waits.next(wait, idle);
                    idle += 1;
                    inner.emit(Event::InProgress { progress, wait_ms: pause.as_millis() as u64 });
                    tokio::time::sleep(pause).await;
                }
                Poll::Page { manifest, complete, wait } => {
                    idle = 0;
                    let total = files_of(&manifest);
                    let already = seen.get(&url).copied().unwrap_or(0).min(total);
                    if let Some(pool) = pool.as_deref_mut() {
                        pool.add_page(&url, &manifest, already);
                    }
                    seen.insert(url.clone(), total);
                    let next = manifest::next_link(&manifest).map(str::to_string);
                    inner.emit(Event::Manifest {
                        url: url.clone(),
                        new_files: total - already,
                        complete: complete && next.is_none(),
                    });
                    merge(&mut merged, *manifest, already);
                    if let Some(next) = next {
                        url = url::Url::parse(&url).and_then(|u| u.join(&next)).map(String::from).unwrap_or(next);
                    } else if complete {
                        let mut m = merged.expect("a page was merged");
                        m.link.clear();
                        return Ok(m);
                    } else {
                        tokio::time::sleep(inner.waits.next(wait, 0)).await;
                    }
                }
            }
        }
        Err(ClientError::Exhausted {
            url: self.status_url.clone(),
            attempts: inner.policy.max_polls,
            last: Box::new(ClientError::Protocol("the job was still running after the last poll".into())),
        })
    }

    /// Tells the server the job's files may go (CLI-100); 202 expected.
    pub async fn delete(self) -> Result<(), ClientError> {
        let inner = &self.client.inner;
        let sent = inner.http.send(Method::DELETE, &self.status_url, true, |b| b).await?;
        let r = sent.response;
        match r.status().as_u16() {
            200 | 202 | 204 => {
                inner.emit(Event::Deleted { status_url: self.status_url.clone() });
                Ok(())
            }
            status => {
                Err(ClientError::from_body(status, &self.status_url, r.bytes().await.unwrap_or_default().to_vec()))
            }
        }
    }
}

/// Adds a page's files from position `skip` on to the merged manifest.
fn merge(merged: &mut Option<Manifest>, page: Manifest, skip: usize) {
    let Some(m) = merged else {
        *merged = Some(page);
        return;
    };
    let mut i = 0;
    let mut take = |files: Vec<bulkmock_wire::ManifestFile>, into: &mut Vec<bulkmock_wire::ManifestFile>| {
        for f in files {
            if i >= skip {
                into.push(f);
            }
            i += 1;
        }
    };
    take(page.output, &mut m.output);
    let deleted = m.deleted.get_or_insert_with(Vec::new);
    take(page.deleted.unwrap_or_default(), deleted);
    take(page.error, &mut m.error);
    m.link = page.link;
}

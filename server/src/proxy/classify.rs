//! What a proxied request is, for the fault engine's targets and matchers. A
//! real server's URLs have no fixed shape, so the proxy learns them from the
//! answers it forwards: a kick-off's `Content-Location` is a job's status URL,
//! a manifest's `url`s are that job's files (their type and position), its
//! `link`s more status pages. Paths it has not seen are classified by their
//! shape (`$export`, `metadata`, `.well-known/smart-configuration`, bulkmock's
//! and the SMART reference server's `bulkstatus`/`bulkfiles`, `Binary`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::app::AppState;
use crate::faults::apply::Classified;
use crate::faults::{RequestFacts, Target};

/// A job the proxy saw start.
#[derive(Debug, Clone)]
struct Job {
    level: &'static str,
    started: Instant,
    /// Files listed so far over its manifest pages.
    files: usize,
}

/// A file URL from a manifest.
#[derive(Debug, Clone)]
struct File {
    job: String,
    index: usize,
    resource_type: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Status URL path -> job.
    jobs: HashMap<String, Job>,
    /// Manifest page path -> status URL path of its job.
    pages: HashMap<String, String>,
    /// File path (and query) -> file.
    files: HashMap<String, File>,
}

/// The upstream's URLs the proxy has handed out, by path.
#[derive(Debug, Default)]
pub struct Learned {
    inner: Mutex<Inner>,
}

impl Learned {
    /// A kick-off at `kickoff_path` was accepted with status URL path `status_path`.
    pub fn kickoff(&self, kickoff_path: &str, status_path: &str) {
        let job = Job { level: level_of(kickoff_path), started: Instant::now(), files: 0 };
        self.inner.lock().expect("learned").jobs.insert(status_path.to_string(), job);
    }

    /// A manifest answered at `page_path` (URLs already on the proxy's origin `origin`).
    pub fn manifest(&self, page_path: &str, manifest: &Value, origin: &str) {
        let mut inner = self.inner.lock().expect("learned");
        let job_path = inner.pages.get(page_path).cloned().unwrap_or_else(|| page_path.to_string());
        let job = inner.jobs.entry(job_path.clone()).or_insert_with(|| Job {
            level: "system",
            started: Instant::now(),
            files: 0,
        });
        let mut next = job.files;
        let mut files = Vec::new();
        for list in ["output", "deleted", "error"] {
            for item in manifest.get(list).and_then(Value::as_array).into_iter().flatten() {
                // Every entry counts for positions; only those on the proxy can be requested here.
                let index = next;
                next += 1;
                let Some(key) = item.get("url").and_then(Value::as_str).and_then(|u| local_key(u, origin)) else {
                    continue;
                };
                let resource_type = item.get("type").and_then(Value::as_str).map(str::to_string);
                files.push((key, File { job: job_path.clone(), index, resource_type }));
            }
        }
        job.files = next;
        inner.files.extend(files);
        for link in manifest.get("link").and_then(Value::as_array).into_iter().flatten() {
            if let Some(key) = link.get("url").and_then(Value::as_str).and_then(|u| local_key(u, origin)) {
                let path = key.split('?').next().unwrap_or_default().to_string();
                inner.pages.insert(path, job_path.clone());
            }
        }
    }

    /// The status URL path of the job `path` belongs to (itself for a status URL).
    pub fn job_of(&self, path: &str, query: Option<&str>) -> Option<String> {
        let inner = self.inner.lock().expect("learned");
        if inner.jobs.contains_key(path) {
            return Some(path.to_string());
        }
        if let Some(job) = inner.pages.get(path) {
            return Some(job.clone());
        }
        inner.files.get(&key(path, query)).or_else(|| inner.files.get(path)).map(|f| f.job.clone())
    }

    /// The facts of a request to `path` (the proxy's path, which is the upstream's).
    pub fn facts(&self, method: &str, path: &str, query: Option<&str>) -> RequestFacts {
        let mut facts = RequestFacts::default();
        let inner = self.inner.lock().expect("learned");
        let job_path = inner.pages.get(path).cloned().or_else(|| inner.jobs.contains_key(path).then(|| path.into()));
        let file = inner.files.get(&key(path, query)).or_else(|| inner.files.get(path));
        if let Some(job_path) = job_path {
            facts.target = Some(if method == "DELETE" { Target::Delete } else { Target::Status });
            if let Some(job) = inner.jobs.get(&job_path) {
                facts.level = Some(job.level.into());
                facts.job_age_s = Some(job.started.elapsed().as_secs_f64());
            }
        } else if let Some(file) = file {
            facts.target = Some(Target::File);
            facts.file_index = Some(file.index);
            facts.resource_type = file.resource_type.clone();
            if let Some(job) = inner.jobs.get(&file.job) {
                facts.level = Some(job.level.into());
                facts.job_age_s = Some(job.started.elapsed().as_secs_f64());
            }
        } else {
            by_shape(method, path, &mut facts);
        }
        facts
    }
}

/// The path and query of `url` when it is on `origin`.
fn local_key(url: &str, origin: &str) -> Option<String> {
    let rest = url.strip_prefix(origin)?;
    rest.starts_with('/').then(|| rest.split('#').next().unwrap_or_default().to_string())
}

fn key(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

fn level_of(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(3).collect();
    match segments.as_slice() {
        ["$export", "Patient", ..] => "patient",
        ["$export", _, "Group"] => "group",
        _ => "system",
    }
}

/// A path the proxy has not seen in an answer, by its shape.
fn by_shape(method: &str, path: &str, facts: &mut RequestFacts) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let last = segments.last().copied().unwrap_or_default();
    let has = |name: &str| segments.contains(&name);
    facts.target = if last == "$export" {
        facts.level = Some(level_of(path).into());
        Some(Target::Kickoff)
    } else if last == "metadata" || path.ends_with("/.well-known/smart-configuration") {
        Some(Target::Metadata)
    } else if has("bulkstatus") || last.starts_with("$export-poll-status") {
        Some(if method == "DELETE" { Target::Delete } else { Target::Status })
    } else if has("bulkfiles") {
        let mut parts = last.split('.');
        facts.file_index = parts.next().and_then(|n| n.parse().ok());
        let rest: Vec<&str> = parts.collect();
        facts.resource_type = match rest.as_slice() {
            ["deleted", ty, "ndjson"] | [ty, "ndjson"] => Some(ty.to_string()),
            _ => None,
        };
        Some(Target::File)
    } else if has("attachments") || has("Binary") {
        Some(Target::Attachment)
    } else {
        None
    };
}

/// The layer in front of the fault middleware: classifies the request for it.
pub async fn layer(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    if let Some(upstream) = &state.proxy {
        let facts = upstream.learned.facts(request.method().as_str(), request.uri().path(), request.uri().query());
        request.extensions_mut().insert(Classified(facts));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn files_and_pages_are_learned_from_manifests() {
        let learned = Learned::default();
        learned.kickoff("/fhir/Group/g1/$export", "/fhir/status/abc");
        let origin = "http://127.0.0.1:9";
        let manifest = json!({
            "output": [
                {"type": "Patient", "url": "http://127.0.0.1:9/files/a?x=1"},
                {"type": "Observation", "url": "http://127.0.0.1:9/files/b"},
                {"type": "Observation", "url": "https://storage.example/elsewhere"}
            ],
            "link": [{"relation": "next", "url": "http://127.0.0.1:9/fhir/status/abc/2"}]
        });
        learned.manifest("/fhir/status/abc", &manifest, origin);
        let f = learned.facts("GET", "/files/b", None);
        assert_eq!(
            (f.target, f.file_index, f.resource_type.as_deref()),
            (Some(Target::File), Some(1), Some("Observation"))
        );
        assert_eq!(f.level.as_deref(), Some("group"));
        assert_eq!(learned.facts("GET", "/files/a", Some("x=1")).file_index, Some(0));
        assert_eq!(learned.facts("GET", "/fhir/status/abc/2", None).target, Some(Target::Status));
        assert_eq!(learned.facts("DELETE", "/fhir/status/abc", None).target, Some(Target::Delete));
        assert_eq!(learned.job_of("/files/b", None).as_deref(), Some("/fhir/status/abc"));
        learned.manifest(
            "/fhir/status/abc/2",
            &json!({"output": [{"type": "Condition", "url": "http://127.0.0.1:9/files/c"}]}),
            origin,
        );
        assert_eq!(learned.facts("GET", "/files/c", None).file_index, Some(3));
    }

    #[test]
    fn unseen_paths_are_classified_by_shape() {
        let l = Learned::default();
        let f = l.facts("GET", "/x/fhir/Patient/$export", None);
        assert_eq!((f.target, f.level.as_deref()), (Some(Target::Kickoff), Some("patient")));
        assert_eq!(l.facts("GET", "/fhir/.well-known/smart-configuration", None).target, Some(Target::Metadata));
        let f = l.facts("GET", "/fhir/bulkfiles/j/3.Condition.ndjson", None);
        assert_eq!(
            (f.target, f.file_index, f.resource_type.as_deref()),
            (Some(Target::File), Some(3), Some("Condition"))
        );
        assert_eq!(l.facts("GET", "/fhir/Group/1", None).target, None);
    }
}

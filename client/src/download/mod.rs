//! Downloads: a pool of parallel file fetches fed while the job is polled, part
//! files merged in manifest order into one NDJSON per type at the end.
//!
//! Invariant: the output folder only gets data files once every file arrived
//! whole and checked; until then everything lives in `.parts/`.

mod file;
pub(crate) mod lines;
mod urls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulkmock_wire::Manifest;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Inner;
use crate::error::ClientError;
use crate::summary::Summary;
pub(crate) use urls::{FileRef, Group, UrlBook};

/// A finished file.
pub(crate) struct Done {
    ordinal: usize,
    resources: u64,
    bytes: u64,
}

/// One file to fetch.
pub(crate) struct FileTask {
    /// Position in manifest order over all pages.
    pub ordinal: usize,
    /// Where its URL is kept.
    pub place: FileRef,
    /// The manifest's `type`.
    pub resource_type: Option<String>,
    /// The manifest's `count`.
    pub count: Option<u64>,
}

impl FileTask {
    /// The output file name (within `deleted/` or `error/` for those groups).
    fn target(&self, out: &Path) -> PathBuf {
        let (dir, fallback) = match self.place.group {
            Group::Output => (out.to_path_buf(), "output"),
            Group::Deleted => (out.join("deleted"), "Bundle"),
            Group::Error => (out.join("error"), "OperationOutcome"),
        };
        dir.join(format!("{}.ndjson", self.resource_type.as_deref().unwrap_or(fallback)))
    }
}

/// Parallel downloads of one export.
pub(crate) struct Pool {
    inner: Arc<Inner>,
    book: Arc<UrlBook>,
    out: PathBuf,
    parts: PathBuf,
    set: JoinSet<Result<Done, ClientError>>,
    permits: Arc<Semaphore>,
    tasks: Vec<Arc<FileTask>>,
    done: Vec<Option<Done>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.to_path_buf(), source }
}

impl Pool {
    /// A pool writing under `out`, which must not hold an earlier export.
    pub fn start(inner: Arc<Inner>, out: &Path) -> Result<Pool, ClientError> {
        ensure_fresh(out)?;
        let parts = out.join(".parts");
        let _ = std::fs::remove_dir_all(&parts); // leftovers of a failed run
        std::fs::create_dir_all(&parts).map_err(io(&parts))?;
        let permits = Arc::new(Semaphore::new(inner.parallel));
        Ok(Pool {
            inner,
            book: Arc::new(UrlBook::default()),
            out: out.to_path_buf(),
            parts,
            set: JoinSet::new(),
            permits,
            tasks: Vec::new(),
            done: Vec::new(),
        })
    }

    /// Starts fetching the files of a manifest page from position `skip` on.
    pub fn add_page(&mut self, page_url: &str, manifest: &Manifest, skip: usize) {
        self.book.record(page_url, manifest);
        let deleted = manifest.deleted.as_deref().unwrap_or_default();
        let groups =
            [(Group::Output, &manifest.output[..]), (Group::Deleted, deleted), (Group::Error, &manifest.error[..])];
        let files =
            groups.into_iter().flat_map(|(group, files)| files.iter().enumerate().map(move |(i, f)| (group, i, f)));
        for (group, index, file) in files.skip(skip) {
            let task = Arc::new(FileTask {
                ordinal: self.tasks.len(),
                place: FileRef { page_url: page_url.to_string(), group, index },
                resource_type: file.resource_type.clone(),
                count: file.count,
            });
            self.tasks.push(task.clone());
            self.done.push(None);
            let (inner, book, permits) = (self.inner.clone(), self.book.clone(), self.permits.clone());
            let part = self.parts.join(format!("{}.part", task.ordinal));
            self.set.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
                file::fetch(&inner, &book, &task, &part).await
            });
        }
    }

    /// The first failure among finished downloads, if any.
    pub fn check(&mut self) -> Result<(), ClientError> {
        while let Some(joined) = self.set.try_join_next() {
            self.settle(joined)?;
        }
        Ok(())
    }

    /// Records a finished download; a failure stops the others.
    fn settle(&mut self, joined: Result<Result<Done, ClientError>, tokio::task::JoinError>) -> Result<(), ClientError> {
        match flatten(joined) {
            Ok(d) => {
                let i = d.ordinal;
                self.done[i] = Some(d);
                Ok(())
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Stops every download.
    pub fn abort(&mut self) {
        self.set.abort_all();
    }

    /// Waits for every download, then merges the parts into the output folder.
    pub async fn finish(mut self, manifest: &Manifest) -> Result<Summary, ClientError> {
        while let Some(joined) = self.set.join_next().await {
            self.settle(joined)?;
        }
        let (out, parts, tasks, done) =
            (self.out.clone(), self.parts.clone(), self.tasks.clone(), std::mem::take(&mut self.done));
        let manifest_json = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        tokio::task::spawn_blocking(move || assemble(&out, &parts, &tasks, &done, &manifest_json))
            .await
            .expect("the merge does not panic")
    }
}

/// Fails when `out` already holds an export (a manifest or NDJSON files).
pub(crate) fn ensure_fresh(out: &Path) -> Result<(), ClientError> {
    let Ok(entries) = std::fs::read_dir(out) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "manifest.json" || name.ends_with(".ndjson") {
            return Err(ClientError::Io {
                path: entry.path(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the output folder already holds an export; choose another folder or empty it",
                ),
            });
        }
    }
    Ok(())
}

fn flatten(joined: Result<Result<Done, ClientError>, tokio::task::JoinError>) -> Result<Done, ClientError> {
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ClientError::Protocol("a download was cancelled".into())),
    }
}

/// Moves the parts into place in manifest order (the first part of a type is
/// renamed, later ones appended), writes `manifest.json` last, and sums up.
fn assemble(
    out: &Path,
    parts: &Path,
    tasks: &[Arc<FileTask>],
    done: &[Option<Done>],
    manifest_json: &[u8],
) -> Result<Summary, ClientError> {
    let mut summary = Summary::default();
    for dir in [out.join("deleted"), out.join("error")] {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    }
    for (task, done) in tasks.iter().zip(done) {
        let done = done.as_ref().expect("every download finished");
        let part = parts.join(format!("{}.part", task.ordinal));
        let target = task.target(out);
        match task.place.group {
            Group::Output => {
                *summary.resources.entry(task.resource_type.clone().unwrap_or_else(|| "output".into())).or_default() +=
                    done.resources
            }
            Group::Deleted => summary.deleted += done.resources,
            Group::Error => {
                summary.errors += done.resources;
                collect_issues(&part, &mut summary.error_issues);
            }
        }
        summary.files += 1;
        summary.bytes += done.bytes;
        if target.exists() {
            let mut from = std::fs::File::open(&part).map_err(io(&part))?;
            let mut to = std::fs::OpenOptions::new().append(true).open(&target).map_err(io(&target))?;
            std::io::copy(&mut from, &mut to).map_err(io(&target))?;
            std::fs::remove_file(&part).map_err(io(&part))?;
        } else {
            std::fs::rename(&part, &target).map_err(io(&target))?;
        }
    }
    let _ = std::fs::remove_dir(parts);
    let path = out.join("manifest.json");
    std::fs::write(&path, manifest_json).map_err(io(&path))?;
    Ok(summary)
}

/// Issues shown in the summary at most.
const MAX_ISSUES: usize = 20;

/// Reads `severity: text` of each issue in an error file (CLI-088).
fn collect_issues(part: &Path, issues: &mut Vec<String>) {
    let Ok(text) = std::fs::read_to_string(part) else { return };
    for line in text.lines() {
        let Ok(outcome) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        for issue in outcome["issue"].as_array().into_iter().flatten() {
            if issues.len() >= MAX_ISSUES {
                return;
            }
            let text = issue["diagnostics"].as_str().or(issue["details"]["text"].as_str()).unwrap_or("(no text)");
            issues.push(format!("{}: {text}", issue["severity"].as_str().unwrap_or("error")));
        }
    }
}

//! Downloads: a pool of parallel file fetches fed while the job is polled; the
//! files are merged in manifest order into one NDJSON per type as they arrive.
//!
//! Invariant: the output folder only gets data files once every file arrived
//! whole and checked; until then everything lives in `.parts/`.

mod file;
pub(crate) mod lines;
mod merge;
mod output;
mod urls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulkmock_wire::Manifest;
use tokio::sync::{Semaphore, oneshot};
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
    /// The SHA-256 the manifest's extension gives for the file's bytes, if any.
    pub sha256: Option<String>,
}

impl FileTask {
    /// The output file, relative to the output folder (`deleted/` and `error/` for those groups).
    fn target(&self) -> String {
        let (dir, fallback) = match self.place.group {
            Group::Output => ("", "output"),
            Group::Deleted => ("deleted/", "Bundle"),
            Group::Error => ("error/", "OperationOutcome"),
        };
        format!("{dir}{}.ndjson", self.resource_type.as_deref().unwrap_or(fallback))
    }
}

/// Parallel downloads of one export.
pub(crate) struct Pool {
    inner: Arc<Inner>,
    book: Arc<UrlBook>,
    out: PathBuf,
    merger: Arc<merge::Merger>,
    set: JoinSet<Result<Done, ClientError>>,
    permits: Arc<Semaphore>,
    /// Signalled when the last file added so far holds its permit.
    turn: Option<oneshot::Receiver<()>>,
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
        let merger = Arc::new(merge::Merger::new(parts, inner.memory_budget));
        Ok(Pool {
            inner,
            book: Arc::new(UrlBook::default()),
            out: out.to_path_buf(),
            merger,
            set: JoinSet::new(),
            permits,
            turn: None,
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
            let mut task = FileTask {
                ordinal: 0,
                place: FileRef { page_url: page_url.to_string(), group, index },
                resource_type: file.resource_type.clone(),
                count: file.count,
                sha256: file.sha256().map(str::to_ascii_lowercase),
            };
            task.ordinal = self.merger.expect(task.target());
            let task = Arc::new(task);
            self.tasks.push(task.clone());
            self.done.push(None);
            let (inner, book, permits) = (self.inner.clone(), self.book.clone(), self.permits.clone());
            let merger = self.merger.clone();
            // Permits go out in manifest order, so the earliest unfinished file
            // always downloads: it is next in line and never waits for memory.
            let (my_turn, next_turn) = (self.turn.take(), oneshot::channel());
            self.turn = Some(next_turn.1);
            self.set.spawn(async move {
                if let Some(turn) = my_turn {
                    let _ = turn.await; // an error: the file before ended early; go on
                }
                let permit = permits.acquire_owned().await.expect("the semaphore is never closed");
                let _ = next_turn.0.send(());
                let is_error = task.place.group == Group::Error;
                let out = if is_error {
                    // Error files stay whole parts: their issues are read for the summary.
                    let part = merger.part(task.ordinal);
                    output::Output::part(&part).map_err(io(&part))?
                } else {
                    output::Output::queued(merger.clone(), task.ordinal)
                };
                let (done, finished) = file::fetch(&inner, &book, &task, out).await?;
                drop(permit); // the next download starts while this file is merged
                tokio::task::spawn_blocking(move || merger.finished(task.ordinal, finished, is_error))
                    .await
                    .expect("merging does not panic")?;
                Ok(done)
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
        let mut summary = Summary::default();
        for (task, done) in self.tasks.iter().zip(&self.done) {
            let done = done.as_ref().expect("every download finished");
            match task.place.group {
                Group::Output => {
                    let ty = task.resource_type.clone().unwrap_or_else(|| "output".into());
                    *summary.resources.entry(ty).or_default() += done.resources;
                }
                Group::Deleted => summary.deleted += done.resources,
                Group::Error => summary.errors += done.resources,
            }
            summary.files += 1;
            summary.bytes += done.bytes;
        }
        let (merger, out) = (self.merger.clone(), self.out.clone());
        let manifest_json = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        summary.error_issues = tokio::task::spawn_blocking(move || -> Result<Vec<String>, ClientError> {
            let issues = merger.publish(&out)?;
            let path = out.join("manifest.json"); // last: its presence means the export is whole
            std::fs::write(&path, manifest_json).map_err(io(&path))?;
            Ok(issues)
        })
        .await
        .expect("publishing does not panic")?;
        Ok(summary)
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

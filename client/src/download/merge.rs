//! Merging files, in manifest order, into one staged file per output target
//! while other files still download. The file next in line writes straight
//! into the staged file (see `output`); files that finish earlier wait, in
//! memory or as parts, and are appended as soon as everything before them is
//! in. Staged files live in `.parts/merged/` and move into the output folder
//! only when the whole export succeeded.

use std::collections::HashMap;
use std::fs::File;
use std::io::Seek;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::output::Finished;
use crate::error::ClientError;

/// Issues shown in the summary at most.
const MAX_ISSUES: usize = 20;

#[derive(Default)]
struct Queue {
    /// Ordinals of this target's files, in manifest order.
    order: Vec<usize>,
    /// How many of them are merged.
    merged: usize,
    /// The file next in line writes straight into the staged file.
    writing: bool,
}

#[derive(Default)]
struct State {
    /// Target (relative path) of each ordinal.
    targets: Vec<String>,
    queues: HashMap<String, Queue>,
    /// Finished files not merged yet.
    finished: Vec<Option<Finished>>,
    issues: Vec<String>,
}

/// Appends files to their targets as soon as all earlier files of the same target are in.
pub(crate) struct Merger {
    parts: PathBuf,
    state: Mutex<State>,
    /// Bytes held in memory by waiting files.
    buffered: AtomicUsize,
    /// Past this, waiting files pause.
    budget: usize,
    /// Woken when memory is given back or a file is merged.
    progress: tokio::sync::Notify,
}

impl Merger {
    /// A merger for parts in `parts`; waiting files may hold `budget` bytes in
    /// memory together, beyond it they stop reading until their turn
    /// (backpressure, not disk).
    pub fn new(parts: PathBuf, budget: usize) -> Self {
        Merger {
            parts,
            state: Mutex::new(State::default()),
            buffered: AtomicUsize::new(0),
            budget,
            progress: tokio::sync::Notify::new(),
        }
    }

    /// Counts `bytes` more held in memory.
    pub fn reserve(&self, bytes: usize) {
        self.buffered.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back `bytes` of the memory budget.
    pub fn release(&self, bytes: usize) {
        self.buffered.fetch_sub(bytes, Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    /// Whether waiting files hold more memory than the budget.
    pub fn over_budget(&self) -> bool {
        self.buffered.load(Ordering::Relaxed) > self.budget
    }

    /// Waits until memory is given back or a file is merged (or a short while passes).
    pub async fn progressed(&self) {
        let wake = self.progress.notified();
        if !self.over_budget() {
            return;
        }
        // The timeout covers a claim that failed only because the lock was busy.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), wake).await;
    }

    /// When `ordinal` is next in line for its target and nobody writes there
    /// yet: the staged file, opened at its end, its path and its length. Never
    /// waits for the lock (`None` then; the caller tries again later).
    pub fn try_claim(&self, ordinal: usize) -> std::io::Result<Option<(File, PathBuf, u64)>> {
        let Ok(mut s) = self.state.try_lock() else { return Ok(None) };
        let target = s.targets[ordinal].clone();
        let queue = s.queues.get_mut(&target).expect("every target has a queue");
        if queue.writing || queue.order.get(queue.merged) != Some(&ordinal) {
            return Ok(None);
        }
        let staged = self.staged(&target);
        let (file, base) = open_staged_at_end(&staged)?;
        queue.writing = true;
        Ok(Some((file, staged, base)))
    }

    /// The part file of `ordinal`.
    pub fn part(&self, ordinal: usize) -> PathBuf {
        self.parts.join(format!("{ordinal}.part"))
    }

    fn staged(&self, target: &str) -> PathBuf {
        self.parts.join("merged").join(target)
    }

    /// Announces the next file in manifest order and its target (`Patient.ndjson`, `error/...`).
    pub fn expect(&self, target: String) -> usize {
        let mut s = self.state.lock().expect("merge state");
        let ordinal = s.targets.len();
        s.queues.entry(target.clone()).or_default().order.push(ordinal);
        s.targets.push(target);
        s.finished.push(None);
        ordinal
    }

    /// Records a finished file and merges every file that is now next in line
    /// (blocking file I/O: call from a blocking thread).
    pub fn finished(&self, ordinal: usize, how: Finished, is_error_file: bool) -> Result<(), ClientError> {
        let mut s = self.state.lock().expect("merge state");
        if is_error_file && s.issues.len() < MAX_ISSUES {
            let part = self.part(ordinal);
            collect_issues(&part, &mut s.issues);
        }
        let target = s.targets[ordinal].clone();
        if matches!(how, Finished::Direct) {
            s.queues.get_mut(&target).expect("queue").writing = false;
        }
        s.finished[ordinal] = Some(how);
        loop {
            let queue = &s.queues[&target];
            let Some(&next) = queue.order.get(queue.merged) else { break };
            match s.finished[next].take() {
                None => break,
                Some(Finished::Direct) => {}
                Some(Finished::Memory(held)) => {
                    let staged = self.staged(&target);
                    let written = open_staged_at_end(&staged).and_then(|(mut f, _)| held.write_to(&mut f));
                    written.map_err(|source| ClientError::Io { path: staged, source })?;
                    self.release(held.taken());
                }
                Some(Finished::Part) => self.append(next, &target)?,
            }
            s.queues.get_mut(&target).expect("queue").merged += 1;
        }
        drop(s);
        self.progress.notify_waiters();
        Ok(())
    }

    /// Appends the part of `ordinal` to the staged `target` (or makes it the staged file).
    fn append(&self, ordinal: usize, target: &str) -> Result<(), ClientError> {
        let part = self.part(ordinal);
        let staged = self.staged(target);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ClientError::Io { path, source }
        };
        if staged.exists() {
            let mut from = File::open(&part).map_err(io(&part))?;
            let (mut to, _) = open_staged_at_end(&staged).map_err(io(&staged))?;
            std::io::copy(&mut from, &mut to).map_err(io(&staged))?;
            std::fs::remove_file(&part).map_err(io(&part))?;
        } else {
            if let Some(dir) = staged.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::rename(&part, &staged).map_err(io(&staged))?;
        }
        Ok(())
    }

    /// Moves every staged target into `out` (all parts must be merged) and
    /// returns the collected error issues.
    pub fn publish(&self, out: &Path) -> Result<Vec<String>, ClientError> {
        let s = self.state.lock().expect("merge state");
        for (target, queue) in &s.queues {
            if queue.merged != queue.order.len() {
                return Err(ClientError::Protocol(format!("{target}: not every part was merged")));
            }
            let (from, to) = (self.staged(target), out.join(target));
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(|source| ClientError::Io { path: dir.to_path_buf(), source })?;
            }
            std::fs::rename(&from, &to).map_err(|source| ClientError::Io { path: to.clone(), source })?;
        }
        let _ = std::fs::remove_dir(self.parts.join("merged").join("deleted"));
        let _ = std::fs::remove_dir(self.parts.join("merged").join("error"));
        let _ = std::fs::remove_dir(self.parts.join("merged"));
        let _ = std::fs::remove_dir(&self.parts);
        Ok(s.issues.clone())
    }
}

/// Opens (creating it and its folder if needed) a staged file for writing at
/// its end, which it returns too. Not O_APPEND: copy_file_range (std::io::copy's
/// fast path on Linux) refuses it.
fn open_staged_at_end(staged: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = staged.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(staged)?;
    let end = file.seek(std::io::SeekFrom::End(0))?;
    Ok((file, end))
}

/// Reads `severity: text` of each issue in an error file (CLI-088).
fn collect_issues(part: &Path, issues: &mut Vec<String>) {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(part) else { return };
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(outcome) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        for issue in outcome["issue"].as_array().into_iter().flatten() {
            if issues.len() >= MAX_ISSUES {
                return;
            }
            let text = issue["diagnostics"].as_str().or(issue["details"]["text"].as_str()).unwrap_or("(no text)");
            issues.push(format!("{}: {text}", issue["severity"].as_str().unwrap_or("error")));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::output::{BLOCK, Output};
    use super::*;

    #[test]
    fn files_merge_in_order_whether_direct_or_from_memory() {
        let dir = std::env::temp_dir().join(format!("bulkmock-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let parts = dir.join(".parts");
        std::fs::create_dir_all(&parts).unwrap();
        let merger = Arc::new(Merger::new(parts.clone(), BLOCK));
        let [a, b, c] = [0, 1, 2].map(|_| merger.expect("Patient.ndjson".into()));

        let mut second = Output::queued(merger.clone(), b);
        second.advance().unwrap();
        second.write(b"b1\n").unwrap(); // waits in memory: the first file is not in
        assert!(!merger.over_budget(), "one block is within the budget");
        let mut third = Output::queued(merger.clone(), c);
        third.write(b"c1\n").unwrap();
        assert!(merger.over_budget(), "a second block is past it: waiting files pause");

        let mut first = Output::queued(merger.clone(), a);
        first.advance().unwrap(); // next in line: writes into the staged file
        assert!(first.path().ends_with("merged/Patient.ndjson"));
        first.write(b"damaged\n").unwrap();
        first.restart().unwrap();
        first.write(b"a1\n").unwrap();
        merger.finished(b, second.finish().unwrap(), false).unwrap();
        merger.finished(a, first.finish().unwrap(), false).unwrap(); // brings the second in too

        third.advance().unwrap(); // now next in line: what it holds moves into the staged file
        assert!(third.path().ends_with("merged/Patient.ndjson"));
        assert!(!merger.over_budget());
        third.restart().unwrap(); // back to where the third file began, not further
        third.write(b"c1\nc2\n").unwrap();
        merger.finished(c, third.finish().unwrap(), false).unwrap();

        merger.publish(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("Patient.ndjson")).unwrap(), "a1\nb1\nc1\nc2\n");
        assert_eq!(merger.buffered.load(Ordering::Relaxed), 0, "memory budget given back");
        assert!(!parts.exists(), "no parts left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

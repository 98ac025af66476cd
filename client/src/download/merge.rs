//! Merging finished parts, in manifest order, into one staged file per output
//! target while other files still download (so the copying overlaps the
//! network). Staged files live in `.parts/merged/` and move into the output
//! folder only when the whole export succeeded.

use std::collections::HashMap;
use std::io::Seek;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::ClientError;

/// Issues shown in the summary at most.
const MAX_ISSUES: usize = 20;

#[derive(Default)]
struct Queue {
    /// Ordinals of this target's files, in manifest order.
    order: Vec<usize>,
    /// How many of them are merged.
    merged: usize,
}

#[derive(Default)]
struct State {
    /// Target (relative path) of each ordinal.
    targets: Vec<String>,
    queues: HashMap<String, Queue>,
    finished: Vec<bool>,
    issues: Vec<String>,
}

/// Appends parts to their targets as soon as all earlier parts of the same target are in.
pub(crate) struct Merger {
    parts: PathBuf,
    state: Mutex<State>,
}

impl Merger {
    /// A merger for parts in `parts`.
    pub fn new(parts: PathBuf) -> Self {
        Merger { parts, state: Mutex::new(State::default()) }
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
        s.finished.push(false);
        ordinal
    }

    /// Records a finished part and merges every part that is now next in line
    /// (blocking file I/O: call from a blocking thread).
    pub fn finished(&self, ordinal: usize, is_error_file: bool) -> Result<(), ClientError> {
        let mut s = self.state.lock().expect("merge state");
        s.finished[ordinal] = true;
        if is_error_file && s.issues.len() < MAX_ISSUES {
            let part = self.part(ordinal);
            collect_issues(&part, &mut s.issues);
        }
        let target = s.targets[ordinal].clone();
        loop {
            let queue = &s.queues[&target];
            let Some(&next) = queue.order.get(queue.merged) else { break };
            if !s.finished[next] {
                break;
            }
            self.append(next, &target)?;
            s.queues.get_mut(&target).expect("queue").merged += 1;
        }
        Ok(())
    }

    fn append(&self, ordinal: usize, target: &str) -> Result<(), ClientError> {
        let part = self.part(ordinal);
        let staged = self.staged(target);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ClientError::Io { path, source }
        };
        if let Some(dir) = staged.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        if staged.exists() {
            let mut from = std::fs::File::open(&part).map_err(io(&part))?;
            // Not O_APPEND: copy_file_range (std::io::copy's fast path on Linux) refuses it.
            let mut to = std::fs::OpenOptions::new().write(true).open(&staged).map_err(io(&staged))?;
            to.seek(std::io::SeekFrom::End(0)).map_err(io(&staged))?;
            std::io::copy(&mut from, &mut to).map_err(io(&staged))?;
            std::fs::remove_file(&part).map_err(io(&part))?;
        } else {
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

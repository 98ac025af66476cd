//! The judge file: what `bulkmock serve --scenario` knows and a transcript
//! does not hold, kept next to the transcript so that `bulkmock judge` can judge
//! the case later, offline. It names the case, the seed and the registered
//! client, and carries the export the client's job really produced (the job
//! facts and its expected lines), computed by the serving server itself: a POST
//! kick-off's body, the token's grant and an injected partial success are
//! all in the job, none of them in the transcript.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulkmock_server::Exchange;
use bulkmock_server::app::AppState;
use serde::{Deserialize, Serialize};

use super::judge::expected_job;
use crate::checks::JobFacts;

/// The contents of a judge file (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JudgeFile {
    /// The case id.
    pub case: String,
    /// The run's seed the server was started with.
    pub seed: u64,
    /// The bulkmock version that served.
    pub bulkmock_version: String,
    /// The FHIR base URL.
    pub fhir_base: String,
    /// The token endpoint URL (empty when authorization is off).
    pub token_url: String,
    /// The registered client id (empty when authorization is off).
    pub client_id: String,
    /// The last export job the client started, when it started one.
    pub job: Option<JobFacts>,
    /// The lines of that job's files as served without faults.
    pub expected: Vec<String>,
}

impl JudgeFile {
    /// The file for a case served by `state` to `client_id`, with no job yet.
    pub fn new(case: &str, seed: u64, state: &AppState, client_id: &str) -> JudgeFile {
        JudgeFile {
            case: case.to_string(),
            seed,
            bulkmock_version: env!("CARGO_PKG_VERSION").to_string(),
            fhir_base: state.fhir_base.clone(),
            token_url: if state.auth.is_some() { state.token_url() } else { String::new() },
            client_id: client_id.to_string(),
            job: None,
            expected: Vec::new(),
        }
    }

    /// This file with the client's last job on `state` as it is now.
    pub fn with_job(&self, state: &AppState) -> JudgeFile {
        let (job, lines) = expected_job(state, &self.client_id);
        let expected = lines.into_iter().map(|l| String::from_utf8_lossy(&l).into_owned()).collect();
        JudgeFile { job, expected, ..self.clone() }
    }

    /// The expected lines as bytes.
    pub fn expected_lines(&self) -> Vec<Vec<u8>> {
        self.expected.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    /// Writes the file (to a temporary sibling first, so a reader never sees half of it).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string(self).map_err(|e| e.to_string())? + "\n";
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Reads a judge file.
    pub fn read(path: &Path) -> Result<JudgeFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not a judge file: {e}", path.display()))
    }
}

/// The judge file that goes with a transcript: `t.ndjson` -> `t.judge.json`.
pub fn judge_path(transcript: &Path) -> PathBuf {
    transcript.with_extension("judge.json")
}

/// Keeps `path` up to date while `state` serves: rewritten whenever the
/// client's last job changes (a new job, an injected partial success). Runs
/// until dropped; write once more after the server stops.
pub async fn keep_written(state: Arc<AppState>, base: JudgeFile, path: PathBuf) {
    let mut seen: Option<Option<(String, bool)>> = None;
    loop {
        let client = (!base.client_id.is_empty()).then_some(base.client_id.as_str());
        let now = state
            .jobs
            .history()
            .into_iter()
            .rev()
            .find(|j| client.is_none() || j.owner.as_deref() == client)
            .map(|j| (j.id.clone(), j.partial_failure()));
        if seen.as_ref() != Some(&now) {
            if let Err(e) = base.with_job(&state).write(&path) {
                tracing::warn!("{e}");
            }
            seen = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads an NDJSON transcript (`serve --transcript`, `/_admin/transcript?format=ndjson`),
/// in order of arrival.
pub fn read_transcript(path: &Path) -> Result<Vec<Exchange>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let exchange: Exchange =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: not an exchange: {e}", path.display(), i + 1))?;
        out.push(exchange);
    }
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

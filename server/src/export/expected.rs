//! What a job's files hold, line by line, exactly as served when no fault
//! damages them: the expected export a harness compares a client's output with.
//! Produced by the same [`Selector`] that counts and streams the files, so it
//! can never disagree with what the server serves.

use std::collections::BTreeMap;
use std::io;

use bulkmock_wire::{IssueSeverity, IssueType, OperationOutcome};

use super::content::Selector;
use super::job::Job;
use super::params::ExportParams;
use super::plan::{FileKind, Level, PlanError, plan};
use crate::data::DataSource;

/// The state of a data set as a client holds it after applying every export:
/// each live resource, keyed by (resourceType, id), with its JSON line.
pub type State = BTreeMap<(String, String), Vec<u8>>;

/// The exact state of `source` (a revision's view, e.g.
/// `MockServer::data_at(n)`) that a full export at `level` holds: what a
/// client must end with after a full export at an earlier revision plus
/// incremental exports with `_since = transactionTime` up to this one,
/// updates and deletions applied (CLI-054, CLI-087). Produced by the same
/// planner and [`Selector`] that serve exports.
pub fn revision_state(source: &dyn DataSource, level: Level) -> io::Result<State> {
    let plan = plan(
        source,
        level,
        ExportParams::default(),
        Vec::new(),
        false,
        u64::MAX / 4,
        i64::MAX,
        None,
        &crate::quirks::Quirks::none(),
    )
    .map_err(|e| match e {
        PlanError::UnknownGroup(id) => io::Error::other(format!("Group/{id} does not exist")),
        PlanError::Invalid(p) => io::Error::other(format!("{p:?}")),
        PlanError::Forbidden(m) => io::Error::other(m),
    })?;
    let selector = Selector::new(&plan, source);
    let mut state = State::new();
    let mut body = Vec::new();
    for file in plan.files.iter().filter(|f| matches!(f.kind, FileKind::Output(_))) {
        for unit in file.units.clone() {
            body.clear();
            selector.write_unit(file, unit, &mut body)?;
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).map_err(io::Error::other)?;
                let key = (
                    v["resourceType"].as_str().unwrap_or_default().into(),
                    v["id"].as_str().unwrap_or_default().into(),
                );
                state.insert(key, line.to_vec());
            }
        }
    }
    Ok(state)
}

/// Which manifest array a file is listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedIn {
    /// `output` (resources, or patient blocks with `organizeOutputBy`).
    Output,
    /// `deleted` (transaction Bundles of DELETE entries).
    Deleted,
    /// `error` (OperationOutcomes).
    Error,
}

/// One file of an export and its lines (each without the trailing newline).
#[derive(Debug, Clone)]
pub struct ExportedFile {
    /// The manifest array it is listed in.
    pub listed_in: ListedIn,
    /// The manifest `type` (`Parameters` for organised patient blocks).
    pub resource_type: String,
    /// The lines.
    pub lines: Vec<Vec<u8>>,
}

/// Every file of `job` with its lines, the error file included when it has
/// any, from the job's own data snapshot (its revision at kick-off).
pub fn contents(job: &Job) -> io::Result<Vec<ExportedFile>> {
    let source = job.source.as_ref();
    let selector = Selector::new(&job.plan, source);
    let mut files = Vec::with_capacity(job.plan.files.len() + 1);
    for file in &job.plan.files {
        let mut body = Vec::new();
        for unit in file.units.clone() {
            selector.write_unit(file, unit, &mut body)?;
        }
        let (listed_in, resource_type) = match file.kind {
            FileKind::Output(t) => (ListedIn::Output, source.types()[t].name.clone()),
            FileKind::Deleted(t) => (ListedIn::Deleted, source.types()[t].name.clone()),
            FileKind::Organized => (ListedIn::Output, "Parameters".to_string()),
        };
        let lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        files.push(ExportedFile { listed_in, resource_type, lines });
    }
    let errors = error_lines(job);
    if !errors.is_empty() {
        let lines = errors.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        files.push(ExportedFile { listed_in: ListedIn::Error, resource_type: "OperationOutcome".into(), lines });
    }
    Ok(files)
}

/// The NDJSON of a job's error file: one OperationOutcome per parameter
/// ignored under `handling=lenient` (SRV-046), and one for an injected partial
/// success (SRV-132). Empty when there is nothing to report.
pub fn error_lines(job: &Job) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, note) in job.plan.notes.iter().enumerate() {
        let mut outcome = OperationOutcome::new(
            IssueSeverity::Warning,
            note.code,
            format!("ignored under handling=lenient: {}", note.message),
        )
        .at(note.param.clone());
        outcome.id = Some(format!("lenient-{i}"));
        serde_json::to_writer(&mut body, &outcome).expect("serialisable");
        body.push(b'\n');
    }
    if job.partial_failure() {
        let mut outcome = OperationOutcome::error(
            IssueType::Processing,
            "some resources of this export could not be exported (injected partial success)",
        );
        outcome.id = Some("partial-failure".into());
        serde_json::to_writer(&mut body, &outcome).expect("serialisable");
        body.push(b'\n');
    }
    body
}

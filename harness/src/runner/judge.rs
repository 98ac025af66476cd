//! Judging one case from its evidence: the transcript, how the client ended,
//! its output folder and the export the server's job produced. `bulkmock run`
//! judges here right after the client ends; `bulkmock judge` judges here from
//! files, for a client that could not be launched by the harness.

use std::path::Path;
use std::time::Duration;

use bulkmock_server::Exchange;
use bulkmock_server::app::AppState;
use bulkmock_server::export::expected::{self, ListedIn};
use bulkmock_server::export::manifest;
use bulkmock_server::export::plan::Level;

use crate::adapter::ClientRun;
use crate::checks::{self, Input, JobFacts, RunFacts};
use crate::report::{CaseResult, CaseVerdict, Outcome};
use crate::scenario::{Case, OutputExpectation};
use crate::verify::{self, OutputReport};

/// Everything a case is judged from.
pub struct CaseEvidence<'a> {
    /// The case.
    pub case: &'a Case,
    /// Every exchange of the case's server, in order.
    pub exchanges: Vec<Exchange>,
    /// How the client ended.
    pub run: ClientRun,
    /// The export job the client started, if it started one.
    pub job: Option<JobFacts>,
    /// The lines of that job's files as served without faults (the expected export).
    pub expected: Vec<Vec<u8>>,
    /// The client's output folder.
    pub out_dir: &'a Path,
    /// The case's FHIR base URL.
    pub fhir_base: &'a str,
    /// The token endpoint URL (empty when authorization is off).
    pub token_url: &'a str,
    /// The registered client id (empty when authorization is off).
    pub client_id: &'a str,
    /// An `[incremental]` case's runs and final state (`None` otherwise).
    pub incremental: Option<IncrementalEvidence>,
}

/// What an `[incremental]` case is judged from besides the last job.
#[derive(Debug, Clone, Default)]
pub struct IncrementalEvidence {
    /// The client's runs, in order.
    pub runs: Vec<RunFacts>,
    /// The lines of the data's final state for the case's request.
    pub state: Vec<Vec<u8>>,
    /// `Type/id` of every resource an earlier run's state held that the final state does not.
    pub removed: Vec<String>,
}

/// Judges a case: verifies the output against the expected export, runs the
/// checks, and gives the verdict. `rerun` and `dir` go into the result as they are.
pub fn judge(evidence: CaseEvidence, rerun: String, dir: Option<String>) -> CaseResult {
    let CaseEvidence { case, exchanges, run, job, mut expected, out_dir, fhir_base, token_url, client_id, incremental } =
        evidence;
    // A lenient kick-off the server accepted ran a real job: its export is what
    // the client holds, whatever the case expected of a strict server.
    let lenient_job = job.as_ref().is_some_and(|j| !j.lenient_ignored.is_empty());
    if case.scenario.expect.output == OutputExpectation::Empty && !lenient_job {
        expected.clear();
    }
    let (output, runs) = match incremental {
        Some(inc) => (verify::verify_state(out_dir, inc.state.iter().map(Vec::as_slice), &inc.removed), inc.runs),
        None => (verify::verify(out_dir, expected.iter().map(Vec::as_slice)), Vec::new()),
    };
    let input = Input {
        case,
        exchanges: &exchanges,
        run: &run,
        output: &output,
        job: job.as_ref(),
        fhir_base,
        token_url,
        client_id,
        runs: &runs,
    };
    let checks = checks::run_all(&input);
    let verdict = match &run.launch_error {
        Some(_) => CaseVerdict::Error,
        None => CaseResult::verdict_of(run.timed_out, false, &checks),
    };
    CaseResult {
        id: case.id.clone(),
        scenario: case.scenario_id.clone(),
        title: case.scenario.title.clone(),
        requirements: case.scenario.requirements.clone(),
        matrix: case.matrix.clone(),
        verdict,
        outcome: outcome(case, &run, exchanges.len() as u64, output),
        checks,
        exchanges: exchanges.iter().map(Into::into).collect(),
        faults_not_applied: exchanges.iter().filter_map(|e| e.fault_not_applied.clone()).collect(),
        error: run.launch_error.clone(),
        not_applicable: None,
        dir,
        rerun,
    }
}

/// Requests past which a client floods the server and is stopped: four times
/// the case's request bound, at least 1,000.
pub fn flood_bound(max_requests: u64) -> u64 {
    max_requests.saturating_mul(4).max(1_000)
}

/// How a client that the harness did not launch ended, as `bulkmock run` would
/// have seen it: `exit_code` is what the client reported (0: success), its time
/// the span of the transcript; past the case's deadline (`max_seconds` +
/// `grace`) it timed out, past [`flood_bound`] it was flooding.
pub fn run_from_transcript(
    case: &Case,
    exchanges: &[Exchange],
    exit_code: i32,
    stderr: String,
    grace: Duration,
) -> ClientRun {
    let first = exchanges.iter().map(|e| e.at_ms).min().unwrap_or(0);
    let last = exchanges.iter().map(|e| e.at_ms + e.duration_ms).max().unwrap_or(0);
    let seconds = last.saturating_sub(first) as f64 / 1000.0;
    let expect = &case.scenario.expect;
    let deadline = Duration::from_secs_f64(expect.max_seconds) + grace;
    let flood = flood_bound(expect.max_requests);
    if exchanges.len() as u64 > flood {
        return ClientRun {
            flooded: true,
            seconds,
            stderr: format!("stopped by the harness after more than {flood} requests"),
            ..ClientRun::default()
        };
    }
    if seconds > deadline.as_secs_f64() {
        return ClientRun { timed_out: true, seconds: deadline.as_secs_f64(), ..ClientRun::default() };
    }
    ClientRun { exit_code: Some(exit_code), seconds, stderr, ..ClientRun::default() }
}

/// A client run rebuilt from the transcript of an export through `bulkmock
/// proxy` in front of a real server: as [`run_from_transcript`], but a client
/// that ended with exit 0 after the case's `max_seconds` (+ grace) is no
/// timeout. Nobody stopped it, and the deadline was written for the mock's
/// pace, not the upstream's (SMART's reference server took 19.5 s for a case
/// of 20 s): its run is judged on its evidence like any other.
pub fn run_from_proxied_transcript(
    case: &Case,
    exchanges: &[Exchange],
    exit_code: i32,
    stderr: String,
    grace: Duration,
) -> ClientRun {
    let run = run_from_transcript(case, exchanges, exit_code, stderr.clone(), grace);
    if !(run.timed_out && exit_code == 0) {
        return run;
    }
    let first = exchanges.iter().map(|e| e.at_ms).min().unwrap_or(0);
    let last = exchanges.iter().map(|e| e.at_ms + e.duration_ms).max().unwrap_or(0);
    let seconds = last.saturating_sub(first) as f64 / 1000.0;
    ClientRun { exit_code: Some(exit_code), seconds, stderr, ..ClientRun::default() }
}

fn outcome(case: &Case, run: &ClientRun, requests: u64, output: OutputReport) -> Outcome {
    let observed = if run.launch_error.is_some() {
        "not_started"
    } else if run.timed_out {
        "timeout"
    } else if run.flooded {
        "flooded"
    } else {
        match (run.exit_code, run.signal) {
            (Some(0), _) => "complete",
            (Some(_), _) => "failed",
            (None, _) => "killed",
        }
    };
    Outcome {
        expected: case.scenario.expect.outcome.as_str().to_string(),
        observed: observed.to_string(),
        exit_code: run.exit_code,
        seconds: (run.seconds * 1000.0).round() / 1000.0,
        requests,
        output,
        stderr_tail: last_lines(&run.stderr),
        stdout_tail: last_lines(&run.stdout),
    }
}

/// The last five lines of a client's output.
fn last_lines(text: &str) -> String {
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The last export `client_id` started on `server` (any client's when
/// `client_id` is empty: authorization off), and the lines of its files.
pub fn expected_job(server: &AppState, client_id: &str) -> (Option<JobFacts>, Vec<Vec<u8>>) {
    let client = (!client_id.is_empty()).then_some(client_id);
    let Some(job) = server.jobs.history().into_iter().rev().find(|j| client.is_none() || j.owner.as_deref() == client)
    else {
        return (None, Vec::new());
    };
    let source = server.source.as_ref();
    let types = source.types();
    let (level, group) = match &job.plan.level {
        Level::System => ("system", None),
        Level::Patient => ("patient", None),
        Level::Group(g) => ("group", Some(g.clone())),
    };
    let contents = expected::contents(&job).unwrap_or_default();
    // The manifest lists only files with lines (SRV-158), the error file when it has any.
    let mut files: Vec<String> = job
        .plan
        .files
        .iter()
        .zip(&contents)
        .enumerate()
        .filter(|(_, (_, c))| !c.lines.is_empty())
        .map(|(i, (f, _))| manifest::file_name(source, f.kind, i))
        .collect();
    if contents.iter().any(|f| f.listed_in == ListedIn::Error) {
        files.push(manifest::ERROR_FILE.to_string());
    }
    let facts = JobFacts {
        id: job.id.clone(),
        level: level.into(),
        group,
        types: job.plan.types.iter().map(|&t| types[t].name.clone()).collect(),
        since: job.plan.since.is_some(),
        until: job.plan.until.is_some(),
        elements: job.plan.elements.is_some(),
        type_filters: !job.plan.filters.is_empty() || !job.plan.ignored_filters.is_empty(),
        patients: job.plan.patients.len(),
        organized: job.plan.organized,
        associated_data: !job.plan.include_associated.is_empty(),
        partial_manifests: job.plan.allow_partial_manifests,
        files,
        comma_joined: job.plan.comma_joined.clone(),
        beyond_type_filter: beyond_type_filter(&job, source, &contents),
        lenient_ignored: job.plan.notes.iter().map(|p| p.param.clone()).collect(),
        // The mock's manifests say what its authorization setting is (`routes/status.rs`).
        requires_access_token: Some(!server.config.open),
    };
    let lines = contents.into_iter().flat_map(|f| f.lines).collect();
    (Some(facts), lines)
}

/// Lines of `contents` outside the `_typeFilter` the server ignored (CLI-048):
/// each judged by the server's own evaluator, the one that applies filters.
fn beyond_type_filter(
    job: &bulkmock_server::export::job::Job,
    source: &dyn bulkmock_server::data::DataSource,
    contents: &[expected::ExportedFile],
) -> u64 {
    let mut beyond = 0;
    for (&ty, queries) in &job.plan.ignored_filters {
        let name = &source.types()[ty].name;
        for file in contents.iter().filter(|f| f.listed_in == ListedIn::Output && &f.resource_type == name) {
            beyond += file
                .lines
                .iter()
                .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                .filter(|r| !queries.iter().any(|q| q.matches(r)))
                .count() as u64;
        }
    }
    beyond
}

/// The case `id` of `cases` (the cases of one scenario file); without `id`,
/// its only case. Errors list the case ids to choose from.
pub fn pick_case(cases: Vec<Case>, id: Option<&str>) -> Result<Case, String> {
    let ids = || cases.iter().map(|c| format!("  {}", c.id)).collect::<Vec<_>>().join("\n");
    match id {
        Some(id) => {
            match cases.iter().position(|c| c.id == id || c.id.ends_with(&format!("#{}", id.trim_start_matches('#')))) {
                Some(i) => Ok(cases.into_iter().nth(i).expect("found")),
                None => Err(format!("no case {id:?} in this scenario; its cases:\n{}", ids())),
            }
        }
        None if cases.len() == 1 => Ok(cases.into_iter().next().expect("one case")),
        None => Err(format!("this scenario has a matrix: choose a case with --case; its cases:\n{}", ids())),
    }
}

/// The final state an `[incremental]` case's client must hold, for the case's
/// level, Group and `_type`: the data at the server's current revision, and
/// the resources the states at the earlier runs' revisions held that it no longer has.
pub fn final_state(server: &AppState, case: &Case, runs: Vec<RunFacts>) -> Result<IncrementalEvidence, String> {
    let spec = &case.scenario.client;
    let level = match spec.level {
        crate::scenario::LevelName::System => Level::System,
        crate::scenario::LevelName::Patient => Level::Patient,
        crate::scenario::LevelName::Group => Level::Group(spec.group.clone().unwrap_or_default()),
    };
    let wanted = |ty: &str| spec.types.is_empty() || spec.types.iter().any(|t| t == ty);
    let state_at = |revision: u64| {
        expected::revision_state(server.revisions.at(revision).as_ref(), level.clone())
            .map(|s| s.into_iter().filter(|((ty, _), _)| wanted(ty)).collect::<std::collections::BTreeMap<_, _>>())
            .map_err(|e| format!("cannot compute the state at revision {revision}: {e}"))
    };
    let last = server.revisions.revision();
    let state = state_at(last)?;
    let mut removed = std::collections::BTreeSet::new();
    let mut earlier: Vec<u64> = runs.iter().map(|r| r.revision).filter(|&r| r != last).collect();
    earlier.dedup();
    for revision in earlier {
        for key in state_at(revision)?.into_keys().filter(|k| !state.contains_key(k)) {
            removed.insert(format!("{}/{}", key.0, key.1));
        }
    }
    Ok(IncrementalEvidence { runs, state: state.into_values().collect(), removed: removed.into_iter().collect() })
}

/// Refuses an `[incremental]` case where a client is run from outside
/// (`serve --scenario`, `bulkmock judge`): only `bulkmock run` advances the data between runs.
pub fn single_run(case: &Case) -> Result<(), String> {
    match case.scenario.incremental {
        Some(_) => Err(format!(
            "{} is an [incremental] case: the harness advances the data between the client's runs, so it runs \
             with `bulkmock run` (with --client-cmd for your client), not with serve --scenario or judge",
            case.id
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_cases_are_refused_where_nobody_advances_the_data() {
        let text = "title = \"t\"\n[incremental]\nrevisions = 2\n";
        let file = crate::scenario::parse(text, Path::new("scenarios/incremental/x.toml")).unwrap();
        let message = single_run(&file.cases[0]).unwrap_err();
        assert!(
            message.contains("incremental/x is an [incremental] case") && message.contains("bulkmock run"),
            "{message}"
        );
        let plain = crate::scenario::parse("title = \"t\"\n", Path::new("scenarios/x.toml")).unwrap();
        assert!(single_run(&plain.cases[0]).is_ok());
    }
}

//! The runner: every case gets its own server and folder, the adapter runs the
//! client under a deadline, then the output is verified and the checks judge.
//! Cases run in parallel; a sleeping client does not hold a core.

mod incremental;
pub mod judge;
pub mod proxied;
pub mod record;
pub mod recorded;
pub mod setup;
pub mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::adapter::{ClientAdapter, ClientRun};
use crate::report::{CaseResult, CaseVerdict, Outcome, RunReport};
use crate::scenario::Case;
use crate::verify::OutputReport;
pub use setup::Identity;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cases at once.
    pub jobs: usize,
    /// The run's seed (a scenario's `[server] seed` wins for its server).
    pub seed: u64,
    /// Keep the case folders (their paths are in the report).
    pub keep: bool,
    /// Where case folders go (a new temporary folder when `None`).
    pub work_dir: Option<PathBuf>,
    /// A registered identity to use instead of generated ones.
    pub identity: Option<Identity>,
    /// The command that re-runs a case, up to the case filter (`bulkmock run scenarios/ --seed 1`).
    pub rerun_prefix: String,
    /// Extra seconds past a case's `max_seconds` before the client is killed.
    pub grace: Duration,
    /// What the client says it supports (`--client-profile`): cases needing
    /// more are `not_applicable` and not run. Without one, every capability is
    /// claimed, and a case whose request the client did not make is
    /// `not_applicable` after its run.
    pub profile: Option<crate::profile::ClientProfile>,
    /// Multiplies every case's `max_seconds`, for clients that wait longer
    /// than the suite's authors did (`--time-scale`, `BULKMOCK_TIME_SCALE`).
    pub time_scale: f64,
    /// Sees every case's transcript and the responses its server sent (the
    /// server then captures them): a check of the mock's own wire format.
    pub observer: Option<Observer>,
    /// Run every case against this real server through a proxy instead of the
    /// case's own mock (`bulkmock run --upstream`, see [`upstream`]).
    pub upstream: Option<upstream::UpstreamTarget>,
}

/// A function over a case's transcript and the responses its server sent,
/// called after the client ran (see [`RunOptions::observer`]).
#[derive(Clone)]
pub struct Observer(pub Arc<ObserveFn>);

/// The function of an [`Observer`].
pub type ObserveFn =
    dyn Fn(&Case, &[bulkmock_server::Exchange], Vec<bulkmock_server::capture::CapturedResponse>) + Send + Sync;

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: default_jobs(),
            seed: 42,
            keep: false,
            work_dir: None,
            identity: None,
            rerun_prefix: "bulkmock run scenarios/".into(),
            grace: Duration::from_secs(5),
            time_scale: 1.0,
            profile: None,
            observer: None,
            upstream: None,
        }
    }
}

/// Cases at once by default: clients mostly wait, so eight per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 8
}

/// Progress of a run, for live output.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// A case started.
    Started(&'a str),
    /// A case finished.
    Finished(&'a CaseResult),
}

/// Keeps the cases whose id starts with one of `filters` (all when empty) and,
/// with `shard = (k, n)`, those of shard k of n (1-based), by a stable hash of the id.
pub fn select(cases: Vec<Case>, filters: &[String], shard: Option<(u64, u64)>) -> Vec<Case> {
    cases
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.id.starts_with(f.as_str())))
        .filter(|c| shard.is_none_or(|(k, n)| stable_hash(&c.id) % n == k - 1))
        .collect()
}

/// FNV-1a: stable across runs, machines and versions (unlike std's hasher).
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Runs `cases` with `adapter`; `progress` hears of each start and finish.
pub async fn run(
    cases: Vec<Case>,
    adapter: Arc<dyn ClientAdapter>,
    options: &RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> std::io::Result<RunReport> {
    let root = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new().prefix("bulkmock-run-").tempdir_in(dir)?
        }
        None => tempfile::Builder::new().prefix("bulkmock-run-").tempdir()?,
    };
    // Each case judged against its scaled deadline, as if its file said so.
    let mut cases = cases;
    for case in &mut cases {
        case.scenario.expect.max_seconds *= options.time_scale;
    }
    let results: Vec<CaseResult> = futures_util::stream::iter(cases.iter().enumerate())
        .map(|(i, case)| {
            let adapter = Arc::clone(&adapter);
            let dir = root.path().join(format!("{:04}-{}", i, folder_name(&case.id)));
            async move {
                progress(Progress::Started(&case.id));
                let result = run_case(case, adapter.as_ref(), dir, options).await;
                progress(Progress::Finished(&result));
                result
            }
        })
        .buffer_unordered(options.jobs.max(1))
        .collect()
        .await;
    if options.keep {
        let _ = root.keep();
    }
    let mut report = RunReport::new(options.seed, adapter.name(), results);
    report.time_scale = options.time_scale;
    Ok(report)
}

/// A folder name for a case id (characters other than `[A-Za-z0-9-_=.]` become `_`).
pub fn folder_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_=.".contains(c) { c } else { '_' }).collect()
}

/// Runs one case in `dir` (created) and judges it.
pub async fn run_case(case: &Case, adapter: &dyn ClientAdapter, dir: PathBuf, options: &RunOptions) -> CaseResult {
    let expect = &case.scenario.expect;
    let deadline = Duration::from_secs_f64(expect.max_seconds) + options.grace;
    let rerun = format!("{} --filter '{}' --seed {}", options.rerun_prefix, case.id, options.seed);
    if let Some(needs) = options.profile.as_ref().map(|p| p.unsupported(case)).filter(|n| !n.is_empty()) {
        return not_applicable(case, needs, rerun);
    }
    if let Some(target) = &options.upstream {
        return upstream::run_case(case, adapter, dir, options, target, rerun).await;
    }
    let world = match std::fs::create_dir_all(&dir).map_err(|e| e.to_string()) {
        Ok(()) => setup::start(case, &dir, options.seed, deadline, options.identity.as_ref()).await,
        Err(e) => Err(e),
    };
    let world = match world {
        Ok(w) => w,
        Err(message) => return errored(case, message, rerun),
    };
    let mut world = world;
    if options.observer.is_some() {
        world.server.capture_responses();
    }
    let (run, runs) = match &case.scenario.incremental {
        None => {
            let count = || world.server.request_count();
            (run_bounded(adapter, &world.ctx, &count, deadline, expect.max_requests).await, Vec::new())
        }
        Some(inc) => incremental::run(adapter, &mut world, inc, deadline, expect.max_requests).await,
    };
    if let Some(observer) = &options.observer {
        let responses = world.server.captured_responses().await;
        (observer.0)(case, &world.server.transcript(), responses);
    }
    let exchanges = world.server.transcript();
    let (job, expected) = judge::expected_job(world.server.state(), &world.ctx.client_id);
    let incremental = match case.scenario.incremental {
        Some(_) => match judge::final_state(world.server.state(), case, runs) {
            Ok(evidence) => Some(evidence),
            Err(message) => return errored(case, message, rerun),
        },
        None => None,
    };
    let evidence = judge::CaseEvidence {
        case,
        exchanges,
        run,
        job,
        expected,
        out_dir: &world.ctx.out_dir,
        fhir_base: &world.ctx.fhir_base,
        token_url: &world.ctx.token_url,
        client_id: &world.ctx.client_id,
        incremental,
    };
    let mut result = judge::judge(evidence, rerun, options.keep.then(|| dir.display().to_string()));
    drop(world);
    if options.profile.is_none() {
        not_the_request_asked(&mut result);
    }
    result
}

/// Without a profile, a client that did not make the request a case needs
/// (another level, a GET for a POST, a parameter dropped) is not judged on
/// the case: it is `not_applicable`, saying so (with a profile that claims
/// the capability, `kickoff.matches_request` judges the mismatch instead).
pub fn not_the_request_asked(result: &mut CaseResult) {
    let Some(check) = result.checks.iter().find(|c| c.id == "kickoff.matches_request") else { return };
    if !matches!(check.verdict, crate::checks::Verdict::Warn | crate::checks::Verdict::Fail) {
        return;
    }
    let what = check.evidence.as_ref().map_or("", |e| e.message.as_str());
    result.not_applicable = Some(format!(
        "the client did not make the request this case needs ({what}); declare what it supports with \
         --client-profile"
    ));
    result.verdict = CaseVerdict::NotApplicable;
}

/// The result of a case the profile does not cover: not run.
fn not_applicable(case: &Case, needs: Vec<String>, rerun: String) -> CaseResult {
    let mut result = errored(case, String::new(), rerun);
    result.error = None;
    result.outcome.observed = "not_run".into();
    result.not_applicable = Some(format!("needs {}, which the client profile does not claim", needs.join(", ")));
    result.verdict = CaseVerdict::NotApplicable;
    result
}

/// Runs the client until it ends, the deadline passes, or it floods the server
/// (four times the case's request bound, at least 1,000 requests): a client that
/// hangs or floods is judged, and never stops the run.
pub(crate) async fn run_bounded(
    adapter: &dyn ClientAdapter,
    ctx: &crate::adapter::CaseContext,
    requests: &(dyn Fn() -> u64 + Sync),
    deadline: Duration,
    max_requests: u64,
) -> ClientRun {
    let started = std::time::Instant::now();
    let flood = judge::flood_bound(max_requests);
    let watch = async {
        while requests() <= flood {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // An adapter that stops its client at the deadline itself gets a grace to
    // hand over the client's output; any other is stopped at the deadline.
    let grace = if adapter.enforces_deadline() {
        crate::adapter::command::OUTPUT_GRACE + Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    let mut run = tokio::select! {
        run = tokio::time::timeout(deadline + grace, adapter.run(ctx)) => match run {
            Ok(run) => run,
            Err(_) => ClientRun { timed_out: true, seconds: deadline.as_secs_f64(), ..ClientRun::default() },
        },
        () = watch => ClientRun {
            flooded: true,
            seconds: started.elapsed().as_secs_f64(),
            stderr: format!("stopped by the harness after more than {flood} requests"),
            ..ClientRun::default()
        },
    };
    run.ended_unix_ms = Some(unix_ms_now());
    run
}

/// The wall clock in Unix milliseconds.
fn unix_ms_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn errored(case: &Case, message: String, rerun: String) -> CaseResult {
    CaseResult {
        id: case.id.clone(),
        scenario: case.scenario_id.clone(),
        title: case.scenario.title.clone(),
        requirements: case.scenario.requirements.clone(),
        matrix: case.matrix.clone(),
        verdict: CaseVerdict::Error,
        outcome: Outcome {
            expected: case.scenario.expect.outcome.as_str().to_string(),
            observed: "not_started".into(),
            exit_code: None,
            seconds: 0.0,
            requests: 0,
            output: OutputReport::default(),
            stderr_tail: String::new(),
            stdout_tail: String::new(),
        },
        checks: Vec::new(),
        exchanges: Vec::new(),
        error: Some(message),
        not_applicable: None,
        faults_not_applied: Vec::new(),
        dir: None,
        rerun,
    }
}

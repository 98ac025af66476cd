//! Every scenario case of `scenarios/` as one named trial, run against the
//! in-process reference client: `cargo test -p bulkmock-tests --test scenarios auth/`
//! filters by case id. The reference client must pass every MUST and SHOULD
//! check of every case, and each case's normalised outcome is snapshotted
//! (`tests/snapshots/`; under CI a missing or changed snapshot fails).
//!
//! The selected cases run together first, in parallel (their waits overlap),
//! then each trial asserts on its own result.
//!
//! Every response the mock sends in every case is also checked by the
//! wire-validity observer (`tests/src/wire/`): a response that breaks an
//! invariant of the wire format that no fault or quirk of the case declares
//! broken fails the case (the mock is never at fault).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bulkmock_harness::adapter::Builtin;
use bulkmock_harness::checks::Verdict;
use bulkmock_harness::report::snapshot::{Snapshot, snapshot_name};
use bulkmock_harness::report::{CaseResult, CaseVerdict};
use bulkmock_harness::runner::{self, Observer, RunOptions};
use bulkmock_harness::scenario::{self, SnapshotDetail};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = std::env::var_os("BULKMOCK_SCENARIOS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios"), PathBuf::from);
    let files = scenario::load_paths(&[root]).unwrap_or_else(|e| panic!("scenario library: {e}"));
    let coverage = bulkmock_harness::coverage::render(&files);
    let cases: Vec<scenario::Case> = files.into_iter().flat_map(|f| f.cases).collect();
    let selected: Vec<scenario::Case> = cases.iter().filter(|c| wanted(&args, &c.id)).cloned().collect();
    let wire: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let results: HashMap<String, CaseResult> = if selected.is_empty() || args.list {
        HashMap::new()
    } else {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let sink = Arc::clone(&wire);
        let observer = Observer(Arc::new(move |case: &scenario::Case, _: &[_], responses: Vec<_>| {
            let found = bulkmock_tests::wire::observe(&responses).iter().map(ToString::to_string).collect();
            sink.lock().expect("wire findings").insert(case.id.clone(), found);
        }));
        let options = RunOptions { jobs: 16, observer: Some(observer), ..RunOptions::default() };
        let report = runtime
            .block_on(runner::run(selected, Arc::new(Builtin::default()), &options, &|_| {}))
            .expect("the run starts");
        report.cases.into_iter().map(|c| (c.id.clone(), c)).collect()
    };
    let results = Arc::new(results);
    let wire = Arc::new(std::mem::take(&mut *wire.lock().expect("wire findings")));
    let names: Vec<String> = cases.iter().map(|c| snapshot_name(&c.id)).collect();
    let stale = Trial::test("snapshots/none_stale", move || no_stale_snapshots(&names));
    let coverage = Trial::test("scenarios/coverage_up_to_date", move || coverage_up_to_date(&coverage));
    let trials = [stale, coverage]
        .into_iter()
        .chain(cases.into_iter().map(|case| {
            let results = Arc::clone(&results);
            let wire = Arc::clone(&wire);
            let id = case.id.clone();
            let detail = case.scenario.expect.snapshot;
            Trial::test(id.clone(), move || judge(results.get(&id), wire.get(&id), detail))
        }))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Whether libtest's filter (substring, or exact with `--exact`) and `--skip` select `id`.
fn wanted(args: &Arguments, id: &str) -> bool {
    let matches = |f: &String| if args.exact { id == f } else { id.contains(f.as_str()) };
    args.filter.as_ref().is_none_or(matches) && !args.skip.iter().any(matches)
}

fn judge(result: Option<&CaseResult>, wire: Option<&Vec<String>>, detail: SnapshotDetail) -> Result<(), Failed> {
    let case = result.ok_or("the case did not run")?;
    // The mock is never at fault: every response valid unless a fault of the case says otherwise.
    if let Some(found) = wire.filter(|f| !f.is_empty()) {
        return Err(format!(
            "{}: the mock broke the wire format where no fault or quirk says so:\n{}",
            case.id,
            found.join("\n")
        )
        .into());
    }
    let missed: Vec<String> = case
        .checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Warn))
        .map(|c| {
            format!("{} ({}): {}", c.id, c.verdict.as_str(), c.evidence.as_ref().map_or("", |e| e.message.as_str()))
        })
        .collect();
    if case.verdict != CaseVerdict::Pass {
        return Err(format!(
            "the reference client must pass {}: verdict {}, {}\n{}\nstderr: {}",
            case.id,
            case.verdict.as_str(),
            case.error.clone().unwrap_or_default(),
            missed.join("\n"),
            case.outcome.stderr_tail
        )
        .into());
    }
    // Every fault of the library acts on what the reference client (gzip) meets.
    if !case.faults_not_applied.is_empty() {
        return Err(format!("{}: a fault tested nothing: {}", case.id, case.faults_not_applied.join("; ")).into());
    }
    let name = snapshot_name(&case.id);
    let snapshot = match detail {
        SnapshotDetail::Full => Snapshot::of(case),
        SnapshotDetail::Outcome => Snapshot::outcome_of(case),
    };
    let outcome = std::panic::catch_unwind(|| {
        insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_yaml_snapshot!(name, snapshot);
        });
    });
    outcome.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
            .into()
    })
}

/// Every snapshot file belongs to a case of the library (a renamed or removed
/// scenario leaves none behind).
fn no_stale_snapshots(names: &[String]) -> Result<(), Failed> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    if std::env::var_os("BULKMOCK_SCENARIOS").is_some() {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let stale: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".snap"))
        .filter(|f| !names.iter().any(|n| f.trim_end_matches(".snap") == n))
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("snapshots without a scenario case (delete them): {}", stale.join(", ")).into())
    }
}

/// `scenarios/COVERAGE.md` is what `bulkmock scenarios coverage` generates now.
fn coverage_up_to_date(table: &str) -> Result<(), Failed> {
    if std::env::var_os("BULKMOCK_SCENARIOS").is_some() {
        return Ok(());
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/COVERAGE.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == table {
        Ok(())
    } else {
        Err("scenarios/COVERAGE.md is stale: run `cargo run -- scenarios coverage --out scenarios/COVERAGE.md`".into())
    }
}

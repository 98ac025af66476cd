//! Clients that hang, flood the server, die by a signal or leave helpers
//! behind are judged and never stop the run; their whole process group goes
//! with them. Runs real programs through the command adapter.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bulkmock_harness::adapter::Command;
use bulkmock_harness::report::{CaseResult, CaseVerdict};
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario;

async fn run(command: &str, expect: &str) -> CaseResult {
    let text = format!("title = \"unruly\"\n[server]\nauth = false\npatients = 2\n[expect]\n{expect}\n");
    let file = scenario::parse(&text, Path::new("scenarios/selftest/unruly.toml")).expect("a valid scenario");
    let adapter = Command::new(command, None).expect("a valid template");
    let options = RunOptions { jobs: 1, grace: Duration::ZERO, ..RunOptions::default() };
    let report = runner::run(file.cases, Arc::new(adapter), &options, &|_| {}).await.expect("the run starts");
    report.cases.into_iter().next().expect("one case")
}

fn verdict_of(case: &CaseResult, check: &str) -> &'static str {
    case.checks.iter().find(|c| c.id == check).map_or("missing", |c| c.verdict.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_client_times_out_and_its_helpers_die_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("helper.pid");
    // The client starts a helper in the background, then hangs.
    let command = format!("sleep 300 & echo $! > {}; sleep 300", pid_file.display());
    let case = run(&command, "max_seconds = 1").await;
    assert_eq!(case.verdict, CaseVerdict::Timeout, "{case:#?}");
    assert_eq!(case.outcome.observed, "timeout");
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let alive = Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ");
    assert!(!alive, "the client's helper {pid} outlived its case");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_by_a_signal_is_judged_not_fatal_to_the_run() {
    let case = run("kill -KILL $$", "max_seconds = 10").await;
    assert_eq!(case.outcome.observed, "killed", "{case:#?}");
    assert_eq!(case.outcome.exit_code, None);
    assert_eq!(case.verdict, CaseVerdict::Fail);
    assert_eq!(verdict_of(&case, "outcome.expected"), "fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_stopped_and_fails_the_request_bound() {
    let flood = "python3 -c 'import urllib.request,sys\nwhile True:\n  urllib.request.urlopen(sys.argv[1]).read()' {fhir_base}/metadata";
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not on PATH");
        return;
    }
    let case = run(flood, "max_seconds = 60\nmax_requests = 100").await;
    assert_eq!(case.outcome.observed, "flooded", "{case:#?}");
    assert!(case.outcome.requests > 400, "stopped past four times the bound: {}", case.outcome.requests);
    assert_eq!(verdict_of(&case, "etiquette.request_bound"), "fail");
    assert_eq!(case.verdict, CaseVerdict::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_start_is_an_error_not_a_crash() {
    let case = run("/nonexistent/client --out {out_dir}", "max_seconds = 10").await;
    // `sh` starts, the program does not: exit 127, judged like any failed client.
    assert_eq!(case.outcome.exit_code, Some(127), "{case:#?}");
    assert_eq!(case.verdict, CaseVerdict::Fail);
}

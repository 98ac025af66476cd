//! Harness overhead and throughput (`cargo bench -p bulkmock-harness --bench harness`):
//!
//! 1. Per-case overhead: server start, key generation and registration, folder,
//!    verification, checks and teardown, with a client that does nothing
//!    (cases one after another, so each one's cost is its own).
//! 2. The same with the in-process reference client on a 10-patient Patient
//!    export: overhead plus a real export and its verification.
//! 3. 100 cases of the in-process client with real, short waits (a slow job
//!    counted in polls, one Retry-After, backoff), in parallel.
//!
//! Numbers go to BENCHMARKS.md.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bulkmock_harness::adapter::{Builtin, ClientAdapter, from_fn};
use bulkmock_harness::report::CaseVerdict;
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario;

fn cases(text: &str) -> Vec<scenario::Case> {
    scenario::parse(text, Path::new("scenarios/bench/case.toml")).expect("a valid scenario").cases
}

fn matrix(n: usize) -> String {
    let values: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    format!("[matrix]\nn = [{}]\n", values.join(", "))
}

fn run(label: &str, cases: Vec<scenario::Case>, adapter: Arc<dyn ClientAdapter>, jobs: usize) {
    let n = cases.len();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let options = RunOptions { jobs, ..RunOptions::default() };
    let started = Instant::now();
    let report = runtime.block_on(runner::run(cases, adapter, &options, &|_| {})).expect("run");
    let wall = started.elapsed();
    let passed = report.cases.iter().filter(|c| c.verdict == CaseVerdict::Pass).count();
    println!(
        "{label}: {n} cases, jobs {jobs}: {:.2} s wall, {:.1} ms per case, {passed} passed",
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1000.0 / n as f64
    );
}

fn main() {
    let noop = from_fn("noop", |_| async { Ok(0) });
    let plain =
        format!("title = \"overhead ${{n}}\"\n[server]\npatients = 10\n[client]\nlevel = \"patient\"\n{}", matrix(200));
    run("overhead, a client that does nothing", cases(&plain), Arc::new(noop), 1);
    run("reference client, 10-patient export", cases(&plain), Arc::new(Builtin::default()), 1);
    let waits = format!(
        "title = \"short waits ${{n}}\"\n[server]\npatients = 5\njob_polls = 2\n\
         [[fault]]\non = \"status\"\ntimes = 1\nfault = {{ kind = \"respond\", status = 503, body = \"transient\", retry_after_s = 1 }}\n\
         [client]\nlevel = \"patient\"\n[expect]\npoll_floor_ms = 100\n{}",
        matrix(100)
    );
    run("100 cases with real short waits", cases(&waits), Arc::new(Builtin::default()), runner::default_jobs());
}

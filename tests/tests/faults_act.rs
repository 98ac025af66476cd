//! Every fault of the scenario library acts on what a plain client meets.
//! `tests/scenarios.rs` runs the library with the reference client asking
//! for gzip and fails a case whose fault could not act; this runs it once
//! more asking for plain bodies, the other encoding a byte offset can meet
//! (a reset after 64 KiB of a 15 KB gzip body would otherwise test nothing,
//! silently).

use std::path::PathBuf;
use std::sync::Arc;

use bulkmock_harness::adapter::Builtin;
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario;

#[test]
fn every_fault_of_the_library_acts_on_plain_bodies() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = scenario::load_paths(&[root]).unwrap_or_else(|e| panic!("scenario library: {e}"));
    let cases: Vec<scenario::Case> = files.into_iter().flat_map(|f| f.cases).collect();
    let total = cases.len();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let options = RunOptions { jobs: 16, ..RunOptions::default() };
    let plain = Builtin { plain: true, ..Builtin::default() };
    let report = runtime.block_on(runner::run(cases, Arc::new(plain), &options, &|_| {})).expect("the run starts");
    assert_eq!(report.cases.len(), total);
    let idle: Vec<String> = report
        .cases
        .iter()
        .flat_map(|c| c.faults_not_applied.iter().map(move |why| format!("{}: {why}", c.id)))
        .collect();
    assert!(idle.is_empty(), "faults that tested nothing for a plain client:\n{}", idle.join("\n"));
}

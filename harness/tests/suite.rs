//! The built-in suite from Rust (issue 21, item 1): `suite::builtin()` is the
//! repository's `scenarios/` folder at the version of the build, loaded as the
//! folder on disk loads (the same cases, the same digest), narrowed by area
//! and id, and runnable as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulkmock_harness::adapter::Builtin;
use bulkmock_harness::report::CaseVerdict;
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::suite::{self, SuiteSource};

fn repository_scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn the_builtin_files_are_the_repository_scenarios_folder() {
    let mut on_disk = BTreeMap::new();
    let mut stack = vec![repository_scenarios()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            } else if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(repository_scenarios()).unwrap().to_string_lossy().replace('\\', "/");
                on_disk.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let built_in: BTreeMap<String, Vec<u8>> =
        suite::builtin_files().map(|(p, b)| (p.to_string(), b.to_vec())).collect();
    assert_eq!(built_in.keys().collect::<Vec<_>>(), on_disk.keys().collect::<Vec<_>>());
    assert!(built_in == on_disk, "a built-in file differs from the folder: rebuild");
}

#[test]
fn the_builtin_suite_loads_as_the_folder_on_disk_with_the_same_digest() {
    let built_in = suite::builtin();
    let on_disk = suite::from_paths(&[repository_scenarios()]).unwrap();
    assert_eq!(built_in.source(), &SuiteSource::Builtin);
    assert_eq!(on_disk.source(), &SuiteSource::Paths(vec![repository_scenarios()]));
    let ids = |s: &suite::ScenarioSuite| s.cases().map(|c| c.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&built_in), ids(&on_disk));
    for (a, b) in built_in.cases().zip(on_disk.cases()) {
        assert_eq!((&a.scenario_id, &a.matrix), (&b.scenario_id, &b.matrix));
        assert_eq!(serde_json::to_value(&a.scenario).unwrap(), serde_json::to_value(&b.scenario).unwrap(), "{}", a.id);
        assert_eq!(a.path, Path::new(&format!("builtin:{}.toml", a.scenario_id)));
    }
    let (a, b) = (built_in.identity(), on_disk.identity());
    assert_eq!((&a.digest, a.cases_total), (&b.digest, b.cases_total));
    assert_eq!((a.source.as_deref(), b.source.as_deref()), (Some("builtin"), Some("paths")));
    // A selection has the digest of the same selection from the folder.
    let (a, b) = (built_in.clone().area("files").identity(), on_disk.clone().area("files").identity());
    assert_eq!(a.digest, b.digest);
    assert_ne!(a.digest, built_in.identity().digest);
}

#[tokio::test]
async fn a_builtin_case_chosen_by_area_and_id_runs_from_rust() {
    let happy = suite::builtin().area("happy");
    assert!(happy.len() > 10 && happy.cases().all(|c| c.scenario_id.starts_with("happy/")));
    assert_eq!(happy.areas(), ["happy"]);
    let one = happy.filter("happy/group-empty");
    assert_eq!(one.len(), 1);
    assert!(one.case("happy/group-empty").is_some());
    let identity = one.identity();
    let options = RunOptions { jobs: 1, ..RunOptions::default() };
    let mut report = runner::run(one.into_cases(), Arc::new(Builtin::default()), &options, &|_| {}).await.unwrap();
    report.suite = Some(identity);
    assert_eq!(report.cases[0].verdict, CaseVerdict::Pass, "{:?}", report.cases[0]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["suite"]["source"], "builtin");
    assert_eq!(json["suite"]["cases_total"], 1);
}

#[test]
fn export_builtin_writes_every_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let written = suite::export_builtin(dir.path(), false).unwrap();
    assert_eq!(written.len(), suite::builtin_files().len());
    for ((rel, bytes), path) in suite::builtin_files().zip(&written) {
        assert_eq!(path, &dir.path().join(rel));
        assert_eq!(std::fs::read(path).unwrap(), bytes);
    }
    match suite::export_builtin(dir.path(), false) {
        Err(suite::ExportError::Exists(files)) => assert_eq!(files, written),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(suite::export_builtin(dir.path(), true).unwrap(), written);
}

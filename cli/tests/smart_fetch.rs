//! An outside client nobody here wrote, over the whole library: smart-fetch
//! 1.0.3 (PyPI) through `fixtures/clients/smart-fetch/adapter.py`, with its
//! profile. Every verdict is snapshotted (the case's and each check that did
//! not pass), so a verdict that changes, a false finding that comes back or a
//! true one that goes, fails this test until someone looks.
//! `fixtures/clients/smart-fetch/FINDINGS.md` explains every case that is not
//! a pass: a flaw of smart-fetch, or a limit its profile declares.
//!
//! `.ci/run` installs smart-fetch into a virtual environment and sets
//! `SMART_FETCH` and `BULKMOCK_REQUIRE_SMART_FETCH=1`; elsewhere, without
//! smart-fetch, the test says so and passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common {
    pub mod verdicts;
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the harness is inside the workspace").to_path_buf()
}

/// The smart-fetch program: `SMART_FETCH`, else `smart-fetch` on PATH.
fn smart_fetch() -> Option<String> {
    let program = std::env::var("SMART_FETCH").unwrap_or_else(|_| "smart-fetch".into());
    let runs = Command::new(&program).arg("--version").output().is_ok_and(|o| o.status.success());
    runs.then_some(program)
}

#[test]
fn smart_fetch_over_the_whole_library() {
    let Some(program) = smart_fetch() else {
        assert!(
            std::env::var_os("BULKMOCK_REQUIRE_SMART_FETCH").is_none(),
            "BULKMOCK_REQUIRE_SMART_FETCH is set, but smart-fetch does not run (SMART_FETCH={:?})",
            std::env::var("SMART_FETCH")
        );
        eprintln!("skipped: smart-fetch is not installed (.ci/run installs it; or set SMART_FETCH)");
        return;
    };
    let root = workspace();
    let fixture = root.join("fixtures/clients/smart-fetch");
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("result.json");
    let adapter = fixture.join("adapter.py").display().to_string().replace('{', "{{").replace('}', "}}");
    let run = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .arg("run")
        .arg(root.join("scenarios"))
        .arg("--client-profile")
        .arg(fixture.join("profile.toml"))
        .args(["--client-cmd", &format!("python3 '{adapter}'")])
        .env("SMART_FETCH", &program)
        .args(["--seed", "42", "--jobs", "24"])
        .arg("--json")
        .arg(&json)
        .arg("--work-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // smart-fetch has real flaws: exit 1 (some MUST failed), never 2 (bad input).
    assert_eq!(run.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["client_profile"], "smart-fetch 1.0.3");
    let cases = report["cases"].as_array().expect("cases");
    let errors: Vec<&str> = cases.iter().filter(|c| c["verdict"] == "error").filter_map(|c| c["id"].as_str()).collect();
    assert!(errors.is_empty(), "the harness could not run {errors:?}\n{stdout}");

    let verdicts = common::verdicts::of_cases(cases);
    insta::assert_yaml_snapshot!("smart_fetch_verdicts", verdicts);
    // Cases by verdict; not the check totals, whose passed-or-skipped share may
    // move with timing (a check exercised or not) while no verdict does.
    let summary = &report["summary"];
    let counts: BTreeMap<&str, &Value> =
        ["cases", "passed", "warned", "failed", "errors", "timeouts", "not_applicable"]
            .into_iter()
            .map(|k| (k, &summary[k]))
            .collect();
    insta::assert_yaml_snapshot!("smart_fetch_summary", counts);
}

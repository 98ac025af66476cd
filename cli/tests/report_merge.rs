//! Shards and merge, through the `bulkmock` binary as CI runs them
//! (docs/ci.md): three shards merged must judge exactly as one unsharded run,
//! and results that do not belong together are refused with exit code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bulkmock_harness::report::Suite;
use bulkmock_harness::{runner, scenario};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bulkmock");

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// `bulkmock run` on the subset, optionally one shard, with `--json out`.
fn run(out: &Path, shard: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg(scenarios())
        .args(["--filter", "happy/system-export", "--filter", "kickoff/", "--json"])
        .arg(out)
        .env_remove("BULKMOCK_CLIENT_CMD")
        .env_remove("BULKMOCK_SEED");
    if let Some(shard) = shard {
        cmd.args(["--shard", shard]);
    }
    cmd
}

fn merge(inputs: &[&Path], extra: &[&str]) -> Output {
    Command::new(BIN).args(["report", "merge"]).args(inputs).args(extra).output().expect("bulkmock runs")
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// What must not depend on sharding: ids, verdicts, check verdicts, summary, identity.
fn judged(report: &Value) -> Value {
    let cases: Vec<Value> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let checks: Vec<Value> = c["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| json!([k["id"], k["level"], k["requirements"], k["verdict"]]))
                .collect();
            json!({"id": c["id"], "scenario": c["scenario"], "verdict": c["verdict"],
                "expected": c["outcome"]["expected"], "observed": c["outcome"]["observed"],
                "exit_code": c["outcome"]["exit_code"], "checks": checks})
        })
        .collect();
    json!({"seed": report["seed"], "client": report["client"], "bulkmock_version": report["bulkmock_version"],
        "suite": report["suite"], "summary": report["summary"], "cases": cases})
}

#[test]
fn three_shards_merged_judge_as_one_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.json");
    let shards: Vec<PathBuf> = (1..=3).map(|k| dir.path().join(format!("shard-{k}.json"))).collect();
    // All four at once, as a CI matrix would.
    let handles: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let mut cmd = run(path, Some(&format!("{}/3", i + 1)));
            std::thread::spawn(move || cmd.output())
        })
        .collect();
    let mut children = vec![run(&full, None).output()];
    children.extend(handles.into_iter().map(|h| h.join().unwrap()));
    for out in children {
        let out = out.expect("bulkmock runs");
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let counts: Vec<usize> = shards.iter().map(|s| read(s)["cases"].as_array().unwrap().len()).collect();
    let full_report = read(&full);
    assert_eq!(counts.iter().sum::<usize>(), full_report["cases"].as_array().unwrap().len(), "{counts:?}");
    assert!(counts.iter().all(|&n| n > 0), "every shard holds cases: {counts:?}");
    let digest = &full_report["suite"]["digest"];
    for s in &shards {
        assert_eq!(&read(s)["suite"], &full_report["suite"], "every shard carries the run's suite");
    }
    assert!(digest.as_str().unwrap().starts_with("sha256:"));

    let merged = dir.path().join("merged.json");
    let (junit, md, html) = (dir.path().join("m.xml"), dir.path().join("m.md"), dir.path().join("m.html"));
    let inputs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    let out = merge(
        &inputs,
        &[
            "--json",
            merged.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--markdown",
            md.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    let expected_code = if full_report["summary"]["passed"] == full_report["summary"]["cases"] { 0 } else { 1 };
    assert_eq!(out.status.code(), Some(expected_code), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(judged(&read(&merged)), judged(&full_report));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(&format!("tests=\"{}\"", counts.iter().sum::<usize>())), "{xml}");
    assert!(std::fs::read_to_string(&md).unwrap().contains("## bulkmock conformance report"));
    assert!(std::fs::metadata(&html).unwrap().len() > 0);

    refusals(dir.path(), &shards);
}

/// Each refusal: exit code 2 and a message naming the problem.
fn refusals(dir: &Path, shards: &[PathBuf]) {
    let refused = |inputs: &[&Path], extra: &[&str], says: &str| {
        let out = merge(inputs, extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{inputs:?}: {err}");
        assert!(err.contains(says), "{inputs:?}: {err:?} should say {says:?}");
    };
    let (a, b, c) = (shards[0].as_path(), shards[1].as_path(), shards[2].as_path());
    refused(&[a, b, a], &[], "is in both");
    refused(&[a, b], &[], "a shard is missing");
    assert_eq!(merge(&[a, b], &["--allow-missing"]).status.code().map(|c| c <= 1), Some(true));
    let altered = |name: &str, change: &dyn Fn(&mut Value)| {
        let mut v = read(c);
        change(&mut v);
        let path = dir.join(name);
        std::fs::write(&path, v.to_string()).unwrap();
        path
    };
    let seed = altered("seed.json", &|v| v["seed"] = json!(7));
    refused(&[a, b, &seed], &[], "differ in seed: 42 vs 7");
    let client = altered("client.json", &|v| v["client"] = json!("other"));
    refused(&[a, b, &client], &[], "differ in client");
    let version = altered("version.json", &|v| v["bulkmock_version"] = json!("0.0.1"));
    refused(&[a, b, &version], &[], "differ in bulkmock_version");
    let suite = altered("suite.json", &|v| v["suite"]["digest"] = json!("sha256:00"));
    refused(&[a, b, &suite], &[], "differ in suite");
    // The same scenarios named otherwise (built in, or a path spelled otherwise) are the same suite.
    let renamed = altered("renamed.json", &|v| {
        v["suite"]["source"] = json!("builtin");
        v["suite"].as_object_mut().unwrap().remove("paths");
    });
    let out = merge(&[a, b, &renamed], &[]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&out.stderr));
    let old = altered("old.json", &|v| {
        v.as_object_mut().unwrap().remove("suite");
    });
    refused(&[a, b, &old], &[], "no `suite` identity");
    let text = dir.join("text.json");
    std::fs::write(&text, "not json").unwrap();
    refused(&[a, &text], &[], "not a `bulkmock run --json` result");
}

#[test]
fn the_suite_digest_follows_the_selection_not_the_shard() {
    let files = scenario::load_paths(&[scenarios()]).unwrap();
    let cases: Vec<_> = files.into_iter().flat_map(|f| f.cases).collect();
    let kickoff = runner::select(cases.clone(), &["kickoff/".into()], None);
    let status = runner::select(cases.clone(), &["status/".into()], None);
    let (a, b) = (Suite::of(&kickoff), Suite::of(&status));
    assert_ne!(a.digest, b.digest);
    assert_eq!(a.cases_total, kickoff.len() as u64);
    let mut reversed = kickoff.clone();
    reversed.reverse();
    assert_eq!(Suite::of(&reversed), a, "order does not matter");
    let one_less = &kickoff[1..];
    assert_ne!(Suite::of(one_less).digest, a.digest);
}

#[test]
fn the_ci_example_uses_these_commands() {
    let ci = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ci.md")).unwrap();
    for command in [
        "bulkmock run scenarios/ --shard ${{ matrix.shard }}/3 --json shard-${{ matrix.shard }}.json",
        "bulkmock report merge shard-*.json",
        "--json result.json --junit junit.xml --markdown report.md --html report.html",
    ] {
        assert!(ci.contains(command), "docs/ci.md no longer runs {command:?}");
    }
}

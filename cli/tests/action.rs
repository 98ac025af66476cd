//! The GitHub Action (`action.yml` at the repository root, its step in
//! `action/run.sh`): its inputs are the ones docs/ci.md documents, every flag
//! it passes is one `bulkmock run` accepts, and the step itself runs here with
//! the binary of this build, writing the Markdown report to the job summary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The input names of action.yml: the keys indented by two spaces under `inputs:`.
fn inputs(action: &str) -> Vec<String> {
    let block = action.split("\ninputs:\n").nth(1).expect("an inputs: block");
    block
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':').to_string())
        .collect()
}

#[test]
fn the_inputs_of_the_action_are_documented_and_passed_to_its_step() {
    let action = read("action.yml");
    let script = read("action/run.sh");
    let docs = read("docs/ci.md");
    let names = inputs(&action);
    assert_eq!(names, ["client-cmd", "suite", "filter", "shard", "strict", "args", "results"]);
    assert!(action.contains("using: composite") && action.contains("$GITHUB_ACTION_PATH/cli"), "{action}");
    for name in &names {
        let var = format!("INPUT_{}", name.to_uppercase().replace('-', "_"));
        assert!(action.contains(&format!("{var}: ${{{{ inputs.{name} }}}}")), "action.yml passes {name} as {var}");
        assert!(script.contains(&var), "action/run.sh reads {var}");
        assert!(docs.contains(&format!("| `{name}` |")), "docs/ci.md documents the input {name}");
    }
}

#[test]
fn every_flag_the_action_passes_is_one_bulkmock_run_accepts() {
    let help = Command::new(env!("CARGO_BIN_EXE_bulkmock")).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let script = read("action/run.sh");
    let flags: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(flags.len() >= 8, "{flags:?}");
    for flag in flags {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "bulkmock run has no {flag}"
        );
    }
}

fn run_step(dir: &Path, inputs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_bulkmock")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let summary = dir.join("summary.md");
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("action/run.sh"))
        .current_dir(dir)
        .env("PATH", path)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", dir.join("output"));
    for (k, v) in inputs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let summary = std::fs::read_to_string(&summary).unwrap_or_default();
    (out.status.code(), summary, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_action_step_judges_a_client_and_writes_the_job_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (code, summary, stderr) = run_step(
        dir.path(),
        &[
            ("INPUT_FILTER", "happy/group-empty"),
            ("INPUT_STRICT", "true"),
            ("INPUT_SHARD", "1/1"),
            ("INPUT_ARGS", "--seed 7"),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(summary.starts_with("## bulkmock conformance report: "), "{summary}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bulkmock-results/result.json")).unwrap())
            .unwrap();
    assert_eq!((result["seed"].as_u64(), result["summary"]["passed"].as_u64()), (Some(7), Some(1)));
    for file in ["junit.xml", "report.md", "report.html"] {
        assert!(dir.path().join("bulkmock-results").join(file).is_file(), "{file}");
    }
    assert!(std::fs::read_to_string(dir.path().join("output")).unwrap().contains("results=bulkmock-results"));

    // The user's client: one that gives up at once fails the step, and the summary still says why.
    let dir = tempfile::tempdir().unwrap();
    let (code, summary, stderr) = run_step(
        dir.path(),
        &[
            ("INPUT_FILTER", "happy/group-empty"),
            ("INPUT_CLIENT_CMD", "echo {fhir_base} >&2; exit 3"),
            ("INPUT_RESULTS", "out"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(summary.contains("happy/group-empty") && summary.contains("exit 3"), "{summary}");
}

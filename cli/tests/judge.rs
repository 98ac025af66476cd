//! Judging a client the harness did not launch: the reference client runs
//! against `bulkmock serve --scenario` (the binary, port 0), then `bulkmock
//! judge` judges its transcript, judge file and output folder. The verdicts,
//! checks, output comparison and exchanges equal those of `bulkmock run` on the
//! same case (timings and paths aside).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bulkmock_harness::adapter::{Builtin, CaseContext, ClientAdapter};
use bulkmock_harness::report::{CaseResult, RunReport};
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario::{self, Case};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bulkmock");
const SEED: u64 = 42;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// The case of `file` whose matrix holds every `(key, value)` of `matrix`.
fn case_of(file: &str, matrix: &[(&str, &str)]) -> Case {
    let path = scenarios_dir().join(file);
    let files = scenario::load_paths(&[path]).unwrap();
    files
        .into_iter()
        .flat_map(|f| f.cases)
        .find(|c| matrix.iter().all(|(k, v)| c.matrix.get(*k).map(String::as_str) == Some(*v)))
        .expect("the case exists")
}

/// A running `bulkmock serve --scenario`; killed on drop when still running.
struct Served {
    child: Child,
    variables: BTreeMap<String, String>,
    transcript: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(case: &Case, state_dir: &Path) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0", "--seed", &SEED.to_string(), "--scenario"])
            .arg(&case.path)
            .args(["--case", &case.id, "--state-dir"])
            .arg(state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut banner: BTreeMap<String, String> = BTreeMap::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if line.starts_with("Press Ctrl-C") {
                break;
            }
            if let Some((k, v)) = line.trim().split_once(':') {
                banner.insert(k.to_string(), v.trim().to_string());
            }
        }
        let text = std::fs::read_to_string(&banner["variables"]).unwrap();
        let variables = serde_json::from_str(&text).unwrap();
        Served { child, variables, transcript: PathBuf::from(&banner["transcript"]) }
    }

    /// Ctrl-C: the server stops and writes its judge file a last time.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        assert!(self.child.wait().unwrap().success());
    }

    /// The client's context, from the variables the server wrote.
    fn context(&self, case: &Case, out_dir: &Path) -> CaseContext {
        let var = |k: &str| self.variables[k].clone();
        let pem = var("private_key_pem");
        CaseContext {
            case_id: case.id.clone(),
            fhir_base: var("fhir_base"),
            token_url: var("token_url"),
            client_id: var("client_id"),
            kid: var("kid"),
            alg: var("alg"),
            private_key_pem: if pem.is_empty() { String::new() } else { std::fs::read_to_string(pem).unwrap() },
            request: case.scenario.client.clone(),
            out_dir: out_dir.to_path_buf(),
            dir: PathBuf::from(var("case_dir")),
            variables: self.variables.clone(),
            deadline: Duration::from_secs_f64(case.scenario.expect.max_seconds),
            seed: SEED,
        }
    }
}

/// The case judged by `bulkmock run` (in-process, the library the binary uses).
async fn by_run(case: &Case) -> CaseResult {
    let options = RunOptions { jobs: 1, seed: SEED, ..RunOptions::default() };
    let report = runner::run(vec![case.clone()], Arc::new(Builtin::default()), &options, &|_| {}).await.unwrap();
    report.cases.into_iter().next().unwrap()
}

/// The case served by `bulkmock serve --scenario`, the reference client run against it, then `bulkmock judge`.
async fn by_judge(case: &Case) -> (Value, bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut served = Served::start(case, &dir.path().join("state"));
    let run = Builtin::default().run(&served.context(case, &out)).await;
    served.stop();
    let stderr = dir.path().join("client.log");
    std::fs::write(&stderr, &run.stderr).unwrap();
    let json = dir.path().join("result.json");
    let status = Command::new(BIN)
        .args(["judge", "--case", &case.id, "--exit-code", &run.exit_code.unwrap().to_string(), "--scenario"])
        .arg(&case.path)
        .arg("--transcript")
        .arg(&served.transcript)
        .arg("--out")
        .arg(&out)
        .arg("--stderr")
        .arg(&stderr)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_ne!(status.code(), Some(2), "bulkmock judge refused its input");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["seed"], SEED);
    assert_eq!(report["cases"].as_array().unwrap().len(), 1);
    (report["cases"][0].clone(), status.success())
}

/// What must be equal: the case's JSON without timings, sequence numbers, paths,
/// the re-run line and body sizes (attachment URLs in the data name the port);
/// exchanges as a multiset (downloads run in parallel).
fn comparable(case: &Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                for k in ["at_ms", "seq", "seconds", "rerun", "dir", "bytes"] {
                    o.remove(k);
                }
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut case = case.clone();
    strip(&mut case);
    if let Some(Value::Array(exchanges)) = case.get_mut("exchanges") {
        exchanges.sort_by_key(|x| x.to_string());
    }
    case
}

async fn same_verdicts(file: &str, matrix: &[(&str, &str)]) {
    same_verdicts_of(case_of(file, matrix)).await;
}

async fn same_verdicts_of(case: Case) {
    let run = by_run(&case).await;
    let (judged, passed) = by_judge(&case).await;
    assert_eq!(comparable(&judged), comparable(&serde_json::to_value(&run).unwrap()), "{}", case.id);
    assert_eq!(passed, RunReport::new(SEED, "x".into(), vec![run]).passed(false), "exit code of bulkmock judge");
}

/// A case of the built-in suite, named `builtin:happy/patient-export.toml` to
/// both `serve --scenario` and `judge --scenario`, as a case of files is.
#[tokio::test]
async fn a_builtin_scenario_is_served_and_judged_like_run() {
    let case = bulkmock_harness::suite::builtin().case("happy/patient-export#post=false").cloned().unwrap();
    assert_eq!(case.path, Path::new("builtin:happy/patient-export.toml"));
    same_verdicts_of(case).await;
}

#[test]
fn judge_names_a_builtin_scenario_that_does_not_exist() {
    let out = Command::new(BIN)
        .args(["judge", "--scenario", "builtin:happy/no-such", "--transcript", "t.ndjson", "--out", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("builtin:happy/no-such: no such scenario in the built-in suite"), "{stderr}");
}

#[tokio::test]
async fn post_kickoff_is_judged_like_run() {
    same_verdicts("happy/patient-export.toml", &[("post", "true")]).await;
}

#[tokio::test]
async fn injected_partial_success_is_judged_like_run() {
    same_verdicts("manifest/partial-success.toml", &[("level", "system")]).await;
}

#[tokio::test]
async fn jwks_url_client_is_judged_like_run() {
    same_verdicts("happy/jwks-url.toml", &[("alg", "RS384"), ("jwks", "url")]).await;
}

#[tokio::test]
async fn file_fault_is_judged_like_run() {
    same_verdicts("files/truncated-at-line-end.toml", &[("fraction", "0.25")]).await;
}

#[tokio::test]
async fn client_that_gives_up_is_judged_like_run() {
    same_verdicts("auth/token-invalid-client-every-time.toml", &[("status", "401")]).await;
}

#[test]
fn a_matrix_scenario_needs_a_case() {
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--scenario"])
        .arg(scenarios_dir().join("happy/patient-export.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--case") && err.contains("happy/patient-export#post=true"), "{err}");
}

#[test]
fn a_client_past_its_deadline_times_out_and_a_flood_is_stopped() {
    let case = case_of("happy/patient-export.toml", &[("post", "false")]);
    let exchange = |seq: u64, at_ms: u64| {
        serde_json::from_value::<bulkmock_server::Exchange>(serde_json::json!({
            "seq": seq, "at_ms": at_ms, "method": "GET", "path": "/fhir/metadata", "headers": {},
            "status": 200, "bytes": 10, "duration_ms": 1
        }))
        .unwrap()
    };
    let grace = Duration::from_secs(5);
    let late = [exchange(1, 0), exchange(2, 60_000)];
    let run = runner::judge::run_from_transcript(&case, &late, 0, String::new(), grace);
    assert!(run.timed_out && run.exit_code.is_none());
    let flood: Vec<_> = (1..=2_001).map(|i| exchange(i, i)).collect();
    assert!(runner::judge::run_from_transcript(&case, &flood, 0, String::new(), grace).flooded);
    let fine = runner::judge::run_from_transcript(&case, &late[..1], 3, "gave up".into(), grace);
    assert_eq!((fine.exit_code, fine.timed_out, fine.flooded), (Some(3), false, false));
}

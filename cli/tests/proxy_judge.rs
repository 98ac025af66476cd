//! `bulkmock judge --proxy-record`: the reference client runs a case through
//! `bulkmock proxy` in front of `bulkmock serve --scenario` (the case's own
//! server, a separate process); the export is judged twice, once from the
//! server's transcript and judge file (as `bulkmock judge` always did, which
//! `cli/tests/judge.rs` shows equal to `bulkmock run`), once from the proxy's
//! transcript and record alone. The verdicts are the same, but for the checks
//! of token requests, which no proxy sees: those are skipped, saying why.

#[path = "common/proxy.rs"]
mod procs;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bulkmock_harness::adapter::{Builtin, CaseContext, ClientAdapter};
use bulkmock_harness::runner::proxied::TOKEN_ENDPOINT_CHECKS;
use bulkmock_harness::scenario::{self, Case};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bulkmock");
const SEED: u64 = 42;

fn case_of(file: &str, matrix: &[(&str, &str)]) -> Case {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(file);
    let files = scenario::load_paths(&[path]).unwrap();
    files
        .into_iter()
        .flat_map(|f| f.cases)
        .find(|c| matrix.iter().all(|(k, v)| c.matrix.get(*k).map(String::as_str) == Some(*v)))
        .expect("the case exists")
}

/// `bulkmock judge` on the case with `flags`; the report's one case.
fn judge(case: &Case, out: &Path, exit_code: i32, flags: &[&std::ffi::OsStr], json: &Path) -> Value {
    let output = Command::new(BIN)
        .args(["judge", "--case", &case.id, "--exit-code", &exit_code.to_string(), "--scenario"])
        .arg(&case.path)
        .arg("--out")
        .arg(out)
        .args(flags)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(2), "bulkmock judge refused its input ({flags:?}): {stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    report["cases"][0].clone()
}

fn verdicts(case: &Value) -> BTreeMap<String, (String, String)> {
    case["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let message = c["evidence"]["message"].as_str().unwrap_or_default().to_string();
            (c["id"].as_str().unwrap().to_string(), (c["verdict"].as_str().unwrap().to_string(), message))
        })
        .collect()
}

async fn same_verdicts_through_the_proxy(case: Case) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // The case's own server, as `bulkmock judge` tests run it.
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--seed", &SEED.to_string(), "--scenario"])
        .arg(&case.path)
        .args(["--case", &case.id, "--state-dir"])
        .arg(dir.path().join("state"))
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
    let variables: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&banner["variables"]).unwrap()).unwrap();
    let served_transcript = PathBuf::from(&banner["transcript"]);
    let (t, record) = (dir.path().join("proxy.ndjson"), dir.path().join("record.ndjson"));
    let proxy = procs::proxy(
        &variables["fhir_base"],
        &["--transcript", t.to_str().unwrap(), "--record", record.to_str().unwrap()],
        None,
        &[],
    );
    let var = |k: &str| variables[k].clone();
    let pem = var("private_key_pem");
    let context = CaseContext {
        case_id: case.id.clone(),
        fhir_base: proxy.fhir_base.clone(),
        token_url: var("token_url"),
        client_id: var("client_id"),
        kid: var("kid"),
        alg: var("alg"),
        private_key_pem: if pem.is_empty() { String::new() } else { std::fs::read_to_string(pem).unwrap() },
        request: case.scenario.client.clone(),
        out_dir: out.clone(),
        dir: PathBuf::from(var("case_dir")),
        variables: variables.clone(),
        deadline: Duration::from_secs_f64(case.scenario.expect.max_seconds),
        seed: SEED,
    };
    let run = Builtin::default().run(&context).await;
    proxy.stop();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    assert!(child.wait().unwrap().success());
    let code = run.exit_code.unwrap();
    let direct = judge(
        &case,
        &out,
        code,
        &["--transcript".as_ref(), served_transcript.as_os_str()],
        &dir.path().join("direct.json"),
    );
    let proxied = judge(
        &case,
        &out,
        code,
        &["--transcript".as_ref(), t.as_os_str(), "--proxy-record".as_ref(), record.as_os_str()],
        &dir.path().join("proxied.json"),
    );
    assert_eq!(proxied["verdict"], direct["verdict"], "{}: {proxied:#}", case.id);
    assert_eq!(proxied["outcome"]["output"], direct["outcome"]["output"], "{}", case.id);
    assert_eq!(proxied["outcome"]["observed"], direct["outcome"]["observed"]);
    let (a, b) = (verdicts(&direct), verdicts(&proxied));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (id, (verdict, message)) in &b {
        if TOKEN_ENDPOINT_CHECKS.contains(&id.as_str()) {
            assert_eq!(verdict, "skip", "{id}");
            assert!(message.contains("token endpoint is the upstream's"), "{id}: {message}");
        } else {
            assert_eq!(
                verdict, &a[id].0,
                "{}: check {id} through the proxy: {message}; directly: {}",
                case.id, a[id].1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_system_export_posted() {
    same_verdicts_through_the_proxy(case_of("happy/system-export.toml", &[("alg", "ES384"), ("post", "true")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_export() {
    same_verdicts_through_the_proxy(case_of("happy/group-export.toml", &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_at_the_upstream() {
    same_verdicts_through_the_proxy(case_of("files/truncated-by-fraction.toml", &[("at_line_end", "false")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_status_errors_at_the_upstream() {
    same_verdicts_through_the_proxy(case_of(
        "status/transient-error-then-recover.toml",
        &[("status", "503"), ("code", "transient")],
    ))
    .await;
}

/// `bulkmock run` with `args`; its JSON report's cases by id.
fn run_report(args: &[&str], json: &Path) -> BTreeMap<String, Value> {
    let status =
        Command::new(BIN).arg("run").args(args).arg("--json").arg(json).stdout(Stdio::null()).status().unwrap();
    assert_ne!(status.code(), Some(2), "bulkmock run refused {args:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    report["cases"].as_array().unwrap().iter().map(|c| (c["id"].as_str().unwrap().to_string(), c.clone())).collect()
}

/// `bulkmock run --upstream`: the cases run against a separate `bulkmock serve`
/// through a proxy with their faults, judged from the proxy's evidence, give the
/// verdicts of the same cases on their own mock; those that need the mock's data
/// or settings are not applicable, saying what they need.
#[test]
fn run_upstream_gives_the_verdicts_of_a_direct_run() {
    let dir = tempfile::tempdir().unwrap();
    let up = procs::upstream(dir.path(), &["--patients", "10"]);
    let filters = [
        "happy/system-export#alg=RS384",
        "files/truncated-by-fraction",
        "files/connection-reset",
        "status/transient-error-then-recover",
        "kickoff/transient-5xx-then-success",
        "happy/group-export",
        "happy/system-export#alg=ES384,post=false",
    ];
    let mut args: Vec<&str> = filters.iter().flat_map(|f| ["--filter", *f]).collect();
    args.extend(["--jobs", "4"]);
    let direct = run_report(&args, &dir.path().join("direct.json"));
    let jwks = up.key.with_file_name("jwks.json");
    let (key, jwks) = (up.key.to_str().unwrap(), jwks.to_str().unwrap());
    args.extend(["--upstream", &up.server.fhir_base, "--client-id", &up.client_id]);
    args.extend(["--client-jwks", jwks, "--client-key", key]);
    let proxied = run_report(&args, &dir.path().join("proxied.json"));
    assert_eq!(direct.keys().collect::<Vec<_>>(), proxied.keys().collect::<Vec<_>>());
    let mut ran = 0;
    for (id, case) in &proxied {
        let reason = case["not_applicable"].as_str().unwrap_or_default();
        if id.starts_with("happy/group-export") {
            assert_eq!(case["verdict"], "not_applicable", "{id}");
            assert!(reason.contains("Group \"") && reason.contains("synthetic data"), "{id}: {reason}");
            continue;
        }
        if id.contains("alg=ES384") {
            // The upstream's demo client has an RS384 key: a case about ES384 cannot run.
            assert!(reason.contains("signs with ES384"), "{id}: {reason}");
            continue;
        }
        ran += 1;
        assert_eq!(case["verdict"], direct[id]["verdict"], "{id}: {case:#}");
        // The upstream's data is its own (another seed): the differences, not the sizes, must agree.
        for field in ["missing", "extra", "duplicated", "corrupted"] {
            assert_eq!(case["outcome"]["output"][field], direct[id]["outcome"]["output"][field], "{id}: {field}");
        }
        let output = &case["outcome"]["output"];
        assert!(output["expected_resources"].as_u64().unwrap() > 0, "{id}: the upstream's lines are known");
        assert!(case["rerun"].as_str().unwrap().contains("--upstream"), "{id}");
    }
    assert!(ran >= 8, "{ran} cases ran against the upstream");
}

//! `bulkmock judge --proxy-record`: the reference client runs a case through
//! `bulkmock proxy` in front of `bulkmock serve --scenario` (the case's own
//! server, a separate process); the export is judged twice, once from the
//! server's transcript and judge file (as `bulkmock judge` always did, which
//! `cli/tests/judge.rs` shows equal to `bulkmock run`), once from the proxy's
//! transcript and record alone. The verdicts are the same, but for the checks
//! of token requests, which no proxy sees: those are skipped, saying why.
//! Without a scenario (`bulkmock judge --proxy-record FILE --out DIR`), a
//! proxied export of `bulkmock export` is judged as the record shows it.

#[path = "common/proxy.rs"]
mod procs;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bulkmock_harness::adapter::{Builtin, CaseContext, ClientAdapter};
use bulkmock_harness::runner::proxied::{REQUEST_BOUND_SKIP, TOKEN_ENDPOINT_CHECKS};
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
        } else if id == "etiquette.request_bound" {
            // The case's bound counts the mock's export, not a real upstream's.
            assert_eq!((verdict.as_str(), message.as_str()), ("skip", REQUEST_BOUND_SKIP), "{id}");
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
    // The mock's deadlines do not bind the upstream's pace: without --time-scale,
    // `--upstream` runs on its generous default, shown in the report.
    let scale = |name: &str| -> Value {
        serde_json::from_str::<Value>(&std::fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()["time_scale"]
            .clone()
    };
    assert_eq!(scale("direct.json"), 1.0);
    assert_eq!(scale("proxied.json"), bulkmock_harness::runner::upstream::DEFAULT_TIME_SCALE);
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

/// The reference client (`bulkmock export`) through a proxy with `plan` (a
/// fault plan's TOML, or none; `client`: the client's extra flags) in front of a separate `bulkmock serve`: the
/// temporary folder, the record, the client's output folder and exit code.
fn proxied_export(plan: Option<&str>, client: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf, i32) {
    let dir = tempfile::tempdir().unwrap();
    let up = procs::upstream(dir.path(), &["--patients", "10", "--resources-per-file", "100"]);
    let (t, record) = (dir.path().join("proxy.ndjson"), dir.path().join("record.ndjson"));
    let mut args = vec!["--transcript", t.to_str().unwrap(), "--record", record.to_str().unwrap()];
    let file = plan.map(|toml| procs::plan(dir.path(), "plan.toml", toml));
    if let Some(file) = &file {
        args.extend(["--faults", file.to_str().unwrap()]);
    }
    let proxy = procs::proxy(&up.server.fhir_base, &args, None, &[]);
    let out = dir.path().join("out");
    let export = procs::export(&up, &proxy.fhir_base, &out, client);
    proxy.stop();
    up.server.stop();
    let code = export.status.code().unwrap();
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(code == 0 || !stderr.trim().is_empty(), "the client failed without saying why");
    (dir, record, out, code)
}

/// `bulkmock judge --proxy-record FILE --out DIR` with no scenario and no
/// transcript (the record names it): its exit code and the report's one case.
fn judge_bare(record: &Path, out: &Path, exit_code: i32) -> (i32, Value) {
    let json = record.with_file_name("bare.json");
    let output = Command::new(BIN)
        .args(["judge", "--exit-code", &exit_code.to_string(), "--proxy-record"])
        .arg(record)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let code = output.status.code().unwrap();
    assert_ne!(code, 2, "bulkmock judge refused its input: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (code, report["cases"][0].clone())
}

/// No check fails (a SHOULD may warn), skipped ones say why; the
/// token-endpoint and scenario-only checks are among them.
fn assert_passes(case: &Value, code: i32) {
    let checks = verdicts(case);
    let failed: Vec<_> = checks.iter().filter(|(_, (v, _))| v == "fail").collect();
    assert!(failed.is_empty() && code == 0, "the bare judge failed a client that did right: {failed:#?}");
    assert!(matches!(case["verdict"].as_str(), Some("pass" | "warn")), "{case:#}");
    for id in ["kickoff.matches_request", "etiquette.request_bound", "auth.token_request_form"] {
        assert_eq!(checks[id].0, "skip", "{id}");
    }
    assert!(checks["kickoff.matches_request"].1.contains("no scenario"), "{:?}", checks["kickoff.matches_request"]);
    assert_eq!(checks["output.matches_export"].0, "pass");
    assert!(case["outcome"]["output"]["expected_resources"].as_u64().unwrap() > 0, "the upstream's lines are known");
}

#[test]
fn the_bare_form_passes_a_clean_proxied_export() {
    let (_dir, record, out, code) = proxied_export(None, &[]);
    assert_eq!(code, 0);
    let (judged, case) = judge_bare(&record, &out, code);
    assert_passes(&case, judged);
    assert_eq!(case["verdict"], "pass", "{case:#}");
    assert_eq!(case["id"], "proxy/recorded-export");
}

#[test]
fn the_bare_form_fails_an_output_that_lost_lines_naming_the_file() {
    let (_dir, record, out, code) = proxied_export(None, &[]);
    // Tamper with the client's output: the last three lines of one file are gone.
    let (name, bytes) =
        procs::ndjson_files(&out).into_iter().find(|(_, b)| b.split(|&c| c == b'\n').count() > 4).unwrap();
    let lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
    let kept: Vec<u8> = lines[..lines.len() - 3].iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
    std::fs::write(out.join(&name), kept).unwrap();
    let (judged, case) = judge_bare(&record, &out, code);
    assert_eq!(judged, 1);
    assert_eq!(case["verdict"], "fail");
    let checks = verdicts(&case);
    let (verdict, message) = &checks["output.matches_export"];
    assert_eq!(verdict, "fail", "{message}");
    assert_eq!(case["outcome"]["output"]["missing"], 3, "{:#}", case["outcome"]["output"]);
    // The file the lines came from, as the upstream served it (its URL in the record).
    let ty = name.trim_end_matches(".ndjson");
    let upstream_file = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "file")
        .map(|e| e["url"].as_str().unwrap().to_string())
        .find(|u| u.split('?').next().unwrap().ends_with(&format!("{ty}.ndjson")))
        .expect("the upstream's file of that type");
    assert!(message.contains(&upstream_file), "the evidence names {upstream_file}: {message}");
}

#[test]
fn the_bare_form_passes_a_client_that_recovers_from_a_503() {
    let plan = r#"[[fault]]
on = "status"
times = 2
fault = { kind = "respond", status = 503, body = "transient", retry_after_s = 0 }
[[fault]]
on = "file"
times = 1
fault = { kind = "respond", status = 503, body = "transient", retry_after_s = 0 }"#;
    let (_dir, record, out, code) = proxied_export(Some(plan), &[]);
    assert_eq!(code, 0);
    let (judged, case) = judge_bare(&record, &out, code);
    assert_passes(&case, judged);
    assert_eq!(case["verdict"], "pass", "{case:#}");
    let checks = verdicts(&case);
    assert_eq!(checks["status.transient_retried"].0, "pass", "{:?}", checks["status.transient_retried"]);
    // The judge knew the plan and found the transcript from the record's `started` entry.
    let started: Value =
        serde_json::from_str(std::fs::read_to_string(&record).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(started["faults"].as_array().map(Vec::len), Some(2), "{started}");
    assert_eq!(started["transcript"], "proxy.ndjson", "relative to the record's folder");
}

/// A body cut in the middle, which the client resumes with a Range request:
/// the record pieces the file together from both bodies, and the output passes
/// (the case may warn: `--no-gzip` misses the SHOULD of asking for gzip).
#[test]
fn the_bare_form_passes_a_client_that_resumes_with_range() {
    let plan = r#"[[fault]]
on = "file"
resource_type = "Observation"
times = 1
fault = { kind = "truncate", fraction = 0.5 }"#;
    let (_dir, record, out, code) = proxied_export(Some(plan), &["--no-gzip"]);
    assert_eq!(code, 0);
    let transcript = procs::transcript(&record.with_file_name("proxy.ndjson"));
    assert!(transcript.iter().any(|e| e["headers"]["range"].is_string()), "the client resumed with Range");
    let (judged, case) = judge_bare(&record, &out, code);
    assert_passes(&case, judged);
}

/// A client that gives up, saying why, on a fatal answer (a 500 `processing`
/// on every poll) failed cleanly: no MUST fails, and whether it could have
/// completed is not judged without a scenario.
#[test]
fn the_bare_form_passes_a_client_that_gives_up_cleanly_on_a_fatal_fault() {
    let plan = r#"[[fault]]
on = "status"
fault = { kind = "respond", status = 500, body = "outcome", code = "processing" }"#;
    let (_dir, record, out, code) = proxied_export(Some(plan), &[]);
    assert_ne!(code, 0, "the client should stop on a fatal answer");
    let (judged, case) = judge_bare(&record, &out, code);
    let checks = verdicts(&case);
    let failed: Vec<_> = checks.iter().filter(|(_, (v, _))| v == "fail").collect();
    assert!(failed.is_empty(), "a clean failure was failed: {failed:#?}");
    assert_eq!((judged, case["verdict"].as_str()), (0, Some("pass")), "{case:#}");
    assert_eq!(checks["outcome.expected"].0, "pass");
    let (verdict, message) = &checks["outcome.recovered"];
    assert!(verdict == "skip" && message.contains("no scenario"), "{verdict}: {message}");
    assert_eq!(checks["output.matches_export"].0, "skip");
}

#[test]
fn without_a_transcript_in_the_record_the_bare_form_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.ndjson");
    let started =
        serde_json::json!({"kind": "started", "fhir_base": "http://p/fhir", "upstream": "http://u/fhir", "seed": 1});
    std::fs::write(&record, format!("{started}\n")).unwrap();
    let output =
        Command::new(BIN).args(["judge", "--proxy-record"]).arg(&record).arg("--out").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("names no transcript") && stderr.contains("--transcript"), "{stderr}");
}

/// A client that stops while the upstream still answers its export as in
/// progress (a job of an hour, no fault; the client is stopped after its
/// second poll, as one with its own deadline stops) spent the time it gives an
/// export: no requirement says how long to wait for a real server, so the
/// bare judge does not fail it for not completing, and says why.
#[test]
fn the_bare_form_does_not_fail_a_client_that_stops_while_the_export_runs() {
    let dir = tempfile::tempdir().unwrap();
    let up = procs::upstream(dir.path(), &["--patients", "10", "--job-duration", "1h"]);
    let (t, record) = (dir.path().join("proxy.ndjson"), dir.path().join("record.ndjson"));
    let args = ["--transcript", t.to_str().unwrap(), "--record", record.to_str().unwrap()];
    let proxy = procs::proxy(&up.server.fhir_base, &args, None, &[]);
    let out = dir.path().join("out");
    let mut client = Command::new(BIN)
        .args(["export", "--fhir-url", &proxy.fhir_base, "--client-id", &up.client_id, "--key"])
        .arg(&up.key)
        .arg("--out")
        .arg(&out)
        .env_remove("BULKMOCK_FHIR_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The proxy writes its transcript live: stop the client once it polled twice.
    let polls = || {
        let text = std::fs::read_to_string(&t).unwrap_or_default();
        // Whole lines only: the last may be half written.
        let lines = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
        lines.filter(|e| e["target"] == "status" && e["status"] == 202).count()
    };
    while polls() < 2 {
        assert!(client.try_wait().unwrap().is_none(), "the client ended on its own while the export ran");
        std::thread::yield_now();
    }
    client.kill().unwrap();
    client.wait().unwrap();
    proxy.stop();
    up.server.stop();
    let (judged, case) = judge_bare(&record, &out, 1);
    let checks = verdicts(&case);
    let failed: Vec<_> = checks.iter().filter(|(_, (v, _))| v == "fail").collect();
    assert!(failed.is_empty(), "a client that stopped while the export ran was failed: {failed:#?}");
    assert_eq!(judged, 0, "{case:#}");
    let (verdict, message) = &checks["outcome.expected"];
    assert_eq!(verdict, "skip", "{message}");
    assert!(message.contains("still answered the export as in progress") && message.contains("-> 202"), "{message}");
}

/// A tiny open Bulk Data server (no authorization, `requiresAccessToken:
/// false`) that sends its files chunked, without `Content-Length`, as the
/// SMART reference server does; its job is complete `job_ms` after the kick-off.
mod chunked {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::{Path, State};
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    pub const TYPES: &[&str] = &["Patient", "Observation"];
    pub const LINES: usize = 40;

    struct Job {
        origin: String,
        job: Duration,
        started: std::sync::Mutex<Option<Instant>>,
    }

    /// Serves on a thread of its own until the test ends; its FHIR base.
    pub fn start(job: Duration) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Job { origin: origin.clone(), job, started: Default::default() });
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = Router::new()
                    .route("/fhir/$export", get(kickoff))
                    .route("/fhir/status/1", get(status).delete(|| async { StatusCode::ACCEPTED }))
                    .route("/fhir/files/{name}", get(file))
                    .with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        format!("{origin}/fhir")
    }

    async fn kickoff(State(job): State<Arc<Job>>) -> Response {
        *job.started.lock().unwrap() = Some(Instant::now());
        let location = format!("{}/fhir/status/1", job.origin);
        (StatusCode::ACCEPTED, [(header::CONTENT_LOCATION, location)]).into_response()
    }

    async fn status(State(job): State<Arc<Job>>) -> Response {
        let started = job.started.lock().unwrap().expect("kicked off");
        if started.elapsed() < job.job {
            return (StatusCode::ACCEPTED, [("retry-after", "1"), ("x-progress", "running")]).into_response();
        }
        let output: Vec<serde_json::Value> = TYPES
            .iter()
            .map(|t| serde_json::json!({"type": t, "url": format!("{}/fhir/files/{t}.ndjson", job.origin), "count": LINES}))
            .collect();
        let manifest = serde_json::json!({
            "transactionTime": "2026-01-01T00:00:00Z",
            "request": format!("{}/fhir/$export", job.origin),
            "requiresAccessToken": false,
            "output": output,
            "error": [],
        });
        ([(header::CONTENT_TYPE, "application/json")], manifest.to_string()).into_response()
    }

    /// A file in chunks of ten lines, streamed: no `Content-Length`.
    async fn file(Path(name): Path<String>) -> Response {
        let ty = name.trim_end_matches(".ndjson").to_string();
        let chunks = (0..LINES / 10).map(move |c| {
            let lines: String = (c * 10..c * 10 + 10)
                .map(|i| format!("{{\"resourceType\":\"{ty}\",\"id\":\"{}-{i}\"}}\n", ty.to_lowercase()))
                .collect();
            Ok::<_, std::io::Error>(Bytes::from(lines))
        });
        let body = Body::from_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()));
        ([(header::CONTENT_TYPE, "application/fhir+ndjson")], body).into_response()
    }
}

/// The reference client through a proxy (`--transcript`, `--record`) in front
/// of the chunked upstream: the temporary folder, the record, the output
/// folder and the client's exit code.
fn chunked_export(job: Duration) -> (tempfile::TempDir, PathBuf, PathBuf, i32) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = chunked::start(job);
    let (t, record) = (dir.path().join("proxy.ndjson"), dir.path().join("record.ndjson"));
    let proxy = procs::proxy(
        &upstream,
        &["--transcript", t.to_str().unwrap(), "--record", record.to_str().unwrap()],
        None,
        &[],
    );
    let out = dir.path().join("out");
    let export = Command::new(BIN)
        .args(["export", "--fhir-url", &proxy.fhir_base, "--out"])
        .arg(&out)
        .env_remove("BULKMOCK_FHIR_URL")
        .env_remove("BULKMOCK_CLIENT_ID")
        .output()
        .unwrap();
    proxy.stop();
    let code = export.status.code().unwrap();
    assert_eq!(code, 0, "the client failed: {}", String::from_utf8_lossy(&export.stderr));
    (dir, record, out, code)
}

/// SMART's reference server sends files chunked (no `Content-Length`): a
/// body the proxy sent to its end is whole, so a client that downloaded every
/// file once passes `files.each_downloaded` (it was failed for every file) and
/// `files.no_needless_redownload`.
#[test]
fn files_sent_chunked_to_their_end_count_as_received_whole() {
    let (_dir, record, out, code) = chunked_export(Duration::ZERO);
    let (judged, case) = judge_bare(&record, &out, code);
    let checks = verdicts(&case);
    assert_eq!(checks["files.each_downloaded"].0, "pass", "{:?}", checks["files.each_downloaded"]);
    assert_eq!(checks["files.no_needless_redownload"].0, "pass", "{:?}", checks["files.no_needless_redownload"]);
    assert_passes(&case, judged);
    let transcript = procs::transcript(&record.with_file_name("proxy.ndjson"));
    let files: Vec<&Value> = transcript.iter().filter(|e| e["target"] == "file").collect();
    assert_eq!(files.len(), chunked::TYPES.len(), "{transcript:#?}");
    for e in &files {
        assert!(e["response"]["content-length"].is_null(), "the file went chunked: {e}");
        assert_eq!(e["body_end"], "complete", "{e}");
    }
}

/// The token rules on files follow the manifest the client got, not the
/// scenario's `[server]` auth: an open upstream (`requiresAccessToken: false`)
/// judged as a case whose mock has authorization on does not fail a client that
/// fetched its files without a token.
#[test]
fn the_token_rule_on_files_follows_the_upstreams_manifest_not_the_scenario() {
    let (dir, record, out, code) = chunked_export(Duration::ZERO);
    let case = case_of("happy/system-export.toml", &[("alg", "RS384"), ("post", "false")]);
    assert!(case.scenario.server.auth, "the scenario's mock has authorization on");
    let t = record.with_file_name("proxy.ndjson");
    let judged = judge(
        &case,
        &out,
        code,
        &["--transcript".as_ref(), t.as_os_str(), "--proxy-record".as_ref(), record.as_os_str()],
        &dir.path().join("scenario.json"),
    );
    let checks = verdicts(&judged);
    let (verdict, message) = &checks["files.token_when_required"];
    assert_eq!(verdict, "skip", "{message}");
    assert!(message.contains("requiresAccessToken: false"), "{message}");
    assert_eq!(
        checks["files.no_token_when_not_required"].0, "pass",
        "{:?}",
        checks["files.no_token_when_not_required"]
    );
}

/// A scenario's `max_seconds` is written for the mock: a client that ended
/// by itself with exit 0 after a real server's job outlasted it (here a case
/// of 1 s, + 5 s grace, and an upstream job of 7 s) was stopped by nobody,
/// and the scenario form of `judge --proxy-record` does not call it a timeout.
#[test]
fn a_client_that_finished_after_a_slow_upstream_job_is_no_timeout() {
    let (dir, record, out, code) = chunked_export(Duration::from_secs(7));
    let scenario = dir.path().join("quick.toml");
    std::fs::write(
        &scenario,
        r#"title = "A system-level export completes within a second on the mock"
description = "The deadline of a mock's pace."
requirements = ["CLI-086"]

[server]
auth = false

[client]
level = "system"

[expect]
max_seconds = 1
"#,
    )
    .unwrap();
    let case = scenario::load_paths(&[scenario]).unwrap().remove(0).cases.remove(0);
    let t = record.with_file_name("proxy.ndjson");
    let judged = judge(
        &case,
        &out,
        code,
        &["--transcript".as_ref(), t.as_os_str(), "--proxy-record".as_ref(), record.as_os_str()],
        &dir.path().join("quick.json"),
    );
    assert_eq!(judged["outcome"]["observed"], "complete", "{judged:#}");
    assert_eq!(judged["verdict"], "pass", "{judged:#}");
    assert!(judged["outcome"]["seconds"].as_f64().unwrap() > 6.0, "the job outlasted the deadline: {judged:#}");
}

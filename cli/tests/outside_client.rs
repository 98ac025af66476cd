//! An outside client through the command adapter: `bulkmock run --client-cmd`
//! with `fixtures/clients/naive/client.py`, a deliberately naive Python client
//! (happy path only). It must pass every MUST of the plain export, in both key
//! algorithms, and be caught exactly where it is naive, check by check.
//!
//! Verdicts only, never message text or timings. Cases are found by id prefix,
//! so matrix values may change; every prefix must match at least one case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

mod common {
    pub mod verdicts;
}

/// The scenarios this test judges (id prefixes, each passed to `--filter`).
const FAMILIES: &[&str] = &[
    "happy/system-export",
    "kickoff/fatal-500",
    "files/truncated-at-line-end",
    "status/retry-after",
    "auth/token-expires-mid-export",
];

/// Whether `program args` runs and succeeds: the program is on PATH.
fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the harness is inside the workspace").to_path_buf()
}

/// The JSON report's cases, and every expectation that did not hold.
struct Report<'a> {
    cases: BTreeMap<&'a str, &'a Value>,
    problems: Vec<String>,
}

impl<'a> Report<'a> {
    /// The cases whose id starts with `prefix` (a problem when there is none).
    fn with_prefix(&mut self, prefix: &str) -> Vec<&'a Value> {
        let found: Vec<&Value> = self.cases.iter().filter(|(id, _)| id.starts_with(prefix)).map(|(_, c)| *c).collect();
        if found.is_empty() {
            self.problems.push(format!("no case id starts with {prefix:?}; cases: {:?}", self.cases.keys()));
        }
        found
    }

    /// Expects check `id` of `case` to have one of `verdicts`.
    fn check(&mut self, case: &Value, id: &str, verdicts: &[&str]) {
        let found = case["checks"].as_array().and_then(|cs| cs.iter().find(|c| c["id"] == id));
        let Some(found) = found else {
            return self.problems.push(format!("{}: no check {id}", case["id"]));
        };
        let verdict = found["verdict"].as_str().unwrap_or("?");
        if !verdicts.contains(&verdict) {
            let evidence = found["evidence"]["message"].as_str().unwrap_or("no evidence");
            self.problems.push(format!("{}: {id} is {verdict}, expected {verdicts:?} ({evidence})", case["id"]));
        }
    }

    /// Expects `case`'s field at `pointer` (`/verdict`, `/outcome/exit_code`) to satisfy `ok`.
    fn field(&mut self, case: &Value, pointer: &str, what: &str, ok: impl Fn(&Value) -> bool) {
        let value = case.pointer(pointer).unwrap_or(&Value::Null);
        if !ok(value) {
            let stderr = case["outcome"]["stderr_tail"].as_str().unwrap_or("").trim();
            let stderr = stderr.lines().last().unwrap_or("");
            self.problems.push(format!("{}: {pointer} is {value}, expected {what} (stderr: {stderr})", case["id"]));
        }
    }
}

#[test]
fn naive_python_client_passes_the_happy_path_and_is_caught_where_it_is_naive() {
    if !available("python3", &["--version"]) || !available("openssl", &["version"]) {
        eprintln!("skipped: python3 and openssl must both be on PATH to run the naive outside client");
        return;
    }
    let root = workspace();
    let script = root.join("fixtures/clients/naive/client.py").canonicalize().expect("the naive client exists");
    // The script's path is literal template text: quote it for `sh`, double its braces for the template.
    let script = script.display().to_string().replace('{', "{{").replace('}', "}}");
    assert!(!script.contains('\''), "the fixture path must not contain a single quote: {script}");
    let command = format!(
        "python3 '{script}' --base {{fhir_base}} --token-url {{token_url}} --client-id {{client_id}} \
         --key {{private_key_pem}} --kid {{kid}} --out {{out_dir}} --level {{level}} --group {{group_id}} \
         --types {{types}}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("result.json");
    let run = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .arg("run")
        .arg(root.join("scenarios"))
        .args(["--client-cmd", &command])
        // It kicks off by GET with _type only, over plain HTTP: cases needing more are not applicable.
        .arg("--client-profile")
        .arg(root.join("fixtures/clients/naive/profile.toml"))
        .arg("--json")
        .arg(&json)
        .args(["--seed", "42"])
        // Only the scenarios judged below: the whole folder takes minutes and keeps growing.
        .args(FAMILIES.iter().flat_map(|f| ["--filter", f]))
        .arg("--work-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // The naive client fails some cases on purpose: exit 1, never 2 (bad input).
    assert_eq!(run.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["seed"], 42);
    assert_eq!(report["client_profile"], "naive fixture client");
    let cases = report["cases"].as_array().expect("cases");
    let mut r = Report { cases: cases.iter().map(|c| (c["id"].as_str().unwrap(), c)).collect(), problems: Vec::new() };

    for case in cases {
        // `error` is the harness failing to run a case; a naive client may well time out, fail or warn.
        r.field(case, "/verdict", "not error", |v| v != "error");
        // Its assertions and token requests are right in both algorithms, whatever else it gets wrong
        // (in every case it was run on).
        if case["verdict"] == "not_applicable" {
            continue;
        }
        for id in ["auth.assertion_header", "auth.assertion_claims", "auth.token_request_form", "auth.fresh_jti"] {
            r.check(case, id, &["pass", "skip"]);
        }
    }

    // The plain export passes every MUST, RS384 and ES384 alike. It warns only
    // where it is naive on purpose: no gzip asked for. A POST case is not
    // applicable: its profile claims GET kick-offs only.
    for case in r.with_prefix("happy/system-export") {
        if case["matrix"]["post"] == "true" {
            r.field(case, "/verdict", "not_applicable", |v| v == "not_applicable");
            r.field(case, "/not_applicable", "naming the POST kick-off", |v| {
                v.as_str().is_some_and(|s| s.contains("POST kick-off"))
            });
            continue;
        }
        r.field(case, "/verdict", "pass or warn", |v| v == "pass" || v == "warn");
        r.field(case, "/outcome/exit_code", "0", |v| v == 0);
        for c in case["checks"].as_array().into_iter().flatten() {
            let id = c["id"].as_str().unwrap_or("?");
            match id {
                "files.accept_gzip" => r.check(case, id, &["warn"]),
                "status.honours_retry_after" => r.check(case, id, &["pass", "skip", "warn"]),
                _ => r.check(case, id, &["pass", "skip", "info"]),
            }
        }
        r.check(case, "output.matches_export", &["pass"]);
        r.check(case, "files.each_downloaded", &["pass"]);
    }

    // A fatal kick-off: exit 1 at once, which is what a client must do.
    for case in r.with_prefix("kickoff/fatal-500") {
        r.field(case, "/outcome/exit_code", "non-zero", |v| v.as_i64().is_some_and(|c| c != 0));
        r.check(case, "outcome.expected", &["pass"]);
    }

    // A file cut at a line end is accepted as is: exit 0 with Observations missing.
    for case in r.with_prefix("files/truncated-at-line-end") {
        r.field(case, "/verdict", "fail", |v| v == "fail");
        r.field(case, "/outcome/exit_code", "0", |v| v == 0);
        r.field(case, "/outcome/output/details/Observation/missing/count", "> 0", |v| {
            v.as_u64().is_some_and(|n| n > 0)
        });
        r.check(case, "output.matches_export", &["fail"]);
    }

    // A fixed 0.2 s poll ignores Retry-After, in both of its forms (a SHOULD: warn).
    for case in r.with_prefix("status/retry-after#") {
        r.field(case, "/verdict", "warn", |v| v == "warn");
        r.check(case, "status.honours_retry_after", &["warn"]);
    }

    // The token expires and is never renewed.
    for case in r.with_prefix("auth/token-expires-mid-export") {
        r.field(case, "/verdict", "fail", |v| v == "fail");
        r.check(case, "auth.token_renewed", &["fail"]);
    }

    // The verdicts, snapshotted: the demonstration that the harness judges an
    // outside program, and which checks catch it (passing and skipped checks left out).
    let verdicts = common::verdicts::of_cases(cases);
    insta::assert_yaml_snapshot!("naive_client_verdicts", verdicts);

    assert!(
        r.problems.is_empty(),
        "{} unexpected verdicts:\n{}\n\nstdout:\n{stdout}",
        r.problems.len(),
        r.problems.join("\n")
    );
}

//! The command adapter as a vendor uses it: a config file rendered per case,
//! every variable in the environment as `BULKMOCK_<NAME>`, values shell-quoted.

use std::path::Path;
use std::sync::Arc;

use bulkmock_harness::adapter::Command;
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_templates_and_environment_reach_the_client() {
    let seen = tempfile::tempdir().unwrap();
    let seen_path = seen.path().display().to_string();
    let config = "{\"base\": \"{fhir_base}\", \"client\": \"{client_id}\", \"key\": \"{private_key_pem}\", \"literal\": \"{{x}}\"}\n";
    // The client copies its config and environment where the test can read them, then fails.
    let command = format!(
        "cp {{config_file}} {seen_path}/config.json; env | grep ^BULKMOCK_ | sort > {seen_path}/env.txt; \
         echo {{types}} > {seen_path}/types.txt; exit 3"
    );
    let adapter = Command::new(&command, Some((config, "client.json.tmpl", "client.json".into()))).unwrap();
    let text = "title = \"t\"\n[server]\npatients = 2\n[client]\nlevel = \"patient\"\ntypes = [\"Patient\", \"Observation\"]\n";
    let file = scenario::parse(text, Path::new("scenarios/selftest/command.toml")).unwrap();
    let options = RunOptions { jobs: 1, ..RunOptions::default() };
    let report = runner::run(file.cases, Arc::new(adapter), &options, &|_| {}).await.unwrap();
    let case = &report.cases[0];
    assert_eq!(case.outcome.exit_code, Some(3));

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seen.path().join("config.json")).unwrap()).unwrap();
    assert!(config["base"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{config}");
    assert!(config["base"].as_str().unwrap().ends_with("/fhir"));
    assert!(config["client"].as_str().unwrap().starts_with("client-"), "{config}");
    // The case folder is gone after the run (not --keep); the path named the key file in it.
    assert!(config["key"].as_str().unwrap().ends_with("/private.pem"), "{config}");
    assert_eq!(config["literal"], "{x}", "doubled braces are literal braces");

    let env = std::fs::read_to_string(seen.path().join("env.txt")).unwrap();
    for name in [
        "BULKMOCK_FHIR_BASE=http://127.0.0.1:",
        "BULKMOCK_OUT_DIR=/",
        "BULKMOCK_LEVEL=patient",
        "BULKMOCK_CONFIG_FILE=/",
    ] {
        assert!(env.lines().any(|l| l.starts_with(name)), "{name} missing from\n{env}");
    }
    assert_eq!(std::fs::read_to_string(seen.path().join("types.txt")).unwrap().trim(), "Patient,Observation");
}

/// Every request parameter reaches the adapter, one variable each and all of
/// them as `request_json`, so no adapter needs to read scenario files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_request_reaches_the_client() {
    let seen = tempfile::tempdir().unwrap();
    let seen_path = seen.path().display().to_string();
    let command = format!(
        "printf '%s' {{request_json}} > {seen_path}/request.json; \
         printf '%s|%s|%s|%s' {{patient}} {{organize_output_by}} {{allow_partial_manifests}} {{prefer}} > {seen_path}/vars.txt; \
         printf '%s' \"$BULKMOCK_INCLUDE_ASSOCIATED_DATA\" > {seen_path}/env.txt; exit 3"
    );
    let adapter = Command::new(&command, None).unwrap();
    let text = "title = \"t\"\n[server]\npatients = 2\n[client]\nlevel = \"patient\"\n\
                patients = [\"Patient/a\", \"Patient/b\"]\ninclude_associated_data = [\"LatestProvenanceResources\"]\n\
                organize_output_by = \"Patient\"\nallow_partial_manifests = true\nseparate_export_status = true\n";
    let file = scenario::parse(text, Path::new("scenarios/selftest/request.toml")).unwrap();
    let options = RunOptions { jobs: 1, ..RunOptions::default() };
    let report = runner::run(file.cases, Arc::new(adapter), &options, &|_| {}).await.unwrap();
    assert_eq!(report.cases[0].outcome.exit_code, Some(3));

    let read = |name: &str| std::fs::read_to_string(seen.path().join(name)).unwrap();
    let request: serde_json::Value = serde_json::from_str(&read("request.json")).unwrap();
    assert_eq!(request["patient"], serde_json::json!(["Patient/a", "Patient/b"]));
    assert_eq!(request["kickoff_method"], "POST");
    assert_eq!(request["organize_output_by"], "Patient");
    assert_eq!(request["allow_partial_manifests"], true);
    assert_eq!(request["since"], serde_json::Value::Null);
    assert_eq!(read("vars.txt"), "Patient/a,Patient/b|Patient|true|respond-async, separate-export-status");
    assert_eq!(read("env.txt"), "LatestProvenanceResources");
}

/// A client stopped at its deadline keeps what it said on both streams: the
/// evidence of a timeout is what the client was doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_client_keeps_its_stdout_and_stderr() {
    let adapter = Command::new("echo polling the status URL; echo waiting 60 s >&2; sleep 30", None).unwrap();
    let text = "title = \"t\"\n[server]\npatients = 2\n[client]\nlevel = \"patient\"\n[expect]\nmax_seconds = 0.5\n";
    let file = scenario::parse(text, Path::new("scenarios/selftest/slow.toml")).unwrap();
    let options = RunOptions { jobs: 1, grace: std::time::Duration::ZERO, ..RunOptions::default() };
    let report = runner::run(file.cases, Arc::new(adapter), &options, &|_| {}).await.unwrap();
    let case = &report.cases[0];
    assert_eq!(case.verdict, bulkmock_harness::report::CaseVerdict::Timeout);
    assert_eq!(case.outcome.stdout_tail, "polling the status URL");
    assert_eq!(case.outcome.stderr_tail, "waiting 60 s");
    assert_eq!((report.summary.timeouts, report.summary.errors), (1, 0), "a timeout is counted once, as a timeout");
}

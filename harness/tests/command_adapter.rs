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

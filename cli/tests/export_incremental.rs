//! `bulkmock export --incremental`: the first run fills the folder, a later one
//! asks for `_since` = the kept manifest's `transactionTime` (CLI-054) and
//! applies the changes and deletions (CLI-087): the folder then holds exactly
//! the server's data at its new revision. A failed run leaves the folder as it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use bulkmock_server::MockServer;
use bulkmock_server::data::revision::REVISION0_END;
use bulkmock_server::export::expected::revision_state;
use bulkmock_server::export::plan::Level;
use serde_json::Value;

/// The resources of a folder's `{Type}.ndjson` files by (type, id).
fn state_of(dir: &Path) -> BTreeMap<(String, String), Value> {
    let mut state = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let key = (v["resourceType"].as_str().unwrap().to_string(), v["id"].as_str().unwrap().to_string());
            assert!(state.insert(key.clone(), v).is_none(), "{key:?} twice");
        }
    }
    state
}

fn expected(server: &MockServer, revision: u64) -> BTreeMap<(String, String), Value> {
    revision_state(server.data_at(revision).as_ref(), Level::System)
        .unwrap()
        .into_iter()
        .map(|(k, line)| (k, serde_json::from_slice(&line).unwrap()))
        .collect()
}

fn transaction_time(dir: &Path) -> String {
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["transactionTime"].as_str().unwrap().to_string()
}

#[test]
fn incremental_runs_keep_the_folder_equal_to_the_servers_current_revision() {
    let server = MockServer::builder()
        .patients(20)
        .resources_per_file(80)
        .job_duration(std::time::Duration::ZERO)
        .revision_epoch(REVISION0_END + 3600)
        .try_start()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("bulkmock-export-incremental-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("private.pem");
    std::fs::write(&pem, &server.client_key().private_pem).unwrap();
    let state = dir.join("state");
    let export = |extra: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_bulkmock"))
            .args(["export", "--fhir-url", server.fhir_base(), "--client-id", server.client_id()])
            .args(["--key", pem.to_str().unwrap()])
            // `--kid=`: a random kid may start with `-`, which clap would take for a flag.
            .arg(format!("--kid={}", server.client_key().kid))
            .args(["--incremental", "--out", state.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = |out: &Output| assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The first run: a full export.
    let first = export(&[]);
    ok(&first);
    assert_eq!(state_of(&state), expected(&server, 0));
    let t0 = transaction_time(&state);

    // Two revisions later: only the changes are fetched, and applied.
    server.set_revision(2);
    let second = export(&[]);
    ok(&second);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("changes since {t0} applied")), "{stderr}");
    let kickoffs: Vec<String> =
        server.transcript().into_iter().filter(|e| e.path.ends_with("$export")).filter_map(|e| e.query).collect();
    assert_eq!(kickoffs.len(), 2);
    assert!(!kickoffs[0].contains("_since"), "the first run is a full export: {}", kickoffs[0]);
    let second_query = reqwest::Url::parse(&format!("http://kickoff/?{}", kickoffs[1])).unwrap();
    let since = second_query.query_pairs().find(|(k, _)| k == "_since").map(|(_, v)| v.into_owned());
    assert_eq!(since.as_deref(), Some(t0.as_str()), "_since is the kept transactionTime, not the client's clock");
    let want = expected(&server, 2);
    assert_ne!(want, expected(&server, 0), "revision 2 changed the data");
    assert!(state_of(&state) == want, "the folder holds exactly revision 2");
    assert!(transaction_time(&state) > t0, "the kept manifest moved on");
    assert!(!state.join(".incremental").exists(), "nothing left over");

    // A run that fails (the server refuses the kick-off) changes nothing.
    server.set_revision(3);
    let before = std::fs::read(state.join("manifest.json")).unwrap();
    let failed = export(&["--type", "Spaceship"]);
    assert_eq!(failed.status.code(), Some(4), "{}", String::from_utf8_lossy(&failed.stderr));
    assert!(state_of(&state) == want, "the folder still holds revision 2");
    assert_eq!(std::fs::read(state.join("manifest.json")).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

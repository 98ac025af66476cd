//! Incremental pulls against data that changes (issue 14, item 1): a full
//! export at revision 0, the server advances, an export with `_since` = the
//! first manifest's `transactionTime` (CLI-054) applied with its deletions
//! (CLI-087) ends in exactly the server's revision-n state; for a Group, with
//! joined members fetched with `patient` and departed ones dropped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bulkmock_client::{ExportRequest, Level, incremental};
use bulkmock_server::MockServer;
use bulkmock_server::data::revision::REVISION0_END;
use bulkmock_server::export::expected::revision_state;
use bulkmock_server::export::plan::Level as ServerLevel;
use common::*;
use serde_json::Value;

/// The resources of a state folder by (type, id).
fn state_of(dir: &Path) -> BTreeMap<(String, String), Value> {
    let mut state = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".ndjson") || name.starts_with('.') {
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

fn expected(server: &MockServer, revision: u64, level: ServerLevel) -> BTreeMap<(String, String), Value> {
    revision_state(server.data_at(revision).as_ref(), level)
        .unwrap()
        .into_iter()
        .map(|(k, line)| (k, serde_json::from_slice(&line).unwrap()))
        .collect()
}

async fn server(patients: u64) -> MockServer {
    MockServer::builder().patients(patients).resources_per_file(80).revision_epoch(REVISION0_END + 3600).start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_export_plus_an_incremental_one_ends_in_exactly_revision_n() {
    let server = server(40).await;
    let client = client(&server).await;
    let state = out_dir("incremental-state");
    let full = client.export(&ExportRequest::new(Level::System), &state).await.unwrap();
    assert_eq!(state_of(&state), expected(&server, 0, ServerLevel::System));

    server.set_revision(2);
    let delta = out_dir("incremental-delta");
    let mut request = ExportRequest::new(Level::System);
    request.since = Some(full.transaction_time.clone());
    let summary = client.export(&request, &delta).await.unwrap();
    assert!(summary.transaction_time > full.transaction_time);
    let applied = incremental::apply(&state, &delta).unwrap();
    assert!(applied.upserted > 0 && applied.deleted > 0, "{applied:?}");
    let got = state_of(&state);
    let want = expected(&server, 2, ServerLevel::System);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the client's state equals revision 2 exactly");
    assert_ne!(want, expected(&server, 0, ServerLevel::System), "revision 2 differs from revision 0");
}

/// The member references of a Group, read over HTTP as a client would.
async fn members(server: &MockServer, id: &str) -> BTreeSet<String> {
    let token = server.issue_token("system/*.rs");
    let group: Value = reqwest::Client::new()
        .get(format!("{}/Group/{id}", server.fhir_base()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["entity"]["reference"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_kept_up_to_date_across_membership_changes_ends_in_exactly_revision_n() {
    let server = server(150).await;
    let client = client(&server).await;
    let group = Level::Group("diabetes-cohort".into());
    let level = ServerLevel::Group("diabetes-cohort".into());
    let state = out_dir("incremental-group-state");
    let before = members(&server, "diabetes-cohort").await;
    let full = client.export(&ExportRequest::new(group.clone()), &state).await.unwrap();
    assert_eq!(state_of(&state), expected(&server, 0, level.clone()));

    server.set_revision(8);
    let after = members(&server, "diabetes-cohort").await;
    let joined: Vec<String> = after.difference(&before).cloned().collect();
    let left: Vec<String> = before.difference(&after).cloned().collect();
    assert!(!left.is_empty(), "members left");
    let mut request = ExportRequest::new(group.clone());
    request.since = Some(full.transaction_time.clone());
    let delta = out_dir("incremental-group-delta");
    client.export(&request, &delta).await.unwrap();
    incremental::apply(&state, &delta).unwrap();

    let existing_joined: Vec<String> = joined
        .iter()
        .filter(|r| server.data().patient_index(r.trim_start_matches("Patient/")).is_some())
        .cloned()
        .collect();
    assert!(!existing_joined.is_empty(), "patients of revision 0 joined");
    let mut request = ExportRequest::new(group);
    request.patients = joined.clone();
    request.post = true;
    let newcomers = out_dir("incremental-group-joined");
    client.export(&request, &newcomers).await.unwrap();
    incremental::apply(&state, &newcomers).unwrap();
    assert!(incremental::remove_patients(&state, &left).unwrap() > 0);

    assert!(state_of(&state) == expected(&server, 8, level), "the client's Group state equals revision 8 exactly");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_keeps_a_group_folder_at_exactly_each_revision() {
    let server = server(150).await;
    let client = client(&server).await;
    let request = ExportRequest::new(Level::Group("diabetes-cohort".into()));
    let level = ServerLevel::Group("diabetes-cohort".into());
    let state = out_dir("update-group-state");
    let first = client.update(&request, &state).await.unwrap();
    assert!(first.since.is_none(), "the first update is a full export");
    assert_eq!(state_of(&state), expected(&server, 0, level.clone()));
    let (mut joined, mut left) = (0, 0);
    let mut since = first.summary.transaction_time.clone();
    for revision in [4, 8] {
        server.set_revision(revision);
        let updated = client.update(&request, &state).await.unwrap();
        assert_eq!(updated.since.as_deref(), Some(since.as_str()), "_since is the kept transactionTime (CLI-054)");
        since = updated.summary.transaction_time.clone();
        (joined, left) = (joined + updated.joined.len(), left + updated.left.len());
        assert!(
            state_of(&state) == expected(&server, revision, level.clone()),
            "the folder equals revision {revision}"
        );
    }
    assert!(joined > 0 && left > 0, "members joined ({joined}) and left ({left})");
    assert!(!state.join(".incremental").exists() && !state.join(".incremental-joined").exists());
}

//! The client against the mock: a clean export, recoverable faults it must
//! survive with the exact data, fatal ones it must report without hammering.

use std::time::Duration;

use bulkmock_client::{Client, ClientError, Credentials, ExportRequest, Level, Policy};
use bulkmock_server::{BodyKind, Fault, FaultRule, MockServer, Target, Trigger};

fn fast() -> Policy {
    Policy { min_wait: Duration::from_millis(10), max_wait: Duration::from_secs(2), ..Policy::default() }
}

async fn client(server: &MockServer) -> Client {
    let key = server.client_key();
    let credentials =
        Credentials::from_pem(server.client_id(), key.private_pem.as_bytes(), &key.kid, "system/*.rs").unwrap();
    Client::new(server.fhir_base(), Some(credentials), fast()).await.unwrap()
}

fn out_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkmock-client-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Non-deleted resources of `ty` in the data set (every patient).
fn expected(server: &MockServer, ty: &str) -> u64 {
    let data = server.data();
    let t = data.type_index(ty).unwrap();
    let indices: Vec<u64> = if data.types()[t].in_patient_compartment {
        (0..data.patient_count()).flat_map(|p| data.patient_resources(t, p)).collect()
    } else {
        (0..data.standalone_count(t)).collect()
    };
    indices.into_iter().filter(|&i| !data.header(t, i).deleted).count() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_system_export_downloads_exactly_the_data_set() {
    let server = MockServer::builder().patients(20).start().await;
    let out = out_dir("clean");
    let summary = client(&server).await.export(&ExportRequest::new(Level::System), &out).await.unwrap();
    for (ty, n) in &summary.resources {
        assert_eq!(*n, expected(&server, ty), "{ty}");
        let lines = std::fs::read_to_string(out.join(format!("{ty}.ndjson"))).unwrap().lines().count() as u64;
        assert_eq!(lines, *n, "{ty} file");
    }
    assert_eq!(summary.resources.len(), 21);
    assert!(out.join("manifest.json").exists());
    assert_eq!(server.live_jobs(), 0, "the job was deleted after the download");
}

#[tokio::test(flavor = "multi_thread")]
async fn recoverable_faults_still_give_the_exact_export() {
    let transient = Fault::respond(503, BodyKind::Transient).with_retry_after_s(0);
    let server = MockServer::builder()
        .patients(30)
        .fault(
            FaultRule::new(
                Target::Kickoff,
                Fault::respond(429, BodyKind::Outcome).with_code("throttled").with_retry_after_s(0),
            )
            .times(1),
        )
        .fault(FaultRule::new(Target::Status, transient.clone()).times(2))
        .fault(
            FaultRule::new(
                Target::File,
                Fault::Truncate { after_bytes: Some(5000), fraction: None, at_line_end: false },
            )
            .resource_type("Observation")
            .times(1),
        )
        .fault(FaultRule::new(Target::File, Fault::Reset { after_bytes: 3000 }).resource_type("Encounter").times(1))
        .fault(FaultRule::new(Target::File, transient).resource_type("Condition").times(2))
        .fault(FaultRule::new(Target::File, Fault::Revoke).when(Trigger::Nth(5)))
        .start()
        .await;
    let out = out_dir("faults");
    let c = client(&server).await;
    let summary = c.export(&ExportRequest::new(Level::Patient), &out).await.unwrap();
    for ty in ["Observation", "Encounter", "Condition", "Patient"] {
        assert_eq!(summary.resources[ty], expected(&server, ty), "{ty}: nothing lost or duplicated");
    }
    let observations = std::fs::read_to_string(out.join("Observation.ndjson")).unwrap();
    let ids: std::collections::HashSet<String> = observations
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len() as u64, expected(&server, "Observation"), "no duplicate lines after the resume");
    let fired = server.transcript().iter().filter(|e| e.fault.is_some()).count();
    assert!(fired >= 8, "every fault happened on the wire: {fired}");
    assert!(summary.retries >= 5, "retries counted: {}", summary.retries);
    assert!(c.token_requests() >= 2, "a revoked token was renewed");
}

#[tokio::test(flavor = "multi_thread")]
async fn fatal_failures_stop_with_the_servers_reason() {
    let server = MockServer::builder().patients(2).start().await;
    let mut request = ExportRequest::new(Level::System);
    request.types = vec!["Spaceship".into()];
    let err = client(&server).await.kick_off(&request).await.unwrap_err();
    match &err {
        ClientError::Outcome { status: 400, outcome, .. } => assert!(outcome.message().contains("Spaceship"), "{err}"),
        other => panic!("expected the OperationOutcome, got {other:?}"),
    }

    let fatal = Fault::respond(500, BodyKind::Outcome).with_code("processing").with_message("export failed");
    let server = MockServer::builder().patients(2).fault(FaultRule::new(Target::Status, fatal)).start().await;
    let err = client(&server).await.export(&ExportRequest::new(Level::System), &out_dir("fatal")).await.unwrap_err();
    assert!(err.to_string().contains("export failed"), "{err}");
    let polls = server.transcript().iter().filter(|e| e.path.contains("bulkstatus")).count();
    assert_eq!(polls, 1, "a fatal status is not retried");

    let broken = Fault::Content { mutation: bulkmock_server::faults::model::ContentMutation::MalformedLine, line: 2 };
    let server = MockServer::builder()
        .patients(3)
        .fault(FaultRule::new(Target::File, broken).resource_type("Patient"))
        .start()
        .await;
    let mut request = ExportRequest::new(Level::System);
    request.types = vec!["Patient".into()];
    let err = client(&server).await.export(&request, &out_dir("broken")).await.unwrap_err();
    assert!(matches!(err, ClientError::Integrity { .. }), "a damaged line is never accepted: {err}");
}

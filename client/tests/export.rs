//! The client against a well-behaved mock: exact output, every level and
//! parameter path, parallel and gzip, partial manifests, resuming a job.

mod common;

use std::sync::{Arc, Mutex};

use bulkmock_client::{Client, ClientError, Credentials, Event, ExportRequest, Level};
use bulkmock_server::{KeyAlg, MockServer};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_system_export_downloads_exactly_the_data_set() {
    let server = server().await;
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let out = out_dir("clean");
    let client = client_with(&server, 4, true, log.clone()).await;
    let summary = client.export(&ExportRequest::new(Level::System), &out).await.unwrap();
    assert_eq!(summary.resources.len(), 21);
    assert_whole_data_set(&server, &summary, &out);
    let manifest: bulkmock_wire::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(summary.files as usize, manifest.output.len() + manifest.error.len());
    assert!(manifest.output.len() > 21, "several files per type were merged: {}", manifest.output.len());
    assert!(!out.join(".parts").exists(), "no leftovers");
    assert_eq!(server.live_jobs(), 0, "the job was deleted after the download (CLI-100)");
    assert_eq!(summary.retries, 0);

    let events = log.lock().unwrap();
    assert!(matches!(events.iter().find(|e| matches!(e, Event::KickedOff { .. })), Some(Event::KickedOff { .. })));
    let done = events.iter().filter(|e| matches!(e, Event::FileDone { .. })).count();
    assert_eq!(done as u64, summary.files, "one FileDone per file");
    assert!(matches!(events.last(), Some(Event::Deleted { .. })));

    let files = server.transcript().into_iter().filter(|e| e.path.contains("bulkfiles")).collect::<Vec<_>>();
    assert!(files.iter().all(|e| e.headers.get("accept-encoding").map(String::as_str) == Some("gzip")), "CLI-083");
    assert!(files.iter().all(|e| e.headers.get("accept").map(String::as_str) == Some("application/fhir+ndjson")));
    assert!(files.iter().all(|e| e.headers.contains_key("authorization")), "requiresAccessToken=true (CLI-081)");
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_parallel_downloads_give_the_same_bytes_as_plain_sequential_ones() {
    let server = server().await;
    let request = ExportRequest::new(Level::Patient);
    let plain = baseline(&server, &request, "plain").await;
    let out = out_dir("gzip-parallel");
    let summary = client_with(&server, 8, true, Arc::default()).await.export(&request, &out).await.unwrap();
    assert_eq!(files(&out), plain);
    let transcript = server.transcript();
    let gzip = transcript.iter().filter(|e| e.path.contains("bulkfiles") && e.headers["accept-encoding"] == "gzip");
    assert_eq!(gzip.count() as u64, summary.files, "the second run asked for gzip for every file");
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_manifests_and_separate_export_status_give_the_same_export() {
    let server = MockServer::builder()
        .patients(12)
        .resources_per_file(40)
        .manifest_page_size(4)
        .job_duration(std::time::Duration::from_millis(300))
        .start()
        .await;
    let expected = baseline(&server, &ExportRequest::new(Level::System), "pages").await;
    let mut request = ExportRequest::new(Level::System);
    request.allow_partial_manifests = true;
    request.separate_export_status = true;
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let out = out_dir("pages");
    let from = mark(&server);
    let summary = client_with(&server, 3, true, log.clone()).await.export(&request, &out).await.unwrap();
    assert_eq!(files(&out), expected);
    let pages = server.transcript().iter().filter(|e| e.seq >= from && e.path.contains("/page/")).count();
    assert!(pages >= 2, "link next was followed: {pages} page requests");
    let manifest: bulkmock_wire::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.link.is_empty(), "the saved manifest is the merged whole");
    assert_eq!(manifest.output.len() + manifest.error.len(), summary.files as usize);
    let kickoff = server.transcript().into_iter().find(|e| e.seq >= from && e.path.ends_with("$export")).unwrap();
    assert_eq!(kickoff.headers["prefer"], "respond-async, separate-export-status");
    let pages_seen = log.lock().unwrap().iter().filter(|e| matches!(e, Event::Manifest { .. })).count();
    assert!(pages_seen >= 2, "{pages_seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_resumed_by_its_status_url_from_another_client() {
    let server = server().await;
    let request = ExportRequest::new(Level::System);
    let expected = baseline(&server, &request, "resume").await;
    let job = client(&server).await.kick_off(&request).await.unwrap();
    let status_url = job.status_url().to_string();
    drop(job);
    let out = out_dir("resume");
    let later = client(&server).await;
    let summary = later.job(&status_url).download(&out).await.unwrap();
    assert_eq!(files(&out), expected);
    assert_eq!(summary.status_url, status_url);
    later.job(&status_url).delete().await.unwrap();
    assert_eq!(server.live_jobs(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn post_kickoff_sends_typed_parameters_and_the_server_applies_them() {
    let server = server().await;
    let mut request = ExportRequest::new(Level::Group("diabetes-cohort".into()));
    request.types = vec!["Patient".into(), "Condition".into()];
    request.since = Some("2000-01-01T00:00:00Z".into());
    request.post = true;
    let out = out_dir("post");
    let from = mark(&server);
    let summary = client(&server).await.export(&request, &out).await.unwrap();
    assert_eq!(summary.resources.keys().collect::<Vec<_>>(), ["Condition", "Patient"]);
    let kickoff = server.transcript().into_iter().find(|e| e.seq >= from && e.path.ends_with("$export")).unwrap();
    assert_eq!(kickoff.method, "POST");
    assert_eq!(kickoff.headers["content-type"], "application/fhir+json");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_jwks_sign_rs384_and_es384() {
    for alg in [KeyAlg::Rs384, KeyAlg::Es384] {
        let server = MockServer::builder().patients(2).client_alg(alg).start().await;
        let key = server.client_key();
        let credentials = Credentials::from_jwk(server.client_id(), &key.private_jwk, "system/Patient.rs").unwrap();
        assert_eq!(format!("{:?}", credentials.algorithm()), alg.name());
        let client = Client::builder(server.fhir_base()).credentials(credentials).policy(fast()).build().await.unwrap();
        let mut request = ExportRequest::new(Level::Patient);
        request.types = vec!["Patient".into()];
        let summary = client.export(&request, &out_dir(&format!("jwk-{}", alg.name()))).await.unwrap();
        assert_eq!(summary.resources["Patient"], 2, "{alg:?}");
        let token = server.transcript().into_iter().find(|e| e.assertion.is_some()).unwrap();
        assert_eq!(token.assertion.unwrap()["header"]["alg"], alg.name());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_folder_holding_an_export_is_left_alone() {
    let server = MockServer::builder().patients(2).start().await;
    let out = out_dir("twice");
    let c = client(&server).await;
    let mut request = ExportRequest::new(Level::System);
    request.types = vec!["Patient".into()];
    c.export(&request, &out).await.unwrap();
    let before = files(&out);
    let from = mark(&server);
    let err = c.export(&request, &out).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert_eq!(files(&out), before, "nothing changed");
    assert_eq!(requests(&server, from, "$export"), 0, "no job was started");
}

#[tokio::test(flavor = "multi_thread")]
async fn type_filters_are_checked_against_the_capability_statement_before_the_kick_off() {
    let server = server().await;
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let client = client_with(&server, 1, false, log.clone()).await;
    // `category` is listed for Observation (CLI-049): nothing to report, and the
    // CapabilityStatement is read before the kick-off.
    let mut request = ExportRequest::new(Level::System);
    request.types = vec!["Observation".into()];
    request.type_filters = vec!["Observation?category=laboratory".into()];
    client.export(&request, &out_dir("type-filter-listed")).await.unwrap();
    assert!(!log.lock().unwrap().iter().any(|e| matches!(e, Event::TypeFilterUnsupported { .. })));
    let transcript = server.transcript();
    let metadata = transcript.iter().position(|e| e.path.ends_with("/metadata")).expect("metadata read");
    let kickoff = transcript.iter().position(|e| e.path.ends_with("$export")).unwrap();
    assert!(metadata < kickoff, "the CapabilityStatement is read before the kick-off");

    // `colour` is listed for no type: reported by name, and the server's answer decides.
    let mut request = ExportRequest::new(Level::System);
    request.types = vec!["Observation".into()];
    request.type_filters = vec!["Observation?colour=red&code=1234-5".into()];
    let error = client.export(&request, &out_dir("type-filter-unlisted")).await.unwrap_err();
    assert!(matches!(error, ClientError::Outcome { .. }), "{error}");
    let events = log.lock().unwrap();
    let reported: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::TypeFilterUnsupported { .. })).collect();
    assert_eq!(
        reported,
        [&Event::TypeFilterUnsupported {
            filter: "Observation?colour=red&code=1234-5".into(),
            parameter: "colour".into()
        }]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_organized_by_patient_agrees_with_the_manifest_counts() {
    // SRV-160, CLI-089, CLI-092: the manifest counts resources, not the block
    // headers, and the client counts the lines it receives the same way.
    let server = MockServer::builder().patients(4).resources_per_file(10).start().await;
    let mut request = ExportRequest::new(Level::Patient);
    request.types = vec!["Patient".into(), "Condition".into()];
    request.organize_output_by = Some("Patient".into());
    let out = out_dir("organized");
    let summary = client(&server).await.export(&request, &out).await.expect("counts agree");
    let total: u64 = summary.resources.values().sum();
    assert_eq!(total, 4 + expected_count(&server, "Condition"), "{:?}", summary.resources);
}

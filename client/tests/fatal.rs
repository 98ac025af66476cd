//! Fatal faults: the client stops with a clear, typed error, in bounded time,
//! without hammering the server (requests counted from the transcript), and
//! leaves no data files in the output folder.

mod common;

use bulkmock_client::{ClientError, ExportRequest, Level};
use bulkmock_server::faults::model::{ContentMutation, GzipMode, ManifestVariant};
use bulkmock_server::{BodyKind, Fault, FaultRule, MockServer, Target};
use common::*;

/// Exports with `rules` in place; returns the error and the output folder.
async fn fails(server: &MockServer, rules: Vec<FaultRule>, tag: &str) -> (ClientError, std::path::PathBuf) {
    for rule in rules {
        server.faults().add(rule);
    }
    let out = out_dir(tag);
    let err = client(server).await.export(&ExportRequest::new(Level::System), &out).await.unwrap_err();
    assert!(files(&out).is_empty(), "{tag}: no data files after a failure");
    (err, out)
}

fn file(ty: &str, fault: Fault) -> FaultRule {
    FaultRule::new(Target::File, fault).resource_type(ty)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_kickoff_reports_the_operation_outcome() {
    let server = server().await;
    let mut request = ExportRequest::new(Level::System);
    request.types = vec!["Spaceship".into()];
    let err = client(&server).await.export(&request, &out_dir("kickoff-400")).await.unwrap_err();
    match &err {
        ClientError::Outcome { status: 400, outcome, .. } => assert!(outcome.message().contains("Spaceship"), "{err}"),
        other => panic!("expected the OperationOutcome, got {other:?}"),
    }
    assert_eq!(requests(&server, 0, "$export"), 1, "a 400 is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_request_is_retried_once_then_reported() {
    let server = server().await;
    let refused = Fault::respond(401, BodyKind::Oauth).with_code("invalid_client").with_message("key not registered");
    let (err, _) = fails(&server, vec![FaultRule::new(Target::Token, refused)], "token").await;
    match &err {
        ClientError::OAuth { status: 401, error, description } => {
            assert_eq!(error, "invalid_client");
            assert!(description.contains("key not registered"));
        }
        other => panic!("expected the OAuth error, got {other:?}"),
    }
    // invalid_client is tried once more with a fresh assertion (a server may have
    // reported a replayed jti or failed to fetch the JWKS), then reported: no loop (CLI-028).
    assert_eq!(requests(&server, 0, "token"), 2, "one retry at most at the token endpoint (CLI-028)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_stays_unauthorised_is_renewed_once_then_reported() {
    let server = server().await;
    let unauthorised = Fault::respond(401, BodyKind::Outcome).with_code("login");
    let (err, _) = fails(&server, vec![FaultRule::new(Target::Status, unauthorised)], "401").await;
    assert!(matches!(err, ClientError::Outcome { status: 401, .. }), "{err}");
    assert_eq!(requests(&server, 0, "bulkstatus"), 2, "one retry with a new token");
    assert_eq!(requests(&server, 0, "token"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_reported_after_one_poll() {
    let server = server().await;
    let failed = Fault::respond(500, BodyKind::Outcome).with_code("processing").with_message("export failed");
    let (err, _) = fails(&server, vec![FaultRule::new(Target::Status, failed)], "job-500").await;
    assert!(err.to_string().contains("export failed"), "{err}");
    assert_eq!(requests(&server, 0, "bulkstatus"), 1, "a fatal status is not retried (CLI-066)");
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_transient_errors_end_after_the_attempt_limit() {
    let server = server().await;
    let busy = Fault::respond(503, BodyKind::Transient).with_retry_after_s(0);
    let (err, _) = fails(&server, vec![FaultRule::new(Target::Status, busy)], "endless-503").await;
    assert!(matches!(&err, ClientError::Exhausted { attempts: 6, .. }), "{err}");
    assert_eq!(requests(&server, 0, "bulkstatus"), 6, "exactly the policy's attempts");

    let other = common::server().await;
    let busy = Fault::respond(503, BodyKind::Transient).with_retry_after_s(0);
    let server = other;
    let (err, _) = fails(&server, vec![file("Patient", busy)], "endless-file-503").await;
    assert!(matches!(&err, ClientError::Exhausted { attempts: 6, .. }), "{err}");
    let patient_files = server.transcript().iter().filter(|e| e.path.ends_with("Patient.ndjson")).count();
    assert!(patient_files <= 6 * 2, "bounded: {patient_files}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_job_is_reported() {
    let server = server().await;
    let (err, _) = fails(&server, vec![FaultRule::new(Target::Status, Fault::Vanish)], "vanish").await;
    assert!(matches!(err, ClientError::Outcome { status: 404, .. }), "{err}");
    assert_eq!(requests(&server, 0, "bulkstatus"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_lines_are_never_accepted() {
    let cases = [
        (ContentMutation::MalformedLine, "line 2 is not valid JSON"),
        (ContentMutation::WrongType, "line 2 is a"),
        (ContentMutation::InvalidUtf8, "not UTF-8"),
        (ContentMutation::DuplicateLine, "count says"),
        (ContentMutation::DuplicateAcrossFiles, "count says"),
    ];
    for (mutation, expected) in cases {
        let server = server().await;
        let tag = format!("{mutation:?}");
        let (err, _) = fails(&server, vec![file("Observation", Fault::Content { mutation, line: 2 })], &tag).await;
        match &err {
            ClientError::Integrity { problem, url } => {
                assert!(problem.contains(expected), "{tag}: {problem}");
                assert!(url.contains("Observation"), "{tag}: the error names the file");
            }
            other => panic!("{tag}: expected an integrity error, got {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_manifests_are_reported() {
    let cases = [
        (ManifestVariant::NotJson, "not JSON"),
        (ManifestVariant::OutputMissing, "no `output`"),
        (ManifestVariant::WrongCount, "count says"),
    ];
    for (variant, expected) in cases {
        let server = server().await;
        let tag = format!("{variant:?}");
        let (err, _) = fails(&server, vec![FaultRule::new(Target::Status, Fault::Manifest { variant })], &tag).await;
        assert!(err.to_string().contains(expected), "{tag}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_without_content_encoding_is_reported() {
    let server = server().await;
    let (err, _) =
        fails(&server, vec![file("Patient", Fault::Gzip { mode: GzipMode::NoHeader })], "gzip-no-header").await;
    assert!(err.to_string().contains("Content-Encoding does not say gzip"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_loop_across_hosts_fails_without_leaking_the_token() {
    let server = server().await;
    // `capability = false`: every request is sent to the bare URL on the other
    // host, which redirects again; no correct client can finish.
    let bare = Fault::Redirect { host: None, capability: false, ttl_s: 300 };
    let (err, _) = fails(&server, vec![file("Patient", bare)], "redirect").await;
    assert!(err.to_string().contains("redirected more than 5 times"), "{err}");
    let base_host = url::Url::parse(server.fhir_base()).unwrap().host_str().unwrap().to_string();
    let transcript = server.transcript();
    let elsewhere: Vec<_> = transcript.iter().filter(|e| !e.headers["host"].starts_with(&base_host)).collect();
    assert!(!elsewhere.is_empty() && elsewhere.len() <= 6, "bounded: {}", elsewhere.len());
    assert!(elsewhere.iter().all(|e| !e.headers.contains_key("authorization")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_whose_bytes_do_not_match_the_manifest_sha256_is_reported() {
    let server = MockServer::builder().patients(12).resources_per_file(40).file_digests().start().await;
    let mismatch = Fault::Manifest { variant: ManifestVariant::Sha256Mismatch };
    let (err, _) = fails(&server, vec![FaultRule::new(Target::Status, mismatch)], "sha256").await;
    match &err {
        ClientError::Integrity { problem, .. } => assert!(problem.contains("SHA-256"), "{err}"),
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

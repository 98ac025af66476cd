//! Every recoverable fault family: the client must finish with output byte for
//! byte equal to a clean export from the same server (nothing missing,
//! duplicated or corrupted). Each case runs a clean export first, then adds the
//! fault rules and exports again (`assert_recovers`).

mod common;

use std::sync::{Arc, Mutex};

use bulkmock_client::{Client, Credentials, Event, ExportRequest, Level};
use bulkmock_server::faults::model::{ContentMutation, ExpiresIn, GzipMode, ManifestVariant, RangeMode};
use bulkmock_server::{BodyKind, Fault, FaultRule, MockServer, Target, Trigger};
use common::*;

fn on(target: Target, fault: Fault) -> FaultRule {
    FaultRule::new(target, fault)
}

fn file(ty: &str, fault: Fault) -> FaultRule {
    FaultRule::new(Target::File, fault).resource_type(ty)
}

fn transient(status: u16) -> Fault {
    Fault::respond(status, BodyKind::Transient).with_retry_after_s(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_kickoff_is_retried_after_retry_after() {
    let throttled = Fault::respond(429, BodyKind::Outcome).with_code("throttled").with_retry_after_s(0);
    let server = server().await;
    let (summary, _) =
        assert_recovers(&server, Level::System, vec![on(Target::Kickoff, throttled).times(2)], "kickoff-429").await;
    assert!(summary.retries >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_and_throttled_status_answers_are_retried() {
    let server = server().await;
    let rules = vec![
        on(Target::Status, transient(503)).times(2),
        on(Target::Status, Fault::respond(429, BodyKind::Outcome).with_code("throttled").with_retry_after_s(0))
            .when(Trigger::Nth(3)),
        on(Target::Status, Fault::respond(502, BodyKind::Html)).when(Trigger::Nth(4)),
        on(Target::Status, Fault::respond(503, BodyKind::Empty).with_retry_after_date_s(1)).when(Trigger::Nth(5)),
    ];
    assert_recovers(&server, Level::System, rules, "status-transient").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_jobs_are_polled_until_done_and_progress_is_reported() {
    let server = server().await;
    let slow = Fault::InProgress { retry_after_s: Some(0), progress: Some("\u{201c}halfway\u{201d}".into()) };
    let request = ExportRequest::new(Level::System);
    let expected = baseline(&server, &request, "slow").await;
    server.faults().add(on(Target::Status, slow).times(3));
    server.faults().add(on(Target::Status, Fault::Delay { delay_ms: 50 }).times(1));
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let out = out_dir("slow");
    client_with(&server, 2, true, log.clone()).await.export(&request, &out).await.unwrap();
    assert_eq!(files(&out), expected);
    let shown = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::InProgress { progress: Some(p), .. } if p.contains("halfway")))
        .count();
    assert_eq!(shown, 3, "X-Progress shown as sent (CLI-064)");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_bodies_resume_with_range_in_gzip_and_plain() {
    let server = server().await;
    let cut = |n| Fault::Truncate { after_bytes: Some(n), fraction: None, at_line_end: false };
    let half = Fault::Truncate { after_bytes: None, fraction: Some(0.5), at_line_end: false };
    let rules = vec![file("Observation", cut(700)).times(2), file("Encounter", half).times(1)];
    let (_, from) = assert_recovers(&server, Level::System, rules, "truncate").await;
    // Which files the cuts hit depends on download order, and a cut before the
    // first whole line restarts instead; half of either Encounter file (994 or
    // 2,715 gzip bytes) holds whole lines, so that cut always resumes.
    let transcript = server.transcript();
    let ranged: Vec<_> = transcript.iter().filter(|e| e.seq >= from && e.headers.contains_key("range")).collect();
    assert!(ranged.iter().any(|e| e.path.contains("Encounter") && e.status == 206), "the cut file resumed with Range");
    assert!(ranged.iter().all(|e| e.headers["accept-encoding"] == "identity"), "resumes ask for identity bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_resets_before_and_during_the_body_are_retried() {
    let server = server().await;
    let rules = vec![
        file("Encounter", Fault::Reset { after_bytes: 2500, fraction: None }).times(2),
        file("Patient", Fault::Reset { after_bytes: 0, fraction: None }).times(1),
    ];
    assert_recovers(&server, Level::System, rules, "reset").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_file_errors_are_retried() {
    let server = server().await;
    let rules = vec![
        file("Condition", transient(503)).times(2),
        file("Observation", Fault::respond(429, BodyKind::Outcome).with_code("throttled").with_retry_after_s(0))
            .times(1),
        file("Procedure", Fault::respond(502, BodyKind::Html)).times(1),
    ];
    assert_recovers(&server, Level::System, rules, "file-5xx").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_and_slow_bodies_complete() {
    let server = server().await;
    let rules = vec![
        file("Observation", Fault::Stall { after_bytes: 2000, fraction: None, stall_ms: 4000 }).times(1),
        file("Patient", Fault::Drip { bytes_per_s: 400_000 }).times(1),
    ];
    assert_recovers(&server, Level::System, rules, "stall").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_gzip_is_downloaded_again_without_gzip() {
    let server = server().await;
    let (_, from) = assert_recovers(
        &server,
        Level::System,
        vec![on(Target::File, Fault::Gzip { mode: GzipMode::Corrupt }).times(3)],
        "gzip",
    )
    .await;
    let identity = server
        .transcript()
        .iter()
        .filter(|e| e.seq >= from && e.headers.get("accept-encoding").is_some_and(|v| v == "identity"))
        .count();
    assert!(identity >= 3, "each damaged file fetched again uncompressed: {identity}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_and_unsatisfiable_ranges_restart_the_file() {
    let server = server().await;
    let cut = Fault::Truncate { after_bytes: Some(2000), fraction: None, at_line_end: false };
    let rules = vec![
        file("Observation", cut.clone()).times(1),
        file("Observation", Fault::Range { mode: RangeMode::Ignore }),
        file("Encounter", cut).times(1),
        file("Encounter", Fault::Range { mode: RangeMode::Unsatisfiable }).times(1),
    ];
    assert_recovers(&server, Level::System, rules, "range").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_etag_restarts_the_file() {
    let server = server().await;
    let request = ExportRequest::new(Level::System);
    let expected = baseline(&server, &request, "etag").await;
    let cut = Fault::Truncate { after_bytes: Some(3000), fraction: None, at_line_end: false };
    server.faults().add(file("Observation", cut).times(1));
    server.faults().add(file("Observation", Fault::Header { name: "ETag".into(), value: "\"changed-{n}\"".into() }));
    let from = mark(&server);
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let out = out_dir("etag");
    client_with(&server, 3, false, log.clone()).await.export(&request, &out).await.unwrap();
    assert_eq!(files(&out), expected);
    let if_range = server.transcript().iter().filter(|e| e.seq >= from && e.headers.contains_key("if-range")).count();
    assert_eq!(if_range, 1, "the resume named the ETag it continues");
    let restarted =
        log.lock().unwrap().iter().any(|e| matches!(e, Event::Retry { reason, .. } if reason.contains("ETag")));
    assert!(restarted, "the 206 with another ETag was not spliced onto the old part");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_urls_are_renewed_from_the_manifest() {
    let server = server().await;
    let (_, from) =
        assert_recovers(&server, Level::System, vec![on(Target::File, Fault::ExpireUrls).times(1)], "expire").await;
    let renewed = server
        .transcript()
        .iter()
        .filter(|e| e.seq >= from && e.query.as_deref().is_some_and(|q| q.contains("v=1")))
        .count();
    assert!(renewed > 0, "fresh URLs used (CLI-080)");
}

#[tokio::test(flavor = "multi_thread")]
async fn capability_urls_get_no_token() {
    let server = server().await;
    let (_, from) = assert_recovers(
        &server,
        Level::System,
        vec![on(Target::Status, Fault::CapabilityUrls { ttl_s: 300 })],
        "capability",
    )
    .await;
    let transcript = server.transcript();
    let files: Vec<_> = transcript.iter().filter(|e| e.seq >= from && e.path.contains("bulkfiles")).collect();
    assert!(
        files.iter().all(|e| !e.headers.contains_key("authorization")),
        "requiresAccessToken=false: no token (CLI-082)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_to_another_host_never_carry_the_token() {
    let server = server().await;
    // Every status poll and every file request is redirected to the other host
    // name, with a capability in the URL (as presigned storage URLs are): a correct
    // client follows it without its token and finishes (CLI-031).
    let (_, from) = assert_recovers(
        &server,
        Level::System,
        vec![on(Target::Status, Fault::redirect()), on(Target::File, Fault::redirect())],
        "redirect",
    )
    .await;
    let base_host = url::Url::parse(server.fhir_base()).unwrap().host_str().unwrap().to_string();
    let transcript = server.transcript();
    let elsewhere: Vec<_> = transcript
        .iter()
        .filter(|e| e.seq >= from && !e.headers.get("host").is_some_and(|h| h.starts_with(&base_host)))
        .collect();
    assert!(elsewhere.iter().any(|e| e.path.contains("bulkstatus")), "status redirects were followed");
    assert!(elsewhere.iter().any(|e| e.path.contains("bulkfiles")), "file redirects were followed");
    assert!(elsewhere.iter().all(|e| !e.headers.contains_key("authorization")), "no token crossed hosts (CLI-031)");
    assert!(
        elsewhere.iter().all(|e| matches!(e.status, 200 | 202) && e.fault.is_none()),
        "each redirect ends at its target"
    );
    let redirected = transcript.iter().filter(|e| e.seq >= from && e.status == 307).count();
    assert_eq!(redirected, elsewhere.len(), "one redirect per request on the other host");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_and_short_lived_tokens_are_renewed() {
    let server = server().await;
    let rules = vec![
        on(Target::File, Fault::Revoke).when(Trigger::Nth(4)),
        on(Target::Status, Fault::Revoke).when(Trigger::Nth(1)),
        on(Target::Token, Fault::TokenLifetime { lifetime_s: 1 }),
        on(Target::Token, Fault::TokenResponse { token_type: Some("Bearer".into()), expires_in: ExpiresIn::String }),
    ];
    let (summary, _) = assert_recovers(&server, Level::System, rules, "tokens").await;
    assert!(summary.token_requests >= 2, "{}", summary.token_requests);
}

#[tokio::test(flavor = "multi_thread")]
async fn tolerated_manifest_shapes_give_the_same_export() {
    for variant in [ManifestVariant::V4Ballot, ManifestVariant::UnknownFields] {
        let server = server().await;
        let tag = format!("manifest-{variant:?}");
        assert_recovers(&server, Level::System, vec![on(Target::Status, Fault::Manifest { variant })], &tag).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tolerated_ndjson_quirks_are_normalised_away() {
    for mutation in
        [ContentMutation::Crlf, ContentMutation::Bom, ContentMutation::BlankLine, ContentMutation::NoTrailingNewline]
    {
        let server = server().await;
        let tag = format!("content-{mutation:?}");
        assert_recovers(&server, Level::System, vec![file("Patient", Fault::Content { mutation, line: 2 })], &tag)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_line_is_kept_whole() {
    let server = server().await;
    server.faults().add(file("Patient", Fault::Content { mutation: ContentMutation::HugeLine, line: 1 }));
    let out = out_dir("huge");
    let summary = client(&server).await.export(&ExportRequest::new(Level::System), &out).await.unwrap();
    let patients = std::fs::read_to_string(out.join("Patient.ndjson")).unwrap();
    assert_eq!(patients.lines().count() as u64, summary.resources["Patient"]);
    assert!(patients.lines().any(|l| l.len() > 2_000_000), "the 2 MB line arrived whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_success_error_files_are_saved_and_summarised() {
    let server = server().await;
    server.faults().add(on(Target::Status, Fault::Manifest { variant: ManifestVariant::PartialSuccess }));
    let out = out_dir("partial-success");
    let summary = client(&server).await.export(&ExportRequest::new(Level::System), &out).await.unwrap();
    assert!(summary.errors >= 1, "{summary:?}");
    assert!(!summary.error_issues.is_empty());
    assert!(out.join("error").join("OperationOutcome.ndjson").exists());
    assert_eq!(summary.resources.len(), 21, "the data was still downloaded (CLI-070)");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_output_is_a_successful_empty_export() {
    let server = server().await;
    server.faults().add(on(Target::Status, Fault::Manifest { variant: ManifestVariant::EmptyOutput }));
    let out = out_dir("empty");
    let summary = client(&server).await.export(&ExportRequest::new(Level::System), &out).await.unwrap();
    assert_eq!(summary.total_resources(), 0);
    assert!(out.join("manifest.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_narrower_grant_is_reported_and_the_export_holds_what_was_granted() {
    let server = server().await;
    server
        .faults()
        .add(on(Target::Token, Fault::NarrowScope { scope: "system/Patient.rs system/Condition.rs".into() }));
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let out = out_dir("narrow");
    let key = server.client_key();
    let scope = "system/Patient.rs system/Condition.rs system/Observation.rs";
    let credentials = Credentials::from_pem(server.client_id(), key.private_pem.as_bytes(), &key.kid, scope).unwrap();
    let sink = log.clone();
    let client = Client::builder(server.fhir_base())
        .credentials(credentials)
        .policy(fast())
        .observer(Arc::new(move |e: &Event| sink.lock().unwrap().push(e.clone())))
        .build()
        .await
        .unwrap();
    let summary = client.export(&ExportRequest::new(Level::System), &out).await.unwrap();
    assert_eq!(summary.resources.keys().collect::<Vec<_>>(), ["Condition", "Patient"]);
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::ScopeNarrowed { granted, .. } if granted.contains("Condition")))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_waiting_behind_a_slow_one_pause_within_the_memory_budget() {
    let server = server().await;
    let request = ExportRequest::new(Level::System);
    let expected = baseline(&server, &request, "budget").await;
    // A one-byte budget: every file that waits for an earlier one of its type
    // stops reading after its first chunk; the slow first Observation file
    // holds the others back.
    server.faults().add(file("Observation", Fault::Delay { delay_ms: 300 }).times(1));
    let out = out_dir("budget");
    let client = Client::builder(server.fhir_base())
        .credentials(credentials(&server))
        .policy(fast())
        .parallel(8)
        .memory_budget(1)
        .seed(7)
        .build()
        .await
        .unwrap();
    let export = tokio::time::timeout(std::time::Duration::from_secs(60), client.export(&request, &out));
    export.await.expect("the earliest unfinished file always proceeds: no deadlock").unwrap();
    assert_eq!(files(&out), expected, "the same export, in order");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_digests_match_across_gzip_resets_and_truncations() {
    // Every file carries a SHA-256; cut and reset transfers resume with Range,
    // and the digest still covers exactly the bytes of the file.
    let server = MockServer::builder().patients(12).resources_per_file(40).file_digests().start().await;
    let (_, from) = assert_recovers(
        &server,
        Level::System,
        vec![
            // Offsets inside the gzip bodies the client asks for (a few KB each):
            // a fault past the end of a body is not applied, and would test nothing.
            file("Observation", Fault::Reset { after_bytes: 600, fraction: None }).times(2),
            file("Condition", Fault::Truncate { after_bytes: Some(400), fraction: None, at_line_end: false }).times(1),
        ],
        "digests",
    )
    .await;
    let exchanges: Vec<_> = server.transcript().into_iter().filter(|e| e.seq >= from).collect();
    let idle: Vec<_> = exchanges.iter().filter_map(|e| e.fault_not_applied.as_deref()).collect();
    assert!(idle.is_empty(), "every fault acted: {idle:?}");
    let fired = exchanges.iter().filter(|e| e.fault.is_some()).count();
    assert_eq!(fired, 3, "two resets and a truncation");
    // The manifest did carry a digest for every file.
    let job = client(&server).await.kick_off(&ExportRequest::new(Level::System)).await.unwrap();
    let manifest = job.manifest().await.unwrap();
    assert!(manifest.output.iter().all(|f| f.sha256().is_some_and(|d| d.len() == 64)), "a SHA-256 per file");
}

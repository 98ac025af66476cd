//! Limits with clear answers: oversized bodies get 413 naming the limit, in the
//! error shape of their endpoint; a client past its running jobs gets 429.

mod common;

use std::time::Duration;

use bulkmock_server::MockServer;
use bulkmock_server::limits::Limits;
use common::*;
use serde_json::{Value, json};

/// A body of `n` bytes sent chunked (no `Content-Length`), so the server must count as it reads.
fn chunked(n: usize) -> reqwest::Body {
    let sizes = std::iter::repeat_n(4096, n / 4096).chain([n % 4096]);
    let chunks = sizes.map(|size| Ok::<_, std::io::Error>(vec![b'a'; size]));
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()))
}

async fn json_body(r: reqwest::Response, status: u16) -> Value {
    let actual = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(actual, status, "{body}");
    body
}

#[tokio::test]
async fn token_requests_over_the_limit_get_413_invalid_request_naming_it() {
    let server = MockServer::start().await;
    let limit = Limits::default().token_body_bytes;
    let form = |n: usize| format!("grant_type=client_credentials&scope={}", "a".repeat(n - 36));
    let post = |body: reqwest::Body| {
        http().post(server.token_url()).header("Content-Type", "application/x-www-form-urlencoded").body(body)
    };
    // Announced by Content-Length, and counted while reading a chunked body.
    for body in [reqwest::Body::from(form(limit + 1)), chunked(limit + 1)] {
        let error = json_body(post(body).send().await.unwrap(), 413).await;
        assert_eq!(error["error"], "invalid_request");
        let description = error["error_description"].as_str().unwrap();
        assert!(description.contains("limited to 65536 bytes (64 KiB)"), "{description}");
    }
    // At the limit the form is read and judged as usual (no assertion: 400 invalid_request, not 413).
    let at_limit = post(form(limit).into()).send().await.unwrap();
    assert_eq!(at_limit.status(), 400);
    // The refusal is in the transcript like any exchange.
    assert!(server.transcript().iter().filter(|e| e.status == 413).count() == 2);
}

#[tokio::test]
async fn post_kickoffs_over_the_limit_get_413_with_an_operation_outcome() {
    let limits = Limits { kickoff_body_bytes: 2000, ..Limits::default() };
    let server = MockServer::builder().open().limits(limits).start().await;
    let padding = "x".repeat(2000);
    let parameters = json!({"resourceType": "Parameters", "id": padding, "parameter": []});
    let r = post(&server, "$export", parameters, &[]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "too-long");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("a kick-off is limited to 2000 bytes"), "{diagnostics}");
    // A body within the limit still kicks off.
    kickoff_post(&server, "$export", json!({"resourceType": "Parameters", "parameter": []})).await;
}

#[tokio::test]
async fn the_default_kickoff_limit_is_one_mebibyte_and_overrides_axums_two() {
    let server = MockServer::builder().open().start().await;
    let limit = Limits::default().kickoff_body_bytes;
    let too_long = http()
        .post(format!("{}/$export", server.fhir_base()))
        .header("Content-Type", "application/fhir+json")
        .body(chunked(limit + 1))
        .send()
        .await
        .unwrap();
    let outcome = json_body(too_long, 413).await;
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("1048576 bytes (1024 KiB)"));
    // A larger configured limit is not cut at axum's default of 2 MB.
    let limits = Limits { kickoff_body_bytes: 3 << 20, ..Limits::default() };
    let server = MockServer::builder().open().limits(limits).start().await;
    let mut parameters = json!({"resourceType": "Parameters", "parameter": []}).to_string();
    parameters.insert_str(1, &" ".repeat(5 << 19));
    let big = http()
        .post(format!("{}/$export", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Content-Type", "application/fhir+json")
        .body(parameters)
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 202, "{}", big.text().await.unwrap());
}

#[tokio::test]
async fn registrations_and_admin_requests_over_the_limit_get_413_json() {
    let limits = Limits { registration_body_bytes: 100, admin_body_bytes: 200, ..Limits::default() };
    let server = MockServer::builder().admin().limits(limits).start().await;
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let long = json!({"client_name": "x".repeat(300)}).to_string();
    let r = http().post(format!("{origin}/auth/register")).body(long.clone()).send().await.unwrap();
    let error = json_body(r, 413).await;
    assert_eq!(error["error"], "invalid_request");
    assert!(error["error_description"].as_str().unwrap().contains("a registration is limited to 100 bytes"));
    let r = http().post(format!("{origin}/_admin/faults")).body(long).send().await.unwrap();
    let error = json_body(r, 413).await;
    assert!(error["error"].as_str().unwrap().contains("an admin request is limited to 200 bytes"), "{error}");
}

#[tokio::test]
async fn a_client_past_its_running_jobs_gets_429_with_retry_after_until_one_ends() {
    let limits = Limits { max_jobs_per_client: 2, ..Limits::default() };
    let server = MockServer::builder().limits(limits).job_duration(Duration::from_secs(3600)).start().await;
    let token = server.issue_token("system/*.rs");
    let kickoff = |token: String| export_get(format!("{}/$export", server.fhir_base())).bearer_auth(token).send();
    let first = kickoff(token.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first_status = first.headers()["content-location"].to_str().unwrap().to_string();
    assert_eq!(kickoff(token.clone()).await.unwrap().status(), 202);
    let refused = kickoff(token.clone()).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry_after), "Retry-After: {retry_after}");
    let outcome: Value = refused.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["code"], "throttled");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("the limit is 2 per client"));
    // Another client is not held back by this one's jobs.
    let auth = server.state().auth.as_ref().unwrap();
    let grant = bulkmock_server::auth::scopes::Grant::from_request("system/*.rs", &|_: &str| true, None).0;
    let other = auth.issue("another-client", grant, Duration::from_secs(300));
    assert_eq!(kickoff(other).await.unwrap().status(), 202);
    // Once a job is deleted, the client may start another.
    let deleted = http().delete(&first_status).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status(), 202);
    assert_eq!(kickoff(token).await.unwrap().status(), 202);
}

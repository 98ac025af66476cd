//! Limits with clear answers: oversized bodies get 413 naming the limit, in the
//! error shape of their endpoint; a client past its running jobs gets 429; a
//! connection past the limit gets 503; an oversized JWKS is refused unread.
//! Connections are told apart in the transcript by a serial number.

mod common;

use std::time::{Duration, SystemTime};

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

/// One request on a raw connection; returns the response head and body read
/// up to `Content-Length` (the connection stays open unless the server closes it).
async fn roundtrip(stream: &mut tokio::net::TcpStream, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: mock\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole answer: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .map_or(0, |v| v.parse::<usize>().unwrap());
            if body.len() >= length {
                return (head.to_string(), body.to_string());
            }
        }
    }
}

/// Waits (bounded) until `done` holds; false when it never did.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..3000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_connection_past_the_limit_gets_503_with_retry_after_until_one_closes() {
    let limits = Limits { max_connections: 2, ..Limits::default() };
    let server = MockServer::builder().open().patients(1).limits(limits).start().await;
    let addr = server.fhir_base().trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    // Two kept-alive connections, each served.
    let mut first = connect().await.unwrap();
    let mut second = connect().await.unwrap();
    for stream in [&mut first, &mut second] {
        assert!(roundtrip(stream, "/fhir/metadata").await.0.starts_with("HTTP/1.1 200"));
    }
    // A third gets one clear answer and is closed.
    let mut third = connect().await.unwrap();
    let (head, body) = roundtrip(&mut third, "/fhir/metadata").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("retry-after: 1") && head.contains("connection: close"), "{head}");
    let outcome: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outcome["issue"][0]["code"], "transient");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("already serves 2 connections") && diagnostics.contains("--max-connections"));
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut third, &mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed after the answer");
    assert!(server.transcript().iter().all(|e| e.status == 200), "refusals happen before routing");
    // Once one closes, the next connection is served.
    drop(first);
    let connections = &server.state().connections;
    assert!(eventually(|| connections.connection_tasks() == 1).await, "{} tasks", connections.connection_tasks());
    let mut fourth = connect().await.unwrap();
    assert!(roundtrip(&mut fourth, "/fhir/metadata").await.0.starts_with("HTTP/1.1 200"));
    assert!(roundtrip(&mut second, "/fhir/metadata").await.0.starts_with("HTTP/1.1 200"));
}

/// A JWKS host answering `body` (sized, or streamed without a length) at `/jwks.json`.
async fn jwks_host(body: axum::body::Body) -> String {
    let body = std::sync::Arc::new(std::sync::Mutex::new(Some(body)));
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let body = body.lock().unwrap().take().unwrap_or_default();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_url_serving_more_than_64_kib_is_refused_naming_the_limit() {
    use bulkmock_server::auth::jwks::MAX_JWKS_BYTES;
    let key = bulkmock_server::ClientKey::generate(bulkmock_server::KeyAlg::Es384).unwrap();
    // A valid JWK Set, padded past the limit: only the size can refuse it.
    let mut padded = serde_json::to_value(key.jwks()).unwrap();
    padded["padding"] = json!("x".repeat(MAX_JWKS_BYTES));
    let sized = axum::body::Body::from(padded.to_string());
    // A document that never ends, streamed without Content-Length.
    let endless = futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(vec![b' '; 8192]));
    let streamed = axum::body::Body::from_stream(endless);
    for body in [sized, streamed] {
        let server = MockServer::builder().patients(1).start().await;
        let url = jwks_host(body).await;
        let id = server
            .register_client(bulkmock_server::Registration { jwks_url: Some(url.clone()), ..Default::default() })
            .unwrap();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let mut header = jsonwebtoken::Header::new(key.alg.algorithm());
        header.kid = Some(key.kid.clone());
        let claims = json!({"iss": id, "sub": id, "aud": server.token_url(), "exp": now + 60, "jti": "big"});
        let assertion = jsonwebtoken::encode(&header, &claims, &key.encoding_key()).unwrap();
        let r = http()
            .post(server.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.as_str()),
                ("scope", "system/*.rs"),
            ])
            .send()
            .await
            .unwrap();
        let error = json_body(r, 401).await;
        assert_eq!(error["error"], "invalid_client");
        let description = error["error_description"].as_str().unwrap();
        assert!(
            description.contains("larger than 65536 bytes (64 KiB)") && description.contains(&url),
            "{description}"
        );
    }
}

/// Requests on one kept-alive connection share its serial number in the
/// transcript; every new connection gets a new one (a port may come back, a
/// serial number never does), which `etiquette.connection_reuse` relies on.
#[tokio::test]
async fn each_connection_has_its_own_serial_number_in_the_transcript() {
    let server = MockServer::builder().open().patients(1).start().await;
    let addr = server.fhir_base().trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for _ in 0..2 {
        assert!(roundtrip(&mut first, "/fhir/metadata").await.0.starts_with("HTTP/1.1 200"));
    }
    drop(first);
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(roundtrip(&mut second, "/fhir/metadata").await.0.starts_with("HTTP/1.1 200"));
    let serials: Vec<Option<u64>> = server.transcript().iter().map(|e| e.connection).collect();
    assert_eq!(serials.len(), 3, "{serials:?}");
    assert!(serials.iter().all(Option::is_some), "{serials:?}");
    assert_eq!(serials[0], serials[1], "one kept-alive connection");
    assert_ne!(serials[1], serials[2], "a new connection");
}

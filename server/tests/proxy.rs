//! The proxy as a library (`bulkmock_server::proxy`) in front of an in-process
//! `MockServer` with authorization on: byte ranges and gzip bodies arrive as
//! the upstream sends them, URLs point at the proxy, tokens pass unchanged.
//! In front of a tiny upstream that gzips its JSON documents unasked: they are
//! decoded, rewritten and sent on unencoded; a damaged one is a 502.

use std::sync::Arc;

use bulkmock_server::proxy::{self, ProxyConfig};
use bulkmock_server::{MockServer, ServerConfig};

/// A proxy in front of `upstream` on port 0; its FHIR base. It stops with the test's runtime.
async fn start_proxy(upstream: &MockServer) -> (String, Arc<bulkmock_server::app::AppState>) {
    start_proxy_for(upstream.fhir_base(), None).await
}

/// A proxy in front of the FHIR base `upstream` on port 0, writing `record`
/// when given; its FHIR base.
async fn start_proxy_for(
    upstream: &str,
    record: Option<std::path::PathBuf>,
) -> (String, Arc<bulkmock_server::app::AppState>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let config = ProxyConfig { upstream: upstream.to_string(), record_file: record, ..ProxyConfig::default() };
    let state = proxy::state(ServerConfig::default(), &origin, &config).unwrap();
    tokio::spawn(proxy::serve(listener, Arc::clone(&state), std::future::pending()));
    (state.fhir_base.clone(), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_and_gzip_bodies_pass_as_the_upstream_sends_them() {
    let upstream = MockServer::builder()
        .patients(30)
        .resources_per_file(100_000)
        .job_duration(std::time::Duration::ZERO)
        .start()
        .await;
    let (base, state) = start_proxy(&upstream).await;
    assert_ne!(base, upstream.fhir_base());
    let token = format!("Bearer {}", upstream.issue_token("system/*.rs"));
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let kickoff = http
        .get(format!("{base}/$export?_type=Observation"))
        .header("Authorization", &token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(kickoff.status(), 202);
    let status = kickoff.headers()["content-location"].to_str().unwrap().to_string();
    assert!(status.starts_with(base.trim_end_matches("/fhir")), "Content-Location on the proxy: {status}");
    let manifest: serde_json::Value = loop {
        let r = http.get(&status).header("Authorization", &token).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202);
    };
    assert!(manifest["request"].as_str().unwrap().starts_with(&base));
    let via = manifest["output"][0]["url"].as_str().unwrap().to_string();
    let direct = via.replacen(base.trim_end_matches("/fhir"), upstream.fhir_base().trim_end_matches("/fhir"), 1);
    let get = |url: String, header: (&'static str, &'static str)| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let r = http.get(url).header("Authorization", token).header(header.0, header.1).send().await.unwrap();
            let headers = r.headers().clone();
            (r.status().as_u16(), headers, r.bytes().await.unwrap())
        }
    };
    for header in [("Range", "bytes=1000-"), ("Accept-Encoding", "gzip"), ("Accept", "*/*")] {
        let (s1, h1, b1) = get(via.clone(), header).await;
        let (s2, h2, b2) = get(direct.clone(), header).await;
        assert_eq!(s1, s2, "{header:?}");
        for name in ["content-range", "content-encoding", "content-length", "content-type", "etag"] {
            assert_eq!(h1.get(name), h2.get(name), "{header:?}: {name}");
        }
        assert!(b1 == b2, "{header:?}: the body through the proxy differs");
        assert!(b1.len() > 1000);
    }
    let (_, h, _) = get(via.clone(), ("Range", "bytes=1000-")).await;
    assert_eq!(h.get("content-range").map(|v| v.to_str().unwrap().starts_with("bytes 1000-")), Some(true));
    let (_, h, _) = get(via.clone(), ("Accept-Encoding", "gzip")).await;
    assert_eq!(h["content-encoding"], "gzip");
    // The token reached the upstream unchanged: the same fingerprint on both sides.
    let fingerprints = |exchanges: Vec<bulkmock_server::Exchange>| -> std::collections::BTreeSet<String> {
        exchanges.into_iter().filter_map(|e| e.headers.get("authorization").cloned()).collect()
    };
    let (via, at_upstream) = (fingerprints(state.transcript.exchanges()), fingerprints(upstream.transcript()));
    assert_eq!(via.len(), 1);
    assert_eq!(via, at_upstream);
}

/// The body `json` gzip-encoded, as a response with `Content-Encoding: gzip`.
fn gzipped(status: u16, json: &serde_json::Value) -> axum::response::Response {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(json.to_string().as_bytes()).unwrap();
    let body = encoder.finish().unwrap();
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/fhir+json")
        .header("content-encoding", "gzip")
        .header("content-length", body.len())
        .body(axum::body::Body::from(body))
        .unwrap()
}

/// A tiny Bulk Data upstream on port 0 that gzips every JSON document although
/// nobody asked (no `Accept-Encoding`): kick-off, status with a manifest,
/// metadata, one NDJSON file, and a status URL whose "gzip" body is damaged.
/// Its FHIR base.
async fn gzipping_upstream() -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let b = base.clone();
    let app = axum::Router::new()
        .route(
            "/fhir/$export",
            get({
                let b = b.clone();
                move || async move {
                    let mut r = gzipped(202, &serde_json::json!({"resourceType": "OperationOutcome", "issue": []}));
                    r.headers_mut().insert("content-location", format!("{b}/status/1").parse().unwrap());
                    r
                }
            }),
        )
        .route(
            "/fhir/status/1",
            get({
                let b = b.clone();
                move || async move {
                    gzipped(
                        200,
                        &serde_json::json!({
                            "transactionTime": "2026-01-01T00:00:00Z",
                            "request": format!("{b}/$export"),
                            "requiresAccessToken": false,
                            "output": [{"type": "Patient", "url": format!("{b}/files/1.ndjson")}],
                            "error": []
                        }),
                    )
                }
            }),
        )
        .route(
            "/fhir/metadata",
            get({
                let b = b.clone();
                move || async move {
                    gzipped(
                        200,
                        &serde_json::json!({"resourceType": "CapabilityStatement", "implementation": {"url": b}}),
                    )
                }
            }),
        )
        .route(
            "/fhir/status/damaged",
            get(|| async {
                axum::response::Response::builder()
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(axum::body::Body::from("this is not gzip"))
                    .unwrap()
            }),
        )
        .route(
            "/fhir/files/1.ndjson",
            get(|| async {
                ([("content-type", "application/fhir+ndjson")], "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n")
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_encoded_documents_are_decoded_rewritten_and_sent_unencoded() {
    let upstream = gzipping_upstream().await;
    let dir = std::env::temp_dir().join(format!("bulkmock-gzip-documents-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let record = dir.join("record.ndjson");
    let (base, _state) = start_proxy_for(&upstream, Some(record.clone())).await;
    let http = reqwest::Client::new();
    // The answer, after checking it came unencoded with its true length.
    let plain = |r: reqwest::Response| async move {
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let body = r.bytes().await.unwrap();
        assert!(headers.get("content-encoding").is_none(), "still encoded: {headers:?}");
        assert_eq!(headers["content-length"].to_str().unwrap(), body.len().to_string());
        (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
    };
    let kickoff = http
        .get(format!("{base}/$export"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let status_url = kickoff.headers()["content-location"].to_str().unwrap().to_string();
    assert_eq!(status_url, format!("{base}/status/1"));
    assert_eq!(plain(kickoff).await, (202, serde_json::json!({"resourceType": "OperationOutcome", "issue": []})));
    let (status, manifest) = plain(http.get(&status_url).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(manifest["request"], format!("{base}/$export"), "the manifest's URLs are the proxy's");
    let file = manifest["output"][0]["url"].as_str().unwrap();
    assert_eq!(file, format!("{base}/files/1.ndjson"));
    let lines = http.get(file).send().await.unwrap().text().await.unwrap();
    assert_eq!(lines, "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n", "the file arrives through the proxy");
    // The record holds the manifest decoded, as the upstream wrote it.
    let entries = bulkmock_server::proxy::record::Record::read(&record).unwrap();
    let recorded = entries.iter().find_map(|e| match e {
        bulkmock_server::proxy::record::Entry::Manifest { manifest, .. } => Some(manifest.clone()),
        _ => None,
    });
    assert_eq!(recorded.unwrap()["request"], format!("{upstream}/$export"));
    std::fs::remove_dir_all(&dir).unwrap();
    let (_, metadata) = plain(http.get(format!("{base}/metadata")).send().await.unwrap()).await;
    assert_eq!(metadata["implementation"]["url"], base);
    // A body marked gzip that is not: a 502 OperationOutcome saying so.
    let damaged = http.get(format!("{base}/status/damaged")).send().await.unwrap();
    assert_eq!(damaged.status(), 502);
    let outcome: serde_json::Value = damaged.json().await.unwrap();
    let text = outcome["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains("not valid gzip") && text.contains("/fhir/status/damaged"), "{outcome}");
}

/// Lines of the chunked upstream's files: `n` Patients, one per line.
fn patient_lines(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i:05}\"}}\n").into_bytes()).collect()
}

/// `bytes` gzip-encoded (no optional header fields).
fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `bytes` as a chunked body (no `Content-Length`) in pieces of `piece` bytes,
/// then, when `endless`, a body that never ends.
fn chunked(bytes: Vec<u8>, piece: usize, endless: bool) -> axum::body::Body {
    let pieces: Vec<Result<axum::body::Bytes, std::io::Error>> =
        bytes.chunks(piece).map(|c| Ok(axum::body::Bytes::copy_from_slice(c))).collect();
    let head = futures_util::stream::iter(pieces);
    if endless {
        axum::body::Body::from_stream(futures_util::StreamExt::chain(head, futures_util::stream::pending()))
    } else {
        axum::body::Body::from_stream(head)
    }
}

/// A tiny upstream on port 0 that sends every file chunked, without
/// `Content-Length` (as the SMART reference server does):
/// `/fhir/bulkfiles/j/{n}.Patient.ndjson` holds [`patient_lines`]`(200)` in
/// pieces of 1000 bytes; `endless.Patient.ndjson` sends them and then never
/// ends; `gz.Patient.ndjson` is `Content-Encoding: gzip` of
/// [`patient_lines`]`(4000)` in pieces of 700 bytes. Its FHIR base.
async fn chunked_upstream() -> String {
    use axum::extract::Path;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/fhir/bulkfiles/j/{name}",
        get(|Path(name): Path<String>| async move {
            let ndjson = [("content-type", "application/fhir+ndjson")];
            match name.as_str() {
                "gz.Patient.ndjson" => {
                    let body = chunked(gzip_bytes(&patient_lines(4000)), 700, false);
                    (ndjson, [("content-encoding", "gzip")], body).into_response()
                }
                "endless.Patient.ndjson" => (ndjson, chunked(patient_lines(200), 1000, true)).into_response(),
                _ => (ndjson, chunked(patient_lines(200), 1000, false)).into_response(),
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

use axum::response::IntoResponse;

/// GET `url`: the status, headers, the body bytes received, and whether the body ended cleanly.
async fn get_all(http: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>, bool) {
    use futures_util::StreamExt;
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), http.get(url).send())
        .await
        .expect("headers within 10 s")
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let mut body = Vec::new();
    let mut stream = r.bytes_stream();
    let clean = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await.expect("a body that moves")
        {
            Some(Ok(bytes)) => body.extend_from_slice(&bytes),
            Some(Err(_)) => break false,
            None => break true,
        }
    };
    (status, headers, body, clean)
}

/// The transcript's file exchanges of a proxy, in order.
fn file_exchanges(state: &bulkmock_server::app::AppState) -> Vec<bulkmock_server::Exchange> {
    state.transcript.exchanges().into_iter().filter(|e| e.path.contains("/bulkfiles/")).collect()
}

fn file_rule(fault: bulkmock_server::Fault) -> bulkmock_server::FaultRule {
    bulkmock_server::FaultRule::new(bulkmock_server::Target::File, fault).times(1)
}

/// `truncate` with `at_line_end` streams: on a body that never ends (held
/// whole, it would never be answered) the client gets the bytes up to the
/// offset, then to the end of that line, and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_at_a_line_end_streams_and_never_holds_the_body() {
    use bulkmock_server::Fault;
    let upstream = chunked_upstream().await;
    let (base, state) = start_proxy_for(&upstream, None).await;
    state.faults.add(file_rule(Fault::Truncate { after_bytes: Some(1000), fraction: None, at_line_end: true }));
    let http = reqwest::Client::new();
    let (status, headers, body, clean) = get_all(&http, &format!("{base}/bulkfiles/j/endless.Patient.ndjson")).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-length").is_none(), "nothing announced a length: {headers:?}");
    assert!(!clean, "the body is cut, not ended");
    let whole = patient_lines(200);
    let line = whole.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(body.len(), 1000usize.div_ceil(line) * line, "up to the offset, then to the end of its line");
    assert_eq!(&body[..], &whole[..body.len()]);
    let e = &file_exchanges(&state)[0];
    assert!(e.fault.is_some() && e.fault_not_applied.is_none(), "fired: {e:?}");
}

/// On a chunked body `truncate after_bytes` cuts (the terminating chunk never
/// comes); `fraction` (truncate, reset, stall) needs a known length, so on a
/// chunked body it does not act and the transcript says so, as it does for a
/// byte offset past the end of the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_a_chunked_body_act_or_say_they_did_not() {
    use bulkmock_server::Fault;
    let upstream = chunked_upstream().await;
    let (base, state) = start_proxy_for(&upstream, None).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/bulkfiles/j/1.Patient.ndjson");
    let whole = patient_lines(200);

    state.faults.add(file_rule(Fault::Truncate { after_bytes: Some(2500), fraction: None, at_line_end: false }));
    let (_, _, body, clean) = get_all(&http, &url).await;
    assert!(!clean, "a cut chunked body does not end cleanly");
    assert_eq!(body, whole[..2500], "exactly the first 2500 bytes");
    assert!(file_exchanges(&state)[0].fault.is_some());

    let not_acting = [
        Fault::Truncate { after_bytes: None, fraction: Some(0.5), at_line_end: false },
        Fault::Truncate { after_bytes: None, fraction: Some(0.5), at_line_end: true },
        Fault::Reset { after_bytes: 0, fraction: Some(0.5) },
        Fault::Stall { after_bytes: 0, fraction: Some(0.5), stall_ms: 20_000 },
        Fault::Truncate { after_bytes: Some(10_000_000), fraction: None, at_line_end: false },
        Fault::Truncate { after_bytes: Some(10_000_000), fraction: None, at_line_end: true },
        Fault::Reset { after_bytes: 10_000_000, fraction: None },
        Fault::Stall { after_bytes: 10_000_000, fraction: None, stall_ms: 20_000 },
    ];
    for (i, fault) in not_acting.into_iter().enumerate() {
        state.faults.clear();
        state.faults.add(file_rule(fault.clone()));
        let (status, _, body, clean) = get_all(&http, &url).await;
        assert_eq!((status, clean), (200, true), "{fault:?}");
        assert!(body == whole, "{fault:?}: the body went out untouched");
        let e = &file_exchanges(&state)[i + 1];
        assert_eq!(e.fault, None, "{fault:?}: never shown as fired: {e:?}");
        let why = e.fault_not_applied.as_deref().unwrap_or_else(|| panic!("{fault:?}: not applied: {e:?}"));
        let expected = if i < 4 { "known length" } else { "ended after" };
        assert!(why.contains(expected), "{fault:?}: {why}");
    }
}

/// `gzip mode = "corrupt"` on a gzip body of unknown length flips 16 bytes at
/// the documented offset inside the deflate data (1 KiB past the gzip
/// header), never the header: the body keeps its length and fails to decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_gzip_of_unknown_length_flips_deflate_data_not_the_header() {
    use bulkmock_server::Fault;
    use bulkmock_server::faults::model::GzipMode;
    let upstream = chunked_upstream().await;
    let (base, state) = start_proxy_for(&upstream, None).await;
    state.faults.add(file_rule(Fault::Gzip { mode: GzipMode::Corrupt }));
    let http = reqwest::Client::new();
    let (status, headers, body, clean) = get_all(&http, &format!("{base}/bulkfiles/j/gz.Patient.ndjson")).await;
    assert_eq!((status, clean), (200, true));
    assert_eq!(headers["content-encoding"], "gzip");
    let original = gzip_bytes(&patient_lines(4000));
    assert_eq!(body.len(), original.len(), "the length is kept");
    let differs: Vec<usize> = (0..body.len()).filter(|&i| body[i] != original[i]).collect();
    assert_eq!(differs, (10 + 1024..10 + 1024 + 16).collect::<Vec<_>>(), "16 bytes, 1 KiB into the deflate data");
    use std::io::Read;
    assert!(flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut Vec::new()).is_err(), "it fails to decode");
    let e = &file_exchanges(&state)[0];
    assert!(e.fault.is_some() && e.fault_not_applied.is_none(), "fired: {e:?}");
}
/// An upstream that answers the first request on each connection (keep-alive)
/// and closes the connection on the next one without answering, as a server
/// whose keep-alive timeout ran out just as a pooled connection was reused.
/// Its FHIR base.
async fn closing_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                let mut answered = 0;
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if answered == 1 {
                            return; // closed without an answer
                        }
                        let body = "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n";
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/fhir+ndjson\r\ncontent-length: {}\r\n\
                             connection: keep-alive\r\n\r\n{body}",
                            body.len()
                        );
                        socket.write_all(answer.as_bytes()).await.unwrap();
                        answered += 1;
                    }
                }
            });
        }
    });
    base
}

/// A pooled connection the upstream closed as the request went out is not a
/// 502: a GET without a body is sent once more, on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pooled_connection_is_retried_once_for_a_get() {
    let upstream = closing_upstream().await;
    let (base, _state) = start_proxy_for(&upstream, None).await;
    let http = reqwest::Client::new();
    for n in 0..3 {
        let r = http.get(format!("{base}/bulkfiles/j/{n}.Patient.ndjson")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {n}: {:?}", r.text().await);
        assert_eq!(r.text().await.unwrap(), "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n");
    }
}

/// A JSON document sent chunked (no `Content-Length`) that grows past the
/// 64 MiB the proxy reads to rewrite URLs, and never ends: the proxy passes
/// what it read and the rest on as they come, never waiting to hold it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_document_beyond_the_limit_streams_on_unrewritten() {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/fhir", listener.local_addr().unwrap());
    // `{"url": "<upstream>/fhir/x", "pad": "` then 65 MiB of spaces, in 1 MiB pieces, then nothing more.
    let head = format!("{{\"url\": \"{upstream}/x\", \"pad\": \"");
    let mut body = head.clone().into_bytes();
    body.resize(body.len() + (65 << 20), b' ');
    let app = axum::Router::new().route(
        "/fhir/metadata",
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/fhir+json")], chunked(body, 1 << 20, true)).into_response() }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (base, _state) = start_proxy_for(&upstream, None).await;
    let r = tokio::time::timeout(std::time::Duration::from_secs(30), reqwest::get(format!("{base}/metadata")))
        .await
        .expect("headers although the document never ends")
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none());
    let mut stream = r.bytes_stream();
    let mut first = Vec::new();
    while first.len() < head.len() {
        first.extend_from_slice(&futures_util::StreamExt::next(&mut stream).await.unwrap().unwrap());
    }
    assert!(first.starts_with(head.as_bytes()), "passed on as it came, the upstream's URL kept");
}

//! The proxy as a library (`bulkmock_server::proxy`) in front of an in-process
//! `MockServer` with authorization on: byte ranges and gzip bodies arrive as
//! the upstream sends them, URLs point at the proxy, tokens pass unchanged.

use std::sync::Arc;

use bulkmock_server::proxy::{self, ProxyConfig};
use bulkmock_server::{MockServer, ServerConfig};

/// A proxy in front of `upstream` on port 0; its FHIR base. It stops with the test's runtime.
async fn start_proxy(upstream: &MockServer) -> (String, Arc<bulkmock_server::app::AppState>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let config = ProxyConfig { upstream: upstream.fhir_base().to_string(), ..ProxyConfig::default() };
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

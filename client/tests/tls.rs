//! HTTPS (CLI-032): the mock with `tls()` serves every route over TLS; the
//! reference client trusts its local CA with `ca_cert`, refuses it without,
//! recovers from connection resets over TLS, and the server fetches https JWKS
//! URLs from a host it trusts.

mod common;

use std::sync::{Arc, Mutex};

use bulkmock_client::{Client, ClientError, Credentials, Event, ExportRequest, Level};
use bulkmock_server::tls::ca::{LocalCa, local_hosts};
use bulkmock_server::{ClientKey, Fault, FaultRule, KeyAlg, MockServer, Registration, Target};
use common::*;

async fn tls_server() -> MockServer {
    MockServer::builder().tls().patients(12).resources_per_file(40).start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_over_tls_with_the_ca_downloads_exactly_the_data_set() {
    let server = tls_server().await;
    assert!(server.fhir_base().starts_with("https://127.0.0.1:"), "{}", server.fhir_base());
    assert!(server.token_url().starts_with("https://"));
    let out = out_dir("tls-clean");
    let summary = client(&server).await.export(&ExportRequest::new(Level::System), &out).await.unwrap();
    assert_eq!(summary.resources.len(), 21);
    assert_whole_data_set(&server, &summary, &out);
    // Every absolute URL the server emitted is https: the manifest, its file URLs, the status URL.
    let manifest: bulkmock_wire::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.request.starts_with("https://"), "{}", manifest.request);
    assert!(manifest.output.iter().all(|f| f.url.starts_with("https://")), "file URLs are https");
    let transcript = server.transcript();
    let kickoff = transcript.iter().find(|e| e.path.contains("$export")).unwrap();
    assert!(kickoff.response["content-location"].starts_with("https://"));
    assert!(transcript.iter().any(|e| e.path.ends_with("/auth/token") && e.status == 200), "token over TLS");
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_the_ca_fails_with_a_certificate_error_and_no_retries() {
    let server = tls_server().await;
    let error = match Client::builder(server.fhir_base()).credentials(credentials(&server)).policy(fast()).build().await
    {
        Ok(_) => panic!("the client trusted a certificate from an unknown CA"),
        Err(e) => e,
    };
    assert!(matches!(error, ClientError::Tls { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("certificate") && message.contains("UnknownIssuer"), "{message}");
    assert!(!error.is_transient(), "an untrusted certificate is not retried");
    assert_eq!(server.request_count(), 0, "no request got through the handshake");

    // A damaged CA file is refused at build time.
    let bad = Client::builder(server.fhir_base()).ca_cert("not a certificate").build().await;
    assert!(matches!(bad, Err(ClientError::CaCert(_))), "{:?}", bad.err());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_the_tls_port_is_told_to_use_https() {
    let server = tls_server().await;
    let plain = server.fhir_base().replacen("https://", "http://", 1);
    let r = reqwest::Client::new().get(format!("{plain}/metadata")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("HTTPS only") && body.contains("https://"), "{body}");
    assert_eq!(server.request_count(), 0, "plain http never reaches a route");

    // The reference client pointed at the plain URL gets no further than discovery.
    let built = Client::builder(&plain).credentials(credentials(&server)).policy(fast()).build().await;
    assert!(built.is_err(), "discovery over plain http fails");
    assert_eq!(server.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_resets_over_tls_are_real_resets_and_the_client_recovers() {
    let server = tls_server().await;
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let rules = vec![
        FaultRule::new(Target::File, Fault::Reset { after_bytes: 600, fraction: None })
            .resource_type("Encounter")
            .times(2),
        FaultRule::new(Target::File, Fault::Reset { after_bytes: 0, fraction: None }).resource_type("Patient").times(1),
    ];
    let request = ExportRequest::new(Level::System);
    let expected = baseline(&server, &request, "tls-reset").await;
    for rule in rules {
        server.faults().add(rule);
    }
    let out = out_dir("tls-reset");
    let summary =
        client_with(&server, 3, true, log.clone()).await.export(&request, &out).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files(&out), expected, "byte for byte the clean export");
    // The offset lies inside the gzip body: a reset past its end would not apply.
    let transcript = server.transcript();
    assert!(transcript.iter().all(|e| e.fault_not_applied.is_none()), "every reset acted");
    let fired = transcript.iter().filter(|e| e.fault.is_some()).count();
    assert_eq!(fired, 3, "three resets on the wire");
    assert!(summary.retries > 0);
    assert!(log.lock().unwrap().iter().any(|e| matches!(e, Event::Retry { .. })));
    let _ = std::fs::remove_dir_all(&out);

    // On the wire: the TLS stream over the tripped connection ends in a TCP RST,
    // which the peer sees as `ConnectionReset` under the TLS layer.
    let out = out_dir("tls-reset-wire");
    let client = Client::builder(server.fhir_base())
        .ca_cert(server.ca_cert_pem().unwrap())
        .credentials(credentials(&server))
        .policy(bulkmock_client::Policy { delete_after: false, ..fast() })
        .build()
        .await
        .unwrap();
    client.export(&request, &out).await.unwrap();
    let manifest: bulkmock_wire::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let patient_file =
        manifest.output.iter().find(|f| f.resource_type.as_deref() == Some("Patient")).unwrap().url.clone();
    server.faults().add(
        FaultRule::new(Target::File, Fault::Reset { after_bytes: 0, fraction: None }).resource_type("Patient").times(1),
    );
    let ca = reqwest::Certificate::from_pem(server.ca_cert_pem().unwrap().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
    let token = server.issue_token("system/*.rs");
    let error = http.get(&patient_file).bearer_auth(&token).send().await.unwrap_err();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut reset = false;
    while let Some(e) = cause {
        reset |= e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
        cause = e.source();
    }
    assert!(reset, "a TCP reset under TLS: {error:?}");
    let again = http.get(&patient_file).bearer_auth(&token).send().await.unwrap();
    assert_eq!(again.status(), 200, "the next connection is served");
    let _ = std::fs::remove_dir_all(&out);
}

/// An https JWKS host with a certificate from `ca`, serving `jwks` at `/jwks.json`.
async fn https_jwks_host(ca: &LocalCa, jwks: serde_json::Value) -> String {
    let identity = ca.issue(&local_hosts([])).unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/jwks.json", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        bulkmock_server::tls::serve_router(listener, app, &identity, std::future::pending()).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_registered_with_an_https_jwks_url_exports() {
    let jwks_ca = LocalCa::generate().unwrap();
    let key = ClientKey::generate(KeyAlg::Rs384).unwrap();
    let url = https_jwks_host(&jwks_ca, serde_json::to_value(key.jwks()).unwrap()).await;
    let registration = || Registration { jwks_url: Some(url.clone()), ..Registration::default() };

    let server =
        MockServer::builder().tls().patients(3).resources_per_file(40).jwks_ca_cert(jwks_ca.cert_pem()).start().await;
    let id = server.register_client(registration()).unwrap();
    let credentials = Credentials::from_pem(&id, key.private_pem.as_bytes(), &key.kid, "system/*.rs").unwrap();
    let client = Client::builder(server.fhir_base())
        .ca_cert(server.ca_cert_pem().unwrap())
        .credentials(credentials)
        .policy(fast())
        .build()
        .await
        .unwrap();
    let out = out_dir("tls-jwks");
    let mut request = ExportRequest::new(Level::Patient);
    request.types = vec!["Patient".into()];
    let summary = client.export(&request, &out).await.unwrap();
    assert_eq!(summary.resources["Patient"], 3);
    let _ = std::fs::remove_dir_all(&out);

    // A server that does not trust the JWKS host's CA refuses the assertion and says why.
    let untrusting = MockServer::builder().tls().patients(3).start().await;
    let id = untrusting.register_client(registration()).unwrap();
    let credentials = Credentials::from_pem(&id, key.private_pem.as_bytes(), &key.kid, "system/*.rs").unwrap();
    let client = Client::builder(untrusting.fhir_base())
        .ca_cert(untrusting.ca_cert_pem().unwrap())
        .credentials(credentials)
        .policy(fast())
        .build()
        .await
        .unwrap();
    let error = client.export(&ExportRequest::new(Level::System), &out_dir("tls-jwks-untrusted")).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("invalid_client") && message.contains(&url), "{message}");
}

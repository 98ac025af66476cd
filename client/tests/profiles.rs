//! The reference client through profile base URLs with authorization on:
//! `/p/{plan}/fhir` and the SMART reference server's `/{settings}/fhir`. The
//! token endpoint a profile's discovery advertises must accept its own URL as
//! `aud`, and the token must work on that profile's routes (AUTH-001, AUTH-004).

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkmock_client::{Client, ExportRequest, Level};
use bulkmock_server::faults::FaultPlan;
use bulkmock_server::faults::profile::encode;
use bulkmock_server::{BodyKind, Fault, FaultRule, MockServer, Target};
use common::*;

/// Exports Patient and Observation through `base`; asserts the profile's fault
/// fired, the assertion named the profile's token URL, and the data is whole.
async fn export_through(server: &MockServer, prefix: &str, tag: &str) {
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let base = format!("{origin}/{prefix}/fhir");
    let from = mark(server);
    let client = Client::builder(&base).credentials(credentials(server)).policy(fast()).build().await.unwrap();
    let mut request = ExportRequest::new(Level::Patient);
    request.types = vec!["Patient".into(), "Observation".into()];
    let out = out_dir(tag);
    let summary = client.export(&request, &out).await.unwrap_or_else(|e| panic!("{tag}: {e}"));
    assert_eq!(summary.resources["Patient"], 6, "{tag}");
    assert!(summary.retries > 0, "{tag}: the transient fault was retried");

    let exchanges: Vec<_> = server.transcript().into_iter().filter(|e| e.seq >= from).collect();
    let token = exchanges.iter().find_map(|e| e.assertion.clone()).expect("a token request");
    assert_eq!(token["claims"]["aud"], format!("{origin}/{prefix}/auth/token"), "{tag}");
    assert!(exchanges.iter().any(|e| e.fault.is_some()), "{tag}: the profile's fault fired");
    let fhir: Vec<_> =
        exchanges.iter().filter(|e| e.path.starts_with("/fhir/") && !e.path.contains(".well-known")).collect();
    assert!(fhir.iter().all(|e| e.status != 401), "{tag}: the token works on the profile's routes");
    assert!(fhir.iter().filter(|e| e.path.contains("bulk")).all(|e| e.headers.contains_key("authorization")));
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_exports_through_a_fault_plan_base_with_authorization_on() {
    let server = MockServer::builder().patients(6).resources_per_file(20).start().await;
    let transient = Fault::respond(503, BodyKind::Transient);
    let plan = FaultPlan { rules: vec![FaultRule::new(Target::Status, transient).times(2)] };
    export_through(&server, &format!("p/{}", encode(&plan)), "profile-plan").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_exports_through_a_reference_server_settings_base_with_authorization_on() {
    let server = MockServer::builder().patients(6).start().await;
    let settings = serde_json::json!({"err": "transient_error", "page": 4, "dur": 0, "tlt": 15});
    let prefix = URL_SAFE_NO_PAD.encode(settings.to_string());
    export_through(&server, &prefix, "profile-reference").await;
}

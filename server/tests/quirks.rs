//! Quirk profiles on the wire, and the four ways to select them: server
//! config, profile URL (`/p/quirks:a,b/fhir` or `"quirks"` in a plan), and a
//! client's registration (`docs/quirks.md`).

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkmock_server::quirks::{Quirks, technical_group_id};
use bulkmock_server::{MockServer, ServerConfig};
use common::*;
use serde_json::{Value, json};

async fn open_server(quirks: &str) -> MockServer {
    let config = ServerConfig {
        patients: 6,
        open: true,
        job_duration: std::time::Duration::ZERO,
        quirks: Quirks::parse(quirks).unwrap(),
        ..ServerConfig::default()
    };
    MockServer::builder().config(config).start().await
}

fn origin(server: &MockServer) -> String {
    server.fhir_base().trim_end_matches("/fhir").to_string()
}

async fn post_kickoff(base: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/Patient/$export"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Content-Type", "application/fhir+json")
        .body(json!({"resourceType": "Parameters"}).to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_urls_carry_quirks_in_both_forms() {
    let server = open_server("").await;
    let plain = format!("{}/p/quirks:get-kickoff-only/fhir", origin(&server));
    let plan = URL_SAFE_NO_PAD.encode(json!({"fault": [], "quirks": ["get-kickoff-only"]}).to_string());
    let coded = format!("{}/p/{plan}/fhir", origin(&server));
    for base in [&plain, &coded] {
        let r = post_kickoff(base).await;
        assert_eq!(r.status(), 405, "{base}");
        assert_eq!(r.headers()["allow"], "GET");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert!(body.to_string().contains("GET kick-offs only"), "{body}");
    }
    // The server's own base is strict, as configured.
    assert_eq!(post_kickoff(server.fhir_base()).await.status(), 202);
    // A bad name is a 400 listing the valid ones.
    let r = post_kickoff(&format!("{}/p/quirks:get-only/fhir", origin(&server))).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("\\\"get-only\\\"") && text.contains("get-kickoff-only"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_answer_to_technical_ids_only() {
    let server = open_server("technical-group-ids").await;
    let technical = technical_group_id("all-patients");
    let base = server.fhir_base();
    let get = |url: String| async move { http().get(url).send().await.unwrap() };
    assert_eq!(get(format!("{base}/Group/all-patients")).await.status(), 404);
    let r = export_get(format!("{base}/Group/all-patients/$export")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("Group search"));
    let read: Value = get(format!("{base}/Group/{technical}")).await.json().await.unwrap();
    assert_eq!(read["id"], technical.as_str());
    let found: Value = get(format!("{base}/Group?identifier=ALL-PATIENTS")).await.json().await.unwrap();
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["id"], technical.as_str());
    assert_eq!(found["entry"][0]["fullUrl"], format!("{base}/Group/{technical}"));
    let status = kickoff(&server, &format!("Group/{technical}/$export"), "_type=Patient").await;
    let (_, m) = manifest(&status).await;
    assert_eq!(m.output.iter().map(|f| f.count.unwrap_or(0)).sum::<u64>(), 6);

    // Exported Group resources carry the ids the Groups answer to.
    let status = kickoff(&server, "$export", "_type=Group").await;
    let (_, m) = manifest(&status).await;
    let body = get(m.output[0].url.clone()).await.text().await.unwrap();
    let ids: Vec<String> =
        body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    assert!(ids.contains(&technical), "{ids:?}");
    for id in &ids {
        assert!(id.starts_with('t') && id.len() == 17, "{id} is a technical id");
        assert_eq!(get(format!("{base}/Group/{id}")).await.status(), 200, "Group/{id} answers");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn until_is_unsupported_strictly_and_ignored_leniently() {
    let server = open_server("no-until").await;
    let url = format!("{}/Patient/$export?_type=Patient&_until=2030-01-01T00:00:00Z", server.fhir_base());
    let r = export_get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("does not support _until"));
    let r = http()
        .get(&url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async, handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["content-location"].to_str().unwrap().to_string();
    let (_, m) = manifest(&location).await;
    assert_eq!(m.error.len(), 1, "the ignored _until is reported in the error file (SRV-046)");
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_carry_quirks_and_bad_names_are_named() {
    let server = MockServer::builder().patients(2).start().await;
    let key = bulkmock_server::ClientKey::generate(bulkmock_server::KeyAlg::Es384).unwrap();
    let register = |quirks: Value| {
        let body = json!({"jwks": key.jwks(), "quirks": quirks});
        let url = format!("{}/auth/register", origin(&server));
        async move { http().post(url).json(&body).send().await.unwrap() }
    };
    let ok = register(json!(["capitalised-scopes", "long-queue=0.01"])).await;
    assert_eq!(ok.status(), 201);
    let id: Value = ok.json().await.unwrap();
    let client = server.state().auth.as_ref().unwrap().registry.get(id["client_id"].as_str().unwrap()).unwrap();
    assert_eq!(client.quirks.to_string(), "capitalised-scopes,long-queue=0.01");
    let bad = register(json!(["vendor-dialect"])).await;
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.unwrap();
    assert!(text.contains("vendor-dialect") && text.contains("valid quirks"), "{text}");
}

#[test]
fn docs_describe_every_quirk_and_no_other() {
    use bulkmock_server::quirks::Quirk;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/quirks.md")).unwrap();
    let headings: Vec<&str> =
        doc.lines().filter_map(|l| l.strip_prefix("### `").and_then(|l| l.strip_suffix('`'))).collect();
    let names: Vec<&str> = Quirk::ALL.iter().map(|q| q.name()).collect();
    assert_eq!(headings, names, "docs/quirks.md has one section per quirk, in Quirk::ALL order");
}

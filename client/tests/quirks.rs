//! The reference client against each production quirk (`docs/quirks.md`):
//! what the server puts on the wire, and how the client copes (or reports).

mod common;

use std::sync::{Arc, Mutex};

use bulkmock_client::{Client, ClientError, Credentials, Event, ExportRequest, Level, Policy};
use bulkmock_server::quirks::{Quirks, technical_group_id};
use bulkmock_server::{ClientKey, KeyAlg, MockServer, Registration, ServerConfig};
use common::*;

/// A small server speaking `quirks`, jobs complete at once.
async fn quirky(quirks: &str) -> MockServer {
    let config = ServerConfig {
        patients: 8,
        resources_per_file: 50,
        job_duration: std::time::Duration::ZERO,
        quirks: Quirks::parse(quirks).unwrap(),
        ..ServerConfig::default()
    };
    MockServer::builder().config(config).start().await
}

/// A client of the demo identity asking for `scope`, events into `log`.
async fn client_scoped(server: &MockServer, scope: &str, policy: Policy, log: Arc<Mutex<Vec<Event>>>) -> Client {
    let key = server.client_key();
    let credentials = Credentials::from_pem(server.client_id(), key.private_pem.as_bytes(), &key.kid, scope).unwrap();
    Client::builder(server.fhir_base())
        .credentials(credentials)
        .policy(policy)
        .seed(7)
        .observer(logging(log))
        .build()
        .await
        .unwrap()
}

fn notes(log: &Mutex<Vec<Event>>) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Adapted { note } => Some(note.clone()),
            _ => None,
        })
        .collect()
}

fn request(level: Level, types: &[&str]) -> ExportRequest {
    let mut r = ExportRequest::new(level);
    r.types = types.iter().map(|t| t.to_string()).collect();
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn capitalised_scopes_are_granted_and_not_taken_for_a_narrower_grant() {
    let server = quirky("capitalised-scopes").await;
    for scope in ["system/*.read", "system/Patient.Read system/Observation.Read"] {
        let log = Arc::new(Mutex::new(Vec::new()));
        let client = client_scoped(&server, scope, fast(), Arc::clone(&log)).await;
        let out = out_dir(&format!("quirk-scopes-{}", scope.len()));
        let summary = client.export(&request(Level::Patient, &["Patient", "Observation"]), &out).await.unwrap();
        assert_eq!(summary.resources["Patient"], 8);
        let events = log.lock().unwrap().clone();
        let granted = events.iter().find_map(|e| match e {
            Event::Token { granted_scope, .. } => granted_scope.clone(),
            _ => None,
        });
        assert_eq!(granted.as_deref(), Some(scope.replace(".read", ".Read").as_str()), "echoed capitalised");
        assert!(!events.iter().any(|e| matches!(e, Event::ScopeNarrowed { .. })), "{events:?}");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_queue_is_waited_out_at_the_servers_pace() {
    // Time factor 1/2000: the hour becomes 1.8 s, Retry-After 120 s becomes 1 s.
    let server = quirky("long-queue=0.0005").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let policy = Policy { min_wait: std::time::Duration::from_millis(5), ..Policy::default() };
    let client = client_scoped(&server, "system/*.rs", policy, Arc::clone(&log)).await;
    let out = out_dir("quirk-long-queue");
    client.export(&request(Level::Patient, &["Patient"]), &out).await.unwrap();
    let in_progress: Vec<_> = server
        .transcript()
        .into_iter()
        .filter(|e| e.status == 202 && e.method == "GET" && !e.path.ends_with("$export"))
        .collect();
    assert!(!in_progress.is_empty(), "the job stayed in progress");
    assert!(in_progress.iter().all(|e| e.response.get("retry-after").map(String::as_str) == Some("1")));
    let waits: Vec<u64> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::InProgress { wait_ms, .. } => Some(*wait_ms),
            _ => None,
        })
        .collect();
    assert!(!waits.is_empty() && waits.iter().all(|w| *w >= 1000), "the client honours Retry-After: {waits:?}");
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logical_group_id_that_404s_is_found_by_a_group_search() {
    let server = quirky("technical-group-ids").await;
    let technical = technical_group_id("diabetes-cohort");
    let log = Arc::new(Mutex::new(Vec::new()));
    let client = client_scoped(&server, "system/*.rs", fast(), Arc::clone(&log)).await;
    let out = out_dir("quirk-groups");
    let summary = client.export(&request(Level::Group("diabetes-cohort".into()), &["Patient"]), &out).await.unwrap();
    assert!(summary.resources["Patient"] > 0);
    let t = server.transcript();
    let status = |path: &str| t.iter().find(|e| e.path == path).map(|e| e.status);
    assert_eq!(status("/fhir/Group/diabetes-cohort/$export"), Some(404));
    assert_eq!(status(&format!("/fhir/Group/{technical}/$export")), Some(202));
    assert!(t.iter().any(|e| e.path == "/fhir/Group" && e.status == 200), "a Group search");
    assert!(notes(&log)[0].contains(&technical), "{:?}", notes(&log));

    // A name no Group has: the 404 is reported as the server gave it.
    let out = out_dir("quirk-groups-none");
    let e = client.export(&request(Level::Group("no-such-group".into()), &["Patient"]), &out).await.unwrap_err();
    assert!(matches!(e, ClientError::Outcome { status: 404, .. }), "{e}");
    assert!(e.to_string().contains("Group search"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

/// Serves `body` as JSON over plain http to every request (a JWKS host).
async fn http_jwks(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_jwks_url_is_refused_by_name_and_the_client_reports_it() {
    let server = quirky("").await;
    let key = ClientKey::generate(KeyAlg::Es384).unwrap();
    let url = http_jwks(serde_json::to_string(&key.jwks()).unwrap()).await;
    let register = |id: &str, quirks: &str| {
        server
            .register_client(Registration {
                client_id: Some(id.into()),
                jwks_url: Some(url.clone()),
                quirks: Quirks::parse(quirks).unwrap(),
                ..Registration::default()
            })
            .unwrap()
    };
    // The same http JWKS works for a client without the quirk, and is refused for one with it.
    for (id, quirks) in [("plain", ""), ("strict", "https-jwks-only")] {
        register(id, quirks);
        let credentials = Credentials::from_pem(id, key.private_pem.as_bytes(), &key.kid, "system/Patient.rs").unwrap();
        let client = Client::builder(server.fhir_base()).credentials(credentials).policy(fast()).build().await.unwrap();
        let out = out_dir(&format!("quirk-jwks-{id}"));
        let result = client.export(&request(Level::Patient, &["Patient"]), &out).await;
        match quirks {
            "" => assert!(result.is_ok(), "{result:?}"),
            _ => {
                let e = result.unwrap_err();
                assert!(matches!(&e, ClientError::OAuth { error, .. } if error == "invalid_client"), "{e}");
                assert!(e.to_string().contains("https-jwks-only") && e.to_string().contains(&url), "{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ignored_type_filter_is_reported_with_counts() {
    let server = quirky("ignores-type-filter").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let client = client_scoped(&server, "system/*.rs", fast(), Arc::clone(&log)).await;
    let mut r = request(Level::Patient, &["Observation"]);
    r.type_filters = vec!["Observation?category=laboratory".into()];
    let out = out_dir("quirk-type-filter");
    let summary = client.export(&r, &out).await.unwrap();
    // The server served every Observation: the filter had no effect on the wire.
    let all = baseline(&quirky("").await, &request(Level::Patient, &["Observation"]), "quirk-type-filter-all").await;
    let all_lines = all["Observation.ndjson"].split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    assert_eq!(summary.resources["Observation"], all_lines);
    let notes = notes(&log);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("ignored _typeFilter (CLI-048)") && notes[0].contains("Observation"), "{notes:?}");

    // Against a server that applies the filter, nothing is reported.
    let strict = quirky("").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let client = client_scoped(&strict, "system/*.rs", fast(), Arc::clone(&log)).await;
    let out2 = out_dir("quirk-type-filter-strict");
    let filtered = client.export(&r, &out2).await.unwrap();
    assert!(filtered.resources["Observation"] < all_lines);
    assert!(self::notes(&log).is_empty());
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&out2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorised_types_are_silently_left_out() {
    let server = quirky("omits-unauthorised-types").await;
    let client = client_scoped(&server, "system/Patient.rs", fast(), Arc::default()).await;
    let out = out_dir("quirk-omits");
    let summary = client.export(&request(Level::Patient, &["Patient", "Observation"]), &out).await.unwrap();
    assert_eq!(summary.resources.keys().collect::<Vec<_>>(), ["Patient"], "Observation omitted, no 403");
    // Without the quirk the same request is a 403 naming the type.
    let strict = quirky("").await;
    let client = client_scoped(&strict, "system/Patient.rs", fast(), Arc::default()).await;
    let out2 = out_dir("quirk-omits-strict");
    let e = client.export(&request(Level::Patient, &["Patient", "Observation"]), &out2).await.unwrap_err();
    assert!(matches!(e, ClientError::Outcome { status: 403, .. }) && e.to_string().contains("Observation"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn until_is_refused_by_name() {
    let server = quirky("no-until").await;
    let client = client_scoped(&server, "system/*.rs", fast(), Arc::default()).await;
    let mut r = request(Level::Patient, &["Patient"]);
    r.until = Some("2030-01-01T00:00:00Z".into());
    let out = out_dir("quirk-until");
    let e = client.export(&r, &out).await.unwrap_err();
    assert!(matches!(e, ClientError::Outcome { status: 400, .. }), "{e}");
    assert!(e.to_string().contains("_until") && e.to_string().contains("SRV-064"), "{e}");
    r.until = None;
    client.export(&r, &out).await.unwrap();
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_post_kickoff_is_sent_again_as_get() {
    let server = quirky("get-kickoff-only").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let client = client_scoped(&server, "system/*.rs", fast(), Arc::clone(&log)).await;
    let mut r = request(Level::Patient, &["Patient"]);
    r.post = true;
    let out = out_dir("quirk-get-only");
    client.export(&r, &out).await.unwrap();
    let kickoffs: Vec<_> =
        server.transcript().into_iter().filter(|e| e.path.ends_with("$export")).map(|e| (e.method, e.status)).collect();
    assert_eq!(kickoffs, [("POST".to_string(), 405), ("GET".to_string(), 202)]);
    assert!(notes(&log)[0].contains("405"));
    // `patient` can only go by POST: the client says so instead of dropping it.
    r.patients = vec!["Patient/x".into()];
    let out2 = out_dir("quirk-get-only-patient");
    let e = client.export(&r, &out2).await.unwrap_err();
    assert!(e.to_string().contains("patient parameter can only be sent by POST"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_format_is_always_sent() {
    let server = quirky("output-format-required").await;
    let client = client_scoped(&server, "system/*.rs", fast(), Arc::default()).await;
    for post in [false, true] {
        let mut r = request(Level::Patient, &["Patient"]);
        r.post = post;
        let out = out_dir(&format!("quirk-format-{post}"));
        client.export(&r, &out).await.unwrap();
        let _ = std::fs::remove_dir_all(&out);
    }
    let t = server.transcript();
    let get = t.iter().find(|e| e.method == "GET" && e.path.ends_with("$export")).unwrap();
    assert!(get.query.as_deref().unwrap_or("").contains("_outputFormat=application%2Ffhir%2Bndjson"), "{get:?}");
    // A kick-off without it is a 400 naming it.
    let token = server.issue_token("system/*.rs");
    let response = reqwest::Client::new()
        .get(format!("{}/Patient/$export", server.fhir_base()))
        .bearer_auth(token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("requires _outputFormat"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v4_ballot_manifest_is_read() {
    let server = quirky("v4-ballot-manifest").await;
    let client = client_scoped(&server, "system/*.rs", fast(), Arc::default()).await;
    let job = client.kick_off(&request(Level::Patient, &["Patient", "Observation"])).await.unwrap();
    // On the wire: the v4-ballot shape.
    let manifest: serde_json::Value = reqwest::Client::new()
        .get(job.status_url())
        .bearer_auth(server.issue_token("system/*.rs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(manifest.get("request").is_none(), "{manifest}");
    assert_eq!(manifest["manifestType"], "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/BulkDataManifest");
    assert!(manifest["output"].as_array().is_some_and(|o| !o.is_empty()));
    // The client reads it and downloads everything.
    let out = out_dir("quirk-v4");
    let summary = job.download(&out).await.unwrap();
    assert_eq!(summary.resources["Patient"], 8);
    assert!(summary.resources["Observation"] > 0);
    let _ = std::fs::remove_dir_all(&out);
}

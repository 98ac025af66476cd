//! Every kick-off error answers 4xx with an OperationOutcome that names the problem (SRV-113).

mod common;

use bulkmock_server::MockServer;
use common::*;
use serde_json::{Value, json};

/// Asserts an OperationOutcome error response; returns its diagnostics joined.
async fn outcome(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "error");
    body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} [{}] {}",
                i["code"].as_str().unwrap(),
                i["expression"][0].as_str().unwrap_or(""),
                i["diagnostics"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn get(server: &MockServer, path_and_query: &str) -> reqwest::Response {
    http()
        .get(format!("{}/{path_and_query}", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn invalid_get_parameters_are_rejected_naming_the_parameter() {
    let server = MockServer::builder().open().start().await;
    for (query, needle) in [
        ("_type=Patient,Spaceship", "[_type] _type Spaceship is not a resource type"),
        ("_since=2020-01-01", "[_since] _since must be a FHIR instant"),
        ("_since=3000-01-01T00:00:00Z", "is in the future"),
        ("_since=2022-01-01T00:00:00Z&_until=2021-01-01T00:00:00Z", "[_until] _until"),
        ("_outputFormat=text/csv", "[_outputFormat]"),
        ("_elements=Patient.name.family", "[_elements]"),
        ("_typeFilter=Observation%3F_sort%3Ddate", "SRV-091"),
        ("_typeFilter=Observation%3Fwidget%3D1", "no supported search parameter \"widget\""),
        ("includeAssociatedData=_everything", "[includeAssociatedData]"),
        ("organizeOutputBy=Encounter", "only Patient"),
        ("allowPartialManifests=maybe", "true or false"),
        ("colour=blue", "[colour] unknown kick-off parameter"),
        ("patient=Patient/pat-1", "only accepted in a POST"),
    ] {
        let text = outcome(get(&server, &format!("$export?{query}")).await, 400).await;
        assert!(text.contains(needle), "{query}: {text}");
    }
}

#[tokio::test]
async fn every_problem_is_listed_in_one_outcome() {
    let server = MockServer::builder().open().start().await;
    let text = outcome(get(&server, "$export?_type=Nope&_since=yesterday&x=1").await, 400).await;
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[tokio::test]
async fn level_rules_are_enforced() {
    let server = MockServer::builder().open().start().await;
    let text = outcome(get(&server, "Patient/$export?_type=Practitioner").await, 400).await;
    assert!(text.contains("outside the Patient compartment"), "{text}");
    let text = outcome(get(&server, "Group/no-such-group/$export").await, 404).await;
    assert!(text.contains("Group/no-such-group does not exist") && text.contains("diabetes-cohort"), "{text}");

    let system_patient = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/pat-1"}}]});
    let text = outcome(post(&server, "$export", system_patient, &[]).await, 400).await;
    assert!(text.contains("not to system-level"), "{text}");
    let unknown = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/ghost"}}]});
    let text = outcome(post(&server, "Patient/$export", unknown, &[]).await, 400).await;
    assert!(text.contains("\"Patient/ghost\" does not exist"), "{text}");
    let non_member = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/pat-1"}}]});
    let text = outcome(post(&server, "Group/quarter/$export", non_member, &[]).await, 400).await;
    assert!(text.contains("not a member of the group"), "{text}");
}

#[tokio::test]
async fn malformed_post_bodies_are_rejected() {
    let server = MockServer::builder().open().start().await;
    let plain = http()
        .post(format!("{}/$export", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Content-Type", "text/plain")
        .body("_type=Patient")
        .send()
        .await
        .unwrap();
    assert!(outcome(plain, 415).await.contains("Content-Type: application/fhir+json"));
    let broken = http()
        .post(format!("{}/$export", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Content-Type", "application/fhir+json")
        .body("{\"resourceType\":")
        .send()
        .await
        .unwrap();
    assert!(outcome(broken, 400).await.contains("not valid JSON"));
    let text = outcome(post(&server, "$export", json!({"resourceType": "Patient"}), &[]).await, 400).await;
    assert!(text.contains("must be a FHIR Parameters resource"), "{text}");
    let wrong_type =
        json!({"resourceType": "Parameters", "parameter": [{"name": "_since", "valueDate": "2020-01-01"}]});
    let text = outcome(post(&server, "$export", wrong_type, &[]).await, 400).await;
    assert!(text.contains("valueInstant, found valueDate"), "{text}");
}

#[tokio::test]
async fn accept_must_allow_fhir_json() {
    let server = MockServer::builder().open().start().await;
    let r = http()
        .get(format!("{}/$export", server.fhir_base()))
        .header("Accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert!(outcome(r, 406).await.contains("SRV-040"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_outcomes() {
    let server = MockServer::builder().open().start().await;
    outcome(http().get(format!("{}/Spaceship/1", server.fhir_base())).send().await.unwrap(), 404).await;
    outcome(http().put(format!("{}/$export", server.fhir_base())).send().await.unwrap(), 405).await;
    let text = outcome(http().get(format!("{}/bulkstatus/0000", server.fhir_base())).send().await.unwrap(), 404).await;
    assert!(text.contains("no export job 0000"), "{text}");
}

/// A kick-off at `path` by `method` with only the headers given (POST with a Parameters body).
async fn bare_kickoff(server: &MockServer, method: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let url = format!("{}/{path}", server.fhir_base());
    let mut req = match method {
        "GET" => http().get(url),
        _ => http()
            .post(url)
            .header("Content-Type", "application/fhir+json")
            .body(json!({"resourceType": "Parameters"}).to_string()),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn kickoffs_without_accept_or_prefer_get_400_naming_the_header() {
    // SRV-041, SRV-042: the guide allows either answer; a strict mock refuses,
    // so a client that forgets the headers finds out.
    let server = MockServer::builder().open().start().await;
    const ACCEPT: (&str, &str) = ("Accept", "application/fhir+json");
    const PREFER: (&str, &str) = ("Prefer", "respond-async");
    for method in ["GET", "POST"] {
        for path in ["$export", "Patient/$export", "Group/all-patients/$export"] {
            let at = format!("{method} {path}");
            let text = outcome(bare_kickoff(&server, method, path, &[]).await, 400).await;
            assert!(text.contains("[Accept] a kick-off must send Accept: application/fhir+json"), "{at}: {text}");
            assert!(text.contains("[Prefer] a kick-off must send Prefer: respond-async"), "{at}: {text}");
            let json_only = bare_kickoff(&server, method, path, &[("Accept", "application/json"), PREFER]).await;
            assert_eq!(json_only.status(), 400, "{at}");
            // The client asked for application/json: its error comes as that (see below).
            assert_eq!(json_only.headers()["content-type"], "application/json");
            let text = json_only.text().await.unwrap();
            assert!(text.contains("Accept: application/fhir+json (got \\\"application/json\\\""), "{at}: {text}");
            assert!(!text.contains("Prefer"), "{at}: {text}");
            let text = outcome(bare_kickoff(&server, method, path, &[ACCEPT]).await, 400).await;
            assert!(text.contains("Prefer: respond-async") && !text.contains("[Accept]"), "{at}: {text}");
            assert_eq!(bare_kickoff(&server, method, path, &[ACCEPT, PREFER]).await.status(), 202, "{at}");
        }
    }
}

#[tokio::test]
async fn lenient_headers_emulate_servers_that_accept_bare_kickoffs() {
    let server = MockServer::builder().open().lenient_headers().start().await;
    for method in ["GET", "POST"] {
        for path in ["$export", "Patient/$export", "Group/all-patients/$export"] {
            assert_eq!(bare_kickoff(&server, method, path, &[]).await.status(), 202, "{method} {path}");
            let json_only = bare_kickoff(&server, method, path, &[("Accept", "application/json")]).await;
            assert_eq!(json_only.status(), 202, "{method} {path}");
        }
    }
    assert!(server.config().lenient_headers);
}

#[tokio::test]
async fn outcomes_answer_application_json_when_accept_asks_for_it() {
    use bulkmock_server::{BodyKind, Fault, FaultRule, Target};
    // FHIR allows application/json as a synonym; application/fhir+json stays the default (SRV-130).
    let server = MockServer::builder()
        .patients(2)
        .fault(FaultRule::new(Target::Status, Fault::respond(503, BodyKind::Transient)).times(1))
        .start()
        .await;
    let auth = format!("Bearer {}", server.issue_token("system/*.rs"));
    let r = export_get(format!("{}/$export?_type=Patient", server.fhir_base()))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let send = |method: reqwest::Method, url: String, accept: Option<&'static str>| {
        let mut req = http().request(method, url).header("Authorization", &auth);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        req.send()
    };
    let content_type = |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_string();
    let json = Some("application/json");

    // An injected transient 503 on the status URL.
    let r = send(reqwest::Method::GET, status.clone(), json).await.unwrap();
    assert_eq!((r.status().as_u16(), content_type(&r).as_str()), (503, "application/json"));
    assert_eq!(r.json::<Value>().await.unwrap()["resourceType"], "OperationOutcome");
    // The 404 after a DELETE, on DELETE and on GET.
    assert_eq!(send(reqwest::Method::DELETE, status.clone(), json).await.unwrap().status(), 202);
    for method in [reqwest::Method::DELETE, reqwest::Method::GET] {
        let r = send(method.clone(), status.clone(), json).await.unwrap();
        assert_eq!((r.status().as_u16(), content_type(&r).as_str()), (404, "application/json"), "{method}");
        let body: Value = r.json().await.unwrap();
        assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains("deleted"));
        // Without Accept, or when application/fhir+json is preferred: the default.
        for accept in [None, Some("*/*"), Some("application/fhir+json, application/json")] {
            let r = send(method.clone(), status.clone(), accept).await.unwrap();
            assert_eq!(content_type(&r), "application/fhir+json", "{method} {accept:?}");
        }
    }
    // A 401, a kick-off 400 and an unknown route.
    let r = http().get(&status).header("Accept", "application/json").send().await.unwrap();
    assert_eq!((r.status().as_u16(), content_type(&r).as_str()), (401, "application/json"));
    let r = send(reqwest::Method::GET, format!("{}/$export", server.fhir_base()), json).await.unwrap();
    assert_eq!((r.status().as_u16(), content_type(&r).as_str()), (400, "application/json"));
    let r = send(reqwest::Method::GET, format!("{}/Spaceship", server.fhir_base()), json).await.unwrap();
    assert_eq!((r.status().as_u16(), content_type(&r).as_str()), (404, "application/json"));
}

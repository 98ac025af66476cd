//! CapabilityStatement and Group read/search.

mod common;

use bulkmock_server::MockServer;
use common::http;
use serde_json::Value;

async fn json(url: String) -> (u16, Value) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn capability_statement_declares_the_bulk_operations() {
    let server = MockServer::builder().open().start().await;
    let (status, cs) = json(format!("{}/metadata", server.fhir_base())).await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["instantiates"][0], "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data");
    let rest = &cs["rest"][0];
    assert_eq!(rest["operation"][0]["name"], "export");
    assert_eq!(rest["operation"][0]["definition"], "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export");
    let resource = |ty: &str| rest["resource"].as_array().unwrap().iter().find(|r| r["type"] == ty).unwrap().clone();
    let names = |r: &Value| {
        r["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names(&resource("Patient")), vec!["export", "patient-export"], "E-06");
    assert_eq!(names(&resource("Group")), vec!["export", "group-export"]);
    let observation = resource("Observation");
    let obs_params: Vec<&str> =
        observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(obs_params.contains(&"code") && obs_params.contains(&"date"), "SRV-208: {obs_params:?}");
}

#[tokio::test]
async fn groups_can_be_read_and_searched() {
    let server = MockServer::builder().open().patients(1500).start().await;
    let (status, g) = json(format!("{}/Group/sample-10", server.fhir_base())).await;
    assert_eq!(status, 200);
    assert_eq!(g["quantity"], 10);
    assert_eq!(g["member"].as_array().unwrap().len(), 10);
    let (_, all) = json(format!("{}/Group/all-patients", server.fhir_base())).await;
    assert_eq!(all["quantity"], 1500);
    assert!(all.get("member").is_none(), "large groups state their size without listing members");

    let (_, bundle) = json(format!("{}/Group?name=type%202", server.fhir_base())).await;
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], "diabetes-cohort");
    let (_, bundle) = json(format!("{}/Group?identifier=EMPTY", server.fhir_base())).await;
    assert_eq!(bundle["entry"][0]["resource"]["id"], "empty");
    let (_, bundle) = json(format!("{}/Group", server.fhir_base())).await;
    assert_eq!(bundle["total"], 5);
    let (status, outcome) = json(format!("{}/Group?colour=red", server.fhir_base())).await;
    assert_eq!(status, 400);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let (status, _) = json(format!("{}/Group/nope", server.fhir_base())).await;
    assert_eq!(status, 404);
}

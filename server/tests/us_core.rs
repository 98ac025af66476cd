//! The synthetic population meets the required elements of the US Core 6.1
//! profiles of the types it serves (base R4 for the types US Core does not
//! profile), and the `content` fault's `missing_required` mutation serves a
//! resource that breaks them, as strict downstream validation would see it.
//!
//! The checks here go below the top level (`identifier.system` and `value`,
//! the `assess-plan` CarePlan category, an attachment's `contentType`, ...),
//! so they are written out independently of the server's element table.

mod common;

use bulkmock_server::MockServer;
use bulkmock_server::data::synthetic::Density;
use bulkmock_server::faults::file;
use bulkmock_server::faults::required::{REQUIRED, required_elements};
use common::*;
use serde_json::Value;

/// Resources checked per type, spread over the population.
const PER_TYPE: u64 = 200;

/// What is wrong with `r` for US Core (empty when nothing is).
fn us_core_problems(r: &Value) -> Vec<String> {
    let ty = r["resourceType"].as_str().unwrap_or_default();
    let mut problems = Vec::new();
    for element in required_elements(ty) {
        let present = match &r[*element] {
            Value::Null => false,
            Value::Array(items) => !items.is_empty(),
            Value::Object(members) => !members.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if !present {
            problems.push(format!("{ty}.{element} is missing"));
        }
    }
    let mut need = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("{ty}: {what}"));
        }
    };
    let codings = |v: &Value| v["coding"].as_array().cloned().unwrap_or_default();
    let has_code = |v: &Value| codings(v).iter().any(|c| c["system"].is_string() && c["code"].is_string());
    let refers_to = |v: &Value, target: &str| v["reference"].as_str().is_some_and(|s| s.starts_with(target));
    let any = |v: &Value, f: &dyn Fn(&Value) -> bool| v.as_array().is_some_and(|items| items.iter().any(f));
    let all = |v: &Value, f: &dyn Fn(&Value) -> bool| v.as_array().is_some_and(|items| items.iter().all(f));
    match ty {
        "Patient" => {
            need(
                all(&r["identifier"], &|i| i["system"].is_string() && i["value"].is_string()),
                "identifier.system and value",
            );
            need(all(&r["name"], &|n| n["family"].is_string() || n["given"].is_array()), "name.family or given");
            need(matches!(r["gender"].as_str(), Some("male" | "female" | "other" | "unknown")), "gender code");
        }
        "Observation" => {
            need(
                any(&r["category"], &|c| {
                    codings(c)
                        .iter()
                        .any(|c| c["system"] == "http://terminology.hl7.org/CodeSystem/observation-category")
                }),
                "a category from observation-category",
            );
            need(has_code(&r["code"]), "code.coding");
            need(refers_to(&r["subject"], "Patient/"), "subject is a Patient");
            let effective = r.as_object().is_some_and(|o| o.keys().any(|k| k.starts_with("effective")));
            need(r["status"] != "final" || effective, "effective[x] when final (us-core-1)");
        }
        "Condition" => {
            need(any(&r["category"], &has_code), "category.coding");
            need(has_code(&r["code"]), "code.coding");
            need(refers_to(&r["subject"], "Patient/"), "subject is a Patient");
        }
        "Encounter" => {
            need(r["class"]["code"].is_string(), "class.code");
            need(any(&r["type"], &has_code), "type.coding");
            need(refers_to(&r["subject"], "Patient/"), "subject is a Patient");
        }
        "DocumentReference" => {
            need(
                all(&r["content"], &|c| {
                    c["attachment"]["contentType"].is_string()
                        && (c["attachment"]["url"].is_string() || c["attachment"]["data"].is_string())
                }),
                "content.attachment with contentType and url or data (us-core-6)",
            );
        }
        "CarePlan" => {
            need(r["text"]["status"].is_string() && r["text"]["div"].is_string(), "text.status and text.div");
            need(
                any(&r["category"], &|c| codings(c).iter().any(|c| c["code"] == "assess-plan")),
                "the assess-plan category",
            );
        }
        "CareTeam" => {
            need(
                all(&r["participant"], &|p| p["role"].is_array() && p["member"]["reference"].is_string()),
                "participant.role and member",
            );
        }
        "Practitioner" => {
            need(any(&r["identifier"], &|i| i["system"] == "http://hl7.org/fhir/sid/us-npi"), "an NPI identifier");
            need(all(&r["name"], &|n| n["family"].is_string()), "name.family");
        }
        "MedicationRequest" => need(has_code(&r["medicationCodeableConcept"]), "medication coded"),
        "Immunization" => need(has_code(&r["vaccineCode"]), "vaccineCode.coding"),
        "AllergyIntolerance" => need(has_code(&r["code"]), "code.coding"),
        "DiagnosticReport" => need(any(&r["category"], &has_code), "category.coding"),
        "Provenance" => need(all(&r["agent"], &|a| a["who"]["reference"].is_string()), "agent.who"),
        _ => {}
    }
    problems
}

#[tokio::test]
async fn every_generated_type_meets_its_us_core_required_elements() {
    // Enough patients for a few hundred Organizations and Locations.
    let server = MockServer::builder().open().patients(20_000).start().await;
    let data = server.data();
    for (t, info) in data.types().iter().enumerate() {
        assert!(!required_elements(&info.name).is_empty(), "{} has no profile in the table", info.name);
        let indices: Vec<u64> = if info.in_patient_compartment {
            let step = (data.patient_count() / PER_TYPE).max(1);
            (0..data.patient_count()).step_by(step as usize).flat_map(|p| data.patient_resources(t, p)).collect()
        } else {
            let count = data.standalone_count(t);
            (0..count).step_by((count / PER_TYPE).max(1) as usize).collect()
        };
        assert!(!indices.is_empty(), "{}: nothing to check", info.name);
        for idx in indices {
            let mut buf = Vec::new();
            data.write_resource(t, idx, &mut buf).unwrap();
            let resource: Value = serde_json::from_slice(&buf).unwrap();
            let problems = us_core_problems(&resource);
            assert!(problems.is_empty(), "{} {idx}: {problems:?}\n{resource}", info.name);
        }
    }
    assert_eq!(REQUIRED.len(), data.types().len(), "one row per served type");
}

#[tokio::test]
async fn the_realistic_density_meets_them_too() {
    let server = MockServer::builder().open().patients(40).density(Density::Realistic).start().await;
    let data = server.data();
    for (t, info) in data.types().iter().enumerate().filter(|(_, t)| t.in_patient_compartment) {
        let mut checked = 0;
        for p in 0..data.patient_count() {
            for idx in spread_sample(data, t, p, 25) {
                let mut buf = Vec::new();
                data.write_resource(t, idx, &mut buf).unwrap();
                let resource: Value = serde_json::from_slice(&buf).unwrap();
                let problems = us_core_problems(&resource);
                assert!(problems.is_empty(), "{} {idx}: {problems:?}\n{resource}", info.name);
                checked += 1;
            }
        }
        assert!(checked >= 80, "{}: {checked} checked", info.name);
    }
}

#[tokio::test]
async fn the_missing_required_mutation_serves_a_resource_that_breaks_its_profile() {
    let plan = r#"
[[fault]]
on = "file"
resource_type = "Condition"
fault = { kind = "content", mutation = "missing_required", line = 2 }
"#;
    let rule = file::parse(plan, "test plan", false).unwrap().rules.remove(0);
    let server =
        MockServer::builder().open().patients(3).job_duration(std::time::Duration::ZERO).fault(rule).start().await;
    let status = kickoff(&server, "$export", "_type=Patient,Condition").await;
    let (_, manifest) = manifest(&status).await;
    let files = output_by_type(&manifest).await;
    let conditions = &files["Condition"];
    assert_eq!(conditions.len(), expected(&server, "Condition", 0..3).len(), "every resource is still served");
    assert!(conditions.len() >= 3);
    for (i, condition) in conditions.iter().enumerate() {
        let problems = us_core_problems(condition);
        if i == 1 {
            assert!(problems.iter().any(|p| p == "Condition.category is missing"), "{problems:?}");
            assert!(problems.iter().any(|p| p == "Condition.subject is missing"), "{problems:?}");
            assert!(condition["id"].is_string(), "the resource keeps its id");
        } else {
            assert!(problems.is_empty(), "line {}: {problems:?}", i + 1);
        }
    }
    assert!(files["Patient"].iter().all(|p| us_core_problems(p).is_empty()), "other files are untouched");
}

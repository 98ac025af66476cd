//! Properties of the synthetic population every export relies on.

use std::collections::{HashMap, HashSet};

use super::*;
use serde_json::Value;

fn all_resources(data: &Synthetic) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (ty, info) in data.types().iter().enumerate() {
        let indices: Vec<u64> = if info.in_patient_compartment {
            (0..data.patient_count()).flat_map(|p| data.patient_resources(ty, p)).collect()
        } else {
            (0..data.standalone_count(ty)).collect()
        };
        for idx in indices {
            let mut buf = Vec::new();
            data.write_resource(ty, idx, &mut buf).unwrap();
            let v: Value = serde_json::from_slice(&buf)
                .unwrap_or_else(|e| panic!("{} {idx}: {e}: {}", info.name, String::from_utf8_lossy(&buf)));
            out.push((info.name.clone(), v));
        }
    }
    out
}

/// Every `reference` string anywhere inside `v`.
fn references(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => found.push(s.clone()),
                    _ => references(x, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| references(x, found)),
        _ => {}
    }
}

#[test]
fn every_resource_is_json_with_type_id_and_meta() {
    let data = Synthetic::new(7, 30, "http://h/fhir");
    let all = all_resources(&data);
    assert!(all.len() > 30 * 30);
    let mut ids = HashSet::new();
    for (ty, v) in &all {
        assert_eq!(v["resourceType"], ty.as_str());
        let id = v["id"].as_str().unwrap();
        assert!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(ids.insert(format!("{ty}/{id}")), "duplicate {ty}/{id}");
        assert!(v["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn references_resolve_inside_the_population() {
    let data = Synthetic::new(1, 40, "http://h/fhir");
    let all = all_resources(&data);
    let ids: HashSet<String> = all.iter().map(|(ty, v)| format!("{ty}/{}", v["id"].as_str().unwrap())).collect();
    let mut deleted = HashSet::new();
    for (ty, info) in data.types().iter().enumerate().filter(|(_, t)| t.in_patient_compartment) {
        for p in 0..data.patient_count() {
            for i in data.patient_resources(ty, p).filter(|&i| data.header(ty, i).deleted) {
                let mut buf = Vec::new();
                data.write_resource(ty, i, &mut buf).unwrap();
                let v: Value = serde_json::from_slice(&buf).unwrap();
                deleted.insert(format!("{}/{}", info.name, v["id"].as_str().unwrap()));
            }
        }
    }
    assert!(!deleted.is_empty(), "some resources are deleted");
    for (ty, v) in &all {
        let mut refs = Vec::new();
        references(v, &mut refs);
        for r in refs {
            assert!(ids.contains(&r), "{ty} {} references missing {r}", v["id"]);
            assert!(!deleted.contains(&r), "{ty} {} references deleted {r}", v["id"]);
        }
    }
}

#[test]
fn required_elements_are_present() {
    let required: HashMap<&str, &[&str]> = HashMap::from([
        ("Encounter", &["status", "class"][..]),
        ("Observation", &["status", "code"][..]),
        ("Condition", &["subject"][..]),
        ("Procedure", &["status", "subject"][..]),
        ("MedicationRequest", &["status", "intent", "medicationCodeableConcept", "subject"][..]),
        ("Immunization", &["status", "vaccineCode", "patient", "occurrenceDateTime"][..]),
        ("AllergyIntolerance", &["patient"][..]),
        ("DiagnosticReport", &["status", "code"][..]),
        ("DocumentReference", &["status", "content"][..]),
        ("CarePlan", &["status", "intent", "subject"][..]),
        ("Coverage", &["status", "beneficiary", "payor"][..]),
        ("Claim", &["status", "type", "use", "patient", "created", "provider", "priority", "insurance"][..]),
        (
            "ExplanationOfBenefit",
            &["status", "type", "use", "patient", "created", "insurer", "provider", "outcome", "insurance"][..],
        ),
        ("Provenance", &["target", "recorded", "agent"][..]),
        ("Group", &["type", "actual"][..]),
    ]);
    let data = Synthetic::new(3, 10, "http://h/fhir");
    for (ty, v) in all_resources(&data) {
        for field in required.get(ty.as_str()).copied().unwrap_or_default() {
            assert!(v.get(field).is_some(), "{ty} lacks required {field}: {v}");
        }
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_content() {
    let a = Synthetic::new(5, 20, "http://h/fhir");
    let b = Synthetic::new(5, 20, "http://h/fhir");
    let c = Synthetic::new(6, 20, "http://h/fhir");
    let obs = a.type_index("Observation").unwrap();
    let (mut x, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..100 {
        a.write_resource(obs, i, &mut x).unwrap();
        b.write_resource(obs, i, &mut y).unwrap();
        c.write_resource(obs, i, &mut z).unwrap();
    }
    assert_eq!(x, y);
    assert_ne!(x, z);
}

#[test]
fn last_updated_spreads_over_years_and_matches_header() {
    let data = Synthetic::new(9, 200, "http://h/fhir");
    let obs = data.type_index("Observation").unwrap();
    let mut years = HashSet::new();
    for i in 0..1600 {
        let h = data.header(obs, i);
        let mut buf = Vec::new();
        data.write_resource(obs, i, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        let lu = v["meta"]["lastUpdated"].as_str().unwrap().to_string();
        assert_eq!(lu, crate::data::clock::instant_string(h.last_updated));
        years.insert(lu[..4].to_string());
    }
    assert!(years.len() >= 6, "years: {years:?}");
}

#[test]
fn diabetes_cohort_is_exactly_the_patients_with_diabetes() {
    let data = Synthetic::new(11, 60, "http://h/fhir");
    let cohort = data.group("diabetes-cohort").unwrap().members.clone();
    let cond = data.type_index("Condition").unwrap();
    for p in 0..60 {
        let has = data.patient_resources(cond, p).any(|i| {
            let mut buf = Vec::new();
            data.write_resource(cond, i, &mut buf).unwrap();
            String::from_utf8(buf).unwrap().contains("\"44054006\"")
        });
        assert_eq!(has, cohort.contains(p), "patient {p}");
    }
}

#[test]
fn attachments_exist_for_document_references_only() {
    let data = Synthetic::new(1, 5, "http://h/fhir");
    let (media, body) = data.attachment("doc-3").unwrap();
    assert!(media.starts_with("text/plain"));
    assert!(String::from_utf8(body).unwrap().contains("pat-3"));
    assert!(data.attachment("doc-5").is_none());
    assert!(data.attachment("doc-03").is_none());
    assert!(data.attachment("obs-1").is_none());
}

#[test]
fn patient_ids_round_trip() {
    let data = Synthetic::new(1, 5, "http://h/fhir");
    assert_eq!(data.patient_index(&data.patient_id(4)), Some(4));
    assert_eq!(data.patient_index("pat-5"), None);
    assert_eq!(data.patient_index("pat-04"), None);
}

#[test]
fn locations_and_providers_are_named_after_the_city_of_their_address() {
    let data = Synthetic::new(3, 6000, "http://h/fhir");
    let mut checked = 0;
    for ty in ["Location", "Organization"] {
        let t = data.type_index(ty).unwrap();
        for idx in 0..data.standalone_count(t) {
            let mut buf = Vec::new();
            data.write_resource(t, idx, &mut buf).unwrap();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            let address = match ty {
                // R4 Location.address is 0..1: one Address, not a list.
                "Location" => &v["address"],
                _ if v["type"][0]["coding"][0]["code"] == "prov" => &v["address"][0],
                _ => continue,
            };
            let city = address["city"].as_str().unwrap_or_else(|| panic!("{ty} {idx} has one address: {v}"));
            let name = v["name"].as_str().unwrap();
            assert!(name.starts_with(city), "{ty} {name:?} lies in {city}");
            checked += 1;
        }
    }
    assert!(checked >= 16, "{checked}");
}

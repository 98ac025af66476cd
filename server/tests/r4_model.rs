//! Every generated resource, as served, against an independent FHIR R4 model
//! (`fhirkit`, generated from the official R4 specification package), read
//! strictly: unknown elements, wrong cardinality (a list where R4 has 0..1,
//! as `Location.address` once was), missing required elements, bad choice
//! types and malformed primitives all fail, with the element's path. The
//! `_elements` variants check that trimming keeps every required element
//! (SRV-074); `_typeFilter`, `_since` (deleted Bundles) and the lenient error
//! file cover the other shapes an export writes.

mod common;

use bulkmock_server::MockServer;
use bulkmock_server::data::synthetic::Density;
use common::*;
use fhirkit::r4::Resource;

/// Reads one NDJSON line strictly; panics naming every problem.
#[track_caller]
fn check(what: &str, line: &str) -> String {
    let (resource, issues) = fhirkit::from_json::<Resource>(line).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    assert!(
        issues.is_empty(),
        "{what} is not valid R4:\n{}\n{line}",
        issues.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n")
    );
    resource.unwrap_or_else(|| panic!("{what}: unreadable")).resource_type().to_string()
}

/// Samples per type.
const PER_TYPE: u64 = 300;

#[tokio::test]
async fn a_few_hundred_resources_of_every_generated_type_are_valid_r4() {
    // A population large enough for a few hundred Organizations and Locations.
    let server = MockServer::builder().open().patients(150_000).start().await;
    let data = server.data();
    for (t, info) in data.types().iter().enumerate() {
        let count = if info.in_patient_compartment {
            data.patient_count() * data.patient_resources(t, 0).end
        } else {
            data.standalone_count(t)
        };
        let n = count.min(PER_TYPE);
        if info.name != "Group" {
            assert!(n >= 200, "{}: only {n} to check", info.name);
        }
        // Spread over the population, so many patients and choices are seen.
        for i in 0..n {
            let idx = i * (count / n);
            let mut buf = Vec::new();
            data.write_resource(t, idx, &mut buf).unwrap();
            let line = String::from_utf8(buf).unwrap();
            assert_eq!(check(&format!("{} {idx}", info.name), &line), info.name);
        }
    }
}

#[tokio::test]
async fn realistic_patients_resources_are_valid_r4() {
    let server = MockServer::builder().open().patients(30).density(Density::Realistic).start().await;
    let data = server.data();
    for (t, info) in data.types().iter().enumerate().filter(|(_, t)| t.in_patient_compartment) {
        let mut checked = 0;
        for p in 0..data.patient_count() {
            for idx in spread_sample(data, t, p, 10) {
                let mut buf = Vec::new();
                data.write_resource(t, idx, &mut buf).unwrap();
                let line = String::from_utf8(buf).unwrap();
                assert_eq!(check(&format!("realistic {} {idx}", info.name), &line), info.name);
                checked += 1;
            }
        }
        assert!(checked >= 60, "{}: {checked} checked", info.name);
    }
}

/// Runs a GET export (open server) and checks every line of every file; returns lines per type.
async fn export_checked(server: &MockServer, path: &str, query: &str, prefer_lenient: bool) -> Vec<(String, usize)> {
    let url = format!("{}/{path}?{query}", server.fhir_base());
    let prefer = if prefer_lenient { "respond-async, handling=lenient" } else { "respond-async" };
    let r = export_get(url).header("Prefer", prefer).send().await.unwrap();
    assert_eq!(r.status(), 202, "{query}: {}", r.text().await.unwrap());
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let (_, m) = manifest(&status).await;
    let mut seen: Vec<(String, usize)> = Vec::new();
    for file in m.output.iter().chain(m.deleted.iter().flatten()).chain(&m.error) {
        let body = http().get(&file.url).send().await.unwrap().text().await.unwrap();
        for (i, line) in body.lines().enumerate() {
            let ty = check(&format!("{query}: {} line {}", file.url, i + 1), line);
            match seen.iter_mut().find(|(t, _)| *t == ty) {
                Some((_, n)) => *n += 1,
                None => seen.push((ty, 1)),
            }
        }
    }
    seen
}

#[tokio::test]
async fn exports_with_elements_type_filters_deletions_and_errors_are_valid_r4() {
    let server = MockServer::builder().open().patients(40).start().await;
    let every_type = export_checked(&server, "$export", "", false).await;
    assert_eq!(every_type.len(), 21, "{every_type:?}");

    // `_elements=id`: only the required elements stay, so a gap in the
    // mandatory list shows up as a missing required element.
    let trimmed = export_checked(&server, "$export", "_elements=id", false).await;
    assert_eq!(trimmed.len(), 21);
    let some = "_elements=Observation.value[x],Patient.name,Encounter.period,MedicationRequest.dosageInstruction,\
                Location.address,Organization.address,code,status,subject";
    export_checked(&server, "Patient/$export", some, false).await;
    export_checked(&server, "Group/diabetes-cohort/$export", "_elements=meta,identifier", false).await;

    let filters = [
        "Observation%3Fcategory%3Dlaboratory",
        "Condition%3Fclinical-status%3Dactive",
        "MedicationRequest%3Fstatus%3Dactive",
        "Patient%3Fgender%3Dfemale",
        "Location%3Faddress-state%3DMA",
    ];
    let query =
        format!("_type=Observation,Condition,MedicationRequest,Patient,Location&_typeFilter={}", filters.join(","));
    let filtered = export_checked(&server, "$export", &query, false).await;
    assert!(filtered.iter().any(|(t, _)| t == "Location"), "{filtered:?}");
    let both = format!("{query}&_elements=id");
    export_checked(&server, "$export", &both, false).await;

    // Deleted resources (transaction Bundles), associated Provenance, the
    // lenient error file (OperationOutcomes) and organizeOutputBy blocks.
    let since = export_checked(&server, "$export", "_since=2019-06-01T00:00:00Z", false).await;
    assert!(since.iter().any(|(t, _)| t == "Bundle"), "deletions were checked: {since:?}");
    let associated = "_type=Patient,Encounter&includeAssociatedData=RelevantProvenanceResources";
    export_checked(&server, "$export", associated, false).await;
    let lenient = export_checked(&server, "$export", "_type=Patient&colour=blue", true).await;
    assert!(lenient.iter().any(|(t, _)| t == "OperationOutcome"), "{lenient:?}");
    export_checked(&server, "Patient/$export", "organizeOutputBy=Patient&_type=Patient,Condition", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn later_revisions_and_created_groups_are_valid_r4() {
    let server = MockServer::builder().open().patients(40).start().await;
    server.set_revision(3);
    let data = server.current_data();
    let mut versioned = 0;
    for (t, info) in data.types().iter().enumerate() {
        let indices: Vec<u64> = if info.in_patient_compartment {
            (0..data.patient_count()).flat_map(|p| data.patient_resources(t, p)).collect()
        } else {
            (0..data.standalone_count(t)).collect()
        };
        for idx in indices {
            let mut buf = Vec::new();
            data.write_resource(t, idx, &mut buf).unwrap();
            let line = String::from_utf8(buf).unwrap();
            versioned += usize::from(line.contains("\"versionId\""));
            assert_eq!(check(&format!("{} {idx} at revision 3", info.name), &line), info.name);
        }
    }
    assert!(versioned > 0, "updated resources carry meta.versionId");
    let body = serde_json::json!({"resourceType": "Group", "name": "women", "characteristic": [
        {"code": {"text": "gender"}, "valueCodeableConcept": {"text": "female"}}]});
    let r = http()
        .post(format!("{}/Group", server.fhir_base()))
        .header("Content-Type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(check("created Group", &r.text().await.unwrap()), "Group");
}

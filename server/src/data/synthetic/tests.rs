//! Properties of the synthetic population every export relies on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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

/// The Light population and a Realistic one of `realistic` patients.
fn both_densities(seed: u64, light: u64, realistic: u64) -> [Synthetic; 2] {
    [
        Synthetic::new(seed, light, "http://h/fhir"),
        Synthetic::new(seed, realistic, "http://h/fhir").with_density(Density::Realistic),
    ]
}

#[test]
fn references_resolve_inside_the_population() {
    for data in both_densities(1, 40, 20) {
        references_resolve(&data);
    }
}

fn references_resolve(data: &Synthetic) {
    let all = all_resources(data);
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
    assert_eq!(ids.len(), all.len(), "{:?}: ids are unique", data.density());
    for (ty, v) in &all {
        let mut refs = Vec::new();
        references(v, &mut refs);
        for r in refs {
            assert!(ids.contains(&r), "{:?}: {ty} {} references missing {r}", data.density(), v["id"]);
            assert!(!deleted.contains(&r), "{:?}: {ty} {} references deleted {r}", data.density(), v["id"]);
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
    for data in both_densities(3, 10, 6) {
        for (ty, v) in all_resources(&data) {
            for field in required.get(ty.as_str()).copied().unwrap_or_default() {
                assert!(v.get(field).is_some(), "{:?}: {ty} lacks required {field}: {v}", data.density());
            }
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
    for data in both_densities(11, 60, 60) {
        let cohort = data.group("diabetes-cohort").unwrap().members.clone();
        let cond = data.type_index("Condition").unwrap();
        for p in 0..60 {
            let has = data.patient_resources(cond, p).any(|i| {
                let mut buf = Vec::new();
                data.write_resource(cond, i, &mut buf).unwrap();
                String::from_utf8(buf).unwrap().contains("\"44054006\"")
            });
            assert_eq!(has, cohort.contains(p), "{:?}: patient {p}", data.density());
        }
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

#[test]
fn light_layout_is_the_fixed_table() {
    let data = Synthetic::new(2, 30, "http://h/fhir");
    assert_eq!(data.density(), Density::Light);
    let fixed = [
        ("Patient", 1),
        ("Encounter", 4),
        ("Condition", 2),
        ("Observation", 8),
        ("Procedure", 1),
        ("MedicationRequest", 2),
        ("Immunization", 2),
        ("AllergyIntolerance", 1),
        ("DiagnosticReport", 1),
        ("DocumentReference", 1),
        ("CarePlan", 1),
        ("CareTeam", 1),
        ("Coverage", 1),
        ("Claim", 2),
        ("ExplanationOfBenefit", 2),
        ("Device", 1),
        ("Provenance", 2),
    ];
    let compartment: Vec<&str> =
        data.types().iter().filter(|t| t.in_patient_compartment).map(|t| t.name.as_str()).collect();
    assert_eq!(compartment, fixed.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    for (name, k) in fixed {
        let ty = data.type_index(name).unwrap();
        for p in 0..30 {
            assert_eq!(data.patient_resources(ty, p), p * k..(p + 1) * k, "{name} of {p}");
        }
    }
    assert!(data.attachment("doc-29").is_some() && data.attachment("doc-30").is_none());
}

/// Observation counts of patients `0..n` of a Realistic population.
fn realistic_observations(seed: u64, n: u64) -> Vec<u64> {
    let data = Synthetic::new(seed, n, "http://h/fhir").with_density(Density::Realistic);
    let obs = data.type_index("Observation").unwrap();
    (0..n).map(|p| data.patient_resources(obs, p).count() as u64).collect()
}

#[test]
fn realistic_counts_are_deterministic_and_heavy_tailed() {
    let counts = realistic_observations(42, 200);
    assert_eq!(counts, realistic_observations(42, 200), "a pure function of (seed, patient)");
    assert_ne!(counts, realistic_observations(43, 200), "another seed, other counts");
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    let (median, max) = (sorted[100], sorted[199]);
    let over_1000 = counts.iter().filter(|&&n| n > 1000).count();
    let tens_to_hundreds = counts.iter().filter(|&&n| (10..1000).contains(&n)).count();
    assert!(max >= 10 * median, "max {max}, median {median}");
    assert!((3..=50).contains(&over_1000), "{over_1000} patients with more than 1000 Observations");
    assert!(tens_to_hundreds >= 150, "most have tens to hundreds: {tens_to_hundreds} of 200");
}

#[test]
fn realistic_ranges_are_disjoint_and_hold_exactly_the_patients_resources() {
    let data = Synthetic::new(4, 12, "http://h/fhir").with_density(Density::Realistic);
    for (ty, info) in data.types().iter().enumerate().filter(|(_, t)| t.in_patient_compartment) {
        let mut end = 0;
        for p in 0..data.patient_count() {
            let range = data.patient_resources(ty, p);
            assert!(range.start >= end && !range.is_empty(), "{} of {p}: {range:?} after {end}", info.name);
            end = range.end;
            for idx in range {
                let mut buf = Vec::new();
                data.write_resource(ty, idx, &mut buf).unwrap();
                let v: Value = serde_json::from_slice(&buf).unwrap();
                assert_eq!(v["id"].as_str().unwrap(), data.resource_id(ty, idx));
                let mut refs = Vec::new();
                references(&v, &mut refs);
                let patient = format!("Patient/pat-{p}");
                let owned = info.name == "Patient" && v["id"] == format!("pat-{p}");
                assert!(owned || refs.contains(&patient), "{} {idx} belongs to {patient}: {v}", info.name);
            }
        }
    }
    let docs = data.type_index("DocumentReference").unwrap();
    let mut served = 0;
    for p in 0..data.patient_count() {
        let range = data.patient_resources(docs, p);
        for idx in range.clone() {
            assert!(data.attachment(&format!("doc-{idx}")).is_some(), "doc-{idx}");
            served += 1;
        }
        assert!(data.attachment(&format!("doc-{}", range.end)).is_none(), "doc-{} is past patient {p}'s", range.end);
    }
    assert!(served > 12);
    let past = data.patient_resources(docs, data.patient_count()).start;
    assert!(data.attachment(&format!("doc-{past}")).is_none(), "no patient {}", data.patient_count());
}

#[test]
fn realistic_revisions_add_patients_with_the_same_counts() {
    let timeline = crate::data::revision::Timeline::default();
    let base = Synthetic::new(8, 10, "http://h/fhir").with_density(Density::Realistic);
    let later = base.at_revision(3).unwrap();
    assert_eq!(later.patient_count(), 10 + 3 * added_per_revision(10));
    let bigger = Synthetic::at(8, 10, "http://h/fhir", timeline, 3).with_density(Density::Realistic);
    for ty in (0..base.types().len()).filter(|&t| base.types()[t].in_patient_compartment) {
        for p in 0..later.patient_count() {
            assert_eq!(later.patient_resources(ty, p), bigger.patient_resources(ty, p));
            if p < 10 {
                assert_eq!(later.patient_resources(ty, p), base.patient_resources(ty, p), "ranges never move");
            }
        }
    }
}

/// Every string inside `v`.
fn strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|x| strings(x, out)),
        Value::Object(map) => map.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The byte widths of the characters beyond ASCII in `texts`.
fn utf8_widths(texts: &[&str]) -> BTreeSet<usize> {
    texts.iter().flat_map(|t| t.chars()).filter(|c| !c.is_ascii()).map(char::len_utf8).collect()
}

/// Every resource of type `name`, as written.
fn lines_of(data: &Synthetic, name: &str) -> Vec<Vec<u8>> {
    let ty = data.type_index(name).unwrap();
    let indices: Vec<u64> = if data.types()[ty].in_patient_compartment {
        (0..data.patient_count()).flat_map(|p| data.patient_resources(ty, p)).collect()
    } else {
        (0..data.standalone_count(ty)).collect()
    };
    indices
        .into_iter()
        .map(|idx| {
            let mut buf = Vec::new();
            data.write_resource(ty, idx, &mut buf).unwrap();
            buf
        })
        .collect()
}

/// The texts of one kind in a resource: its names, addresses, or narrative and notes.
fn texts_of<'v>(v: &'v Value, kind: &str) -> Vec<&'v str> {
    let mut out = Vec::new();
    match kind {
        "names" => strings(&v["name"], &mut out),
        "addresses" => strings(&v["address"], &mut out),
        _ => {
            strings(&v["text"]["div"], &mut out);
            strings(&v["note"], &mut out);
        }
    }
    out
}

#[test]
fn a_share_of_names_addresses_narratives_and_notes_goes_beyond_ascii() {
    let data = Synthetic::new(7, 2000, "http://h/fhir");
    let mut widths: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let kinds: [(&str, &[&str]); 3] = [
        ("names", &["Patient", "Practitioner", "Location"]),
        ("addresses", &["Patient", "Practitioner", "Organization", "Location"]),
        ("narratives and notes", &["Condition", "MedicationRequest", "CarePlan"]),
    ];
    for (kind, types) in kinds {
        for &ty in types {
            let lines = lines_of(&data, ty);
            let mut beyond = 0;
            for line in &lines {
                let v: Value = serde_json::from_slice(line).unwrap();
                let found = utf8_widths(&texts_of(&v, kind));
                beyond += usize::from(!found.is_empty());
                widths.entry(kind).or_default().extend(found);
            }
            let share = beyond as f64 / lines.len() as f64;
            if lines.len() >= 1000 {
                assert!((0.10..=0.20).contains(&share), "{ty} {kind}: {beyond} of {} beyond ASCII", lines.len());
            }
        }
    }
    let all = BTreeSet::from([2, 3, 4]);
    for (kind, found) in &widths {
        assert_eq!(found, &all, "{kind}: 2-, 3- and 4-byte UTF-8 characters");
    }
    // Attachments: the patient's name and, for the share, a comment.
    let beyond: Vec<BTreeSet<usize>> = (0..2000)
        .map(|i| utf8_widths(&[&String::from_utf8(data.attachment(&format!("doc-{i}")).unwrap().1).unwrap()]))
        .filter(|w| !w.is_empty())
        .collect();
    assert!((200..=600).contains(&beyond.len()), "{} attachments beyond ASCII", beyond.len());
    assert!(beyond.iter().any(|w| w.contains(&4)), "an attachment with an emoji");
}

#[test]
fn resources_outside_the_share_are_ascii_and_the_share_is_a_function_of_seed_type_and_index() {
    let data = Synthetic::new(5, 300, "http://h/fhir");
    let patients = lines_of(&data, "Patient");
    for (p, line) in patients.iter().enumerate() {
        assert_eq!(!line.is_ascii(), data.non_ascii(T::Patient, p as u64), "pat-{p}");
    }
    // The same name at another revision, density and population size; another seed, another share.
    let timeline = crate::data::revision::Timeline::default();
    let later = Synthetic::at(5, 300, "http://h/fhir", timeline, 3).with_density(Density::Realistic);
    let smaller = Synthetic::new(5, 40, "http://h/fhir");
    for p in 0..40 {
        let (a, b, c) = (data.person(p), later.person(p), smaller.person(p));
        assert_eq!((a.given, a.family), (b.given, b.family), "pat-{p} at revision 3, realistic");
        assert_eq!((a.given, a.family), (c.given, c.family), "pat-{p} in 40 patients");
    }
    let other = Synthetic::new(6, 300, "http://h/fhir");
    let share = |d: &Synthetic| (0..300).filter(|&p| d.non_ascii(T::Patient, p)).collect::<Vec<_>>();
    assert_ne!(share(&data), share(&other));
}

#[test]
fn the_same_seed_writes_the_same_bytes_for_every_type() {
    let ndjson = |seed: u64| {
        let data = Synthetic::new(seed, 120, "http://h/fhir");
        let mut out = Vec::new();
        for info in data.types() {
            for line in lines_of(&data, &info.name) {
                out.extend(line);
                out.push(b'\n');
            }
        }
        out
    };
    let (a, b) = (ndjson(9), ndjson(9));
    assert!(std::str::from_utf8(&a).unwrap().chars().any(|c| c.len_utf8() == 4));
    assert!(a == b, "same seed, same bytes");
    assert!(a != ndjson(10));
}

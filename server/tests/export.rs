//! `$export` end to end through `MockServer`: levels, GET and POST, every parameter.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use bulkmock_server::MockServer;
use bulkmock_server::data::synthetic::Density;
use common::*;
use serde_json::{Value, json};

const COMPARTMENT_TYPES: usize = 17;

#[tokio::test]
async fn system_export_by_get_holds_exactly_the_data_set() {
    let server = MockServer::builder().open().patients(30).start().await;
    let status = kickoff(&server, "$export", "").await;
    let (headers, m) = manifest(&status).await;
    assert!(headers.contains_key("expires"), "SRV-134: Expires on completion");
    assert_eq!(m.request, format!("{}/$export", server.fhir_base()));
    assert!(!m.requires_access_token);
    assert!(m.error.is_empty() && m.deleted.is_none() && m.link.is_empty());
    assert!(m.transaction_time.ends_with('Z'));
    let got = output_by_type(&m).await;
    let types: Vec<String> = server.data().types().iter().map(|t| t.name.clone()).collect();
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), types.iter().cloned().collect());
    for ty in &types {
        assert_eq!(got[ty], expected(&server, ty, 0..30), "{ty} differs from the data set");
    }
}

/// Every `reference` string inside `v`.
fn references(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => map.iter().for_each(|(k, x)| match (k.as_str(), x) {
            ("reference", Value::String(s)) => found.push(s.clone()),
            _ => references(x, found),
        }),
        Value::Array(items) => items.iter().for_each(|x| references(x, found)),
        _ => {}
    }
}

#[tokio::test]
async fn a_realistic_system_export_holds_the_data_set_and_its_references_resolve() {
    let server = MockServer::builder()
        .open()
        .patients(6)
        .seed(5)
        .density(Density::Realistic)
        .resources_per_file(2_000)
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "").await).await;
    let got = output_by_type(&m).await;
    let mut ids = HashSet::new();
    for info in server.data().types() {
        assert_eq!(got[&info.name], expected(&server, &info.name, 0..6), "{} differs from the data set", info.name);
        ids.extend(got[&info.name].iter().map(|v| format!("{}/{}", info.name, v["id"].as_str().unwrap())));
    }
    assert!(got["Observation"].len() > 6 * 8 * 4, "realistic: {} Observations", got["Observation"].len());
    let mut checked = 0;
    for v in got.values().flatten() {
        let mut refs = Vec::new();
        references(v, &mut refs);
        for r in refs {
            assert!(ids.contains(&r), "{}/{} references {r}, not in the export", v["resourceType"], v["id"]);
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
    let docs = &got["DocumentReference"];
    for doc in [&docs[0], &docs[docs.len() - 1]] {
        let url = doc["content"][0]["attachment"]["url"].as_str().unwrap();
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.bytes().await.unwrap().len() as u64, doc["content"][0]["attachment"]["size"].as_u64().unwrap());
    }
}

#[tokio::test]
async fn files_split_at_resources_per_file_without_losing_or_repeating() {
    let server = MockServer::builder().open().patients(25).resources_per_file(16).start().await;
    let status = kickoff(&server, "$export", "_type=Observation,Practitioner").await;
    let (_, m) = manifest(&status).await;
    let observation_files = m.output.iter().filter(|f| f.resource_type.as_deref() == Some("Observation")).count();
    assert!(observation_files >= 12, "200 observations in files of 16: {observation_files}");
    assert!(m.output.iter().all(|f| f.count.unwrap() <= 16));
    let got = output_by_type(&m).await;
    assert_eq!(got["Observation"], expected(&server, "Observation", 0..25));
    assert_eq!(got["Practitioner"], expected(&server, "Practitioner", []));
}

#[tokio::test]
async fn patient_level_by_post_exports_the_patient_compartment() {
    let server = MockServer::builder().open().patients(12).start().await;
    let status = kickoff_post(&server, "Patient/$export", json!({"resourceType": "Parameters"})).await;
    let (_, m) = manifest(&status).await;
    assert_eq!(m.request, format!("{}/Patient/$export", server.fhir_base()));
    let got = output_by_type(&m).await;
    assert_eq!(got.len(), COMPARTMENT_TYPES);
    assert!(!got.contains_key("Practitioner") && !got.contains_key("Organization"));
    assert_eq!(got["Encounter"], expected(&server, "Encounter", 0..12));
}

#[tokio::test]
async fn group_export_holds_only_members_by_get_and_post() {
    let server = MockServer::builder().open().patients(50).start().await;
    let members: Vec<u64> = server.data().group("diabetes-cohort").unwrap().members.iter().collect();
    assert_eq!(members, vec![3, 10, 17, 24, 31, 38, 45]);
    for status in [
        kickoff(&server, "Group/diabetes-cohort/$export", "_type=Patient,Condition").await,
        kickoff_post(
            &server,
            "Group/diabetes-cohort/$export",
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "_type", "valueString": "Patient"}, {"name": "_type", "valueString": "Condition"}]}),
        )
        .await,
    ] {
        let (_, m) = manifest(&status).await;
        let got = output_by_type(&m).await;
        assert_eq!(got["Patient"], expected(&server, "Patient", members.clone()));
        assert_eq!(got["Condition"], expected(&server, "Condition", members.clone()));
    }
}

#[tokio::test]
async fn empty_group_exports_an_empty_output_array() {
    let server = MockServer::builder().open().start().await;
    let (_, m) = manifest(&kickoff(&server, "Group/empty/$export", "").await).await;
    assert!(m.output.is_empty(), "SRV-156: output is [] when nothing was exported");
}

#[tokio::test]
async fn output_format_accepts_the_three_ndjson_spellings() {
    let server = MockServer::builder().open().patients(3).start().await;
    for format in ["application%2Ffhir%2Bndjson", "application%2Fndjson", "ndjson"] {
        let (_, m) =
            manifest(&kickoff(&server, "$export", &format!("_outputFormat={format}&_type=Patient")).await).await;
        assert_eq!(m.output.len(), 1, "{format}");
    }
}

#[tokio::test]
async fn since_and_until_select_by_last_updated_and_list_deletions() {
    let server = MockServer::builder().open().patients(80).start().await;
    let (since, until) = ("2021-01-01T00:00:00Z", "2023-06-30T00:00:00Z");
    let query = format!("_type=Immunization,Patient&_since={since}&_until={until}");
    let (_, m) = manifest(&kickoff(&server, "$export", &query).await).await;
    let got = output_by_type(&m).await;
    let in_window = |r: &Value| {
        let lu = r["meta"]["lastUpdated"].as_str().unwrap();
        lu > since && lu <= until
    };
    for ty in ["Immunization", "Patient"] {
        let all = expected(&server, ty, 0..80);
        let want: Vec<Value> = all.iter().filter(|r| in_window(r)).cloned().collect();
        assert!(!want.is_empty() && want.len() < all.len(), "{ty}: the window selects a real subset");
        assert_eq!(got.get(ty).cloned().unwrap_or_default(), want, "{ty}");
    }

    // SRV-170..173: deleted Immunizations in the window, as DELETE transaction Bundles.
    let deleted = m.deleted.as_ref().expect("deleted array when _since is given");
    let mut bundles = Vec::new();
    for f in deleted {
        assert_eq!(f.resource_type.as_deref(), Some("Bundle"));
        let l = lines(&f.url).await;
        assert_eq!(Some(l.len() as u64), f.count);
        bundles.extend(l);
    }
    let data = server.data();
    let imm = data.type_index("Immunization").unwrap();
    let want_deleted: Vec<String> = (0..80)
        .flat_map(|p| data.patient_resources(imm, p))
        .filter(|&i| {
            let h = data.header(imm, i);
            let lu = bulkmock_server::data::clock::instant_string(h.last_updated);
            h.deleted && lu.as_str() > since && lu.as_str() <= until
        })
        .map(|i| format!("Immunization/{}", data.resource_id(imm, i)))
        .collect();
    assert!(!want_deleted.is_empty());
    let got_deleted: Vec<String> = bundles
        .iter()
        .map(|b| {
            assert_eq!(b["type"], "transaction");
            assert_eq!(b["entry"][0]["request"]["method"], "DELETE");
            b["entry"][0]["request"]["url"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(got_deleted, want_deleted);
    let output_ids: HashSet<String> =
        got["Immunization"].iter().map(|r| format!("Immunization/{}", r["id"].as_str().unwrap())).collect();
    assert!(got_deleted.iter().all(|d| !output_ids.contains(d)), "SRV-172");
}

#[tokio::test]
async fn type_filter_selects_matching_resources_with_both_comma_conventions() {
    let server = MockServer::builder().open().patients(60).start().await;
    // One parameter holding two queries (v2 convention, E-03), a comma inside a value.
    let filter = "Condition%3Fcode%3D44054006,Observation%3Fcode%3D8867-4%2C2339-0%26date%3Dge2022";
    let (_, m) = manifest(
        &kickoff(&server, "$export", &format!("_type=Condition,Observation,Patient&_typeFilter={filter}")).await,
    )
    .await;
    let got = output_by_type(&m).await;
    let cohort: Vec<u64> = server.data().group("diabetes-cohort").unwrap().members.iter().collect();
    let owners: BTreeSet<String> = got["Condition"].iter().map(|c| owner(c).unwrap()).collect();
    assert_eq!(owners, cohort.iter().map(|p| format!("pat-{p}")).collect());
    let want: Vec<Value> = expected(&server, "Observation", 0..60)
        .into_iter()
        .filter(|o| {
            let code = o["code"]["coding"][0]["code"].as_str().unwrap();
            (code == "8867-4" || code == "2339-0") && o["effectiveDateTime"].as_str().unwrap() >= "2022"
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got["Observation"], want);
    assert_eq!(got["Patient"], expected(&server, "Patient", 0..60), "types without a filter are untouched");

    // v3 convention: repeated parameters, OR-ed.
    let (_, m) = manifest(
        &kickoff(
            &server,
            "$export",
            "_type=Condition&_typeFilter=Condition%3Fcode%3D44054006&_typeFilter=Condition%3Fcode%3D38341003",
        )
        .await,
    )
    .await;
    let codes: BTreeSet<String> = output_by_type(&m).await["Condition"]
        .iter()
        .map(|c| c["code"]["coding"][0]["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, BTreeSet::from(["44054006".to_string(), "38341003".to_string()]));
}

#[tokio::test]
async fn elements_keep_requested_and_mandatory_elements_and_tag_subsetted() {
    let server = MockServer::builder().open().patients(5).start().await;
    let (_, m) =
        manifest(&kickoff(&server, "$export", "_type=Observation,Patient&_elements=Observation.subject,gender").await)
            .await;
    let got = output_by_type(&m).await;
    for o in &got["Observation"] {
        let keys: BTreeSet<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["resourceType", "id", "meta", "status", "code", "subject"]));
        // SRV-075: exactly system and code; suites compare the tag object as a whole.
        let tag = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"});
        assert_eq!(o["meta"]["tag"], json!([tag]));
    }
    for p in &got["Patient"] {
        assert!(p.get("gender").is_some() && p.get("name").is_none());
    }
    assert_eq!(got["Observation"].len(), expected(&server, "Observation", 0..5).len());
}

#[tokio::test]
async fn patient_parameter_restricts_patient_and_group_exports() {
    let server = MockServer::builder().open().patients(20).start().await;
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/pat-4"}},
        {"name": "patient", "valueReference": {"reference": format!("{}/Patient/pat-2", server.fhir_base())}},
        {"name": "_type", "valueString": "Patient,Encounter"}]});
    let (_, m) = manifest(&kickoff_post(&server, "Patient/$export", params.clone()).await).await;
    let got = output_by_type(&m).await;
    assert_eq!(ids(&got["Patient"]), vec!["pat-2", "pat-4"]);
    assert_eq!(got["Encounter"], expected(&server, "Encounter", [2, 4]));
    let (_, m) = manifest(
        &kickoff_post(
            &server,
            "Group/quarter/$export",
            json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/pat-8"}}]}),
        )
        .await,
    )
    .await;
    assert_eq!(ids(&output_by_type(&m).await["Patient"]), vec!["pat-8"]);
}

#[tokio::test]
async fn include_associated_data_selects_provenance() {
    let server = MockServer::builder().open().patients(10).start().await;
    // Latest: the newest Provenance of each exported resource; for Patients that is the second one.
    let (_, m) =
        manifest(&kickoff(&server, "$export", "_type=Patient&includeAssociatedData=LatestProvenanceResources").await)
            .await;
    let got = output_by_type(&m).await;
    assert_eq!(ids(&got["Provenance"]), (0..10).map(|p| format!("prov-{}", p * 2 + 1)).collect::<Vec<_>>());
    // Relevant with only Encounters exported: the Provenance that targets an Encounter.
    let (_, m) = manifest(
        &kickoff(&server, "$export", "_type=Encounter&includeAssociatedData=RelevantProvenanceResources").await,
    )
    .await;
    let got = output_by_type(&m).await;
    assert_eq!(ids(&got["Provenance"]), (0..10).map(|p| format!("prov-{}", p * 2)).collect::<Vec<_>>());
    // SRV-086: by default a system export holds every Provenance; _type without it holds none.
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    assert!(!output_by_type(&m).await.contains_key("Provenance"));
}

#[tokio::test]
async fn organize_output_by_patient_writes_resource_blocks() {
    let server = MockServer::builder().open().patients(6).resources_per_file(40).start().await;
    let (_, m) = manifest(
        &kickoff(&server, "Patient/$export", "organizeOutputBy=Patient&_type=Patient,Condition,Encounter").await,
    )
    .await;
    assert_eq!(m.output_organized_by.as_deref(), Some("Patient"));
    assert!(m.output.len() > 1, "blocks spread over several files");
    let mut patients = Vec::new();
    for f in &m.output {
        assert!(f.resource_type.is_none(), "SRV-157: no type on organised output items");
        let l = lines(&f.url).await;
        let headers = l.iter().filter(|r| r["resourceType"] == "Parameters").count();
        assert_eq!(Some((l.len() - headers) as u64), f.count, "SRV-160: count is resources, headers not included");
        let mut current = None;
        for r in l {
            if r["resourceType"] == "Parameters" {
                assert_eq!(r["parameter"][0]["name"], "header");
                current = Some(r["parameter"][0]["valueReference"]["reference"].as_str().unwrap().to_string());
                continue;
            }
            let header = current.clone().expect("a block starts with its header");
            assert_eq!(format!("Patient/{}", owner(&r).unwrap()), header);
            if r["resourceType"] == "Patient" {
                patients.push(r["id"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(patients, (0..6).map(|p| format!("pat-{p}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn organized_file_counts_exclude_the_parameters_headers() {
    // SRV-160: `count` is the number of resources in the file; the block
    // headers of SRV-096 are not resources (as the SMART reference server counts).
    let server = MockServer::builder().open().patients(3).start().await;
    let (_, m) = manifest(&kickoff(&server, "Patient/$export", "organizeOutputBy=Patient&_type=Patient").await).await;
    let l = lines(&m.output[0].url).await;
    assert_eq!(l.len(), 6, "three blocks of a header and a Patient");
    assert_eq!(m.output[0].count, Some(3));
}

#[tokio::test]
async fn partial_manifests_chain_pages_that_cover_every_file_once() {
    let server = MockServer::builder().open().patients(10).manifest_page_size(4).start().await;
    let params =
        json!({"resourceType": "Parameters", "parameter": [{"name": "allowPartialManifests", "valueBoolean": true}]});
    let mut url = kickoff_post(&server, "$export", params).await;
    let mut files = Vec::new();
    let mut pages = 0;
    loop {
        let (_, m) = manifest(&url).await;
        pages += 1;
        files.extend(m.output.iter().map(|f| f.url.clone()));
        match m.link.first() {
            Some(link) => {
                assert_eq!(link.relation, "next");
                url = link.url.clone();
            }
            None => break,
        }
    }
    assert_eq!(pages, 6, "21 files in pages of 4");
    let unique: HashSet<_> = files.iter().collect();
    assert_eq!(unique.len(), files.len(), "no file listed twice");
    assert_eq!(files.len(), 21);
}

#[tokio::test]
async fn a_slow_job_answers_202_with_progress_and_retry_after() {
    let server = MockServer::builder().open().patients(5).job_duration(Duration::from_secs(3600)).start().await;
    let status = kickoff(&server, "$export", "").await;
    let r = http().get(&status).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let progress = r.headers()["x-progress"].to_str().unwrap().to_string();
    assert!(progress.len() < 100 && progress.contains("complete"), "{progress}");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry));
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn separate_export_status_reports_the_job_in_a_header() {
    let server = MockServer::builder().open().patients(5).start().await;
    let r = http()
        .get(format!("{}/$export?_type=Patient", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async, separate-export-status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let applied = r.headers()["preference-applied"].to_str().unwrap();
    assert!(applied.contains("respond-async") && applied.contains("separate-export-status"), "{applied}");
    let url = r.headers()["content-location"].to_str().unwrap().to_string();
    let mut last = String::new();
    for _ in 0..4000 {
        let r = http().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "SRV-044: polls answer 200 in separate mode");
        last = r.headers()["x-export-status"].to_str().unwrap().to_string();
        if last != "202" {
            let m: bulkmock_wire::Manifest = r.json().await.unwrap();
            assert_eq!(m.output.len(), 1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(last, "200");

    let slow = MockServer::builder().open().patients(5).job_duration(Duration::from_secs(3600)).start().await;
    let r = http()
        .get(format!("{}/$export", slow.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async,separate-export-status")
        .send()
        .await
        .unwrap();
    let url = r.headers()["content-location"].to_str().unwrap().to_string();
    let r = http().get(&url).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-export-status"].to_str().unwrap()), (200, "202"));
}

#[tokio::test]
async fn lenient_handling_runs_the_export_and_reports_ignored_parameters() {
    let server = MockServer::builder().open().patients(4).start().await;
    let r = http()
        .get(format!("{}/$export?_type=Patient,Spaceship&foo=bar", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async, handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers()["preference-applied"].to_str().unwrap().contains("handling=lenient"));
    let url = r.headers()["content-location"].to_str().unwrap().to_string();
    let (_, m) = manifest(&url).await;
    assert_eq!(m.output.len(), 1);
    assert_eq!(m.error.len(), 1, "SRV-046: ignored parameters are reported in error files");
    let outcomes = lines(&m.error[0].url).await;
    assert_eq!(Some(outcomes.len() as u64), m.error[0].count);
    let text: Vec<String> =
        outcomes.iter().map(|o| o["issue"][0]["diagnostics"].as_str().unwrap().to_string()).collect();
    assert_eq!(text.len(), 2);
    assert!(text.iter().any(|t| t.contains("Spaceship")) && text.iter().any(|t| t.contains("\"foo\"")), "{text:?}");
    assert!(outcomes.iter().all(|o| o["resourceType"] == "OperationOutcome"));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_files_and_job_ids() {
    let a = MockServer::builder().open().patients(8).seed(99).start().await;
    let b = MockServer::builder().open().patients(8).seed(99).start().await;
    let (sa, sb) = (kickoff(&a, "$export", "_type=Claim").await, kickoff(&b, "$export", "_type=Claim").await);
    assert_eq!(sa.rsplit('/').next(), sb.rsplit('/').next(), "job ids derive from the seed");
    let (_, ma) = manifest(&sa).await;
    let (_, mb) = manifest(&sb).await;
    assert_eq!(output_by_type(&ma).await, output_by_type(&mb).await);
}

#[tokio::test]
async fn a_folder_of_ndjson_is_served_as_the_data_set() {
    let dir = std::env::temp_dir().join(format!("bulkmock-export-folder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let patient = r#"{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2022-05-01T00:00:00Z"}}"#;
    let obs = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}"#;
    std::fs::write(dir.join("data.ndjson"), format!("{patient}\n{obs}\n")).unwrap();
    let server = MockServer::builder().open().data_dir(&dir).start().await;
    let (_, m) = manifest(&kickoff(&server, "Patient/$export", "").await).await;
    let mut raw = Vec::new();
    for f in &m.output {
        raw.push(http().get(&f.url).send().await.unwrap().text().await.unwrap());
    }
    assert_eq!(raw, vec![format!("{patient}\n"), format!("{obs}\n")], "lines served byte for byte");
    let (_, m) = manifest(&kickoff(&server, "$export", "_since=2022-01-01T00:00:00Z&_type=Patient").await).await;
    assert_eq!(m.output.len(), 1);
}

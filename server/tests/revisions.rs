//! Data that changes over time (issue 14, item 1): revisions are a pure
//! function of (seed, size, revision, timeline); every change of revision `k`
//! carries `lastUpdated = T_k`; `_since = transactionTime` returns exactly
//! the next revisions' changes; a job keeps serving its kick-off revision.
//! Also Group create (item 5).

mod common;

use std::collections::BTreeSet;

use bulkmock_server::MockServer;
use bulkmock_server::data::DataSource;
use bulkmock_server::data::clock::instant_string;
use bulkmock_server::data::revision::{REVISION0_END, Timeline};
use bulkmock_server::data::synthetic::{Density, Synthetic};
use bulkmock_server::export::expected::revision_state;
use bulkmock_server::export::plan::Level;
use common::*;
use serde_json::{Value, json};

const EPOCH: i64 = REVISION0_END + 86_400;
const BASE: &str = "http://127.0.0.1:1/fhir";

/// Every resource index of `ty` in `d`.
fn indices(d: &dyn DataSource, ty: usize) -> Vec<u64> {
    if d.types()[ty].in_patient_compartment {
        (0..d.patient_count()).flat_map(|p| d.patient_resources(ty, p)).collect()
    } else {
        (0..d.standalone_count(ty)).collect()
    }
}

/// Every resource's header and JSON, by type and index.
fn dump(d: &dyn DataSource) -> Vec<(usize, u64, bool, i64, Vec<u8>)> {
    let mut all = Vec::new();
    for ty in 0..d.types().len() {
        for i in indices(d, ty) {
            let h = d.header(ty, i);
            let mut json = Vec::new();
            d.write_resource(ty, i, &mut json).unwrap();
            all.push((ty, i, h.deleted, h.last_updated, json));
        }
    }
    all
}

#[test]
fn revisions_are_a_pure_function_and_revision_zero_is_unchanged() {
    let timeline = Timeline::new(EPOCH, 1);
    let a = Synthetic::at(7, 30, BASE, timeline, 3);
    let b = Synthetic::at(7, 30, BASE, timeline, 3);
    assert_eq!(dump(&a), dump(&b), "same (seed, size, revision, timeline), same bytes");
    let zero = Synthetic::at(7, 30, BASE, timeline, 0);
    assert_eq!(dump(&zero), dump(&Synthetic::new(7, 30, BASE)), "revision 0 is today's population");
    let via_view = a.at_revision(3).unwrap();
    assert_eq!(dump(via_view.as_ref()), dump(&a));
}

#[test]
fn realistic_revisions_are_a_pure_function_too() {
    let timeline = Timeline::new(EPOCH, 1);
    let at = |r| Synthetic::at(7, 5, BASE, timeline, r).with_density(Density::Realistic);
    let a = at(2);
    assert_eq!(dump(&a), dump(&at(2)), "same (seed, size, density, revision, timeline), same bytes");
    assert_eq!(dump(a.at_revision(2).unwrap().as_ref()), dump(&a), "a view keeps its density");
    let zero = Synthetic::new(7, 5, BASE).with_density(Density::Realistic);
    assert_eq!(dump(&at(0)), dump(&zero), "revision 0 is the population without revisions");
    let light = dump(&Synthetic::at(7, 5, BASE, timeline, 2));
    assert!(dump(&a).len() > 10 * light.len(), "realistic patients have many more resources");
}

/// Changes of revision `k` (against `k - 1`): (type, id) updated or added, and deleted.
/// Resources by (type, id).
type Keys = BTreeSet<(String, String)>;

fn changes(prev: &dyn DataSource, cur: &dyn DataSource) -> (Keys, Keys) {
    let (mut upserted, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    let before: std::collections::HashMap<(usize, u64), (bool, i64, Vec<u8>)> =
        dump(prev).into_iter().map(|(t, i, d, l, j)| ((t, i), (d, l, j))).collect();
    for (t, i, d, l, json) in dump(cur) {
        let key = (cur.types()[t].name.clone(), cur.resource_id(t, i));
        let old = before.get(&(t, i));
        if old.is_some_and(|(od, ol, oj)| (*od, *ol, oj) == (d, l, &json)) {
            continue;
        }
        assert!(!old.is_some_and(|o| o.0), "a deleted resource never comes back: {key:?}");
        assert_eq!(
            l,
            cur.revision_time().unwrap(),
            "every change of revision {} is stamped T_k: {key:?}",
            cur.revision()
        );
        if d {
            deleted.insert(key)
        } else {
            upserted.insert(key)
        };
    }
    (upserted, deleted)
}

#[test]
fn every_change_of_revision_k_is_stamped_t_k_and_nothing_is_later() {
    let timeline = Timeline::new(EPOCH, 60);
    let (updates, deletes) = stamped(&|r| Synthetic::at(11, 40, BASE, timeline, r), 4);
    assert!(updates > 0 && deletes > 0, "updates {updates}, deletes {deletes}");
    let (first, last) = (Synthetic::at(11, 400, BASE, timeline, 0), Synthetic::at(11, 400, BASE, timeline, 8));
    let (before, after) =
        (&first.group("diabetes-cohort").unwrap().members, &last.group("diabetes-cohort").unwrap().members);
    assert!(before.iter().any(|p| !after.contains(p)), "members leave the cohort");
    assert!(after.iter().any(|p| p < 400 && !before.contains(p)), "existing patients join the cohort");
    assert!(after.iter().any(|p| p >= 400), "new patients join the cohort");
}

#[test]
fn realistic_changes_are_stamped_t_k_and_nothing_is_later() {
    let timeline = Timeline::new(EPOCH, 60);
    let data = |r| Synthetic::at(11, 4, BASE, timeline, r).with_density(Density::Realistic);
    let (updates, deletes) = stamped(&data, 1);
    assert!(updates > 0 && deletes > 0, "updates {updates}, deletes {deletes}");
}

/// Checks revisions `1..=last` of `data` against the previous one: every
/// change stamped `T_k`, nothing later, patients added, groups changing.
/// Returns the updates and deletions seen.
fn stamped(data: &dyn Fn(u64) -> Synthetic, last: u64) -> (usize, usize) {
    let (mut updates, mut deletes) = (0, 0);
    for k in 1..=last {
        let (prev, cur) = (data(k - 1), data(k));
        assert_eq!(cur.revision_time(), Some(EPOCH + 60 * k as i64));
        assert!(cur.patient_count() > prev.patient_count(), "revision {k} adds patients");
        for (_, _, _, last_updated, _) in dump(&cur) {
            assert!(last_updated <= cur.revision_time().unwrap(), "nothing is later than T_{k}");
        }
        let (u, d) = changes(&prev, &cur);
        updates += u.len();
        deletes += d.len();
        for id in ["all-patients", "diabetes-cohort", "sample-10", "quarter"] {
            assert_ne!(prev.group(id).unwrap().members, cur.group(id).unwrap().members, "{id} changes in {k}");
        }
    }
    (updates, deletes)
}

fn since(t: &str) -> String {
    format!("_since={t}")
}

/// (type, id) of every line of a manifest's `output` and of its `deleted` entries.
async fn export_keys(m: &bulkmock_wire::Manifest) -> (Keys, Keys) {
    let mut out = BTreeSet::new();
    for (ty, lines) in output_by_type(m).await {
        out.extend(lines.iter().map(|v| (ty.clone(), v["id"].as_str().unwrap().to_string())));
    }
    let mut deleted = BTreeSet::new();
    for file in m.deleted.iter().flatten() {
        let got = lines(&file.url).await;
        assert_eq!(Some(got.len() as u64), file.count);
        for bundle in got {
            let url = bundle["entry"][0]["request"]["url"].as_str().unwrap().to_string();
            let (ty, id) = url.split_once('/').unwrap();
            deleted.insert((ty.to_string(), id.to_string()));
        }
    }
    (out, deleted)
}

#[tokio::test(flavor = "multi_thread")]
async fn since_transaction_time_returns_exactly_the_next_revisions_changes() {
    since_returns_the_changes(MockServer::builder().patients(24).resources_per_file(60), Density::Light).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_since_transaction_time_returns_exactly_the_next_revisions_changes() {
    // Four patients at revision 0, twenty at revision 2 (eight join per revision).
    let builder = MockServer::builder().patients(4).seed(5).resources_per_file(5_000);
    since_returns_the_changes(builder, Density::Realistic).await;
}

/// Every resource of a manifest's `output` by (type, id).
async fn output_state(m: &bulkmock_wire::Manifest) -> std::collections::BTreeMap<(String, String), Value> {
    let mut state = std::collections::BTreeMap::new();
    for (ty, lines) in output_by_type(m).await {
        for v in lines {
            assert!(state.insert((ty.clone(), v["id"].as_str().unwrap().to_string()), v).is_none());
        }
    }
    state
}

async fn since_returns_the_changes(builder: bulkmock_server::MockServerBuilder, density: Density) {
    let server = builder.density(density).open().revision_epoch(EPOCH).start().await;
    let (_, full) = manifest(&kickoff(&server, "$export", "").await).await;
    assert_eq!(full.transaction_time, instant_string(EPOCH), "transactionTime = T_0");
    let full_status = kickoff(&server, "$export", "").await;

    assert_eq!(server.advance_revision(), 1);
    // The job kicked off before the advance still serves revision 0, matching its manifest.
    let (_, old) = manifest(&full_status).await;
    assert_eq!(old.transaction_time, instant_string(EPOCH));
    let before: usize = output_by_type(&old).await.values().map(Vec::len).sum();
    let at_zero: usize = full.output.iter().map(|f| f.count.unwrap() as usize).sum();
    assert_eq!(before, at_zero, "a job keeps its kick-off revision");

    server.set_revision(2);
    let (_, delta) = manifest(&kickoff(&server, "$export", &since(&full.transaction_time)).await).await;
    assert_eq!(delta.transaction_time, instant_string(EPOCH + 2));
    let (got_out, got_deleted) = export_keys(&delta).await;
    let (mut want_out, mut want_deleted) = changes(server.data_at(0).as_ref(), server.data_at(1).as_ref());
    let (u2, d2) = changes(server.data_at(1).as_ref(), server.data_at(2).as_ref());
    want_out.extend(u2.iter().cloned());
    want_deleted.extend(d2.iter().cloned());
    want_out.retain(|k| !want_deleted.contains(k));
    assert!(!want_out.is_empty() && !want_deleted.is_empty());
    assert_eq!(got_out, want_out, "_since = transactionTime: every update, nothing else");
    assert_eq!(got_deleted, want_deleted, "deleted entries for exactly the deletions");

    // At the boundary: `_since = T_2` (the latest transactionTime) holds nothing; `_since = T_1` only revision 2.
    let (_, none) = manifest(&kickoff(&server, "$export", &since(&delta.transaction_time)).await).await;
    let (o, d) = export_keys(&none).await;
    assert!(o.is_empty() && d.is_empty(), "nothing changed after T_2");
    let (_, only_two) = manifest(&kickoff(&server, "$export", &since(&instant_string(EPOCH + 1))).await).await;
    let (o, _) = export_keys(&only_two).await;
    assert_eq!(o, u2.into_iter().filter(|k| !d2.contains(k)).collect());

    // The full export at revision 0 with the delta applied is exactly revision 2's state.
    let mut state = output_state(&full).await;
    state.retain(|k, _| !got_deleted.contains(k));
    state.extend(output_state(&delta).await);
    let want: std::collections::BTreeMap<(String, String), Value> =
        revision_state(server.data_at(2).as_ref(), Level::System)
            .unwrap()
            .into_iter()
            .map(|(k, line)| (k, serde_json::from_slice(&line).unwrap()))
            .collect();
    assert_eq!(state.len(), want.len(), "{density}: resources at revision 2");
    assert!(state == want, "{density}: revision 0 plus the delta is revision 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_offset_shifts_transaction_time() {
    let server = MockServer::builder().open().patients(3).clock_offset(-7200).start().await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t = server.current_data().revision_time().unwrap();
    assert_eq!(m.transaction_time, instant_string(t));
    assert!(t <= now - 7200 + 1 && t >= now - 7200 - 600, "transactionTime two hours behind the clock");
}

async fn create(server: &MockServer, auth: &str, group: Value) -> reqwest::Response {
    http()
        .post(format!("{}/Group", server.fhir_base()))
        .header("Authorization", auth)
        .header("Content-Type", "application/fhir+json")
        .body(group.to_string())
        .send()
        .await
        .unwrap()
}

async fn get(url: &str, auth: &str) -> (u16, Value) {
    let r = http().get(url).header("Authorization", auth).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn created_groups_are_read_exported_owned_and_cleared_by_reset() {
    let server = MockServer::builder().patients(20).admin().start().await;
    let auth = format!("Bearer {}", server.issue_token("system/*.rs"));
    let r = create(
        &server,
        &auth,
        json!({"resourceType": "Group", "name": "mine", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/pat-3"}}, {"entity": {"reference": "Patient/pat-5"}}]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let (code, group) = get(&location, &auth).await;
    assert_eq!(code, 200);
    assert_eq!(group["quantity"], 2);
    let id = group["id"].as_str().unwrap().to_string();

    // Exported like any Group.
    let r = http()
        .get(format!("{}/Group/{id}/$export?_type=Patient", server.fhir_base()))
        .header("Authorization", &auth)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let mut manifest = Value::Null;
    for _ in 0..4000 {
        let (code, body) = get(&status, &auth).await;
        if code == 200 {
            manifest = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let body = http().get(url).header("Authorization", &auth).send().await.unwrap().text().await.unwrap();
    let ids: Vec<String> =
        body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["pat-3", "pat-5"]);

    // A characteristic filter: female patients, checked against the data.
    let r = create(
        &server,
        &auth,
        json!({"resourceType": "Group", "characteristic": [{
        "code": {"text": "gender"}, "valueCodeableConcept": {"coding": [{"code": "female"}]}, "exclude": false}]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let group: Value = r.json().await.unwrap();
    let data = server.current_data();
    let pt = data.type_index("Patient").unwrap();
    let females: Vec<String> = (0..data.patient_count())
        .filter(|&p| {
            let mut buf = Vec::new();
            data.write_resource(pt, p, &mut buf).unwrap();
            serde_json::from_slice::<Value>(&buf).unwrap()["gender"] == "female"
        })
        .map(|p| format!("Patient/{}", data.patient_id(p)))
        .collect();
    let members: Vec<String> = group["member"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["entity"]["reference"].as_str().unwrap().to_string())
        .collect();
    assert!(!females.is_empty());
    assert_eq!(members, females);

    // Born in the 1980s and not female: birthdate AND (gender excluded).
    let r = create(
        &server,
        &auth,
        json!({"resourceType": "Group", "characteristic": [
        {"code": {"coding": [{"code": "birthdate"}]}, "valuePeriod": {"start": "1980-01-01", "end": "1989-12-31"}},
        {"code": {"text": "gender"}, "valueCodeableConcept": {"text": "female"}, "exclude": true}]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let group: Value = r.json().await.unwrap();
    let want: Vec<String> = (0..data.patient_count())
        .filter(|&p| {
            let mut buf = Vec::new();
            data.write_resource(pt, p, &mut buf).unwrap();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            let born = v["birthDate"].as_str().unwrap();
            v["gender"] != "female" && ("1980-01-01"..="1989-12-31").contains(&born)
        })
        .map(|p| format!("Patient/{}", data.patient_id(p)))
        .collect();
    let got: Vec<String> = group["member"]
        .as_array()
        .map_or(Vec::new(), |m| m.iter().map(|m| m["entity"]["reference"].as_str().unwrap().to_string()).collect());
    assert_eq!(got, want);
    assert_eq!(group["quantity"], want.len());

    // Unsupported characteristic and unknown member: 400 naming it.
    let r = create(
        &server,
        &auth,
        json!({"resourceType": "Group", "characteristic": [{"code": {"text": "postcode"}, "valueString": "1"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("postcode"));
    let r = create(
        &server,
        &auth,
        json!({"resourceType": "Group", "member": [{"entity": {"reference": "Patient/nobody"}}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Patient/nobody"));

    // Another client does not see it.
    let other = other_client(&server).await;
    assert_eq!(get(&location, &other).await.0, 404);

    // Admin reset clears it.
    let r = http().post(format!("{}/_admin/reset", server.fhir_base().trim_end_matches("/fhir"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&location, &auth).await.0, 404);
}

/// A second registered client's bearer token (through the token endpoint).
async fn other_client(server: &MockServer) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let key = bulkmock_server::ClientKey::generate(bulkmock_server::KeyAlg::Es384).unwrap();
    let id = server
        .register_client(bulkmock_server::Registration {
            client_id: Some("other".into()),
            jwks: Some(serde_json::to_value(key.jwks()).unwrap()),
            ..Default::default()
        })
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let header = json!({"alg": key.alg.name(), "typ": "JWT", "kid": key.kid});
    let claims = json!({"iss": id, "sub": id, "aud": server.token_url(), "exp": now + 120, "jti": "jti-other"});
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding_key(), key.alg.algorithm()).unwrap();
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &format!("{input}.{signature}")),
            ("scope", "system/*.rs"),
        ])
        .finish();
    let r = http()
        .post(server.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    format!("Bearer {}", body["access_token"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_and_completed_exports_advance_the_revision() {
    let server = MockServer::builder().open().patients(5).admin().start().await;
    let admin = format!("{}/_admin/revision", server.fhir_base().trim_end_matches("/fhir"));
    let r: Value = http().post(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["revision"], 1);
    assert_eq!(r["patients"], 5 + 8);
    let r: Value = http().post(&admin).body(r#"{"revision": 3}"#).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["revision"], 3);
    let time = r["time"].as_str().unwrap().to_string();
    let r = http().post(&admin).body(r#"{"revision": 1}"#).send().await.unwrap();
    assert_eq!(r.status(), 409, "revisions only move forward");
    assert!(r.text().await.unwrap().contains("in the past"));
    assert_eq!(http().post(&admin).body("{}").send().await.unwrap().status(), 400);
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    assert_eq!(m.transaction_time, time, "transactionTime is T_3");
    http().post(format!("{}/_admin/reset", server.fhir_base().trim_end_matches("/fhir"))).send().await.unwrap();
    assert_eq!(server.revision(), 0);

    let after = MockServer::builder()
        .open()
        .patients(5)
        .auto_advance(bulkmock_server::data::revision::AutoAdvance::AfterExport)
        .start()
        .await;
    let (_, first) = manifest(&kickoff(&after, "$export", "_type=Patient").await).await;
    assert_eq!(after.revision(), 1, "a completed export advanced the data set");
    let (_, second) = manifest(&kickoff(&after, "$export", &since(&first.transaction_time)).await).await;
    assert_eq!(after.revision(), 2);
    let (o, _) = export_keys(&second).await;
    let (u1, d1) = changes(after.data_at(0).as_ref(), after.data_at(1).as_ref());
    assert_eq!(o, u1.into_iter().filter(|k| !d1.contains(k)).collect(), "the second export holds revision 1's changes");
}

#[test]
fn a_data_folder_does_not_change() {
    let dir = std::env::temp_dir().join(format!("bulkmock-rev-folder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Patient.ndjson"), "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n").unwrap();
    let folder: std::sync::Arc<dyn DataSource> =
        std::sync::Arc::new(bulkmock_server::data::folder::Folder::load(&dir, BASE).unwrap());
    let revisions = bulkmock_server::data::revision::Revisions::new(folder, Default::default());
    let refused = revisions.advance().unwrap_err();
    assert!(refused.contains("--data"), "{refused}");
    assert_eq!(revisions.revision(), 0);
}

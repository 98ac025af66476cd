//! Helpers shared by the server's integration tests: a tiny Bulk Data client
//! and the expected export computed straight from the data set.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bulkmock_server::MockServer;
use bulkmock_wire::Manifest;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// An HTTP client that never decompresses on its own.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// A GET kick-off request to `url` with the headers a kick-off needs
/// (`Accept: application/fhir+json`, `Prefer: respond-async`; SRV-041, SRV-042).
pub fn export_get(url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
    http().get(url).header("Accept", "application/fhir+json").header("Prefer", "respond-async")
}

/// A GET kick-off; returns the status URL (asserting a 202 + absolute Content-Location).
pub async fn kickoff(server: &MockServer, path: &str, query: &str) -> String {
    let url = if query.is_empty() {
        format!("{}/{path}", server.fhir_base())
    } else {
        format!("{}/{path}?{query}", server.fhir_base())
    };
    let r = http()
        .get(&url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    status_url(r).await
}

/// A POST kick-off with a Parameters body.
pub async fn kickoff_post(server: &MockServer, path: &str, parameters: Value) -> String {
    let r = post(server, path, parameters, &[]).await;
    status_url(r).await
}

/// A POST kick-off returning the raw response.
pub async fn post(server: &MockServer, path: &str, parameters: Value, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http()
        .post(format!("{}/{path}", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Content-Type", "application/fhir+json")
        .body(parameters.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn status_url(r: reqwest::Response) -> String {
    let status = r.status();
    let location = r.headers().get("content-location").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status, 202, "kick-off failed: {}", r.text().await.unwrap());
    let location = location.expect("202 without Content-Location");
    assert!(location.starts_with("http://"), "Content-Location must be absolute: {location}");
    location
}

/// Polls a status URL until it stops answering 202; returns the final response.
/// Jobs in these tests have zero duration, so this waits only for the job's
/// counting work; polls are bounded.
pub async fn poll_until_done(url: &str) -> reqwest::Response {
    for _ in 0..4000 {
        let r = http().get(url).send().await.unwrap();
        if r.status() != 202 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job at {url} still in progress after 4000 polls");
}

/// Polls until complete and parses the manifest.
pub async fn manifest(url: &str) -> (HeaderMap, Manifest) {
    let r = poll_until_done(url).await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    (headers, r.json().await.unwrap())
}

/// Downloads a file and returns its lines as JSON values (asserting Content-Length and type).
pub async fn lines(url: &str) -> Vec<Value> {
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
    let declared: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), declared);
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "NDJSON ends with a newline");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every output line of a manifest, grouped by resource type, checking `count`.
pub async fn output_by_type(m: &Manifest) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for file in &m.output {
        let got = lines(&file.url).await;
        assert_eq!(Some(got.len() as u64), file.count, "count of {}", file.url);
        let ty = file.resource_type.clone().expect("type on output items");
        for v in &got {
            assert_eq!(v["resourceType"], ty.as_str(), "every line of {} is a {ty}", file.url);
        }
        out.entry(ty).or_default().extend(got);
    }
    out
}

/// The resources of `ty` the data set holds for `patients` (or all, for a
/// standalone type), excluding deleted ones, in export order.
pub fn expected(server: &MockServer, ty: &str, patients: impl IntoIterator<Item = u64>) -> Vec<Value> {
    let data = server.data();
    let t = data.type_index(ty).unwrap();
    let indices: Vec<u64> = if data.types()[t].in_patient_compartment {
        patients.into_iter().flat_map(|p| data.patient_resources(t, p)).collect()
    } else {
        (0..data.standalone_count(t)).collect()
    };
    indices
        .into_iter()
        .filter(|&i| !data.header(t, i).deleted)
        .map(|i| {
            let mut buf = Vec::new();
            data.write_resource(t, i, &mut buf).unwrap();
            serde_json::from_slice(&buf).unwrap()
        })
        .collect()
}

/// The ids of a list of resources.
pub fn ids(resources: &[Value]) -> Vec<String> {
    resources.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// The patient a resource belongs to (`pat-N`), from its usual patient reference.
pub fn owner(resource: &Value) -> Option<String> {
    ["subject", "patient", "beneficiary"]
        .iter()
        .find_map(|k| resource[*k]["reference"].as_str())
        .or_else(|| resource["target"][0]["reference"].as_str())
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .or_else(|| (resource["resourceType"] == "Patient").then(|| resource["id"].as_str().unwrap().to_string()))
}

/// Up to `n` of patient `p`'s resources of type `t`, spread over its range,
/// the last one included (for checks too slow to run on every resource).
pub fn spread_sample(data: &dyn bulkmock_server::data::DataSource, t: usize, p: u64, n: u64) -> Vec<u64> {
    let range = data.patient_resources(t, p);
    if range.is_empty() {
        return Vec::new();
    }
    let step = (range.end - range.start).div_ceil(n).max(1);
    let last = range.end - 1;
    range.step_by(step as usize).chain([last]).collect()
}

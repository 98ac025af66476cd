//! The wire-validity observer (`tests/src/wire/`) sees a real export, finds
//! it valid, and catches what is planted in it: a `null` manifest member, a
//! corrupt gzip body, a wrong count. A fault that declares the broken
//! invariant silences exactly that finding.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bulkmock_harness::adapter::Builtin;
use bulkmock_harness::runner::{self, Observer, RunOptions};
use bulkmock_harness::scenario;
use bulkmock_server::capture::CapturedResponse;
use bulkmock_server::faults::invariants::Invariant;
use bulkmock_tests::wire::observe;
use serde_json::Value;

/// The responses of one run of `happy/system-export` (ES384, GET) by the reference client.
async fn system_export() -> Vec<CapturedResponse> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/happy/system-export.toml");
    let files = scenario::load_paths(&[path]).expect("the scenario loads");
    let cases: Vec<scenario::Case> =
        files.into_iter().flat_map(|f| f.cases).filter(|c| c.id.ends_with("alg=ES384,post=false")).collect();
    assert_eq!(cases.len(), 1);
    let seen: Arc<Mutex<Vec<CapturedResponse>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let observer = Observer(Arc::new(move |_: &scenario::Case, _: &[_], responses| {
        sink.lock().unwrap().extend(responses);
    }));
    let options = RunOptions { jobs: 1, observer: Some(observer), ..RunOptions::default() };
    let report = runner::run(cases, Arc::new(Builtin::default()), &options, &|_| {}).await.expect("the run starts");
    assert!(report.passed(false), "the reference client passes the case");
    std::mem::take(&mut *seen.lock().unwrap())
}

fn is_manifest(r: &CapturedResponse) -> bool {
    r.status == 200 && r.path.contains("/bulkstatus/")
}

fn is_file(r: &CapturedResponse) -> bool {
    r.status == 200 && r.path.contains("/bulkfiles/")
}

/// Replaces a JSON body, keeping `Content-Length` true.
fn set_json(response: &mut CapturedResponse, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&response.body).expect("a JSON body");
    edit(&mut v);
    response.body = serde_json::to_vec(&v).unwrap();
    set_len(response);
}

fn set_len(response: &mut CapturedResponse) {
    response.sent = response.body.len() as u64;
    response.announced_length = Some(response.sent);
    for (name, value) in &mut response.headers {
        if name == "content-length" {
            *value = response.sent.to_string();
        }
    }
}

fn found(responses: &[CapturedResponse]) -> Vec<(Invariant, String)> {
    observe(responses).into_iter().map(|v| (v.invariant, v.message)).collect()
}

#[tokio::test]
async fn a_real_export_is_valid_and_fully_observed() {
    let responses = system_export().await;
    let kinds = |f: fn(&CapturedResponse) -> bool| responses.iter().filter(|r| f(r)).count();
    // Not vacuous: the token, the kick-off, the manifest and every file were seen whole.
    assert_eq!(kinds(|r| r.path.ends_with("/auth/token") && r.status == 200), 1);
    assert_eq!(kinds(|r| r.path.ends_with("/$export") && r.status == 202), 1);
    assert_eq!(kinds(is_manifest), 1);
    assert!(kinds(is_file) >= 3, "files downloaded");
    assert!(responses.iter().filter(|r| is_file(r)).all(|r| r.whole() && r.header("content-encoding") == Some("gzip")));
    assert_eq!(found(&responses), vec![]);
}

#[tokio::test]
async fn a_planted_null_member_is_caught_unless_declared() {
    let mut responses = system_export().await;
    let manifest = responses.iter_mut().find(|r| is_manifest(r)).unwrap();
    set_json(manifest, |v| {
        v["deleted"] = Value::Null;
    });
    let caught = found(&responses);
    assert!(
        caught.iter().any(|(i, m)| *i == Invariant::Manifest && m.contains("null at $.deleted")),
        "caught: {caught:?}"
    );
    responses.iter_mut().find(|r| is_manifest(r)).unwrap().deliberate.push(Invariant::Manifest);
    assert_eq!(found(&responses), vec![]);
}

#[tokio::test]
async fn a_planted_corrupt_gzip_body_is_caught_unless_declared() {
    let mut responses = system_export().await;
    let file = responses.iter_mut().find(|r| is_file(r)).unwrap();
    let middle = file.body.len() / 2;
    for byte in &mut file.body[middle..middle + 8] {
        *byte ^= 0xff;
    }
    let caught = found(&responses);
    assert!(caught.iter().any(|(i, m)| *i == Invariant::Gzip && m.contains("does not decode")), "caught: {caught:?}");
    responses.iter_mut().find(|r| is_file(r)).unwrap().deliberate.push(Invariant::Gzip);
    assert_eq!(found(&responses), vec![]);
}

#[tokio::test]
async fn a_planted_wrong_count_is_caught_unless_declared() {
    let mut responses = system_export().await;
    let manifest = responses.iter_mut().find(|r| is_manifest(r)).unwrap();
    set_json(manifest, |v| {
        let count = v["output"][0]["count"].as_u64().expect("counts are given");
        v["output"][0]["count"] = (count + 1).into();
    });
    let caught = found(&responses);
    assert!(caught.iter().any(|(i, m)| *i == Invariant::Count && m.contains("the file holds")), "caught: {caught:?}");
    responses.iter_mut().find(|r| is_manifest(r)).unwrap().deliberate.push(Invariant::Count);
    assert_eq!(found(&responses), vec![]);
}

#[tokio::test]
async fn a_body_cut_by_the_server_is_caught() {
    let mut responses = system_export().await;
    let file = responses.iter_mut().find(|r| is_file(r)).unwrap();
    file.end = bulkmock_server::capture::BodyEnd::Failed;
    file.sent /= 2;
    let caught = found(&responses);
    assert!(
        caught.iter().any(|(i, m)| *i == Invariant::Length && m.contains("the server cut it")),
        "caught: {caught:?}"
    );
}

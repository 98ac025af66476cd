//! Helpers for the client's tests against the in-process mock: a client with
//! fast retries, output folders read back as maps, and transcript counts.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkmock_client::{Client, Credentials, Event, ExportRequest, Level, Policy, Summary};
use bulkmock_server::{FaultRule, MockServer};

/// Short waits, so retries happen in milliseconds; read timeout short enough for stalls.
pub fn fast() -> Policy {
    Policy {
        min_wait: Duration::from_millis(5),
        max_wait: Duration::from_millis(300),
        read_timeout: Duration::from_secs(2),
        ..Policy::default()
    }
}

/// Credentials of the server's demo client.
pub fn credentials(server: &MockServer) -> Credentials {
    let key = server.client_key();
    Credentials::from_pem(server.client_id(), key.private_pem.as_bytes(), &key.kid, "system/*.rs").unwrap()
}

/// A client of the demo identity with `parallel` downloads; events collected into `log`.
/// A server started with `tls()` is trusted through its CA.
pub async fn client_with(server: &MockServer, parallel: usize, gzip: bool, log: Arc<Mutex<Vec<Event>>>) -> Client {
    let mut builder = Client::builder(server.fhir_base());
    if let Some(ca) = server.ca_cert_pem() {
        builder = builder.ca_cert(ca);
    }
    builder
        .credentials(credentials(server))
        .policy(fast())
        .parallel(parallel)
        .gzip(gzip)
        .seed(7)
        .observer(logging(log))
        .build()
        .await
        .unwrap()
}

/// A client with 3 parallel downloads and gzip.
pub async fn client(server: &MockServer) -> Client {
    client_with(server, 3, true, Arc::default()).await
}

/// A fresh, empty output folder.
pub fn out_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkmock-client-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every data file of an output folder (relative path to bytes), `manifest.json` left out.
pub fn files(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut map = BTreeMap::new();
    for sub in ["", "deleted", "error"] {
        let Ok(entries) = std::fs::read_dir(out.join(sub)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".ndjson") {
                let key = if sub.is_empty() { name } else { format!("{sub}/{name}") };
                map.insert(key, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    map
}

/// A small data set with several files per type, so parallel downloads and merging matter.
pub async fn server() -> MockServer {
    MockServer::builder().patients(12).resources_per_file(40).start().await
}

/// The export of `request` from `server` with no faults, as files.
pub async fn baseline(server: &MockServer, request: &ExportRequest, tag: &str) -> BTreeMap<String, Vec<u8>> {
    let out = out_dir(&format!("{tag}-clean"));
    client_with(server, 1, false, Arc::default()).await.export(request, &out).await.unwrap();
    files(&out)
}

/// Requests the server saw since sequence number `from`, by path fragment.
pub fn requests(server: &MockServer, from: u64, path_contains: &str) -> usize {
    server.transcript().iter().filter(|e| e.seq >= from && e.path.contains(path_contains)).count()
}

/// The next transcript sequence number.
pub fn mark(server: &MockServer) -> u64 {
    server.transcript().last().map_or(0, |e| e.seq + 1)
}

/// Runs a clean export, adds `rules`, runs the same export again; asserts the
/// second output equals the first byte for byte. Returns the second summary and
/// the transcript sequence number where the second run started.
pub async fn assert_recovers(server: &MockServer, level: Level, rules: Vec<FaultRule>, tag: &str) -> (Summary, u64) {
    let request = ExportRequest::new(level);
    let expected = baseline(server, &request, tag).await;
    for rule in rules {
        server.faults().add(rule);
    }
    let from = mark(server);
    let out = out_dir(tag);
    let summary = client(server).await.export(&request, &out).await.unwrap_or_else(|e| panic!("{tag}: {e}"));
    let got = files(&out);
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{tag}: the same files");
    for (name, bytes) in &expected {
        assert!(
            got[name] == *bytes,
            "{tag}: {name} differs from the clean export ({} vs {} bytes)",
            got[name].len(),
            bytes.len()
        );
    }
    let fired = server.transcript().iter().filter(|e| e.seq >= from && e.fault.is_some()).count();
    assert!(fired > 0, "{tag}: the fault happened on the wire");
    let _ = std::fs::remove_dir_all(&out);
    (summary, from)
}

/// Non-deleted resources of `ty` in the data set (every patient).
pub fn expected_count(server: &MockServer, ty: &str) -> u64 {
    let data = server.data();
    let t = data.type_index(ty).unwrap();
    let indices: Vec<u64> = if data.types()[t].in_patient_compartment {
        (0..data.patient_count()).flat_map(|p| data.patient_resources(t, p)).collect()
    } else {
        (0..data.standalone_count(t)).collect()
    };
    indices.into_iter().filter(|&i| !data.header(t, i).deleted).count() as u64
}

/// An observer that keeps every event but byte counts in `log`.
pub fn logging(log: Arc<Mutex<Vec<Event>>>) -> bulkmock_client::Observer {
    Arc::new(move |e: &Event| {
        if !matches!(e, Event::FileBytes { .. }) {
            log.lock().unwrap().push(e.clone());
        }
    })
}

/// Asserts that a system export in `out` holds every type of the data set,
/// each with exactly its resources, as the summary says.
pub fn assert_whole_data_set(server: &MockServer, summary: &Summary, out: &Path) {
    assert_eq!(summary.resources.len(), server.data().types().len());
    for (ty, n) in &summary.resources {
        assert_eq!(*n, expected_count(server, ty), "{ty}");
        let lines = std::fs::read_to_string(out.join(format!("{ty}.ndjson"))).unwrap().lines().count() as u64;
        assert_eq!(lines, *n, "{ty} file");
    }
}

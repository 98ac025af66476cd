//! The load driver shared by `benches/load.rs` (200 clients against the
//! release `bulkmock serve`) and `tests/load.rs` (20 clients against a
//! `MockServer`): many reference clients at once, each registered as its own
//! client, each doing token + kick-off + polling + download against one server
//! with probabilistic faults, each output then verified against the expected export.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkmock_client::{Client, ClientError, Credentials, ExportRequest, Level, Policy, Summary};
use bulkmock_harness::verify::{OutputReport, verify};
use bulkmock_server::{ClientKey, KeyAlg};

/// The fault plan of a load run (seeded by the server's seed): transient 503s
/// on status polls, and resets and truncations of file bodies.
pub const FAULTS: &str = r#"
[[fault]]
name = "status-503"
on = "status"
when = { probability = 0.2 }
fault = { kind = "respond", status = 503, body = "transient", retry_after_s = 0 }

[[fault]]
name = "file-reset"
on = "file"
when = { probability = 0.05 }
fault = { kind = "reset", after_bytes = 1500 }

[[fault]]
name = "file-truncate"
on = "file"
when = { probability = 0.05 }
fault = { kind = "truncate", fraction = 0.5 }
"#;

/// The names of the rules of [`FAULTS`] (transcript `fault` labels).
pub const FAULT_NAMES: [&str; 3] = ["status-503", "file-reset", "file-truncate"];

/// Registers `n` clients at `POST {origin}/auth/register`, each with its own ES384 key.
pub async fn register(origin: &str, n: usize) -> Vec<Credentials> {
    let http = reqwest::Client::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = ClientKey::generate(KeyAlg::Es384).unwrap();
        let body = serde_json::json!({"name": format!("load client {i}"), "jwks": key.jwks(), "scope": "system/*.rs"});
        let r = http.post(format!("{origin}/auth/register")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "registration {i}");
        let reply: serde_json::Value = r.json().await.unwrap();
        let id = reply["client_id"].as_str().unwrap();
        out.push(Credentials::from_pem(id, key.private_pem.as_bytes(), &key.kid, "system/*.rs").unwrap());
    }
    out
}

/// One client's run: its summary (or error) and its output folder.
pub struct Run {
    /// The export's result.
    pub result: Result<Summary, ClientError>,
    /// Where it wrote its files.
    pub out: PathBuf,
}

/// Short waits (faults say `Retry-After: 0`), the default attempts and job deletion.
fn policy() -> Policy {
    Policy {
        min_wait: Duration::from_millis(20),
        max_wait: Duration::from_secs(2),
        read_timeout: Duration::from_secs(30),
        ..Policy::default()
    }
}

/// Runs one system-level export per credential, all at once, each with
/// `parallel` downloads into `scratch/client-N`; returns when all ended.
pub async fn run_clients(fhir_base: &str, credentials: Vec<Credentials>, scratch: &Path, parallel: usize) -> Vec<Run> {
    let tasks: Vec<_> = credentials
        .into_iter()
        .enumerate()
        .map(|(i, credentials)| {
            let base = fhir_base.to_string();
            let out = scratch.join(format!("client-{i}"));
            tokio::spawn(async move {
                let _ = std::fs::remove_dir_all(&out);
                let client = Client::builder(&base)
                    .credentials(credentials)
                    .policy(policy())
                    .parallel(parallel)
                    .seed(i as u64)
                    .build()
                    .await;
                let result = match client {
                    Ok(client) => client.export(&ExportRequest::new(Level::System), &out).await,
                    Err(e) => Err(e),
                };
                Run { result, out }
            })
        })
        .collect();
    let mut runs = Vec::with_capacity(tasks.len());
    for task in tasks {
        runs.push(task.await.unwrap());
    }
    runs
}

/// Whether an output holds exactly the expected export: every resource once and
/// intact, deletions and errors as exported, every file readable.
pub fn exact(report: &OutputReport) -> bool {
    report.resources_exact()
        && report.deleted.missing == 0
        && report.deleted.extra == 0
        && report.errors.missing == 0
        && report.errors.extra == 0
        && report.unreadable.is_empty()
}

/// Verifies a run's output against `expected` lines; returns the resources verified or why not.
pub fn check(run: &Run, expected: &[Vec<u8>]) -> Result<u64, String> {
    let summary = run.result.as_ref().map_err(|e| format!("{}: {e}", run.out.display()))?;
    let report = verify(&run.out, expected.iter().map(Vec::as_slice));
    if !exact(&report) || report.resources != report.expected_resources {
        return Err(format!("{} ({}): {report:?}", run.out.display(), summary.status_url));
    }
    Ok(report.resources)
}

/// Waits (bounded, `tries` × 10 ms) until `done` holds; false when it never did.
pub async fn eventually(tries: u32, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

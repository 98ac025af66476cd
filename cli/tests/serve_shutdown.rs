//! `bulkmock serve` stops gracefully on SIGTERM: no new connections, downloads
//! in flight finish within `--shutdown-grace` (then are cut), every exchange is
//! in the transcript file, exit code 0.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bulkmock_server::Exchange;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running `bulkmock serve --open` with a stalling file fault; killed on drop if still running.
struct Serve {
    child: Child,
    fhir_base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, stall_ms: u64, grace: &str) -> Serve {
    let plan = dir.join("plan.toml");
    let rule = format!(
        "[[fault]]\non = \"file\"\nfault = {{ kind = \"stall\", after_bytes = 1000, stall_ms = {stall_ms} }}\n"
    );
    std::fs::write(&plan, rule).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--open", "--patients", "30", "--job-duration", "0s"])
        .args(["--shutdown-grace", grace, "--faults"])
        .arg(&plan)
        .arg("--transcript")
        .arg(dir.join("transcript.ndjson"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut fhir_base = None;
    for line in lines {
        let line = line.unwrap();
        if let Some(base) = line.trim().strip_prefix("FHIR base:") {
            fhir_base = Some(base.trim().to_string());
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    Serve { child, fhir_base: fhir_base.expect("the banner names the FHIR base") }
}

/// Kicks off a Patient export and polls it to its manifest; returns the first file's URL and the requests made.
async fn export(client: &reqwest::Client, fhir_base: &str) -> (String, usize) {
    let r = client
        .get(format!("{fhir_base}/$export?_type=Patient"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let mut requests = 1;
    loop {
        let r = client.get(&status).send().await.unwrap();
        requests += 1;
        if r.status() == 200 {
            let manifest: serde_json::Value = r.json().await.unwrap();
            return (manifest["output"][0]["url"].as_str().unwrap().to_string(), requests);
        }
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every line of the transcript file, parsed.
fn transcript(dir: &Path) -> Vec<Exchange> {
    let text = std::fs::read_to_string(dir.join("transcript.ndjson")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..6000 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("bulkmock serve did not exit within 60 s of SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_download_in_flight_finish_writes_every_exchange_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), 1500, "30s");
    let client = reqwest::Client::new();
    let (url, requests) = export(&client, &s.fhir_base).await;
    let mut download = client.get(&url).send().await.unwrap();
    assert_eq!(download.status(), 200);
    let length = download.content_length().unwrap();
    let mut received = download.chunk().await.unwrap().unwrap().len() as u64;
    // The download is in flight (stalled after 1000 bytes): stop the server now.
    kill(Pid::from_raw(s.child.id() as i32), Signal::SIGTERM).unwrap();
    while let Some(chunk) = download.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    assert_eq!(received, length, "the download in flight finished whole");
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut s.child));
    assert_eq!(status.code(), Some(0), "{status}");
    let exchanges = transcript(dir.path());
    assert_eq!(exchanges.len(), requests + 1, "every exchange is in the transcript: {exchanges:?}");
    let file = exchanges.iter().find(|e| e.path.contains("/bulkfiles/")).unwrap();
    assert_eq!(file.bytes, length, "the file's line has the bytes actually sent");
    // No longer accepting.
    assert!(client.get(format!("{}/metadata", s.fhir_base)).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cuts_downloads_still_running_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    // The file stalls for ten minutes; the grace period is a tenth of a second.
    let mut s = serve(dir.path(), 600_000, "100ms");
    let client = reqwest::Client::new();
    let (url, requests) = export(&client, &s.fhir_base).await;
    let mut download = client.get(&url).send().await.unwrap();
    let length = download.content_length().unwrap();
    let first = download.chunk().await.unwrap().unwrap().len() as u64;
    kill(Pid::from_raw(s.child.id() as i32), Signal::SIGTERM).unwrap();
    let mut received = first;
    let read_rest = async {
        loop {
            match download.chunk().await {
                Ok(Some(chunk)) => received += chunk.len() as u64,
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    };
    // A bound for a server that does not cut (the stall lasts ten minutes), not a timing assertion.
    let cut = tokio::time::timeout(Duration::from_secs(60), read_rest).await.expect("the download was not cut");
    assert!(cut && received < length, "the stalled download was cut ({received} of {length} bytes)");
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut s.child));
    assert_eq!(status.code(), Some(0), "{status}");
    let exchanges = transcript(dir.path());
    assert_eq!(exchanges.len(), requests + 1, "the cut download is in the transcript too: {exchanges:?}");
    let file = exchanges.iter().find(|e| e.path.contains("/bulkfiles/")).unwrap();
    assert!(file.bytes < length, "{} of {length} bytes recorded", file.bytes);
}

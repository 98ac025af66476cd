//! End-to-end benchmark of the reference client against curl
//! (run: `cargo bench -p bulkmock --bench client`).
//!
//! Starts the release `bulkmock serve --open` with a large population, then for
//! plain and gzip bodies: (1) kicks off an export, waits for the manifest and lets
//! `curl --parallel` fetch every file into a folder (kick-off not timed); (2) runs
//! `bulkmock export --parallel N --json` as its own process, timed from its
//! `manifest` event to exit (downloads, line checks, merging; the whole run is
//! shown too), sampling its peak RSS.
//! Rates are NDJSON bytes written per second. `BENCH_PATIENTS` (default
//! 1,000,000), `BENCH_PARALLEL` (4), `BENCH_MODES` (`plain,gzip`) and `BENCH_DIR`
//! (a scratch folder under target/) change the run. Needs about 25 GB of disk
//! at 1,000,000 patients.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Server, peak_rss_mb};

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() { bytes_under(&e.path()) } else { meta.len() }
        })
        .sum()
}

/// Kick-off and manifest with curl itself; returns the file URLs.
fn manifest_urls(base: &str) -> Vec<String> {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-H", "Prefer: respond-async"])
        .args(["-H", "Accept: application/fhir+json", &format!("{base}/$export")])
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout);
    let status = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-location:").or_else(|| l.strip_prefix("Content-Location:")))
        .expect("Content-Location")
        .trim()
        .to_string();
    loop {
        let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}", &status]).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        if code == "200" {
            let manifest: serde_json::Value = serde_json::from_str(body).unwrap();
            return manifest["output"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["url"].as_str().unwrap().to_string())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seconds curl takes to fetch every URL into `dir` with `parallel` transfers.
fn run_curl(urls: &[String], dir: &Path, parallel: usize, gzip: bool) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("curl.cfg");
    let mut f = std::fs::File::create(&config).unwrap();
    for (i, url) in urls.iter().enumerate() {
        writeln!(f, "url = \"{url}\"\noutput = \"{}\"", dir.join(format!("{i}.ndjson")).display()).unwrap();
    }
    drop(f);
    let start = Instant::now();
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--no-progress-meter",
        "--fail",
        "-Z",
        "--parallel-max",
        &parallel.to_string(),
        "-K",
        config.to_str().unwrap(),
    ]);
    if gzip {
        cmd.arg("--compressed");
    }
    assert!(cmd.status().expect("curl").success(), "curl failed");
    let seconds = start.elapsed().as_secs_f64();
    std::fs::remove_file(config).unwrap();
    seconds
}

/// Timings of one `bulkmock export` run.
struct ClientRun {
    /// Start to exit.
    total_s: f64,
    /// From the manifest's arrival to exit: downloads, checks, merging.
    download_s: f64,
    /// Peak RSS in MB.
    peak_rss_mb: f64,
}

/// Runs `bulkmock export --json` as its own process, timing it from the first
/// `manifest` event on its stdout and sampling its peak RSS.
fn run_client(base: &str, dir: &Path, parallel: usize, gzip: bool) -> ClientRun {
    let start = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulkmock"));
    cmd.args(["export", "--fhir-url", base, "--parallel", &parallel.to_string(), "--json"]);
    cmd.args(["--out", dir.to_str().unwrap()]);
    if !gzip {
        cmd.arg("--no-gzip");
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn bulkmock export");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && line.contains("\"event\":\"manifest\"") {
                let _ = tx.send(Instant::now());
                sent = true;
            }
        }
    });
    let pid = child.id();
    let mut peak: f64 = 0.0;
    let status = loop {
        if let Some(mb) = peak_rss_mb(pid) {
            peak = peak.max(mb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let end = Instant::now();
    assert!(status.success(), "bulkmock export failed: {status}");
    let manifest_at = rx.recv().expect("a manifest event");
    ClientRun {
        total_s: end.duration_since(start).as_secs_f64(),
        download_s: end.duration_since(manifest_at).as_secs_f64(),
        peak_rss_mb: peak,
    }
}

fn main() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    let patients: u64 = env("BENCH_PATIENTS", "1000000").parse().expect("BENCH_PATIENTS");
    let parallel: usize = env("BENCH_PARALLEL", "4").parse().expect("BENCH_PARALLEL");
    let modes = env("BENCH_MODES", "plain,gzip");
    let scratch = PathBuf::from(env("BENCH_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-client")));
    let server = Server::start(patients, 10_000);
    println!(
        "| bodies | curl -Z, {parallel} transfers | bulkmock export --parallel {parallel}, manifest to exit | ratio | whole run incl. kick-off and polling | client peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for mode in modes.split(',') {
        let gzip = mode == "gzip";
        let _ = std::fs::remove_dir_all(&scratch);
        let urls = manifest_urls(&server.fhir_base);
        let curl_dir = scratch.join("curl");
        let curl_s = run_curl(&urls, &curl_dir, parallel, gzip);
        let curl_bytes = bytes_under(&curl_dir);
        std::fs::remove_dir_all(&curl_dir).unwrap();
        let client_dir = scratch.join("client");
        let run = run_client(&server.fhir_base, &client_dir, parallel, gzip);
        let client_bytes = bytes_under(&client_dir);
        std::fs::remove_dir_all(&client_dir).unwrap();
        let curl_rate = curl_bytes as f64 / curl_s / 1e6;
        let client_rate = client_bytes as f64 / run.download_s / 1e6;
        println!(
            "| {mode} | {:.2} GB in {curl_s:.1} s = {curl_rate:.0} MB/s | {:.2} GB in {:.1} s = {client_rate:.0} MB/s | {:.0}% | {:.1} s | {:.1} MB |",
            curl_bytes as f64 / 1e9,
            client_bytes as f64 / 1e9,
            run.download_s,
            100.0 * client_rate / curl_rate,
            run.total_s,
            run.peak_rss_mb
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

//! Load benchmark (issue 12, item 4; run: `cargo bench -p bulkmock --bench load`).
//!
//! Starts the release `bulkmock serve` as its own process (so its memory is
//! the server's alone) with authorization on and the probabilistic fault plan
//! of `common/load.rs` (503s on status polls, resets and truncations of file
//! bodies), registers `BENCH_CLIENTS` (200) clients over HTTP, runs them all at
//! once (each: token, kick-off, polling, `BENCH_PARALLEL` (2) downloads, DELETE),
//! then verifies every client's output resource by resource against the export
//! computed in this process from the same seed and size. Prints the server's
//! peak RSS (VmHWM), its open file descriptors and threads before, at peak and
//! after (threads: once the blocking pool's idle threads left), the wall time and the resources verified. `BENCH_PATIENTS` (200) and
//! `BENCH_RESOURCES_PER_FILE` (200) size the population.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
#[path = "common/load.rs"]
mod load;

use common::Server;

use bulkmock_server::ServerConfig;
use bulkmock_server::app::AppState;

const SEED: u64 = 7;

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A line of `/proc/PID/status`, e.g. `Threads`.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).unwrap_or("?").trim().to_string()
}

/// The lines a system export of the served data set holds, from a server with
/// the same seed and size in this process (its URLs on the same origin).
async fn expected_lines(origin: &str, patients: u64, resources_per_file: u64) -> Vec<Vec<u8>> {
    let config = ServerConfig {
        seed: SEED,
        patients,
        resources_per_file,
        open: true,
        job_duration: Duration::ZERO,
        count_before_accepting: true,
        ..ServerConfig::default()
    };
    let state = AppState::new(config, origin).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bulkmock_server::app::serve(listener, Arc::clone(&state), std::future::pending()));
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/fhir/$export"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job = state.jobs.history().pop().unwrap();
    let files = bulkmock_server::export::expected::contents(&job).unwrap();
    files.into_iter().flat_map(|f| f.lines).collect()
}

fn main() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    let clients: usize = env("BENCH_CLIENTS", "200").parse().expect("BENCH_CLIENTS");
    let patients: u64 = env("BENCH_PATIENTS", "200").parse().expect("BENCH_PATIENTS");
    let per_file: u64 = env("BENCH_RESOURCES_PER_FILE", "200").parse().expect("BENCH_RESOURCES_PER_FILE");
    let parallel: usize = env("BENCH_PARALLEL", "2").parse().expect("BENCH_PARALLEL");
    let scratch = PathBuf::from(env("BENCH_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-load")));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let faults = scratch.join("faults.toml");
    std::fs::write(&faults, load::FAULTS).unwrap();
    let (seed, patients_arg, per_file_arg) = (SEED.to_string(), patients.to_string(), per_file.to_string());
    let state_dir = scratch.join("state");
    let server = Server::spawn(&[
        "--port",
        "0",
        "--job-duration",
        "0s",
        "--seed",
        &seed,
        "--patients",
        &patients_arg,
        "--resources-per-file",
        &per_file_arg,
        "--faults",
        faults.to_str().unwrap(),
        "--state-dir",
        state_dir.to_str().unwrap(),
    ]);
    let pid = server.pid();
    let origin = server.fhir_base.trim_end_matches("/fhir").to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let expected = expected_lines(&origin, patients, per_file).await;
        let credentials = load::register(&origin, clients).await;
        // Idle (the registration connection closed): the baseline.
        let (fds_before, threads_before) = (fds(pid), status_field(pid, "Threads"));
        let peak_fds = Arc::new(AtomicUsize::new(fds_before));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak_fds, sampling) = (Arc::clone(&peak_fds), Arc::clone(&sampling));
            std::thread::spawn(move || {
                while sampling.load(Ordering::SeqCst) {
                    peak_fds.fetch_max(fds(pid), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let start = Instant::now();
        let runs = load::run_clients(&server.fhir_base, credentials, &scratch, parallel).await;
        let elapsed = start.elapsed().as_secs_f64();
        sampling.store(false, Ordering::SeqCst);
        sampler.join().unwrap();
        let peak_rss = status_field(pid, "VmHWM");
        let mut verified = 0;
        let mut failures = Vec::new();
        for run in &runs {
            match load::check(run, &expected) {
                Ok(n) => verified += n,
                Err(e) => failures.push(e),
            }
        }
        let retries: u64 = runs.iter().filter_map(|r| r.result.as_ref().ok()).map(|s| s.retries).sum();
        let files: u64 = runs.iter().filter_map(|r| r.result.as_ref().ok()).map(|s| s.files).sum();
        let closed = load::eventually(6000, || fds(pid) <= fds_before).await;
        let fds_after = fds(pid);
        // Tokio's blocking threads (file reads) leave after 10 s idle.
        load::eventually(3000, || status_field(pid, "Threads") == threads_before).await;
        let threads_after = status_field(pid, "Threads");
        println!("\nafter {:.1} s of verification and waiting for the server to go idle:\n", start.elapsed().as_secs_f64() - elapsed);
        println!(
            "| clients | patients | files downloaded | retries | resources verified | unexpected errors | wall time | server peak RSS | server fds before / peak / after | server threads before / after |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        println!(
            "| {clients} × {parallel} downloads | {patients} ({} lines per export) | {files} | {retries} | {verified} | {} | {elapsed:.1} s | {peak_rss} | {fds_before} / {} / {fds_after} | {threads_before} / {threads_after} |",
            expected.len(),
            failures.len(),
            peak_fds.load(Ordering::SeqCst)
        );
        for failure in &failures {
            eprintln!("FAILED: {failure}");
        }
        assert!(failures.is_empty(), "{} of {clients} clients failed", failures.len());
        assert!(closed, "file descriptors left open: {fds_after} after, {fds_before} before");
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&scratch);
}

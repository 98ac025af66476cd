//! Benchmark of file serving with a dashboard page connected vs not, in the
//! same run (run: `cargo bench -p bulkmock --bench dashboard`).
//!
//! Starts the release `bulkmock serve --open` (its dashboard on, as by
//! default), kicks off one export, then measures two workloads in rounds that
//! alternate between no page and a connected page (the order swapped every
//! round, so drift on this shared machine hits both alike): every file of the
//! export over 4 parallel streams (MB/s), and small `Range` requests on one
//! file over 8 connections (requests/s, where a per-exchange cost would show).
//! The "page" reads and parses every server-sent event, and fetches
//! `api/state` and `api/checks` once a second, as the real page does at most.
//! `BENCH_PATIENTS` (default 20,000), `BENCH_ROUNDS` (default 8) and
//! `BENCH_PASSES` (downloads of the whole export per measurement, default 3)
//! change the size. Each round's two measurements, taken back to back, give
//! a ratio; the change reported is the median ratio, so drift on this shared
//! machine cancels. Results print as a Markdown table for BENCHMARKS.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

mod common;

use common::Server;

/// The panels the page refreshes (`BENCH_PANELS=state` to leave out the live checks).
const PANELS: [&str; 2] = ["state", "checks"];

/// A dashboard page: the event stream read and parsed, the panels refreshed every second.
struct Page {
    task: tokio::task::JoinHandle<()>,
    events: Arc<AtomicU64>,
    lagged: Arc<AtomicU64>,
}

impl Page {
    async fn connect(http: &reqwest::Client, dashboard: &str) -> Page {
        let events = Arc::new(AtomicU64::new(0));
        let lagged = Arc::new(AtomicU64::new(0));
        let mut body = http.get(format!("{dashboard}/events")).send().await.unwrap().bytes_stream();
        let mut buffer = String::new();
        // Connected once the snapshot is read.
        while !buffer.contains("event: ready") {
            buffer.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
        }
        buffer.clear();
        let (count, lost) = (Arc::clone(&events), Arc::clone(&lagged));
        let (http, dashboard) = (http.clone(), dashboard.to_string());
        let task = tokio::spawn(async move {
            let mut refresh = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    chunk = body.next() => {
                        let Some(Ok(chunk)) = chunk else { return };
                        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
                        while let Some(end) = buffer.find("\n\n") {
                            let block: String = buffer.drain(..end + 2).collect();
                            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                                let value: serde_json::Value = serde_json::from_str(data).unwrap();
                                count.fetch_add(1, Ordering::Relaxed);
                                if block.starts_with("event: lagged") {
                                    lost.fetch_add(value["missed"].as_u64().unwrap_or(0), Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    _ = refresh.tick() => {
                        for panel in PANELS.iter().filter(|p| std::env::var("BENCH_PANELS").map_or(true, |v| v.contains(*p))) {
                            let r = http.get(format!("{dashboard}/api/{panel}")).send().await.unwrap();
                            r.bytes().await.unwrap();
                        }
                    }
                }
            }
        });
        Page { task, events, lagged }
    }
}

/// Every file, 4 at a time: MB/s.
async fn all_files(http: &reqwest::Client, files: &[String]) -> f64 {
    let started = Instant::now();
    let bytes: u64 = futures_util::stream::iter(files.iter().cloned())
        .map(|url| {
            let http = http.clone();
            async move {
                let mut body = http.get(&url).send().await.unwrap().bytes_stream();
                let mut n = 0u64;
                while let Some(chunk) = body.next().await {
                    n += chunk.unwrap().len() as u64;
                }
                n
            }
        })
        .buffer_unordered(4)
        .fold(0, |a, b| async move { a + b })
        .await;
    bytes as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// `n` requests for the first KiB of `url`, 8 at a time: requests per second.
async fn small_ranges(http: &reqwest::Client, url: &str, n: usize) -> f64 {
    let started = Instant::now();
    futures_util::stream::iter(0..n)
        .map(|_| {
            let http = http.clone();
            async move {
                let r = http.get(url).header("Range", "bytes=0-1023").send().await.unwrap();
                assert_eq!(r.status(), 206);
                r.bytes().await.unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let patients: u64 = std::env::var("BENCH_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let passes: usize = std::env::var("BENCH_PASSES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let server = Server::start(patients, 10_000);
    let dashboard = format!("{}/_dashboard", server.fhir_base.trim_end_matches("/fhir"));
    assert_eq!(http.get(&dashboard).send().await.unwrap().status(), 200, "the dashboard is on");

    let kickoff = http
        .get(format!("{}/$export", server.fhir_base))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let status = kickoff.headers()["content-location"].to_str().unwrap().to_string();
    let manifest: serde_json::Value = loop {
        let r = http.get(&status).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let files: Vec<String> =
        manifest["output"].as_array().unwrap().iter().map(|f| f["url"].as_str().unwrap().to_string()).collect();
    all_files(&http, &files).await; // every file measured once, before any round

    let (mut off, mut on) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    let (mut events, mut lagged) = (0, 0);
    for round in 0..rounds {
        for connected in if round % 2 == 0 { [false, true] } else { [true, false] } {
            let page = if connected { Some(Page::connect(&http, &dashboard).await) } else { None };
            let mut mbps = 0.0;
            for _ in 0..passes {
                mbps += all_files(&http, &files).await / passes as f64;
            }
            let rps = small_ranges(&http, &files[0], 2_000).await;
            eprintln!("round {round}, page {connected}: {mbps:.0} MB/s, {rps:.0} req/s");
            let into = if connected { &mut on } else { &mut off };
            into.0.push(mbps);
            into.1.push(rps);
            if let Some(page) = page {
                page.task.abort();
                events += page.events.load(Ordering::Relaxed);
                lagged += page.lagged.load(Ordering::Relaxed);
            }
        }
    }
    // Each round pairs a measurement with a page and one without, back to back: their ratio cancels drift.
    let ratio = |on: &[f64], off: &[f64]| median(on.iter().zip(off).map(|(a, b)| a / b).collect());
    let change = |ratio: f64| (ratio - 1.0) * 100.0;
    let (file_change, range_change) = (change(ratio(&on.0, &off.0)), change(ratio(&on.1, &off.1)));
    let (off_mbps, on_mbps) = (median(off.0), median(on.0));
    let (off_rps, on_rps) = (median(off.1), median(on.1));
    println!(
        "| measurement ({patients} patients, {} files; medians of {rounds} rounds) | no page | page connected | change (median of the rounds' ratios) |",
        files.len()
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| every file, 4 parallel streams, {passes} passes per measurement | {off_mbps:.0} MB/s | {on_mbps:.0} MB/s | {file_change:+.1}% |"
    );
    println!(
        "| 2,000 `Range: bytes=0-1023` requests, 8 at a time | {off_rps:.0} req/s | {on_rps:.0} req/s | {range_change:+.1}% |"
    );
    println!("| events the page read / lost (lagged) | | {events} / {lagged} | |");
    println!("| server peak RSS | | {:.1} MB | |", server.peak_rss_mb());
}

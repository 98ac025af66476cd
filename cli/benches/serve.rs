//! Benchmark of `bulkmock serve` (run: `cargo bench -p bulkmock --bench serve`).
//!
//! Starts the release binary as a separate process (so its memory is its own),
//! then measures: kick-off to complete manifest for a large population, one
//! download stream (first download, which measures the file, then a cached
//! one; plain and gzip), and several parallel streams over a whole export
//! while sampling the server's peak RSS. Results print as a Markdown table
//! for BENCHMARKS.md. `BENCH_PATIENTS` (default 1,000,000) and
//! `BENCH_SECONDS` (parallel phase, default 30) change the size;
//! `BENCH_DENSITY=realistic` serves the heavy-tailed population (`serve
//! --density realistic`, about 50 times the bytes per patient of `light`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

mod common;

use common::Server;

async fn export(http: &reqwest::Client, base: &str, query: &str) -> (Duration, serde_json::Value) {
    let start = Instant::now();
    let r = http
        .get(format!("{base}/$export?{query}"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    loop {
        let r = http.get(&status).send().await.unwrap();
        if r.status() == 200 {
            return (start.elapsed(), r.json().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Downloads `url`, returning (bytes, seconds).
async fn download(http: &reqwest::Client, url: &str, gzip: bool) -> (u64, f64) {
    let start = Instant::now();
    let mut req = http.get(url);
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    let mut stream = req.send().await.unwrap().bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len() as u64;
    }
    (n, start.elapsed().as_secs_f64())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[tokio::main]
async fn main() {
    let patients: u64 = std::env::var("BENCH_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let density = std::env::var("BENCH_DENSITY").unwrap_or_else(|_| "light".into());
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    println!("| measurement | result |");
    println!("| --- | --- |");

    // Kick-off to manifest and parallel downloads, default file size.
    let server = Server::start_with_density(patients, 10_000, &density);
    let mut best = Duration::MAX;
    let mut manifest = serde_json::Value::Null;
    for _ in 0..3 {
        let (t, m) = export(&http, &server.fhir_base, "").await;
        best = best.min(t);
        manifest = m;
    }
    let files: Vec<String> =
        manifest["output"].as_array().unwrap().iter().map(|f| f["url"].as_str().unwrap().to_string()).collect();
    let resources: u64 = manifest["output"].as_array().unwrap().iter().map(|f| f["count"].as_u64().unwrap()).sum();
    println!(
        "| kick-off to complete manifest, {patients} patients, {density} density ({resources} resources, {} files), best of 3 | {:.2} s |",
        files.len(),
        best.as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(files.into_iter()));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (http, queue) = (http.clone(), queue.clone());
            tokio::spawn(async move {
                let mut total = 0;
                while Instant::now() < deadline {
                    let Some(url) = queue.lock().unwrap().next() else { break };
                    total += download(&http, &url, false).await.0;
                }
                total
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "| 4 parallel streams over the export for {seconds} s | {:.0} MB in {elapsed:.1} s = {:.0} MB/s |",
        mb(total),
        mb(total) / elapsed
    );
    if queue.lock().unwrap().next().is_none() {
        println!(
            "| the whole export (every file downloaded), NDJSON per patient | {:.3} MB ({total} bytes in all) |",
            mb(total) / patients as f64
        );
    }
    println!("| server peak RSS after kick-offs and parallel downloads | {:.1} MB |", server.peak_rss_mb());
    drop(server);

    // One stream over one large file.
    let server = Server::start_with_density(patients.min(1_000_000), 1_000_000, &density);
    let (_, m) = export(&http, &server.fhir_base, "_type=Observation").await;
    let url = m["output"][0]["url"].as_str().unwrap().to_string();
    let mut plain_len = 0;
    for (label, gzip) in [("plain", false), ("gzip", true)] {
        let (n, first) = download(&http, &url, gzip).await;
        let (_, second) = download(&http, &url, gzip).await;
        if !gzip {
            plain_len = n;
        }
        let content =
            |secs: f64| if gzip { format!(" ({:.0} MB/s of NDJSON)", mb(plain_len) / secs) } else { String::new() };
        println!(
            "| one stream, {label}, first download (measures the file), {:.0} MB | {:.0} MB/s{} |",
            mb(n),
            mb(n) / first,
            content(first)
        );
        println!(
            "| one stream, {label}, later download, {:.0} MB | {:.0} MB/s{} |",
            mb(n),
            mb(n) / second,
            content(second)
        );
    }
    println!("| server peak RSS after single-stream downloads | {:.1} MB |", server.peak_rss_mb());
}

//! Benchmark of `bulkmock proxy` (run: `cargo bench -p bulkmock --bench proxy`).
//!
//! Starts the release `bulkmock serve --open` with one large Observation file
//! and `bulkmock proxy` in front of it, each its own process, then downloads
//! the file plain, alternately straight from the server and through the proxy
//! (three rounds, after one download that measures the file), and prints the
//! MB/s of each, their ratio, and the proxy's resident memory before and after
//! as a Markdown table for BENCHMARKS.md. `BENCH_PATIENTS` (default 50,000:
//! a file of about 260 MB) changes the size.

use std::time::Instant;

use futures_util::StreamExt;

mod common;

use common::{Server, peak_rss_mb};

/// Downloads `url`: (bytes, seconds).
async fn download(http: &reqwest::Client, url: &str) -> (u64, f64) {
    let start = Instant::now();
    let mut stream = http.get(url).send().await.unwrap().error_for_status().unwrap().bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len() as u64;
    }
    (n, start.elapsed().as_secs_f64())
}

/// Resident memory of `pid` now, MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let patients: u64 = std::env::var("BENCH_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let server = Server::start(patients, 100_000_000);
    let proxy = Server::spawn_command("proxy", &["--port", "0", "--upstream", &server.fhir_base]);
    let rss_start = rss_mb(proxy.pid());
    // The export through the proxy: its manifest's URL is the proxy's; the same path on the server is direct.
    let r = http
        .get(format!("{}/$export?_type=Observation", proxy.fhir_base))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let manifest: serde_json::Value = loop {
        let r = http.get(&status).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let via = manifest["output"][0]["url"].as_str().unwrap().to_string();
    let origin = |base: &str| base.trim_end_matches("/fhir").to_string();
    let direct = via.replacen(&origin(&proxy.fhir_base), &origin(&server.fhir_base), 1);
    assert_ne!(via, direct);
    let (len, _) = download(&http, &direct).await; // measures the file
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (n, secs) = download(&http, &direct).await;
        assert_eq!(n, len);
        a.push(n as f64 / 1e6 / secs);
        let (n, secs) = download(&http, &via).await;
        assert_eq!(n, len, "the proxy forwards every byte");
        b.push(n as f64 / 1e6 / secs);
    }
    let (direct_mbs, via_mbs) = (median(a.clone()), median(b.clone()));
    println!("| measurement | result |");
    println!("| --- | --- |");
    println!("| file | {:.0} MB plain NDJSON ({patients} patients, Observation) |", len as f64 / 1e6);
    println!("| one plain download, straight from `serve`, median of 3 | {direct_mbs:.0} MB/s ({a:.0?}) |");
    println!("| one plain download through `proxy`, median of 3 | {via_mbs:.0} MB/s ({b:.0?}) |");
    println!("| through the proxy / direct | {:.0}% |", 100.0 * via_mbs / direct_mbs);
    println!(
        "| proxy RSS: at start, after the downloads, peak | {rss_start:.1} MB, {:.1} MB, {:.1} MB |",
        rss_mb(proxy.pid()),
        peak_rss_mb(proxy.pid()).unwrap_or(f64::NAN)
    );
    println!("| server peak RSS | {:.1} MB |", server.peak_rss_mb());
}

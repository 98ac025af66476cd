//! Generation speed of the synthetic population per density (run: `cargo
//! bench -p bulkmock --bench generate`), in-process on one core: every
//! resource of every compartment type of a population written as NDJSON into
//! a 64 KiB buffer, as a download produces it, without HTTP. Both densities
//! generate the same resources, so the bytes per second should match; only
//! the counts per patient differ. `BENCH_MB` (default 1000) sets the NDJSON
//! written per density. Prints a Markdown table for BENCHMARKS.md, with exact
//! byte counts so that changes to the data's size show.

use std::time::Instant;

use bulkmock_server::data::DataSource;
use bulkmock_server::data::synthetic::{Density, Synthetic};

/// Writes every compartment resource of patients `0..` until `target` bytes;
/// returns (patients, resources, bytes, seconds).
fn generate(data: &Synthetic, target: u64) -> (u64, u64, u64, f64) {
    let types: Vec<usize> = (0..data.types().len()).filter(|&t| data.types()[t].in_patient_compartment).collect();
    let mut buf = Vec::with_capacity(128 * 1024);
    let (mut patients, mut resources, mut bytes) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while bytes < target && patients < data.patient_count() {
        for &t in &types {
            for idx in data.patient_resources(t, patients) {
                if data.header(t, idx).deleted {
                    continue;
                }
                data.write_resource(t, idx, &mut buf).unwrap();
                buf.push(b'\n');
                resources += 1;
                if buf.len() >= 64 * 1024 {
                    bytes += buf.len() as u64;
                    buf.clear();
                }
            }
        }
        patients += 1;
    }
    bytes += buf.len() as u64;
    (patients, resources, bytes, start.elapsed().as_secs_f64())
}

fn main() {
    let mb: u64 = std::env::var("BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    println!("| density | patients | resources | NDJSON bytes | per patient | generation, one core |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for density in Density::ALL {
        let data = Synthetic::new(42, 10_000_000, "http://127.0.0.1:8080/fhir").with_density(density);
        let (patients, resources, bytes, secs) = generate(&data, mb * 1_000_000);
        println!(
            "| {density} | {patients} | {resources} | {bytes} | {:.1} bytes, {:.0} resources | {:.0} MB/s ({:.2} µs per resource) |",
            bytes as f64 / patients as f64,
            resources as f64 / patients as f64,
            bytes as f64 / 1e6 / secs,
            secs * 1e6 / resources as f64
        );
    }
}

//! The compression ceiling on the mock's own NDJSON (run: `cargo bench -p
//! bulkmock --bench compress`): one core, raw deflate plus CRC-32 as a gzip
//! body needs, in 64 KiB writes, for miniz_oxide (flate2's default backend
//! before issue 22) and zlib-rs (the backend in use), at the levels a fast
//! server would pick. The data is the served Observation file's first
//! patients (light density, seed 42), generated once into memory, not timed.
//! `BENCH_MB` (default 50) sets its size; each backend runs `BENCH_ROUNDS`
//! (default 3) times, best kept. Prints a Markdown table for BENCHMARKS.md.

use std::time::Instant;

use bulkmock_server::data::DataSource;
use bulkmock_server::data::synthetic::Synthetic;
use flate2::{Compress, Compression, Crc, FlushCompress};
use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::{DataFormat, MZFlush};

const WRITE: usize = 64 * 1024;

/// The first `target` bytes (whole lines) of the Observation file of a light population.
fn observations(target: usize) -> Vec<u8> {
    let data = Synthetic::new(42, 10_000_000, "http://127.0.0.1:8080/fhir");
    let ty = data.type_index("Observation").expect("Observation");
    let mut out = Vec::with_capacity(target + 64 * 1024);
    let mut patient = 0;
    while out.len() < target {
        for idx in data.patient_resources(ty, patient) {
            if !data.header(ty, idx).deleted {
                data.write_resource(ty, idx, &mut out).unwrap();
                out.push(b'\n');
            }
        }
        patient += 1;
    }
    out
}

/// Compressed bytes with miniz_oxide at `level` (flate2's `Compress` does the same calls).
fn miniz(data: &[u8], level: u8) -> usize {
    let mut c = CompressorOxide::default();
    c.set_format_and_level(DataFormat::Raw, level);
    let mut crc = Crc::new();
    let mut out = vec![0u8; 4 * WRITE];
    let mut total = 0;
    let chunks: Vec<&[u8]> = data.chunks(WRITE).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        crc.update(chunk);
        let flush = if i + 1 == chunks.len() { MZFlush::Finish } else { MZFlush::None };
        let mut input = *chunk;
        loop {
            let r = miniz_oxide::deflate::stream::deflate(&mut c, input, &mut out, flush);
            input = &input[r.bytes_consumed..];
            total += r.bytes_written;
            if input.is_empty() && r.bytes_written < out.len() {
                break;
            }
        }
    }
    std::hint::black_box(crc.sum());
    total
}

/// Compressed bytes with flate2's zlib-rs backend at `level`.
fn zlib_rs(data: &[u8], level: u32) -> usize {
    let mut c = Compress::new(Compression::new(level), false);
    let mut crc = Crc::new();
    let mut out = Vec::with_capacity(4 * WRITE);
    let mut total = 0;
    let chunks: Vec<&[u8]> = data.chunks(WRITE).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        crc.update(chunk);
        let flush = if i + 1 == chunks.len() { FlushCompress::Finish } else { FlushCompress::None };
        let mut input = *chunk;
        loop {
            out.clear();
            let before = c.total_in();
            c.compress_vec(input, &mut out, flush).unwrap();
            input = &input[(c.total_in() - before) as usize..];
            total += out.len();
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
    }
    std::hint::black_box(crc.sum());
    total
}

fn main() {
    let mb: usize = std::env::var("BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let data = observations(mb * 1_000_000);
    println!(
        "NDJSON: {} bytes of Observations (light, seed 42); one core, raw deflate + CRC-32, 64 KiB writes, best of {rounds}",
        data.len()
    );
    println!("| backend | level | MB/s of NDJSON | compressed bytes | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    type Run<'a> = Box<dyn Fn(&[u8]) -> usize + 'a>;
    let runs: Vec<(&str, u32, Run)> = vec![
        ("miniz_oxide 0.9", 1, Box::new(|d| miniz(d, 1))),
        ("zlib-rs 0.6 (deflate_quick)", 1, Box::new(|d| zlib_rs(d, 1))),
        ("zlib-rs 0.6 (deflate_fast)", 2, Box::new(|d| zlib_rs(d, 2))),
    ];
    for (name, level, run) in &runs {
        let mut best = f64::MAX;
        let mut size = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            size = run(&data);
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "| {name} | {level} | {:.0} | {size} | {:.2} |",
            data.len() as f64 / 1e6 / best,
            data.len() as f64 / size as f64
        );
    }
}

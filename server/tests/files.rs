//! File downloads, DELETE and job expiry, observed on the wire.

mod common;

use std::io::Read;
use std::time::Duration;

use bulkmock_server::{Fault, FaultRule, MockServer, Target};
use common::*;

async fn first_file(server: &MockServer, query: &str) -> (String, String) {
    let status = kickoff(server, "$export", query).await;
    let (_, m) = manifest(&status).await;
    (status, m.output[0].url.clone())
}

async fn bytes(req: reqwest::RequestBuilder) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = req.send().await.unwrap();
    (r.status(), r.headers().clone(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn range_requests_resume_a_download_exactly() {
    let server = MockServer::builder().open().patients(40).start().await;
    let (_, url) = first_file(&server, "_type=Observation").await;
    let (status, headers, full) = bytes(http().get(&url)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["accept-ranges"], "bytes");
    let len = full.len();
    assert!(len > 10_000);
    for (range, start, end) in [
        (format!("bytes={}-", len / 3), len / 3, len),
        ("bytes=10-99".to_string(), 10, 100),
        ("bytes=-50".to_string(), len - 50, len),
    ] {
        let (status, headers, part) = bytes(http().get(&url).header("Range", &range)).await;
        assert_eq!(status, 206, "{range}");
        assert_eq!(headers["content-range"], format!("bytes {start}-{}/{len}", end - 1).as_str());
        assert_eq!(headers["content-length"], (end - start).to_string().as_str());
        assert_eq!(part, &full[start..end], "{range}");
    }
    let (status, headers, _) = bytes(http().get(&url).header("Range", format!("bytes={len}-"))).await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], format!("bytes */{len}").as_str());
    let (status, _, again) = bytes(http().get(&url).header("Range", "bytes=5-").header("If-Range", "\"other\"")).await;
    assert_eq!((status.as_u16(), again.len()), (200, len), "a stale If-Range gets the whole file");
}

#[tokio::test]
async fn range_resume_works_past_checkpoints_of_a_large_file() {
    let server = MockServer::builder().open().patients(2000).resources_per_file(100_000).start().await;
    let (_, url) = first_file(&server, "_type=Observation").await;
    let (_, _, full) = bytes(http().get(&url)).await;
    assert!(full.len() > 9_000_000, "several checkpoints: {}", full.len());
    let start = full.len() - 1_234_567;
    let (status, _, tail) = bytes(http().get(&url).header("Range", format!("bytes={start}-"))).await;
    assert_eq!(status, 206);
    assert_eq!(tail, &full[start..]);
}

#[tokio::test]
async fn gzip_is_served_when_asked_and_decodes_to_the_plain_file() {
    let server = MockServer::builder().open().patients(20).start().await;
    let (_, url) = first_file(&server, "_type=Encounter").await;
    let (_, plain_headers, plain) = bytes(http().get(&url)).await;
    assert!(!plain_headers.contains_key("content-encoding"));
    let (status, headers, gz) = bytes(http().get(&url).header("Accept-Encoding", "gzip")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["content-length"], gz.len().to_string().as_str());
    assert!(gz.len() < plain.len() / 3);
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut decoded).unwrap();
    assert_eq!(decoded, plain);
    // The compressed bytes are stable, so a gzip download can resume too.
    let (status, _, tail) =
        bytes(http().get(&url).header("Accept-Encoding", "gzip").header("Range", "bytes=100-")).await;
    assert_eq!(status, 206);
    assert_eq!(tail, &gz[100..]);
}

/// SRV-186, SRV-127: a gzip body of several segments (compressed in
/// parallel) is the same bytes on every download, whichever request measured
/// it, with an exact `Content-Length`; a `Range` at any offset is the tail of
/// the full body; any inflater decodes it as one gzip member.
#[tokio::test]
async fn gzip_bodies_are_byte_stable_exact_and_resumable() {
    let server = MockServer::builder().open().patients(1000).resources_per_file(100_000).start().await;
    let (_, url) = first_file(&server, "_type=Observation").await;
    let gzip = |range: Option<String>| {
        let req = http().get(&url).header("Accept-Encoding", "gzip");
        bytes(match range {
            Some(r) => req.header("Range", r),
            None => req,
        })
    };
    // The first request (it measures the body) resumes in the middle.
    let (status, headers, first_tail) = gzip(Some("bytes=200000-".into())).await;
    assert_eq!(status, 206);
    let len: usize = headers["content-range"].to_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(headers["content-length"], first_tail.len().to_string().as_str());
    let (_, headers, full) = gzip(None).await;
    let (_, _, again) = gzip(None).await;
    assert_eq!((full.len(), headers["content-length"].to_str().unwrap()), (len, len.to_string().as_str()));
    assert!(full == again, "two downloads, the same bytes");
    assert!(first_tail == full[200_000..], "the measuring request sent the same bytes");
    for start in [1, 9, 10, 11, 65_535, len / 3, len / 2 + 7, len - 9, len - 8, len - 1] {
        let (status, headers, tail) = gzip(Some(format!("bytes={start}-"))).await;
        assert_eq!(status, 206, "{start}");
        assert_eq!(headers["content-length"], (len - start).to_string().as_str());
        assert!(tail == full[start..], "resumed at {start} of {len}");
    }
    let (_, _, middle) = gzip(Some(format!("bytes={}-{}", len / 2, len / 2 + 99))).await;
    assert_eq!(middle, &full[len / 2..len / 2 + 100]);

    let (_, _, plain) = bytes(http().get(&url)).await;
    assert!(plain.len() > 4 * 1024 * 1024, "several segments: {}", plain.len());
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&full[..]).read_to_end(&mut decoded).unwrap();
    assert!(decoded == plain, "GzDecoder: one member holding the plain file");
    decoded.clear();
    flate2::read::MultiGzDecoder::new(&full[..]).read_to_end(&mut decoded).unwrap();
    assert!(decoded == plain, "MultiGzDecoder");
    // GNU gzip, an inflater of its own, where installed.
    if let Ok(mut child) = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        let mut stdin = child.stdin.take().unwrap();
        let body = full.clone();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &body));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success(), "gzip -d: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == plain, "gzip -d decodes it to the plain file");
    }
}

#[tokio::test]
async fn delete_cancels_the_job_and_later_requests_get_404() {
    let server = MockServer::builder().open().patients(5).start().await;
    let (status, file) = first_file(&server, "_type=Patient").await;
    assert_eq!(server.live_jobs(), 1);
    let r = http().delete(&status).send().await.unwrap();
    assert_eq!(r.status(), 202, "SRV-142");
    assert_eq!(server.live_jobs(), 0);
    for url in [&status, &file] {
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 404, "SRV-144: {url}");
        assert_eq!(r.headers()["content-type"], "application/fhir+json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains("deleted by the client"));
    }
    assert_eq!(http().delete(&status).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn delete_while_in_progress_cancels() {
    let server = MockServer::builder().open().patients(5).job_duration(Duration::from_secs(3600)).start().await;
    let status = kickoff(&server, "$export", "").await;
    assert_eq!(http().delete(&status).send().await.unwrap().status(), 202);
    assert_eq!(http().get(&status).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn jobs_expire_after_their_ttl() {
    let server = MockServer::builder().open().patients(3).job_ttl(Duration::ZERO).start().await;
    let status = kickoff(&server, "$export", "_type=Patient").await;
    let r = poll_until_done(&status).await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test]
async fn unknown_file_names_and_not_ready_files_are_404() {
    let server = MockServer::builder().open().patients(3).start().await;
    let (status, url) = first_file(&server, "_type=Patient").await;
    let job = status.rsplit('/').next().unwrap();
    for name in ["1.Patient.ndjson", "0.Observation.ndjson", "x.ndjson", "error.ndjson"] {
        let r = http().get(format!("{}/bulkfiles/{job}/{name}", server.fhir_base())).send().await.unwrap();
        assert_eq!(r.status(), 404, "{name}");
    }
    assert_eq!(http().get(&url).send().await.unwrap().status(), 200);

    let slow = MockServer::builder().open().patients(3).job_duration(Duration::from_secs(3600)).start().await;
    let status = kickoff(&slow, "$export", "_type=Patient").await;
    let job = status.rsplit('/').next().unwrap();
    let r = http().get(format!("{}/bulkfiles/{job}/0.Patient.ndjson", slow.fhir_base())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("not ready yet"));
}

#[tokio::test]
async fn attachments_of_document_references_are_served() {
    let server = MockServer::builder().open().patients(3).start().await;
    let (_, url) = first_file(&server, "_type=DocumentReference").await;
    let docs = lines(&url).await;
    assert_eq!(docs.len(), 3);
    for doc in docs {
        let attachment = &doc["content"][0]["attachment"];
        let link = attachment["url"].as_str().unwrap();
        assert!(link.starts_with(server.fhir_base()), "SRV-197: absolute URL");
        let r = http().get(link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], attachment["contentType"].as_str().unwrap());
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len() as u64, attachment["size"].as_u64().unwrap());
    }
    assert_eq!(http().get(format!("{}/attachments/doc-99", server.fhir_base())).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn realistic_patients_larger_than_a_chunk_stream_exactly() {
    // Realistic patients hold hundreds of kilobytes of one type: their lines
    // are handed on in pieces, never the whole patient at once.
    let server = MockServer::builder()
        .open()
        .patients(6)
        .seed(5)
        .density(bulkmock_server::data::synthetic::Density::Realistic)
        .resources_per_file(1_000_000)
        .file_digests()
        .start()
        .await;
    let status = kickoff(&server, "$export", "_type=Observation,ExplanationOfBenefit").await;
    let (_, m) = manifest(&status).await;
    let data = server.data();
    let obs = data.type_index("Observation").unwrap();
    let largest = (0..6).map(|p| data.patient_resources(obs, p).count()).max().unwrap();
    assert!(largest > 400, "a patient with more than 128 KiB of Observations: {largest}");
    for file in &m.output {
        let (_, headers, full) = bytes(http().get(&file.url)).await;
        assert_eq!(headers["content-length"], full.len().to_string().as_str(), "measured as produced");
        let lines = String::from_utf8(full.clone()).unwrap();
        assert_eq!(Some(lines.lines().count() as u64), file.count);
        let want = expected(&server, file.resource_type.as_deref().unwrap(), 0..6);
        let got: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(got, want);
        let digest = file.extension.as_ref().and_then(|e| e[bulkmock_wire::SHA256_EXTENSION].as_str()).unwrap();
        assert_eq!(digest, hex_sha256(&full), "the digest covers the streamed bytes");
        for start in [full.len() / 3, full.len() - 70_000, 5] {
            let (status, _, tail) = bytes(http().get(&file.url).header("Range", format!("bytes={start}-"))).await;
            assert_eq!((status.as_u16(), tail.len()), (206, full.len() - start));
            assert!(tail == full[start..], "range from {start}");
        }
        let (_, _, gz) = bytes(http().get(&file.url).header("Accept-Encoding", "gzip")).await;
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut decoded).unwrap();
        assert!(decoded == full, "gzip decodes to the plain file");
    }
    let blocks = kickoff(&server, "Patient/$export", "organizeOutputBy=Patient&_type=Patient,Observation").await;
    let (_, m) = manifest(&blocks).await;
    let (mut headers, mut total) = (0, 0);
    for file in &m.output {
        let body = lines(&file.url).await;
        let file_headers = body.iter().filter(|v| v["resourceType"] == "Parameters").count();
        assert_eq!(Some((body.len() - file_headers) as u64), file.count, "resources, headers not counted");
        headers += file_headers;
        total += body.len();
    }
    assert_eq!(headers, 6, "one block per patient");
    assert_eq!(total, 6 + 6 + expected(&server, "Observation", 0..6).len());
}

fn hex_sha256(bytes: &[u8]) -> String {
    bulkmock_server::export::digest::bytes_sha256(bytes)
}

/// Both kinds of profile base over `origin`: a bulkmock plan (`/p/{plan}/fhir`,
/// with no rules) and the SMART reference server's settings (`/{settings}/fhir`).
fn profile_bases(origin: &str) -> [String; 2] {
    use base64::Engine;
    let plan = bulkmock_server::faults::profile::encode(&bulkmock_server::faults::FaultPlan::default());
    let settings = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"dur":0}"#);
    [format!("{origin}/p/{plan}/fhir"), format!("{origin}/{settings}/fhir")]
}

#[tokio::test]
async fn gzip_files_through_profile_bases_decode_to_the_plain_file() {
    // SRV-186, SRV-127: a profile base serves the same file bytes as the plain
    // base; its gzip body is valid gzip of exactly those bytes, its length announced.
    let server = MockServer::builder().open().patients(30).start().await;
    let (_, url) = first_file(&server, "_type=Observation").await;
    let (_, _, plain) = bytes(http().get(&url)).await;
    for base in profile_bases(server.fhir_base().trim_end_matches("/fhir")) {
        let r = export_get(format!("{base}/$export?_type=Observation")).send().await.unwrap();
        assert_eq!(r.status(), 202, "{base}");
        let (_, m) = manifest(r.headers()["content-location"].to_str().unwrap()).await;
        let url = &m.output[0].url;
        assert!(url.starts_with(&base), "{url}");
        let (_, headers, body) = bytes(http().get(url)).await;
        assert!(body == plain, "the plain file through {base} is byte-identical");
        assert_eq!(headers["content-length"], plain.len().to_string().as_str());
        let (status, headers, gz) = bytes(http().get(url).header("Accept-Encoding", "gzip")).await;
        assert_eq!((status.as_u16(), &headers["content-encoding"]), (200, &"gzip".parse().unwrap()));
        assert_eq!(headers["content-length"], gz.len().to_string().as_str());
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut decoded).expect("valid gzip");
        assert!(decoded == plain, "gzip through {base} decodes to the plain file");
    }
}

#[tokio::test]
async fn profile_bases_stream_file_bodies_without_buffering() {
    use axum::body::Body;
    use bulkmock_server::app::{AppState, router};
    use bulkmock_server::config::ServerConfig;
    use futures_util::StreamExt;
    use tower::ServiceExt;
    let origin = "http://127.0.0.1:1";
    let config = ServerConfig {
        patients: 60,
        open: true,
        count_before_accepting: true,
        job_duration: Duration::ZERO,
        ..ServerConfig::default()
    };
    let state = AppState::new(config, origin).unwrap();
    let get = |url: &str| {
        let path = url.strip_prefix(origin).unwrap_or(url).to_string();
        let request = axum::http::Request::get(path)
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .body(Body::empty())
            .unwrap();
        router(std::sync::Arc::clone(&state)).oneshot(request)
    };
    for base in profile_bases(origin) {
        let kickoff = get(&format!("{base}/$export?_type=Observation")).await.unwrap();
        assert_eq!(kickoff.status(), 202, "{base}");
        let status = kickoff.headers()["content-location"].to_str().unwrap().to_string();
        let m = get(&status).await.unwrap();
        assert_eq!(m.status(), 200, "{status}");
        let m: serde_json::Value =
            serde_json::from_slice(&axum::body::to_bytes(m.into_body(), usize::MAX).await.unwrap()).unwrap();
        let file = get(m["output"][0]["url"].as_str().unwrap()).await.unwrap();
        let total: usize = file.headers()["content-length"].to_str().unwrap().parse().unwrap();
        assert!(total > 256 * 1024, "a file of several 64 KiB chunks: {total} bytes");
        let first = file.into_body().into_data_stream().next().await.unwrap().unwrap();
        // Chunks end at a line end just past 64 KiB; a buffered body is one frame.
        assert!(first.len() < total / 2, "the file streams in chunks through {base}, not whole ({})", first.len());
    }
}

/// A `drip` slice length whose first slice ends inside an emoji (a 4-byte
/// character) at least `min` bytes into `text`: two of its bytes in, two out.
fn slice_ending_inside_an_emoji(text: &str, min: usize) -> usize {
    let emoji = text.char_indices().find(|&(i, c)| i >= min && c.len_utf8() == 4);
    emoji.unwrap_or_else(|| panic!("an emoji past byte {min} of the file")).0 + 2
}

/// A body's chunks exactly as they came off the socket.
async fn chunks(url: &str) -> Vec<Vec<u8>> {
    let mut r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        out.push(chunk.to_vec());
    }
    out
}

/// How many chunks end inside a character of `text` (their concatenation).
fn chunks_ending_inside_a_character(chunks: &[Vec<u8>], text: &str) -> usize {
    let ends = chunks.iter().scan(0, |end, c| {
        *end += c.len();
        Some(*end)
    });
    ends.filter(|&end| !text.is_char_boundary(end)).count()
}

/// SRV-194, SRV-184: a file's multi-byte UTF-8 characters (the synthetic
/// data's non-ASCII share) cross the chunks its body arrives in. Through a
/// `drip` whose slices end inside an emoji, a received chunk ends inside a
/// character, so decoding chunk by chunk (`chunk.toString("utf8")`) corrupts
/// the text, while the chunks joined are the file, byte for byte.
#[tokio::test]
async fn multi_byte_characters_straddle_chunk_boundaries_on_the_wire() {
    let server = MockServer::builder().open().patients(30).start().await;
    let (_, url) = first_file(&server, "_type=Condition").await;
    let (_, _, file) = bytes(http().get(&url)).await;
    let text = std::str::from_utf8(&file).expect("the file is UTF-8");
    assert!(file.len() < 64 * 1024, "one body chunk, so slices start at byte 0: {}", file.len());
    let slice = slice_ending_inside_an_emoji(text, file.len() / 20);
    server.faults().add(FaultRule::new(Target::File, Fault::Drip { bytes_per_s: 10 * slice as u64 }));
    // Slices leave 100 ms apart; a reader held up that long could receive two
    // as one chunk, so a download whose chunks all end on boundaries is tried again.
    for attempt in 1..=3 {
        let received = chunks(&url).await;
        assert_eq!(received.concat(), file, "the chunks joined are the file");
        let split = chunks_ending_inside_a_character(&received, text);
        if split == 0 && attempt < 3 {
            continue;
        }
        assert!(split >= 1, "a chunk ends inside a character ({} chunks of {slice} bytes)", received.len());
        let chunk_by_chunk: String = received.iter().map(|c| String::from_utf8_lossy(c)).collect();
        assert!(chunk_by_chunk.contains('\u{fffd}') && chunk_by_chunk != text, "decoding each chunk alone corrupts");
        return;
    }
}

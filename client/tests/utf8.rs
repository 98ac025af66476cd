//! Multi-byte UTF-8 characters split across the chunks a body arrives in:
//! the client checks whole lines, never a chunk alone, so what it writes is
//! the file, byte for byte (CLI-092).

mod common;

use std::sync::{Arc, Mutex};

use bulkmock_client::{Client, Event, ExportRequest, Level};
use bulkmock_server::{Fault, FaultRule, MockServer, Target};
use common::*;

/// A `drip` slice length whose first slice ends inside an emoji (a 4-byte
/// character) at least `min` bytes into `text`: two of its bytes in, two out.
fn slice_ending_inside_an_emoji(text: &str, min: usize) -> usize {
    let emoji = text.char_indices().find(|&(i, c)| i >= min && c.len_utf8() == 4);
    emoji.unwrap_or_else(|| panic!("an emoji past byte {min} of the file")).0 + 2
}

/// A plain (no gzip) client with one download at a time; the size of every
/// chunk it receives is pushed to `chunks`.
async fn recording_client(server: &MockServer, chunks: Arc<Mutex<Vec<usize>>>) -> Client {
    Client::builder(server.fhir_base())
        .credentials(credentials(server))
        .policy(fast())
        .parallel(1)
        .gzip(false)
        .seed(7)
        .observer(Arc::new(move |e: &Event| {
            if let Event::FileBytes { bytes, .. } = e {
                chunks.lock().unwrap().push(*bytes as usize);
            }
        }))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn characters_split_across_chunks_are_written_whole() {
    let server = MockServer::builder().patients(30).start().await;
    let request = ExportRequest { types: vec!["Condition".into()], ..ExportRequest::new(Level::System) };
    let expected = baseline(&server, &request, "utf8-clean").await;
    let file = &expected["Condition.ndjson"];
    let text = std::str::from_utf8(file).expect("the file is UTF-8");
    assert!(file.len() < 64 * 1024, "one body chunk, so slices start at byte 0: {}", file.len());
    let slice = slice_ending_inside_an_emoji(text, file.len() / 20);
    server.faults().add(FaultRule::new(Target::File, Fault::Drip { bytes_per_s: 10 * slice as u64 }));
    // Slices leave 100 ms apart; a reader held up that long could receive two
    // as one chunk, so a run whose chunks all end on boundaries is tried again.
    for attempt in 1..=3 {
        let chunks: Arc<Mutex<Vec<usize>>> = Arc::default();
        let out = out_dir(&format!("utf8-drip-{attempt}"));
        recording_client(&server, chunks.clone()).await.export(&request, &out).await.unwrap();
        assert!(files(&out) == expected, "the output is the clean export, byte for byte");
        let _ = std::fs::remove_dir_all(&out);
        let chunks = chunks.lock().unwrap().clone();
        assert_eq!(chunks.iter().sum::<usize>(), file.len(), "one file, received once");
        let ends = chunks.iter().scan(0, |end, n| {
            *end += n;
            Some(*end)
        });
        let split = ends.filter(|&end| !text.is_char_boundary(end)).count();
        if split == 0 && attempt < 3 {
            continue;
        }
        assert!(split >= 1, "a chunk ended inside a character ({} chunks of {slice} bytes)", chunks.len());
        return;
    }
}

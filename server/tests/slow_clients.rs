//! Slow clients cannot hold the server: a client that sends its request head
//! a byte at a time is cut off after the header read timeout.

use std::time::Duration;

mod common;

use bulkmock_server::MockServer;
use bulkmock_server::limits::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_client_sending_its_headers_a_byte_at_a_time_is_cut_off() {
    let limits = Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() };
    let server = MockServer::builder().open().limits(limits).start().await;
    let addr = server.fhir_base().trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Whatever the server sends until it closes the connection.
    let closed = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        answer
    });
    // A head of 200 header bytes sent one every 50 ms would take 10 s.
    let head = format!("GET /fhir/metadata HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n\r\n", "a".repeat(200));
    let mut sent = 0;
    for byte in head.as_bytes() {
        if closed.is_finished() || writer.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent < head.len(), "the whole head was accepted and the connection stayed open");
    let answer = closed.await.unwrap();
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{}", String::from_utf8_lossy(&answer));
}

/// The server's `host:port`.
fn origin(server: &MockServer) -> String {
    server.fhir_base().trim_start_matches("http://").trim_end_matches("/fhir").to_string()
}

/// Waits (bounded) until `done` holds; false when it never did.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..3000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_a_file_body_is_dropped() {
    // A long header read timeout, so only the stalled write can close the idle connection.
    let limits = Limits {
        stalled_write_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let server = MockServer::builder().open().patients(3000).resources_per_file(1_000_000).limits(limits).start().await;
    let status = common::kickoff(&server, "$export", "_type=Observation").await;
    let (_, manifest) = common::manifest(&status).await;
    let url = manifest.output[0].url.clone();
    let path = url.split_once("/fhir/").map(|(_, p)| format!("/fhir/{p}")).unwrap();
    // Far more than the kernel buffers of both ends (a 4 KiB receive buffer here, at most 4 MiB to send there).
    let head = common::http().head(&url).send().await.unwrap();
    let size: u64 = head.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert!(size > 8 << 20, "the file must outgrow the socket buffers: {size} bytes");

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(origin(&server).parse().unwrap()).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", origin(&server)).as_bytes()).await.unwrap();
    let mut first = vec![0; 1024];
    stream.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first));
    // The client reads nothing more; the server gives up on it and closes its side.
    assert!(
        eventually(|| server.state().connections.open_connections() == 0).await,
        "the stalled connection is still open on the server"
    );
    // The connection's task ends just after it closes the connection: wait for it too.
    assert!(eventually(|| server.state().connections.connection_tasks() == 0).await, "its task ended");
    // Reading again ends (EOF or reset) long before the whole file.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the connection is still open");
    assert!(((first.len() + rest.len()) as u64) < size, "the whole file was sent");
    let sent = server.transcript().into_iter().find(|e| e.path == path && e.method == "GET").unwrap();
    assert!(sent.bytes < size, "{} of {size} bytes sent", sent.bytes);
}

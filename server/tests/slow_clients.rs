//! Slow clients cannot hold the server: a client that sends its request head
//! a byte at a time is cut off after the header read timeout.

use std::time::Duration;

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

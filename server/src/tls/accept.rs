//! The TLS handshake of one accepted connection. A client that speaks plain
//! HTTP to the TLS port gets a plain 400 that says to use https, instead of a
//! connection that just closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The first byte of every TLS connection (a handshake record).
const HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to plain HTTP on the TLS port.
const PLAIN_HTTP_ANSWER: &str = "this server speaks HTTPS only (bulkmock serve --tls): use an https:// URL\n";

/// A stream whose first byte was already read: it is read again first.
pub(crate) struct Peeked<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Peeked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(b) = self.first.take() {
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Peeked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes the TLS handshake on `io` within `timeout`. `None` when the peer
/// spoke plain HTTP (answered with a 400), failed the handshake (e.g. it does
/// not trust the certificate), or was too slow.
pub(crate) async fn handshake<S>(acceptor: &TlsAcceptor, mut io: S, timeout: Duration) -> Option<TlsStream<Peeked<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async move {
        let first = io.read_u8().await.ok()?;
        if first != HANDSHAKE_RECORD {
            answer_plain_http(io, first).await;
            return None;
        }
        acceptor.accept(Peeked { first: Some(first), inner: io }).await.ok()
    };
    tokio::time::timeout(timeout, handshake).await.ok().flatten()
}

/// Reads the rest of a plain request head (so closing does not reset it away) and answers 400.
async fn answer_plain_http<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, first: u8) {
    let mut head = vec![first];
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PLAIN_HTTP_ANSWER}",
        PLAIN_HTTP_ANSWER.len()
    );
    let _ = io.write_all(response.as_bytes()).await;
    let _ = io.shutdown().await;
}

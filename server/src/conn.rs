//! The accept loop: every connection served by hyper with a header read
//! timeout (a client that sends its request head too slowly is cut off;
//! `axum::serve` sets no timer, so hyper's own default never applies), and a
//! graceful stop: no new connections, requests in flight finish. With TLS, each
//! connection's handshake runs in its own task (bounded by the same timeout)
//! over the resettable stream, so the `reset` fault still ends in a TCP RST.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::transport::ResettableListener;

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` completes,
/// then waits for the open connections to finish.
pub async fn run(
    mut listener: ResettableListener,
    app: Router,
    header_read_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Connections hold a receiver each: `closed()` on the sender completes when all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(io, app, peer, header_read_timeout, stop).await,
                Some(tls) => {
                    if let Some(io) = crate::tls::accept::handshake(&tls, io, header_read_timeout).await {
                        serve_connection(io, app, peer, header_read_timeout, stop).await;
                    }
                }
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
}

/// Serves one connection with hyper until it closes, or gracefully once `stop` changes.
async fn serve_connection<I>(
    io: I,
    app: Router,
    peer: crate::transport::Peer,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { tower_service::Service::call(&mut app, request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

//! The accept loop: every connection served by hyper with a header read
//! timeout (a client that sends its request head too slowly is cut off;
//! `axum::serve` sets no timer, so hyper's own default never applies), at most
//! `max_connections` served at once (one more of each beyond it answered 503
//! and closed), and a graceful stop: no new connections, requests in flight
//! finish. With TLS, each connection's handshake runs in its own task (bounded
//! by the same timeout) over the resettable stream, so the `reset` fault still
//! ends in a TCP RST.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};

use crate::limits::Limits;
use crate::transport::ResettableListener;

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` completes,
/// then waits for the open connections to finish.
pub async fn run(
    mut listener: ResettableListener,
    app: Router,
    limits: &Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    listener.set_stalled_write_timeout(limits.stalled_write_timeout);
    let header_read_timeout = limits.header_read_timeout;
    let max_connections = match limits.max_connections {
        0 => Semaphore::MAX_PERMITS / 2,
        n => n.min(Semaphore::MAX_PERMITS / 2),
    };
    // Served connections hold a permit of `served`; every open socket, refused
    // ones included, holds one of `sockets`, so refusals are bounded too: past
    // twice the limit the loop stops accepting (new peers wait in the backlog).
    let served = Arc::new(Semaphore::new(max_connections));
    let sockets = Arc::new(Semaphore::new(2 * max_connections));
    // Connections hold a receiver each: `closed()` on the sender completes when all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut serial = 0;
    loop {
        let socket = tokio::select! {
            permit = Arc::clone(&sockets).acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let task = listener.switches().task_started();
        serial += 1;
        let serial = crate::transport::ConnectionSerial(serial);
        let tls = tls.clone();
        let Ok(slot) = Arc::clone(&served).try_acquire_owned() else {
            let limit = limits.max_connections;
            tokio::spawn(async move {
                let _held = (socket, task);
                match tls {
                    None => refuse_connection(io, limit, header_read_timeout).await,
                    Some(tls) => {
                        if let Some(io) = crate::tls::accept::handshake(&tls, io, header_read_timeout).await {
                            refuse_connection(io, limit, header_read_timeout).await;
                        }
                    }
                }
            });
            continue;
        };
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _held = (socket, slot, task);
            match tls {
                None => serve_connection(io, app, (peer, serial), header_read_timeout, stop).await,
                Some(tls) => {
                    if let Some(io) = crate::tls::accept::handshake(&tls, io, header_read_timeout).await {
                        serve_connection(io, app, (peer, serial), header_read_timeout, stop).await;
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

/// Answers the one request of a connection beyond the limit with 503 + Retry-After, then closes it.
async fn refuse_connection<I>(io: I, limit: usize, header_read_timeout: Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let refuse = hyper::service::service_fn(move |_| async move {
        Ok::<_, std::convert::Infallible>(crate::limits::connections_refused(limit))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout).keep_alive(false);
    let _ = builder.serve_connection(TokioIo::new(io), refuse).await;
}

/// Serves one connection with hyper until it closes, or gracefully once `stop` changes.
async fn serve_connection<I>(
    io: I,
    app: Router,
    (peer, serial): (crate::transport::Peer, crate::transport::ConnectionSerial),
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(serial);
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

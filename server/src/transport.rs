//! The server's connections, with a switch that resets them.
//!
//! A reset (TCP RST) cannot be sent through hyper, so the listener wraps each
//! accepted stream: when the `reset` fault trips a connection's switch, the
//! stream sets `SO_LINGER` to zero and fails its next write; hyper then drops
//! the connection, and the kernel answers the peer with RST instead of FIN.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The peer of a connection (the connect info of every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, ResettableListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        *stream.remote_addr()
    }
}

/// The reset switches of open connections, by peer address.
#[derive(Default)]
pub struct Switches {
    by_peer: Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>,
}

impl Switches {
    /// Trips the switch of the connection from `peer`: its next write resets it.
    pub fn reset(&self, peer: SocketAddr) -> bool {
        match self.by_peer.lock().expect("switches").get(&peer) {
            Some(switch) => {
                switch.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }
}

/// A TCP listener whose connections can be reset.
pub struct ResettableListener {
    inner: TcpListener,
    switches: Arc<Switches>,
}

impl ResettableListener {
    /// Wraps `inner`; `switches` is shared with the fault middleware.
    pub fn new(inner: TcpListener, switches: Arc<Switches>) -> Self {
        ResettableListener { inner, switches }
    }
}

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let switch = Arc::new(AtomicBool::new(false));
                    self.switches.by_peer.lock().expect("switches").insert(addr, Arc::clone(&switch));
                    let io =
                        ResettableStream { inner: stream, switch, peer: addr, switches: Arc::clone(&self.switches) };
                    return (io, Peer(addr));
                }
                // Out of file descriptors or a peer that gave up: wait a little and go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr().map(Peer)
    }
}

/// An accepted connection with a reset switch.
pub struct ResettableStream {
    inner: TcpStream,
    switch: Arc<AtomicBool>,
    peer: SocketAddr,
    switches: Arc<Switches>,
}

impl ResettableStream {
    /// When the switch is tripped: arm the RST and fail.
    fn check(&self) -> io::Result<()> {
        if !self.switch.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by a fault"))
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.switch.load(Ordering::SeqCst) {
            // Closing with a zero linger sends RST instead of FIN.
            let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        }
        self.switches.by_peer.lock().expect("switches").remove(&self.peer);
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! The server's connections, with a switch that resets them and a timer that
//! drops a peer who stops reading.
//!
//! A reset (TCP RST) cannot be sent through hyper, so the listener wraps each
//! accepted stream: when the `reset` fault trips a connection's switch, the
//! stream sets `SO_LINGER` to zero and fails its next write; hyper then drops
//! the connection, and the kernel answers the peer with RST instead of FIN.
//!
//! A write the peer does not drain (its receive window full) arms a timer; if no
//! byte goes out before it fires, the write fails the same way (RST, so the
//! kernel discards the unsent bytes too): a client that stops reading a file
//! body holds neither a task nor buffers beyond `Limits::stalled_write_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// The peer of a connection (the connect info of every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(pub SocketAddr);

/// The serial number the server gave a connection when it accepted it (1, 2, ...):
/// in every request's extensions, unlike the peer's port never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSerial(pub u64);

impl Connected<IncomingStream<'_, ResettableListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        *stream.remote_addr()
    }
}

/// The reset switches of open connections, by peer address; also counts the
/// open connections and the tasks serving them (to show nothing leaks).
#[derive(Default)]
pub struct Switches {
    by_peer: Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>,
    tasks: AtomicUsize,
}

/// Counts one connection task while it lives (see [`Switches::connection_tasks`]).
pub struct TaskGuard(Arc<Switches>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.tasks.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Switches {
    /// Connections accepted and not yet closed (their sockets still open).
    pub fn open_connections(&self) -> usize {
        self.by_peer.lock().expect("switches").len()
    }

    /// Tasks serving (or refusing) a connection that have not ended yet.
    pub fn connection_tasks(&self) -> usize {
        self.tasks.load(Ordering::SeqCst)
    }

    /// Counts a connection task until the guard drops.
    pub fn task_started(self: &Arc<Self>) -> TaskGuard {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        TaskGuard(Arc::clone(self))
    }

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
    stalled_write_timeout: Option<Duration>,
}

impl ResettableListener {
    /// Wraps `inner`; `switches` is shared with the fault middleware.
    pub fn new(inner: TcpListener, switches: Arc<Switches>) -> Self {
        ResettableListener { inner, switches, stalled_write_timeout: None }
    }

    /// Connections whose writes make no progress for `timeout` are reset; zero: never.
    pub fn set_stalled_write_timeout(&mut self, timeout: Duration) {
        self.stalled_write_timeout = (!timeout.is_zero()).then_some(timeout);
    }

    /// The switches and counters of this listener's connections.
    pub fn switches(&self) -> &Arc<Switches> {
        &self.switches
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
                    let io = ResettableStream {
                        inner: stream,
                        switch,
                        peer: addr,
                        switches: Arc::clone(&self.switches),
                        stalled_write_timeout: self.stalled_write_timeout,
                        stalled: None,
                    };
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

/// An accepted connection with a reset switch and a stalled-write timer.
pub struct ResettableStream {
    inner: TcpStream,
    switch: Arc<AtomicBool>,
    peer: SocketAddr,
    switches: Arc<Switches>,
    stalled_write_timeout: Option<Duration>,
    /// Armed while a write waits for the peer to read; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
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

    /// Tracks a write's progress: `Pending` arms the timer (once) and fails the
    /// write when it fires; anything else disarms it.
    fn progress<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let Poll::Pending = polled else {
            self.stalled = None;
            return polled;
        };
        let Some(timeout) = self.stalled_write_timeout else { return Poll::Pending };
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Reset rather than close: the kernel drops the bytes the peer never read.
        let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer read nothing for {} s (stalled write timeout)", timeout.as_secs_f64()),
        )))
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
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

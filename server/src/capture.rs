//! Response capture: every response exactly as it leaves the server (status,
//! headers, body bytes, whether the body went out whole), for observers that
//! check the wire format independently of the server's types (the workspace's
//! wire-validity test). Off unless [`ResponseLog::enable`] is called; when
//! off, the layer costs one atomic load per request.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt};

use crate::app::AppState;
use crate::faults::invariants::{Deliberate, Invariant};

/// Body bytes kept per response; a longer body is counted, not kept.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Request headers kept with a captured response (what shaped the answer).
const REQUEST_HEADERS: &[&str] = &["accept", "accept-encoding", "range", "prefer", "if-range"];

/// How a response body ended (also the transcript's `body_end`, in snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEnd {
    /// The body stream ran to its end.
    Complete,
    /// The body stream failed (a fault cut it); the connection was closed.
    Failed,
    /// The body was dropped before its end: the client went away or the
    /// connection was reset.
    Dropped,
}

/// One response as sent.
#[derive(Debug, Clone)]
pub struct CapturedResponse {
    /// The transcript's `seq` of the exchange, when the request reached the
    /// fault layer (every FHIR and auth route does).
    pub seq: Option<u64>,
    /// The request method.
    pub method: String,
    /// The request path as the client sent it (a profile prefix included).
    pub path: String,
    /// The request's query string.
    pub query: Option<String>,
    /// Request headers that shape the answer (`accept`, `accept-encoding`, `range`, `prefer`).
    pub request_headers: BTreeMap<String, String>,
    /// The status.
    pub status: u16,
    /// Every response header, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// The body length the connection announced (`Content-Length`), if any.
    pub announced_length: Option<u64>,
    /// The body bytes sent (the first [`BODY_LIMIT`] of them).
    pub body: Vec<u8>,
    /// How many body bytes were handed to the connection.
    pub sent: u64,
    /// How the body ended.
    pub end: BodyEnd,
    /// The invariants a fault or quirk broke on purpose on this response.
    pub deliberate: Vec<Invariant>,
}

impl CapturedResponse {
    /// The first value of a response header (`name` lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the whole body went out: it ended and its bytes match what was announced.
    pub fn whole(&self) -> bool {
        self.end == BodyEnd::Complete
            && self.announced_length.is_none_or(|n| n == self.sent)
            && self.sent as usize <= BODY_LIMIT
    }
}

/// The transcript `seq` of a response's exchange (set by the fault layer).
#[derive(Debug, Clone, Copy)]
pub struct ExchangeSeq(pub u64);

/// The captured responses of a server.
#[derive(Debug, Default)]
pub struct ResponseLog {
    enabled: AtomicBool,
    /// Bodies still being sent.
    open: AtomicUsize,
    /// Woken whenever a body ends.
    ended: tokio::sync::Notify,
    responses: Mutex<Vec<CapturedResponse>>,
}

impl ResponseLog {
    /// Starts capturing every response.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// Whether responses are captured.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Takes the responses whose bodies have ended so far, in the order they ended.
    pub fn take(&self) -> Vec<CapturedResponse> {
        std::mem::take(&mut *self.responses.lock().expect("response log"))
    }

    /// Takes the responses once every body being sent has ended (a client
    /// that is done closes its connections, which ends them), waiting at most `within`.
    pub async fn settle(&self, within: std::time::Duration) -> Vec<CapturedResponse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ended = self.ended.notified();
            if self.open.load(Ordering::SeqCst) == 0 || tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.take();
            }
        }
    }

    fn opened(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    fn push(&self, response: CapturedResponse) {
        self.responses.lock().expect("response log").push(response);
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.ended.notify_waiters();
    }
}

/// The middleware (outermost): records each response as it leaves when capture is on.
pub async fn layer(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !state.captured.enabled() {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let request_headers = REQUEST_HEADERS
        .iter()
        .filter_map(|&name| Some((name.to_string(), request.headers().get(name)?.to_str().ok()?.to_string())))
        .collect();
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    // The length hyper announces for a body of known size, made explicit as the body is wrapped.
    if let Some(len) = axum::body::HttpBody::size_hint(&body).exact()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let announced_length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let record = CapturedResponse {
        seq: parts.extensions.get::<ExchangeSeq>().map(|s| s.0),
        method,
        path,
        query,
        request_headers,
        status: parts.status.as_u16(),
        headers,
        announced_length,
        body: Vec::new(),
        sent: 0,
        end: BodyEnd::Dropped,
        deliberate: parts.extensions.get::<Deliberate>().map(|d| d.0.clone()).unwrap_or_default(),
    };
    state.captured.opened();
    let tap = Tap { inner: body.into_data_stream(), record: Some(record), state };
    Response::from_parts(parts, Body::from_stream(tap))
}

/// A body stream that copies what passes and logs the record when it ends or drops.
struct Tap {
    inner: axum::body::BodyDataStream,
    record: Option<CapturedResponse>,
    state: Arc<AppState>,
}

impl Tap {
    fn finish(&mut self, end: BodyEnd) {
        if let Some(mut record) = self.record.take() {
            record.end = end;
            self.state.captured.push(record);
        }
    }
}

impl Stream for Tap {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(record) = self.record.as_mut() {
                    record.sent += bytes.len() as u64;
                    let room = BODY_LIMIT.saturating_sub(record.body.len());
                    record.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(BodyEnd::Failed),
            Poll::Ready(None) => self.finish(BodyEnd::Complete),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // hyper may stop polling once the announced length went out.
        let whole = self.record.as_ref().is_some_and(|r| r.announced_length == Some(r.sent));
        self.finish(if whole { BodyEnd::Complete } else { BodyEnd::Dropped });
    }
}

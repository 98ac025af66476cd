//! Faults on response bodies and connections: truncation (anywhere or at a
//! line end), resets, slow drips, stalls, corrupt compressed bytes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;

use crate::app::AppState;

/// Splits a response, its exact body length made explicit in `Content-Length`
/// (a body wrapped in a stream loses the size hint hyper would announce, and a
/// JSON document's handler sets no header): the length, when known.
fn with_length(response: Response) -> (axum::http::response::Parts, Body, Option<u64>) {
    let (mut parts, body) = response.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let len = declared.or_else(|| axum::body::HttpBody::size_hint(&body).exact());
    if let (None, Some(n)) = (declared, len) {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    (parts, body, len)
}

/// Flips bytes in the middle of the (compressed) body, keeping its length.
pub(super) fn corrupt(response: Response) -> Response {
    let (parts, body, len) = with_length(response);
    let len = len.unwrap_or(0);
    let target = len / 2;
    let mut offset = 0u64;
    let stream = body.into_data_stream().map(move |chunk| {
        chunk.map(|bytes| {
            let start = offset;
            offset += bytes.len() as u64;
            if (start..offset).contains(&target) {
                let mut owned = bytes.to_vec();
                let at = (target - start) as usize;
                for b in owned.iter_mut().skip(at).take(16) {
                    *b ^= 0x5a;
                }
                Bytes::from(owned)
            } else {
                bytes
            }
        })
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Where a cut falls in a body.
#[derive(Debug, Clone, Copy)]
pub(super) enum CutAt {
    /// After this many bytes.
    Byte(u64),
    /// Just after the first line end at or past this many bytes (a cut exactly
    /// at the offset when the byte before it ends a line).
    LineEndFrom(u64),
}

/// How far a cut has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the cut.
    Passing,
    /// Everything up to the cut is sent, and it fell at the end of a chunk: more
    /// data means the cut acts, the body's end means it did not.
    AtEdge,
    /// The cut acts: the body fails.
    Cutting,
    /// The cut fell at the end of a body of known length: the rest passes.
    Through,
    /// Ended.
    Done,
}

/// A fault on a body that learns only while the body streams that it cannot
/// act (the body ended before its offset; only a body of unknown length, one
/// without `Content-Length`, can): the body sets why, and the transcript
/// records the exchange as not applied instead of fired.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unacted(pub Arc<OnceLock<String>>);

impl Unacted {
    /// A watcher on `parts`, for the body to set.
    fn on(parts: &mut axum::http::response::Parts) -> Unacted {
        let unacted = Unacted::default();
        parts.extensions.insert(unacted.clone());
        unacted
    }

    fn set(&self, why: String) {
        let _ = self.0.set(why);
    }
}

/// Sends the body up to the cut, then fails it so the connection closes: with
/// `Content-Length` (announced for the whole body) the client gets fewer bytes
/// than promised; a chunked body (no length) ends without its last chunk. The
/// body streams: nothing is held but the chunk in hand. A body that ends
/// before the cut goes out whole, and the exchange is recorded as not applied.
pub(super) fn cut(response: Response, at: CutAt) -> Response {
    let (mut parts, body, total) = with_length(response);
    let unacted = Unacted::on(&mut parts);
    let why = move |sent: u64| match at {
        CutAt::Byte(n) => {
            format!("truncate after {n} bytes cannot act on a body that ended after {sent} bytes: sent untouched")
        }
        CutAt::LineEndFrom(n) => format!(
            "truncate at the line end from byte {n} cannot act on a body that ended after {sent} bytes, at or before that line end: sent untouched"
        ),
    };
    let stream = futures_util::stream::unfold(
        (body.into_data_stream(), 0u64, Phase::Passing),
        move |(mut data, sent, mut phase)| {
            let unacted = unacted.clone();
            async move {
                loop {
                    match phase {
                        Phase::Done => return None,
                        Phase::Cutting => {
                            // Give the connection time to write what was sent before failing it.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let error = std::io::Error::other("truncated by a fault");
                            return Some((Err(error), (data, sent, Phase::Done)));
                        }
                        _ => {}
                    }
                    let chunk = match data.next().await {
                        None => {
                            if matches!(phase, Phase::Passing | Phase::AtEdge) {
                                unacted.set(why(sent));
                            }
                            return None;
                        }
                        Some(Err(e)) => return Some((Err(std::io::Error::other(e)), (data, sent, Phase::Done))),
                        Some(Ok(chunk)) if chunk.is_empty() => continue,
                        Some(Ok(chunk)) => chunk,
                    };
                    let start = sent;
                    let end = start + chunk.len() as u64;
                    match phase {
                        Phase::AtEdge => {
                            phase = Phase::Cutting; // more follows the cut: drop it
                            continue;
                        }
                        Phase::Through => return Some((Ok(chunk), (data, end, phase))),
                        _ => {}
                    }
                    let keep = match at {
                        CutAt::Byte(n) => (end >= n).then(|| (n - start) as usize),
                        CutAt::LineEndFrom(n) => {
                            let from = n.saturating_sub(1);
                            (end > from)
                                .then(|| from.saturating_sub(start) as usize)
                                .and_then(|i| chunk[i..].iter().position(|&b| b == b'\n').map(|j| i + j + 1))
                        }
                    };
                    let Some(keep) = keep else {
                        return Some((Ok(chunk), (data, end, Phase::Passing)));
                    };
                    let next = if keep < chunk.len() {
                        Phase::Cutting
                    } else if total.is_some_and(|t| end >= t) {
                        // The cut falls at the end of the body: nothing to cut.
                        unacted.set(why(end));
                        Phase::Through
                    } else {
                        Phase::AtEdge
                    };
                    if keep == 0 {
                        phase = next;
                        continue;
                    }
                    return Some((Ok(chunk.slice(..keep)), (data, start + keep as u64, next)));
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Sends the body at `bytes_per_s`, in ten slices a second.
pub(super) fn drip(response: Response, bytes_per_s: u64) -> Response {
    let (parts, body, _) = with_length(response);
    let slice = (bytes_per_s / 10).max(1) as usize;
    let stream = body.into_data_stream().flat_map(move |chunk| {
        let pieces: Vec<Result<Bytes, axum::Error>> = match chunk {
            Ok(bytes) => {
                (0..bytes.len()).step_by(slice).map(|i| Ok(bytes.slice(i..(i + slice).min(bytes.len())))).collect()
            }
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(pieces).then(|piece| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            piece
        })
    });
    Response::from_parts(parts, Body::from_stream(stream.fuse()))
}

/// Sends the headers and `after_bytes` of the body, then resets the connection.
pub(super) fn reset(
    state: &AppState,
    response: Response,
    peer: Option<std::net::SocketAddr>,
    after_bytes: u64,
) -> Response {
    let switches = Arc::clone(&state.connections);
    let trip = move || {
        if let Some(peer) = peer {
            switches.reset(peer);
        }
    };
    if after_bytes == 0 {
        trip(); // the headers' write fails: a reset before any byte
        return response;
    }
    let (mut parts, body, _) = with_length(response);
    let unacted = Unacted::on(&mut parts);
    let limit = after_bytes;
    let stream =
        futures_util::stream::unfold((body.into_data_stream(), 0u64, Some(trip)), move |(mut data, sent, trip)| {
            let unacted = unacted.clone();
            async move {
                let trip = trip?;
                if sent >= limit {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    trip();
                    return Some((
                        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by a fault")),
                        (data, sent, None),
                    ));
                }
                match data.next().await {
                    Some(Ok(chunk)) => {
                        let take = (limit - sent).min(chunk.len() as u64) as usize;
                        Some((Ok(chunk.slice(..take)), (data, sent + take as u64, Some(trip))))
                    }
                    Some(Err(e)) => Some((Err(std::io::Error::other(e)), (data, sent, None))),
                    None => {
                        unacted.set(format!(
                        "reset after {limit} bytes cannot act on a body that ended after {sent} bytes: sent untouched"
                    ));
                        None
                    }
                }
            }
        });
    Response::from_parts(parts, Body::from_stream(stream.fuse()))
}

/// Sends `after_bytes`, pauses `stall_ms`, then sends the rest.
pub(super) fn stall(response: Response, after_bytes: u64, stall_ms: u64) -> Response {
    let (mut parts, body, _) = with_length(response);
    let unacted = Unacted::on(&mut parts);
    let mut sent = 0u64;
    let mut stalled = false;
    // Bytes sent so far, `u64::MAX` once stalled: what the body's end reads.
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let marked = Arc::clone(&progress);
    let stream = body.into_data_stream().flat_map(move |chunk| {
        let mut pieces: Vec<(Result<Bytes, axum::Error>, bool)> = Vec::new();
        match chunk {
            Ok(bytes) if !stalled && sent + bytes.len() as u64 > after_bytes => {
                let head = (after_bytes - sent) as usize;
                pieces.push((Ok(bytes.slice(..head)), false));
                pieces.push((Ok(bytes.slice(head..)), true));
                stalled = true;
                marked.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
                sent += bytes.len() as u64;
            }
            Ok(bytes) => {
                sent += bytes.len() as u64;
                if !stalled {
                    marked.store(sent, std::sync::atomic::Ordering::Relaxed);
                }
                pieces.push((Ok(bytes), false));
            }
            Err(e) => pieces.push((Err(e), false)),
        }
        futures_util::stream::iter(pieces).then(move |(piece, pause)| async move {
            if pause {
                tokio::time::sleep(Duration::from_millis(stall_ms)).await;
            }
            piece
        })
    });
    // At the body's end: a body that ended before `after_bytes` was never stalled.
    let end = futures_util::stream::poll_fn(move |_| {
        let sent = progress.load(std::sync::atomic::Ordering::Relaxed);
        if sent != u64::MAX {
            unacted.set(format!(
                "stall after {after_bytes} bytes cannot act on a body that ended after {sent} bytes: sent untouched"
            ));
        }
        std::task::Poll::Ready(None)
    });
    Response::from_parts(parts, Body::from_stream(stream.chain(end).fuse()))
}

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

/// How many bytes `corrupt` flips.
const CORRUPT_SPAN: usize = 16;

/// Where `corrupt` flips bytes in a gzip body of unknown length: this far into
/// the deflate data, past the gzip header and its optional fields.
pub const CORRUPT_INTO_DEFLATE: usize = 1024;

/// The gzip trailer (CRC-32 and size), never flipped on a body of unknown length.
const GZIP_TRAILER: usize = 8;

/// Flips 16 compressed bytes, keeping the body's length: in the middle of a
/// body of known length; in a body of unknown length (chunked), 1 KiB
/// ([`CORRUPT_INTO_DEFLATE`]) into the deflate data, or in the middle of the
/// deflate data of a body that ends sooner (the body's first bytes are held
/// until one of the two is known: at most that KiB past the header, and the
/// chunk in hand). A body too short for any deflate data goes out untouched,
/// recorded as not applied.
pub(super) fn corrupt(response: Response) -> Response {
    let (mut parts, body, len) = with_length(response);
    let Some(len) = len else {
        let unacted = Unacted::on(&mut parts);
        return Response::from_parts(parts, Body::from_stream(corrupt_unknown(body, unacted)));
    };
    let target = len / 2;
    let mut offset = 0u64;
    let stream = body.into_data_stream().map(move |chunk| {
        chunk.map(|bytes| {
            let start = offset;
            offset += bytes.len() as u64;
            if (start..offset).contains(&target) {
                let mut owned = bytes.to_vec();
                let at = (target - start) as usize;
                flip(&mut owned[at..]);
                Bytes::from(owned)
            } else {
                bytes
            }
        })
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Flips the first [`CORRUPT_SPAN`] bytes of `bytes` (fewer when it is shorter).
fn flip(bytes: &mut [u8]) {
    for b in bytes.iter_mut().take(CORRUPT_SPAN) {
        *b ^= 0x5a;
    }
}

/// The length of a gzip member's header (RFC 1952 2.3: 10 bytes, then the
/// optional extra field, name, comment and header CRC its flags announce), or
/// `None` while `bytes` do not hold it all yet. Bytes that are not gzip are
/// taken for a 10-byte header.
fn gzip_header_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 10 {
        return None;
    }
    if bytes[..2] != [0x1f, 0x8b] {
        return Some(10);
    }
    let flags = bytes[3];
    let mut at = 10;
    if flags & 0x04 != 0 {
        let extra = u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]) as usize;
        at += 2 + extra;
    }
    for flag in [0x08, 0x10] {
        if flags & flag != 0 {
            at += bytes.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    (bytes.len() >= at).then_some(at)
}

/// [`corrupt`] on a body of unknown length.
fn corrupt_unknown(
    body: Body,
    unacted: Unacted,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    // `held` is `Some` until the flip is placed, then the rest passes.
    futures_util::stream::unfold((body.into_data_stream(), Some(Vec::new())), move |(mut data, held)| {
        let unacted = unacted.clone();
        async move {
            let Some(mut held) = held else {
                let chunk = data.next().await?;
                return Some((chunk.map_err(std::io::Error::other), (data, None)));
            };
            loop {
                match data.next().await {
                    Some(Ok(bytes)) => {
                        held.extend_from_slice(&bytes);
                        if let Some(header) = gzip_header_len(&held)
                            && held.len() >= header + CORRUPT_INTO_DEFLATE + CORRUPT_SPAN + GZIP_TRAILER
                        {
                            flip(&mut held[header + CORRUPT_INTO_DEFLATE..]);
                            return Some((Ok(Bytes::from(held)), (data, None)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(std::io::Error::other(e)), (data, None))),
                    None => {
                        // The body ended within the first KiB: the middle of its deflate data.
                        let header = gzip_header_len(&held).unwrap_or(held.len());
                        let deflate = held.len().saturating_sub(header + GZIP_TRAILER);
                        if deflate == 0 {
                            unacted.set(format!(
                                "gzip corrupt found no deflate data in a {}-byte body: sent untouched",
                                held.len()
                            ));
                        } else {
                            let span = deflate.min(CORRUPT_SPAN);
                            let at = header + (deflate - span) / 2;
                            flip(&mut held[at..at + span]);
                        }
                        return (!held.is_empty()).then(|| (Ok(Bytes::from(held)), (data, None)));
                    }
                }
            }
        }
    })
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
                    let next = match total {
                        _ if keep < chunk.len() => Phase::Cutting,
                        Some(t) if end >= t => {
                            // The cut falls at the end of the body: nothing to cut.
                            unacted.set(why(end));
                            Phase::Through
                        }
                        // More is announced: cut without waiting for it.
                        Some(_) => Phase::Cutting,
                        None => Phase::AtEdge,
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

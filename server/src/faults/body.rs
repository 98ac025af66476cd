//! Faults on response bodies and connections: truncation (anywhere or at a
//! line end), resets, slow drips, stalls, corrupt compressed bytes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::shape::MAX_REWRITE;
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

/// A truncation whose cut falls just after a newline: complete lines, fewer than promised.
pub(super) async fn cut_at_line_end(response: Response, after_bytes: Option<u64>, fraction: Option<f64>) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REWRITE).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let total = bytes.len() as u64;
    let wanted = after_bytes.unwrap_or_else(|| (total as f64 * fraction.unwrap_or(0.5)) as u64).min(total) as usize;
    let cut = bytes[..wanted].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
    if cut >= total {
        let why =
            format!("truncate at a line end before byte {wanted} leaves the whole {total}-byte body: sent untouched");
        return super::apply::not_applied(Response::from_parts(parts, Body::from(bytes)), why);
    }
    let mut parts = parts;
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    truncate(Response::from_parts(parts, Body::from(bytes)), Some(cut), None)
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

/// Sends `Content-Length` for the whole body but only its first bytes, then
/// fails the body so the connection closes: the client sees fewer bytes than promised.
pub(super) fn truncate(response: Response, after_bytes: Option<u64>, fraction: Option<f64>) -> Response {
    let (mut parts, body, declared) = with_length(response);
    let Some(total) = declared else {
        return Response::from_parts(parts, body);
    };
    let limit = after_bytes.unwrap_or_else(|| (total as f64 * fraction.unwrap_or(0.5)) as u64).min(total);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    let stream = futures_util::stream::unfold(
        (body.into_data_stream(), 0u64, false),
        move |(mut data, sent, done)| async move {
            if done {
                return None;
            }
            if sent >= limit {
                // Give the connection time to write what was sent before failing it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Some((Err(std::io::Error::other("truncated by a fault")), (data, sent, true)));
            }
            match data.next().await {
                Some(Ok(chunk)) => {
                    let take = (limit - sent).min(chunk.len() as u64) as usize;
                    Some((Ok(chunk.slice(..take)), (data, sent + take as u64, false)))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (data, sent, true))),
                None => None,
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream.fuse()))
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
    let (parts, body, _) = with_length(response);
    let limit = after_bytes;
    let stream = futures_util::stream::unfold(
        (body.into_data_stream(), 0u64, Some(trip)),
        move |(mut data, sent, trip)| async move {
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
                None => None,
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream.fuse()))
}

/// Sends `after_bytes`, pauses `stall_ms`, then sends the rest.
pub(super) fn stall(response: Response, after_bytes: u64, stall_ms: u64) -> Response {
    let (parts, body, _) = with_length(response);
    let mut sent = 0u64;
    let mut stalled = false;
    let stream = body.into_data_stream().flat_map(move |chunk| {
        let mut pieces: Vec<(Result<Bytes, axum::Error>, bool)> = Vec::new();
        match chunk {
            Ok(bytes) if !stalled && sent + bytes.len() as u64 > after_bytes => {
                let head = (after_bytes - sent) as usize;
                pieces.push((Ok(bytes.slice(..head)), false));
                pieces.push((Ok(bytes.slice(head..)), true));
                stalled = true;
                sent += bytes.len() as u64;
            }
            Ok(bytes) => {
                sent += bytes.len() as u64;
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
    Response::from_parts(parts, Body::from_stream(stream.fuse()))
}

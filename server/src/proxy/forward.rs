//! Forwarding one request to the upstream and its answer back: headers minus
//! hop-by-hop ones, bodies streamed both ways (a bounded channel between the
//! upstream's body and the client's), JSON documents' URLs and `Location`/
//! `Content-Location` rewritten, file bodies hashed for the record and read to
//! their end even when the client's side was cut.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkmock_wire::IssueType;
use futures_util::StreamExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::Upstream;
use super::record::{Digest, Entry};
use super::urls::UrlMap;
use crate::app::AppState;
use crate::error::FhirError;
use crate::faults::Target;
use crate::faults::apply::Classified;
use crate::faults::capability::{Refusal, cap_param};

/// Largest JSON document (manifest, status, OperationOutcome, metadata) read to rewrite its URLs.
const MAX_DOCUMENT: usize = 64 * 1024 * 1024;

/// Chunks in flight between the upstream's body and the client's.
const CHANNEL_CHUNKS: usize = 8;

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The fallback handler of the proxy: every request goes to the upstream.
pub async fn forward(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let upstream = Arc::clone(state.proxy.as_ref().expect("the proxy's state has an upstream"));
    let target = request.extensions().get::<Classified>().and_then(|c| c.0.target);
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let mut query = parts.uri.query().map(str::to_string);
    let map = UrlMap { upstream: upstream.origin().to_string(), proxy: state.origin().to_string() };

    // What earlier faults left behind.
    if let Some(token) = bearer(&parts.headers)
        && upstream.faults.is_revoked(token)
    {
        let challenge = "Bearer error=\"invalid_token\", error_description=\"the access token was revoked\"";
        return FhirError::new(
            StatusCode::UNAUTHORIZED,
            IssueType::Login,
            "the access token was revoked (injected fault)",
        )
        .with_challenge(challenge.to_string())
        .into_response();
    }
    if upstream.vanished(&path, query.as_deref()) {
        return FhirError::not_found("there is no such export job (vanished: injected fault)").into_response();
    }

    let mut headers = forwardable(&parts.headers);
    // A redirect capability carries the credentials of the request it was issued for.
    if let Some(cap) = cap_param(query.as_deref()) {
        match state.capabilities.check(&cap, &path) {
            Ok(()) => {
                if let Some(auth) = upstream.faults.credentials(&cap) {
                    headers.insert(header::AUTHORIZATION, auth);
                }
                query = without_cap(query.as_deref());
            }
            Err(Refusal::Expired) => {
                return FhirError::new(StatusCode::FORBIDDEN, IssueType::Expired, "this capability URL has expired")
                    .into_response();
            }
            Err(Refusal::Unknown) => {} // not the proxy's: the upstream's own parameter
        }
    }
    // Documents are read whole to rewrite their URLs: ask for them unencoded.
    let document_route = matches!(target, Some(Target::Kickoff | Target::Status | Target::Delete | Target::Metadata));
    if document_route {
        headers.remove(header::ACCEPT_ENCODING);
    }
    for name in [header::REFERER, header::ORIGIN] {
        if let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok()).map(|v| map.to_upstream(v))
            && let Ok(v) = HeaderValue::from_str(&v)
        {
            headers.insert(name, v);
        }
    }
    let url = match &query {
        Some(q) => format!("{}{path}?{q}", upstream.origin()),
        None => format!("{}{path}", upstream.origin()),
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let has_body = headers.contains_key(header::CONTENT_LENGTH) || headers.contains_key(header::TRANSFER_ENCODING);
    let mut builder = upstream.http.request(parts.method.clone(), &url).headers(headers);
    let mut kickoff_body = None;
    if has_body && target == Some(Target::Kickoff) && upstream.record.is_some() {
        // A kick-off's Parameters (small: within the kick-off body limit) go into the record too.
        let limit = state.config.limits.kickoff_body_bytes;
        match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => {
                kickoff_body = serde_json::from_slice(&bytes).ok();
                builder = builder.body(bytes);
            }
            Err(_) => {
                let message = crate::limits::too_large_message("a kick-off", limit);
                return FhirError::new(StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooLong, message).into_response();
            }
        }
    } else if has_body {
        builder = builder.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    // A request without a body whose method is idempotent can be sent again.
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE);
    let again = if idempotent && !has_body { builder.try_clone() } else { None };
    let sent = match (builder.send().await, again) {
        // Failed before any response, not at connecting (a pooled keep-alive
        // connection the upstream closed as the request went out): once more,
        // on a new connection.
        (Err(e), Some(again)) if !e.is_connect() && !e.is_timeout() => {
            tracing::debug!("upstream {} did not answer ({e}); sent once more", upstream.origin());
            again.send().await
        }
        (sent, _) => sent,
    };
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!("upstream {} did not answer: {e}", upstream.origin());
            return FhirError::new(
                StatusCode::BAD_GATEWAY,
                IssueType::Transient,
                format!("the upstream {} did not answer: {}", upstream.origin(), error_chain(&e)),
            )
            .into_response();
        }
    };

    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some(v) = out.get(&name).and_then(|v| v.to_str().ok()).map(|v| map.to_proxy(v))
            && let Ok(v) = HeaderValue::from_str(&v)
        {
            out.insert(name, v);
        }
    }
    if target == Some(Target::Kickoff)
        && status == StatusCode::ACCEPTED
        && let Some(location) = answer.headers().get(header::CONTENT_LOCATION).and_then(|v| v.to_str().ok())
    {
        // An absolute status URL now on the proxy, or a path (a relative one, as some servers send).
        let local = out.get(header::CONTENT_LOCATION).and_then(|v| v.to_str().ok()).and_then(|v| {
            v.strip_prefix(map.proxy.as_str()).filter(|p| p.starts_with('/')).or(v.starts_with('/').then_some(v))
        });
        if let Some(local) = local {
            upstream.learned.kickoff(&path, local.split('?').next().unwrap_or_default());
        }
        if let Some(record) = &upstream.record {
            let method = parts.method.to_string();
            record.write(&Entry::Kickoff {
                method,
                url: url.clone(),
                body: kickoff_body,
                status_url: location.to_string(),
            });
        }
        // A gzip OperationOutcome the client did not ask for is decoded as any document.
        if is_json_document(&out) && document_encoding(&out) == DocumentEncoding::Gzip {
            return document(&upstream, &map, target, &path, url, status, out, answer, true).await;
        }
        return streamed(status, out, answer, None);
    }
    // Documents are asked unencoded, but an upstream may gzip them all the same:
    // those are decoded to be rewritten; another encoding passes as it came.
    let encoding = document_encoding(&out);
    if is_json_document(&out)
        && encoding != DocumentEncoding::Other
        && !matches!(target, Some(Target::File | Target::Attachment))
    {
        let gzip = encoding == DocumentEncoding::Gzip;
        return document(&upstream, &map, target, &path, url, status, out, answer, gzip).await;
    }
    let digest = (upstream.record.is_some()
        && target == Some(Target::File)
        && matches!(status, StatusCode::OK | StatusCode::PARTIAL_CONTENT))
    .then(|| {
        let encoding = out.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_string);
        // The decoded body is kept for the judge (pieces of a file cut upstream are put together there).
        let keep = upstream.record.as_ref().and_then(|r| r.body_file());
        let plain = encoding.as_deref().is_none_or(|e| e == "identity");
        let (offset, total) = match content_range(&out) {
            Some((start, total)) => (start, total),
            None => (0, if plain { answer.content_length() } else { None }),
        };
        let digest = Digest::new(url, status.as_u16(), range, encoding, keep).at(offset, total);
        (digest, Arc::clone(&upstream))
    });
    streamed(status, out, answer, digest)
}

/// How a JSON document's body is encoded, as far as the proxy rewrites it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocumentEncoding {
    /// No `Content-Encoding`, or `identity`.
    Plain,
    /// `gzip` or `x-gzip`: decoded to be rewritten, sent on unencoded.
    Gzip,
    /// Anything else (`br`, `deflate`, several): passed on as it came.
    Other,
}

fn document_encoding(headers: &HeaderMap) -> DocumentEncoding {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return DocumentEncoding::Plain };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Ok("" | "identity") => DocumentEncoding::Plain,
        Ok("gzip" | "x-gzip") => DocumentEncoding::Gzip,
        _ => DocumentEncoding::Other,
    }
}

/// What decoding a gzip document found.
#[derive(Debug, PartialEq, Eq)]
enum Gunzipped {
    /// The decoded document.
    Document(Vec<u8>),
    /// It decodes to more than the limit: not rewritten.
    TooLarge,
    /// Not gzip, or damaged: what the decoder said.
    Bad(String),
}

/// Decodes a gzip body (every member), reading at most `limit` decoded bytes.
fn gunzip(bytes: &[u8], limit: usize) -> Gunzipped {
    use std::io::Read;
    let mut decoded = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1);
    match decoder.read_to_end(&mut decoded) {
        Ok(_) if decoded.len() > limit => Gunzipped::TooLarge,
        Ok(_) => Gunzipped::Document(decoded),
        Err(e) => Gunzipped::Bad(e.to_string()),
    }
}

/// A JSON document: read (within [`MAX_DOCUMENT`]), its URLs on the proxy,
/// learned from. A `gzip` one is decoded (within [`MAX_DOCUMENT`] too) and
/// sent on unencoded; a damaged one is answered 502, saying so.
#[allow(clippy::too_many_arguments)]
async fn document(
    upstream: &Upstream,
    map: &UrlMap,
    target: Option<Target>,
    path: &str,
    url: String,
    status: StatusCode,
    mut headers: HeaderMap,
    answer: reqwest::Response,
    gzip: bool,
) -> Response {
    if answer.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return streamed(status, headers, answer, None);
    }
    // Read within MAX_DOCUMENT (a chunked answer announces no length): beyond
    // it, what was read and the rest go on as they came, never held whole.
    let mut stream = answer.bytes_stream();
    let (mut read, mut size) = (Vec::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                size += chunk.len();
                read.push(chunk);
                if size > MAX_DOCUMENT {
                    tracing::warn!("{url}: a document of more than {MAX_DOCUMENT} bytes, passed on as it came");
                    let all = futures_util::stream::iter(read.into_iter().map(Ok::<_, reqwest::Error>)).chain(stream);
                    let mut response = Response::new(Body::from_stream(all));
                    *response.status_mut() = status;
                    *response.headers_mut() = headers;
                    return response;
                }
            }
            Err(e) => {
                return FhirError::new(
                    StatusCode::BAD_GATEWAY,
                    IssueType::Transient,
                    format!("the upstream's answer broke off: {}", error_chain(&e)),
                )
                .into_response();
            }
        }
    }
    let bytes = Bytes::from(read.concat());
    let bytes = match gzip.then(|| gunzip(&bytes, MAX_DOCUMENT)) {
        None => bytes,
        Some(Gunzipped::Document(plain)) => {
            headers.remove(header::CONTENT_ENCODING);
            Bytes::from(plain)
        }
        Some(Gunzipped::TooLarge) => {
            tracing::warn!("{url}: a gzip document of more than {MAX_DOCUMENT} bytes decoded, passed on as it came");
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            return response;
        }
        Some(Gunzipped::Bad(why)) => {
            return FhirError::new(
                StatusCode::BAD_GATEWAY,
                IssueType::Processing,
                format!(
                    "the upstream answered {} {path} with a body marked Content-Encoding: gzip that is not valid \
                     gzip ({why}); the proxy cannot rewrite its URLs",
                    status.as_u16()
                ),
            )
            .into_response();
        }
    };
    let keep_endpoints = target == Some(Target::Metadata);
    let rewritten = map.document(&bytes, keep_endpoints).unwrap_or_else(|| bytes.to_vec());
    if target == Some(Target::Status) && status == StatusCode::OK {
        if let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&rewritten) {
            upstream.learned.manifest(path, &manifest, &map.proxy);
        }
        if let (Some(record), Ok(manifest)) = (&upstream.record, serde_json::from_slice(&bytes)) {
            record.write(&Entry::Manifest { url, manifest });
        }
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    let mut response = Response::new(Body::from(rewritten));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The upstream's body streamed to the client through a bounded channel; its
/// length announced when the upstream announced one. With a digest, the
/// upstream body is read to its end even after the client's side is gone (a
/// fault cut it, or the client left), and its entry written to the record.
fn streamed(
    status: StatusCode,
    headers: HeaderMap,
    answer: reqwest::Response,
    digest: Option<(Digest, Arc<Upstream>)>,
) -> Response {
    let length = answer.content_length();
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::spawn(pump(answer, tx, digest));
    let mut response = Response::new(Body::new(Streamed { rx, remaining: length }));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Moves the upstream's body into the channel, chunk by chunk (waiting for the
/// client: a slow client slows the upstream read, nothing piles up). Without a
/// digest it stops when the client's side is gone; with one it reads on.
async fn pump(
    answer: reqwest::Response,
    tx: mpsc::Sender<io::Result<Bytes>>,
    mut digest: Option<(Digest, Arc<Upstream>)>,
) {
    let mut stream = answer.bytes_stream();
    let mut forwarded = 0u64;
    let mut client = Some(tx);
    let complete = loop {
        match stream.next().await {
            Some(Ok(bytes)) => {
                if let Some((d, _)) = &mut digest {
                    d.update(&bytes);
                }
                let len = bytes.len() as u64;
                if let Some(tx) = &client {
                    if tx.send(Ok(bytes)).await.is_ok() {
                        forwarded += len;
                    } else {
                        client = None;
                        if digest.is_none() {
                            return;
                        }
                    }
                }
            }
            Some(Err(e)) => {
                if let Some(tx) = &client {
                    let _ = tx
                        .send(Err(io::Error::other(format!("the upstream's body broke off: {}", error_chain(&e)))))
                        .await;
                }
                break false;
            }
            None => break true,
        }
    };
    drop(client);
    if let Some((d, upstream)) = digest
        && let Some(record) = &upstream.record
    {
        record.write(&Entry::File(d.finish(complete, forwarded)));
    }
}

/// A body fed by the pump: exact size hint when the upstream gave a length.
struct Streamed {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: Option<u64>,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(n) = &mut self.remaining {
                    *n = n.saturating_sub(bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// The start and total of a `Content-Range: bytes a-b/total` (total `None` for `*`).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The request headers to send on: all but hop-by-hop ones and `Host`.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::HOST {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// A query without its `cap` parameter (`None` when nothing is left).
fn without_cap(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query.unwrap_or_default().split('&').filter(|p| !p.starts_with("cap=")).collect();
    (!kept.is_empty() && kept.iter().any(|p| !p.is_empty())).then(|| kept.join("&"))
}

/// Whether the body is one JSON document (not NDJSON).
fn is_json_document(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// An error with its sources, for a message a human can act on.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_documents_decode_within_the_limit() {
        let doc = br#"{"resourceType":"OperationOutcome"}"#;
        assert_eq!(gunzip(&gz(doc), 1024), Gunzipped::Document(doc.to_vec()));
        assert_eq!(gunzip(&gz(doc), doc.len()), Gunzipped::Document(doc.to_vec()));
        assert_eq!(gunzip(&gz(doc), doc.len() - 1), Gunzipped::TooLarge);
        assert!(matches!(gunzip(b"not gzip", 1024), Gunzipped::Bad(_)));
        let mut cut = gz(doc);
        cut.truncate(cut.len() - 4);
        assert!(matches!(gunzip(&cut, 1024), Gunzipped::Bad(_)), "a body cut short is no document");
    }

    #[test]
    fn encodings_are_told_apart() {
        let with = |v: &str| HeaderMap::from_iter([(header::CONTENT_ENCODING, HeaderValue::from_str(v).unwrap())]);
        assert_eq!(document_encoding(&HeaderMap::new()), DocumentEncoding::Plain);
        assert_eq!(document_encoding(&with("identity")), DocumentEncoding::Plain);
        assert_eq!(document_encoding(&with("GZIP")), DocumentEncoding::Gzip);
        assert_eq!(document_encoding(&with("x-gzip")), DocumentEncoding::Gzip);
        assert_eq!(document_encoding(&with("br")), DocumentEncoding::Other);
    }
}

//! One file: streamed through the line checker to its output, resumed with
//! `Range` after a cut (CLI-080..093).
//!
//! Resume rules: the offset is the decoded body up to the last whole line, so a
//! cut gzip transfer resumes as an identity range. `If-Range` carries the
//! identity ETag when one is known; a 200 to a ranged request, a 206 with
//! another ETag or a 416 start the file over.

use std::io::Write;

use futures_util::StreamExt;
use reqwest::{Method, header};

use super::lines::{LineError, LineSink};
use super::output::{Finished, Output};
use super::urls::{Location, UrlBook};
use super::{Done, FileTask};
use crate::client::Inner;
use crate::error::ClientError;
use crate::events::Event;
use crate::policy::retry_after;

/// How the body bytes are encoded.
enum Decoder {
    Identity,
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
}

impl Decoder {
    fn for_response(headers: &header::HeaderMap, url: &str) -> Result<Decoder, ClientError> {
        let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
        match encoding.trim().to_ascii_lowercase().as_str() {
            "identity" | "" => Ok(Decoder::Identity),
            "gzip" | "x-gzip" => Ok(Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new())))),
            other => {
                Err(ClientError::Protocol(format!("{url} came with Content-Encoding {other}, which was not asked for")))
            }
        }
    }

    /// Feeds raw bytes; decoded bytes go to `sink`.
    fn feed(&mut self, raw: &[u8], sink: &mut LineSink) -> Result<(), Cut> {
        match self {
            Decoder::Identity => sink.feed(raw).map_err(Cut::Line),
            Decoder::Gzip(d) => {
                // flush: hand over everything decodable now, so a cut loses as little as possible.
                d.write_all(raw)
                    .and_then(|()| d.flush())
                    .map_err(|e| Cut::Corrupt(format!("the gzip stream is corrupt: {e}")))?;
                let decoded = std::mem::take(d.get_mut());
                // A bad line inside gzip may be damage in transit: try again uncompressed.
                let result = sink.feed(&decoded).map_err(|e| match e {
                    LineError::Bad(why) => Cut::Corrupt(format!("{why} (in a gzip body)")),
                    io => Cut::Line(io),
                });
                *d.get_mut() = decoded;
                d.get_mut().clear();
                result
            }
        }
    }

    /// The body ended: checks the gzip trailer.
    fn finish(&mut self, sink: &mut LineSink) -> Result<(), Cut> {
        if let Decoder::Gzip(d) = self {
            d.try_finish().map_err(|e| Cut::Corrupt(format!("the gzip stream is incomplete or corrupt: {e}")))?;
            let decoded = std::mem::take(d.get_mut());
            sink.feed(&decoded).map_err(Cut::Line)?;
        }
        Ok(())
    }
}

/// Why a body did not arrive whole.
enum Cut {
    /// The transfer broke (reset, timeout, short body, bad gzip): retry.
    Body(String),
    /// The gzip data is damaged (bad deflate, CRC, or a bad line inside it): lines
    /// already written may be damaged too, so start over without gzip.
    Corrupt(String),
    /// A line is damaged (or the disk failed): stop.
    Line(LineError),
}

/// The ETag of an identity response.
fn identity_etag(headers: &header::HeaderMap) -> Option<String> {
    let encoded = headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity");
    if encoded {
        return None;
    }
    headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The first byte of a `Content-Range: bytes a-b/n`.
fn range_start(headers: &header::HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    value.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Downloads one file into `out`, checking every line and the count.
pub(crate) async fn fetch(
    inner: &Inner,
    book: &UrlBook,
    task: &FileTask,
    out: Output,
) -> Result<(Done, Finished), ClientError> {
    let mut location: Location = book.current(&task.place).await?;
    inner.emit(Event::FileStarted {
        file: task.ordinal,
        url: location.url.clone(),
        resource_type: task.resource_type.clone(),
    });
    let mut sink = LineSink::new(out, task.resource_type.as_deref());
    if task.sha256.is_some() {
        sink = sink.with_digest();
    }
    let mut etag: Option<String> = None;
    let mut wire_bytes = 0u64;
    let mut attempt = 0u32;
    let mut gzip = inner.gzip;
    'tries: loop {
        let url = location.url.clone();
        let offset = sink.committed;
        let failure: ClientError = 'attempt: {
            let built = |b: reqwest::RequestBuilder| {
                let b = b.header(header::ACCEPT, "application/fhir+ndjson");
                if offset > 0 {
                    let b =
                        b.header(header::RANGE, format!("bytes={offset}-")).header(header::ACCEPT_ENCODING, "identity");
                    match &etag {
                        Some(tag) => b.header(header::IF_RANGE, tag.as_str()),
                        None => b,
                    }
                } else if gzip {
                    b.header(header::ACCEPT_ENCODING, "gzip") // CLI-083
                } else {
                    b.header(header::ACCEPT_ENCODING, "identity")
                }
            };
            let sent = match inner.http.send(Method::GET, &url, location.requires_token, built).await {
                Ok(sent) => sent,
                Err(e) if e.is_transient() => break 'attempt e,
                Err(e) => return Err(e),
            };
            let r = sent.response;
            let status = r.status().as_u16();
            match status {
                200 => {
                    if offset > 0 {
                        sink.restart().map_err(io_at(&sink))?; // Range ignored: the whole file again
                    }
                }
                206 => {
                    let same_etag = etag.is_none() || identity_etag(r.headers()) == etag;
                    if range_start(r.headers()) != Some(offset) || !same_etag {
                        sink.restart().map_err(io_at(&sink))?;
                        etag = None;
                        break 'attempt ClientError::Integrity {
                            url: url.clone(),
                            problem:
                                "the resumed part is not the continuation of the same file (ETag or range differs)"
                                    .into(),
                        };
                    }
                }
                416 => {
                    sink.restart().map_err(io_at(&sink))?;
                    break 'attempt ClientError::from_body(416, &url, Vec::new());
                }
                401 if sent.left_origin => {
                    break 'attempt ClientError::Protocol(format!(
                        "{url} redirected to another host, which asked for a token; tokens are never sent across hosts (CLI-031)"
                    ));
                }
                403 | 404 | 410 => {
                    // CLI-080: the URL expired; the manifest has a fresh one.
                    let gone = ClientError::from_body(status, &url, r.bytes().await.unwrap_or_default().to_vec());
                    location = book.renew(inner, &task.place, &location).await?;
                    break 'attempt gone;
                }
                _ => {
                    let wait = retry_after(r.headers());
                    let error = ClientError::from_body(status, &url, r.bytes().await.unwrap_or_default().to_vec());
                    if !error.is_transient() {
                        return Err(error);
                    }
                    attempt += 1;
                    if attempt >= inner.policy.max_attempts {
                        return Err(exhausted(&url, attempt, error));
                    }
                    inner.retry(&url, attempt - 1, inner.waits.next(wait, attempt - 1), error.to_string()).await;
                    continue 'tries;
                }
            }
            if let Some(tag) = identity_etag(r.headers()) {
                etag = Some(tag);
            }
            let mut decoder = Decoder::for_response(r.headers(), &url)?;
            let expected = r.content_length();
            let mut received = 0u64;
            let mut stream = r.bytes_stream();
            let mut cut = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        received += bytes.len() as u64;
                        inner.emit(Event::FileBytes { file: task.ordinal, bytes: bytes.len() as u64 });
                        let first = received == bytes.len() as u64 && sink.committed == 0;
                        if first && bytes.starts_with(&[0x1f, 0x8b]) && matches!(decoder, Decoder::Identity) {
                            return Err(ClientError::Integrity {
                                url,
                                problem: "the body is gzip data but Content-Encoding does not say gzip".into(),
                            });
                        }
                        if let Err(c) = decoder.feed(&bytes, &mut sink) {
                            cut = Some(c);
                            break;
                        }
                        if let Err(e) = sink.wait_turn().await {
                            cut = Some(Cut::Line(LineError::Io(e)));
                            break;
                        }
                    }
                    Err(e) => {
                        cut = Some(Cut::Body(format!("the transfer broke: {e}")));
                        break;
                    }
                }
            }
            wire_bytes += received;
            if cut.is_none() && expected.is_some_and(|n| received < n) {
                cut = Some(Cut::Body(format!("{received} of {} bytes arrived", expected.unwrap_or(0))));
            }
            if cut.is_none() {
                cut = decoder.finish(&mut sink).err();
            }
            match cut {
                None => {
                    let path = sink.path();
                    sink.end().map_err(|e| line_error(&url, path.clone(), e))?;
                    if let (Some(expected), Some(got)) = (&task.sha256, sink.sha256_hex())
                        && *expected != got
                    {
                        return Err(ClientError::Integrity {
                            url,
                            problem: format!("the file's SHA-256 is {got}, the manifest's extension says {expected}"),
                        });
                    }
                    let (resources, finished) = sink.finish().map_err(|e| line_error(&url, path, e))?;
                    if let Some(count) = task.count
                        && count != resources
                    {
                        return Err(ClientError::Integrity {
                            url,
                            problem: format!("{resources} resources arrived, the manifest's count says {count}"),
                        });
                    }
                    inner.emit(Event::FileDone {
                        file: task.ordinal,
                        resource_type: task.resource_type.clone(),
                        resources,
                        bytes: wire_bytes,
                    });
                    return Ok((Done { ordinal: task.ordinal, resources, bytes: wire_bytes }, finished));
                }
                Some(Cut::Line(e)) => return Err(line_error(&url, sink.path(), e)),
                Some(Cut::Body(why)) => {
                    sink.rollback().map_err(io_at(&sink))?;
                    ClientError::Integrity { url: url.clone(), problem: why }
                }
                Some(Cut::Corrupt(why)) => {
                    sink.restart().map_err(io_at(&sink))?;
                    etag = None;
                    gzip = false;
                    ClientError::Integrity { url: url.clone(), problem: why }
                }
            }
        };
        attempt += 1;
        if attempt >= inner.policy.max_attempts {
            return Err(exhausted(&url, attempt, failure));
        }
        inner.retry(&url, attempt - 1, inner.waits.next(None, attempt - 1), failure.to_string()).await;
    }
}

fn exhausted(url: &str, attempts: u32, last: ClientError) -> ClientError {
    ClientError::Exhausted { url: url.to_string(), attempts, last: Box::new(last) }
}

fn io_at(sink: &LineSink) -> impl FnOnce(std::io::Error) -> ClientError {
    let path = sink.path();
    move |source| ClientError::Io { path, source }
}

fn line_error(url: &str, part: std::path::PathBuf, e: LineError) -> ClientError {
    match e {
        LineError::Bad(problem) => ClientError::Integrity { url: url.to_string(), problem },
        LineError::Io(source) => ClientError::Io { path: part, source },
    }
}

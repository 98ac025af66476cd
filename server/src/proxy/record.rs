//! The proxy record (`bulkmock proxy --record FILE`): what the upstream really
//! served, one JSON line per event. Every manifest as the upstream wrote it, and
//! every file download's full digest: the proxy reads an upstream body to its end
//! even when a fault cut what the client got, so the digest is of the whole file.
//! `bulkmock judge --proxy-record` reads it back.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use aws_lc_rs::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A kick-off the upstream accepted.
    Kickoff {
        /// The kick-off URL (on the upstream).
        url: String,
        /// The status URL it answered (on the upstream).
        status_url: String,
    },
    /// A complete manifest (or manifest page) the upstream answered.
    Manifest {
        /// The status URL or page it answered (on the upstream).
        url: String,
        /// The manifest as the upstream wrote it.
        manifest: Value,
    },
    /// A file body the upstream sent.
    File(FileEntry),
}

/// A file download as the upstream served it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// The file URL (on the upstream).
    pub url: String,
    /// The upstream's status (200, or 206 for a range).
    pub status: u16,
    /// The `Range` asked for, if any (the digest is then of that range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The upstream's `Content-Encoding`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Body bytes as sent by the upstream.
    pub bytes: u64,
    /// SHA-256 of the body as sent, lowercase hex.
    pub sha256: String,
    /// Bytes of the decoded body (equal to `bytes` without an encoding).
    pub plain_bytes: u64,
    /// SHA-256 of the decoded body (the NDJSON itself).
    pub plain_sha256: String,
    /// Lines of the decoded body.
    pub lines: u64,
    /// Whether the upstream body ended as announced (no upstream error).
    pub complete: bool,
    /// Bytes the client received of it (fewer when a fault cut the body).
    pub forwarded: u64,
}

/// The record file, written as events happen.
#[derive(Debug)]
pub struct Record {
    file: Mutex<std::fs::File>,
}

impl Record {
    /// Creates (truncates) the record file.
    pub fn create(path: &Path) -> Result<Record, String> {
        let file = std::fs::File::create(path).map_err(|e| format!("cannot write record {}: {e}", path.display()))?;
        Ok(Record { file: Mutex::new(file) })
    }

    /// Appends one entry.
    pub fn write(&self, entry: &Entry) {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let mut file = self.file.lock().expect("record");
        if let Err(e) = file.write_all(&line).and_then(|()| file.flush()) {
            tracing::warn!("cannot write the proxy record: {e}");
        }
    }

    /// Reads a record file: its entries in order, or what is wrong, with the line.
    pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| format!("{}:{}: not a record entry: {e}", path.display(), i + 1))
            })
            .collect()
    }
}

/// Hashes a file body as it streams: as sent, and decoded when gzip.
pub struct Digest {
    entry: FileEntry,
    wire: Context,
    plain: Plain,
    gzip: Option<flate2::write::MultiGzDecoder<Plain>>,
}

/// The decoded side: SHA-256, bytes, lines.
struct Plain {
    context: Context,
    bytes: u64,
    lines: u64,
}

impl Write for Plain {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.context.update(buf);
        self.bytes += buf.len() as u64;
        self.lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn plain() -> Plain {
    Plain { context: Context::new(&SHA256), bytes: 0, lines: 0 }
}

fn hex(context: Context) -> String {
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Digest {
    /// A digest of the body of `url` (answered `status`, with these `range` and encoding).
    pub fn new(url: String, status: u16, range: Option<String>, content_encoding: Option<String>) -> Digest {
        let gzip = matches!(content_encoding.as_deref(), Some("gzip" | "x-gzip"))
            .then(|| flate2::write::MultiGzDecoder::new(plain()));
        let entry = FileEntry {
            url,
            status,
            range,
            content_encoding,
            bytes: 0,
            sha256: String::new(),
            plain_bytes: 0,
            plain_sha256: String::new(),
            lines: 0,
            complete: false,
            forwarded: 0,
        };
        Digest { entry, wire: Context::new(&SHA256), plain: plain(), gzip }
    }

    /// Bytes of the upstream body.
    pub fn update(&mut self, bytes: &[u8]) {
        self.wire.update(bytes);
        self.entry.bytes += bytes.len() as u64;
        match &mut self.gzip {
            Some(decoder) => {
                if decoder.write_all(bytes).is_err() {
                    self.gzip = None; // not gzip after all: the plain digest stays empty
                    self.plain = plain();
                }
            }
            None => {
                let _ = self.plain.write_all(bytes);
            }
        }
    }

    /// The entry, once the upstream body ended (`complete`) or failed; `forwarded`
    /// is how much of it reached the client.
    pub fn finish(mut self, complete: bool, forwarded: u64) -> FileEntry {
        let plain = match self.gzip.take() {
            Some(decoder) => decoder.finish().unwrap_or_else(|_| plain()),
            None => self.plain,
        };
        self.entry.sha256 = hex(self.wire);
        self.entry.plain_bytes = plain.bytes;
        self.entry.lines = plain.lines;
        self.entry.plain_sha256 = hex(plain.context);
        self.entry.complete = complete;
        self.entry.forwarded = forwarded;
        self.entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_are_hashed_as_sent_and_decoded() {
        let text = b"{\"a\":1}\n{\"b\":2}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        let body = gz.finish().unwrap();
        let mut d = Digest::new("u".into(), 200, None, Some("gzip".into()));
        for chunk in body.chunks(5) {
            d.update(chunk);
        }
        let e = d.finish(true, 3);
        assert_eq!(e.plain_sha256, crate::export::digest::bytes_sha256(text));
        assert_eq!(e.sha256, crate::export::digest::bytes_sha256(&body));
        assert_eq!((e.lines, e.plain_bytes, e.bytes, e.forwarded), (2, text.len() as u64, body.len() as u64, 3));
    }
}

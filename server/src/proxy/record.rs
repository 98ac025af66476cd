//! The proxy record (`bulkmock proxy --record FILE`): what the upstream really
//! served, one JSON line per event. Every manifest as the upstream wrote it, and
//! every file download's full digest: the proxy reads an upstream body to its end
//! even when a fault cut what the client got, so the digest is of the whole file.
//! The decoded body of every whole file (a 200, read to its end) is kept next to
//! the record, in `{record}.files/`, so a judge knows each line the upstream
//! served. `bulkmock judge --proxy-record` reads it back.

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
    /// The proxy started: its FHIR base, the upstream's, the seed and plan of
    /// its faults, and where its transcript goes.
    Started {
        /// The proxy's FHIR base (what the client used).
        fhir_base: String,
        /// The upstream's FHIR base.
        upstream: String,
        /// The seed of the proxy's probabilistic faults.
        seed: u64,
        /// The fault plan the proxy started with (`--faults`); rules added later
        /// through the admin API show in the transcript as the faults that fired.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        faults: Vec<crate::FaultRule>,
        /// The proxy's transcript file (`--transcript`): relative to the
        /// record's folder when it lies under it, else absolute.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript: Option<String>,
    },
    /// A kick-off the upstream accepted.
    Kickoff {
        /// The method (`GET` or `POST`).
        #[serde(default)]
        method: String,
        /// The kick-off URL (on the upstream).
        url: String,
        /// A POST kick-off's `Parameters` body.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
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
    /// Bytes read from the upstream and handed on into the proxy's response
    /// until the client's side was gone: not the bytes the client received (a
    /// fault that cuts the body acts after this count, and chunks still in the
    /// proxy's buffer when the client's side closed are counted). The
    /// transcript's `bytes` is what the client was sent.
    pub forwarded: u64,
    /// The decoded body's file in the record's folder: the whole file, or of a
    /// body cut upstream or a range, what arrived (to be pieced together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<String>,
    /// Where the body starts in the file: a 206's `Content-Range` start, else 0.
    #[serde(default)]
    pub offset: u64,
    /// The file's length as announced (a 206's `Content-Range` total, a plain 200's `Content-Length`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// The record file, written as events happen.
#[derive(Debug)]
pub struct Record {
    file: Mutex<std::fs::File>,
    dir: std::path::PathBuf,
    bodies: std::sync::atomic::AtomicU64,
}

/// How a record names its transcript: relative to the record's folder when
/// the transcript lies under it (the two can move together), else absolute.
pub fn transcript_name(record: &Path, transcript: &Path) -> String {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (record, transcript) = (absolute(record), absolute(transcript));
    let folder = record.parent().unwrap_or(Path::new("/"));
    transcript.strip_prefix(folder).unwrap_or(&transcript).display().to_string()
}

/// The transcript a record names ([`transcript_name`]), resolved against the record's folder.
pub fn transcript_path(record: &Path, named: &str) -> std::path::PathBuf {
    let named = Path::new(named);
    match named.is_absolute() {
        true => named.to_path_buf(),
        false => record.parent().unwrap_or(Path::new("")).join(named),
    }
}

/// The folder of a record's file bodies: `{record}.files`.
pub fn bodies_dir(record: &Path) -> std::path::PathBuf {
    let mut name = record.as_os_str().to_owned();
    name.push(".files");
    std::path::PathBuf::from(name)
}

impl Record {
    /// Creates (truncates) the record file.
    pub fn create(path: &Path) -> Result<Record, String> {
        let file = std::fs::File::create(path).map_err(|e| format!("cannot write record {}: {e}", path.display()))?;
        let dir = bodies_dir(path);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Record { file: Mutex::new(file), dir, bodies: Default::default() })
    }

    /// A new file for a body: its name in the record's folder and the file.
    pub fn body_file(&self) -> Option<(String, std::fs::File)> {
        let n = self.bodies.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{n}.ndjson");
        match std::fs::File::create(self.dir.join(&name)) {
            Ok(file) => Some((name, file)),
            Err(e) => {
                tracing::warn!("cannot keep a body in {}: {e}", self.dir.display());
                None
            }
        }
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
    plain: Shared,
    gzip: Option<flate2::write::MultiGzDecoder<Shared>>,
}

/// The decoded side, shared with the gzip decoder: what it decoded of a body
/// cut short is still there after the decoder gives up.
#[derive(Clone)]
struct Shared(std::sync::Arc<Mutex<Plain>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("plain").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The decoded side: SHA-256, bytes, lines.
struct Plain {
    context: Context,
    bytes: u64,
    lines: u64,
    sink: Option<std::io::BufWriter<std::fs::File>>,
}

impl Write for Plain {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.context.update(buf);
        self.bytes += buf.len() as u64;
        self.lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        if let Some(sink) = &mut self.sink
            && sink.write_all(buf).is_err()
        {
            self.sink = None;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn plain() -> Plain {
    Plain { context: Context::new(&SHA256), bytes: 0, lines: 0, sink: None }
}

fn hex(context: Context) -> String {
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Digest {
    /// A digest of the body of `url` (answered `status`, with these `range` and
    /// encoding); the decoded body is written to `keep` (a name and a file) when given.
    pub fn new(
        url: String,
        status: u16,
        range: Option<String>,
        content_encoding: Option<String>,
        keep: Option<(String, std::fs::File)>,
    ) -> Digest {
        let (saved, sink) = match keep {
            Some((name, file)) => (Some(name), Some(std::io::BufWriter::new(file))),
            None => (None, None),
        };
        let plain = Shared(std::sync::Arc::new(Mutex::new(Plain { sink, ..plain() })));
        let gzip = matches!(content_encoding.as_deref(), Some("gzip" | "x-gzip"))
            .then(|| flate2::write::MultiGzDecoder::new(plain.clone()));
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
            saved,
            offset: 0,
            total: None,
        };
        Digest { entry, wire: Context::new(&SHA256), plain, gzip }
    }

    /// Where the body lies in the file (from `Content-Range` or `Content-Length`).
    pub fn at(mut self, offset: u64, total: Option<u64>) -> Digest {
        (self.entry.offset, self.entry.total) = (offset, total);
        self
    }

    /// Bytes of the upstream body.
    pub fn update(&mut self, bytes: &[u8]) {
        self.wire.update(bytes);
        self.entry.bytes += bytes.len() as u64;
        match &mut self.gzip {
            Some(decoder) => {
                if decoder.write_all(bytes).is_err() {
                    self.gzip = None; // damaged gzip: what was decoded so far stays
                }
            }
            None => {
                let _ = self.plain.write_all(bytes);
            }
        }
    }

    /// The entry, once the upstream body ended (`complete`) or failed; `forwarded`
    /// is how much of it was handed on toward the client ([`FileEntry::forwarded`]).
    pub fn finish(mut self, complete: bool, forwarded: u64) -> FileEntry {
        if let Some(mut decoder) = self.gzip.take() {
            let _ = decoder.try_finish(); // a body cut short: its decoded start is kept all the same
        }
        let mut plain = std::mem::replace(&mut *self.plain.0.lock().expect("plain"), plain());
        let kept = plain.sink.take().is_some_and(|mut sink| sink.flush().is_ok());
        if !kept {
            self.entry.saved = None;
        }
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
    fn the_transcript_is_named_relative_to_the_record_when_beside_it() {
        let record = Path::new("/data/run/record.ndjson");
        assert_eq!(transcript_name(record, Path::new("/data/run/t/proxy.ndjson")), "t/proxy.ndjson");
        assert_eq!(transcript_name(record, Path::new("/elsewhere/t.ndjson")), "/elsewhere/t.ndjson");
        assert_eq!(transcript_path(record, "t/proxy.ndjson"), Path::new("/data/run/t/proxy.ndjson"));
        assert_eq!(transcript_path(record, "/elsewhere/t.ndjson"), Path::new("/elsewhere/t.ndjson"));
    }

    #[test]
    fn gzip_bodies_are_hashed_as_sent_and_decoded() {
        let text = b"{\"a\":1}\n{\"b\":2}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        let body = gz.finish().unwrap();
        let dir = std::env::temp_dir().join(format!("bulkmock-record-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kept = std::fs::File::create(dir.join("0.ndjson")).unwrap();
        let mut d = Digest::new("u".into(), 200, None, Some("gzip".into()), Some(("0.ndjson".into(), kept)));
        for chunk in body.chunks(5) {
            d.update(chunk);
        }
        let e = d.finish(true, 3);
        assert_eq!(e.plain_sha256, crate::export::digest::bytes_sha256(text));
        assert_eq!(e.sha256, crate::export::digest::bytes_sha256(&body));
        assert_eq!((e.lines, e.plain_bytes, e.bytes, e.forwarded), (2, text.len() as u64, body.len() as u64, 3));
        assert_eq!(e.saved.as_deref(), Some("0.ndjson"));
        assert_eq!(std::fs::read(dir.join("0.ndjson")).unwrap(), text);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

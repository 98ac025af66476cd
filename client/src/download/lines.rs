//! Checks NDJSON line by line as it streams in and writes the good lines to a
//! part file (CLI-092): one JSON object per line, `resourceType` as the manifest
//! says, a final line never silently kept when cut. CRLF endings, a leading BOM
//! and blank lines are tolerated and normalised away.

use std::borrow::Cow;

use serde::Deserialize;

use super::output::{Finished, Output};

/// Why a line could not be kept.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The data is damaged: what and on which line.
    Bad(String),
    /// The part file could not be written.
    Io(std::io::Error),
}

impl From<std::io::Error> for LineError {
    fn from(e: std::io::Error) -> Self {
        LineError::Io(e)
    }
}

/// The members a line needs; the rest is validated and skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    resource_type: Option<Cow<'a, str>>,
    /// A `Parameters` line's parameters (absent from every other resource).
    #[serde(borrow, default)]
    parameter: Vec<Named<'a>>,
}

/// A parameter's name, all a block header needs.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

impl Head<'_> {
    /// The `Parameters` header line of an `organizeOutputBy` block (SRV-096, CLI-089).
    fn is_block_header(&self) -> bool {
        self.resource_type.as_deref() == Some("Parameters")
            && self.parameter.iter().any(|p| p.name.as_deref() == Some("header"))
    }
}

/// What a checked line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// A resource of the export.
    Resource,
    /// The header of an `organizeOutputBy` block: a line, not a resource, so
    /// not part of the manifest's `count` (SRV-160).
    BlockHeader,
}

/// Checks one line (without its newline): a JSON object of the expected type.
pub(crate) fn check_line(line: &[u8], expected: Option<&str>) -> Result<Line, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("is not UTF-8 ({e})"))?;
    if !text.trim_start().starts_with('{') {
        return Err("is not a JSON object".into());
    }
    let head: Head<'_> = serde_json::from_str(text).map_err(|e| format!("is not valid JSON ({e})"))?;
    match (head.resource_type.as_deref(), expected) {
        (None, _) => Err("has no resourceType".into()),
        (Some(found), Some(expected)) if found != expected => {
            Err(format!("is a {found}, but the manifest lists the file as {expected}"))
        }
        _ if head.is_block_header() => Ok(Line::BlockHeader),
        _ => Ok(Line::Resource),
    }
}

/// Streams decoded body bytes through the checks into an [`Output`], line by line.
pub(crate) struct LineSink {
    expected: Option<String>,
    out: Output,
    pending: Vec<u8>,
    /// Decoded body bytes up to and including the last newline: where a resume starts.
    pub committed: u64,
    /// Resources written: non-blank lines other than `organizeOutputBy` block
    /// headers, which the manifest's `count` leaves out (SRV-160).
    pub resources: u64,
    /// Lines seen, blank ones included (for messages).
    line_no: u64,
    /// The SHA-256 of the committed bytes as they came (before normalisation),
    /// when the manifest gives one to check.
    digest: Option<aws_lc_rs::digest::Context>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a checked line becomes.
enum Kept<'a> {
    /// Written as it came.
    AsIs,
    /// Written without its CR or BOM.
    Trimmed(&'a [u8]),
    /// Blank: dropped.
    Blank,
}

impl LineSink {
    /// A sink writing to `out`, expecting `resourceType` `expected`.
    pub fn new(out: Output, expected: Option<&str>) -> LineSink {
        LineSink {
            expected: expected.map(str::to_string),
            out,
            pending: Vec::new(),
            committed: 0,
            resources: 0,
            line_no: 0,
            digest: None,
        }
    }

    /// Also computes the SHA-256 of the body (see [`LineSink::sha256_hex`]).
    pub fn with_digest(mut self) -> LineSink {
        self.digest = Some(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256));
        self
    }

    /// The SHA-256 of the bytes committed so far, in lowercase hex.
    pub fn sha256_hex(&self) -> Option<String> {
        let digest = self.digest.clone()?.finish();
        Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The file being written, for messages.
    pub fn path(&self) -> std::path::PathBuf {
        self.out.path()
    }

    /// Takes the next decoded bytes of the body. Runs of lines that need no
    /// change are written in one call.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), LineError> {
        self.out.advance()?;
        let mut start = 0;
        let mut run = 0; // start of checked bytes not written yet
        let mut hashed = 0; // start of committed bytes of `chunk` not hashed yet
        for newline in memchr::memchr_iter(b'\n', chunk) {
            let piece = &chunk[start..newline];
            let length = (self.pending.len() + piece.len() + 1) as u64;
            if self.pending.is_empty() {
                match self.check(piece) {
                    Ok(Kept::AsIs) => {}
                    Ok(kept) => {
                        self.out.write(&chunk[run..start])?;
                        self.keep(kept, piece)?;
                        run = newline + 1;
                    }
                    Err(e) => {
                        self.out.write(&chunk[run..start])?;
                        return Err(e);
                    }
                }
            } else {
                let mut joined = std::mem::take(&mut self.pending);
                joined.extend_from_slice(piece);
                let kept = self.check(&joined)?;
                self.keep(kept, &joined)?;
                if let Some(digest) = &mut self.digest {
                    digest.update(&joined);
                    digest.update(b"\n");
                    hashed = newline + 1;
                }
                joined.clear();
                self.pending = joined;
                run = newline + 1;
            }
            self.committed += length;
            start = newline + 1;
        }
        self.out.write(&chunk[run..start])?;
        if let Some(digest) = &mut self.digest {
            digest.update(&chunk[hashed..start]);
        }
        self.pending.extend_from_slice(&chunk[start..]);
        Ok(())
    }

    /// The body ended normally: a last line without newline is kept only if it
    /// is a whole resource (a cut one never parses as a JSON object).
    pub fn end(&mut self) -> Result<(), LineError> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            let kept = self.check(&last).map_err(|e| match e {
                LineError::Bad(why) => LineError::Bad(format!("{why}; the file ends without a newline")),
                io => io,
            })?;
            self.keep(kept, &last)?;
            self.committed += last.len() as u64;
            if let Some(digest) = &mut self.digest {
                digest.update(&last);
            }
        }
        Ok(())
    }

    /// Ends the body (see [`LineSink::end`]); returns the resources written and where they are.
    pub fn finish(mut self) -> Result<(u64, Finished), LineError> {
        self.end()?;
        Ok((self.resources, self.out.finish()?))
    }

    /// Waits, before more is read, while this file may not buffer more (see [`Output::wait_turn`]).
    pub async fn wait_turn(&mut self) -> std::io::Result<()> {
        self.out.wait_turn().await
    }

    /// The body was cut: drop the incomplete line, keep every whole one.
    pub fn rollback(&mut self) -> std::io::Result<()> {
        self.pending.clear();
        self.out.flush()
    }

    /// The server sends the file from the start again: forget everything.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.pending.clear();
        self.out.restart()?;
        self.committed = 0;
        self.resources = 0;
        self.line_no = 0;
        if self.digest.is_some() {
            self.digest = Some(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256));
        }
        Ok(())
    }

    /// Checks one line (without its newline) and counts it.
    fn check<'a>(&mut self, raw: &'a [u8]) -> Result<Kept<'a>, LineError> {
        self.line_no += 1;
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if self.line_no == 1 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Kept::Blank);
        }
        let kind = check_line(line, self.expected.as_deref())
            .map_err(|why| LineError::Bad(format!("line {} {why}", self.line_no)))?;
        if kind == Line::Resource {
            self.resources += 1;
        }
        Ok(if line.len() == raw.len() { Kept::AsIs } else { Kept::Trimmed(line) })
    }

    /// Writes a checked line on its own.
    fn keep(&mut self, kept: Kept<'_>, raw: &[u8]) -> std::io::Result<()> {
        let line = match kept {
            Kept::Blank => return Ok(()),
            Kept::AsIs => raw,
            Kept::Trimmed(line) => line,
        };
        self.out.write(line)?;
        self.out.write(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(tag: &str) -> (LineSink, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("bulkmock-lines-{tag}-{}", std::process::id()));
        (LineSink::new(Output::part(&path).unwrap(), Some("Patient")), path)
    }

    #[test]
    fn lines_split_across_chunks_are_joined_and_normalised() {
        let (mut s, path) = sink("join");
        for chunk in [
            &b"\xEF\xBB\xBF{\"resourceType\":\"Pat"[..],
            b"ient\",\"id\":\"a\"}\r\n\n{\"resourceType\":",
            b"\"Patient\"}",
        ] {
            s.feed(chunk).unwrap();
        }
        assert_eq!(s.resources, 1);
        assert_eq!(s.committed, 41, "bytes through the last newline");
        let (resources, _) = s.finish().unwrap();
        assert_eq!(resources, 2, "a complete last line without newline is kept");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\"}\n");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn runs_of_clean_lines_keep_their_place_around_normalised_ones() {
        let (mut s, path) = sink("runs");
        let p = |id: &str| format!("{{\"resourceType\":\"Patient\",\"id\":\"{id}\"}}");
        let chunk = format!("{}\n{}\n{}\r\n\n{}\n{}\n", p("a"), p("b"), p("c"), p("d"), p("e"));
        s.feed(chunk.as_bytes()).unwrap();
        let (resources, _) = s.finish().unwrap();
        assert_eq!(resources, 5);
        let expected = format!("{}\n{}\n{}\n{}\n{}\n", p("a"), p("b"), p("c"), p("d"), p("e"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn block_headers_are_kept_but_not_counted_as_resources() {
        // SRV-160: an organised file's `count` is its resources, headers left out.
        let path = std::env::temp_dir().join(format!("bulkmock-lines-blocks-{}", std::process::id()));
        let mut s = LineSink::new(Output::part(&path).unwrap(), None);
        let header = r#"{"resourceType":"Parameters","parameter":[{"name":"header","valueReference":{"reference":"Patient/a"}}]}"#;
        let other = r#"{"resourceType":"Parameters","parameter":[{"name":"other"}]}"#;
        let body = format!("{header}\n{{\"resourceType\":\"Patient\",\"id\":\"a\"}}\n{other}\n");
        s.feed(body.as_bytes()).unwrap();
        let (resources, _) = s.finish().unwrap();
        assert_eq!(resources, 2, "the Patient and a Parameters that is no block header");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), body, "every line kept");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_cut_line_is_dropped_on_rollback_and_rejected_at_the_end() {
        let (mut s, path) = sink("cut");
        s.feed(b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Pa").unwrap();
        s.rollback().unwrap();
        assert_eq!((s.committed, s.resources), (27, 1));
        s.restart().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        s.feed(b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Pa").unwrap();
        let Err(LineError::Bad(why)) = s.finish() else { panic!("a cut last line must fail") };
        assert!(why.contains("line 2") && why.contains("without a newline"), "{why}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_digest_covers_the_bytes_as_served_across_chunks_cuts_and_restarts() {
        let body = b"\xEF\xBB\xBF{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n{\"resourceType\":\"Patient\"}";
        let hex = |bytes: &[u8]| -> String {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let (s, path) = sink("digest");
        let mut s = s.with_digest();
        // A first try cut in the middle of line 3: the whole lines stay, the rest is dropped.
        s.feed(&body[..60]).unwrap();
        s.rollback().unwrap();
        let resume = s.committed as usize;
        // The resumed part arrives in uneven chunks, the last line without a newline.
        for chunk in body[resume..].chunks(7) {
            s.feed(chunk).unwrap();
        }
        s.end().unwrap();
        assert_eq!(s.sha256_hex().unwrap(), hex(body), "the digest is of the bytes served, not the normalised ones");
        // Starting over forgets what was hashed.
        s.restart().unwrap();
        s.feed(&body[..10]).unwrap();
        assert_ne!(s.sha256_hex().unwrap(), hex(body));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(check_line(b"{\"resourceType\":\"Patient\"", Some("Patient")).unwrap_err().contains("not valid JSON"));
        assert!(check_line(b"[1]", None).unwrap_err().contains("not a JSON object"));
        assert!(check_line(b"{\"id\":1}", None).unwrap_err().contains("no resourceType"));
        assert!(
            check_line(b"{\"resourceType\":\"Observation\"}", Some("Patient")).unwrap_err().contains("Observation")
        );
        assert!(check_line(b"{\"resourceType\":\"Patient\",\"x\":\"\xff\"}", None).unwrap_err().contains("UTF-8"));
        assert!(check_line(b"{\"resourceType\":\"Patient\"} x", None).is_err(), "trailing garbage");
    }
}

//! Streaming file bodies: exact lengths, byte ranges and gzip without ever
//! holding a file in memory.
//!
//! A file's bytes are produced unit by unit from the data source. The first
//! download of a file measures it once ([`Layout`]: total length plus a
//! checkpoint every few MB), so every response carries an exact
//! `Content-Length` (a cut body is detectable) and a `Range` request starts
//! generating near its offset. Gzip output is produced by a fixed encoder
//! configuration, so the same file always compresses to the same bytes and
//! ranges over gzip bodies are meaningful too.

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::mpsc;

use crate::data::DataSource;
use crate::export::content::Selector;
use crate::export::job::Job;

/// Size of the chunks sent to the client.
const CHUNK: usize = 64 * 1024;
/// Distance between checkpoints of a plain layout.
const CHECKPOINT_EVERY: u64 = 4 * 1024 * 1024;

/// The measured shape of one file in one encoding.
#[derive(Debug)]
pub struct Layout {
    /// Total body length in bytes.
    pub len: u64,
    /// `(unit, byte offset)` where a unit starts, ascending; plain bodies only.
    checkpoints: Vec<(u64, u64)>,
}

/// One file of one job, ready to be produced.
#[derive(Clone)]
pub struct FileBody {
    /// The job.
    pub job: Arc<Job>,
    /// Where resources come from.
    pub source: Arc<dyn DataSource>,
    /// Index into the plan's files.
    pub file: usize,
    /// Whether to gzip.
    pub gzip: bool,
}

impl FileBody {
    /// Produces the plain bytes from unit `from`, handing `sink` chunks of about [`CHUNK`].
    fn produce_plain(&self, from: u64, mut sink: impl FnMut(u64, &[u8]) -> ControlFlow<()>) -> std::io::Result<()> {
        let selector = Selector::new(&self.job.plan, self.source.as_ref());
        let spec = &self.job.plan.files[self.file];
        let mut buf = Vec::with_capacity(CHUNK * 2);
        let mut unit = from.max(spec.units.start);
        while unit < spec.units.end {
            selector.write_unit(spec, unit, &mut buf)?;
            unit += 1;
            if buf.len() >= CHUNK || unit == spec.units.end {
                if sink(unit, &buf).is_break() {
                    return Ok(());
                }
                buf.clear();
            }
        }
        Ok(())
    }

    /// Produces the body in its encoding from `start` (a checkpoint), calling `sink` per chunk.
    fn produce(&self, start_unit: u64, mut sink: impl FnMut(&[u8]) -> ControlFlow<()>) -> std::io::Result<()> {
        if !self.gzip {
            return self.produce_plain(start_unit, |_, b| sink(b));
        }
        let mut encoder = GzEncoder::new(Vec::with_capacity(CHUNK * 2), Compression::fast());
        let mut stopped = false;
        self.produce_plain(0, |_, plain| {
            if encoder.write_all(plain).is_err() {
                stopped = true;
                return ControlFlow::Break(());
            }
            let out = encoder.get_mut();
            if out.len() >= CHUNK {
                let flow = sink(out);
                out.clear();
                if flow.is_break() {
                    stopped = true;
                    return flow;
                }
            }
            ControlFlow::Continue(())
        })?;
        if !stopped {
            let rest = encoder.finish()?;
            let _ = sink(&rest);
        }
        Ok(())
    }

    /// Measures the file (cached per job, file and encoding).
    pub fn layout(&self) -> std::io::Result<Arc<Layout>> {
        let key = (self.file, self.gzip);
        if let Some(l) = self.job.layouts.lock().expect("layouts").get(&key) {
            return Ok(Arc::clone(l));
        }
        let mut len = 0u64;
        let mut checkpoints = vec![(self.job.plan.files[self.file].units.start, 0)];
        if self.gzip {
            self.produce(0, |b| {
                len += b.len() as u64;
                ControlFlow::Continue(())
            })?;
        } else {
            self.produce_plain(0, |next_unit, b| {
                len += b.len() as u64;
                if len - checkpoints.last().map_or(0, |c| c.1) >= CHECKPOINT_EVERY {
                    checkpoints.push((next_unit, len));
                }
                ControlFlow::Continue(())
            })?;
        }
        let layout = Arc::new(Layout { len, checkpoints });
        self.job.layouts.lock().expect("layouts").insert(key, Arc::clone(&layout));
        Ok(layout)
    }

    /// A streamed body of bytes `start..end` (end exclusive) of the file.
    pub fn body(self, layout: Arc<Layout>, start: u64, end: u64) -> Body {
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            let (unit, mut offset) = layout.checkpoints.iter().rev().find(|c| c.1 <= start).copied().unwrap_or((0, 0));
            let unit = if self.gzip { 0 } else { unit };
            if self.gzip {
                offset = 0;
            }
            let result = self.produce(unit, |chunk| {
                let chunk_start = offset;
                offset += chunk.len() as u64;
                let from = start.max(chunk_start);
                let to = end.min(offset);
                if from < to {
                    let piece =
                        Bytes::copy_from_slice(&chunk[(from - chunk_start) as usize..(to - chunk_start) as usize]);
                    if tx.blocking_send(Ok(piece)).is_err() {
                        return ControlFlow::Break(()); // client went away
                    }
                }
                if offset >= end { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Body::from_stream(futures_util::StreamExt::fuse(stream))
    }
}

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
/// Distance between checkpoints of a plain layout (at least; each measured segment also starts one).
const CHECKPOINT_EVERY: u64 = 4 * 1024 * 1024;

/// A measured segment: its length and its checkpoints relative to its start.
type SegmentLayout = (u64, Vec<(u64, u64)>);

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
    /// Produces the plain bytes from unit `from`, handing `sink` chunks of
    /// about [`CHUNK`] (at most [`FLUSH_AT`](crate::export::content::FLUSH_AT)
    /// plus a line inside a large unit).
    fn produce_plain(&self, from: u64, mut sink: impl FnMut(&[u8]) -> ControlFlow<()>) -> std::io::Result<()> {
        let selector = Selector::new(&self.job.plan, self.source.as_ref());
        let spec = &self.job.plan.files[self.file];
        let mut buf = Vec::with_capacity(CHUNK * 2);
        let stopped = std::cell::Cell::new(false);
        let mut flush = |b: &mut Vec<u8>| {
            let flow = sink(b);
            b.clear();
            stopped.set(stopped.get() || flow.is_break());
            flow
        };
        let mut unit = from.max(spec.units.start);
        while unit < spec.units.end {
            selector.write_unit_chunked(spec, unit, &mut buf, &mut flush)?;
            unit += 1;
            if (buf.len() >= CHUNK || unit == spec.units.end) && flush(&mut buf).is_break() {
                return Ok(());
            }
            // A flush inside the unit may have stopped it.
            if stopped.get() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Produces the body in its encoding from `start` (a checkpoint), calling `sink` per chunk.
    fn produce(&self, start_unit: u64, mut sink: impl FnMut(&[u8]) -> ControlFlow<()>) -> std::io::Result<()> {
        if !self.gzip {
            return self.produce_plain(start_unit, sink);
        }
        let mut encoder = GzEncoder::new(Vec::with_capacity(CHUNK * 2), Compression::fast());
        let mut stopped = false;
        self.produce_plain(0, |plain| {
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
        let layout = Arc::new(if self.gzip { self.measure_gzip()? } else { self.measure_plain()? });
        self.job.layouts.lock().expect("layouts").insert(key, Arc::clone(&layout));
        Ok(layout)
    }

    fn measure_gzip(&self) -> std::io::Result<Layout> {
        let mut len = 0u64;
        self.produce(0, |b| {
            len += b.len() as u64;
            ControlFlow::Continue(())
        })?;
        Ok(Layout { len, checkpoints: Vec::new() })
    }

    /// Measures a plain body on every core: the units are split into segments
    /// measured in parallel, then their lengths and checkpoints are joined.
    fn measure_plain(&self) -> std::io::Result<Layout> {
        let units = self.job.plan.files[self.file].units.clone();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u64;
        let per = units.end.saturating_sub(units.start).div_ceil(threads).max(1);
        let segments: Vec<std::ops::Range<u64>> = (0..threads)
            .map(|i| (units.start + i * per).min(units.end)..(units.start + (i + 1) * per).min(units.end))
            .filter(|r| !r.is_empty())
            .collect();
        let measured: Vec<std::io::Result<SegmentLayout>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                segments.iter().map(|segment| scope.spawn(move || self.measure_segment(segment.clone()))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(std::io::Error::other("measuring panicked"))))
                .collect()
        });
        let mut len = 0;
        let mut checkpoints = Vec::new();
        for segment in measured {
            let (segment_len, segment_checkpoints) = segment?;
            checkpoints.extend(segment_checkpoints.into_iter().map(|(unit, offset)| (unit, len + offset)));
            len += segment_len;
        }
        Ok(Layout { len, checkpoints })
    }

    /// Length of the plain bytes of `units`, with checkpoints relative to its start
    /// (the first at the segment start).
    fn measure_segment(&self, units: std::ops::Range<u64>) -> std::io::Result<SegmentLayout> {
        let selector = Selector::new(&self.job.plan, self.source.as_ref());
        let spec = &self.job.plan.files[self.file];
        let mut buf = Vec::with_capacity(CHUNK * 2);
        let (mut len, mut since_checkpoint) = (0u64, 0u64);
        let mut checkpoints = vec![(units.start, 0)];
        for unit in units.clone() {
            if since_checkpoint >= CHECKPOINT_EVERY {
                checkpoints.push((unit, len));
                since_checkpoint = 0;
            }
            let mut unit_len = 0;
            buf.clear();
            selector.write_unit_chunked(spec, unit, &mut buf, &mut |b| {
                unit_len += b.len() as u64;
                b.clear();
                ControlFlow::Continue(())
            })?;
            unit_len += buf.len() as u64;
            len += unit_len;
            since_checkpoint += unit_len;
        }
        Ok((len, checkpoints))
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

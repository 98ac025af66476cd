//! Streaming file bodies: exact lengths, byte ranges and gzip without ever
//! holding a file in memory.
//!
//! A file's bytes are produced unit by unit from the data source. The first
//! download of a file measures it once ([`Layout`]: total length plus a
//! checkpoint every few MB), so every response carries an exact
//! `Content-Length` (a cut body is detectable) and a `Range` request starts
//! generating near its offset.
//!
//! Gzip bodies (SRV-186) are one gzip member whose deflate stream is cut
//! into segments of [`SEGMENT`] plain bytes, compressed in parallel as pigz
//! does: each segment is raw deflate primed with the previous 32 KiB of
//! plain bytes as its dictionary and ends byte-aligned (sync flush; the last
//! one finishes the stream), so any inflater decodes the whole as one
//! stream. The segmentation depends only on the plain bytes (never on the
//! number of cores) and each segment's output only on its dictionary and
//! bytes, so the same file always compresses to the same bytes: `Range`
//! requests over gzip bodies stay valid (SRV-127) and start at the segment
//! holding their offset. The pass that measures a gzip body keeps its first
//! [`RETAIN_LIMIT`] compressed bytes (all files together) for the response
//! that measured it, which then compresses only what was not kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use axum::body::{Body, Bytes};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::data::DataSource;
use crate::export::content::Selector;
use crate::export::job::Job;

/// Size of the chunks sent to the client.
const CHUNK: usize = 64 * 1024;
/// Distance between checkpoints of a plain layout (at least; each measured segment also starts one).
const CHECKPOINT_EVERY: u64 = 4 * 1024 * 1024;
/// Plain bytes per gzip segment: the unit of parallel compression and of
/// gzip checkpoints. A file of `n` plain bytes has `n / SEGMENT + 1`
/// segments, the last one (possibly empty) finishing the deflate stream.
pub const SEGMENT: usize = 1024 * 1024;
/// Deflate's window: a segment's dictionary is the 32 KiB before it.
const WINDOW: usize = 32 * 1024;
/// At most this many compressing threads per gzip body.
const MAX_WORKERS: usize = 4;
/// The gzip header (RFC 1952): deflate, no name, no time (the bytes do not
/// depend on when they are made), XFL 4 (fastest), OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
/// The deflate level of gzip bodies: the fastest (zlib-rs `deflate_quick`).
const LEVEL: u32 = 1;
/// Compressed bytes that measuring passes keep, all files together, for the
/// first response of each to send without compressing them again.
pub const RETAIN_LIMIT: usize = 16 * 1024 * 1024;
/// Compressed bytes kept now (see [`Retained`]).
static RETAINED: AtomicUsize = AtomicUsize::new(0);

/// A measured segment: its length and its checkpoints relative to its start.
type SegmentLayout = (u64, Vec<(u64, u64)>);

/// The measured shape of one file in one encoding.
#[derive(Debug)]
pub struct Layout {
    /// Total body length in bytes.
    pub len: u64,
    /// `(unit, byte offset)` where a unit starts, ascending; plain bodies only.
    checkpoints: Vec<(u64, u64)>,
    /// Where each gzip segment starts; gzip bodies only.
    segments: Vec<GzCheckpoint>,
    /// The gzip trailer: CRC-32 and length (mod 2^32) of the plain bytes.
    trailer: [u8; 8],
}

/// Where gzip segment `i` (plain bytes from `i * SEGMENT`) starts, and how to
/// produce it without the segments before it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GzCheckpoint {
    /// Offset of the segment's deflate bytes in the gzip body.
    at: u64,
    /// A unit that starts at or before the segment's dictionary...
    unit: u64,
    /// ...and its plain byte offset.
    unit_at: u64,
}

/// Measured layouts of a job's files, per file and encoding. Each entry is
/// measured once: a request for a file being measured waits for it.
#[derive(Default)]
pub struct Layouts(Mutex<HashMap<(usize, bool), Slot>>);

/// One file's layout in one encoding, `None` until measured; locked while measuring.
type Slot = Arc<Mutex<Option<Arc<Layout>>>>;

impl Layouts {
    fn slot(&self, key: (usize, bool)) -> Slot {
        Arc::clone(self.0.lock().expect("layouts").entry(key).or_default())
    }
}

/// The compressed segments `0..n` of a gzip body, kept by the pass that
/// measured it for the response that asked; counted in [`RETAINED`] until dropped.
pub struct Retained {
    segments: Vec<Bytes>,
    bytes: usize,
}

impl Retained {
    /// Takes `len` bytes of the shared budget, if they fit.
    fn reserve(len: usize) -> bool {
        RETAINED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |kept| {
                (kept + len <= RETAIN_LIMIT).then_some(kept + len)
            })
            .is_ok()
    }
}

impl Drop for Retained {
    fn drop(&mut self) {
        RETAINED.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Where a gzip pass starts: at segment `segment`, generating from unit
/// `unit` (whose plain bytes start at `unit_at`, at or before the segment's dictionary).
#[derive(Debug, Clone, Copy)]
struct GzStart {
    segment: u64,
    unit: u64,
    unit_at: u64,
}

/// One segment's deflate bytes, handed on in order.
struct Compressed {
    index: u64,
    deflate: Vec<u8>,
    /// CRC-32 of the segment's plain bytes.
    crc: Crc,
    /// Where a pass producing this segment alone would start.
    unit: u64,
    unit_at: u64,
}

/// A segment to compress on a worker.
struct SegmentJob {
    index: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
}

/// A worker's answer: the segment's index, its deflate bytes, and its plain buffer for reuse.
type SegmentDone = (u64, io::Result<Vec<u8>>, Vec<u8>);

/// Compresses one segment as raw deflate with `dict` as its dictionary; a
/// non-`last` segment ends with a sync flush (byte-aligned, the stream open),
/// the last finishes the stream. Each segment gets a new compressor, whose
/// memory zlib-rs zeroes: one reset after other input (`Compress::reset`)
/// keeps old bytes in its window, and with them its output varied (2 of 99
/// segments of the served Observation file in a release build).
fn compress_segment(dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(LEVEL), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    // The mock's NDJSON compresses about tenfold; less compressible data grows the buffer.
    let mut out = Vec::with_capacity(data.len() / 8 + 1024);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c.compress_vec(input, &mut out, flush).map_err(io::Error::other)?;
        input = &input[(c.total_in() - before) as usize..];
        // Done when the stream ends, or (sync) when every byte is in and the output had room left.
        if status == Status::StreamEnd || (!last && input.is_empty() && out.len() < out.capacity()) {
            return Ok(out);
        }
    }
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
    /// plus a line inside a large unit), each with the units that start in
    /// it as `(unit, offset in the chunk)`.
    fn produce_plain(
        &self,
        from: u64,
        mut sink: impl FnMut(&[u8], &[(u64, usize)]) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let selector = Selector::new(&self.job.plan, self.source.as_ref());
        let spec = &self.job.plan.files[self.file];
        let mut buf = Vec::with_capacity(CHUNK * 2);
        let starts = std::cell::RefCell::new(Vec::new());
        let stopped = std::cell::Cell::new(false);
        let mut flush = |b: &mut Vec<u8>| {
            let flow = sink(b, &starts.borrow());
            starts.borrow_mut().clear();
            b.clear();
            stopped.set(stopped.get() || flow.is_break());
            flow
        };
        let mut unit = from.max(spec.units.start);
        while unit < spec.units.end {
            starts.borrow_mut().push((unit, buf.len()));
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

    /// Compresses the gzip segments from `from.segment` to the end, in
    /// parallel on up to [`MAX_WORKERS`] threads (a file of one segment on
    /// this thread alone), handing them to `sink` in order. At most two
    /// segments per worker are in flight, so memory stays bounded whatever
    /// the file's size and however slowly `sink` takes them. `plain`, when
    /// given (a pass from segment 0), receives the plain length and
    /// checkpoints, a plain [`Layout`] for free.
    fn compress_segments(
        &self,
        from: GzStart,
        mut plain: Option<&mut SegmentLayout>,
        mut sink: impl FnMut(Compressed) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS);
        let ahead = 2 * workers as u64;
        let first_start = from.segment * SEGMENT as u64;
        let dict_start = first_start.saturating_sub(WINDOW as u64);
        let (job_tx, job_rx) = mpsc::channel::<SegmentJob>();
        let job_rx = Mutex::new(job_rx);
        let (done_tx, done_rx) = mpsc::channel::<SegmentDone>();
        std::thread::scope(|scope| -> io::Result<()> {
            let mut spawned = false;
            let mut job_tx = Some(job_tx);
            let mut done_tx = Some(done_tx);
            // Segments handed to workers and not yet passed on: (crc, unit, unit_at) in order.
            let mut waiting: VecDeque<(Crc, u64, u64)> = VecDeque::new();
            let mut finished: BTreeMap<u64, io::Result<Vec<u8>>> = BTreeMap::new();
            let mut free: Vec<Vec<u8>> = Vec::new();
            let (mut next, mut segment) = (from.segment, from.segment);
            let mut pos = from.unit_at;
            let mut dict = Vec::with_capacity(WINDOW);
            let mut data = Vec::with_capacity(SEGMENT);
            // Unit starts not yet passed by a segment's dictionary; the front is the current segment's start point.
            let mut units: VecDeque<(u64, u64)> = VecDeque::from([(from.unit, from.unit_at)]);
            let mut current = (from.unit, from.unit_at);
            let mut failed: Option<io::Error> = None;
            let mut stopped = false;

            // Passes on finished segments in order; waits for the next one while `must_wait` says so.
            let mut pass_on = |finished: &mut BTreeMap<u64, io::Result<Vec<u8>>>,
                               waiting: &mut VecDeque<(Crc, u64, u64)>,
                               free: &mut Vec<Vec<u8>>,
                               next: &mut u64,
                               must_wait: &dyn Fn(usize) -> bool|
             -> io::Result<ControlFlow<()>> {
                loop {
                    if let Some(result) = finished.remove(next) {
                        let (crc, unit, unit_at) = waiting.pop_front().expect("a waiting segment");
                        let c = Compressed { index: *next, deflate: result?, crc, unit, unit_at };
                        *next += 1;
                        if sink(c).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                        continue;
                    }
                    let received = if must_wait(waiting.len()) {
                        Some(done_rx.recv().map_err(|_| io::Error::other("a compressing thread stopped"))?)
                    } else {
                        done_rx.try_recv().ok()
                    };
                    match received {
                        Some((index, result, buffer)) => {
                            finished.insert(index, result);
                            free.push(buffer);
                        }
                        None => return Ok(ControlFlow::Continue(())),
                    }
                }
            };

            let produced = self.produce_plain(from.unit, |chunk, starts| {
                for &(unit, offset) in starts {
                    let at = pos + offset as u64;
                    units.push_back((unit, at));
                    if let Some((_, checkpoints)) = plain.as_deref_mut()
                        && checkpoints.last().is_none_or(|&(_, last)| at >= last + CHECKPOINT_EVERY)
                    {
                        checkpoints.push((unit, at));
                    }
                }
                let mut bytes = chunk;
                if pos < first_start {
                    // Before the first segment: skip to its dictionary, then fill it.
                    let skip = (dict_start.saturating_sub(pos) as usize).min(bytes.len());
                    let take = ((first_start - pos) as usize).min(bytes.len()) - skip;
                    dict.extend_from_slice(&bytes[skip..skip + take]);
                    bytes = &bytes[skip + take..];
                    pos += (skip + take) as u64;
                }
                while !bytes.is_empty() {
                    let n = (SEGMENT - data.len()).min(bytes.len());
                    data.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    pos += n as u64;
                    if data.len() < SEGMENT {
                        break;
                    }
                    // A full segment: to a worker; the next one starts here.
                    let mut crc = Crc::new();
                    crc.update(&data);
                    waiting.push_back((crc, current.0, current.1));
                    let next_dict = data[SEGMENT - WINDOW..].to_vec();
                    let buffer = free.pop().map(|mut b| {
                        b.clear();
                        b
                    });
                    let job = SegmentJob {
                        index: segment,
                        dict: std::mem::replace(&mut dict, next_dict),
                        data: std::mem::replace(&mut data, buffer.unwrap_or_else(|| Vec::with_capacity(SEGMENT))),
                    };
                    segment += 1;
                    let next_dict_start = segment * SEGMENT as u64 - WINDOW as u64;
                    while units.len() > 1 && units[1].1 <= next_dict_start {
                        units.pop_front();
                    }
                    current = units[0];
                    if !spawned {
                        spawned = true;
                        for _ in 0..workers {
                            let (jobs, done) = (&job_rx, done_tx.clone().expect("open"));
                            scope.spawn(move || {
                                loop {
                                    // The queue is locked only while taking a segment.
                                    let Ok(job) = jobs.lock().expect("segment queue").recv() else { return };
                                    // A panic becomes an error, so the segment it owed is never waited for.
                                    let result =
                                        std::panic::catch_unwind(|| compress_segment(&job.dict, &job.data, false))
                                            .unwrap_or_else(|_| {
                                                Err(io::Error::other("compressing a segment panicked"))
                                            });
                                    if done.send((job.index, result, job.data)).is_err() {
                                        return;
                                    }
                                }
                            });
                        }
                        // The workers hold the only senders now: if they all stop, waiting fails instead of hanging.
                        done_tx.take();
                    }
                    if job_tx.as_ref().expect("open").send(job).is_err() {
                        failed = Some(io::Error::other("a compressing thread stopped"));
                        return ControlFlow::Break(());
                    }
                    match pass_on(&mut finished, &mut waiting, &mut free, &mut next, &|n| n as u64 >= ahead) {
                        Ok(ControlFlow::Continue(())) => {}
                        Ok(ControlFlow::Break(())) => {
                            stopped = true;
                            return ControlFlow::Break(());
                        }
                        Err(e) => {
                            failed = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                }
                ControlFlow::Continue(())
            });
            // No more segments for the workers: they end once the queue is empty.
            job_tx.take();
            done_tx.take();
            if stopped || failed.is_some() || produced.is_err() {
                // Nobody will take what is still queued.
                while job_rx.lock().expect("segment queue").try_recv().is_ok() {}
            }
            produced?;
            if let Some(e) = failed {
                return Err(e);
            }
            if stopped {
                return Ok(());
            }
            if let Some(plain) = plain {
                plain.0 = pos;
            }
            // The last segment, here, while the workers finish theirs.
            let mut crc = Crc::new();
            crc.update(&data);
            let last = compress_segment(&dict, &data, true);
            waiting.push_back((crc, current.0, current.1));
            finished.insert(segment, last);
            // Whether `sink` stopped at the last segment or not, nothing is left.
            let _ = pass_on(&mut finished, &mut waiting, &mut free, &mut next, &|n| n > 0)?;
            Ok(())
        })
    }

    /// Measures the file (cached per job, file and encoding). The call that
    /// measures a gzip body also returns what it kept of it (see
    /// [`Retained`]), for its own response; other calls wait for a
    /// measurement in progress, then share it.
    pub fn measured(&self) -> io::Result<(Arc<Layout>, Option<Retained>)> {
        let slot = self.job.layouts.slot((self.file, self.gzip));
        let mut slot = slot.lock().expect("layout");
        if let Some(layout) = slot.as_ref() {
            return Ok((Arc::clone(layout), None));
        }
        let (layout, retained) = if self.gzip { self.measure_gzip()? } else { (self.measure_plain()?, None) };
        let layout = Arc::new(layout);
        *slot = Some(Arc::clone(&layout));
        Ok((layout, retained))
    }

    /// Measures the file (cached per job, file and encoding).
    pub fn layout(&self) -> io::Result<Arc<Layout>> {
        self.measured().map(|(layout, _)| layout)
    }

    /// Compresses the whole file once: its length, a checkpoint per segment,
    /// the trailer, and the plain layout on the way (cached unless being
    /// measured). Keeps compressed segments from the start while the shared
    /// budget allows.
    fn measure_gzip(&self) -> io::Result<(Layout, Option<Retained>)> {
        let spec = &self.job.plan.files[self.file];
        let start = GzStart { segment: 0, unit: spec.units.start, unit_at: 0 };
        let mut plain: SegmentLayout = (0, Vec::new());
        let mut at = GZIP_HEADER.len() as u64;
        let mut crc = Crc::new();
        let mut segments = Vec::new();
        let mut retained = Retained { segments: Vec::new(), bytes: 0 };
        let mut keeping = true;
        self.compress_segments(start, Some(&mut plain), |c| {
            segments.push(GzCheckpoint { at, unit: c.unit, unit_at: c.unit_at });
            at += c.deflate.len() as u64;
            crc.combine(&c.crc);
            let mut deflate = c.deflate;
            deflate.shrink_to_fit();
            keeping = keeping && Retained::reserve(deflate.len());
            if keeping {
                retained.bytes += deflate.len();
                retained.segments.push(Bytes::from(deflate));
            }
            ControlFlow::Continue(())
        })?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
        if let Ok(mut slot) = self.job.layouts.slot((self.file, false)).try_lock()
            && slot.is_none()
        {
            *slot =
                Some(Arc::new(Layout { len: plain.0, checkpoints: plain.1, segments: Vec::new(), trailer: [0; 8] }));
        }
        let layout = Layout { len: at + trailer.len() as u64, checkpoints: Vec::new(), segments, trailer };
        Ok((layout, (!retained.segments.is_empty()).then_some(retained)))
    }

    /// Measures a plain body on every core: the units are split into segments
    /// measured in parallel, then their lengths and checkpoints are joined.
    fn measure_plain(&self) -> io::Result<Layout> {
        let units = self.job.plan.files[self.file].units.clone();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u64;
        let per = units.end.saturating_sub(units.start).div_ceil(threads).max(1);
        let segments: Vec<std::ops::Range<u64>> = (0..threads)
            .map(|i| (units.start + i * per).min(units.end)..(units.start + (i + 1) * per).min(units.end))
            .filter(|r| !r.is_empty())
            .collect();
        let measured: Vec<io::Result<SegmentLayout>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                segments.iter().map(|segment| scope.spawn(move || self.measure_segment(segment.clone()))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("measuring panicked"))))
                .collect()
        });
        let mut len = 0;
        let mut checkpoints = Vec::new();
        for segment in measured {
            let (segment_len, segment_checkpoints) = segment?;
            checkpoints.extend(segment_checkpoints.into_iter().map(|(unit, offset)| (unit, len + offset)));
            len += segment_len;
        }
        Ok(Layout { len, checkpoints, segments: Vec::new(), trailer: [0; 8] })
    }

    /// Length of the plain bytes of `units`, with checkpoints relative to its start
    /// (the first at the segment start).
    fn measure_segment(&self, units: std::ops::Range<u64>) -> io::Result<SegmentLayout> {
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

    /// Sends bytes `start..end` of the plain body, from the checkpoint before `start`.
    fn send_plain(&self, layout: &Layout, out: &mut Emitter) -> io::Result<()> {
        let (unit, mut offset) = layout.checkpoints.iter().rev().find(|c| c.1 <= out.start).copied().unwrap_or((0, 0));
        self.produce_plain(unit, |chunk, _| {
            let at = offset;
            offset += chunk.len() as u64;
            out.emit(at, chunk)
        })
    }

    /// Sends bytes `start..end` of the gzip body: the header, the segments
    /// kept by the measuring pass, the others compressed from the segment
    /// holding `start` on, then the trailer.
    fn send_gzip(&self, layout: &Layout, retained: Option<Retained>, out: &mut Emitter) -> io::Result<()> {
        if out.emit(0, &GZIP_HEADER).is_break() {
            return Ok(());
        }
        let trailer_at = layout.len - layout.trailer.len() as u64;
        let end_of = |i: usize| layout.segments.get(i + 1).map_or(trailer_at, |s| s.at);
        let mut first = layout.segments.partition_point(|s| s.at <= out.start).saturating_sub(1);
        if let Some(kept) = &retained {
            while first < kept.segments.len() {
                if out.emit_bytes(layout.segments[first].at, &kept.segments[first]).is_break() {
                    return Ok(());
                }
                first += 1;
            }
        }
        drop(retained);
        if let Some(s) = layout.segments.get(first)
            && end_of(first) > out.start
        {
            let from = GzStart { segment: first as u64, unit: s.unit, unit_at: s.unit_at };
            let mut stopped = false;
            self.compress_segments(from, None, |c| {
                let flow = out.emit_bytes(layout.segments[c.index as usize].at, &Bytes::from(c.deflate));
                stopped = flow.is_break();
                flow
            })?;
            if stopped {
                return Ok(());
            }
        }
        let _ = out.emit(trailer_at, &layout.trailer);
        Ok(())
    }

    /// A streamed body of bytes `start..end` (end exclusive) of the file;
    /// `retained`, from the call that measured it, spares compressing again.
    pub fn body(self, layout: Arc<Layout>, retained: Option<Retained>, start: u64, end: u64) -> Body {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            let mut out = Emitter { start, end, tx: &tx };
            let result = if self.gzip {
                self.send_gzip(&layout, retained, &mut out)
            } else {
                self.send_plain(&layout, &mut out)
            };
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Body::from_stream(futures_util::StreamExt::fuse(stream))
    }
}

/// Sends the part of each piece of a body that falls in `start..end`.
struct Emitter<'a> {
    start: u64,
    end: u64,
    tx: &'a tokio::sync::mpsc::Sender<io::Result<Bytes>>,
}

impl Emitter<'_> {
    /// Sends what of `piece` (at body offset `at`) is wanted; `Break` once
    /// `end` is reached or the client went away.
    fn emit(&mut self, at: u64, piece: &[u8]) -> ControlFlow<()> {
        let (from, to) = self.wanted(at, piece.len());
        if from < to && self.tx.blocking_send(Ok(Bytes::copy_from_slice(&piece[from..to]))).is_err() {
            return ControlFlow::Break(());
        }
        self.after(at, piece.len())
    }

    /// [`Emitter::emit`] without copying, in chunks of at most [`CHUNK`].
    fn emit_bytes(&mut self, at: u64, piece: &Bytes) -> ControlFlow<()> {
        let (mut from, to) = self.wanted(at, piece.len());
        while from < to {
            let until = (from + CHUNK).min(to);
            if self.tx.blocking_send(Ok(piece.slice(from..until))).is_err() {
                return ControlFlow::Break(());
            }
            from = until;
        }
        self.after(at, piece.len())
    }

    /// The range of a piece of `len` bytes at `at` that is wanted.
    fn wanted(&self, at: u64, len: usize) -> (usize, usize) {
        let from = self.start.max(at).min(at + len as u64) - at;
        let to = self.end.min(at + len as u64).max(at) - at;
        (from as usize, to as usize)
    }

    fn after(&self, at: u64, len: usize) -> ControlFlow<()> {
        if at + len as u64 >= self.end { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }
}

/// Measures the plain layouts of `job`'s files in plan order while the job
/// still reads as in progress (its configured duration), so that their first
/// downloads are as fast as later ones; stops when the job is cancelled or
/// due. Files a download measures meanwhile are not measured twice.
pub fn measure_ahead(job: &Arc<Job>) {
    let due = job.due();
    for file in 0..job.plan.files.len() {
        if job.is_cancelled() || Instant::now() >= due {
            return;
        }
        let body = FileBody { job: Arc::clone(job), source: Arc::clone(&job.source), file, gzip: false };
        if body.layout().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;
    use crate::data::synthetic::Synthetic;
    use crate::export::params::ExportParams;
    use crate::export::plan::{Level, plan};

    /// One job exporting `types` of `patients` light patients, in one file per type.
    fn job(patients: u64, types: &str, duration: Duration) -> Arc<Job> {
        let source: Arc<dyn DataSource> = Arc::new(Synthetic::new(42, patients, "http://127.0.0.1:1/fhir"));
        let params = ExportParams { types: Some(types.split(',').map(String::from).collect()), ..Default::default() };
        let plan =
            plan(source.as_ref(), Level::System, params, Vec::new(), false, 100_000_000, 0, None, &Default::default())
                .expect("a plan");
        Job::new("job".into(), plan, String::new(), false, duration, None, source, 0)
    }

    fn file(job: &Arc<Job>, gzip: bool) -> FileBody {
        FileBody { job: Arc::clone(job), source: Arc::clone(&job.source), file: 0, gzip }
    }

    /// Bytes `start..end` of a body, sent as a download sends them.
    fn send(body: &FileBody, layout: &Layout, retained: Option<Retained>, start: u64, end: u64) -> Vec<u8> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut out = Emitter { start, end, tx: &tx };
                let sent = if body.gzip {
                    body.send_gzip(layout, retained, &mut out)
                } else {
                    body.send_plain(layout, &mut out)
                };
                sent.expect("sent");
                drop(tx);
            });
            let mut bytes = Vec::new();
            while let Some(chunk) = rx.blocking_recv() {
                bytes.extend_from_slice(&chunk.expect("a chunk"));
            }
            bytes
        })
    }

    /// Gzip of `data` cut into segments as a body is (`SEGMENT` bytes each, the last possibly empty).
    fn gzip_in_segments(data: &[u8]) -> Vec<u8> {
        let mut out = GZIP_HEADER.to_vec();
        let mut crc = Crc::new();
        let full = data.len() / SEGMENT;
        for i in 0..=full {
            let segment = &data[i * SEGMENT..((i + 1) * SEGMENT).min(data.len())];
            let dict = &data[(i * SEGMENT).saturating_sub(WINDOW)..i * SEGMENT];
            out.extend(compress_segment(dict, segment, i == full).unwrap());
            let mut part = Crc::new();
            part.update(segment);
            crc.combine(&part);
        }
        out.extend(crc.sum().to_le_bytes());
        out.extend(crc.amount().to_le_bytes());
        out
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut plain).expect("valid gzip");
        plain
    }

    #[test]
    fn segments_with_dictionaries_make_one_valid_gzip_member() {
        // Exact multiples of SEGMENT end with an empty finishing segment; an empty file is one.
        let text: Vec<u8> = (0..2 * SEGMENT + 3).map(|i| b"{\"resourceType\":\"Observation\"}\n"[i % 31]).collect();
        for len in [0, 1, 100, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 2 * SEGMENT + 3] {
            let gz = gzip_in_segments(&text[..len]);
            assert_eq!(gunzip(&gz), &text[..len], "{len} bytes");
            assert!(gz.len() < 64 + len / 50, "{len} bytes compress to {}", gz.len());
        }
    }

    #[test]
    fn gzip_bodies_are_the_same_bytes_however_they_are_produced() {
        let job = job(700, "Observation", Duration::ZERO);
        let (plain_body, gzip_body) = (file(&job, false), file(&job, true));
        let (layout, retained) = gzip_body.measured().unwrap();
        let kept = retained.expect("a small file is kept whole");
        let plain_layout =
            job.layouts.slot((0, false)).lock().unwrap().clone().expect("plain layout from the gzip pass");
        let plain = send(&plain_body, &plain_layout, None, 0, plain_layout.len);
        assert_eq!(plain.len() as u64, plain_layout.len);
        assert!(plain.len() > 3 * SEGMENT, "several segments: {}", plain.len());
        assert_eq!(layout.segments.len(), plain.len() / SEGMENT + 1);
        assert_eq!(kept.segments.len(), layout.segments.len());

        let partly = Retained { segments: kept.segments[..2].to_vec(), bytes: 0 };
        let from_memory = send(&gzip_body, &layout, Some(kept), 0, layout.len);
        let compressed = send(&gzip_body, &layout, None, 0, layout.len);
        let mixed = send(&gzip_body, &layout, Some(partly), 0, layout.len);
        assert_eq!(from_memory.len() as u64, layout.len, "Content-Length is exact");
        assert!(from_memory == compressed && compressed == mixed, "one body, however produced");
        assert!(gunzip(&compressed) == plain, "decodes to the plain file");
        assert!(compressed == gzip_in_segments(&plain), "the segmentation depends on the plain bytes only");

        let len = layout.len;
        let second = layout.segments[1].at;
        for start in [1, 9, 10, 11, second - 1, second, second + 1, len / 2, len - 9, len - 8, len - 1] {
            let tail = send(&gzip_body, &layout, None, start, len);
            assert!(tail == compressed[start as usize..], "resumed at {start} of {len}");
        }
        let part = send(&gzip_body, &layout, None, second - 5, second + 5);
        assert_eq!(part, &compressed[second as usize - 5..second as usize + 5]);
    }

    #[test]
    fn files_are_measured_while_the_job_runs() {
        let job = job(50, "Observation,Condition", Duration::from_secs(60));
        job.count_now();
        measure_ahead(&job);
        for index in 0..job.plan.files.len() {
            let measured = job.layouts.slot((index, false)).lock().unwrap().clone().expect("measured ahead");
            let body = FileBody { file: index, ..file(&job, false) };
            assert_eq!(measured.len, send(&body, &measured, None, 0, u64::MAX).len() as u64);
            assert!(job.layouts.slot((index, true)).lock().unwrap().is_none(), "gzip is measured on demand");
        }
        let due = self::job(50, "Observation", Duration::ZERO);
        due.count_now();
        measure_ahead(&due);
        assert!(due.layouts.slot((0, false)).lock().unwrap().is_none(), "nothing once the job is due");
    }
}

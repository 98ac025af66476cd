//! Where the checked lines of one file go. A file that is next in line for its
//! merged output writes straight into it; a file still waiting for earlier
//! files of its type is held in memory, and past a shared budget it stops
//! reading until it is next in line or memory is given back. So every byte is
//! written once, never to a part and copied again (error files excepted: they
//! stay whole parts so their issues can be read).
//!
//! Invariant: only the file next in line writes into a merged file, and only
//! after every earlier file of its target is in; a restart truncates back to
//! where this file began, never into an earlier file.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::merge::Merger;

/// Write buffer of a file destination.
const WRITE_BUFFER: usize = 1 << 20;

/// Memory is taken in blocks of this size: no reallocation, no slack beyond one block.
pub(crate) const BLOCK: usize = 1 << 20;

/// Bytes held in memory, in blocks of [`BLOCK`] capacity.
#[derive(Default)]
pub(crate) struct Held {
    blocks: Vec<Vec<u8>>,
}

impl Held {
    /// Memory taken, as counted against the budget.
    pub fn taken(&self) -> usize {
        self.blocks.len() * BLOCK
    }

    /// Writes every block to `to`.
    pub fn write_to(&self, to: &mut impl Write) -> std::io::Result<()> {
        self.blocks.iter().try_for_each(|b| to.write_all(b))
    }

    /// Appends `bytes`, counting new blocks against the merger's budget.
    fn append(&mut self, mut bytes: &[u8], merger: &Merger) {
        let free = self.blocks.last().map_or(0, |b| BLOCK - b.len());
        let needed = bytes.len().saturating_sub(free).div_ceil(BLOCK);
        merger.reserve(needed * BLOCK);
        while !bytes.is_empty() {
            if self.blocks.last().is_none_or(|b| b.len() == BLOCK) {
                self.blocks.push(Vec::with_capacity(BLOCK));
            }
            let block = self.blocks.last_mut().expect("a block");
            let take = (BLOCK - block.len()).min(bytes.len());
            block.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }
}

/// The destination of one file's lines.
pub(crate) enum Output {
    /// File `ordinal`, waiting for earlier files of its target in `merger`;
    /// its blocks count against the merger's budget.
    Memory { held: Held, merger: Arc<Merger>, ordinal: usize },
    /// A part file (`base` 0) or the merged file from `base` on (`direct`).
    File { file: BufWriter<File>, path: PathBuf, base: u64, direct: bool },
}

/// How a finished file's lines are held, for the merger.
pub(crate) enum Finished {
    /// Already in the merged file.
    Direct,
    /// In memory, to append.
    Memory(Held),
    /// In the part file, to append.
    Part,
}

impl Output {
    /// A plain part file at `path` (created or emptied), merged when finished.
    pub fn part(path: &Path) -> std::io::Result<Output> {
        let file = BufWriter::with_capacity(WRITE_BUFFER, File::create(path)?);
        Ok(Output::File { file, path: path.to_path_buf(), base: 0, direct: false })
    }

    /// Output for file `ordinal`, written straight into its merged file once it is next in line.
    pub fn queued(merger: Arc<Merger>, ordinal: usize) -> Output {
        Output::Memory { held: Held::default(), merger, ordinal }
    }

    /// The file being written, for error messages.
    pub fn path(&self) -> PathBuf {
        match self {
            Output::File { path, .. } => path.clone(),
            Output::Memory { merger, ordinal, .. } => merger.part(*ordinal),
        }
    }

    /// Appends checked bytes.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::File { file, .. } => file.write_all(bytes),
            Output::Memory { held, merger, .. } => {
                held.append(bytes, merger);
                Ok(())
            }
        }
    }

    /// Switches to writing straight into the merged file when this file is
    /// next in line, moving what it holds so far there.
    pub fn advance(&mut self) -> std::io::Result<()> {
        let Output::Memory { held, merger, ordinal } = self else { return Ok(()) };
        let Some((mut merged, path, base)) = merger.try_claim(*ordinal)? else { return Ok(()) };
        held.write_to(&mut merged)?;
        merger.release(held.taken());
        let file = BufWriter::with_capacity(WRITE_BUFFER, merged);
        *self = Output::File { file, path, base, direct: true };
        Ok(())
    }

    /// Before reading more: while this file waits in memory and waiting files
    /// hold more than the budget, waits until it is next in line or memory is
    /// given back.
    pub async fn wait_turn(&mut self) -> std::io::Result<()> {
        while let Output::Memory { merger, .. } = self
            && merger.over_budget()
        {
            let merger = merger.clone();
            self.advance()?;
            if matches!(self, Output::Memory { .. }) {
                merger.progressed().await;
            }
        }
        Ok(())
    }

    /// Writes out buffered bytes.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File { file, .. } => file.flush(),
            Output::Memory { .. } => Ok(()),
        }
    }

    /// Forgets everything this file wrote.
    pub fn restart(&mut self) -> std::io::Result<()> {
        match self {
            Output::File { file, base, .. } => {
                file.flush()?;
                let f = file.get_mut();
                f.set_len(*base)?;
                f.seek(SeekFrom::Start(*base))?;
            }
            Output::Memory { held, merger, .. } => {
                merger.release(held.taken());
                *held = Held::default();
            }
        }
        Ok(())
    }

    /// Flushes and tells how the lines are held.
    pub fn finish(mut self) -> std::io::Result<Finished> {
        self.flush()?;
        Ok(match self {
            Output::Memory { held, .. } => Finished::Memory(held),
            Output::File { direct: true, .. } => Finished::Direct,
            Output::File { direct: false, .. } => Finished::Part,
        })
    }
}

//! SHA-256 of a job's files, for the manifest's `extension` (off by default,
//! `ServerConfig::file_digests`): computed from the same [`Selector`] that
//! streams the files, so a digest is always of the bytes served without faults
//! (uncompressed; gzip is a transfer encoding).

use std::io;

use aws_lc_rs::digest::{Context, SHA256};

use super::content::Selector;
use super::job::Job;
use crate::data::DataSource;

/// The SHA-256 of file `index` of `job`, in lowercase hex.
pub fn file_sha256(job: &Job, source: &dyn DataSource, index: usize) -> io::Result<String> {
    let selector = Selector::new(&job.plan, source);
    let file = &job.plan.files[index];
    let mut context = Context::new(&SHA256);
    let mut unit_bytes = Vec::new();
    for unit in file.units.clone() {
        unit_bytes.clear();
        selector.write_unit_chunked(file, unit, &mut unit_bytes, &mut |b| {
            context.update(b);
            b.clear();
            std::ops::ControlFlow::Continue(())
        })?;
        context.update(&unit_bytes);
    }
    Ok(hex(context))
}

/// The SHA-256 of `bytes` in lowercase hex (the error file's).
pub fn bytes_sha256(bytes: &[u8]) -> String {
    let mut context = Context::new(&SHA256);
    context.update(bytes);
    hex(context)
}

fn hex(context: Context) -> String {
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

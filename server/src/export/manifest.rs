//! Building completion manifests, whole or in pages (SRV-125..127, SRV-150..165).
//!
//! Without `allowPartialManifests` there is one page holding every file. With
//! it, files are grouped into fixed pages; page `n` links to page `n+1`, and a
//! page can be served (with a 202) as soon as all its files are ready. Pages
//! are fixed by the plan, so a served manifest never changes (SRV-127).

use bulkmock_wire::{Manifest, ManifestFile, ManifestLink};

use super::job::Job;
use super::plan::FileKind;
use crate::data::DataSource;

/// URLs of one job's status pages and files.
pub struct JobUrls<'a> {
    /// The FHIR base, without a trailing slash.
    pub fhir_base: &'a str,
    /// The job id.
    pub job: &'a str,
}

impl JobUrls<'_> {
    /// The status URL (page 1).
    pub fn status(&self) -> String {
        format!("{}/bulkstatus/{}", self.fhir_base, self.job)
    }

    /// The URL of manifest page `page` (1-based).
    pub fn page(&self, page: usize) -> String {
        if page <= 1 { self.status() } else { format!("{}/page/{page}", self.status()) }
    }

    /// The URL of a file by name.
    pub fn file(&self, name: &str) -> String {
        format!("{}/bulkfiles/{}/{name}", self.fhir_base, self.job)
    }

    /// The URL of a file in URL generation `generation` (`?v=` once URLs were renewed).
    pub fn file_in(&self, name: &str, generation: u64) -> String {
        match generation {
            0 => self.file(name),
            g => format!("{}?v={g}", self.file(name)),
        }
    }
}

/// The file name of plan file `i`.
pub fn file_name(source: &dyn DataSource, kind: FileKind, i: usize) -> String {
    match kind {
        FileKind::Output(t) => format!("{i}.{}.ndjson", source.types()[t].name),
        FileKind::Deleted(t) => format!("{i}.deleted.{}.ndjson", source.types()[t].name),
        FileKind::Organized => format!("{i}.patients.ndjson"),
    }
}

/// The name of the error file.
pub const ERROR_FILE: &str = "error.ndjson";

/// Number of manifest pages of a job.
pub fn page_count(job: &Job, page_size: usize) -> usize {
    if job.plan.allow_partial_manifests { job.plan.files.len().div_ceil(page_size.max(1)).max(1) } else { 1 }
}

/// Plan file indices on page `page` (1-based).
pub fn page_files(job: &Job, page: usize, page_size: usize) -> std::ops::Range<usize> {
    let total = job.plan.files.len();
    if !job.plan.allow_partial_manifests {
        return 0..total;
    }
    let size = page_size.max(1);
    ((page - 1) * size).min(total)..(page * size).min(total)
}

/// The manifest of page `page`; every file on it must be counted.
pub fn build(
    job: &Job,
    source: &dyn DataSource,
    urls: &JobUrls<'_>,
    page: usize,
    page_size: usize,
    requires_access_token: bool,
    digests: bool,
) -> Manifest {
    // bulkmock's SHA-256 extension per file, when asked for (off by default).
    let sha256 = |digest: std::io::Result<String>| {
        let digest = digest.ok().filter(|_| digests)?;
        let mut extension = serde_json::Map::new();
        extension.insert(bulkmock_wire::SHA256_EXTENSION.to_string(), serde_json::Value::String(digest));
        Some(extension)
    };
    let mut output = Vec::new();
    let mut deleted = Vec::new();
    for i in page_files(job, page, page_size) {
        let kind = job.plan.files[i].kind;
        let count = job.count(i).unwrap_or(0);
        if count == 0 {
            continue; // SRV-158: no entries for files without data.
        }
        let resource_type = match kind {
            FileKind::Output(t) => Some(source.types()[t].name.clone()),
            FileKind::Deleted(_) => Some("Bundle".to_string()),
            FileKind::Organized => None,
        };
        let entry = ManifestFile {
            resource_type,
            url: urls.file_in(&file_name(source, kind, i), job.url_generation()),
            count: Some(count),
            continues_in_file: None,
            extension: if digests { sha256(job.sha256(i)) } else { None },
        };
        match kind {
            FileKind::Deleted(_) => deleted.push(entry),
            _ => output.push(entry),
        }
    }
    let error = if job.plan.notes.is_empty() {
        Vec::new()
    } else {
        vec![ManifestFile {
            resource_type: Some("OperationOutcome".into()),
            url: urls.file_in(ERROR_FILE, job.url_generation()),
            count: Some(job.plan.notes.len() as u64),
            continues_in_file: None,
            extension: if digests {
                sha256(Ok(super::digest::bytes_sha256(&super::expected::error_lines(job))))
            } else {
                None
            },
        }]
    };
    let link = if page < page_count(job, page_size) {
        vec![ManifestLink { relation: "next".into(), url: urls.page(page + 1) }]
    } else {
        Vec::new()
    };
    Manifest {
        transaction_time: crate::data::clock::instant_string(job.transaction_time),
        request: job.request_url.clone(),
        requires_access_token,
        output_organized_by: job.plan.organized.then(|| "Patient".to_string()),
        output,
        deleted: job.plan.since.is_some().then_some(deleted),
        error,
        link,
        extension: None,
    }
}

//! The output verifier: a client's output folder against the export its job
//! really produced, as multisets keyed by type and id with a content digest.

pub mod classify;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use classify::{Line, classify};

/// Most bytes of client output read per case; past it the output is judged too large.
pub const MAX_OUTPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Examples kept per type and kind of difference.
const EXAMPLES: usize = 5;

/// One kind of difference, per resource type.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TypeDiff {
    /// How many resources.
    pub count: u64,
    /// Up to five `Type/id` examples.
    pub examples: Vec<String>,
}

/// The output compared with the expected export.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputReport {
    /// Resources expected (output files of the job).
    pub expected_resources: u64,
    /// Resource lines found.
    pub resources: u64,
    /// Expected resources absent from the output.
    pub missing: u64,
    /// Resources in the output the export did not hold.
    pub extra: u64,
    /// Resources present more often than exported.
    pub duplicated: u64,
    /// Resources whose content differs from what was exported, plus cut or damaged resource lines.
    pub corrupted: u64,
    /// Deletions expected (`deleted` files) and found.
    pub deleted: Tally,
    /// OperationOutcomes expected (`error` files) and found.
    pub errors: Tally,
    /// Resources present that the export listed as deleted (CLI-087).
    pub deleted_but_present: u64,
    /// JSON lines without a `resourceType` (a client's own log): ignored, counted.
    pub not_resources: u64,
    /// NDJSON files read.
    pub files: u64,
    /// Files that could not be read (unreadable, bad gzip), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// The output was larger than [`MAX_OUTPUT_BYTES`]; the rest was not read.
    pub too_large: bool,
    /// Per type: examples of each kind of difference.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, BTreeMap<String, TypeDiff>>,
}

/// Expected and found counts, with the difference.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tally {
    /// Expected.
    pub expected: u64,
    /// Found.
    pub found: u64,
    /// Expected but not found.
    pub missing: u64,
    /// Found but not expected.
    pub extra: u64,
}

impl OutputReport {
    /// Whether the resources match the export exactly (nothing missing, extra, duplicated or corrupted).
    pub fn resources_exact(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.duplicated == 0 && self.corrupted == 0 && !self.too_large
    }
}

/// Everything classified from a set of lines.
#[derive(Default)]
struct Collected {
    resources: HashMap<(String, String), Vec<u64>>,
    deleted: HashMap<String, u64>,
    outcomes: HashMap<u64, u64>,
    not_resources: u64,
    broken: u64,
}

impl Collected {
    fn add(&mut self, line: &[u8]) {
        match classify(line) {
            None | Some(Line::BlockHeader) => {}
            Some(Line::Resource { resource_type, id, digest }) => {
                self.resources.entry((resource_type, id)).or_default().push(digest)
            }
            Some(Line::Deleted(urls)) => urls.into_iter().for_each(|u| *self.deleted.entry(u).or_default() += 1),
            Some(Line::Outcome(d)) => *self.outcomes.entry(d).or_default() += 1,
            Some(Line::NotResource) => self.not_resources += 1,
            Some(Line::Broken { looks_like_resource: true }) => self.broken += 1,
            Some(Line::Broken { looks_like_resource: false }) => self.not_resources += 1,
        }
    }
}

/// Compares the NDJSON under `out_dir` with `expected` (the lines of the job's files).
pub fn verify<'a>(out_dir: &Path, expected: impl IntoIterator<Item = &'a [u8]>) -> OutputReport {
    compare_folder(out_dir, expected).0
}

/// Reads `out_dir` and compares it with `expected`; also returns what was found.
fn compare_folder<'a>(out_dir: &Path, expected: impl IntoIterator<Item = &'a [u8]>) -> (OutputReport, Collected) {
    let mut want = Collected::default();
    for line in expected {
        want.add(line);
    }
    let mut got = Collected::default();
    let mut report = OutputReport::default();
    read_folder(out_dir, &mut got, &mut report);
    compare(&want, &got, &mut report);
    (report, got)
}

/// Compares the NDJSON under `out_dir` with a client's expected *state* after
/// an `[incremental]` case: `state` holds the lines of the data's final state,
/// `removed` the `Type/id` of every resource an earlier run held that the final
/// state no longer has (deleted, or of a member that left the Group). In this
/// report `deleted` counts those removals: `found` = applied (absent from the
/// folder), `missing` = still present, as `deleted_but_present` also says.
pub fn verify_state<'a>(out_dir: &Path, state: impl IntoIterator<Item = &'a [u8]>, removed: &[String]) -> OutputReport {
    let (mut report, got) = compare_folder(out_dir, state);
    let present = removed
        .iter()
        .filter(|url| {
            url.split_once('/').is_some_and(|(ty, id)| got.resources.contains_key(&(ty.to_string(), id.to_string())))
        })
        .count() as u64;
    let expected = removed.len() as u64;
    report.deleted = Tally { expected, found: expected - present, missing: present, extra: 0 };
    report.deleted_but_present = present;
    report
}

fn ndjson_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            ndjson_files(&path, out);
        } else if meta.is_file() {
            let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            if name.ends_with(".ndjson") || name.ends_with(".ndjson.gz") {
                out.push(path);
            }
        }
    }
}

fn read_folder(dir: &Path, got: &mut Collected, report: &mut OutputReport) {
    let mut files = Vec::new();
    ndjson_files(dir, &mut files);
    let mut budget = MAX_OUTPUT_BYTES;
    for path in files {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                report.unreadable.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let gz = path.to_string_lossy().to_lowercase().ends_with(".gz");
        let reader: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
        let mut bytes = Vec::new();
        let read = reader.take(budget + 1).read_to_end(&mut bytes);
        if let Err(e) = read {
            report.unreadable.push(format!("{}: {e}", path.display()));
        }
        if bytes.len() as u64 > budget {
            report.too_large = true;
            return;
        }
        budget -= bytes.len() as u64;
        report.files += 1;
        bytes.split(|&b| b == b'\n').for_each(|line| got.add(line));
    }
}

fn compare(want: &Collected, got: &Collected, report: &mut OutputReport) {
    let mut note = |kind: &str, ty: &str, id: &str, n: u64| {
        let diff = report.details.entry(ty.to_string()).or_default().entry(kind.to_string()).or_default();
        diff.count += n;
        if diff.examples.len() < EXAMPLES {
            diff.examples.push(format!("{ty}/{id}"));
        }
    };
    let (mut missing, mut extra, mut duplicated, mut corrupted) = (0, 0, 0, got.broken);
    let mut keys: Vec<&(String, String)> = want.resources.keys().chain(got.resources.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (ty, id) = key;
        let expected = want.resources.get(key).map_or(&[][..], Vec::as_slice);
        let found = got.resources.get(key).map_or(&[][..], Vec::as_slice);
        if found.is_empty() {
            missing += expected.len() as u64;
            note("missing", ty, id, expected.len() as u64);
        } else if expected.is_empty() {
            extra += found.len() as u64;
            note("extra", ty, id, found.len() as u64);
        } else if found.iter().any(|d| !expected.contains(d)) {
            corrupted += 1;
            note("corrupted", ty, id, 1);
        } else if found.len() > expected.len() {
            let n = (found.len() - expected.len()) as u64;
            duplicated += n;
            note("duplicated", ty, id, n);
        }
    }
    if got.broken > 0 {
        let diff = report.details.entry("(unparseable)".into()).or_default().entry("corrupted".into()).or_default();
        diff.count += got.broken;
    }
    report.expected_resources = want.resources.values().map(|v| v.len() as u64).sum();
    report.resources = got.resources.values().map(|v| v.len() as u64).sum();
    report.missing = missing;
    report.extra = extra;
    report.duplicated = duplicated;
    report.corrupted = corrupted;
    report.deleted = tally(&want.deleted, &got.deleted);
    report.errors = tally(&want.outcomes, &got.outcomes);
    report.not_resources = got.not_resources;
    report.deleted_but_present = want
        .deleted
        .keys()
        .filter(|url| {
            url.split_once('/').is_some_and(|(ty, id)| got.resources.contains_key(&(ty.to_string(), id.to_string())))
        })
        .count() as u64;
}

fn tally<K: std::hash::Hash + Eq>(want: &HashMap<K, u64>, got: &HashMap<K, u64>) -> Tally {
    let expected = want.values().sum();
    let found = got.values().sum();
    let missing = want.iter().map(|(k, n)| n.saturating_sub(*got.get(k).unwrap_or(&0))).sum();
    let extra = got.iter().map(|(k, n)| n.saturating_sub(*want.get(k).unwrap_or(&0))).sum();
    Tally { expected, found, missing, extra }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiset_comparison_names_each_kind_of_difference() {
        let dir = tempfile::tempdir().unwrap();
        let expected: Vec<&[u8]> = vec![
            br#"{"resourceType":"Patient","id":"a","x":1}"#,
            br#"{"resourceType":"Patient","id":"b","x":1}"#,
            br#"{"resourceType":"Patient","id":"c","x":1}"#,
            br#"{"resourceType":"Patient","id":"d","x":1}"#,
        ];
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/whatever-name.ndjson"),
            concat!(
                "{\"x\":1,\"resourceType\":\"Patient\",\"id\":\"a\"}\n",
                "{\"resourceType\":\"Patient\",\"id\":\"a\",\"x\":1}\n",
                "{\"resourceType\":\"Patient\",\"id\":\"b\",\"x\":2}\n",
                "{\"resourceType\":\"Patient\",\"id\":\"e\",\"x\":1}\n",
                "{\"event\":\"log line\"}\n",
                "{\"resourceType\":\"Patient\",\"id\":\"d\",\"x\"\n",
            ),
        )
        .unwrap();
        let report = verify(dir.path(), expected);
        assert_eq!(report.expected_resources, 4);
        assert_eq!((report.missing, report.extra, report.duplicated, report.corrupted), (2, 1, 1, 2));
        assert_eq!(report.not_resources, 1);
        assert_eq!(report.details["Patient"]["missing"].examples, vec!["Patient/c", "Patient/d"]);
        assert!(!report.resources_exact());
    }
}

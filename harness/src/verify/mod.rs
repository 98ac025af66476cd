//! The output verifier: a client's output folder against the export its job
//! really produced, as multisets keyed by type and id with content digests.
//!
//! Content is compared in tiers: the same JSON (whatever the key order,
//! spacing, string escapes, or a number's spelling of the same value and
//! decimals) matches; the same values with a decimal spelled with fewer
//! digits (`15.0` as `15`) match but count as precision lost (FHIR R4: a
//! decimal's precision is significant), with the element named; anything else
//! is corrupted. Each line is digested once (both digests in one pass); only a
//! line that misses is compared element by element.

pub mod classify;
pub mod decimal;
pub mod diff;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use classify::{Digest, Line, classify};
use diff::{Change, differences};

/// Most bytes of client output read per case; past it the output is judged too large.
pub const MAX_OUTPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The `details` key of resource lines that could not be parsed (cut or damaged).
pub const UNPARSEABLE: &str = "(unparseable)";

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

impl TypeDiff {
    fn note(&mut self, example: String, n: u64) {
        self.count += n;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example);
        }
    }
}

/// A decimal found spelled with fewer digits than exported (`15.0` as `15`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Respelled {
    /// `Type/id` of the resource.
    pub resource: String,
    /// The element (`valueQuantity.value`).
    pub path: String,
    /// As exported (`15.0`).
    pub expected: String,
    /// As found (`15`).
    pub found: String,
}

/// The output compared with the expected export.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputReport {
    /// Resources expected (output files of the job).
    pub expected_resources: u64,
    /// Resources found.
    pub resources: u64,
    /// Expected resources absent from the output.
    pub missing: u64,
    /// Resources in the output the export did not hold.
    pub extra: u64,
    /// Resources present more often than exported.
    pub duplicated: u64,
    /// Resources whose values differ from what was exported, plus cut or damaged resource lines.
    pub corrupted: u64,
    /// Deletions expected (`deleted` files) and found.
    pub deleted: Tally,
    /// OperationOutcomes expected (`error` files) and found.
    pub errors: Tally,
    /// Resources present that the export listed as deleted (CLI-087); in an
    /// incremental case, removed ones other than those of members who left.
    pub deleted_but_present: u64,
    /// `deleted_but_present` per type, with examples.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted_present: BTreeMap<String, TypeDiff>,
    /// Incremental Group cases: resources of members who left the Group, still
    /// present (never listed as deleted: the export simply stops holding them).
    #[serde(default, skip_serializing_if = "TypeDiff::is_empty")]
    pub departed_present: TypeDiff,
    /// Resources equal by value with a decimal spelled with fewer digits (`15.0` as `15`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub precision_lost: u64,
    /// Examples of it: resource, element and both spellings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub precision_examples: Vec<Respelled>,
    /// Expected resources with a decimal spelled with digits after the point
    /// (what the precision comparison can judge).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decimal_resources: u64,
    /// `.ndjson` files holding gzip bytes: a body kept undecoded (CLI-084). Not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gzip_undecoded: Vec<String>,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TypeDiff {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
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
    /// Whether the resources match the export by value (nothing missing, extra,
    /// duplicated or corrupted, no body kept gzipped); lost decimals aside.
    pub fn resources_exact(&self) -> bool {
        self.missing == 0
            && self.extra == 0
            && self.duplicated == 0
            && self.corrupted == 0
            && !self.too_large
            && self.gzip_undecoded.is_empty()
    }
}

/// A resource's `(type, id)`.
type Key = (String, String);

/// One resource line: its digests, and the line itself on the expected side
/// (empty on the found side, which is never kept).
struct Entry<'a> {
    digest: Digest,
    line: &'a [u8],
}

/// Everything classified from a set of lines.
#[derive(Default)]
struct Collected<'a> {
    resources: HashMap<Key, Vec<Entry<'a>>>,
    deleted: HashMap<String, u64>,
    outcomes: HashMap<u64, u64>,
    not_resources: u64,
    broken: u64,
}

impl<'a> Collected<'a> {
    /// Adds an expected line (kept, to name differences later).
    fn add(&mut self, line: &'a [u8]) {
        match classify(line) {
            Some(Line::Resource { resource_type, id, digest }) => {
                self.resources.entry((resource_type, id)).or_default().push(Entry { digest, line })
            }
            other => self.add_other(other),
        }
    }

    fn add_other(&mut self, line: Option<Line>) {
        match line {
            None | Some(Line::BlockHeader) | Some(Line::Resource { .. }) => {}
            Some(Line::Deleted(urls)) => urls.into_iter().for_each(|u| *self.deleted.entry(u).or_default() += 1),
            Some(Line::Outcome(d)) => *self.outcomes.entry(d).or_default() += 1,
            Some(Line::NotResource) => self.not_resources += 1,
            Some(Line::Broken { looks_like_resource: true }) => self.broken += 1,
            Some(Line::Broken { looks_like_resource: false }) => self.not_resources += 1,
        }
    }

    fn has(&self, url: &str) -> bool {
        url.split_once('/').is_some_and(|(ty, id)| self.resources.contains_key(&(ty.to_string(), id.to_string())))
    }
}

/// The output folder's lines, read against the expected ones.
struct Reader<'w, 'a> {
    want: &'w Collected<'a>,
    got: Collected<'static>,
    /// Keys whose found lines are kept (removed resources of an incremental case).
    watch: &'w HashSet<Key>,
    kept: HashMap<Key, Vec<u8>>,
    precision_lost: u64,
    precision_examples: Vec<Respelled>,
}

impl Reader<'_, '_> {
    fn line(&mut self, line: &[u8]) {
        match classify(line) {
            Some(Line::Resource { resource_type, id, digest }) => {
                let key = (resource_type, id);
                self.respelled(&key, digest, line);
                if self.watch.contains(&key) {
                    self.kept.entry(key.clone()).or_insert_with(|| line.to_vec());
                }
                self.got.resources.entry(key).or_default().push(Entry { digest, line: &[] });
            }
            other => self.got.add_other(other),
        }
    }

    /// A found resource equal by value to an exported copy but spelled
    /// otherwise: counted when a decimal lost digits, the first few named.
    fn respelled(&mut self, key: &Key, digest: Digest, line: &[u8]) {
        let Some(expected) = self.want.resources.get(key) else { return };
        if expected.iter().any(|e| e.digest.spelling == digest.spelling) {
            return;
        }
        let Some(same) = expected.iter().find(|e| e.digest.value == digest.value) else { return };
        let lost = differences(same.line, line, usize::MAX).into_iter().find(|d| d.change == Change::FewerDecimals);
        if let Some(d) = lost {
            self.precision_lost += 1;
            if self.precision_examples.len() < EXAMPLES {
                let resource = format!("{}/{}", key.0, key.1);
                self.precision_examples.push(Respelled {
                    resource,
                    path: d.path,
                    expected: d.expected,
                    found: d.found,
                });
            }
        }
    }
}

/// Compares the NDJSON under `out_dir` with `expected` (the lines of the job's files).
pub fn verify<'a>(out_dir: &Path, expected: impl IntoIterator<Item = &'a [u8]>) -> OutputReport {
    let (mut report, want, got, _) = compare_folder(out_dir, expected, &HashSet::new());
    let present = want.deleted.keys().filter(|url| got.has(url));
    for url in present {
        note_by_type(&mut report.deleted_present, url);
        report.deleted_but_present += 1;
    }
    report
}

/// Reads `out_dir` and compares it with `expected`; also returns what was
/// expected and found, and the found lines of the `watch`ed keys.
fn compare_folder<'a>(
    out_dir: &Path,
    expected: impl IntoIterator<Item = &'a [u8]>,
    watch: &HashSet<Key>,
) -> (OutputReport, Collected<'a>, Collected<'static>, HashMap<Key, Vec<u8>>) {
    let mut want = Collected::default();
    for line in expected {
        want.add(line);
    }
    let mut report = OutputReport::default();
    let mut reader = Reader {
        want: &want,
        got: Collected::default(),
        watch,
        kept: HashMap::new(),
        precision_lost: 0,
        precision_examples: Vec::new(),
    };
    read_folder(out_dir, &mut reader, &mut report);
    let Reader { got, kept, precision_lost, precision_examples, .. } = reader;
    compare(&want, &got, &mut report);
    report.precision_lost = precision_lost;
    report.precision_examples = precision_examples;
    (report, want, got, kept)
}

/// Compares the NDJSON under `out_dir` with a client's expected *state* after
/// an `[incremental]` case: `state` holds the lines of the data's final state,
/// `removed` the `Type/id` of every resource an earlier run held that the final
/// state no longer has (deleted, or of a member that left the Group). In this
/// report `deleted` counts those removals: `found` = applied (absent from the
/// folder), `missing` = still present. Of those still present, the resources
/// of members who left (a removed `Patient`, or one referring to it) are
/// `departed_present`; the rest, `deleted_but_present`.
pub fn verify_state<'a>(out_dir: &Path, state: impl IntoIterator<Item = &'a [u8]>, removed: &[String]) -> OutputReport {
    let watch: HashSet<Key> = removed.iter().filter_map(|u| split(u)).collect();
    let (mut report, _, got, kept) = compare_folder(out_dir, state, &watch);
    let left: Vec<&str> = removed.iter().filter_map(|u| u.strip_prefix("Patient/")).collect();
    let mut present = 0;
    for url in removed.iter().filter(|u| got.has(u)) {
        present += 1;
        let line = split(url).and_then(|k| kept.get(&k)).map_or(&[][..], Vec::as_slice);
        if url.starts_with("Patient/") || left.iter().any(|p| refers_to(line, p)) {
            report.departed_present.note(url.clone(), 1);
        } else {
            note_by_type(&mut report.deleted_present, url);
            report.deleted_but_present += 1;
        }
    }
    let expected = removed.len() as u64;
    report.deleted = Tally { expected, found: expected - present, missing: present, extra: 0 };
    report
}

fn split(url: &str) -> Option<Key> {
    url.split_once('/').map(|(ty, id)| (ty.to_string(), id.to_string()))
}

/// Whether a resource line refers to `Patient/{id}` (relative or absolute, however escaped).
fn refers_to(line: &[u8], patient_id: &str) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else { return false };
    let relative = format!("Patient/{patient_id}");
    let absolute = format!("/{relative}");
    let mut strings = vec![&value];
    while let Some(v) = strings.pop() {
        match v {
            serde_json::Value::String(s) if *s == relative || s.ends_with(&absolute) => return true,
            serde_json::Value::Array(a) => strings.extend(a),
            serde_json::Value::Object(o) => strings.extend(o.values()),
            _ => {}
        }
    }
    false
}

fn note_by_type(by_type: &mut BTreeMap<String, TypeDiff>, url: &str) {
    let ty = url.split_once('/').map_or(url, |(ty, _)| ty);
    by_type.entry(ty.to_string()).or_default().note(url.to_string(), 1);
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

/// The gzip magic bytes: a body kept as received, not decoded.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

fn read_folder(dir: &Path, reader: &mut Reader, report: &mut OutputReport) {
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
        let source: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
        let mut bytes = Vec::new();
        let read = source.take(budget + 1).read_to_end(&mut bytes);
        if let Err(e) = read {
            report.unreadable.push(format!("{}: {e}", path.display()));
        }
        if bytes.len() as u64 > budget {
            report.too_large = true;
            return;
        }
        budget -= bytes.len() as u64;
        report.files += 1;
        if !gz && bytes.starts_with(GZIP_MAGIC) {
            let name = path.strip_prefix(dir).unwrap_or(&path);
            report.gzip_undecoded.push(name.display().to_string());
            continue;
        }
        bytes.split(|&b| b == b'\n').for_each(|line| reader.line(line));
    }
}

fn compare(want: &Collected, got: &Collected, report: &mut OutputReport) {
    let mut note = |kind: &str, ty: &str, id: &str, n: u64| {
        let diff = report.details.entry(ty.to_string()).or_default().entry(kind.to_string()).or_default();
        diff.note(format!("{ty}/{id}"), n);
    };
    let (mut missing, mut extra, mut duplicated, mut corrupted) = (0, 0, 0, got.broken);
    let mut keys: Vec<&Key> = want.resources.keys().chain(got.resources.keys()).collect();
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
        } else if found.iter().any(|f| !expected.iter().any(|e| e.digest.value == f.digest.value)) {
            corrupted += 1;
            note("corrupted", ty, id, 1);
        } else if found.len() > expected.len() {
            let n = (found.len() - expected.len()) as u64;
            duplicated += n;
            note("duplicated", ty, id, n);
        }
    }
    if got.broken > 0 {
        let diff = report.details.entry(UNPARSEABLE.into()).or_default().entry("corrupted".into()).or_default();
        diff.count += got.broken;
    }
    report.expected_resources = want.resources.values().map(|v| v.len() as u64).sum();
    report.decimal_resources = want.resources.values().flatten().filter(|e| e.digest.fractions).count() as u64;
    report.resources = got.resources.values().map(|v| v.len() as u64).sum();
    report.missing = missing;
    report.extra = extra;
    report.duplicated = duplicated;
    report.corrupted = corrupted;
    report.deleted = tally(&want.deleted, &got.deleted);
    report.errors = tally(&want.outcomes, &got.outcomes);
    report.not_resources = got.not_resources;
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

    fn obs(id: &str, value: &str) -> String {
        format!(
            r#"{{"resourceType":"Observation","id":"{id}","subject":{{"reference":"Patient/p"}},"valueQuantity":{{"value":{value},"unit":"kg"}}}}"#
        )
    }

    #[test]
    fn tiers_same_json_passes_fewer_decimals_are_precision_lost_other_values_corrupted() {
        let expected = [obs("same", "15.0"), obs("fewer", "5.50"), obs("more", "15"), obs("other", "15.0")];
        let found = [
            // Other key order, spacing and escapes, and 1.50e1 for 15.0: the same JSON.
            r#"{ "valueQuantity": { "unit": "k\u0067", "value": 1.50e1 }, "subject": {"reference": "Patient\/p"}, "id": "same", "resourceType": "Observation" }"#.to_string(),
            obs("fewer", "5.5"),
            obs("more", "15.0"),
            obs("other", "15.5"),
        ];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.ndjson"), found.join("\n")).unwrap();
        let report = verify(dir.path(), expected.iter().map(|l| l.as_bytes()));
        assert_eq!((report.missing, report.extra, report.duplicated, report.corrupted), (0, 0, 0, 1));
        assert_eq!(report.details["Observation"]["corrupted"].examples, vec!["Observation/other"]);
        assert_eq!(report.precision_lost, 1);
        let lost = &report.precision_examples[0];
        assert_eq!(
            (lost.resource.as_str(), lost.path.as_str(), lost.expected.as_str(), lost.found.as_str()),
            ("Observation/fewer", "valueQuantity.value", "5.50", "5.5")
        );
        assert_eq!(report.decimal_resources, 3, "15.0, 5.50 and 15.0 have decimals; 15 has none");
    }

    #[test]
    fn identical_bytes_and_lost_precision_alone_are_exact_by_value() {
        let expected = [obs("a", "15.0"), obs("b", "7.25")];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.ndjson"), format!("{}\n{}\n", obs("a", "15"), expected[1])).unwrap();
        let report = verify(dir.path(), expected.iter().map(|l| l.as_bytes()));
        assert!(report.resources_exact());
        assert_eq!(report.precision_lost, 1);
        std::fs::write(dir.path().join("x.ndjson"), expected.join("\n")).unwrap();
        let report = verify(dir.path(), expected.iter().map(|l| l.as_bytes()));
        assert!(report.resources_exact());
        assert_eq!((report.precision_lost, report.precision_examples.len()), (0, 0));
    }

    #[test]
    fn a_gzip_body_kept_in_an_ndjson_file_is_named_not_read_as_lines() {
        use std::io::Write;
        let expected = [obs("a", "1.0")];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(expected[0].as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Observation.ndjson"), gz.finish().unwrap()).unwrap();
        let report = verify(dir.path(), expected.iter().map(|l| l.as_bytes()));
        assert_eq!(report.gzip_undecoded, vec!["Observation.ndjson"]);
        assert_eq!((report.missing, report.not_resources), (1, 0));
        assert!(!report.resources_exact());
    }

    #[test]
    fn removed_resources_of_members_who_left_are_not_deletions() {
        let state = [r#"{"resourceType":"Patient","id":"stays"}"#];
        let removed: Vec<String> =
            ["Observation/deleted", "Observation/of-left", "Patient/left"].iter().map(|s| s.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            state[0].to_string(),
            r#"{"resourceType":"Patient","id":"left"}"#.to_string(),
            r#"{"resourceType":"Observation","id":"of-left","subject":{"reference":"Patient\/left"}}"#.to_string(),
            r#"{"resourceType":"Observation","id":"deleted","subject":{"reference":"Patient/stays"}}"#.to_string(),
        ];
        std::fs::write(dir.path().join("state.ndjson"), lines.join("\n")).unwrap();
        let report = verify_state(dir.path(), state.iter().map(|l| l.as_bytes()), &removed);
        assert_eq!(report.deleted_but_present, 1);
        assert_eq!(report.deleted_present["Observation"].examples, vec!["Observation/deleted"]);
        assert_eq!(report.departed_present.count, 2);
        assert_eq!(report.departed_present.examples, vec!["Observation/of-left", "Patient/left"]);
        assert_eq!((report.deleted.expected, report.deleted.missing, report.extra), (3, 3, 3));
    }
}

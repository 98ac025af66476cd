//! A user's own NDJSON files as the data set (`bulkmock serve --data DIR`).
//!
//! At start-up every `*.ndjson` file in the folder is scanned once and indexed:
//! for each resource its file, byte offset, length, `meta.lastUpdated` and
//! owning patient. Resource bodies stay on disk and are read with positioned
//! reads when a file is downloaded, so memory grows with the number of
//! resources (about 24 bytes each), not with their size.
//!
//! A type belongs to the Patient compartment when every one of its resources
//! references a known Patient through `subject`, `patient`, `beneficiary` or
//! (Provenance) `target`; other types are exported at system level only.
//! Groups in the data whose members are known patients can be exported, and
//! an `all-patients` Group is always available. Resources without
//! `meta.lastUpdated` take their file's modification time.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{DataSource, GroupDef, Header, PatientSet, TypeIdx, TypeInfo};

/// Where one resource's line is.
#[derive(Debug, Clone, Copy)]
struct Entry {
    file: u32,
    len: u32,
    offset: u64,
    last_updated: i64,
}

/// The fields read while indexing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    resource_type: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    meta: Option<PeekMeta>,
    #[serde(default)]
    subject: Option<PeekRef>,
    #[serde(default)]
    patient: Option<PeekRef>,
    #[serde(default)]
    beneficiary: Option<PeekRef>,
    #[serde(default)]
    target: Option<Vec<PeekRef>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekMeta {
    last_updated: Option<String>,
}

#[derive(Deserialize)]
struct PeekRef {
    reference: Option<String>,
}

/// The id in a patient reference (`Patient/x`, `urn:uuid:x`, or an absolute URL).
fn patient_ref_id(r: &PeekRef) -> Option<&str> {
    let s = r.reference.as_deref()?;
    if let Some(id) = s.strip_prefix("urn:uuid:") {
        return Some(id);
    }
    s.rsplit_once("Patient/").map(|(_, id)| id).filter(|id| !id.contains('/'))
}

struct TypeData {
    entries: Vec<Entry>,
    /// For compartment types: `starts[p]..starts[p+1]` are patient `p`'s entries.
    starts: Vec<u64>,
}

/// An indexed folder of NDJSON files.
pub struct Folder {
    files: Vec<File>,
    types: Vec<TypeInfo>,
    data: Vec<TypeData>,
    patient_ids: Vec<String>,
    patient_index: HashMap<String, u64>,
    groups: Vec<GroupDef>,
}

/// An error that names the file and line.
fn bad(path: &Path, line: usize, message: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}:{line}: {message}", path.display()))
}

/// The files of `paths` that really lie inside `dir`, as canonical paths: a
/// symlink whose target is outside the folder is skipped with a warning, so
/// `--data` never serves a file from elsewhere. Opening the canonical path
/// (not the link) means the file read is the one checked.
fn inside(dir: &Path, paths: Vec<PathBuf>) -> std::io::Result<Vec<PathBuf>> {
    let root = dir
        .canonicalize()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read data folder {}: {e}", dir.display())))?;
    let mut kept = Vec::with_capacity(paths.len());
    for path in paths {
        match path.canonicalize() {
            Ok(real) if real.starts_with(&root) => kept.push(real),
            Ok(real) => tracing::warn!(
                "skipping {}: it links to {}, outside the data folder {}",
                path.display(),
                real.display(),
                root.display()
            ),
            Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
        }
    }
    Ok(kept)
}

impl Folder {
    /// Indexes every `*.ndjson` file in `dir` (symlinks only when they point inside `dir`).
    pub fn load(dir: &Path, _fhir_base: &str) -> std::io::Result<Folder> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read data folder {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
            .collect();
        paths = inside(dir, paths)?;
        paths.sort();
        if paths.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("data folder {} holds no *.ndjson files", dir.display()),
            ));
        }
        // type -> (entry, patient id) in file order
        let mut by_type: BTreeMap<String, Vec<(Entry, Option<String>, String)>> = BTreeMap::new();
        let mut files = Vec::new();
        for (file_no, path) in paths.iter().enumerate() {
            let file = File::open(path)?;
            let mtime = file
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            let mut reader = BufReader::new(file.try_clone()?);
            let mut line = Vec::new();
            let (mut offset, mut line_no) = (0u64, 0usize);
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                let content = line.strip_suffix(b"\n").unwrap_or(&line);
                let content = content.strip_suffix(b"\r").unwrap_or(content);
                if !content.iter().all(u8::is_ascii_whitespace) {
                    let peek: Peek = serde_json::from_slice(content).map_err(|e| bad(path, line_no, e))?;
                    if peek.id.is_empty() {
                        return Err(bad(path, line_no, format!("{} without an id", peek.resource_type)));
                    }
                    let last_updated = peek
                        .meta
                        .and_then(|m| m.last_updated)
                        .and_then(|s| crate::export::type_filter::parse_date_interval(&s))
                        .map_or(mtime, |i| i.0);
                    let owner = [&peek.subject, &peek.patient, &peek.beneficiary]
                        .into_iter()
                        .flatten()
                        .chain(peek.target.iter().flatten())
                        .find_map(patient_ref_id)
                        .map(str::to_string);
                    let owner = if peek.resource_type == "Patient" { Some(peek.id.clone()) } else { owner };
                    let entry = Entry { file: file_no as u32, len: content.len() as u32, offset, last_updated };
                    by_type.entry(peek.resource_type).or_default().push((entry, owner, peek.id));
                }
                offset += n as u64;
            }
            files.push(file);
        }
        let patient_ids: Vec<String> =
            by_type.get("Patient").map(|v| v.iter().map(|(_, _, id)| id.clone()).collect()).unwrap_or_default();
        let patient_index: HashMap<String, u64> =
            patient_ids.iter().enumerate().map(|(i, id)| (id.clone(), i as u64)).collect();

        let mut types = Vec::new();
        let mut data = Vec::new();
        let mut group_entries = Vec::new();
        let order = |name: &str| if name == "Patient" { 0 } else { 1 };
        let mut names: Vec<String> = by_type.keys().cloned().collect();
        names.sort_by_key(|n| (order(n), n.clone()));
        for name in names {
            let items = by_type.remove(&name).unwrap_or_default();
            let owners: Option<Vec<u64>> =
                items.iter().map(|(_, o, _)| o.as_ref().and_then(|id| patient_index.get(id).copied())).collect();
            let compartment = owners.is_some() && !patient_ids.is_empty();
            let (entries, starts): (Vec<Entry>, Vec<u64>) = match owners {
                Some(owners) if compartment => {
                    let mut pairs: Vec<(u64, Entry)> = owners.into_iter().zip(items.iter().map(|i| i.0)).collect();
                    pairs.sort_by_key(|(p, _)| *p);
                    let mut starts = vec![0u64; patient_ids.len() + 1];
                    for (p, _) in &pairs {
                        starts[*p as usize + 1] += 1;
                    }
                    for i in 1..starts.len() {
                        starts[i] += starts[i - 1];
                    }
                    (pairs.into_iter().map(|(_, e)| e).collect(), starts)
                }
                _ => (items.iter().map(|i| i.0).collect(), Vec::new()),
            };
            if name == "Group" {
                group_entries = entries.clone();
            }
            types.push(TypeInfo { name, in_patient_compartment: compartment });
            data.push(TypeData { entries, starts });
        }
        let mut folder = Folder { files, types, data, patient_index, groups: Vec::new(), patient_ids };
        folder.groups = folder.load_groups(&group_entries)?;
        Ok(folder)
    }

    fn read(&self, e: &Entry, out: &mut Vec<u8>) -> std::io::Result<()> {
        let start = out.len();
        out.resize(start + e.len as usize, 0);
        self.files[e.file as usize].read_exact_at(&mut out[start..], e.offset)
    }

    fn load_groups(&self, entries: &[Entry]) -> std::io::Result<Vec<GroupDef>> {
        let mut groups = vec![GroupDef {
            id: "all-patients".into(),
            name: "All patients".into(),
            identifier: "ALL-PATIENTS".into(),
            members: PatientSet::all(self.patient_ids.len() as u64),
        }];
        for e in entries {
            let mut buf = Vec::new();
            self.read(e, &mut buf)?;
            let g: Value = serde_json::from_slice(&buf).map_err(std::io::Error::other)?;
            let members = g["member"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let r = PeekRef { reference: m["entity"]["reference"].as_str().map(str::to_string) };
                    patient_ref_id(&r).and_then(|id| self.patient_index.get(id).copied())
                })
                .collect();
            let id = g["id"].as_str().unwrap_or_default().to_string();
            groups.push(GroupDef {
                name: g["name"].as_str().unwrap_or(&id).to_string(),
                identifier: g["identifier"][0]["value"].as_str().unwrap_or(&id).to_string(),
                id,
                members: PatientSet::list(members),
            });
        }
        Ok(groups)
    }
}

impl DataSource for Folder {
    fn types(&self) -> &[TypeInfo] {
        &self.types
    }
    fn patient_count(&self) -> u64 {
        self.patient_ids.len() as u64
    }
    fn patient_id(&self, p: u64) -> String {
        self.patient_ids.get(p as usize).cloned().unwrap_or_default()
    }
    fn patient_index(&self, id: &str) -> Option<u64> {
        self.patient_index.get(id).copied()
    }
    fn groups(&self) -> &[GroupDef] {
        &self.groups
    }
    fn patient_resources(&self, ty: TypeIdx, p: u64) -> Range<u64> {
        let s = &self.data[ty].starts;
        if s.is_empty() { 0..0 } else { s[p as usize]..s[p as usize + 1] }
    }
    fn standalone_count(&self, ty: TypeIdx) -> u64 {
        self.data[ty].entries.len() as u64
    }
    fn header(&self, ty: TypeIdx, idx: u64) -> Header {
        Header { last_updated: self.data[ty].entries[idx as usize].last_updated, deleted: false }
    }
    fn resource_id(&self, ty: TypeIdx, idx: u64) -> String {
        let mut buf = Vec::new();
        if self.read(&self.data[ty].entries[idx as usize], &mut buf).is_err() {
            return String::new();
        }
        serde_json::from_slice::<Peek>(&buf).map(|p| p.id).unwrap_or_default()
    }
    fn write_resource(&self, ty: TypeIdx, idx: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.read(&self.data[ty].entries[idx as usize], out)
    }
    fn attachment(&self, _id: &str) -> Option<(String, Vec<u8>)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, lines: &[&str]) {
        std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bulkmock-folder-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn indexes_patients_compartment_and_groups() {
        let dir = temp_dir("ok");
        write(
            &dir,
            "Patient.ndjson",
            &[
                r#"{"resourceType":"Patient","id":"b","meta":{"lastUpdated":"2020-01-01T00:00:00Z"}}"#,
                r#"{"resourceType":"Patient","id":"a"}"#,
            ],
        );
        write(
            &dir,
            "Observation.ndjson",
            &[
                r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/a"}}"#,
                r#"{"resourceType":"Observation","id":"o2","subject":{"reference":"urn:uuid:b"}}"#,
                r#"{"resourceType":"Observation","id":"o3","subject":{"reference":"Patient/a"}}"#,
            ],
        );
        write(
            &dir,
            "Other.ndjson",
            &[
                r#"{"resourceType":"Organization","id":"org"}"#,
                r#"{"resourceType":"Group","id":"g","member":[{"entity":{"reference":"Patient/a"}}]}"#,
            ],
        );
        let f = Folder::load(&dir, "http://h/fhir").unwrap();
        let names: Vec<_> = f.types().iter().map(|t| (t.name.as_str(), t.in_patient_compartment)).collect();
        assert_eq!(names, vec![("Patient", true), ("Group", false), ("Observation", true), ("Organization", false)]);
        let obs = f.type_index("Observation").unwrap();
        let a = f.patient_index("a").unwrap();
        let ids: Vec<String> = f.patient_resources(obs, a).map(|i| f.resource_id(obs, i)).collect();
        assert_eq!(ids, vec!["o1", "o3"]);
        assert_eq!(f.header(f.type_index("Patient").unwrap(), 0).last_updated, 1_577_836_800);
        assert_eq!(f.group("g").unwrap().members.iter().collect::<Vec<_>>(), vec![a]);
        let mut buf = Vec::new();
        f.write_resource(obs, 0, &mut buf).unwrap();
        assert!(String::from_utf8(buf).unwrap().starts_with('{'));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = temp_dir("bad");
        write(&dir, "x.ndjson", &[r#"{"resourceType":"Patient","id":"a"}"#, "{oops"]);
        let err = Folder::load(&dir, "http://h/fhir").err().unwrap().to_string();
        assert!(err.contains("x.ndjson:2:"), "{err}");
    }
}

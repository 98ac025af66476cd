//! Incremental pulls: apply an export made with `_since` to the state a
//! previous export left in a folder (CLI-054, CLI-087).
//!
//! A state folder holds one `{Type}.ndjson` per resource type, one resource
//! per line (what [`Client::export`](crate::Client::export) writes). An
//! incremental export's folder holds the changed resources (`{Type}.ndjson`)
//! and the deletions (`deleted/{Type}.ndjson`, transaction Bundles of
//! `DELETE` entries). [`apply`] upserts every changed resource by
//! (resourceType, id), removes every deleted one, and rewrites the state's
//! files (through a temporary file, renamed into place), lines sorted by id.
//! The next `_since` is the incremental manifest's `transactionTime`, never
//! the client's clock.
//!
//! Group exports also change membership. A `_since` export covers the
//! current members only, and only what changed: a member that joined brings
//! older data a `_since` export leaves out. Keep a Group's state exact by
//! (1) reading the Group's `member` list before and after, (2) applying the
//! `_since` export, (3) exporting the joined members with `patient`
//! (no `_since`) and applying that too, and (4) dropping the members that
//! left with [`remove_patients`]; or, simply, run a fresh Group export.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde_json::Value;

/// What [`apply`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Resources added or replaced.
    pub upserted: u64,
    /// Resources removed by `deleted` entries (entries for resources the state did not hold count too).
    pub deleted: u64,
}

type TypeState = BTreeMap<String, Vec<u8>>;

fn id_of(line: &[u8]) -> io::Result<(String, String)> {
    let v: Value = serde_json::from_slice(line).map_err(|e| io::Error::other(format!("not a JSON resource: {e}")))?;
    let ty = v["resourceType"].as_str().ok_or_else(|| io::Error::other("a line has no resourceType"))?;
    let id = v["id"].as_str().ok_or_else(|| io::Error::other(format!("a {ty} line has no id")))?;
    Ok((ty.to_string(), id.to_string()))
}

fn read_type(path: &Path) -> io::Result<TypeState> {
    let mut state = TypeState::new();
    let Ok(bytes) = std::fs::read(path) else { return Ok(state) };
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        state.insert(id_of(line)?.1, line.to_vec());
    }
    Ok(state)
}

fn ndjson_files(dir: &Path) -> io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(files) };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(ty) = name.strip_suffix(".ndjson")
            && entry.file_type()?.is_file()
        {
            files.push((ty.to_string(), entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Removes from the state in `state` every resource of the given patients
/// (ids like `pat-3` or references like `Patient/pat-3`): the Patient itself
/// and every resource that references it (its Patient compartment).
/// Returns how many resources were removed.
pub fn remove_patients(state: &Path, patients: &[String]) -> io::Result<u64> {
    let references: std::collections::HashSet<String> =
        patients.iter().map(|p| format!("Patient/{}", p.trim_start_matches("Patient/"))).collect();
    let mut removed = 0;
    for (ty, path) in ndjson_files(state)? {
        let mut kept = Vec::new();
        let mut changed = false;
        for line in std::fs::read(&path)?.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).map_err(io::Error::other)?;
            let own =
                format!("{}/{}", v["resourceType"].as_str().unwrap_or_default(), v["id"].as_str().unwrap_or_default());
            if references.contains(&own) || references_any(&v, &references) {
                removed += 1;
                changed = true;
                continue;
            }
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
        if changed {
            let temporary = state.join(format!(".{ty}.ndjson.incremental"));
            std::fs::write(&temporary, &kept)?;
            std::fs::rename(&temporary, &path)?;
        }
    }
    Ok(removed)
}

fn references_any(v: &Value, references: &std::collections::HashSet<String>) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, v)| match v {
            Value::String(s) if k == "reference" => references.contains(s),
            other => references_any(other, references),
        }),
        Value::Array(items) => items.iter().any(|v| references_any(v, references)),
        _ => false,
    }
}

/// Applies the incremental export in `delta` to the state in `state` (see the module docs).
pub fn apply(state: &Path, delta: &Path) -> io::Result<Applied> {
    let mut applied = Applied::default();
    let mut types: BTreeMap<String, TypeState> = BTreeMap::new();
    let load = |ty: &str, types: &mut BTreeMap<String, TypeState>| -> io::Result<()> {
        if !types.contains_key(ty) {
            types.insert(ty.to_string(), read_type(&state.join(format!("{ty}.ndjson")))?);
        }
        Ok(())
    };
    for (_, path) in ndjson_files(delta)? {
        for line in std::fs::read(&path)?.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let (ty, id) = id_of(line)?;
            load(&ty, &mut types)?;
            types.get_mut(&ty).expect("loaded").insert(id, line.to_vec());
            applied.upserted += 1;
        }
    }
    for (_, path) in ndjson_files(&delta.join("deleted"))? {
        for line in std::fs::read(&path)?.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let bundle: Value = serde_json::from_slice(line).map_err(io::Error::other)?;
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let request = &entry["request"];
                if request["method"].as_str() != Some("DELETE") {
                    continue;
                }
                let url = request["url"].as_str().unwrap_or_default();
                let Some((ty, id)) = url.trim_end_matches('/').rsplit_once('/') else { continue };
                let ty = ty.rsplit('/').next().unwrap_or(ty);
                load(ty, &mut types)?;
                types.get_mut(ty).expect("loaded").remove(id);
                applied.deleted += 1;
            }
        }
    }
    std::fs::create_dir_all(state)?;
    for (ty, resources) in types {
        let path = state.join(format!("{ty}.ndjson"));
        let temporary = state.join(format!(".{ty}.ndjson.incremental"));
        let mut body = Vec::new();
        for line in resources.values() {
            body.extend_from_slice(line);
            body.push(b'\n');
        }
        std::fs::write(&temporary, &body)?;
        std::fs::rename(&temporary, &path)?;
    }
    Ok(applied)
}

//! Judging an export that went through `bulkmock proxy`: the evidence comes
//! from the proxy's transcript and record (what the upstream really served,
//! each whole file's lines kept next to the record) instead of the synthetic
//! server's job. The checks are those of `bulkmock run`; the ones that read
//! token requests are skipped, since the token endpoint is the upstream's and
//! no token request passes the proxy.

use std::collections::BTreeSet;
use std::path::Path;

use bulkmock_server::proxy::record::{self, Entry, FileEntry};
use serde_json::Value;

use crate::checks::{Evidence, JobFacts, Verdict};
use crate::report::{CaseResult, CaseVerdict};

/// Checks that judge token requests or the tokens issued, which a proxy never sees.
pub const TOKEN_ENDPOINT_CHECKS: &[&str] = &[
    "auth.discovery",
    "auth.fresh_jti",
    "auth.assertion_header",
    "auth.assertion_claims",
    "auth.token_request_form",
    "auth.token_reused",
    "auth.token_renewed",
];

/// Why [`TOKEN_ENDPOINT_CHECKS`] are skipped.
pub const TOKEN_ENDPOINT_SKIP: &str =
    "the token endpoint is the upstream's: no token request passes the proxy (judge auth against bulkmock serve)";

/// What a proxy record says about the last export through the proxy.
#[derive(Debug, Clone, Default)]
pub struct ProxiedExport {
    /// The proxy's FHIR base (what the client used).
    pub fhir_base: String,
    /// The upstream's FHIR base.
    pub upstream: String,
    /// The seed of the proxy's faults.
    pub seed: u64,
    /// The fault plan the proxy started with.
    pub faults: Vec<bulkmock_server::FaultRule>,
    /// The proxy's transcript, when the record names it (resolved against the record's folder).
    pub transcript: Option<std::path::PathBuf>,
    /// The method of the last kick-off (`GET` or `POST`; empty without one).
    pub method: String,
    /// The job, as far as its kick-off and manifests tell.
    pub job: Option<JobFacts>,
    /// The lines of the job's files as the upstream served them (manifest order).
    pub expected: Vec<Vec<u8>>,
    /// Each file's URL (on the upstream) and how many lines of `expected` it holds, in order.
    pub sources: Vec<(String, usize)>,
    /// Files of the manifest no body of which passed the proxy whole (the
    /// client never fetched them, or only ranges with gaps): their lines are
    /// unknown, so they add none to `expected`; `files.each_downloaded` names them.
    pub unread: Vec<String>,
}

/// Reads a proxy record (`bulkmock proxy --record FILE`) and the bodies kept
/// beside it. Errors name the file and what is missing.
pub fn read(path: &Path) -> Result<ProxiedExport, String> {
    let entries = record::Record::read(path)?;
    let mut export = ProxiedExport::default();
    let mut last_kickoff = None;
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            Entry::Started { fhir_base, upstream, seed, faults, transcript } => {
                (export.fhir_base, export.upstream, export.seed) = (fhir_base.clone(), upstream.clone(), *seed);
                export.faults = faults.clone();
                export.transcript = transcript.as_deref().map(|t| record::transcript_path(path, t));
            }
            Entry::Kickoff { .. } => last_kickoff = Some(i),
            _ => {}
        }
    }
    if export.fhir_base.is_empty() {
        return Err(format!("{}: not a proxy record (no `started` entry)", path.display()));
    }
    let Some(start) = last_kickoff else { return Ok(export) };
    let Entry::Kickoff { method, url, body, .. } = &entries[start] else { unreachable!("a kick-off") };
    export.method = method.clone();
    let later = &entries[start + 1..];
    let mut urls = Vec::new();
    // What the manifests the upstream served said: the token rule on files follows it.
    let mut requires_access_token = None;
    for entry in later {
        if let Entry::Manifest { manifest, .. } = entry {
            match manifest.get("requiresAccessToken").and_then(Value::as_bool) {
                Some(true) => requires_access_token = Some(true),
                Some(false) => requires_access_token = requires_access_token.or(Some(false)),
                None => {}
            }
            for list in ["output", "deleted", "error"] {
                for item in manifest.get(list).and_then(Value::as_array).into_iter().flatten() {
                    if let Some(u) = item.get("url").and_then(Value::as_str) {
                        urls.push(u.to_string());
                    }
                }
            }
        }
    }
    // The same page may have been fetched more than once: each file once, in order.
    let mut seen = BTreeSet::new();
    urls.retain(|u| seen.insert(u.clone()));
    let files: Vec<&FileEntry> =
        later.iter().filter_map(|e| if let Entry::File(f) = e { Some(f) } else { None }).collect();
    let dir = record::bodies_dir(path);
    let mut unread: Vec<String> = Vec::new();
    for u in &urls {
        let without_query = |s: &str| s.split('?').next().unwrap_or_default().to_string();
        let of_url: Vec<&FileEntry> = match files.iter().any(|f| f.url == *u) {
            true => files.iter().copied().filter(|f| f.url == *u).collect(),
            false => files.iter().copied().filter(|f| without_query(&f.url) == without_query(u)).collect(),
        };
        match file_bytes(&dir, &of_url)? {
            Some(bytes) => {
                let before = export.expected.len();
                export.expected.extend(bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
                export.sources.push((u.clone(), export.expected.len() - before));
            }
            None => unread.push(u.clone()),
        }
    }
    export.unread = unread;
    export.job = Some(JobFacts { requires_access_token, ..job_facts(method, url, body.as_ref(), &urls) });
    Ok(export)
}

/// A file's bytes as the upstream served them: a whole 200 body (its SHA-256
/// checked against the record), else the pieces of plain bodies cut upstream and
/// ranges that resumed them, put together when they cover the announced length.
fn file_bytes(dir: &Path, entries: &[&FileEntry]) -> Result<Option<Vec<u8>>, String> {
    let read = |f: &FileEntry| -> Result<Vec<u8>, String> {
        let path = dir.join(f.saved.as_deref().unwrap_or_default());
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    if let Some(whole) = entries.iter().rev().find(|f| f.status == 200 && f.complete && f.saved.is_some()) {
        let bytes = read(whole)?;
        if bulkmock_server::export::digest::bytes_sha256(&bytes) != whole.plain_sha256 {
            return Err(format!(
                "{}: its SHA-256 is not the one the record holds for {} (the folder was changed)",
                dir.join(whole.saved.as_deref().unwrap_or_default()).display(),
                whole.url
            ));
        }
        return Ok(Some(bytes));
    }
    // A decoded gzip 200 is the file's start too (ranges count plain bytes; 206s are never encoded).
    let plain = |f: &&&FileEntry| {
        f.saved.is_some() && (f.status == 200 || f.content_encoding.as_deref().is_none_or(|e| e == "identity"))
    };
    let Some(total) = entries.iter().filter(plain).find_map(|f| f.total) else { return Ok(None) };
    let mut pieces: Vec<&&FileEntry> = entries.iter().filter(plain).collect();
    pieces.sort_by_key(|f| f.offset);
    let mut bytes: Vec<u8> = Vec::new();
    for piece in pieces {
        if piece.offset > bytes.len() as u64 {
            break; // a gap
        }
        let body = read(piece)?;
        let skip = (bytes.len() as u64 - piece.offset) as usize;
        if body.len() > skip {
            bytes.extend_from_slice(&body[skip..]);
        }
    }
    Ok((bytes.len() as u64 == total).then_some(bytes))
}

impl ProxiedExport {
    /// The upstream's files (URLs, in manifest order) whose lines hold any of
    /// `resources` (`Type/id`, as a verifier's examples name them).
    pub fn files_holding(&self, resources: &[&str]) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        for (url, count) in &self.sources {
            let lines = &self.expected[start..start + count];
            start += count;
            let holds = lines.iter().any(|line| {
                serde_json::from_slice::<Value>(line).ok().is_some_and(|r| {
                    let (ty, id) =
                        (r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default());
                    resources.contains(&format!("{ty}/{id}").as_str())
                })
            });
            if holds {
                out.push(url.as_str());
            }
        }
        out
    }
}

/// The job's facts from its kick-off (URL and `Parameters`) and its files' URLs.
fn job_facts(method: &str, url: &str, body: Option<&Value>, files: &[String]) -> JobFacts {
    let path = url.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.rsplit('/').take(3).collect();
    let (level, group) = match segments.as_slice() {
        ["$export", "Patient", ..] => ("patient", None),
        ["$export", id, "Group"] => ("group", Some(percent_decode(id))),
        _ => ("system", None),
    };
    // (name, value) of every parameter: the query's, and a POST body's.
    let mut params: Vec<(String, String)> =
        url.split_once('?').map(|(_, q)| form_urlencoded_pairs(q)).unwrap_or_default();
    let mut comma_joined = Vec::new();
    if method == "POST"
        && let Some(list) = body.and_then(|b| b.get("parameter")).and_then(Value::as_array)
    {
        for p in list {
            let Some(name) = p.get("name").and_then(Value::as_str) else { continue };
            let value = p
                .as_object()
                .into_iter()
                .flatten()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(_, v)| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                .unwrap_or_default();
            if value.contains(',') && matches!(name, "_type" | "_elements" | "includeAssociatedData") {
                comma_joined.push(name.to_string());
            }
            params.push((name.to_string(), value));
        }
    }
    let has = |name: &str| params.iter().any(|(n, _)| n == name);
    let types: Vec<String> = {
        let mut t: Vec<String> = params
            .iter()
            .filter(|(n, _)| n == "_type")
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        t.dedup();
        t
    };
    JobFacts {
        id: String::new(),
        level: level.into(),
        group,
        types,
        since: has("_since"),
        until: has("_until"),
        elements: has("_elements"),
        type_filters: has("_typeFilter"),
        patients: params.iter().filter(|(n, _)| n == "patient").count() as u64,
        organized: has("organizeOutputBy"),
        associated_data: has("includeAssociatedData"),
        partial_manifests: params.iter().any(|(n, v)| n == "allowPartialManifests" && v == "true"),
        files: files
            .iter()
            .map(|u| u.split('?').next().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string())
            .collect(),
        comma_joined,
        beyond_type_filter: 0,
        lenient_ignored: Vec::new(),
        requires_access_token: None,
    }
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why `etiquette.request_bound` is skipped for an export a real upstream served.
pub const REQUEST_BOUND_SKIP: &str = "the case's request bound counts the mock's files and polls; a real \
                                      upstream's export has its own number of files, pages and polls";

/// A result judged from a proxy: the token-endpoint checks skipped, with the
/// reason, and the case's request bound (written for the mock's export, not
/// the upstream's), and the verdict taken again from the checks left.
pub fn skip_token_endpoint(result: &mut CaseResult, timed_out: bool) {
    for check in result.checks.iter_mut() {
        let why = match check.id.as_str() {
            id if TOKEN_ENDPOINT_CHECKS.contains(&id) => TOKEN_ENDPOINT_SKIP,
            "etiquette.request_bound" => REQUEST_BOUND_SKIP,
            _ => continue,
        };
        check.verdict = Verdict::Skip;
        check.evidence = Some(Evidence { message: why.into(), exchanges: Vec::new() });
    }
    if result.verdict != CaseVerdict::Error {
        result.verdict = CaseResult::verdict_of(timed_out, false, &result.checks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kickoff_parameters_become_job_facts() {
        let url = "http://up/fhir/Group/g%201/$export?_type=Patient,Observation&_since=2020&patient=a&patient=b";
        let files = ["http://up/fhir/f/0.Patient.ndjson?v=1".to_string()];
        let facts = job_facts("GET", url, None, &files);
        assert_eq!((facts.level.as_str(), facts.group.as_deref()), ("group", Some("g 1")));
        assert_eq!(facts.types, ["Patient", "Observation"]);
        assert!(facts.since && !facts.until);
        assert_eq!(facts.patients, 2);
        assert_eq!(facts.files, ["0.Patient.ndjson"]);
        let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient,Condition"},
            {"name": "allowPartialManifests", "valueBoolean": true}
        ]});
        let facts = job_facts("POST", "http://up/fhir/$export", Some(&body), &[]);
        assert_eq!(facts.types, ["Patient", "Condition"]);
        assert_eq!(facts.comma_joined, ["_type"]);
        assert!(facts.partial_manifests);
        assert_eq!(percent_decode("a%2Cb+c%"), "a,b c%");
    }
}

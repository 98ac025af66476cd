//! Body rewrites for the `manifest` and `content` faults.

use serde_json::{Value, json};

use super::model::{ContentMutation, ManifestVariant};

/// The SHA-256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A marker key: the manifest is to be replaced by a body that is not JSON.
pub const NOT_JSON: &str = "\u{0}not-json";

/// Rewrites a manifest in place.
pub fn manifest(v: &mut Value, variant: ManifestVariant) {
    let Some(m) = v.as_object_mut() else { return };
    match variant {
        ManifestVariant::V4Ballot => {
            m.remove("request");
            if let Some(mut error) = m.remove("error") {
                strip_types(&mut error);
                m.insert("outcome".into(), error);
            }
            if let Some(deleted) = m.get_mut("deleted") {
                strip_types(deleted);
            }
            m.insert(
                "manifestType".into(),
                json!("http://hl7.org/fhir/uv/bulkdata/StructureDefinition/BulkDataManifest"),
            );
            m.insert("outputFormat".into(), json!("application/fhir+ndjson"));
            m.insert("extension".into(), json!([]));
        }
        ManifestVariant::UnknownFields => {
            m.insert("extension".into(), json!({"https://bulkmock.dev/vendor": {"note": "clients must ignore this"}}));
            m.insert("x-vendor-hint".into(), json!("unknown field"));
            if let Some(Value::Array(items)) = m.get_mut("output") {
                for item in items {
                    item["fileSize"] = json!(0);
                    item["x-vendor"] = json!(true);
                }
            }
        }
        ManifestVariant::EmptyOutput => {
            m.insert("output".into(), json!([]));
        }
        ManifestVariant::WrongCount => {
            if let Some(Value::Array(items)) = m.get_mut("output") {
                for item in items {
                    if let Some(c) = item["count"].as_u64() {
                        item["count"] = json!(c + 1);
                    }
                }
            }
        }
        ManifestVariant::NotJson => {
            m.insert(NOT_JSON.into(), json!(true));
        }
        ManifestVariant::OutputMissing => {
            m.remove("output");
        }
        ManifestVariant::Sha256Mismatch => {
            if let Some(Value::Array(items)) = m.get_mut("output")
                && let Some(first) = items.first_mut()
            {
                let key = bulkmock_wire::SHA256_EXTENSION;
                // Another digit in the right one, or the digest of nothing: never the file's.
                let wrong = match first["extension"][key].as_str() {
                    Some(given) => {
                        let flipped = if given.starts_with('0') { '1' } else { '0' };
                        format!("{flipped}{}", &given[1.min(given.len())..])
                    }
                    None => EMPTY_SHA256.to_string(),
                };
                first["extension"][key] = json!(wrong);
            }
        }
        // Needs the job (its error file): done by `apply`.
        ManifestVariant::PartialSuccess => {}
    }
}

/// `at`, moved back to the first byte of the UTF-8 character it falls in: a
/// cut there leaves whole characters (continuation bytes are `0b10xx_xxxx`).
fn char_start(bytes: &[u8], mut at: usize) -> usize {
    while at > 0 && bytes.get(at).is_some_and(|b| b & 0xc0 == 0x80) {
        at -= 1;
    }
    at
}

fn strip_types(items: &mut Value) {
    if let Value::Array(items) = items {
        for item in items {
            item.as_object_mut().map(|o| o.remove("type"));
        }
    }
}

/// Damages NDJSON; `line` is 1-based and clamped to the last line.
pub fn content(body: Vec<u8>, mutation: ContentMutation, line: u64) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    if lines.is_empty() {
        return body;
    }
    let n = (line as usize).clamp(1, lines.len()) - 1;
    let join = |lines: &[Vec<u8>], sep: &[u8], trailing: bool| {
        let mut out = lines.join(sep);
        if trailing {
            out.extend_from_slice(sep);
        }
        out
    };
    match mutation {
        ContentMutation::MalformedLine => {
            let half = char_start(&lines[n], lines[n].len() / 2);
            lines[n].truncate(half);
        }
        ContentMutation::BlankLine => lines.insert(n + 1, Vec::new()),
        ContentMutation::Crlf => return join(&lines, b"\r\n", true),
        ContentMutation::NoTrailingNewline => return join(&lines, b"\n", false),
        ContentMutation::Bom => {
            let mut out = vec![0xef, 0xbb, 0xbf];
            out.extend(join(&lines, b"\n", true));
            return out;
        }
        ContentMutation::InvalidUtf8 => {
            let at = lines[n].windows(6).position(|w| w == b"\"id\":\"").map_or(1, |p| p + 6);
            lines[n].splice(at..at, [0xff, 0xfe]);
        }
        ContentMutation::HugeLine => {
            if let Ok(mut v) = serde_json::from_slice::<Value>(&lines[n]) {
                let div = format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(2_000_000));
                v["text"] = json!({"status": "generated", "div": div});
                lines[n] = serde_json::to_vec(&v).unwrap_or_default();
            }
        }
        ContentMutation::WrongType => {
            if let Ok(mut v) = serde_json::from_slice::<Value>(&lines[n]) {
                v["resourceType"] = json!("Basic");
                lines[n] = serde_json::to_vec(&v).unwrap_or_default();
            }
        }
        ContentMutation::DuplicateLine => {
            let copy = lines[n].clone();
            lines.insert(n + 1, copy);
        }
        ContentMutation::MissingRequired => {
            if let Ok(Value::Object(mut v)) = serde_json::from_slice::<Value>(&lines[n]) {
                let ty = v.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
                for element in super::required::required_elements(&ty) {
                    v.remove(*element);
                }
                lines[n] = serde_json::to_vec(&v).unwrap_or_default();
            }
        }
        // Needs the other file: done by `apply` with `append_line`.
        ContentMutation::DuplicateAcrossFiles => {}
    }
    join(&lines, b"\n", true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NDJSON: &[u8] = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n";

    #[test]
    fn content_mutations_do_what_they_say() {
        let text = |m, line| String::from_utf8_lossy(&content(NDJSON.to_vec(), m, line)).to_string();
        assert!(text(ContentMutation::MalformedLine, 2).lines().nth(1).unwrap().len() < 20);
        assert_eq!(text(ContentMutation::BlankLine, 1).lines().nth(1), Some(""));
        assert_eq!(text(ContentMutation::Crlf, 1).matches("\r\n").count(), 2);
        assert!(!text(ContentMutation::NoTrailingNewline, 1).ends_with('\n'));
        assert!(content(NDJSON.to_vec(), ContentMutation::Bom, 1).starts_with(&[0xef, 0xbb, 0xbf]));
        assert!(std::str::from_utf8(&content(NDJSON.to_vec(), ContentMutation::InvalidUtf8, 1)).is_err());
        assert!(text(ContentMutation::HugeLine, 1).len() > 2_000_000);
        assert!(text(ContentMutation::WrongType, 2).lines().nth(1).unwrap().contains("\"Basic\""));
        let patient = br#"{"resourceType":"Patient","id":"p1","identifier":[{"value":"1"}],"name":[{"family":"A"}],"gender":"male","birthDate":"2000-01-01"}
"#;
        let stripped: Value =
            serde_json::from_slice(&content(patient.to_vec(), ContentMutation::MissingRequired, 1)).unwrap();
        assert_eq!(stripped, json!({"resourceType": "Patient", "id": "p1", "birthDate": "2000-01-01"}));
        assert_eq!(text(ContentMutation::DuplicateLine, 9).lines().count(), 3, "lines past the end clamp to the last");
    }

    #[test]
    fn a_malformed_line_is_cut_between_characters() {
        let line = format!(
            "{{\"resourceType\":\"Condition\",\"id\":\"c\",\"note\":[{{\"text\":\"{}\"}}]}}\n",
            "🩺".repeat(14)
        );
        assert!(!line.is_char_boundary(line.len() / 2), "the middle byte is inside a character");
        let cut = content(line.as_bytes().to_vec(), ContentMutation::MalformedLine, 1);
        let text = std::str::from_utf8(&cut).expect("still UTF-8: malformed JSON, not invalid_utf8");
        assert!(serde_json::from_str::<Value>(text.trim_end()).is_err());
        assert!(line.starts_with(text.trim_end()) && text.len() < line.len() / 2 + 4);
    }

    #[test]
    fn manifest_variants() {
        let base = json!({"transactionTime": "t", "request": "r", "requiresAccessToken": true,
            "output": [{"type": "Patient", "url": "u", "count": 2}], "error": [{"type": "OperationOutcome", "url": "e"}]});
        let mut v = base.clone();
        manifest(&mut v, ManifestVariant::V4Ballot);
        assert!(v.get("request").is_none() && v.get("error").is_none());
        assert!(v["outcome"][0].get("type").is_none());
        assert!(v["extension"].is_array());
        let mut v = base.clone();
        manifest(&mut v, ManifestVariant::WrongCount);
        assert_eq!(v["output"][0]["count"], 3);
        let mut v = base;
        manifest(&mut v, ManifestVariant::OutputMissing);
        assert!(v.get("output").is_none());
    }
}

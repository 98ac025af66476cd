//! Lines classified by content, never by file name: clients name their files
//! as they like, compress them, and write their own logs beside the data.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::Value;

/// What one NDJSON line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A FHIR resource: type, id and a digest of its canonical JSON.
    Resource {
        /// `resourceType`.
        resource_type: String,
        /// `id` (empty when absent).
        id: String,
        /// Digest of the content, whatever the key order and spacing.
        digest: u64,
    },
    /// A transaction Bundle of DELETE entries: the `Type/id` it deletes.
    Deleted(Vec<String>),
    /// An OperationOutcome (error files): its digest.
    Outcome(u64),
    /// A `Parameters` header line of `organizeOutputBy` output.
    BlockHeader,
    /// JSON without a `resourceType`: a client's own log line. Ignored, counted.
    NotResource,
    /// Not JSON at all. `looks_like_resource` when it mentions a resourceType
    /// (a cut or damaged resource line).
    Broken {
        /// Whether the text mentions `"resourceType"`.
        looks_like_resource: bool,
    },
}

/// Classifies one line (without its newline; CR, BOM and surrounding spaces tolerated).
pub fn classify(line: &[u8]) -> Option<Line> {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(_) => {
            let looks_like_resource = memchr_str(line, b"\"resourceType\"");
            return Some(Line::Broken { looks_like_resource });
        }
    };
    let Some(resource_type) = value.get("resourceType").and_then(Value::as_str) else {
        return Some(Line::NotResource);
    };
    Some(match resource_type {
        "Bundle" if is_delete_bundle(&value) => Line::Deleted(
            value["entry"]
                .as_array()
                .map(|entries| {
                    entries.iter().filter_map(|e| e["request"]["url"].as_str().map(str::to_string)).collect()
                })
                .unwrap_or_default(),
        ),
        "OperationOutcome" => Line::Outcome(digest(&value)),
        "Parameters" if is_block_header(&value) => Line::BlockHeader,
        _ => Line::Resource {
            resource_type: resource_type.to_string(),
            id: value.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            digest: digest(&value),
        },
    })
}

fn memchr_str(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_delete_bundle(v: &Value) -> bool {
    v["type"] == "transaction"
        && v["entry"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|x| x["request"]["method"].as_str() == Some("DELETE")))
}

fn is_block_header(v: &Value) -> bool {
    v["parameter"].as_array().is_some_and(|p| p.iter().any(|x| x["name"] == "header"))
}

/// A digest of a JSON value that ignores key order and formatting.
pub fn digest(v: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hash_value(v, &mut hasher);
    hasher.finish()
}

fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(o) => {
            let sorted: BTreeMap<&String, &Value> = o.iter().collect();
            (5u8, sorted.len()).hash(h);
            for (k, x) in sorted {
                k.hash(h);
                hash_value(x, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_not_names_and_key_order_does_not_matter() {
        let a = classify(br#"{"resourceType":"Patient","id":"p1","gender":"female"}"#).unwrap();
        let b = classify(b"\xEF\xBB\xBF{ \"gender\": \"female\", \"id\": \"p1\", \"resourceType\": \"Patient\" }\r")
            .unwrap();
        assert_eq!(a, b);
        let c = classify(br#"{"resourceType":"Patient","id":"p1","gender":"male"}"#).unwrap();
        assert_ne!(a, c);
        assert_eq!(classify(br#"{"event":"progress","done":3}"#), Some(Line::NotResource));
        assert_eq!(classify(br#"{"resourceType":"Patient","id":"p"#), Some(Line::Broken { looks_like_resource: true }));
        assert_eq!(classify(b"  "), None);
        let del = br#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Procedure/x"}}]}"#;
        assert_eq!(classify(del), Some(Line::Deleted(vec!["Procedure/x".into()])));
    }
}

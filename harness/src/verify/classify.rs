//! Lines classified by content, never by file name: clients name their files
//! as they like, compress them, and write their own logs beside the data.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::decimal::Spellings;

/// What one NDJSON line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A FHIR resource: type, id and digests of its canonical JSON.
    Resource {
        /// `resourceType`.
        resource_type: String,
        /// `id` (empty when absent).
        id: String,
        /// Digests of the content, whatever the key order, spacing and escapes.
        digest: Digest,
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
    let parsed: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(_) => {
            let looks_like_resource = memchr_str(line, b"\"resourceType\"");
            return Some(Line::Broken { looks_like_resource });
        }
    };
    let value = &parsed;
    let Some(resource_type) = value.get("resourceType").and_then(Value::as_str) else {
        return Some(Line::NotResource);
    };
    Some(match resource_type {
        "Bundle" if is_delete_bundle(value) => Line::Deleted(
            value["entry"]
                .as_array()
                .map(|entries| {
                    entries.iter().filter_map(|e| e["request"]["url"].as_str().map(str::to_string)).collect()
                })
                .unwrap_or_default(),
        ),
        "OperationOutcome" => Line::Outcome(digest(value, line).value),
        "Parameters" if is_block_header(value) => Line::BlockHeader,
        _ => Line::Resource {
            resource_type: resource_type.to_string(),
            id: value.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            digest: digest(value, line),
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

/// Two digests of one JSON value, blind to key order, spacing and string escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    /// Numbers by value: `15.0` and `15` hash alike.
    pub value: u64,
    /// `value` plus the decimals each number was spelled with: `15.0` and `15` differ.
    pub spelling: u64,
    /// Whether some number is spelled with digits after the point.
    pub fractions: bool,
}

/// The digests of `v`, parsed from `json` (which gives each number's spelling).
pub fn digest(v: &Value, json: &[u8]) -> Digest {
    let spellings = Spellings::of(v, json);
    let mut walk =
        DigestWalk { spellings, value: DefaultHasher::new(), scales: DefaultHasher::new(), fractions: false };
    walk.hash(v);
    let value = walk.value.finish();
    let mut spelling = DefaultHasher::new();
    (value, walk.scales.finish()).hash(&mut spelling);
    Digest { value, spelling: spelling.finish(), fractions: walk.fractions }
}

/// One pass over a value: its canonical form into `value`, each number's
/// scale (in the same canonical order) into `scales`.
struct DigestWalk<'a> {
    spellings: Spellings<'a>,
    value: DefaultHasher,
    scales: DefaultHasher,
    fractions: bool,
}

impl DigestWalk<'_> {
    fn hash(&mut self, v: &Value) {
        match v {
            Value::Null => 0u8.hash(&mut self.value),
            Value::Bool(b) => (1u8, b).hash(&mut self.value),
            Value::Number(n) => {
                let scale = self.spellings.with_parts(n, |p| {
                    2u8.hash(&mut self.value);
                    p.hash_value(&mut self.value);
                    p.scale
                });
                scale.hash(&mut self.scales);
                self.fractions |= scale > 0;
            }
            Value::String(s) => (3u8, s).hash(&mut self.value),
            Value::Array(a) => {
                (4u8, a.len()).hash(&mut self.value);
                a.iter().for_each(|x| self.hash(x));
            }
            Value::Object(o) => {
                let mut sorted: Vec<(&String, &Value)> = o.iter().collect();
                sorted.sort_unstable_by_key(|(k, _)| *k);
                (5u8, sorted.len()).hash(&mut self.value);
                for (k, x) in sorted {
                    k.hash(&mut self.value);
                    self.hash(x);
                }
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

    fn digest_of(line: &[u8]) -> Digest {
        match classify(line) {
            Some(Line::Resource { digest, .. }) => digest,
            other => panic!("not a resource: {other:?}"),
        }
    }

    #[test]
    fn same_json_is_the_same_digest_whatever_the_spacing_order_and_escapes() {
        let a =
            digest_of(r#"{"resourceType":"Patient","id":"p1","name":"Renée","ref":"Patient/p1","n":15.0}"#.as_bytes());
        let b = digest_of(
            br#"{ "n" : 1.50e1, "ref": "Patient\/p1", "name": "Ren\u00e9e", "id": "p\u0031", "resourceType": "Patient" }"#,
        );
        assert_eq!(a, b);
        assert!(a.fractions);
        // Characters beyond the Basic Multilingual Plane, raw or as surrogate pairs.
        let raw = digest_of(r#"{"resourceType":"Condition","id":"c","note":[{"text":"𠮷田 🩺"}]}"#.as_bytes());
        let escaped =
            digest_of(br#"{"resourceType":"Condition","id":"c","note":[{"text":"\ud842\udfb7\u7530 \ud83e\ude7a"}]}"#);
        assert_eq!(raw, escaped);
    }

    #[test]
    fn fewer_decimals_keep_the_value_but_not_the_spelling() {
        let a = digest_of(br#"{"resourceType":"Observation","id":"o","valueQuantity":{"value":15.0}}"#);
        let b = digest_of(br#"{"resourceType":"Observation","id":"o","valueQuantity":{"value":15}}"#);
        assert_eq!(a.value, b.value);
        assert_ne!(a.spelling, b.spelling);
        assert!(!b.fractions);
    }

    #[test]
    fn another_value_is_another_digest_even_past_f64() {
        let d = |n: &str| digest_of(format!(r#"{{"resourceType":"Basic","id":"b","n":{n}}}"#).as_bytes());
        assert_ne!(d("15.0").value, d("15.1").value);
        assert_ne!(d("9007199254740993").value, d("9007199254740992").value);
        assert_ne!(d("0.30000000000000000001").value, d("0.3").value);
        assert_eq!(d("100").value, d("1e2").value);
    }
}

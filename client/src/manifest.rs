//! Reading manifests leniently (CLI-071): the v4 ballot's `outcome` for `error`,
//! a missing `request`, `extension` as an array, unknown fields.

use bulkmock_wire::Manifest;
use serde_json::Value;

/// Parses a manifest body, tolerating the variants servers send.
pub(crate) fn parse(body: &[u8]) -> Result<Manifest, String> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let object = doc.as_object_mut().ok_or("the manifest is not a JSON object")?;
    if !object.contains_key("error")
        && let Some(outcome) = object.remove("outcome")
    {
        object.insert("error".into(), outcome);
    }
    object.entry("request").or_insert_with(|| Value::String(String::new()));
    // Required by the guide; when absent, sending the token is the safe reading.
    object.entry("requiresAccessToken").or_insert(Value::Bool(true));
    object.entry("transactionTime").or_insert_with(|| Value::String(String::new()));
    if object.get("extension").is_some_and(|e| !e.is_object()) {
        object.remove("extension");
    }
    if !object.contains_key("output") {
        return Err("the manifest has no `output` array".into());
    }
    serde_json::from_value(doc).map_err(|e| format!("the manifest does not have the expected shape: {e}"))
}

/// The URL of the next manifest page, if any (CLI-068).
pub(crate) fn next_link(manifest: &Manifest) -> Option<&str> {
    manifest.link.iter().find(|l| l.relation == "next").map(|l| l.url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_v4_ballot_shape_and_unknown_fields() {
        let body = br#"{"transactionTime":"2026-01-01T00:00:00Z","requiresAccessToken":true,
            "output":[{"type":"Patient","url":"http://x/1"}],"outcome":[{"url":"http://x/e"}],
            "extension":[{"url":"u"}],"manifestType":"full","fileSize":3}"#;
        let m = parse(body).unwrap();
        assert_eq!(m.error.len(), 1);
        assert_eq!(m.request, "");
        assert!(m.extension.is_none());
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(parse(b"<html>").unwrap_err().contains("not JSON"));
        assert!(parse(b"[]").unwrap_err().contains("not a JSON object"));
        assert!(parse(br#"{"transactionTime":"t"}"#).unwrap_err().contains("no `output`"));
    }
}

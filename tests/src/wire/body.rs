//! Bodies: content codings (RFC 9110 §8.4, gzip per RFC 1952) and NDJSON
//! (ndjson-spec 1.0: one JSON text per line, each followed by `\n`; FHIR Bulk
//! Data: each line one resource).

use std::io::Read;

/// The body with its `Content-Encoding` removed, or why it does not decode.
pub fn decoded(body: &[u8], encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("identity") | Some("") => Ok(body.to_vec()),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("the gzip body ({} bytes) does not decode: {e}", body.len()))?;
            Ok(out)
        }
        Some(other) => Err(format!("Content-Encoding {other} is not one this observer reads")),
    }
}

/// The `resourceType` of each line of an NDJSON body, or the first thing wrong with it.
pub fn ndjson_types(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 at byte {}", e.valid_up_to()))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err("the last line is not followed by a newline".into());
    };
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            let n = i + 1;
            if line.trim().is_empty() {
                return Err(format!("line {n} is blank"));
            }
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("line {n} is not JSON: {e}"))?;
            let kind = value.get("resourceType").and_then(|t| t.as_str());
            kind.map(str::to_string).ok_or_else(|| format!("line {n} is not a resource (no resourceType)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines() {
        assert_eq!(ndjson_types(b"{\"resourceType\":\"A\"}\r\n{\"resourceType\":\"B\"}\n").unwrap(), ["A", "B"]);
        assert!(ndjson_types(b"{\"resourceType\":\"A\"}").unwrap_err().contains("newline"));
        assert!(ndjson_types(b"{\"resourceType\":\"A\"}\n\n").unwrap_err().contains("line 2 is blank"));
        assert!(ndjson_types(b"{\"resourceType\":\n").unwrap_err().contains("line 1 is not JSON"));
        assert!(ndjson_types(b"\xff\n").unwrap_err().contains("UTF-8"));
        assert_eq!(ndjson_types(b"").unwrap(), Vec::<String>::new());
    }
}

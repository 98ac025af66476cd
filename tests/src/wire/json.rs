//! JSON and HTTP value rules, from the specifications: FHIR JSON has no
//! `null` (FHIR R4 json.html), FHIR `instant`, absolute URLs, `Retry-After`.

use serde_json::Value;

/// The path of the first `null` in `value` (`$.output[0].count`), if any.
pub fn first_null(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Null => Some(path.to_string()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| first_null(v, &format!("{path}[{i}]"))),
        Value::Object(members) => members.iter().find_map(|(k, v)| first_null(v, &format!("{path}.{k}"))),
        _ => None,
    }
}

/// An absolute http(s) URL with a host.
pub fn is_absolute_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// A FHIR `instant`: `YYYY-MM-DDThh:mm:ss[.fff]` then `Z` or `+hh:mm`/`-hh:mm`.
pub fn is_instant(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// `Retry-After` per RFC 9110 §10.2.3: delay-seconds or an HTTP-date.
pub fn is_retry_after(s: &str) -> bool {
    let s = s.trim();
    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())) || httpdate::parse_http_date(s).is_ok()
}

/// The media type's essence, lower-case (`application/json; charset=utf-8` -> `application/json`).
pub fn essence(content_type: Option<&str>) -> String {
    content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert!(is_instant("2026-12-07T01:02:03Z"));
        assert!(is_instant("2026-12-07T01:02:03.123+01:00"));
        assert!(!is_instant("2026-12-07"));
        assert!(!is_instant("2026-12-07T01:02:03"));
        assert!(!is_instant("2026-12-07T01:02:03.Z"));
    }

    #[test]
    fn nulls_and_urls() {
        let v = serde_json::json!({"output": [{"url": "x", "count": null}]});
        assert_eq!(first_null(&v, "$").as_deref(), Some("$.output[0].count"));
        assert!(is_absolute_url("http://127.0.0.1:1/fhir"));
        assert!(!is_absolute_url("/fhir/x"));
        assert!(!is_absolute_url("http:///x"));
        assert!(is_retry_after("120") && is_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") && !is_retry_after("soon"));
    }
}

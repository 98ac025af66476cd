//! What the page sees of an exchange: the facts of the timeline, computed
//! once per event in the subscriber's own task. Nothing secret is in an
//! [`Exchange`] to begin with (tokens are fingerprints, the assertion is its
//! decoded header and claims); this view keeps only what the page shows.

use serde_json::{Value, json};

use crate::transcript::Exchange;

/// The job an exchange belongs to: from a status or file path, or from the
/// `Content-Location` a kick-off answered.
pub fn job_of(e: &Exchange) -> Option<String> {
    let from_path = |path: &str| {
        let mut parts = path.split('/');
        parts.find(|p| *p == "bulkstatus" || *p == "bulkfiles")?;
        parts.next().filter(|id| !id.is_empty()).map(str::to_string)
    };
    from_path(&e.path).or_else(|| e.response.get("content-location").and_then(|url| from_path(url)))
}

/// The exchange as the page's timeline shows it.
pub fn exchange(e: &Exchange) -> Value {
    let header = |name: &str| e.response.get(name).cloned();
    let token = e.headers.get("authorization").cloned();
    let assertion = e.assertion.as_ref().map(|a| json!({"header": a["header"], "claims": a["claims"]}));
    let issued = e.issued.as_ref().map(|i| json!({"token": i["fingerprint"], "expires_in": i["expires_in"]}));
    json!({
        "seq": e.seq,
        "at_ms": e.at_ms,
        "unix_ms": e.unix_ms,
        "duration_ms": e.duration_ms,
        "client": e.client_id,
        "target": e.target,
        "job": job_of(e),
        "method": e.method,
        "path": e.path,
        "query": e.query,
        "status": e.status,
        "fault": e.fault,
        "fault_not_applied": e.fault_not_applied,
        "bytes": e.bytes,
        "total": header("content-length").and_then(|v| v.parse::<u64>().ok()),
        "retry_after": header("retry-after"),
        "progress": header("x-progress"),
        "encoding": header("content-encoding"),
        "accept_encoding": e.headers.get("accept-encoding"),
        "range": e.headers.get("range"),
        "token": token,
        "assertion": assertion,
        "issued": issued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange_at(path: &str) -> Exchange {
        serde_json::from_value(json!({
            "seq": 3, "at_ms": 10, "method": "GET", "path": path, "headers": {}, "status": 200,
            "bytes": 5, "duration_ms": 1
        }))
        .unwrap()
    }

    #[test]
    fn jobs_come_from_paths_and_kickoff_answers() {
        assert_eq!(job_of(&exchange_at("/fhir/bulkstatus/abc")).as_deref(), Some("abc"));
        assert_eq!(job_of(&exchange_at("/fhir/bulkstatus/abc/page/2")).as_deref(), Some("abc"));
        assert_eq!(job_of(&exchange_at("/fhir/bulkfiles/abc/1.Patient.ndjson")).as_deref(), Some("abc"));
        let mut kickoff = exchange_at("/fhir/$export");
        assert_eq!(job_of(&kickoff), None);
        kickoff.response.insert("content-location".into(), "http://h:1/fhir/bulkstatus/xyz".into());
        assert_eq!(job_of(&kickoff).as_deref(), Some("xyz"));
    }

    #[test]
    fn the_view_never_carries_a_signature_or_the_assertion_fingerprint() {
        let mut e = exchange_at("/auth/token");
        e.assertion = Some(json!({"header": {"alg": "RS384"}, "claims": {"iss": "c"}, "fingerprint": "f00d"}));
        e.response.insert("content-length".into(), "120".into());
        let v = exchange(&e);
        assert_eq!(v["assertion"], json!({"header": {"alg": "RS384"}, "claims": {"iss": "c"}}));
        assert_eq!(v["total"], 120);
        assert!(!v.to_string().contains("f00d"));
    }
}

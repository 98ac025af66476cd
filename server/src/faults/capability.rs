//! Capability URLs: URLs that work without a bearer token for a limited time,
//! as presigned storage URLs do. The `capability_urls` fault puts them in the
//! manifest (SRV-183); the `redirect` fault sends clients to them on another
//! host, where a correct client sends no token (CLI-031).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bulkmock_wire::IssueType;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::error::FhirError;

/// Who handed a capability out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    /// A `capability_urls` manifest.
    Manifest,
    /// A `redirect` fault's `Location`.
    Redirect,
}

/// One capability: what it opens, until when, who issued it.
struct Grant {
    scope: String,
    expires: Instant,
    issuer: Issuer,
}

/// Issued capabilities, by token.
pub struct Capabilities {
    issued: Mutex<HashMap<String, Grant>>,
    rng: Mutex<rand::rngs::ChaCha8Rng>,
}

impl Capabilities {
    /// An empty set whose tokens derive from the server `seed`.
    pub fn new(seed: u64) -> Self {
        let rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed ^ 0x0063_6170);
        Capabilities { issued: Mutex::new(HashMap::new()), rng: Mutex::new(rng) }
    }
}

/// Why a capability does not open a URL.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not one this server issued, or for something else.
    Unknown,
    /// Past its lifetime.
    Expired,
}

impl Capabilities {
    /// A new capability for `scope` (a job id: its status and files; or
    /// `attachments/{id}`), valid for `ttl`.
    pub fn issue(&self, scope: &str, ttl: Duration, issuer: Issuer) -> String {
        let mut bytes = [0u8; 16];
        self.rng.lock().expect("capability rng").fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let grant = Grant { scope: scope.to_string(), expires: Instant::now() + ttl, issuer };
        self.issued.lock().expect("capabilities").insert(token.clone(), grant);
        token
    }

    /// Checks a capability for `scope`.
    pub fn check(&self, token: &str, scope: &str) -> Result<(), Refusal> {
        match self.issued.lock().expect("capabilities").get(token) {
            Some(g) if g.scope != scope => Err(Refusal::Unknown),
            Some(g) if g.expires <= Instant::now() => Err(Refusal::Expired),
            Some(_) => Ok(()),
            None => Err(Refusal::Unknown),
        }
    }

    /// Who issued `token`, if this server did.
    pub fn issuer(&self, token: &str) -> Option<Issuer> {
        self.issued.lock().expect("capabilities").get(token).map(|g| g.issuer)
    }

    /// Whether the `cap` of a query opens `scope`: `Ok(false)` without one, a
    /// 403 for an expired or unknown one.
    pub fn open(&self, query: Option<&str>, scope: &str) -> Result<bool, FhirError> {
        let Some(cap) = cap_param(query) else { return Ok(false) };
        match self.check(&cap, scope) {
            Ok(()) => Ok(true),
            Err(Refusal::Expired) => Err(FhirError::new(
                StatusCode::FORBIDDEN,
                IssueType::Expired,
                "this capability URL has expired; fetch the manifest (or the original URL) again (SRV-183)",
            )),
            Err(Refusal::Unknown) => {
                Err(FhirError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, "not a valid capability URL"))
            }
        }
    }
}

/// The `cap` parameter of a query string.
pub fn cap_param(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).find(|(k, _)| k == "cap").map(|(_, v)| v.into_owned())
}

/// Turns a manifest into a `capability_urls` one (SRV-183): `requiresAccessToken`
/// false and every file URL of `output`, `deleted` and `error` carrying a
/// capability from `issue(job id)`. Lists the manifest lacks stay absent: a
/// member is never added as `null` (SRV-160, E-04).
pub fn with_capabilities(manifest: &mut Value, mut issue: impl FnMut(&str) -> String) {
    let Some(members) = manifest.as_object_mut() else { return };
    members.insert("requiresAccessToken".into(), json!(false));
    for list in ["output", "deleted", "error"] {
        let Some(items) = members.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for item in items {
            let Some(url) = item.get("url").and_then(Value::as_str) else { continue };
            let job = url.split('/').rev().nth(1).unwrap_or_default();
            let sep = if url.contains('?') { '&' } else { '?' };
            let capped = format!("{url}{sep}cap={}", issue(job));
            item["url"] = json!(capped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_manifests_never_gain_null_members() {
        let mut m = json!({"output": [{"type": "Patient", "url": "http://h/fhir/bulkfiles/j1/0.Patient.ndjson"}]});
        with_capabilities(&mut m, |job| format!("cap-{job}"));
        assert_eq!(
            m,
            json!({
                "requiresAccessToken": false,
                "output": [{"type": "Patient", "url": "http://h/fhir/bulkfiles/j1/0.Patient.ndjson?cap=cap-j1"}],
            }),
            "no `deleted` or `error` member added"
        );
    }
}

//! Absolute URLs between the upstream and the proxy: the proxy serves the
//! upstream's paths on its own origin, so a URL maps by swapping the origin.
//! Headers (`Location`, `Content-Location`) and JSON documents (manifests,
//! OperationOutcomes) are rewritten; discovery's and the CapabilityStatement's
//! authorization endpoints are not (an assertion's `aud` names the upstream's).

use serde_json::Value;

/// The two origins (`scheme://host:port`, no trailing slash).
#[derive(Debug, Clone)]
pub struct UrlMap {
    /// The upstream's origin.
    pub upstream: String,
    /// The proxy's origin.
    pub proxy: String,
}

impl UrlMap {
    /// Every upstream URL in `text` on the proxy.
    pub fn to_proxy(&self, text: &str) -> String {
        swap_origin(text, &self.upstream, &self.proxy)
    }

    /// Every proxy URL in `text` on the upstream.
    pub fn to_upstream(&self, text: &str) -> String {
        swap_origin(text, &self.proxy, &self.upstream)
    }

    /// A JSON document with its upstream URLs on the proxy. With `keep_endpoints`
    /// (discovery, CapabilityStatement) members named `*_endpoint` or `jwks_uri`
    /// and the `oauth-uris` extension stay as they are. `None` when the bytes are
    /// not a JSON document (sent as they came).
    pub fn document(&self, bytes: &[u8], keep_endpoints: bool) -> Option<Vec<u8>> {
        if !keep_endpoints {
            // Text, not a parse and a print: the document keeps its bytes but for the URLs.
            return std::str::from_utf8(bytes).ok().map(|t| self.to_proxy(t).into_bytes());
        }
        let mut value: Value = serde_json::from_slice(bytes).ok()?;
        self.walk(&mut value, false);
        serde_json::to_vec(&value).ok()
    }

    fn walk(&self, value: &mut Value, keep: bool) {
        match value {
            Value::String(s) if !keep => *s = self.to_proxy(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, keep)),
            Value::Object(members) => {
                let oauth = members.get("url").and_then(Value::as_str).is_some_and(|u| u.ends_with("/oauth-uris"));
                for (key, v) in members.iter_mut() {
                    let kept = keep || oauth || key.ends_with("_endpoint") || key == "jwks_uri";
                    self.walk(v, kept);
                }
            }
            _ => {}
        }
    }
}

/// `text` with every occurrence of origin `from` (followed by `/`, `?`, `#`, a
/// quote or the end, so `:80` never matches `:8080`) replaced by `to`.
fn swap_origin(text: &str, from: &str, to: &str) -> String {
    if from.is_empty() || !text.contains(from) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        let bounded = after.is_empty() || after.starts_with(['/', '?', '#', '"', '\'', ' ', ',', '<', '>', '\\']);
        out.push_str(&rest[..at]);
        out.push_str(if bounded { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The origin (`scheme://authority`) of an absolute URL, or `None`.
pub fn origin_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    Some(&url[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> UrlMap {
        UrlMap { upstream: "http://ehr:80".into(), proxy: "http://127.0.0.1:9".into() }
    }

    #[test]
    fn origins_swap_only_on_a_boundary() {
        let m = map();
        assert_eq!(m.to_proxy("http://ehr:80/fhir/x?y"), "http://127.0.0.1:9/fhir/x?y");
        assert_eq!(m.to_proxy("http://ehr:8080/fhir"), "http://ehr:8080/fhir");
        assert_eq!(m.to_proxy("http://ehr:80"), "http://127.0.0.1:9");
        assert_eq!(m.to_upstream("http://127.0.0.1:9/fhir/a"), "http://ehr:80/fhir/a");
    }

    #[test]
    fn documents_other_than_metadata_are_rewritten_as_text() {
        // docs/proxy.md: an OperationOutcome's diagnostics are rewritten too (the text, not fields).
        let outcome = br#"{"issue":[{"diagnostics":"job http://ehr:80/fhir/s/1 failed; see http://other:80/x"}]}"#;
        let out = String::from_utf8(map().document(outcome, false).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"issue":[{"diagnostics":"job http://127.0.0.1:9/fhir/s/1 failed; see http://other:80/x"}]}"#
        );
    }

    #[test]
    fn documents_keep_their_authorization_endpoints() {
        let m = map();
        let discovery = br#"{"token_endpoint":"http://ehr:80/auth/token","issuer":"http://ehr:80/fhir"}"#;
        let out: Value = serde_json::from_slice(&m.document(discovery, true).unwrap()).unwrap();
        assert_eq!(out["token_endpoint"], "http://ehr:80/auth/token");
        assert_eq!(out["issuer"], "http://127.0.0.1:9/fhir");
        let manifest = br#"{"request":"http://ehr:80/fhir/$export","output":[{"url":"http://ehr:80/f/1.ndjson"}]}"#;
        let out = String::from_utf8(m.document(manifest, false).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"request":"http://127.0.0.1:9/fhir/$export","output":[{"url":"http://127.0.0.1:9/f/1.ndjson"}]}"#
        );
    }
}

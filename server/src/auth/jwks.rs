//! Fetching and caching clients' JWKS URLs (AUTH-037..039), bounded in time
//! (the fetch timeout) and in size ([`MAX_JWKS_BYTES`], read chunk by chunk).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

/// The largest JWKS document fetched from a client's JWKS URL, in bytes: a
/// JWK Set of a few keys is a few KiB, so a larger answer is refused unread.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// How long a JWKS is kept when its response says nothing about caching.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

struct Cached {
    keys: JwkSet,
    expires: Instant,
}

/// A cache of fetched JWKS documents.
pub struct JwksCache {
    http: reqwest::Client,
    timeout: Duration,
    entries: Mutex<HashMap<String, Cached>>,
}

impl JwksCache {
    /// A cache whose fetches give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self::with_roots(timeout, &[])
    }

    /// A cache that also trusts the CA certificates `roots` (PEM) for https
    /// JWKS URLs. A certificate that does not parse is left out (configs check
    /// them at the edge with [`check_roots`]).
    pub fn with_roots(timeout: Duration, roots: &[String]) -> Self {
        let certs: Vec<reqwest::Certificate> = roots
            .iter()
            .flat_map(|pem| reqwest::Certificate::from_pem_bundle(pem.as_bytes()).unwrap_or_default())
            .collect();
        let http = crate::http_client::with_roots(|| reqwest::Client::builder().timeout(timeout), certs)
            .expect("HTTP client with the configured CA certificates");
        JwksCache { http, timeout, entries: Mutex::new(HashMap::new()) }
    }

    /// The JWKS at `url`: from the cache unless `refresh`, or fetched.
    /// The second value tells whether it was fetched just now.
    pub async fn get(
        &self,
        url: &str,
        refresh: bool,
        fault: &(dyn Fn() -> Option<crate::faults::Fault> + Send + Sync),
    ) -> Result<(JwkSet, bool), String> {
        if !refresh
            && let Some(c) = self.entries.lock().expect("jwks cache").get(url)
            && c.expires > Instant::now()
        {
            return Ok((c.keys.clone(), false));
        }
        // Faults on the server's own fetch (target `jwks`).
        let fault = fault();
        let rotated = matches!(fault, Some(crate::faults::Fault::Rotated));
        match fault {
            Some(crate::faults::Fault::Unreachable) => {
                return Err(format!("fetching the client's JWKS from {url} failed: connection refused"));
            }
            Some(crate::faults::Fault::Respond { status, .. }) => {
                return Err(format!("the client's JWKS URL {url} answered HTTP {status}"));
            }
            Some(crate::faults::Fault::Delay { delay_ms }) => {
                let delay = Duration::from_millis(delay_ms);
                if delay >= self.timeout {
                    return Err(format!(
                        "fetching the client's JWKS from {url} timed out after {} s",
                        self.timeout.as_secs_f64()
                    ));
                }
                tokio::time::sleep(delay).await;
            }
            _ => {}
        }
        let response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("fetching the client's JWKS from {url} failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the client's JWKS URL {url} answered HTTP {}", response.status().as_u16()));
        }
        let max_age = cache_lifetime(response.headers().get("cache-control").and_then(|v| v.to_str().ok()));
        let body = read_bounded(response, url).await?;
        let mut keys: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("the document at the client's JWKS URL {url} is not a JWK Set: {e}"))?;
        if rotated {
            for key in &mut keys.keys {
                key.common.key_id = key.common.key_id.as_ref().map(|kid| format!("{kid}-rotated"));
            }
        }
        let mut entries = self.entries.lock().expect("jwks cache");
        match max_age {
            Some(age) if !age.is_zero() => {
                entries.insert(url.to_string(), Cached { keys: keys.clone(), expires: Instant::now() + age });
            }
            _ => {
                entries.remove(url);
            }
        }
        Ok((keys, true))
    }
}

/// The body of a JWKS response, refused as soon as it is known to exceed
/// [`MAX_JWKS_BYTES`] (by `Content-Length` or while reading).
async fn read_bounded(mut response: reqwest::Response, url: &str) -> Result<Vec<u8>, String> {
    let too_large = || {
        format!(
            "the document at the client's JWKS URL {url} is larger than {MAX_JWKS_BYTES} bytes ({} KiB), \
             the limit of a JWKS fetch",
            MAX_JWKS_BYTES / 1024
        )
    };
    if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| format!("reading the client's JWKS from {url} failed: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks that each of `roots` holds at least one PEM certificate; the error names `name`.
pub fn check_roots(roots: &[String], name: &str) -> Result<(), String> {
    for pem in roots {
        crate::tls::parse_certs(pem.as_bytes(), name).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// How long a response may be cached (AUTH-039): `no-store`/`no-cache` → not
/// at all, `max-age=N` → N seconds, otherwise the default.
fn cache_lifetime(cache_control: Option<&str>) -> Option<Duration> {
    let Some(value) = cache_control else { return Some(DEFAULT_MAX_AGE) };
    let mut max_age = Some(DEFAULT_MAX_AGE);
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return None;
        }
        if let Some(n) = directive.strip_prefix("max-age=") {
            max_age = n.trim().parse().ok().map(Duration::from_secs);
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_limits_caching() {
        assert_eq!(cache_lifetime(None), Some(DEFAULT_MAX_AGE));
        assert_eq!(cache_lifetime(Some("public, max-age=60")), Some(Duration::from_secs(60)));
        assert_eq!(cache_lifetime(Some("no-store")), None);
        assert_eq!(cache_lifetime(Some("max-age=0")), Some(Duration::ZERO));
    }
}

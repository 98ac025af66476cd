//! SMART Backend Services for the client: discovery, signed assertions, a
//! token cache that renews ahead of expiry (CLI-010..028).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Mutex;

use crate::error::ClientError;
use crate::events::{Event, Observer};

/// A client's identity: id, private key, key id, the scopes it asks for.
/// `Debug` never shows the key.
#[derive(Clone)]
pub struct Credentials {
    /// The registered client id (`iss` and `sub`).
    pub client_id: String,
    key: EncodingKey,
    alg: Algorithm,
    /// The key id (`kid` header).
    pub kid: String,
    /// The scopes requested, space-separated.
    pub scope: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials from a PKCS#8 PEM private key (RSA signs RS384, EC P-384 signs ES384).
    pub fn from_pem(client_id: &str, pem: &[u8], kid: &str, scope: &str) -> Result<Credentials, ClientError> {
        let (key, alg) = match EncodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, Algorithm::RS384),
            Err(_) => (
                EncodingKey::from_ec_pem(pem).map_err(|e| ClientError::Key(format!("neither RSA nor EC PEM: {e}")))?,
                Algorithm::ES384,
            ),
        };
        Ok(Credentials { client_id: client_id.into(), key, alg, kid: kid.into(), scope: scope.into() })
    }

    /// The RFC 7638 thumbprint of a PKCS#8 PEM key's public half: the default
    /// `kid` when none is given (what `bulkmock keys` and the demo client use).
    pub fn pem_thumbprint(pem: &[u8]) -> Result<String, ClientError> {
        let probe = Credentials::from_pem("", pem, "", "")?;
        crate::jwk::thumbprint(&probe.key, probe.alg).map_err(ClientError::Key)
    }

    /// Credentials from a private JWK (RSA signs RS384, EC P-384 signs ES384); the
    /// key id is the JWK's `kid`.
    pub fn from_jwk(client_id: &str, jwk: &Value, scope: &str) -> Result<Credentials, ClientError> {
        let (key, alg) = crate::jwk::signing_key(jwk).map_err(ClientError::Key)?;
        let kid = jwk["kid"].as_str().ok_or_else(|| ClientError::Key("the JWK has no `kid`".into()))?;
        let credentials = Credentials { client_id: client_id.into(), key, alg, kid: kid.into(), scope: scope.into() };
        credentials.assertion("https://check.invalid/token")?; // a key that cannot sign fails here, not mid-export
        Ok(credentials)
    }

    /// The signing algorithm (RS384 or ES384).
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// A fresh signed assertion for `token_url` (new `jti`, `exp` four minutes ahead).
    pub fn assertion(&self, token_url: &str) -> Result<String, ClientError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // Unique per assertion: time, a process-wide counter and the process id (CLI-022).
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let jti = format!("{nanos:x}-{n:x}-{:x}", std::process::id());
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        let claims = json!({"iss": self.client_id, "sub": self.client_id, "aud": token_url,
            "exp": now + 240, "iat": now, "jti": jti});
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| ClientError::Key(e.to_string()))
    }
}

/// Finds the token endpoint: `.well-known/smart-configuration`, then the
/// CapabilityStatement's `oauth-uris`; relative URLs resolve against the base (CLI-011).
pub async fn discover_token_url(http: &reqwest::Client, fhir_base: &url::Url) -> Result<String, ClientError> {
    let join = |path: &str| fhir_base.join(path).map(|u| u.to_string()).unwrap_or_default();
    let well_known = join(".well-known/smart-configuration");
    let transport = |url: &str| {
        let url = url.to_string();
        move |source| ClientError::transport(&url, source)
    };
    let r = http.get(&well_known).header("Accept", "application/json").send().await.map_err(transport(&well_known))?;
    if r.status().is_success()
        && let Ok(doc) = r.json::<Value>().await
        && let Some(endpoint) = doc["token_endpoint"].as_str()
    {
        return Ok(fhir_base.join(endpoint).map(|u| u.to_string()).unwrap_or_else(|_| endpoint.to_string()));
    }
    let metadata = join("metadata");
    let r = http.get(&metadata).header("Accept", "application/fhir+json").send().await.map_err(transport(&metadata))?;
    let cs: Value = r.json().await.map_err(transport(&metadata))?;
    cs["rest"][0]["security"]["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["extension"].as_array().cloned().unwrap_or_default())
        .find(|e| e["url"] == "token")
        .and_then(|e| e["valueUri"].as_str().map(str::to_string))
        .ok_or_else(|| ClientError::Protocol("the server announces no token endpoint".into()))
}

struct Cached {
    token: String,
    renew_at: Instant,
}

/// Access tokens: reused while valid, renewed ahead of expiry or after a 401.
pub(crate) struct Tokens {
    credentials: Credentials,
    token_url: String,
    cached: Mutex<Option<Cached>>,
    observer: Observer,
    /// Token requests made.
    pub requests: AtomicU32,
}

impl Tokens {
    /// A token source for `credentials` at `token_url`.
    pub fn new(credentials: Credentials, token_url: String, observer: Observer) -> Self {
        Tokens { credentials, token_url, cached: Mutex::new(None), observer, requests: AtomicU32::new(0) }
    }

    /// A valid token. `rejected` is a token the server just refused (401): unless
    /// another request already replaced it, a new one is fetched (CLI-027).
    pub async fn get(&self, http: &reqwest::Client, rejected: Option<&str>) -> Result<String, ClientError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
            && rejected != Some(c.token.as_str())
        {
            return Ok(c.token.clone());
        }
        let renewal = cached.is_some();
        let (token, lifetime, granted) = self.request_with_retries(http).await?;
        // Renew 30 s before expiry, or half-way through a token shorter than a minute.
        let lifetime = Duration::from_secs(lifetime);
        let renew_at = Instant::now() + lifetime - Duration::from_secs(30).min(lifetime / 2);
        *cached = Some(Cached { token: token.clone(), renew_at });
        if let Some(granted) = &granted
            && narrower(&self.credentials.scope, granted)
        {
            (self.observer)(&Event::ScopeNarrowed {
                requested: self.credentials.scope.clone(),
                granted: granted.clone(),
            });
        }
        (self.observer)(&Event::Token { renewal, granted_scope: granted });
        Ok(token)
    }

    /// Token requests until one succeeds or a refusal is final (CLI-028): 429,
    /// 5xx, `temporarily_unavailable` and connection failures are retried after
    /// Retry-After or a backoff; `invalid_client` once, with a fresh assertion
    /// (a server may report a replayed jti, or have failed to fetch the JWKS).
    async fn request_with_retries(&self, http: &reqwest::Client) -> Result<(String, u64, Option<String>), ClientError> {
        let mut attempt = 0u32;
        loop {
            let (error, retry_after) = match self.request(http).await {
                Ok(granted) => return Ok(granted),
                Err(failed) => failed,
            };
            attempt += 1;
            let retry = match &error {
                ClientError::OAuth { status, error, .. } => {
                    *status == 429
                        || *status >= 500
                        || error == "temporarily_unavailable"
                        || (error == "invalid_client" && attempt == 1)
                }
                ClientError::Transport { .. } => true,
                _ => false,
            };
            if !retry || attempt >= TOKEN_ATTEMPTS {
                return Err(error);
            }
            let backoff = Duration::from_millis(250 << attempt.min(6));
            let wait = retry_after.unwrap_or(backoff).clamp(Duration::from_millis(200), Duration::from_secs(60));
            (self.observer)(&Event::Retry {
                url: self.token_url.clone(),
                attempt,
                wait_ms: wait.as_millis() as u64,
                reason: error.to_string(),
            });
            tokio::time::sleep(wait).await;
        }
    }

    /// One token request: (token, lifetime in seconds, granted scope), or the
    /// error with the response's Retry-After.
    async fn request(
        &self,
        http: &reqwest::Client,
    ) -> Result<(String, u64, Option<String>), (ClientError, Option<Duration>)> {
        let mut retry_after = None;
        let result = self.request_once(http, &mut retry_after).await;
        result.map_err(|e| (e, retry_after))
    }

    async fn request_once(
        &self,
        http: &reqwest::Client,
        retry_after: &mut Option<Duration>,
    ) -> Result<(String, u64, Option<String>), ClientError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let assertion = self.credentials.assertion(&self.token_url)?;
        let url = self.token_url.clone();
        let r = http
            .post(&url)
            .header("Accept", "application/json")
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.as_str()),
                ("scope", self.credentials.scope.as_str()),
            ])
            .send()
            .await
            .map_err(|source| ClientError::transport(&url, source))?;
        let status = r.status().as_u16();
        *retry_after = crate::policy::retry_after(r.headers());
        let body = r.bytes().await.map_err(|source| ClientError::Transport { url: url.clone(), source })?.to_vec();
        let doc: Value = serde_json::from_slice(&body).map_err(|_| ClientError::Unparseable {
            status,
            url: url.clone(),
            body: body.clone(),
        })?;
        if status != 200 {
            return Err(ClientError::OAuth {
                status,
                error: doc["error"].as_str().unwrap_or("unknown").into(),
                description: doc["error_description"].as_str().unwrap_or("").into(),
            });
        }
        let token = doc["access_token"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("token response without access_token".into()))?;
        // CLI-029: `bearer` and `Bearer` alike.
        if !doc["token_type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
            return Err(ClientError::Protocol(format!("token_type {} is not bearer", doc["token_type"])));
        }
        // expires_in may be a number, a string, or missing (then assume the usual 300 s).
        let lifetime = doc["expires_in"]
            .as_u64()
            .or_else(|| doc["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(300);
        let granted = doc["scope"].as_str().map(str::to_string);
        if let Some(granted) = &granted
            && !granted.split_whitespace().any(|s| s.starts_with("system/"))
        {
            return Err(ClientError::ScopeNotGranted {
                requested: self.credentials.scope.clone(),
                granted: granted.clone(),
            });
        }
        Ok((token.to_string(), lifetime, granted))
    }
}

/// Token requests at most per token (CLI-028: retry what may pass, never loop).
const TOKEN_ATTEMPTS: u32 = 4;

/// Whether `granted` lacks a scope of `requested`. v1 permissions compare
/// ignoring case: servers that write them capitalised (`system/Patient.Read`,
/// quirk `capitalised-scopes`) grant the same as `system/Patient.read`.
fn narrower(requested: &str, granted: &str) -> bool {
    let granted: Vec<String> = granted.split_whitespace().map(normal_scope).collect();
    requested.split_whitespace().map(normal_scope).any(|s| !granted.contains(&s))
}

/// A scope with its v1 permission (`read`, `write`) in lower case.
fn normal_scope(scope: &str) -> String {
    match scope.rsplit_once('.') {
        Some((head, perm)) if perm.eq_ignore_ascii_case("read") || perm.eq_ignore_ascii_case("write") => {
            format!("{head}.{}", perm.to_ascii_lowercase())
        }
        _ => scope.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::narrower;

    #[test]
    fn capitalised_v1_grants_are_not_narrower() {
        assert!(!narrower("system/Patient.read system/Observation.rs", "system/Patient.Read system/Observation.rs"));
        assert!(!narrower("system/*.read", "system/*.Read"));
        assert!(narrower("system/Patient.read system/Group.read", "system/Patient.Read"));
        assert!(narrower("system/Observation.rs", "system/Observation.RS"), "v2 letters stay case-sensitive");
    }
}

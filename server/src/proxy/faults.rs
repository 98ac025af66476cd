//! What faults leave behind on a proxy, where the upstream knows nothing of
//! them: revoked tokens (401 until the client presents a new one), vanished
//! jobs (404 from then on), and the credentials a redirect capability carries
//! to the upstream. Tokens are kept as SHA-256 digests, never as text.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use axum::http::HeaderValue;

/// The proxy's fault state.
#[derive(Debug, Default)]
pub struct ProxyFaults {
    revoked: Mutex<HashSet<Vec<u8>>>,
    vanished: Mutex<HashSet<String>>,
    credentials: Mutex<HashMap<String, HeaderValue>>,
}

fn digest(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

impl ProxyFaults {
    /// Revokes a bearer token: the proxy answers 401 to it from now on.
    pub fn revoke(&self, token: &str) {
        self.revoked.lock().expect("revoked").insert(digest(token));
    }

    /// Whether a bearer token was revoked.
    pub fn is_revoked(&self, token: &str) -> bool {
        self.revoked.lock().expect("revoked").contains(&digest(token))
    }

    /// Forgets a job (its status URL path): 404 from now on.
    pub fn vanish(&self, job: String) {
        self.vanished.lock().expect("vanished").insert(job);
    }

    /// Whether a job (its status URL path) vanished.
    pub fn vanished(&self, job: &str) -> bool {
        self.vanished.lock().expect("vanished").contains(job)
    }

    /// Keeps the `Authorization` of the request a redirect capability was issued for.
    pub fn remember_credentials(&self, cap: &str, authorization: Option<&HeaderValue>) {
        if let Some(value) = authorization {
            let mut value = value.clone();
            value.set_sensitive(true);
            self.credentials.lock().expect("credentials").insert(cap.to_string(), value);
        }
    }

    /// The `Authorization` a redirect capability carries, if any.
    pub fn credentials(&self, cap: &str) -> Option<HeaderValue> {
        self.credentials.lock().expect("credentials").get(cap).cloned()
    }
}

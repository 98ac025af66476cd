//! The SMART Backend Services authorization server: client registration,
//! discovery, a strict token endpoint, and the access tokens that guard the
//! FHIR routes.

pub mod assertion;
pub mod der;
pub mod discovery;
pub mod error;
pub mod guard;
pub mod jwks;
pub mod keys;
pub mod register;
pub mod registry;
pub mod scopes;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use rand::{RngExt, SeedableRng};

use registry::Registry;
use scopes::Grant;

/// Authorization settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Assertion algorithms accepted (AUTH-025); RS384 and ES384 by default.
    pub algorithms: Vec<Algorithm>,
    /// Allowance for clock differences when checking `exp`, `nbf`, `iat`.
    pub clock_skew: Duration,
    /// Access-token lifetime unless a client has its own (AUTH-051).
    pub token_lifetime: Duration,
    /// How long a JWKS URL fetch may take.
    pub jwks_timeout: Duration,
    /// Extra CA certificates (PEM) trusted when fetching https JWKS URLs,
    /// besides the system's roots (e.g. a local CA of a test JWKS host).
    pub jwks_ca_certs: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithms: vec![Algorithm::RS384, Algorithm::ES384],
            clock_skew: Duration::from_secs(5),
            token_lifetime: Duration::from_secs(300),
            jwks_timeout: Duration::from_secs(5),
            jwks_ca_certs: Vec::new(),
        }
    }
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The client it was issued to.
    pub client_id: String,
    /// What it may read.
    pub grant: Arc<Grant>,
    /// When it stops working.
    pub expires: Instant,
}

/// Seen assertion ids per client, forgotten once the assertion can no longer be valid (E-12).
#[derive(Default)]
pub struct JtiCache {
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl JtiCache {
    /// Records `jti` for `client` until `until`; false when it was already seen.
    pub fn insert(&self, client: &str, jti: &str, until: i64, now: i64) -> bool {
        let mut seen = self.seen.lock().expect("jti cache");
        if seen.len() > 100_000 {
            seen.retain(|_, t| *t > now);
        }
        let key = (client.to_string(), jti.to_string());
        match seen.get(&key) {
            Some(&t) if t > now => false,
            _ => {
                seen.insert(key, until);
                true
            }
        }
    }
}

/// The authorization state of one server.
pub struct AuthState {
    /// Settings.
    pub config: AuthConfig,
    /// Registered clients.
    pub registry: Registry,
    /// Fetched JWKS documents.
    pub jwks: jwks::JwksCache,
    /// Replay protection.
    pub jti_cache: JtiCache,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    revoked: Mutex<std::collections::HashSet<String>>,
    rng: Mutex<rand::rngs::ChaCha8Rng>,
}

impl AuthState {
    /// A fresh state; tokens and client ids derive from `seed`.
    pub fn new(config: AuthConfig, seed: u64) -> Self {
        AuthState {
            jwks: jwks::JwksCache::with_roots(config.jwks_timeout, &config.jwks_ca_certs),
            config,
            registry: Registry::default(),
            jti_cache: JtiCache::default(),
            tokens: Mutex::new(HashMap::new()),
            revoked: Mutex::new(std::collections::HashSet::new()),
            rng: Mutex::new(rand::rngs::ChaCha8Rng::seed_from_u64(seed ^ 0x6175_7468)),
        }
    }

    /// A random hex string of `bytes` bytes from the server's seeded generator.
    pub fn random_hex(&self, bytes: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut rng = self.rng.lock().expect("rng");
        let mut out = String::with_capacity(bytes * 2);
        for _ in 0..bytes {
            let b: u8 = rng.random();
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        out
    }

    /// Issues a token.
    pub fn issue(&self, client_id: &str, grant: Grant, lifetime: Duration) -> String {
        let token = self.random_hex(32);
        let info =
            TokenInfo { client_id: client_id.to_string(), grant: Arc::new(grant), expires: Instant::now() + lifetime };
        let mut tokens = self.tokens.lock().expect("tokens");
        let now = Instant::now();
        if tokens.len() > 100_000 {
            tokens.retain(|_, t| t.expires > now);
        }
        tokens.insert(token.clone(), info);
        token
    }

    /// Revokes a token: it stops working at once (the `revoke` fault).
    pub fn revoke(&self, token: &str) {
        if self.tokens.lock().expect("tokens").contains_key(token) {
            self.revoked.lock().expect("revoked").insert(token.to_string());
        }
    }

    /// Looks up a token; `Err` says why it does not work.
    pub fn token(&self, token: &str) -> Result<TokenInfo, &'static str> {
        if self.revoked.lock().expect("revoked").contains(token) {
            return Err("the access token has been revoked; request a new one");
        }
        let tokens = self.tokens.lock().expect("tokens");
        let info = tokens.get(token).ok_or("the access token is not one this server issued")?;
        if info.expires <= Instant::now() {
            return Err("the access token has expired; request a new one");
        }
        Ok(info.clone())
    }
}

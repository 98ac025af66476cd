//! Capability URLs (the `capability_urls` fault): file URLs that work without
//! a bearer token, for a limited time (SRV-183).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// Issued capabilities: token to (job id, expiry).
pub struct Capabilities {
    issued: Mutex<HashMap<String, (String, Instant)>>,
    rng: Mutex<rand::rngs::ChaCha8Rng>,
}

impl Capabilities {
    /// An empty set whose tokens derive from the server `seed`.
    pub fn new(seed: u64) -> Self {
        let rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed ^ 0x0063_6170);
        Capabilities { issued: Mutex::new(HashMap::new()), rng: Mutex::new(rng) }
    }
}

/// Why a capability does not open a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not one this server issued, or for another export.
    Unknown,
    /// Past its lifetime.
    Expired,
}

impl Capabilities {
    /// A new capability for the files of `job`, valid for `ttl`.
    pub fn issue(&self, job: &str, ttl: Duration) -> String {
        let mut bytes = [0u8; 16];
        self.rng.lock().expect("capability rng").fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.issued.lock().expect("capabilities").insert(token.clone(), (job.to_string(), Instant::now() + ttl));
        token
    }

    /// Checks a capability for a file of `job`.
    pub fn check(&self, token: &str, job: &str) -> Result<(), Refusal> {
        match self.issued.lock().expect("capabilities").get(token) {
            Some((j, _)) if j != job => Err(Refusal::Unknown),
            Some((_, expires)) if *expires <= Instant::now() => Err(Refusal::Expired),
            Some(_) => Ok(()),
            None => Err(Refusal::Unknown),
        }
    }
}

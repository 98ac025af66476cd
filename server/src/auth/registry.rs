//! Registered clients, stored server-side (AUTH-020..024).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::scopes::Grant;
use crate::faults::{FaultEngine, FaultPlan};

/// Where a client's public keys are.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientKeys {
    /// A JWKS given at registration (discouraged by the guide, but supported).
    Inline(JwkSet),
    /// A JWKS URL fetched when needed (preferred).
    Url(String),
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    /// The id, equal to the assertion's `iss` and `sub`.
    pub id: String,
    /// A human name.
    pub name: String,
    /// The public keys.
    pub keys: ClientKeys,
    /// The scopes it is pre-authorised for; `None` means any read scope.
    pub allowed: Option<Grant>,
    /// Its access-token lifetime, when not the server default.
    pub token_lifetime: Option<Duration>,
    /// This client's own fault rules, checked before the server's.
    pub faults: Option<Arc<FaultEngine>>,
    /// This client's quirks, on top of the server's.
    pub quirks: crate::quirks::Quirks,
}

/// A registration request: the JSON body of `POST /auth/register`, an entry
/// of a `--clients` file, or an in-process registration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The client id to use (config files); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An inline public JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// A JWKS URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Space-separated scopes the client may be granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Access-token lifetime in seconds for this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_s: Option<u64>,
    /// Fault rules for this client's requests: `{"fault": [...]}` or a list of rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_profile: Option<Value>,
    /// Quirks for this client's requests, on top of the server's: `["no-until", "long-queue=0.01"]`.
    #[serde(default, skip_serializing_if = "crate::quirks::Quirks::is_empty")]
    pub quirks: crate::quirks::Quirks,
}

/// All clients of one server.
#[derive(Default)]
pub struct Registry {
    clients: RwLock<HashMap<String, Arc<Client>>>,
}

impl Registry {
    /// Validates and stores a registration under `id`; the error says what is wrong.
    pub fn register(
        &self,
        reg: Registration,
        id: String,
        known_type: &dyn Fn(&str) -> bool,
        seed: u64,
    ) -> Result<Arc<Client>, String> {
        let keys = match (reg.jwks, reg.jwks_url) {
            (Some(_), Some(_)) => return Err("give either jwks or jwks_url, not both".into()),
            (None, None) => return Err("a client needs its public keys: jwks (inline) or jwks_url".into()),
            (Some(jwks), None) => ClientKeys::Inline(check_jwks(jwks)?),
            (None, Some(url)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!("jwks_url {url:?} must be an http(s) URL"));
                }
                ClientKeys::Url(url)
            }
        };
        let allowed = reg.scope.map(|s| Grant::parse_all(&s, known_type)).transpose()?;
        if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("client_id {id:?} must be non-empty without spaces"));
        }
        let faults = match reg.fault_profile {
            None => None,
            Some(profile) => Some(Arc::new(FaultEngine::new(parse_profile(profile)?, seed ^ fingerprint_seed(&id)))),
        };
        let client = Arc::new(Client {
            name: reg.name.unwrap_or_else(|| id.clone()),
            id: id.clone(),
            keys,
            allowed,
            token_lifetime: reg.token_lifetime_s.map(Duration::from_secs),
            faults,
            quirks: reg.quirks,
        });
        let mut clients = self.clients.write().expect("registry");
        if clients.contains_key(&id) {
            return Err(format!("client_id {id:?} is already registered"));
        }
        clients.insert(id, Arc::clone(&client));
        Ok(client)
    }

    /// A client by id.
    pub fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.clients.read().expect("registry").get(id).cloned()
    }

    /// Every registered client, by id.
    pub fn list(&self) -> Vec<Arc<Client>> {
        let mut clients: Vec<Arc<Client>> = self.clients.read().expect("registry").values().cloned().collect();
        clients.sort_by(|a, b| a.id.cmp(&b.id));
        clients
    }
}

/// A fault profile: a plan (`{"fault": [...]}`) or a list of rules, validated.
fn parse_profile(profile: Value) -> Result<FaultPlan, String> {
    let plan = match profile {
        Value::Array(_) => FaultPlan {
            rules: serde_json::from_value(profile)
                .map_err(|e| format!("fault_profile is not a list of fault rules: {e}"))?,
        },
        other => serde_json::from_value(other).map_err(|e| format!("fault_profile is not a fault plan: {e}"))?,
    };
    for (i, rule) in plan.rules.iter().enumerate() {
        rule.validate().map_err(|e| format!("fault_profile rule {}: {e}", i + 1))?;
    }
    Ok(plan)
}

/// A per-client seed component, so clients with profiles draw independently.
fn fingerprint_seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Checks an inline JWKS: public keys with `kty` and `kid` (AUTH-023).
fn check_jwks(jwks: Value) -> Result<JwkSet, String> {
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or("jwks must be an object with a \"keys\" array")?;
    if keys.is_empty() {
        return Err("jwks has no keys".into());
    }
    for (i, key) in keys.iter().enumerate() {
        for field in ["kty", "kid"] {
            if key.get(field).and_then(Value::as_str).is_none() {
                return Err(format!("jwks.keys[{i}] has no {field} (every key needs kty and kid)"));
            }
        }
        if key.get("d").is_some() {
            return Err(format!("jwks.keys[{i}] is a private key; register the public key only"));
        }
    }
    serde_json::from_value(jwks).map_err(|e| format!("jwks is not a valid JWK Set: {e}"))
}

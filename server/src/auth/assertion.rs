//! Authenticating a client by its signed JWT assertion (RFC 7523 3,
//! AUTH-032..040, E-11..E-13). Every failure is `invalid_client` with a
//! description that says exactly what to fix.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::AuthState;
use super::error::OAuthError;
use super::registry::{Client, ClientKeys};

/// The most an assertion's `exp` may lie ahead (AUTH-034, AUTH-044).
pub const MAX_ASSERTION_LIFETIME_S: i64 = 300;

fn decode_part(part: &str, what: &str) -> Result<Value, OAuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| OAuthError::client(format!("the assertion {what} is not base64url")))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| OAuthError::client(format!("the assertion {what} is not JSON")))?;
    if !value.is_object() {
        return Err(OAuthError::client(format!("the assertion {what} is not a JSON object")));
    }
    Ok(value)
}

/// The key type (`kty`) an algorithm needs.
fn kty_for(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => "EC",
        Algorithm::EdDSA => "OKP",
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "oct",
        _ => "RSA",
    }
}

/// The EC curve an algorithm needs.
fn curve_for(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::ES256 => Some("P-256"),
        Algorithm::ES384 => Some("P-384"),
        _ => None,
    }
}

/// Checks a client assertion and returns the authenticated client.
pub async fn authenticate(
    auth: &AuthState,
    assertion: &str,
    token_url: &str,
    now: i64,
    jwks_fault: &JwksFault<'_>,
) -> Result<Arc<Client>, OAuthError> {
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return Err(OAuthError::client(format!(
            "client_assertion must be a compact JWS (header.payload.signature); it has {} part(s)",
            parts.len()
        )));
    }
    let header = decode_part(parts[0], "header")?;
    let claims = decode_part(parts[1], "payload")?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::client("the assertion header has no alg"))?;
    let allowed: Vec<&str> = auth.config.algorithms.iter().map(alg_str).collect();
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(OAuthError::client("alg \"none\" is never accepted: the assertion must be signed"));
    }
    if alg_name.starts_with("HS") {
        return Err(OAuthError::client(format!(
            "alg {alg_name} (a shared-secret HMAC) is not accepted: sign with your private key using {}",
            allowed.join(" or ")
        )));
    }
    let alg: Algorithm = alg_name.parse().map_err(|_| OAuthError::client(format!("unknown alg {alg_name:?}")))?;
    if !auth.config.algorithms.contains(&alg) {
        return Err(OAuthError::client(format!(
            "alg {alg_name} is not accepted by this server; use {} (token_endpoint_auth_signing_alg_values_supported)",
            allowed.join(" or ")
        )));
    }
    match header.get("typ").and_then(Value::as_str) {
        Some("JWT") => {}
        Some(other) => {
            return Err(OAuthError::client(format!("the assertion header typ must be \"JWT\", not {other:?}")));
        }
        None => return Err(OAuthError::client("the assertion header needs typ \"JWT\"")),
    }
    let kid = match header.get("kid").and_then(Value::as_str) {
        Some(k) if !k.is_empty() => k,
        _ => return Err(OAuthError::client("the assertion header needs the kid of the signing key")),
    };

    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::client("the assertion has no iss (your client_id)"))?;
    let client = auth.registry.get(iss).ok_or_else(|| {
        OAuthError::client(format!("unknown client {iss:?} (the assertion's iss); register the client first"))
    })?;
    let jku = header.get("jku").and_then(Value::as_str);
    let key = select_key(auth, &client, kid, alg, jku, jwks_fault).await?;
    let decoding =
        DecodingKey::from_jwk(&key).map_err(|e| OAuthError::client(format!("the key {kid:?} is unusable: {e}")))?;
    // The header and claims are parsed above; only the signature is left to check.
    let signed = &assertion[..parts[0].len() + 1 + parts[1].len()];
    let verified = jsonwebtoken::crypto::verify(parts[2], signed.as_bytes(), &decoding, alg);
    if !matches!(verified, Ok(true)) {
        let detail = verified.err().map(|e| format!(" ({e})")).unwrap_or_default();
        return Err(OAuthError::client(format!(
            "the assertion signature does not verify with key {kid:?} of client {iss:?}{detail}"
        )));
    }
    check_claims(auth, &client, &claims, token_url, now)?;
    Ok(client)
}

fn alg_str(alg: &Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

/// The JOSE name of an algorithm.
pub fn algorithm_name(alg: &Algorithm) -> &'static str {
    alg_str(alg)
}

/// Finds exactly one key by `kid` and key type (AUTH-037, E-11), re-fetching a
/// JWKS URL once when the kid is unknown (key rotation).
/// Asks the fault engine about a JWKS fetch for a client (target `jwks`).
pub type JwksFault<'a> = dyn Fn(&str) -> Option<crate::faults::Fault> + Send + Sync + 'a;

async fn select_key(
    auth: &AuthState,
    client: &Client,
    kid: &str,
    alg: Algorithm,
    jku: Option<&str>,
    jwks_fault: &JwksFault<'_>,
) -> Result<Jwk, OAuthError> {
    let kty = kty_for(alg);
    if let Some(jku) = jku {
        match &client.keys {
            ClientKeys::Url(url) if url == jku => {}
            ClientKeys::Url(url) => {
                return Err(OAuthError::client(format!(
                    "jku {jku:?} does not match the JWKS URL registered for this client ({url})"
                )));
            }
            ClientKeys::Inline(_) => {
                return Err(OAuthError::client(format!(
                    "jku {jku:?} given, but this client registered an inline JWKS, not a URL"
                )));
            }
        }
    }
    let (mut keys, mut fresh) = match &client.keys {
        ClientKeys::Inline(set) => (set.clone(), true),
        ClientKeys::Url(url) => {
            auth.jwks.get(url, false, &|| jwks_fault(&client.id)).await.map_err(OAuthError::client)?
        }
    };
    loop {
        let matching = matching_keys(&keys, kid, kty);
        match matching.len() {
            1 => return check_key(matching[0].clone(), kid, alg),
            0 if !fresh => {
                if let ClientKeys::Url(url) = &client.keys {
                    (keys, fresh) =
                        auth.jwks.get(url, true, &|| jwks_fault(&client.id)).await.map_err(OAuthError::client)?;
                    continue;
                }
                unreachable!("inline keys are always fresh");
            }
            0 => {
                return Err(OAuthError::client(format!(
                    "the client's JWKS has no key with kid {kid:?} and kty {kty} (needed for {})",
                    alg_str(&alg)
                )));
            }
            n => {
                return Err(OAuthError::client(format!(
                    "the client's JWKS has {n} keys with kid {kid:?} and kty {kty}; exactly one must match (E-11)"
                )));
            }
        }
    }
}

fn matching_keys<'a>(keys: &'a JwkSet, kid: &str, kty: &str) -> Vec<&'a Jwk> {
    keys.keys
        .iter()
        .filter(|k| {
            let v = serde_json::to_value(k).unwrap_or_default();
            v.get("kid").and_then(Value::as_str) == Some(kid) && v.get("kty").and_then(Value::as_str) == Some(kty)
        })
        .collect()
}

/// Checks what `DecodingKey::from_jwk` ignores: the key's own `alg`, curve, `use` and `key_ops`.
fn check_key(key: Jwk, kid: &str, alg: Algorithm) -> Result<Jwk, OAuthError> {
    let v = serde_json::to_value(&key).unwrap_or_default();
    let name = alg_str(&alg);
    if let Some(key_alg) = v.get("alg").and_then(Value::as_str)
        && key_alg != name
    {
        return Err(OAuthError::client(format!(
            "key {kid:?} is registered for alg {key_alg}, but the assertion uses {name}"
        )));
    }
    if let Some(curve) = curve_for(alg)
        && v.get("crv").and_then(Value::as_str) != Some(curve)
    {
        return Err(OAuthError::client(format!("{name} needs a {curve} key, but key {kid:?} is on {}", v["crv"])));
    }
    if let Some(use_) = v.get("use").and_then(Value::as_str)
        && use_ != "sig"
    {
        return Err(OAuthError::client(format!("key {kid:?} has use {use_:?}; a signing key needs use \"sig\"")));
    }
    if let Some(ops) = v.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|o| o == "verify")
    {
        return Err(OAuthError::client(format!("key {kid:?} has key_ops without \"verify\"")));
    }
    Ok(key)
}

fn check_claims(
    auth: &AuthState,
    client: &Client,
    claims: &Value,
    token_url: &str,
    now: i64,
) -> Result<(), OAuthError> {
    let skew = auth.config.clock_skew.as_secs() as i64;
    let sub = claims.get("sub").and_then(Value::as_str);
    if sub != Some(client.id.as_str()) {
        return Err(OAuthError::client(format!(
            "sub must equal iss ({:?}), found {:?}",
            client.id,
            sub.unwrap_or("nothing")
        )));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&token_url) {
        let hint = if audiences.iter().any(|a| a.trim_end_matches('/') == token_url.trim_end_matches('/')) {
            " (the trailing slash matters)"
        } else {
            ""
        };
        return Err(OAuthError::client(format!(
            "aud must be exactly the token URL {token_url}, found {audiences:?}{hint}"
        )));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| OAuthError::client("the assertion needs exp as integer seconds since the epoch"))?;
    if exp <= now - skew {
        return Err(OAuthError::client(format!(
            "the assertion expired {} s ago (exp {exp}, server time {now})",
            now - exp
        )));
    }
    if exp > now + MAX_ASSERTION_LIFETIME_S + skew {
        return Err(OAuthError::client(format!(
            "exp is {} s ahead; an assertion may live at most {MAX_ASSERTION_LIFETIME_S} s (server time {now})",
            exp - now
        )));
    }
    for claim in ["nbf", "iat"] {
        if let Some(t) = claims.get(claim) {
            let t = t.as_i64().ok_or_else(|| OAuthError::client(format!("{claim} must be integer seconds")))?;
            if t > now + skew {
                return Err(OAuthError::client(format!("{claim} is {} s in the future (server time {now})", t - now)));
            }
        }
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() => j,
        _ => return Err(OAuthError::client("the assertion needs a jti, unique for every assertion")),
    };
    // E-12: remember the jti while the assertion could still be valid, at least 5 minutes.
    let remember_until = exp.max(now + MAX_ASSERTION_LIFETIME_S) + skew;
    if !auth.jti_cache.insert(&client.id, jti, remember_until, now) {
        return Err(OAuthError::client(format!(
            "jti {jti:?} was already used: every assertion needs a fresh jti (replay)"
        )));
    }
    Ok(())
}

//! Private JWKs (RFC 7518 6.2.2, 6.3.2) to the DER the signer reads: PKCS#1 for
//! RSA, PKCS#8 for EC P-384. Just enough DER writing for these two shapes.
//! Also the RFC 7638 thumbprint of a signing key's public half, the default `kid`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;

/// Appends one DER TLV.
fn tlv(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

/// A DER INTEGER from unsigned big-endian bytes.
fn unsigned(out: &mut Vec<u8>, value: &[u8]) {
    let start = value.iter().position(|&b| b != 0).unwrap_or(value.len().saturating_sub(1));
    let mut v = value[start..].to_vec();
    if v.first().is_none_or(|&b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    tlv(out, 0x02, &v);
}

fn member(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = jwk[name].as_str().ok_or_else(|| format!("the JWK has no `{name}`"))?;
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|e| format!("the JWK's `{name}` is not base64url: {e}"))
}

/// The signing key and algorithm of a private JWK (`kty` RSA, or EC with `crv` P-384).
pub(crate) fn signing_key(jwk: &Value) -> Result<(EncodingKey, Algorithm), String> {
    match jwk["kty"].as_str() {
        Some("RSA") => {
            let mut fields = Vec::new();
            unsigned(&mut fields, &[0]);
            for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
                unsigned(&mut fields, &member(jwk, name)?);
            }
            let mut der = Vec::new();
            tlv(&mut der, 0x30, &fields);
            Ok((EncodingKey::from_rsa_der(&der), Algorithm::RS384))
        }
        Some("EC") => {
            if jwk["crv"] != "P-384" {
                return Err(format!("EC keys must be on P-384 to sign ES384, this one is on {}", jwk["crv"]));
            }
            let (d, x, y) = (member(jwk, "d")?, member(jwk, "x")?, member(jwk, "y")?);
            let mut point = vec![0, 4];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let mut public = Vec::new();
            tlv(&mut public, 0x03, &point);
            let mut ec_key = Vec::new();
            unsigned(&mut ec_key, &[1]);
            tlv(&mut ec_key, 0x04, &d);
            tlv(&mut ec_key, 0xa1, &public);
            let mut ec_sequence = Vec::new();
            tlv(&mut ec_sequence, 0x30, &ec_key);
            // AlgorithmIdentifier { id-ecPublicKey, secp384r1 }
            const ALGORITHM: &[u8] = &[
                0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
                0x22,
            ];
            let mut info = Vec::new();
            unsigned(&mut info, &[0]);
            info.extend_from_slice(ALGORITHM);
            tlv(&mut info, 0x04, &ec_sequence);
            let mut der = Vec::new();
            tlv(&mut der, 0x30, &info);
            Ok((EncodingKey::from_ec_der(&der), Algorithm::ES384))
        }
        other => Err(format!("the JWK's kty must be RSA or EC, found {other:?}")),
    }
}

/// The RFC 7638 SHA-256 thumbprint (base64url) of the public half of `key`:
/// the `kid` that `bulkmock keys` and the demo client use (CLI-005).
pub(crate) fn thumbprint(key: &EncodingKey, alg: Algorithm) -> Result<String, String> {
    let public = Jwk::from_encoding_key(key, alg).map_err(|e| format!("cannot derive the public key: {e}"))?;
    public.thumbprint(ThumbprintHash::SHA256).map_err(|e| format!("cannot compute the key thumbprint: {e}"))
}

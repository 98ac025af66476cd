//! Key pairs for SMART Backend Services clients: generation (aws-lc-rs) and
//! the three files a client needs: private key as PEM and as JWK, public key
//! as a JWKS (AUTH-020, AUTH-023, AUTH-025).

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// The asymmetric algorithms a generated key can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-384, 2048-bit keys.
    Rs384,
    /// ECDSA P-384 with SHA-384.
    Es384,
}

impl KeyAlg {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Rs384 => "RS384",
            KeyAlg::Es384 => "ES384",
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyAlg::Rs384 => Algorithm::RS384,
            KeyAlg::Es384 => Algorithm::ES384,
        }
    }
}

impl std::str::FromStr for KeyAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "RS384" => Ok(KeyAlg::Rs384),
            "ES384" => Ok(KeyAlg::Es384),
            _ => Err(format!("unsupported key algorithm {s:?}; use RS384 or ES384")),
        }
    }
}

/// A client key pair. `Debug` never shows the private key.
#[derive(Clone)]
pub struct ClientKey {
    /// The algorithm the key signs with.
    pub alg: KeyAlg,
    /// The key id, unique per key.
    pub kid: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    /// The private key as a JWK (with `kid`, `alg`).
    pub private_jwk: Value,
    /// The public key as a JWK (with `kid`, `alg`, `use: sig`).
    pub public_jwk: Jwk,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// An error from key generation or loading.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The crypto library failed.
    #[error("key generation failed: {0}")]
    Crypto(String),
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A key file is not a usable private key.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ClientKey {
    /// Generates a new key pair; the `kid` is derived from the public key (RFC 7638 thumbprint).
    pub fn generate(alg: KeyAlg) -> Result<ClientKey, KeyError> {
        let crypto = |e: aws_lc_rs::error::Unspecified| KeyError::Crypto(e.to_string());
        match alg {
            KeyAlg::Rs384 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(crypto)?;
                let der = pair.as_der().map_err(crypto)?;
                Self::from_pkcs8(alg, der.as_ref())
            }
            KeyAlg::Es384 => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(crypto)?;
                Self::from_pkcs8(alg, doc.as_ref())
            }
        }
    }

    /// A key from PKCS#8 DER.
    fn from_pkcs8(alg: KeyAlg, der: &[u8]) -> Result<ClientKey, KeyError> {
        let invalid = |m: String| KeyError::Crypto(m);
        let private_pem = pem(der);
        let encoding = match alg {
            KeyAlg::Rs384 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
            KeyAlg::Es384 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        }
        .map_err(|e| invalid(e.to_string()))?;
        let mut public_jwk = Jwk::from_encoding_key(&encoding, alg.algorithm()).map_err(|e| invalid(e.to_string()))?;
        let kid =
            public_jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).map_err(|e| invalid(e.to_string()))?;
        public_jwk.common.key_id = Some(kid.clone());
        public_jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        public_jwk.common.key_algorithm = Some(match alg {
            KeyAlg::Rs384 => KeyAlgorithm::RS384,
            KeyAlg::Es384 => KeyAlgorithm::ES384,
        });
        let mut private_jwk = serde_json::to_value(&public_jwk).map_err(|e| invalid(e.to_string()))?;
        let obj = private_jwk.as_object_mut().expect("a JWK is an object");
        obj.remove("use");
        match alg {
            KeyAlg::Rs384 => {
                let c = super::der::rsa_from_pkcs8(der).ok_or_else(|| invalid("unreadable RSA key".into()))?;
                for (k, v) in [("d", c.d), ("p", c.p), ("q", c.q), ("dp", c.dp), ("dq", c.dq), ("qi", c.qi)] {
                    obj.insert(k.into(), json!(b64(&v)));
                }
            }
            KeyAlg::Es384 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der)
                    .map_err(|e| invalid(e.to_string()))?;
                let d = pair.private_key().as_be_bytes().map_err(|e| invalid(e.to_string()))?;
                obj.insert("d".into(), json!(b64(d.as_ref())));
            }
        }
        Ok(ClientKey { alg, kid, private_pem, private_jwk, public_jwk })
    }

    /// Loads a private key from a PKCS#8 PEM file (as written by [`ClientKey::write`]).
    pub fn load_pem(path: &Path) -> Result<ClientKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.into(), source })?;
        let invalid = |message: &str| KeyError::Invalid { path: path.into(), message: message.into() };
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        if !text.contains("-----BEGIN PRIVATE KEY-----") {
            return Err(invalid("expected a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)"));
        }
        let der = STANDARD.decode(body.trim()).map_err(|_| invalid("the PEM body is not valid base64"))?;
        let alg = if super::der::rsa_from_pkcs8(&der).is_some() {
            KeyAlg::Rs384
        } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &der).is_ok() {
            KeyAlg::Es384
        } else {
            return Err(invalid("the key is neither RSA nor EC P-384"));
        };
        Self::from_pkcs8(alg, &der).map_err(|e| invalid(&e.to_string()))
    }

    /// The public JWKS holding this key.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.public_jwk.clone()] }
    }

    /// A jsonwebtoken signing key.
    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            KeyAlg::Rs384 => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()),
            KeyAlg::Es384 => EncodingKey::from_ec_pem(self.private_pem.as_bytes()),
        }
        .expect("a generated key is valid")
    }

    /// Writes `private.pem`, `private.jwk.json` and `jwks.json` into `dir`; returns the PEM path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let pem_path = dir.join("private.pem");
        let files = [
            (pem_path.clone(), self.private_pem.clone()),
            (dir.join("private.jwk.json"), serde_json::to_string_pretty(&self.private_jwk).expect("json")),
            (dir.join("jwks.json"), serde_json::to_string_pretty(&self.jwks()).expect("json")),
        ];
        for (path, content) in files {
            write_private(&path, &content).map_err(io(&path))?;
        }
        Ok(pem_path)
    }
}

/// Writes a file readable by its owner only (it may hold a private key),
/// through a temporary file so a crash never leaves half a key behind.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Header, Validation};

    fn round_trip(alg: KeyAlg) {
        let key = ClientKey::generate(alg).unwrap();
        let mut header = Header::new(alg.algorithm());
        header.kid = Some(key.kid.clone());
        let claims = json!({"sub": "x", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding_key()).unwrap();
        let jwk = key.jwks().find(&key.kid).unwrap().clone();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &Validation::new(alg.algorithm())).unwrap();
        assert_eq!(data.claims["sub"], "x");
        assert_eq!(key.private_jwk["kid"], key.kid.as_str());
        assert!(key.private_jwk["d"].as_str().unwrap().len() > 40);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn rs384_keys_sign_and_verify() {
        round_trip(KeyAlg::Rs384);
    }

    #[test]
    fn es384_keys_sign_and_verify() {
        round_trip(KeyAlg::Es384);
    }

    #[test]
    fn written_keys_load_back() {
        let dir = std::env::temp_dir().join(format!("bulkmock-keys-{}", std::process::id()));
        for alg in [KeyAlg::Rs384, KeyAlg::Es384] {
            let key = ClientKey::generate(alg).unwrap();
            let path = key.write(&dir).unwrap();
            let loaded = ClientKey::load_pem(&path).unwrap();
            assert_eq!((loaded.alg, &loaded.kid), (alg, &key.kid));
            let jwks: JwkSet = serde_json::from_str(&std::fs::read_to_string(dir.join("jwks.json")).unwrap()).unwrap();
            assert!(jwks.find(&key.kid).is_some());
        }
        std::fs::write(dir.join("bad.pem"), "hello").unwrap();
        assert!(ClientKey::load_pem(&dir.join("bad.pem")).unwrap_err().to_string().contains("PKCS#8"));
    }
}

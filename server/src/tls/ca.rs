//! A local certificate authority: one CA key and certificate that issues the
//! server's certificates, so a client trusts every bulkmock server by trusting
//! one file (CLI-032: clients that refuse plain http).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::{TlsError, TlsIdentity};

/// The common name of every local CA (issued certificates name it as issuer).
const CA_NAME: &str = "bulkmock local CA";

/// How long a local CA is valid.
const CA_DAYS: i64 = 3650;

/// How long an issued server certificate is valid (the longest that browsers accept).
pub const SERVER_DAYS: i64 = 397;

/// A CA that issues server certificates for local hosts.
pub struct LocalCa {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").field("name", &CA_NAME).finish_non_exhaustive()
    }
}

/// The CA's parameters. Deterministic apart from the validity, so a CA loaded
/// from its files issues certificates whose issuer name and key identifier
/// match the stored CA certificate.
fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    name.push(DnType::OrganizationName, "bulkmock");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(CA_DAYS);
    params
}

impl LocalCa {
    /// A fresh CA (ECDSA P-256).
    pub fn generate() -> Result<LocalCa, TlsError> {
        let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert =
            ca_params(OffsetDateTime::now_utc()).self_signed(&key).map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(LocalCa { cert_pem: cert.pem(), key })
    }

    /// A CA from its certificate and key (PEM), as [`generate`](Self::generate) wrote them;
    /// `cert_name` and `key_name` name them in errors (usually file paths).
    pub fn from_pem(cert_pem: &str, key_pem: &str, cert_name: &str, key_name: &str) -> Result<LocalCa, TlsError> {
        let certs = super::parse_certs(cert_pem.as_bytes(), cert_name)?;
        if certs.len() != 1 {
            return Err(TlsError::Invalid {
                name: cert_name.into(),
                reason: format!("expected one CA certificate, found {}", certs.len()),
            });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::Invalid {
            name: key_name.into(),
            reason: format!("not a usable private key: {e}"),
        })?;
        Ok(LocalCa { cert_pem: cert_pem.to_string(), key })
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PKCS#8 PEM).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a server certificate for `hosts` (DNS names or IP addresses), valid
    /// for [`SERVER_DAYS`] days.
    pub fn issue(&self, hosts: &[String]) -> Result<TlsIdentity, TlsError> {
        self.issue_with_key(hosts).map(|(identity, _)| identity)
    }

    /// Like [`issue`](Self::issue), also returning the server key (PKCS#8 PEM) to store.
    pub fn issue_with_key(&self, hosts: &[String]) -> Result<(TlsIdentity, String), TlsError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(|e| TlsError::Generate(format!("host names {hosts:?}: {e}")))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "bulkmock server");
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(SERVER_DAYS);
        let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let issuer = Issuer::new(ca_params(now), &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(|e| TlsError::Generate(e.to_string()))?;
        let key_pem = key.serialize_pem();
        let mut identity = TlsIdentity::from_pem(cert.pem().as_bytes(), key_pem.as_bytes(), "server", "server key")?;
        identity.ca_pem = Some(self.cert_pem.clone());
        Ok((identity, key_pem))
    }
}

/// The names a local server certificate covers: `localhost`, `127.0.0.1`, `::1`
/// and `extra` (a `--host` value or a public URL's host; wildcard addresses
/// are left out), sorted, without duplicates.
pub fn local_hosts<'a>(extra: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].iter().map(|s| s.to_string()).collect();
    for host in extra {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        if !host.is_empty() && host != "0.0.0.0" && host != "::" {
            hosts.push(host.to_ascii_lowercase());
        }
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

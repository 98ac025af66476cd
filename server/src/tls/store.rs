//! The local CA and server certificate in the state folder (`<state>/tls/`),
//! created on the first `serve --tls` and reused on the next: clients keep
//! trusting the same CA. The server certificate is issued again when the hosts
//! it must cover changed, the CA changed, or it is within 30 days of expiring.
//!
//! Files: `ca.pem` (trust this), `ca-key.pem`, `server.pem`, `server-key.pem`,
//! and `server.json` (the hosts and expiry of `server.pem`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ca::{LocalCa, SERVER_DAYS};
use super::{TlsError, TlsIdentity};

/// What `server.json` remembers about `server.pem`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ServerMeta {
    hosts: Vec<String>,
    /// Unix seconds.
    not_after: i64,
    /// The CA certificate it was issued by (PEM), to notice a replaced CA.
    ca_pem: String,
}

/// The TLS identity kept in a state folder, and what happened to make it.
#[derive(Debug)]
pub struct Stored {
    /// The identity to serve (its `ca_pem` is the CA's certificate).
    pub identity: TlsIdentity,
    /// The CA certificate file clients trust.
    pub ca_path: PathBuf,
    /// The CA was generated just now (not reused).
    pub ca_created: bool,
    /// The server certificate was issued just now (not reused).
    pub server_issued: bool,
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { name: path.display().to_string(), source })
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { name: path.display().to_string(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    std::io::Write::write_all(&mut options.open(path).map_err(io)?, text.as_bytes()).map_err(io)
}

/// Loads the CA and server certificate from `<state_dir>/tls`, creating what is
/// missing; the server certificate covers `hosts`.
pub fn load_or_create(state_dir: &Path, hosts: &[String]) -> Result<Stored, TlsError> {
    let dir = state_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Io { name: dir.display().to_string(), source })?;
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (ca, ca_created) = if ca_path.exists() || ca_key_path.exists() {
        let (cert, key) = (read(&ca_path)?, read(&ca_key_path)?);
        let ca = LocalCa::from_pem(&cert, &key, &ca_path.display().to_string(), &ca_key_path.display().to_string())?;
        (ca, false)
    } else {
        let ca = LocalCa::generate()?;
        write(&ca_key_path, &ca.key_pem(), true)?;
        write(&ca_path, ca.cert_pem(), false)?;
        (ca, true)
    };
    let (cert_path, key_path, meta_path) =
        (dir.join("server.pem"), dir.join("server-key.pem"), dir.join("server.json"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let meta: Option<ServerMeta> = std::fs::read_to_string(&meta_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let reusable =
        meta.as_ref().is_some_and(|m| m.hosts == hosts && m.ca_pem == ca.cert_pem() && m.not_after - now > 30 * 86_400)
            && cert_path.exists()
            && key_path.exists();
    if reusable {
        let mut identity = TlsIdentity::load(&cert_path, &key_path)?;
        identity.ca_pem = Some(ca.cert_pem().to_string());
        return Ok(Stored { identity, ca_path, ca_created, server_issued: false });
    }
    let (identity, key_pem) = ca.issue_with_key(hosts)?;
    write(&key_path, &key_pem, true)?;
    write(&cert_path, identity.chain_pem(), false)?;
    let meta =
        ServerMeta { hosts: hosts.to_vec(), not_after: now + SERVER_DAYS * 86_400, ca_pem: ca.cert_pem().to_string() };
    write(&meta_path, &serde_json::to_string_pretty(&meta).expect("server.json"), false)?;
    Ok(Stored { identity, ca_path, ca_created, server_issued: true })
}

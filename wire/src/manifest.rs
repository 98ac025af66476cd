//! The export completion manifest (SRV-150..SRV-165), v2/v3 shape.

use serde::{Deserialize, Serialize};

/// The body of a complete (or partial, SRV-125) status response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// When the export's query ran (SRV-151), a FHIR instant.
    pub transaction_time: String,
    /// The kick-off request URL (SRV-152).
    pub request: String,
    /// Whether file URLs need the bearer token (SRV-153).
    pub requires_access_token: bool,
    /// Echo of `organizeOutputBy`, when honoured (SRV-154).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_organized_by: Option<String>,
    /// One entry per output file (SRV-156).
    pub output: Vec<ManifestFile>,
    /// Files of deleted-resource Bundles (SRV-170).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Vec<ManifestFile>>,
    /// OperationOutcome files (SRV-162).
    #[serde(default)]
    pub error: Vec<ManifestFile>,
    /// The next manifest, with `allowPartialManifests` (SRV-163).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<ManifestLink>,
    /// Server-specific extension object (SRV-164).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One file in `output`, `deleted` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// The resource type in the file; absent when output is organised (SRV-157).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Absolute URL of the file (SRV-159).
    pub url: String,
    /// Number of resources in the file (SRV-160).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// URL of the file a split resource block continues in (SRV-161).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues_in_file: Option<String>,
    /// Server-specific extension object of the file (SRV-164), e.g. its
    /// SHA-256 under [`SHA256_EXTENSION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The key, in a file's `extension` object, of the SHA-256 of the file's
/// bytes (uncompressed), as lowercase hex. bulkmock's own extension: off by
/// default on the server, checked by the reference client whenever present.
pub const SHA256_EXTENSION: &str = "https://bulkmock.dev/fhir/StructureDefinition/sha256";

impl ManifestFile {
    /// The SHA-256 the manifest gives for the file, when it gives one.
    pub fn sha256(&self) -> Option<&str> {
        self.extension.as_ref()?.get(SHA256_EXTENSION)?.as_str()
    }
}

/// A `link` entry of a partial manifest (SRV-163).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLink {
    /// Always `next`.
    pub relation: String,
    /// Absolute URL of the next manifest.
    pub url: String,
}

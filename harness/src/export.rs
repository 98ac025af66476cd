//! `bulkmock export`: run a Bulk Data export with the reference client.

use std::path::PathBuf;

use bulkmock_client::{Client, Credentials, ExportRequest, Level, Policy};
use clap::Args;

/// Flags of `bulkmock export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The FHIR base URL.
    #[arg(long, env = "BULKMOCK_FHIR_URL")]
    fhir_url: String,
    /// The registered client id (omit for open servers).
    #[arg(long, env = "BULKMOCK_CLIENT_ID", requires = "key")]
    client_id: Option<String>,
    /// The client's private key, PKCS#8 PEM.
    #[arg(long, env = "BULKMOCK_KEY", requires = "client_id")]
    key: Option<PathBuf>,
    /// The key id; read from jwks.json or private.jwk.json next to the key when not given.
    #[arg(long, env = "BULKMOCK_KID")]
    kid: Option<String>,
    /// Scopes to ask for.
    #[arg(long, default_value = "system/*.rs")]
    scope: String,
    /// Export every patient's data (Patient/$export).
    #[arg(long, conflicts_with_all = ["system", "group"])]
    patient: bool,
    /// System-level export (the default).
    #[arg(long)]
    system: bool,
    /// Export a Group.
    #[arg(long)]
    group: Option<String>,
    /// Resource types (repeatable).
    #[arg(long = "type")]
    types: Vec<String>,
    /// Only resources changed after this instant.
    #[arg(long)]
    since: Option<String>,
    /// Only resources changed up to this instant.
    #[arg(long)]
    until: Option<String>,
    /// `_typeFilter` queries (repeatable).
    #[arg(long = "type-filter")]
    type_filters: Vec<String>,
    /// `_elements` (repeatable).
    #[arg(long = "elements")]
    elements: Vec<String>,
    /// Kick off with POST and a Parameters body.
    #[arg(long)]
    post: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Keep the job on the server afterwards (no DELETE).
    #[arg(long)]
    no_delete: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The key id next to a key file: `jwks.json` or `private.jwk.json`.
fn kid_beside(key: &std::path::Path) -> Option<String> {
    let dir = key.parent()?;
    for name in ["jwks.json", "private.jwk.json"] {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let kid = v["keys"][0]["kid"].as_str().or_else(|| v["kid"].as_str());
        if let Some(kid) = kid {
            return Some(kid.to_string());
        }
    }
    None
}

/// Runs the export; exit code 0 on success, 1 on failure, 2 on bad usage.
pub fn run(args: ExportArgs) -> Result<(), String> {
    let credentials = match (&args.client_id, &args.key) {
        (Some(id), Some(key)) => {
            let pem = std::fs::read(key).map_err(|e| format!("--key {}: {e}", key.display()))?;
            let kid = args.kid.clone().or_else(|| kid_beside(key)).ok_or_else(|| {
                format!("--kid is needed: no jwks.json or private.jwk.json next to {}", key.display())
            })?;
            Some(Credentials::from_pem(id, &pem, &kid, &args.scope).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let level = match (&args.group, args.patient) {
        (Some(id), _) => Level::Group(id.clone()),
        (None, true) => Level::Patient,
        (None, false) => Level::System,
    };
    let request = ExportRequest {
        level,
        types: args.types.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        type_filters: args.type_filters.clone(),
        elements: args.elements.clone(),
        post: args.post,
    };
    let policy = Policy { delete_after: !args.no_delete, ..Policy::default() };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let summary = runtime.block_on(async {
        let client = Client::new(&args.fhir_url, credentials, policy).await?;
        client.export(&request, &args.out).await
    });
    let summary = summary.map_err(|e| e.to_string())?;
    if args.json {
        let json = serde_json::json!({
            "resources": summary.resources, "deleted": summary.deleted, "errors": summary.errors,
            "bytes": summary.bytes, "retries": summary.retries, "out": args.out,
        });
        println!("{json}");
    } else {
        for (ty, n) in &summary.resources {
            println!("{n:>10}  {ty}");
        }
        println!(
            "{} resources, {} deleted, {} errors, {} bytes, {} retries -> {}",
            summary.resources.values().sum::<u64>(),
            summary.deleted,
            summary.errors,
            summary.bytes,
            summary.retries,
            args.out.display()
        );
    }
    Ok(())
}
